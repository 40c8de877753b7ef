//! The embedded backend: one SQLite file (WAL mode) holding targets, items, jobs, state,
//! tokens, rankings and WebSub subscriptions.
//!
//! Several OS processes may share one file. Every write runs on this instance's single writer
//! connection, inside `BEGIN IMMEDIATE` (or as one autocommit statement, which takes the write
//! lock up front just the same), so writers of one process queue in-process for the connection
//! instead of spinning on `SQLITE_BUSY`, and writers of different processes wait on SQLite's
//! file lock through `busy_timeout`. Reads use a small separate pool: in WAL mode readers never
//! block the writer nor it them.
//!
//! Poll commits, the crawl's hot path, are batched by a committer task (group commit, see
//! `commits`): concurrent commits share one transaction. The other trait implementations live
//! in one submodule per capability; `retention` deletes in batches of one short transaction
//! each on the same writer, so commits and claims queue between them.
//!
//! Needs SQLite 3.45 or newer (`jsonb_each`); the bundled SQLite that sqlx builds is.

mod commits;
mod items;
mod jobs;
mod rankings;
mod retention;
mod state;
mod subscriptions;
mod targets;
mod tokens;

use crate::sql::db_error;
use crate::{Backend, BackendError, Result};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::time::Duration;

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an operation waits for a pooled connection (writers queue here under load).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// Read connections per instance; reads are short, so a few suffice.
const READ_CONNECTIONS: u32 = 4;
/// Switching a new file to WAL needs an exclusive lock that `busy_timeout` does not wait for;
/// when two processes create the same file at once, the loser retries this often.
const OPEN_ATTEMPTS: u32 = 50;
const OPEN_RETRY_DELAY: Duration = Duration::from_millis(100);
/// WAL pages (4 KiB each) between automatic checkpoints.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4_000;
/// Page cache per connection (KiB), an upper bound that grows only as pages are read. SQLite's
/// default of 2 MiB holds a tenth of a 210,000-feed target table; every miss is a read syscall
/// on the hot path. Measured on the crawl benchmark: +38% checks/s in the 304 round, +50% in
/// the first.
const PAGE_CACHE_KIB: u32 = 64 * 1024;
/// The schema version this build writes (`PRAGMA user_version`): [`SCHEMA`] creates version 1,
/// then each migration in [`MIGRATIONS`] moves it one version up.
const SCHEMA_VERSION: i64 = 9;
const SCHEMA: &str = include_str!("schema.sql");
const MIGRATIONS: [(i64, &str); 8] = [
    (2, include_str!("schema_v2.sql")),
    (3, include_str!("schema_v3.sql")),
    (4, include_str!("schema_v4.sql")),
    (5, include_str!("schema_v5.sql")),
    (6, include_str!("schema_v6.sql")),
    (7, include_str!("schema_v7.sql")),
    (8, include_str!("schema_v8.sql")),
    (9, include_str!("schema_v9.sql")),
];

/// SQL appending one failed attempt (`at`, `error`: SQL expressions) to the JSON history in
/// `column`, keeping the latest [`crate::MAX_HISTORY`] (10).
macro_rules! append_history {
    ($column:literal, $at:literal, $error:literal) => {
        concat!(
            "json_insert(CASE WHEN json_array_length(COALESCE(",
            $column,
            ", '[]')) >= 10 THEN json_remove(",
            $column,
            ", '$[0]') ELSE COALESCE(",
            $column,
            ", '[]') END, '$[#]', json_object('at', ",
            $at,
            ", 'error', ",
            $error,
            "))"
        )
    };
}
pub(crate) use append_history;

/// The SQLite backend. Cheap to share behind an `Arc`; open one per process (or several on the
/// same file: they coordinate through SQLite's locks exactly like separate processes do).
/// Open it inside the tokio runtime that will use it: its poll committer is a task on that
/// runtime.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    /// Exactly one connection: every write goes through it.
    writer: SqlitePool,
    /// Read-only queries.
    reader: SqlitePool,
    /// Batches concurrent `complete_poll`s into shared transactions on the writer.
    committer: commits::PollCommitter,
    path: String,
}

impl SqliteBackend {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to
    /// date. `":memory:"` is not supported: the two pools would see two different databases.
    pub async fn open(path: &str) -> Result<Self> {
        if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") {
            return Err(BackendError::Open {
                url: path.to_string(),
                reason: "the SQLite backend needs a file path (in-memory databases are not \
                         shared between its connections)"
                    .to_string(),
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives a process crash; only a power loss may
            // drop the last commits. Fsync per commit would cap the crawl at disk IOPS.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false)
            .pragma("cache_size", format!("-{PAGE_CACHE_KIB}"));

        // Checkpoint every ~16 MB of WAL instead of SQLite's 4 MB: hot pages (the targets'
        // index, the items' last leaf) are rewritten by many commits in between and get copied
        // back once. Measured ~30% more poll commits per second on the crawl benchmark.
        let writer_options = options
            .clone()
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let writer = connect_writer(path, &writer_options).await?;
        migrate(&writer, path).await?;

        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            // The file is already in WAL mode; asking again per connection is harmless.
            .connect_with(options)
            .await
            .map_err(|e| open_error(path, "opening read connections", e))?;

        Ok(Self {
            committer: commits::PollCommitter::start(writer.clone()),
            writer,
            reader,
            path: path.to_string(),
        })
    }

    /// The database file this backend uses.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Closes both pools, waiting for in-flight operations; later calls fail.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Starts a write transaction that holds SQLite's write lock from its first statement, so
    /// it can never fail half-way with `SQLITE_BUSY` on lock upgrade.
    async fn begin_write(&self, context: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error(context))
    }
}

impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

/// Opens the single-connection writer pool, retrying while another process holds the
/// exclusive lock needed to switch a brand-new file to WAL.
async fn connect_writer(path: &str, options: &SqliteConnectOptions) -> Result<SqlitePool> {
    let mut attempt = 1;
    loop {
        let connected = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each use: the connection is in-process and the ping would cost a
            // round trip on every write.
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await;
        match connected {
            Ok(pool) => return Ok(pool),
            Err(e) if attempt < OPEN_ATTEMPTS && is_locked(&e) => {
                attempt += 1;
                tokio::time::sleep(OPEN_RETRY_DELAY).await;
            }
            Err(e) => return Err(open_error(path, "opening the write connection", e)),
        }
    }
}

/// Creates the schema if this file has none yet. Runs under the write lock, so concurrent
/// openers apply it once.
async fn migrate(writer: &SqlitePool, path: &str) -> Result<()> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| open_error(path, "locking the database to check its schema", e))?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| open_error(path, "reading the schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(BackendError::Open {
            url: path.to_string(),
            reason: format!(
                "the database has schema version {version}, newer than this build's \
                 {SCHEMA_VERSION}; upgrade tsunagi"
            ),
        });
    }
    if version < 1 {
        sqlx::raw_sql(SCHEMA)
            .execute(&mut *tx)
            .await
            .map_err(|e| open_error(path, "creating the schema", e))?;
    }
    for (target_version, migration) in MIGRATIONS {
        if version < target_version {
            sqlx::raw_sql(migration)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    open_error(
                        path,
                        &format!("upgrading the schema to version {target_version}"),
                        e,
                    )
                })?;
        }
    }
    tx.commit()
        .await
        .map_err(|e| open_error(path, "committing the schema", e))
}

fn is_locked(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), including their extended codes.
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

fn open_error(path: &str, doing: &str, error: sqlx::Error) -> BackendError {
    BackendError::Open {
        url: path.to_string(),
        reason: format!("{doing}: {error}"),
    }
}

/// The query plan SQLite makes for `sql`, one detail line per step: tests check statements
/// search an index rather than scan a table.
#[cfg(test)]
pub(crate) async fn query_plan(backend: &SqliteBackend, sql: &str) -> String {
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&backend.writer)
            .await
            .unwrap_or_else(|e| panic!("cannot plan {sql}: {e}"));
    rows.into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect::<Vec<_>>()
        .join("\n")
}
