//! [`TokenStore`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::{BackendError, MAX_TOKEN_CIPHERTEXT, Result, StoredToken, TokenStore};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl TokenStore for PostgresBackend {
    async fn put_token(&self, token: &StoredToken) -> Result<()> {
        unimplemented!("PostgreSQL TokenStore")
    }

    async fn get_token(&self, credential: &str, subject: &str) -> Result<Option<StoredToken>> {
        unimplemented!("PostgreSQL TokenStore")
    }

    async fn delete_token(&self, credential: &str, subject: &str) -> Result<bool> {
        unimplemented!("PostgreSQL TokenStore")
    }

    async fn list_token_subjects(
        &self,
        credential: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        unimplemented!("PostgreSQL TokenStore")
    }

    async fn list_tokens(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<StoredToken>> {
        unimplemented!("PostgreSQL TokenStore")
    }

    async fn mark_token_relink(
        &self,
        credential: &str,
        subject: &str,
        reason: &str,
    ) -> Result<bool> {
        unimplemented!("PostgreSQL TokenStore")
    }
}
