//! [`JobQueue`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::{
    BackendError, DeadJob, EarlierOutcome, Enqueued, JobFailure, JobLease, JobOutcome, JobQueue,
    JobRecord, Millis, NewJob, QueueCounts, Result,
};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl JobQueue for PostgresBackend {
    async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn lease_jobs(
        &self,
        queue: &str,
        worker: &str,
        now: Millis,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn finish_job(
        &self,
        lease: &JobLease,
        outcome: &JobOutcome,
        now: Millis,
    ) -> Result<bool> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn heartbeat_job(
        &self,
        lease: &mut JobLease,
        now: Millis,
        lease_for: Duration,
    ) -> Result<bool> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn defer_job(&self, lease: &JobLease, run_at: Millis, now: Millis) -> Result<bool> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool, now: Millis) -> Result<()> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn queue_paused(&self, queue: &str) -> Result<bool> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn record_failure(
        &self,
        lease: &JobLease,
        failure: &JobFailure<'_>,
        now: Millis,
    ) -> Result<bool> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn queue_counts(&self, queue: &str) -> Result<QueueCounts> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn list_dead(&self, queue: Option<&str>, limit: u32) -> Result<Vec<DeadJob>> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn retry_dead_job(&self, id: i64, now: Millis) -> Result<bool> {
        unimplemented!("PostgreSQL JobQueue")
    }

    async fn drop_dead_job(&self, id: i64) -> Result<bool> {
        unimplemented!("PostgreSQL JobQueue")
    }
}
