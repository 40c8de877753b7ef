//! [`JobQueue`] for PostgreSQL: durable jobs with leases, retries and a dead-letter state,
//! shared by every host of a cluster.
//!
//! A job is `queued` (waiting until `run_at`), `leased` (held by `lease_owner` through
//! `lease_until`), `done` or `dead`. `lease_jobs` takes rows with `FOR UPDATE SKIP LOCKED` in
//! the subselect of its `UPDATE`, so two hosts leasing one queue never take the same job and
//! neither waits for the other. A lease that expired is taken over by the next `lease_jobs`;
//! completions, failures, heartbeats and deferrals are guarded by (state, worker,
//! lease_until), so a worker that lost its lease cannot finish a job someone else now holds,
//! and a finished job is never rescued.
//!
//! Completions go through the backend's batcher (`completions.rs`), which commits all that
//! are waiting in one statement under the same guard.
//!
//! Taking over an expired lease marks the job `earlier_unknown`: its worker may have acted
//! before it died, so the next attempt is told to check first. A paused queue (a row in
//! `paused_queues`) leases nothing. A done job keeps its outcome, not its payload.

use super::completions::Finish;
use super::{PostgresBackend, append_history};
use crate::sql::{
    db_error, dead_job_from_row, effective_limit, job_lease_from_row, job_record_from_row,
    lease_deadline, outcome_columns, queue_counts,
};
use crate::{
    BackendError, DeadJob, Enqueued, JobFailure, JobLease, JobOutcome, JobQueue, JobRecord, Millis,
    NewJob, QueueCounts, Result,
};
use async_trait::async_trait;
use std::borrow::Cow;
use std::time::Duration;

/// The `last_error` of a job that died because its last allowed attempt never reported back.
const LOST_ON_LAST_ATTEMPT: &str = "lease expired on the last attempt (the worker stopped or hung)";

/// How often `enqueue_job` tries again when its key's job vanished between the conflicting
/// insert and the read of its id (purged or dropped meanwhile): the next insert then stores
/// the job as new, so a second try all but always settles it.
const ENQUEUE_TRIES: usize = 3;

const INSERT_JOB: &str = "\
INSERT INTO jobs (queue, payload, state, attempt, max_attempts, run_at, updated_at, kind,
                  target, idempotency_key)
VALUES ($1, $2, 'queued', 0, $3, $4, $4, $5, $6, $7)
ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id";

/// A job whose final attempt was lost (its worker died mid-job) would otherwise be retried
/// past max_attempts forever; it goes to the dead-letter state instead. Rows another host has
/// locked are left to its own call (or the next one).
const BURY_LOST: &str = concat!(
    "UPDATE jobs SET state = 'dead', died_at = $2, updated_at = $2, last_error = $3, ",
    "lease_owner = NULL, lease_until = NULL, history = ",
    append_history!("history", "$2", "$3"),
    " WHERE id IN (",
    "SELECT id FROM jobs WHERE queue = $1 AND state = 'leased' AND lease_until < $2 ",
    "AND attempt >= max_attempts ",
    "AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = $1) ",
    "FOR UPDATE SKIP LOCKED)"
);

/// Leases due jobs and takes over expired leases, earliest first. An expired lease on its last
/// attempt is never taken over (even if `BURY_LOST` skipped it because it was locked); it waits
/// for the next `BURY_LOST`. Taking over an expired lease marks the job: its worker may have
/// acted before it stopped.
///
/// The due and the expired are picked apart (each branch reads an index in order, `jobs_due`
/// and `jobs_leased`, and stops after `$5` rows), then the earliest `$5` of both are taken: one
/// scan of both kinds (an `OR`) read and sorted every waiting job of the queue on every lease.
/// A row a branch locked but the final `LIMIT` leaves out stays locked only until this
/// statement commits.
const LEASE: &str = "\
WITH due AS (
    SELECT id, run_at FROM jobs
    WHERE queue = $4 AND state = 'queued' AND run_at <= $3
      AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = $4)
    ORDER BY run_at, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, run_at FROM jobs
    WHERE queue = $4 AND state = 'leased' AND lease_until < $3 AND attempt < max_attempts
      AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = $4)
    ORDER BY run_at, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET earlier_unknown = earlier_unknown OR state = 'leased', state = 'leased',
    attempt = attempt + 1, lease_owner = $1, lease_until = $2, updated_at = $3
WHERE id IN (
    SELECT id FROM (SELECT id, run_at FROM due UNION ALL SELECT id, run_at FROM expired) AS taken
    ORDER BY run_at, id
    LIMIT $5
)
RETURNING id, queue, payload, attempt, max_attempts, kind, target, earlier_unknown";

/// The guard every completion, failure, heartbeat and deferral carries: the job is still
/// leased to this worker with this deadline.
macro_rules! held_by {
    ($id:literal, $worker:literal, $until:literal) => {
        concat!(
            " WHERE id = ",
            $id,
            " AND state = 'leased' AND lease_owner = ",
            $worker,
            " AND lease_until = ",
            $until
        )
    };
}

/// A done job is only counted, never read again: its payload (a delivery repeats every new
/// item) is dropped so finished work does not grow the database.
pub(super) const FINISH: &str = concat!(
    "UPDATE jobs SET state = 'done', payload = '', updated_at = $1, lease_owner = NULL, ",
    "lease_until = NULL, earlier_unknown = FALSE, outcome = $5, outcome_reference = $6, ",
    "outcome_detail = $7",
    held_by!("$2", "$3", "$4")
);

/// [`FINISH`] for many leases in one statement (the completion batcher's, in
/// `completions.rs`): `$1`…`$7` are arrays of id, worker, lease_until, now, outcome,
/// reference and detail, one element per completion, the ids distinct. The guard is FINISH's,
/// row by row, so a lost lease in the batch is refused and the others still finish.
///
/// The subselect locks the batch's rows in id order before any is updated: two batches from two
/// hosts naming the same jobs (an old and a new holder of a lease) then wait for each other in
/// one order and never deadlock, which single-row completions could not.
pub(super) const FINISH_MANY: &str = "\
UPDATE jobs SET state = 'done', payload = '', updated_at = f.at, lease_owner = NULL,
    lease_until = NULL, earlier_unknown = FALSE, outcome = f.outcome,
    outcome_reference = f.reference, outcome_detail = f.detail
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
            $7::text[]) AS f(id, worker, lease_until, at, outcome, reference, detail)
WHERE jobs.id = f.id AND jobs.state = 'leased' AND jobs.lease_owner = f.worker
  AND jobs.lease_until = f.lease_until
  AND jobs.id IN (
    SELECT held.id FROM jobs AS held WHERE held.id = ANY($1) ORDER BY held.id FOR UPDATE
  )
RETURNING jobs.id";

const HEARTBEAT: &str = concat!(
    "UPDATE jobs SET lease_until = $1, updated_at = $2",
    held_by!("$3", "$4", "$5")
);

const DEFER: &str = concat!(
    "UPDATE jobs SET state = 'queued', attempt = GREATEST(attempt - 1, 0), run_at = $1, ",
    "updated_at = $2, lease_owner = NULL, lease_until = NULL",
    held_by!("$3", "$4", "$5")
);

/// Retry only when asked to and attempts remain; otherwise the job dies. One statement decides
/// both, using the stored attempt counts.
const FAIL: &str = concat!(
    "UPDATE jobs SET ",
    "state = CASE WHEN $1::bigint IS NOT NULL AND attempt < max_attempts ",
    "THEN 'queued' ELSE 'dead' END, ",
    "died_at = CASE WHEN $1::bigint IS NOT NULL AND attempt < max_attempts ",
    "THEN NULL ELSE $2 END, ",
    "run_at = COALESCE($1, run_at), last_error = $3, updated_at = $2, ",
    "lease_owner = NULL, lease_until = NULL, earlier_unknown = earlier_unknown OR $7, ",
    "history = ",
    append_history!("history", "$2", "$3"),
    held_by!("$4", "$5", "$6")
);

#[async_trait]
impl JobQueue for PostgresBackend {
    async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued> {
        const CONTEXT: &str = "enqueueing a job";
        if let Some(problem) = job.problem() {
            return Err(BackendError::Refused(problem));
        }
        for _ in 0..ENQUEUE_TRIES {
            // ON CONFLICT waits for a concurrent insert of the same key to commit (or roll
            // back), so the read below, a statement of its own and so a fresh snapshot, sees
            // the job that won.
            let inserted: Option<i64> = sqlx::query_scalar(INSERT_JOB)
                .bind(&job.queue)
                .bind(&job.payload)
                .bind(i64::from(job.max_attempts))
                .bind(job.run_at)
                .bind(&job.kind)
                .bind(&job.target)
                .bind(&job.idempotency_key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error(CONTEXT))?;
            if let Some(id) = inserted {
                return Ok(Enqueued::New(id));
            }
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT id FROM jobs WHERE queue = $1 AND idempotency_key = $2")
                    .bind(&job.queue)
                    .bind(&job.idempotency_key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error(CONTEXT))?;
            if let Some(id) = existing {
                return Ok(Enqueued::Repeat(id));
            }
        }
        Err(BackendError::Corrupt {
            context: CONTEXT,
            reason: format!(
                "the job holding its idempotency key kept vanishing ({ENQUEUE_TRIES} tries)"
            ),
        })
    }

    async fn lease_jobs(
        &self,
        queue: &str,
        worker: &str,
        now: Millis,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>> {
        const CONTEXT: &str = "leasing jobs";
        let lease_until = lease_deadline(now, lease);
        // Two statements, each atomic on its own: nothing is gained by holding the buried
        // rows' locks until the lease commits.
        sqlx::query(BURY_LOST)
            .bind(queue)
            .bind(now)
            .bind(LOST_ON_LAST_ATTEMPT)
            .execute(&self.pool)
            .await
            .map_err(db_error(CONTEXT))?;
        let rows = sqlx::query(LEASE)
            .bind(worker)
            .bind(lease_until)
            .bind(now)
            .bind(queue)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error(CONTEXT))?;

        let mut leases = rows
            .iter()
            .map(|row| job_lease_from_row(row, worker, lease_until))
            .collect::<Result<Vec<_>>>()?;
        // RETURNING yields rows in no particular order; hand them out oldest first.
        leases.sort_by_key(|lease| lease.id);
        Ok(leases)
    }

    async fn finish_job(
        &self,
        lease: &JobLease,
        outcome: &JobOutcome,
        now: Millis,
    ) -> Result<bool> {
        let (outcome, reference, detail) = outcome_columns(outcome);
        let finish = Finish {
            id: lease.id,
            worker: lease.worker.clone(),
            lease_until: lease.lease_until,
            now,
            outcome,
            reference: reference.map(Cow::into_owned),
            detail: detail.map(Cow::into_owned),
        };
        self.completions.finish(&self.pool, finish).await
    }

    async fn heartbeat_job(
        &self,
        lease: &mut JobLease,
        now: Millis,
        lease_for: Duration,
    ) -> Result<bool> {
        let lease_until = lease_deadline(now, lease_for);
        let updated = sqlx::query(HEARTBEAT)
            .bind(lease_until)
            .bind(now)
            .bind(lease.id)
            .bind(&lease.worker)
            .bind(lease.lease_until)
            .execute(&self.pool)
            .await
            .map_err(db_error("extending a job's lease"))?
            .rows_affected();
        if updated > 0 {
            lease.lease_until = lease_until;
        }
        Ok(updated > 0)
    }

    async fn defer_job(&self, lease: &JobLease, run_at: Millis, now: Millis) -> Result<bool> {
        let updated = sqlx::query(DEFER)
            .bind(run_at)
            .bind(now)
            .bind(lease.id)
            .bind(&lease.worker)
            .bind(lease.lease_until)
            .execute(&self.pool)
            .await
            .map_err(db_error("deferring a job"))?
            .rows_affected();
        Ok(updated > 0)
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool, now: Millis) -> Result<()> {
        const CONTEXT: &str = "pausing or resuming a queue";
        if paused {
            sqlx::query(
                "INSERT INTO paused_queues (queue, paused_at) VALUES ($1, $2) \
                 ON CONFLICT (queue) DO NOTHING",
            )
            .bind(queue)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_error(CONTEXT))?;
        } else {
            sqlx::query("DELETE FROM paused_queues WHERE queue = $1")
                .bind(queue)
                .execute(&self.pool)
                .await
                .map_err(db_error(CONTEXT))?;
        }
        Ok(())
    }

    async fn queue_paused(&self, queue: &str) -> Result<bool> {
        let paused: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM paused_queues WHERE queue = $1)")
                .bind(queue)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error("reading whether a queue is paused"))?;
        Ok(paused)
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        let row = sqlx::query(
            "SELECT id, queue, kind, target, state, attempt, earlier_unknown, outcome, \
             outcome_reference, outcome_detail, last_error FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("reading a job"))?;
        row.as_ref().map(job_record_from_row).transpose()
    }

    async fn record_failure(
        &self,
        lease: &JobLease,
        failure: &JobFailure<'_>,
        now: Millis,
    ) -> Result<bool> {
        let JobFailure {
            error,
            retry_at,
            outcome_unknown,
        } = *failure;
        // The error text comes from plugins and sinks' upstreams: capped.
        let error = crate::cap_error(error);
        let updated = sqlx::query(FAIL)
            .bind(retry_at)
            .bind(now)
            .bind(error.as_ref())
            .bind(lease.id)
            .bind(&lease.worker)
            .bind(lease.lease_until)
            .bind(outcome_unknown)
            .execute(&self.pool)
            .await
            .map_err(db_error("recording a failed job attempt"))?
            .rows_affected();
        Ok(updated > 0)
    }

    async fn queue_counts(&self, queue: &str) -> Result<QueueCounts> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE queue = $1 GROUP BY state")
                .bind(queue)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error("counting jobs"))?;
        queue_counts(rows)
    }

    async fn list_dead(&self, queue: Option<&str>, limit: u32) -> Result<Vec<DeadJob>> {
        let rows = sqlx::query(
            "SELECT id, queue, payload, attempt, last_error, died_at, history::text AS history \
             FROM jobs WHERE state = 'dead' AND ($1::text IS NULL OR queue = $1) \
             ORDER BY id LIMIT $2",
        )
        .bind(queue)
        .bind(effective_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("listing dead jobs"))?;
        rows.iter().map(dead_job_from_row).collect()
    }

    async fn retry_dead_job(&self, id: i64, now: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempt = 0, run_at = $2, died_at = NULL, \
             updated_at = $2 WHERE id = $1 AND state = 'dead'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error("retrying a dead job"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn drop_dead_job(&self, id: i64) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'dead'")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error("dropping a dead job"))?
            .rows_affected();
        Ok(deleted > 0)
    }
}
