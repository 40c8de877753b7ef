//! [`TargetStore`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::{
    AddReport, Attempt, BackendError, CommitReport, Millis, PollCommit, Result, Target,
    TargetClaim, TargetStore,
};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl TargetStore for PostgresBackend {
    async fn add_targets(
        &self,
        connector: &str,
        targets: &[String],
        first_run_at: Millis,
    ) -> Result<AddReport> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn remove_target(&self, connector: &str, target: &str) -> Result<bool> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn get_target(&self, connector: &str, target: &str) -> Result<Option<Target>> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn list_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn claim_due(
        &self,
        connector: &str,
        worker: &str,
        now: Millis,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<TargetClaim>> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn complete_poll(
        &self,
        claim: &TargetClaim,
        commit: PollCommit,
        now: Millis,
    ) -> Result<CommitReport> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn release(&self, claim: &TargetClaim, next_run_at: Millis) -> Result<bool> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn count_due(&self, connector: &str, now: Millis) -> Result<u64> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn count_targets(&self, connector: &str) -> Result<u64> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn list_dead_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn revive_target(&self, id: i64, now: Millis) -> Result<bool> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn park_refused(&self, claim: &TargetClaim, reason: &str, now: Millis) -> Result<bool> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn release_refused(&self, connector: &str, now: Millis) -> Result<u64> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn wake_target(&self, target: &str, now: Millis) -> Result<u64> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn wake_targets_under(&self, prefix: &str, now: Millis, limit: u32) -> Result<u64> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn list_refused_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn count_refused(&self, connector: &str) -> Result<u64> {
        unimplemented!("PostgreSQL TargetStore")
    }

    async fn drop_dead_target(&self, id: i64) -> Result<bool> {
        unimplemented!("PostgreSQL TargetStore")
    }
}
