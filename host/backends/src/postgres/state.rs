//! [`StateStore`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::{Result, StatePut, StateScope, StateStore};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl StateStore for PostgresBackend {
    async fn put_state_within(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
        value: &str,
        max_total: u64,
    ) -> Result<StatePut> {
        unimplemented!("PostgreSQL StateStore")
    }

    async fn get_state(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
    ) -> Result<Option<String>> {
        unimplemented!("PostgreSQL StateStore")
    }

    async fn set_state(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
        value: Option<&str>,
    ) -> Result<()> {
        unimplemented!("PostgreSQL StateStore")
    }

    async fn target_state(&self, connector: &str, target_id: i64) -> Result<Vec<(String, String)>> {
        unimplemented!("PostgreSQL StateStore")
    }
}
