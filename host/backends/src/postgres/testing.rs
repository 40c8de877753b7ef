//! A fresh schema per test on a shared PostgreSQL server, for this crate's conformance run, the
//! host's end-to-end tests and the benchmarks: each test gets empty tables of its own, and the schema is
//! dropped when the test ends, passed or failed.

use super::PostgresBackend;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server the tests use unless `TSUNAGI_TEST_POSTGRES` names another: the local one that
/// `scripts/services` starts.
pub const DEFAULT_TEST_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL.
pub fn test_server() -> String {
    std::env::var("TSUNAGI_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_SERVER.to_string())
}

/// A schema of its own on the test server, dropped with everything in it on drop.
#[derive(Debug)]
pub struct TestSchema {
    server: String,
    name: String,
}

impl TestSchema {
    /// Creates an empty schema on [`test_server`]. Panics, naming the server, when it is not
    /// reachable: a test must fail rather than skip.
    pub async fn create() -> Self {
        Self::create_on(&test_server()).await
    }

    /// Creates an empty schema on `server` (a benchmark's scratch space).
    pub async fn create_on(server: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tsunagi_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let server = server.to_string();
        let mut admin = connect(&server).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        )))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {name} on {server}: {e}"));
        Self { server, name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A URL naming the schema, for a host's `database` setting.
    pub fn url(&self) -> String {
        let separator = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options[search_path]={}",
            self.server, self.name
        )
    }

    /// The server's `host:port`, as its URL names it (for a test that puts a proxy in front).
    pub fn address(&self) -> String {
        let options = self.options();
        format!("{}:{}", options.get_host(), options.get_port())
    }

    /// [`Self::url`] with the server reached at `address` instead (a proxy in front of it).
    pub fn url_via(&self, address: &str) -> String {
        self.url().replacen(&self.address(), address, 1)
    }

    /// Connect options naming the schema.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.server)
            .unwrap_or_else(|e| panic!("TSUNAGI_TEST_POSTGRES is not a PostgreSQL URL: {e}"))
            .options([("search_path", self.name.as_str())])
    }

    /// A backend instance on the schema (each call opens a new pool, as another host would).
    pub async fn open(&self) -> PostgresBackend {
        PostgresBackend::open_with(self.options(), &self.server)
            .await
            .unwrap_or_else(|e| panic!("open PostgreSQL in schema {}: {e}", self.name))
    }

    /// A connection to the server outside the schema, for tests that look behind the backend.
    pub async fn admin(&self) -> PgConnection {
        connect(&self.server).await
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if let Err(e) = run_on_server_blocking(&self.server, sql) {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

/// Runs `sql` on `server` from a `Drop` (which may run inside a runtime: a thread of its own
/// blocks on a new one): cleaning up what a test or benchmark made there.
pub fn run_on_server_blocking(server: &str, sql: String) -> Result<(), BoxError> {
    let server = server.to_string();
    std::thread::spawn(move || -> Result<(), BoxError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut admin = PgConnection::connect(&server).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await?;
            Ok(())
        })
    })
    .join()
    .map_err(|_| BoxError::from("the clean-up thread panicked"))?
}

/// Any error of a clean-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn connect(server: &str) -> PgConnection {
    PgConnection::connect(server).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {server} is not reachable ({e}); start it with scripts/services")
    })
}
