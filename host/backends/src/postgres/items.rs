//! [`ItemStore`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::{BackendError, ItemQuery, ItemStore, Result, StoredItem};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl ItemStore for PostgresBackend {
    async fn list_items(&self, query: &ItemQuery) -> Result<Vec<StoredItem>> {
        unimplemented!("PostgreSQL ItemStore")
    }

    async fn count_items(&self, connector: Option<&str>) -> Result<u64> {
        unimplemented!("PostgreSQL ItemStore")
    }

    async fn purge_target_items(&self, connector: &str, target: &str) -> Result<u64> {
        unimplemented!("PostgreSQL ItemStore")
    }
}
