//! Runs the backend conformance suite against PostgreSQL, each case in a fresh schema of its
//! own on the server `TSUNAGI_TEST_POSTGRES` names (default: the local test database that
//! `scripts/services` starts), plus PostgreSQL-specific checks.
//!
//! The server must be up: a case fails, naming the URL, rather than skipping.

use std::sync::Arc;
use tsunagi_backends::conformance::{BackendFuture, T0, TestStore};
use tsunagi_backends::postgres::PostgresBackend;
use tsunagi_backends::postgres::testing::TestSchema;
use tsunagi_backends::{Backend, BackendError};

async fn postgres_store() -> TestStore {
    let schema = Arc::new(TestSchema::create().await);
    let backend = schema.open().await;
    let again = schema.clone();
    let reopen = move || -> BackendFuture {
        let schema = again.clone();
        Box::pin(async move { Arc::new(schema.open().await) as Arc<dyn Backend> })
    };
    TestStore::new(Arc::new(backend) as Arc<dyn Backend>, reopen).keep_alive(schema)
}

tsunagi_backends::conformance_tests!(postgres_store);

/// The RSS crawl's scale: 210,000 feeds imported in one call (timing belongs in benchmarks).
#[tokio::test]
async fn imports_210_000_targets_in_one_call() {
    let store = postgres_store().await;
    let backend = &store.backend;
    let feeds: Vec<String> = (0..210_000)
        .map(|n| format!("https://feeds.example/{n}.xml"))
        .collect();
    let report = backend
        .add_targets("rss", &feeds, T0)
        .await
        .expect("import");
    assert_eq!(report.added, 210_000);
    assert_eq!(report.already_present, 0);
    assert_eq!(backend.count_targets("rss").await.expect("count"), 210_000);

    // A re-import with 1,000 new feeds adds only those.
    let more: Vec<String> = (209_000..211_000)
        .map(|n| format!("https://feeds.example/{n}.xml"))
        .collect();
    let report = backend.add_targets("rss", &more, T0).await.expect("import");
    assert_eq!(report.added, 1_000);
    assert_eq!(report.already_present, 1_000);
    assert_eq!(
        backend.count_due("rss", T0).await.expect("count_due"),
        211_000
    );
}

#[tokio::test]
async fn opening_twice_keeps_the_schema_and_a_newer_one_is_refused() {
    let schema = TestSchema::create().await;
    let first = schema.open().await;
    assert_eq!(first.kind(), "postgres");
    // A second open finds every migration applied and changes nothing.
    let second = schema.open().await;
    second.close().await;

    // A migration this build does not know: the database was migrated by a newer tsunagi.
    let mut admin = schema.admin().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}._sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (999, 'from the future', true, '\\x00', 0)",
        schema.name()
    )))
    .execute(&mut admin)
    .await
    .expect("record a future migration");
    let refused = PostgresBackend::open_with(schema.options(), schema.server())
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
