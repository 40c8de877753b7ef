//! [`RetentionStore`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::{
    BackendError, ForgetReport, ItemPosition, MAX_RETENTION_BATCH, Millis, Result, RetentionStore,
    StorageStats,
};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl RetentionStore for PostgresBackend {
    async fn purge_done_jobs(&self, done_before: Millis, limit: u32) -> Result<u64> {
        unimplemented!("PostgreSQL RetentionStore")
    }

    async fn newest_items_start(&self, connector: &str, keep: u64) -> Result<Option<ItemPosition>> {
        unimplemented!("PostgreSQL RetentionStore")
    }

    async fn forget_items(
        &self,
        connector: &str,
        before: ItemPosition,
        now: Millis,
        limit: u32,
    ) -> Result<ForgetReport> {
        unimplemented!("PostgreSQL RetentionStore")
    }

    async fn purge_forgotten_ids(&self, seen_before: Millis, limit: u32) -> Result<u64> {
        unimplemented!("PostgreSQL RetentionStore")
    }

    async fn count_forgotten_ids(&self) -> Result<u64> {
        unimplemented!("PostgreSQL RetentionStore")
    }

    async fn storage_stats(&self) -> Result<StorageStats> {
        unimplemented!("PostgreSQL RetentionStore")
    }
}
