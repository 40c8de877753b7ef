//! The scale-out backend: PostgreSQL holding targets, items, jobs, state, tokens, rankings and
//! WebSub subscriptions, shared by every host of a cluster.
//!
//! Many hosts (and many tasks of each) write at once, so nothing here relies on a single
//! writer: claims and job leases take rows with `FOR UPDATE SKIP LOCKED` (two hosts never
//! take the same row, and neither waits for the other's), completions are guarded by the
//! lease they name, and the capped writes (state within a quota, a board's member cap) lock
//! what they check. Commits that store items take one transaction-scoped advisory lock first,
//! so item `seq`s follow commit order as they do on SQLite.
//!
//! Job completions are group-committed: concurrent ones share one statement (`completions`).
//!
//! The schema is versioned by sqlx's migrator (`migrations/`, embedded in the binary); a
//! database migrated by a newer build is refused rather than written to. The other trait
//! implementations live in one submodule per capability, as the SQLite backend's do.

mod completions;
mod items;
mod jobs;
mod rankings;
mod retention;
mod state;
mod subscriptions;
mod targets;
pub mod testing;
mod tokens;

pub use completions::CompletionStats;

use crate::sql::db_error;
use crate::{Backend, BackendError, Result};
use completions::Completions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// Connections per instance. Each host runs one instance; a cluster of N hosts holds N times
/// this many of the server's `max_connections` (100 by default).
const MAX_CONNECTIONS: u32 = 16;
/// How long an operation waits for a pooled connection (writers queue here under load).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long opening waits for the server before the host reports it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded migrations, applied in order at open.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/postgres/migrations");

/// The advisory lock (`pg_advisory_xact_lock`) a transaction takes before inserting items, so
/// item sequence numbers are handed out in commit order. An arbitrary constant: "tsunagi" in
/// ASCII.
const ITEMS_LOCK: i64 = 0x0074_7375_6e61_6769;

/// SQL appending one failed attempt (`at`, `error`: SQL expressions, e.g. `"$3"`) to the JSONB
/// history in `column`, keeping the latest [`crate::MAX_HISTORY`] (10).
macro_rules! append_history {
    ($column:literal, $at:literal, $error:literal) => {
        concat!(
            "(CASE WHEN jsonb_array_length(COALESCE(",
            $column,
            ", '[]'::jsonb)) >= 10 THEN COALESCE(",
            $column,
            ", '[]'::jsonb) - 0 ELSE COALESCE(",
            $column,
            ", '[]'::jsonb) END) || jsonb_build_array(jsonb_build_object('at', ",
            $at,
            "::bigint, 'error', ",
            $error,
            "::text))"
        )
    };
}
pub(crate) use append_history;

/// The PostgreSQL backend: a connection pool on one database (and schema). Cheap to share
/// behind an `Arc`; open one per process.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    /// The URL it was opened with, its password hidden: for errors and logs.
    url: String,
    /// The batcher job completions go through (`completions.rs`): one statement for all that
    /// are waiting. It ends when the last clone of this backend is dropped.
    completions: Completions,
}

impl PostgresBackend {
    /// Opens the database a `postgres://` URL names and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| BackendError::Open {
            url: redact_url(url),
            reason: format!(
                "not a PostgreSQL URL: {}",
                redact_error(&e.to_string(), url)
            ),
        })?;
        Self::open_with(options, &redact_url(url)).await
    }

    /// Opens the database `options` name; `shown_url` names it in errors. Tests use this to
    /// put each case in a schema of its own (`options(search_path=…)`).
    pub async fn open_with(options: PgConnectOptions, shown_url: &str) -> Result<Self> {
        let connecting = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options);
        let pool = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => return Err(open_error(shown_url, "connecting", &e)),
            Err(_) => {
                return Err(BackendError::Open {
                    url: shown_url.to_string(),
                    reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
                });
            }
        };
        migrate(&pool, shown_url).await?;
        let (completions, _batcher) = Completions::start(pool.clone());
        Ok(Self {
            pool,
            url: shown_url.to_string(),
            completions,
        })
    }

    /// The URL this backend was opened with, its password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many statements this instance's job completions took, and how many completions they
    /// carried (fewer statements: completions were batched).
    pub fn completion_stats(&self) -> CompletionStats {
        self.completions.stats()
    }

    /// Closes the pool, waiting for in-flight operations; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction on a pooled connection.
    async fn begin(&self, context: &'static str) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_error(context))
    }
}

impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }
}

/// Applies the embedded migrations this database lacks, refusing one migrated by a newer
/// build (it holds migrations this build does not know).
async fn migrate(pool: &PgPool, url: &str) -> Result<()> {
    match MIGRATOR.run(pool).await {
        Ok(()) => Ok(()),
        Err(sqlx::migrate::MigrateError::VersionMissing(version)) => Err(BackendError::Open {
            url: url.to_string(),
            reason: format!(
                "the database has schema version {version}, which this build does not know \
                 (its newest is {}); upgrade tsunagi",
                MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
            ),
        }),
        Err(e) => Err(open_error(url, "bringing the schema up to date", &e)),
    }
}

/// `url` with its password (if any) replaced by `***`, for errors and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_string(),
    }
}

/// `message` with the password of `url` (if it appears) hidden.
pub(crate) fn redact_error(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => message.replace(password, "***"),
        None => message.to_string(),
    }
}

fn open_error(url: &str, doing: &str, error: &dyn std::fmt::Display) -> BackendError {
    BackendError::Open {
        url: url.to_string(),
        reason: format!("{doing}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_urls_and_errors() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/tsunagi?sslmode=require"),
            "postgres://app:***@db.example:5432/tsunagi?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db.example/tsunagi"),
            "postgres://app@db.example/tsunagi"
        );
        assert_eq!(redact_url("postgres://db.example"), "postgres://db.example");
        assert_eq!(
            redact_error(
                "bad port in postgres://app:s3cret@db.example:x/t",
                "postgres://app:s3cret@db.example:x/t"
            ),
            "bad port in postgres://app:***@db.example:x/t"
        );
    }
}
