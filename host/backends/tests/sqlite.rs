//! Runs the backend conformance suite against the embedded SQLite backend, each case on a
//! fresh database file in its own temporary directory, plus SQLite-specific checks.

use std::sync::Arc;
use tsunagi_backends::conformance::{BackendFuture, T0, TestStore};
use tsunagi_backends::sqlite::SqliteBackend;
use tsunagi_backends::{Backend, BackendError, ItemStore, StateScope, TargetStore};

async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir
        .path()
        .join("tsunagi.db")
        .to_str()
        .expect("temporary paths are UTF-8")
        .to_string();
    let backend = SqliteBackend::open(&path).await.expect("open SQLite");
    let reopen = move || -> BackendFuture {
        let path = path.clone();
        Box::pin(async move {
            let second = SqliteBackend::open(&path)
                .await
                .expect("open the same SQLite file again");
            Arc::new(second) as Arc<dyn Backend>
        })
    };
    TestStore::new(Arc::new(backend) as Arc<dyn Backend>, reopen).keep_alive(dir)
}

tsunagi_backends::conformance_tests!(sqlite_store);

/// The RSS crawl's scale: 210,000 feeds imported in one call (timing belongs in benchmarks).
#[tokio::test]
async fn imports_210_000_targets_in_one_call() {
    let store = sqlite_store().await;
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
async fn reopening_keeps_the_data_and_the_schema() {
    let store = sqlite_store().await;
    store
        .backend
        .add_targets("rss", &["https://a.example/".to_string()], T0)
        .await
        .expect("add");
    store
        .backend
        .set_state("rss", StateScope::Connector, "k", Some("v"))
        .await
        .expect("set_state");
    let reopened = store.reopen().await;
    assert_eq!(reopened.kind(), "sqlite");
    assert_eq!(reopened.count_targets("rss").await.expect("count"), 1);
    assert_eq!(
        reopened
            .get_state("rss", StateScope::Connector, "k")
            .await
            .expect("get_state")
            .as_deref(),
        Some("v")
    );
}

#[tokio::test]
async fn open_through_the_url_helper_creates_the_file() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("nested.db");
    let url = format!("sqlite://{}", path.display());
    let backend = tsunagi_backends::open(&url).await.expect("open by URL");
    assert_eq!(backend.kind(), "sqlite");
    assert!(path.exists(), "the database file was created");
    assert!(matches!(
        tsunagi_backends::open("postgres://localhost/db").await,
        Err(BackendError::Open { .. })
    ));
}

#[tokio::test]
async fn in_memory_databases_are_refused() {
    let error = SqliteBackend::open(":memory:").await.expect_err("refused");
    assert!(error.to_string().contains(":memory:"), "{error}");
}

/// Corrupt JSON in the items table is reported as corruption, not a panic.
#[tokio::test]
async fn corrupt_item_json_is_reported() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("corrupt.db");
    let path = path.to_str().expect("temporary paths are UTF-8");
    let backend = SqliteBackend::open(path).await.expect("open");

    // Write a bad row behind the backend's back, through a connection of our own.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("raw connection");
    sqlx::query(
        "INSERT INTO items (connector, item_id, target, fetched_at, data) \
         VALUES ('rss', 'x', 'feed', 0, '{not json')",
    )
    .execute(&pool)
    .await
    .expect("insert a corrupt row");
    pool.close().await;

    let error = backend
        .list_items(&Default::default())
        .await
        .expect_err("corrupt JSON is an error");
    assert!(
        matches!(error, BackendError::Corrupt { .. }),
        "unexpected error: {error}"
    );
}

/// A database written by schema version 1 (before dead letters) opens, is upgraded in place,
/// and keeps its targets.
#[tokio::test]
async fn a_version_1_database_is_upgraded_in_place() {
    use sqlx::ConnectOptions;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("old.db");
    {
        let mut old = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .expect("create a version 1 file");
        sqlx::raw_sql(include_str!("../src/sqlite/schema.sql"))
            .execute(&mut old)
            .await
            .expect("version 1 schema");
        sqlx::query(
            "INSERT INTO targets (connector, target, next_run_at) VALUES ('rss', 'old', 5)",
        )
        .execute(&mut old)
        .await
        .expect("a version 1 target");
    }
    let backend = SqliteBackend::open(path.to_str().expect("UTF-8 path"))
        .await
        .expect("open and upgrade");
    let target = backend
        .get_target("rss", "old")
        .await
        .expect("get")
        .expect("the old target survives");
    assert_eq!(
        (target.next_run_at, target.dead_at, target.refused_at),
        (5, None, None)
    );
    assert!(target.history.is_empty());
    assert!(
        backend
            .list_dead_targets(None, 0, 10)
            .await
            .expect("list")
            .is_empty()
    );
    backend.close().await;
    // Opening again does not apply the upgrade twice.
    SqliteBackend::open(path.to_str().expect("UTF-8 path"))
        .await
        .expect("reopen");
}

/// A version 2 database (before retention) with a delivery still waiting: upgraded in place,
/// the waiting delivery holds its items against retention as a new one would.
#[tokio::test]
async fn a_version_2_database_is_upgraded_and_its_waiting_deliveries_hold_their_items() {
    use sqlx::ConnectOptions;
    use tsunagi_backends::{ItemPosition, JobQueue, RetentionStore};
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("v2.db");
    {
        let mut old = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .expect("create a version 2 file");
        for schema in [
            include_str!("../src/sqlite/schema.sql"),
            include_str!("../src/sqlite/schema_v2.sql"),
        ] {
            sqlx::raw_sql(schema)
                .execute(&mut old)
                .await
                .expect("version 2 schema");
        }
        sqlx::raw_sql(
            "INSERT INTO items (connector, item_id, target, fetched_at, data) VALUES \
             ('rss', 'old', 'feed', 5, '{\"id\":\"old\",\"authors\":[],\"categories\":[]}'), \
             ('rss', 'waiting', 'feed', 6, \
             '{\"id\":\"waiting\",\"authors\":[],\"categories\":[]}'); \
             INSERT INTO jobs (queue, payload, state, max_attempts, run_at, updated_at) VALUES \
             ('sink:file', '[{\"seq\":2,\"connector\":\"rss\",\"target\":\"feed\",\
             \"fetched_at\":6,\"id\":\"waiting\"}]', 'queued', 3, 6, 6), \
             ('sink:file', '', 'done', 3, 5, 5), \
             ('other', 'not json', 'queued', 3, 5, 5);",
        )
        .execute(&mut old)
        .await
        .expect("version 2 rows");
    }
    let backend = SqliteBackend::open(path.to_str().expect("UTF-8 path"))
        .await
        .expect("open and upgrade");
    let report = backend
        .forget_items("rss", ItemPosition::fetched_at(i64::MAX), T0, 100)
        .await
        .expect("forget");
    assert_eq!(
        (report.examined, report.forgotten, report.held),
        (2, 1, 1),
        "the waiting delivery holds its item"
    );
    let left: Vec<String> = backend
        .list_items(&Default::default())
        .await
        .expect("list")
        .into_iter()
        .map(|stored| stored.item.id)
        .collect();
    assert_eq!(left, ["waiting"]);
    assert_eq!(
        backend.purge_done_jobs(T0, 100).await.expect("purge"),
        1,
        "the old done job"
    );
    assert_eq!(
        backend.queue_counts("other").await.expect("counts").queued,
        1
    );
}
