//! [`TargetStore`] for SQLite: the target table and leased claims. Poll commits are handed to
//! the group committer in `commits`.

use super::SqliteBackend;
use crate::sql::{db_error, effective_limit, lease_deadline, target_from_row, to_u32};
use crate::{
    AddReport, Attempt, BackendError, CommitReport, Millis, PollCommit, Result, Target,
    TargetClaim, TargetStore,
};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};
use std::time::Duration;

/// The columns [`target_from_row`] reads, in its order, as a literal so it can be spliced into static SQL.
macro_rules! target_columns {
    () => {
        "id, connector, target, next_run_at, etag, last_modified, cursor, error_count, \
         last_error, last_polled_at, interval_ms, dead_at, history, refused_at, refused_reason"
    };
}

/// Rows per `INSERT` when importing targets: 3 parameters each stays far below SQLite's limit
/// of 32,766 bound parameters while making statement overhead negligible.
const TARGET_INSERT_CHUNK: usize = 5_000;

/// A target as [`target_columns!`] lists it, in one JSON array.
type TargetTuple = (
    i64,
    String,
    String,
    Millis,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<Millis>,
    Option<i64>,
    Option<Millis>,
    Option<Vec<Attempt>>,
);

/// Reads `json_group_array(json_array(<target columns>))`, the history as nested JSON.
fn targets_from_json(json: &str) -> Result<Vec<Target>> {
    let tuples: Vec<TargetTuple> =
        serde_json::from_str(json).map_err(|e| BackendError::Corrupt {
            context: "reading claimed targets",
            reason: e.to_string(),
        })?;
    tuples
        .into_iter()
        .map(|tuple| {
            let (id, connector, target, next_run_at, etag, last_modified, cursor) = (
                tuple.0, tuple.1, tuple.2, tuple.3, tuple.4, tuple.5, tuple.6,
            );
            Ok(Target {
                id,
                connector,
                target,
                next_run_at,
                etag,
                last_modified,
                cursor,
                error_count: to_u32(tuple.7, "reading a target's error count")?,
                last_error: tuple.8,
                last_polled_at: tuple.9,
                interval_ms: tuple.10,
                dead_at: tuple.11,
                history: tuple.12.unwrap_or_default(),
                // Parked targets are never due, so never claimed.
                refused_at: None,
                refused_reason: None,
            })
        })
        .collect()
}

impl SqliteBackend {
    /// Runs a page query over targets: `?1` the connector or NULL, `?2` the id to start after,
    /// `?3` the page size.
    async fn page_of_targets(
        &self,
        sql: &'static str,
        (connector, after_id, limit): (Option<&str>, i64, u32),
        context: &'static str,
    ) -> Result<Vec<Target>> {
        let rows = sqlx::query(sql)
            .bind(connector)
            .bind(after_id)
            .bind(effective_limit(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(db_error(context))?;
        rows.iter().map(target_from_row).collect()
    }
}

#[async_trait]
impl TargetStore for SqliteBackend {
    async fn add_targets(
        &self,
        connector: &str,
        targets: &[String],
        first_run_at: Millis,
    ) -> Result<AddReport> {
        const CONTEXT: &str = "adding targets";
        crate::check_targets(targets)?;
        // One transaction for the whole import: one WAL commit instead of one per chunk.
        let mut tx = self.begin_write(CONTEXT).await?;
        let mut added = 0;
        let mut insert = QueryBuilder::<Sqlite>::new("");
        for chunk in targets.chunks(TARGET_INSERT_CHUNK) {
            insert.reset();
            insert.push("INSERT INTO targets (connector, target, next_run_at) ");
            insert.push_values(chunk, |mut row, target| {
                row.push_bind(connector)
                    .push_bind(target.as_str())
                    .push_bind(first_run_at);
            });
            insert.push(" ON CONFLICT (connector, target) DO NOTHING");
            added += insert
                .build()
                // Bulk statements are one-offs; keep them out of the statement cache.
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(db_error(CONTEXT))?
                .rows_affected();
        }
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(AddReport {
            added,
            already_present: targets.len() as u64 - added,
        })
    }

    async fn remove_target(&self, connector: &str, target: &str) -> Result<bool> {
        const CONTEXT: &str = "removing a target";
        let mut tx = self.begin_write(CONTEXT).await?;
        let removed: Option<i64> = sqlx::query_scalar(
            "DELETE FROM targets WHERE connector = ?1 AND target = ?2 RETURNING id",
        )
        .bind(connector)
        .bind(target)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        let Some(id) = removed else {
            return Ok(false);
        };
        delete_rows_of(&mut tx, connector, id, CONTEXT).await?;
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(true)
    }

    async fn get_target(&self, connector: &str, target: &str) -> Result<Option<Target>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            target_columns!(),
            " FROM targets WHERE connector = ?1 AND target = ?2"
        ))
        .bind(connector)
        .bind(target)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error("looking up a target"))?;
        row.as_ref().map(target_from_row).transpose()
    }

    async fn list_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>> {
        self.page_of_targets(
            concat!(
                "SELECT ",
                target_columns!(),
                " FROM targets WHERE (?1 IS NULL OR connector = ?1) AND id > ?2 ",
                "ORDER BY id LIMIT ?3"
            ),
            (connector, after_id, limit),
            "listing targets",
        )
        .await
    }

    async fn claim_due(
        &self,
        connector: &str,
        worker: &str,
        now: Millis,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<TargetClaim>> {
        const CONTEXT: &str = "claiming due targets";
        let lease_until = lease_deadline(now, lease);
        // Under the write lock, so no other connection or process can pick the same rows. The
        // rows come back as one JSON value: sqlx hands each result row across threads on its
        // own, which cost more than the claim itself.
        let mut tx = self.begin_write(CONTEXT).await?;
        let due: String = sqlx::query_scalar(concat!(
            "SELECT json_group_array(json_array(id, connector, target, next_run_at, etag, ",
            "last_modified, cursor, error_count, last_error, last_polled_at, interval_ms, ",
            "dead_at, json(history))) FROM (SELECT ",
            target_columns!(),
            " FROM targets WHERE connector = ?1 AND next_run_at <= ?2 ",
            "AND (lease_until IS NULL OR lease_until < ?2) ",
            "ORDER BY next_run_at, id LIMIT ?3)"
        ))
        .bind(connector)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        let mut targets = targets_from_json(&due)?;
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = targets.iter().map(|target| target.id).collect();
        sqlx::query(
            "UPDATE targets SET lease_owner = ?1, lease_until = ?2 \
             WHERE id IN (SELECT value FROM json_each(?3))",
        )
        .bind(worker)
        .bind(lease_until)
        .bind(serde_json::Value::from(ids).to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        tx.commit().await.map_err(db_error(CONTEXT))?;
        // An aggregate's input order is not promised; the claim's order is.
        targets.sort_by_key(|target| (target.next_run_at, target.id));
        Ok(targets
            .into_iter()
            .map(|target| TargetClaim {
                target,
                worker: worker.to_string(),
                lease_until,
            })
            .collect())
    }

    async fn complete_poll(
        &self,
        claim: &TargetClaim,
        commit: PollCommit,
        now: Millis,
    ) -> Result<CommitReport> {
        // Batched with concurrent commits; see the `commits` module.
        self.committer.commit(claim, commit, now).await
    }

    async fn release(&self, claim: &TargetClaim, next_run_at: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE targets SET lease_owner = NULL, lease_until = NULL, next_run_at = ?1 \
             WHERE id = ?2 AND lease_owner = ?3 AND lease_until = ?4",
        )
        .bind(next_run_at)
        .bind(claim.target.id)
        .bind(&claim.worker)
        .bind(claim.lease_until)
        .execute(&self.writer)
        .await
        .map_err(db_error("releasing a target claim"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn count_due(&self, connector: &str, now: Millis) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM targets WHERE connector = ?1 AND next_run_at <= ?2 \
             AND (lease_until IS NULL OR lease_until < ?2)",
        )
        .bind(connector)
        .bind(now)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error("counting due targets"))?;
        Ok(count.unsigned_abs())
    }

    async fn count_targets(&self, connector: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM targets WHERE connector = ?1")
            .bind(connector)
            .fetch_one(&self.reader)
            .await
            .map_err(db_error("counting targets"))?;
        Ok(count.unsigned_abs())
    }

    async fn list_dead_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>> {
        self.page_of_targets(
            concat!(
                "SELECT ",
                target_columns!(),
                " FROM targets WHERE dead_at IS NOT NULL AND (?1 IS NULL OR connector = ?1) ",
                "AND id > ?2 ORDER BY id LIMIT ?3"
            ),
            (connector, after_id, limit),
            "listing dead targets",
        )
        .await
    }

    async fn revive_target(&self, id: i64, now: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE targets SET dead_at = NULL, next_run_at = ?2, error_count = 0, \
             lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND dead_at IS NOT NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(db_error("reviving a dead target"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn park_refused(&self, claim: &TargetClaim, reason: &str, now: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE targets SET lease_owner = NULL, lease_until = NULL, \
             next_run_at = 9223372036854775807, refused_at = ?1, refused_reason = ?2, \
             last_polled_at = ?1 WHERE id = ?3 AND lease_owner = ?4 AND lease_until = ?5",
        )
        .bind(now)
        .bind(reason)
        .bind(claim.target.id)
        .bind(&claim.worker)
        .bind(claim.lease_until)
        .execute(&self.writer)
        .await
        .map_err(db_error("parking a refused target"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn release_refused(&self, connector: &str, now: Millis) -> Result<u64> {
        let released = sqlx::query(
            "UPDATE targets SET refused_at = NULL, refused_reason = NULL, next_run_at = ?2 \
             WHERE connector = ?1 AND refused_at IS NOT NULL",
        )
        .bind(connector)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(db_error("releasing refused targets"))?
        .rows_affected();
        Ok(released)
    }

    async fn wake_target(&self, target: &str, now: Millis) -> Result<u64> {
        let woken = sqlx::query(
            "UPDATE targets SET next_run_at = MIN(next_run_at, ?2) \
             WHERE target = ?1 AND dead_at IS NULL AND refused_at IS NULL",
        )
        .bind(target)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(db_error("waking a pinged target"))?
        .rows_affected();
        Ok(woken)
    }

    async fn wake_targets_under(&self, prefix: &str, now: Millis, limit: u32) -> Result<u64> {
        // A range on the target index: every string starting with `prefix` sorts at or after
        // it and before `prefix` with its last byte raised by one (bytes compare as memcmp).
        let Some(upper) = prefix_upper_bound(prefix) else {
            return Ok(0);
        };
        let woken = sqlx::query(
            "UPDATE targets SET next_run_at = MIN(next_run_at, ?3) WHERE id IN ( \
               SELECT id FROM targets WHERE target >= ?1 AND target < ?2 \
               AND dead_at IS NULL AND refused_at IS NULL ORDER BY id LIMIT ?4)",
        )
        .bind(prefix)
        .bind(upper)
        .bind(now)
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(db_error("waking a pinged site's targets"))?
        .rows_affected();
        Ok(woken)
    }

    async fn list_refused_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>> {
        self.page_of_targets(
            concat!(
                "SELECT ",
                target_columns!(),
                " FROM targets WHERE refused_at IS NOT NULL AND (?1 IS NULL OR connector = ?1) ",
                "AND id > ?2 ORDER BY id LIMIT ?3"
            ),
            (connector, after_id, limit),
            "listing refused targets",
        )
        .await
    }

    async fn count_refused(&self, connector: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM targets WHERE connector = ?1 AND refused_at IS NOT NULL",
        )
        .bind(connector)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error("counting refused targets"))?;
        Ok(count.unsigned_abs())
    }

    async fn drop_dead_target(&self, id: i64) -> Result<bool> {
        const CONTEXT: &str = "dropping a dead target";
        let mut tx = self.begin_write(CONTEXT).await?;
        let connector: Option<String> = sqlx::query_scalar(
            "DELETE FROM targets WHERE id = ?1 AND dead_at IS NOT NULL RETURNING connector",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        let Some(connector) = connector else {
            return Ok(false);
        };
        delete_rows_of(&mut tx, &connector, id, CONTEXT).await?;
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(true)
    }
}

/// What a deleted target leaves behind: its state, and its WebSub subscription and waiting
/// deliveries (the hub's next delivery then answers 410 Gone).
async fn delete_rows_of(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    connector: &str,
    id: i64,
    context: &'static str,
) -> Result<()> {
    for statement in [
        "DELETE FROM state WHERE connector = ?1 AND scope_target_id = ?2",
        "DELETE FROM websub_subscriptions WHERE connector = ?1 AND target_id = ?2",
        "DELETE FROM websub_deliveries WHERE connector = ?1 AND target_id = ?2",
    ] {
        sqlx::query(statement)
            .bind(connector)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db_error(context))?;
    }
    Ok(())
}

/// The least string greater than every string that starts with `prefix`, when `prefix` ends in
/// an ASCII character below `~` (URL prefixes end in `/`); none otherwise.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if !(b' '..b'~').contains(&last) {
        return None;
    }
    let mut upper = prefix[..prefix.len() - 1].to_string();
    upper.push(char::from(last + 1));
    Some(upper)
}
