//! Runs the backend conformance suite against PostgreSQL, each case in a fresh schema of its
//! own on the server `TSUNAGI_TEST_POSTGRES` names (default: the local test database that
//! `scripts/services` starts), plus PostgreSQL-specific checks.
//!
//! The server must be up: a case fails, naming the URL, rather than skipping.

use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tsunagi_backends::conformance::{BackendFuture, TestStore};
use tsunagi_backends::postgres::PostgresBackend;
use tsunagi_backends::{Backend, BackendError};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn server_url() -> String {
    std::env::var("TSUNAGI_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Drops its schema (and everything in it) when the case ends, passed or failed.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tsunagi_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = server_url();
        let mut admin = connect(&url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        )))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {name} on {url}: {e}"));
        Self { url, name }
    }

    fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("TSUNAGI_TEST_POSTGRES is a PostgreSQL URL")
            .options([("search_path", self.name.as_str())])
    }

    async fn open(&self) -> PostgresBackend {
        PostgresBackend::open_with(self.options(), &self.url)
            .await
            .unwrap_or_else(|e| panic!("open PostgreSQL in schema {}: {e}", self.name))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the case's runtime; a thread of its own may block on a new one.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the schema");
            runtime.block_on(async {
                let mut admin = connect(&url).await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
                    .execute(&mut admin)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} is not reachable ({e}); start it with scripts/services")
    })
}

async fn postgres_store() -> TestStore {
    let schema = Arc::new(Schema::create().await);
    let backend = schema.open().await;
    let again = schema.clone();
    let reopen = move || -> BackendFuture {
        let schema = again.clone();
        Box::pin(async move { Arc::new(schema.open().await) as Arc<dyn Backend> })
    };
    TestStore::new(Arc::new(backend), reopen).keep_alive(schema)
}

tsunagi_backends::conformance_tests!(postgres_store);

#[tokio::test]
async fn opening_twice_keeps_the_schema_and_a_newer_one_is_refused() {
    let schema = Schema::create().await;
    let first = schema.open().await;
    assert_eq!(first.kind(), "postgres");
    // A second open finds every migration applied and changes nothing.
    let second = schema.open().await;
    second.close().await;

    // A migration this build does not know: the database was migrated by a newer tsunagi.
    let mut admin = connect(&schema.url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}._sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (999, 'from the future', true, '\\x00', 0)",
        schema.name
    )))
    .execute(&mut admin)
    .await
    .expect("record a future migration");
    let refused = PostgresBackend::open_with(schema.options(), &schema.url)
        .await
        .expect_err("a database from a newer build is refused");
    let message = refused.to_string();
    assert!(matches!(refused, BackendError::Open { .. }), "{message}");
    assert!(
        message.contains("999") && message.contains("upgrade tsunagi"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_an_open_error_naming_it_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://app:hunter2@127.0.0.1:1/tsunagi";
    let error = tsunagi_backends::open(url)
        .await
        .err()
        .expect("nothing listens on port 1");
    let message = error.to_string();
    assert!(
        message.contains("postgres://app:***@127.0.0.1:1/tsunagi"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}
