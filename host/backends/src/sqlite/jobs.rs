//! [`JobQueue`] for SQLite: durable jobs with leases, retries and a dead-letter state.
//!
//! A job is `queued` (waiting until `run_at`), `leased` (held by `lease_owner` through
//! `lease_until`), `done` or `dead`. A lease that expired is taken over by the next
//! `lease_jobs`; completions and failures are guarded by (worker, lease_until), so a worker
//! that lost its lease cannot finish a job someone else now holds; a heartbeat moves the
//! lease on under the same guard.
//!
//! Taking over an expired lease marks the job `earlier_unknown`: its worker may have acted
//! before it died, so the next attempt is told to check first. A paused queue (a row in
//! `paused_queues`) leases nothing. A done job keeps its outcome, not its payload.

use super::{SqliteBackend, append_history};
use crate::sql::{
    db_error, dead_job_from_row, effective_limit, job_lease_from_row, job_record_from_row,
    lease_deadline, outcome_columns, queue_counts,
};
use crate::{
    BackendError, DeadJob, Enqueued, JobFailure, JobLease, JobOutcome, JobQueue, JobRecord, Millis,
    NewJob, QueueCounts, Result,
};
use async_trait::async_trait;
use std::time::Duration;

/// The `last_error` of a job that died because its last allowed attempt never reported back.
const LOST_ON_LAST_ATTEMPT: &str = "lease expired on the last attempt (the worker stopped or hung)";

#[async_trait]
impl JobQueue for SqliteBackend {
    async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued> {
        const CONTEXT: &str = "enqueueing a job";
        if let Some(problem) = job.problem() {
            return Err(BackendError::Refused(problem));
        }
        let mut tx = self.begin_write(CONTEXT).await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (queue, payload, state, attempt, max_attempts, run_at, updated_at, \
             kind, target, idempotency_key) \
             VALUES (?1, ?2, 'queued', 0, ?3, ?4, ?4, ?5, ?6, ?7) \
             ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING id",
        )
        .bind(&job.queue)
        .bind(&job.payload)
        .bind(i64::from(job.max_attempts))
        .bind(job.run_at)
        .bind(&job.kind)
        .bind(&job.target)
        .bind(&job.idempotency_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        let enqueued = match inserted {
            Some(id) => Enqueued::New(id),
            None => Enqueued::Repeat(
                sqlx::query_scalar("SELECT id FROM jobs WHERE queue = ?1 AND idempotency_key = ?2")
                    .bind(&job.queue)
                    .bind(&job.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error(CONTEXT))?,
            ),
        };
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(enqueued)
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
        let mut tx = self.begin_write(CONTEXT).await?;
        let paused: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM paused_queues WHERE queue = ?1")
                .bind(queue)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error(CONTEXT))?;
        if paused.is_some() {
            return Ok(Vec::new());
        }
        // A job whose final attempt was lost (worker died mid-job) would otherwise be retried
        // past max_attempts forever; it goes to the dead-letter state instead.
        sqlx::query(concat!(
            "UPDATE jobs SET state = 'dead', died_at = ?2, updated_at = ?2, ",
            "last_error = ?3, lease_owner = NULL, lease_until = NULL, history = ",
            append_history!("history", "?2", "?3"),
            " WHERE queue = ?1 AND state = 'leased' AND lease_until < ?2 ",
            "AND attempt >= max_attempts"
        ))
        .bind(queue)
        .bind(now)
        .bind(LOST_ON_LAST_ATTEMPT)
        .execute(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        let rows = sqlx::query(
            // Taking over an expired lease: its worker may have acted before it stopped.
            "UPDATE jobs SET earlier_unknown = earlier_unknown OR state = 'leased', \
             state = 'leased', attempt = attempt + 1, lease_owner = ?1, \
             lease_until = ?2, updated_at = ?3 WHERE id IN (\
             SELECT id FROM jobs WHERE queue = ?4 AND (\
             (state = 'queued' AND run_at <= ?3) OR (state = 'leased' AND lease_until < ?3)) \
             ORDER BY run_at, id LIMIT ?5) \
             RETURNING id, queue, payload, attempt, max_attempts, kind, target, earlier_unknown",
        )
        .bind(worker)
        .bind(lease_until)
        .bind(now)
        .bind(queue)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        tx.commit().await.map_err(db_error(CONTEXT))?;

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
        let (name, reference, detail) = outcome_columns(outcome);
        let updated = sqlx::query(
            // A done job is only counted, never read again: drop its payload (a delivery
            // repeats every new item) so finished work does not grow the database.
            "UPDATE jobs SET state = 'done', payload = '', updated_at = ?1, lease_owner = NULL, \
             lease_until = NULL, earlier_unknown = 0, outcome = ?5, outcome_reference = ?6, \
             outcome_detail = ?7 WHERE id = ?2 AND state = 'leased' AND lease_owner = ?3 \
             AND lease_until = ?4",
        )
        .bind(now)
        .bind(lease.id)
        .bind(&lease.worker)
        .bind(lease.lease_until)
        .bind(name)
        .bind(reference.as_deref())
        .bind(detail.as_deref())
        .execute(&self.writer)
        .await
        .map_err(db_error("completing a job"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn heartbeat_job(
        &self,
        lease: &mut JobLease,
        now: Millis,
        lease_for: Duration,
    ) -> Result<bool> {
        let lease_until = lease_deadline(now, lease_for);
        let updated = sqlx::query(
            "UPDATE jobs SET lease_until = ?1, updated_at = ?2 WHERE id = ?3 AND state = 'leased' \
             AND lease_owner = ?4 AND lease_until = ?5",
        )
        .bind(lease_until)
        .bind(now)
        .bind(lease.id)
        .bind(&lease.worker)
        .bind(lease.lease_until)
        .execute(&self.writer)
        .await
        .map_err(db_error("extending a job's lease"))?
        .rows_affected();
        if updated > 0 {
            lease.lease_until = lease_until;
        }
        Ok(updated > 0)
    }

    async fn defer_job(&self, lease: &JobLease, run_at: Millis, now: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempt = MAX(attempt - 1, 0), run_at = ?1, \
             updated_at = ?2, lease_owner = NULL, lease_until = NULL \
             WHERE id = ?3 AND state = 'leased' AND lease_owner = ?4 AND lease_until = ?5",
        )
        .bind(run_at)
        .bind(now)
        .bind(lease.id)
        .bind(&lease.worker)
        .bind(lease.lease_until)
        .execute(&self.writer)
        .await
        .map_err(db_error("deferring a job"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool, now: Millis) -> Result<()> {
        let statement = if paused {
            "INSERT INTO paused_queues (queue, paused_at) VALUES (?1, ?2) \
             ON CONFLICT (queue) DO NOTHING"
        } else {
            "DELETE FROM paused_queues WHERE queue = ?1 AND ?2 IS NOT NULL"
        };
        sqlx::query(statement)
            .bind(queue)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(db_error("pausing or resuming a queue"))?;
        Ok(())
    }

    async fn queue_paused(&self, queue: &str) -> Result<bool> {
        let paused: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM paused_queues WHERE queue = ?1")
                .bind(queue)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_error("reading whether a queue is paused"))?;
        Ok(paused.is_some())
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        let row = sqlx::query(
            "SELECT id, queue, kind, target, state, attempt, earlier_unknown, outcome, \
             outcome_reference, outcome_detail, last_error FROM jobs WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
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
        // Retry only when asked to and attempts remain; otherwise the job dies. One statement
        // decides both, using the stored attempt counts.
        let updated = sqlx::query(concat!(
            "UPDATE jobs SET ",
            "state = CASE WHEN ?1 IS NOT NULL AND attempt < max_attempts ",
            "THEN 'queued' ELSE 'dead' END, ",
            "died_at = CASE WHEN ?1 IS NOT NULL AND attempt < max_attempts ",
            "THEN NULL ELSE ?2 END, ",
            "run_at = COALESCE(?1, run_at), last_error = ?3, updated_at = ?2, ",
            "lease_owner = NULL, lease_until = NULL, earlier_unknown = earlier_unknown OR ?7, ",
            "history = ",
            append_history!("history", "?2", "?3"),
            " WHERE id = ?4 AND state = 'leased' AND lease_owner = ?5 AND lease_until = ?6"
        ))
        .bind(retry_at)
        .bind(now)
        .bind(error.as_ref())
        .bind(lease.id)
        .bind(&lease.worker)
        .bind(lease.lease_until)
        .bind(outcome_unknown)
        .execute(&self.writer)
        .await
        .map_err(db_error("recording a failed job attempt"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn queue_counts(&self, queue: &str) -> Result<QueueCounts> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE queue = ?1 GROUP BY state")
                .bind(queue)
                .fetch_all(&self.reader)
                .await
                .map_err(db_error("counting jobs"))?;
        queue_counts(rows)
    }

    async fn list_dead(&self, queue: Option<&str>, limit: u32) -> Result<Vec<DeadJob>> {
        let rows = sqlx::query(
            "SELECT id, queue, payload, attempt, last_error, died_at, history FROM jobs \
             WHERE state = 'dead' AND (?1 IS NULL OR queue = ?1) ORDER BY id LIMIT ?2",
        )
        .bind(queue)
        .bind(effective_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing dead jobs"))?;
        rows.iter().map(dead_job_from_row).collect()
    }

    async fn retry_dead_job(&self, id: i64, now: Millis) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempt = 0, run_at = ?2, died_at = NULL, \
             updated_at = ?2 WHERE id = ?1 AND state = 'dead'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(db_error("retrying a dead job"))?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn drop_dead_job(&self, id: i64) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM jobs WHERE id = ?1 AND state = 'dead'")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db_error("dropping a dead job"))?
            .rows_affected();
        Ok(deleted > 0)
    }
}
