//! [`RetentionStore`] for PostgreSQL: forgetting old items, purging done jobs and forgotten
//! ids, each call one short batch, and measuring the backend's tables.
//!
//! Several hosts may run retention at once, and commits go on meanwhile. Purges take their
//! rows with `FOR UPDATE SKIP LOCKED`, so two runners never wait on each other's batch and a
//! row another writer holds is left for a later pass. Forgetting items takes the items
//! advisory lock that poll commits take before storing items: a batch and a commit then never
//! interleave, so a delivery a commit enqueues is seen before its items could be forgotten,
//! and an item being forgotten cannot be stored as new by a commit that checked
//! `forgotten_items` too early. That lock is held for one batch only (at most
//! [`crate::MAX_RETENTION_BATCH`] items), the bound on how long retention can hold a commit back.

use super::{ITEMS_LOCK, PostgresBackend};
use crate::sql::{batch_limit, count, db_error, forget_report, rows_per_table, unheld};
use crate::{ForgetReport, ItemPosition, Millis, Result, RetentionStore, StorageStats};
use async_trait::async_trait;

/// The connector's oldest items before a position (`fetched_at`, `seq`), in storage order.
/// A range scan on `items_by_age` (connector, fetched_at, seq) that stops after `$4` rows.
const OLDEST_BEFORE: &str = "\
SELECT seq FROM items
WHERE connector = $1 AND fetched_at <= $2 AND (fetched_at < $2 OR seq < $3)
ORDER BY fetched_at, seq LIMIT $4";

/// The lowest `seq` a queued or leased delivery of the connector still holds.
/// (An ordered read of `jobs_pending_items` that stops at its first row, where `MIN()` might
/// read every waiting delivery of the connector: thousands while a sink is down.)
const HELD_FROM: &str = "\
SELECT first_item_seq FROM jobs
WHERE item_connector = $1 AND state IN ('queued', 'leased') AND first_item_seq IS NOT NULL
ORDER BY first_item_seq LIMIT 1";

/// Deletes the doomed items (`$1`, their `seq`s) and remembers their ids as forgotten at `$2`,
/// in one statement.
const FORGET: &str = "\
WITH gone AS (
    DELETE FROM items WHERE seq = ANY($1::bigint[]) RETURNING connector, item_id
)
INSERT INTO forgotten_items (connector, item_id, seen_at)
SELECT connector, item_id, $2 FROM gone
ON CONFLICT (connector, item_id)
DO UPDATE SET seen_at = GREATEST(forgotten_items.seen_at, EXCLUDED.seen_at)";

const PURGE_DONE_JOBS: &str = "\
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE state = 'done' AND updated_at < $1 ORDER BY updated_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)";

/// A commit refreshing an id's `seen_at` locks its row; skipping it keeps an id a poll is
/// seeing right now (the `FOR UPDATE` also rechecks `seen_at` of a row refreshed meanwhile).
const PURGE_FORGOTTEN: &str = "\
DELETE FROM forgotten_items WHERE (connector, item_id) IN (
    SELECT connector, item_id FROM forgotten_items WHERE seen_at < $1 ORDER BY seen_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)";

/// The `keep`-th newest item (OFFSET `keep - 1`), read from `items_by_age` backwards.
const NEWEST_START: &str = "\
SELECT fetched_at, seq FROM items WHERE connector = $1
ORDER BY fetched_at DESC, seq DESC LIMIT 1 OFFSET $2";

/// Every table of the backend's schema, whose sizes (with their indexes and TOAST) make up
/// `database_bytes`: the database may hold other schemas or applications.
const ALL_TABLES: [&str; 10] = [
    "targets",
    "items",
    "forgotten_items",
    "jobs",
    "paused_queues",
    "state",
    "tokens",
    "rankings",
    "websub_subscriptions",
    "websub_deliveries",
];

/// The bytes of the tables named in `$1`, found by the connection's `search_path` (a table
/// missing is none).
const TABLES_BYTES: &str = "\
SELECT COALESCE(SUM(pg_total_relation_size(to_regclass(name))), 0)::bigint
FROM UNNEST($1::text[]) AS name";

/// The rows of each of [`crate::sql::COUNTED_TABLES`], in its order.
const COUNT_ROWS: &str = "\
SELECT (SELECT COUNT(*) FROM targets), (SELECT COUNT(*) FROM items),
       (SELECT COUNT(*) FROM forgotten_items), (SELECT COUNT(*) FROM jobs),
       (SELECT COUNT(*) FROM state)";

#[async_trait]
impl RetentionStore for PostgresBackend {
    async fn purge_done_jobs(&self, done_before: Millis, limit: u32) -> Result<u64> {
        let deleted = sqlx::query(PURGE_DONE_JOBS)
            .bind(done_before)
            .bind(batch_limit(limit))
            .execute(&self.pool)
            .await
            .map_err(db_error("purging done jobs"))?
            .rows_affected();
        Ok(deleted)
    }

    async fn newest_items_start(&self, connector: &str, keep: u64) -> Result<Option<ItemPosition>> {
        let Some(offset) = keep.checked_sub(1) else {
            return Ok(None);
        };
        let row: Option<(Millis, i64)> = sqlx::query_as(NEWEST_START)
            .bind(connector)
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("finding the oldest item a count rule keeps"))?;
        Ok(row.map(|(fetched_at, seq)| ItemPosition { fetched_at, seq }))
    }

    async fn forget_items(
        &self,
        connector: &str,
        before: ItemPosition,
        now: Millis,
        limit: u32,
    ) -> Result<ForgetReport> {
        const CONTEXT: &str = "forgetting old items";
        let mut tx = self.begin(CONTEXT).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ITEMS_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_error(
                "forgetting old items: waiting for commits storing items",
            ))?;
        let oldest: Vec<i64> = sqlx::query_scalar(OLDEST_BEFORE)
            .bind(connector)
            .bind(before.fetched_at)
            .bind(before.seq)
            .bind(batch_limit(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        // Read after the items (each statement sees every commit before it): a delivery
        // holding any of them is committed with its items, so it is seen here.
        let held_from: Option<i64> = sqlx::query_scalar(HELD_FROM)
            .bind(connector)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        let doomed = unheld(&oldest, held_from);
        if !doomed.is_empty() {
            sqlx::query(FORGET)
                .bind(&doomed)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error("forgetting old items: remembering their ids"))?;
        }
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(forget_report(&oldest, &doomed))
    }

    async fn purge_forgotten_ids(&self, seen_before: Millis, limit: u32) -> Result<u64> {
        let deleted = sqlx::query(PURGE_FORGOTTEN)
            .bind(seen_before)
            .bind(batch_limit(limit))
            .execute(&self.pool)
            .await
            .map_err(db_error("purging forgotten item ids"))?
            .rows_affected();
        Ok(deleted)
    }

    async fn count_forgotten_ids(&self) -> Result<u64> {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM forgotten_items")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("counting forgotten item ids"))?;
        Ok(count(rows))
    }

    async fn storage_stats(&self) -> Result<StorageStats> {
        const CONTEXT: &str = "measuring the database";
        let bytes: i64 = sqlx::query_scalar(TABLES_BYTES)
            .bind(ALL_TABLES.map(str::to_string).to_vec())
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(CONTEXT))?;
        let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(COUNT_ROWS)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error(CONTEXT))?;
        let rows = rows_per_table(counts);
        // Space VACUUM freed inside the tables is not measurable without an extension
        // (pgstattuple); the write-ahead log is the server's, shared by every database.
        Ok(StorageStats {
            database_bytes: count(bytes),
            free_bytes: 0,
            wal_bytes: 0,
            rows,
        })
    }
}
