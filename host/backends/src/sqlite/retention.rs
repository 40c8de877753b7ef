//! [`RetentionStore`] for SQLite: forgetting old items, purging done jobs and forgotten ids,
//! each call one short write transaction on the single writer connection, and measuring the
//! file.
//!
//! A batch holds SQLite's write lock only for its own few statements; between batches the
//! writer goes back to its pool, whose waiters (the poll committer, claims, job leases) are
//! served in arrival order before the caller's next batch. That is the bound on how long
//! retention can stall a claim: one batch.

use super::SqliteBackend;
use crate::sql::{batch_limit, count, db_error, forget_report, rows_per_table, unheld};
use crate::{
    BackendError, ForgetReport, ItemPosition, Millis, Result, RetentionStore, StorageStats,
};
use async_trait::async_trait;

/// The lowest `seq` a queued or leased delivery of the connector still holds.
/// (An ordered index read that stops at its first row, where `MIN()` would read every waiting
/// delivery of the connector: thousands while a sink is down.)
const HELD_FROM: &str = "\
SELECT first_item_seq FROM jobs
WHERE item_connector = ?1 AND state IN ('queued', 'leased') AND first_item_seq IS NOT NULL
ORDER BY first_item_seq LIMIT 1";

/// The connector's oldest items before a position (`fetched_at`, `seq`), as one JSON array of
/// `seq`s. The range scan on `items_by_age` (connector, fetched_at, then the rowid `seq`)
/// stops after `?4` rows.
const OLDEST_BEFORE: &str = "\
SELECT json_group_array(seq) FROM (
    SELECT seq FROM items
    WHERE connector = ?1 AND fetched_at <= ?2 AND (fetched_at < ?2 OR seq < ?3)
    ORDER BY fetched_at, seq LIMIT ?4
)";

/// Remembers the ids of the items about to be deleted (a JSON array of `seq`s).
const REMEMBER_FORGOTTEN: &str = "\
INSERT INTO forgotten_items (connector, item_id, seen_at)
SELECT connector, item_id, ?2 FROM items WHERE seq IN (SELECT value FROM json_each(?1))
ON CONFLICT (connector, item_id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)";

const DELETE_ITEMS: &str = "DELETE FROM items WHERE seq IN (SELECT value FROM json_each(?1))";

const PURGE_DONE_JOBS: &str = "\
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE state = 'done' AND updated_at < ?1 ORDER BY updated_at LIMIT ?2
)";

const PURGE_FORGOTTEN: &str = "\
DELETE FROM forgotten_items WHERE (connector, item_id) IN (
    SELECT connector, item_id FROM forgotten_items WHERE seen_at < ?1 ORDER BY seen_at LIMIT ?2
)";

/// The `keep`-th newest item (OFFSET `keep - 1`), read from the index alone.
const NEWEST_START: &str = "\
SELECT fetched_at, seq FROM items WHERE connector = ?1
ORDER BY fetched_at DESC, seq DESC LIMIT 1 OFFSET ?2";

/// The rows of each of [`crate::sql::COUNTED_TABLES`], in its order.
const COUNT_ROWS: &str = "\
SELECT (SELECT COUNT(*) FROM targets), (SELECT COUNT(*) FROM items),
       (SELECT COUNT(*) FROM forgotten_items), (SELECT COUNT(*) FROM jobs),
       (SELECT COUNT(*) FROM state)";

#[async_trait]
impl RetentionStore for SqliteBackend {
    async fn purge_done_jobs(&self, done_before: Millis, limit: u32) -> Result<u64> {
        let deleted = sqlx::query(PURGE_DONE_JOBS)
            .bind(done_before)
            .bind(batch_limit(limit))
            .execute(&self.writer)
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
            .fetch_optional(&self.reader)
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
        let mut tx = self.begin_write(CONTEXT).await?;
        let held_from: Option<i64> = sqlx::query_scalar(HELD_FROM)
            .bind(connector)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        let oldest: String = sqlx::query_scalar(OLDEST_BEFORE)
            .bind(connector)
            .bind(before.fetched_at)
            .bind(before.seq)
            .bind(batch_limit(limit))
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        let oldest: Vec<i64> =
            serde_json::from_str(&oldest).map_err(|e| BackendError::Corrupt {
                context: CONTEXT,
                reason: e.to_string(),
            })?;
        let doomed = unheld(&oldest, held_from);
        if !doomed.is_empty() {
            let doomed_json =
                serde_json::to_string(&doomed).map_err(|e| BackendError::Corrupt {
                    context: CONTEXT,
                    reason: e.to_string(),
                })?;
            sqlx::query(REMEMBER_FORGOTTEN)
                .bind(&doomed_json)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error("forgetting old items: remembering their ids"))?;
            sqlx::query(DELETE_ITEMS)
                .bind(&doomed_json)
                .execute(&mut *tx)
                .await
                .map_err(db_error(CONTEXT))?;
        }
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(forget_report(&oldest, &doomed))
    }

    async fn purge_forgotten_ids(&self, seen_before: Millis, limit: u32) -> Result<u64> {
        let deleted = sqlx::query(PURGE_FORGOTTEN)
            .bind(seen_before)
            .bind(batch_limit(limit))
            .execute(&self.writer)
            .await
            .map_err(db_error("purging forgotten item ids"))?
            .rows_affected();
        Ok(deleted)
    }

    async fn count_forgotten_ids(&self) -> Result<u64> {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM forgotten_items")
            .fetch_one(&self.reader)
            .await
            .map_err(db_error("counting forgotten item ids"))?;
        Ok(count(rows))
    }

    async fn storage_stats(&self) -> Result<StorageStats> {
        const CONTEXT: &str = "measuring the database";
        let (pages, page_size, free_pages): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT page_count FROM pragma_page_count()), \
             (SELECT page_size FROM pragma_page_size()), \
             (SELECT freelist_count FROM pragma_freelist_count())",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(db_error(CONTEXT))?;
        let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(COUNT_ROWS)
            .fetch_one(&self.reader)
            .await
            .map_err(db_error(CONTEXT))?;
        let rows = rows_per_table(counts);
        // No WAL file (never written, or checkpointed and removed) is an empty log.
        let wal_bytes = tokio::fs::metadata(format!("{}-wal", self.path))
            .await
            .map_or(0, |meta| meta.len());
        Ok(StorageStats {
            database_bytes: count(pages).saturating_mul(count(page_size)),
            free_bytes: count(free_pages).saturating_mul(count(page_size)),
            wal_bytes,
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Retention must never scan a large table: each statement's query plan, from the SQLite
    //! this build links, names the index it searches.

    use super::*;

    use crate::sql::COUNTED_TABLES as TABLES;
    use crate::sqlite::query_plan as plan;

    #[tokio::test]
    async fn retention_and_the_commit_path_search_indexes_and_scan_no_table() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("plans.db");
        let backend = SqliteBackend::open(path.to_str().expect("UTF-8 path"))
            .await
            .expect("open");
        let cases = [
            (
                HELD_FROM,
                "INDEX jobs_pending_items (item_connector=? AND first_item_seq>?)",
            ),
            (OLDEST_BEFORE, "INDEX items_by_age"),
            (NEWEST_START, "INDEX items_by_age"),
            (REMEMBER_FORGOTTEN, "USING INTEGER PRIMARY KEY"),
            (DELETE_ITEMS, "USING INTEGER PRIMARY KEY"),
            (PURGE_DONE_JOBS, "INDEX jobs_done"),
            (PURGE_FORGOTTEN, "INDEX forgotten_items_by_seen"),
            (
                super::super::commits::REFRESH_FORGOTTEN,
                "USING PRIMARY KEY",
            ),
            (super::super::commits::INSERT_ITEMS, "USING PRIMARY KEY"),
        ];
        for (sql, expected) in cases {
            let plan = plan(&backend, sql).await;
            assert!(
                plan.contains(expected),
                "expected {expected:?} in:\n{plan}\nfor {sql}"
            );
            for line in plan.lines() {
                // "SCAN items", "SCAN jobs USING INDEX …": every row of a table (a scan of a
                // subquery or of the JSON batch is fine).
                let scans_a_table = TABLES.iter().any(|table| {
                    line.trim_start()
                        .strip_prefix("SCAN ")
                        .is_some_and(|rest| rest.split(' ').next() == Some(*table))
                });
                assert!(!scans_a_table, "{line:?} in:\n{plan}\nfor {sql}");
                // An ORDER BY the index does not serve would sort every matching row.
                assert!(
                    !line.contains("TEMP B-TREE FOR ORDER BY"),
                    "{line:?} for {sql}"
                );
            }
        }
    }
}
