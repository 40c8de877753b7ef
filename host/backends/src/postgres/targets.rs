//! [`TargetStore`] for PostgreSQL: the target table, leased claims and poll commits.
//!
//! Claims take rows with `FOR UPDATE SKIP LOCKED`, so hosts claiming at once never take the
//! same target and never wait for each other. Each poll commit is one transaction of its own
//! (no group committer: PostgreSQL takes concurrent writers, and every host has its own
//! pool): the guarded update of the target comes first and locks its row, so a stale or
//! repeated commit of the same claim finds the lease gone and writes nothing.

use super::state::{lock_scope, write_state};
use super::{ITEMS_LOCK, PostgresBackend, append_history};
use crate::sql::{
    NewItem, REFRESH_AFTER_MS, db_error, effective_limit, lease_deadline, target_from_row, to_json,
};
use crate::{
    AddReport, BackendError, CommitReport, Item, Millis, PollCommit, Result, Target, TargetClaim,
    TargetStore,
};
use async_trait::async_trait;
use sqlx::{Postgres, Transaction};
use std::collections::HashSet;
use std::time::Duration;

/// The columns [`target_from_row`] reads, in its order, as a literal so it can be spliced into static SQL.
/// The history is read as text: sqlx's JSONB decoding would need serde_json's `Value` first.
macro_rules! target_columns {
    () => {
        "id, connector, target, next_run_at, etag, last_modified, cursor, error_count, \
         last_error, last_polled_at, interval_ms, dead_at, history::text AS history, \
         refused_at, refused_reason"
    };
}

/// Targets per `INSERT` when importing: array binds have no parameter limit, but one
/// statement per chunk keeps each statement's memory and duration small.
const TARGET_INSERT_CHUNK: usize = 10_000;

/// `next_run_at` of a dead or parked target: never due.
const NEVER: Millis = i64::MAX;

impl PostgresBackend {
    /// Runs a page query over targets: `$1` the connector or NULL, `$2` the id to start after,
    /// `$3` the page size.
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
            .fetch_all(&self.pool)
            .await
            .map_err(db_error(context))?;
        rows.iter().map(target_from_row).collect()
    }
}

/// Success: stores the validators, resets the error count and history. Guarded by the lease
/// (`$7`, `$8`); the `UPDATE` locks the row until the commit.
const COMMIT_SUCCESS: &str = "\
UPDATE targets SET etag = $1, last_modified = $2, cursor = $3, interval_ms = $4,
    error_count = 0, last_error = NULL, history = NULL, dead_at = NULL,
    next_run_at = $5, last_polled_at = $6, lease_owner = NULL, lease_until = NULL
WHERE id = $9 AND lease_owner = $7 AND lease_until = $8
RETURNING id";

/// Failure: counts an error and appends it to the history, keeping the validators; `$4`
/// dead-letters the target.
const COMMIT_FAILURE: &str = concat!(
    "UPDATE targets SET error_count = error_count + 1, last_error = $1, history = ",
    append_history!("history", "$3", "$1"),
    ", dead_at = CASE WHEN $4 THEN $3 ELSE NULL END, \
     next_run_at = CASE WHEN $4 THEN 9223372036854775807 ELSE $2 END, \
     last_polled_at = $3, lease_owner = NULL, lease_until = NULL \
     WHERE id = $7 AND lease_owner = $5 AND lease_until = $6 RETURNING id"
);

/// Marks forgotten ids that the poll returned again as seen at `$3`, unless they were seen
/// within the last `$4` ms: a feed that keeps listing an item retention deleted keeps its id
/// remembered, at one write a day.
const REFRESH_FORGOTTEN: &str = "\
UPDATE forgotten_items SET seen_at = $3
WHERE connector = $1 AND item_id = ANY($2::text[]) AND seen_at < $3 - $4";

/// Inserts the poll's items (distinct ids) in their order, skipping ones stored before (`ON
/// CONFLICT`) and ones retention forgot; answers the rows it inserted. A known item burns a
/// `seq`, so seqs have gaps; they still follow commit order (the items lock), which is what
/// paging needs. (A `NOT EXISTS` on `items` to avoid the gaps got a plan that scanned the
/// table as it grew: 100 ms per commit at 150,000 items.)
const INSERT_ITEMS: &str = "\
INSERT INTO items (connector, item_id, target, fetched_at, data)
SELECT $1, v.item_id, $2, $3, v.data
FROM UNNEST($4::text[], $5::text[]) WITH ORDINALITY AS v(item_id, data, ord)
WHERE NOT EXISTS (SELECT 1 FROM forgotten_items AS f
                  WHERE f.connector = $1 AND f.item_id = v.item_id)
ORDER BY v.ord
ON CONFLICT (connector, item_id) DO NOTHING
RETURNING seq, item_id";

/// One delivery job per queue (`$1` queues, `$2` their max attempts), each carrying the same
/// payload, with its connector and lowest item `seq`: retention keeps the items a waiting
/// delivery holds.
const INSERT_JOBS: &str = "\
INSERT INTO jobs (queue, payload, state, attempt, max_attempts, run_at, updated_at,
                  item_connector, first_item_seq)
SELECT d.queue, $3, 'queued', 0, d.max_attempts, $4, $4, $5, $6
FROM UNNEST($1::text[], $2::bigint[]) AS d(queue, max_attempts)";

/// Stores a successful poll's items and enqueues its deliveries, inside the commit's
/// transaction (the target's guarded update already passed). Answers how many were new.
async fn store_items(
    tx: &mut Transaction<'static, Postgres>,
    claim: &TargetClaim,
    items: &[Item],
    deliver_to: &[crate::Delivery],
    now: Millis,
) -> Result<u64> {
    const STORE: &str = "committing a poll: storing new items";
    let target = &claim.target;
    // The first of each id is the one stored; later repeats in the poll are not new.
    let mut seen = HashSet::new();
    let distinct: Vec<&Item> = items
        .iter()
        .filter(|item| seen.insert(item.id.as_str()))
        .collect();
    let ids: Vec<String> = distinct.iter().map(|item| item.id.clone()).collect();
    let data = distinct
        .iter()
        .map(|item| to_json(item, "encoding an item"))
        .collect::<Result<Vec<String>>>()?;

    // Every commit that stores items holds this lock from here to its end, so seqs are handed
    // out in commit order (a reader paging by seq never skips a row committed late), and the
    // forgotten-id refreshes of two commits never wait on each other's rows.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ITEMS_LOCK)
        .execute(&mut **tx)
        .await
        .map_err(db_error("committing a poll: waiting for the items lock"))?;
    sqlx::query(REFRESH_FORGOTTEN)
        .bind(&target.connector)
        .bind(&ids)
        .bind(now)
        .bind(REFRESH_AFTER_MS)
        .execute(&mut **tx)
        .await
        .map_err(db_error("committing a poll: refreshing forgotten ids"))?;
    let inserted: Vec<(i64, String)> = sqlx::query_as(INSERT_ITEMS)
        .bind(&target.connector)
        .bind(&target.target)
        .bind(now)
        .bind(&ids)
        .bind(&data)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error(STORE))?;
    if inserted.is_empty() {
        return Ok(0);
    }
    let new_count = inserted.len() as u64;
    if deliver_to.is_empty() {
        return Ok(new_count);
    }

    let by_id: std::collections::HashMap<&str, &Item> = distinct
        .iter()
        .map(|item| (item.id.as_str(), *item))
        .collect();
    let mut new_items = inserted
        .iter()
        .map(|(seq, item_id)| {
            let item = by_id
                .get(item_id.as_str())
                .ok_or_else(|| BackendError::Corrupt {
                    context: "committing a poll: matching new items to the poll",
                    reason: format!("the database reported inserting {item_id:?}"),
                })?;
            Ok(NewItem {
                seq: *seq,
                connector: &target.connector,
                target: &target.target,
                fetched_at: now,
                item,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // RETURNING yields rows in no promised order.
    new_items.sort_unstable_by_key(|item| item.seq);
    let first_seq = new_items.first().map_or(0, |item| item.seq);
    let payload = to_json(&new_items, "encoding a delivery payload")?;
    let queues: Vec<&str> = deliver_to.iter().map(|d| d.queue.as_str()).collect();
    let max_attempts: Vec<i64> = deliver_to
        .iter()
        .map(|d| i64::from(d.max_attempts))
        .collect();
    sqlx::query(INSERT_JOBS)
        .bind(&queues)
        .bind(&max_attempts)
        .bind(&payload)
        .bind(now)
        .bind(&target.connector)
        .bind(first_seq)
        .execute(&mut **tx)
        .await
        .map_err(db_error("committing a poll: enqueueing deliveries"))?;
    Ok(new_count)
}

#[async_trait]
impl TargetStore for PostgresBackend {
    async fn add_targets(
        &self,
        connector: &str,
        targets: &[String],
        first_run_at: Millis,
    ) -> Result<AddReport> {
        const CONTEXT: &str = "adding targets";
        crate::check_targets(targets)?;
        if targets.is_empty() {
            return Ok(AddReport::default());
        }
        // One transaction for the whole import: all of it or nothing. `WITH ORDINALITY`
        // keeps the given order, so ids follow it.
        let mut tx = self.begin(CONTEXT).await?;
        let mut added = 0;
        for chunk in targets.chunks(TARGET_INSERT_CHUNK) {
            added += sqlx::query(
                "INSERT INTO targets (connector, target, next_run_at) \
                 SELECT $1, t.target, $3 FROM UNNEST($2::text[]) WITH ORDINALITY AS t(target, ord) \
                 ORDER BY t.ord ON CONFLICT (connector, target) DO NOTHING",
            )
            .bind(connector)
            .bind(chunk)
            .bind(first_run_at)
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
        let mut tx = self.begin(CONTEXT).await?;
        let removed: Option<i64> = sqlx::query_scalar(
            "DELETE FROM targets WHERE connector = $1 AND target = $2 RETURNING id",
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
            " FROM targets WHERE connector = $1 AND target = $2"
        ))
        .bind(connector)
        .bind(target)
        .fetch_optional(&self.pool)
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
                " FROM targets WHERE ($1::text IS NULL OR connector = $1) AND id > $2 ",
                "ORDER BY id LIMIT $3"
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease_until = lease_deadline(now, lease);
        // SKIP LOCKED: rows another claimer (or a commit) holds are passed over, not waited
        // for; the lease condition is re-checked on a row's latest version once it is locked.
        let rows = sqlx::query(concat!(
            "UPDATE targets SET lease_owner = $2, lease_until = $4 WHERE id IN ( \
               SELECT id FROM targets WHERE connector = $1 AND next_run_at <= $3 \
               AND (lease_until IS NULL OR lease_until < $3) \
               ORDER BY next_run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            target_columns!()
        ))
        .bind(connector)
        .bind(worker)
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error(CONTEXT))?;
        let mut targets = rows
            .iter()
            .map(target_from_row)
            .collect::<Result<Vec<_>>>()?;
        // RETURNING's order is not promised; the claim's order is.
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
        const CONTEXT: &str = "committing a poll";
        const UPDATE: &str = "committing a poll: updating the target";
        let target = &claim.target;
        let mut tx = self.begin(CONTEXT).await?;
        // A poll commit need not wait for its WAL flush: if the server crashes before the
        // flush, the commit is lost as a whole, the claim's lease expires and the target is
        // polled again — what SQLite's `synchronous = NORMAL` risks on a power loss. Waiting
        // would hold the items lock for a disk flush per commit (~90 polls/s on this machine's
        // disk). Jobs' completions stay synchronous: a posted job must not run twice.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        let new_items = match &commit {
            PollCommit::Success {
                items,
                etag,
                last_modified,
                cursor,
                state_writes,
                next_run_at,
                interval_ms,
                deliver_to,
            } => {
                let held: Option<i64> = sqlx::query_scalar(COMMIT_SUCCESS)
                    .bind(etag)
                    .bind(last_modified)
                    .bind(cursor)
                    .bind(interval_ms)
                    .bind(next_run_at)
                    .bind(now)
                    .bind(&claim.worker)
                    .bind(claim.lease_until)
                    .bind(target.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error(UPDATE))?;
                if held.is_none() {
                    return Ok(lease_lost());
                }
                // In order: a later write of a key wins. Under the scope's lock, so a capped
                // put of the same scope never checks a total these writes then change.
                if !state_writes.is_empty() {
                    lock_scope(&mut tx, &target.connector, target.id).await?;
                    for (key, value) in state_writes {
                        write_state(&mut tx, &target.connector, target.id, key, value.as_deref())
                            .await?;
                    }
                }
                if items.is_empty() {
                    0
                } else {
                    store_items(&mut tx, claim, items, deliver_to, now).await?
                }
            }
            PollCommit::Failure {
                error,
                next_run_at,
                dead,
            } => {
                let held: Option<i64> = sqlx::query_scalar(COMMIT_FAILURE)
                    // Capped: the error text comes from plugins and upstreams.
                    .bind(crate::cap_error(error).as_ref())
                    .bind(next_run_at)
                    .bind(now)
                    .bind(dead)
                    .bind(&claim.worker)
                    .bind(claim.lease_until)
                    .bind(target.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error(UPDATE))?;
                if held.is_none() {
                    return Ok(lease_lost());
                }
                0
            }
        };
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(CommitReport {
            new_items,
            lease_lost: false,
        })
    }

    async fn release(&self, claim: &TargetClaim, next_run_at: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE targets SET lease_owner = NULL, lease_until = NULL, next_run_at = $1 \
             WHERE id = $2 AND lease_owner = $3 AND lease_until = $4",
        )
        .bind(next_run_at)
        .bind(claim.target.id)
        .bind(&claim.worker)
        .bind(claim.lease_until)
        .execute(&self.pool)
        .await
        .map_err(db_error("releasing a target claim"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn count_due(&self, connector: &str, now: Millis) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM targets WHERE connector = $1 AND next_run_at <= $2 \
             AND (lease_until IS NULL OR lease_until < $2)",
        )
        .bind(connector)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error("counting due targets"))?;
        Ok(count.unsigned_abs())
    }

    async fn count_targets(&self, connector: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM targets WHERE connector = $1")
            .bind(connector)
            .fetch_one(&self.pool)
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
                " FROM targets WHERE dead_at IS NOT NULL AND ($1::text IS NULL OR connector = $1) ",
                "AND id > $2 ORDER BY id LIMIT $3"
            ),
            (connector, after_id, limit),
            "listing dead targets",
        )
        .await
    }

    async fn revive_target(&self, id: i64, now: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE targets SET dead_at = NULL, next_run_at = $2, error_count = 0, \
             lease_owner = NULL, lease_until = NULL WHERE id = $1 AND dead_at IS NOT NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error("reviving a dead target"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn park_refused(&self, claim: &TargetClaim, reason: &str, now: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE targets SET lease_owner = NULL, lease_until = NULL, next_run_at = $6, \
             refused_at = $1, refused_reason = $2, last_polled_at = $1 \
             WHERE id = $3 AND lease_owner = $4 AND lease_until = $5",
        )
        .bind(now)
        .bind(reason)
        .bind(claim.target.id)
        .bind(&claim.worker)
        .bind(claim.lease_until)
        .bind(NEVER)
        .execute(&self.pool)
        .await
        .map_err(db_error("parking a refused target"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn release_refused(&self, connector: &str, now: Millis) -> Result<u64> {
        let released = sqlx::query(
            "UPDATE targets SET refused_at = NULL, refused_reason = NULL, next_run_at = $2 \
             WHERE connector = $1 AND refused_at IS NOT NULL",
        )
        .bind(connector)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error("releasing refused targets"))?
        .rows_affected();
        Ok(released)
    }

    async fn wake_target(&self, target: &str, now: Millis) -> Result<u64> {
        let woken = sqlx::query(
            "UPDATE targets SET next_run_at = LEAST(next_run_at, $2) \
             WHERE target = $1 AND dead_at IS NULL AND refused_at IS NULL",
        )
        .bind(target)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error("waking a pinged target"))?
        .rows_affected();
        Ok(woken)
    }

    async fn wake_targets_under(&self, prefix: &str, now: Millis, limit: u32) -> Result<u64> {
        const CONTEXT: &str = "waking a pinged site's targets";
        if prefix.is_empty() || limit == 0 {
            return Ok(0);
        }
        // A range on `targets_by_url`: the `~>=~` / `~<~` operators compare bytes, as that
        // index (text_pattern_ops) orders them, whatever the database's collation. The dead
        // and parked conditions are repeated outside the subselect: they are re-checked on a
        // row's latest version if a commit changed it meanwhile, so a target that just went
        // dead is not made due.
        let query = match prefix_upper_bound(prefix) {
            Some(upper) => sqlx::query(
                "UPDATE targets SET next_run_at = LEAST(next_run_at, $3) WHERE id IN ( \
                   SELECT id FROM targets WHERE target ~>=~ $1 AND target ~<~ $2 \
                   AND dead_at IS NULL AND refused_at IS NULL ORDER BY id LIMIT $4) \
                 AND dead_at IS NULL AND refused_at IS NULL",
            )
            .bind(prefix)
            .bind(upper),
            // Nothing sorts above a prefix of only the highest code point but strings that
            // start with it: the lower bound alone is the range.
            None => sqlx::query(
                "UPDATE targets SET next_run_at = LEAST(next_run_at, $2) WHERE id IN ( \
                   SELECT id FROM targets WHERE target ~>=~ $1 \
                   AND dead_at IS NULL AND refused_at IS NULL ORDER BY id LIMIT $3) \
                 AND dead_at IS NULL AND refused_at IS NULL",
            )
            .bind(prefix),
        };
        let woken = query
            .bind(now)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(db_error(CONTEXT))?
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
                " FROM targets WHERE refused_at IS NOT NULL ",
                "AND ($1::text IS NULL OR connector = $1) AND id > $2 ORDER BY id LIMIT $3"
            ),
            (connector, after_id, limit),
            "listing refused targets",
        )
        .await
    }

    async fn count_refused(&self, connector: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM targets WHERE connector = $1 AND refused_at IS NOT NULL",
        )
        .bind(connector)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error("counting refused targets"))?;
        Ok(count.unsigned_abs())
    }

    async fn drop_dead_target(&self, id: i64) -> Result<bool> {
        const CONTEXT: &str = "dropping a dead target";
        let mut tx = self.begin(CONTEXT).await?;
        let connector: Option<String> = sqlx::query_scalar(
            "DELETE FROM targets WHERE id = $1 AND dead_at IS NOT NULL RETURNING connector",
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

/// A commit whose claim no longer holds the lease: nothing was written (the transaction is
/// rolled back when dropped).
fn lease_lost() -> CommitReport {
    CommitReport {
        new_items: 0,
        lease_lost: true,
    }
}

/// What a deleted target leaves behind: its state, and its WebSub subscription and waiting
/// deliveries (the hub's next delivery then answers 410 Gone).
async fn delete_rows_of(
    tx: &mut Transaction<'static, Postgres>,
    connector: &str,
    id: i64,
    context: &'static str,
) -> Result<()> {
    for statement in [
        "DELETE FROM state WHERE connector = $1 AND scope_target_id = $2",
        "DELETE FROM websub_subscriptions WHERE connector = $1 AND target_id = $2",
        "DELETE FROM websub_deliveries WHERE connector = $1 AND target_id = $2",
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

/// The least string greater than every string that starts with `prefix`, in byte order: the
/// prefix with its last character raised to the next code point (UTF-8 orders bytes as it
/// orders code points, and no character lies between the two). Trailing characters of the
/// highest code point are dropped first; none when nothing is left.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{d7ff}' => Some('\u{e000}'),
            other => char::from_u32(u32::from(other) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn the_upper_bound_raises_the_last_character() {
        assert_eq!(
            prefix_upper_bound("https://a.example/").as_deref(),
            Some("https://a.example0")
        );
        assert_eq!(prefix_upper_bound("a~").as_deref(), Some("a\u{7f}"));
        assert_eq!(prefix_upper_bound("aé").as_deref(), Some("aê"));
        assert_eq!(
            prefix_upper_bound("a\u{d7ff}").as_deref(),
            Some("a\u{e000}")
        );
        assert_eq!(
            prefix_upper_bound("a\u{10ffff}\u{10ffff}").as_deref(),
            Some("b")
        );
        assert_eq!(prefix_upper_bound("\u{10ffff}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }
}
