//! [`TokenStore`] for SQLite: one row per (credential, subject) in `tokens` (schema v6), the
//! secret part as the host sealed it.

use super::SqliteBackend;
use crate::sql::{
    TokenRow, db_error, effective_limit, scopes_to_json, token_columns as columns,
    token_from_row as from_row,
};
use crate::tokens::check_token;
use crate::{Result, StoredToken, TokenStore};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl TokenStore for SqliteBackend {
    async fn put_token(&self, token: &StoredToken) -> Result<()> {
        check_token(token)?;
        let scopes = scopes_to_json(&token.scopes)?;
        // One autocommit statement on the writer: durable (WAL) before it answers.
        sqlx::query(concat!(
            "INSERT INTO tokens (",
            columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (credential, subject) DO UPDATE SET scopes = excluded.scopes, \
             expires_at = excluded.expires_at, needs_relink = excluded.needs_relink, \
             key_id = excluded.key_id, nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at"
        ))
        .bind(&token.credential)
        .bind(&token.subject)
        .bind(scopes)
        .bind(token.expires_at)
        .bind(&token.needs_relink)
        .bind(&token.key_id)
        .bind(&token.nonce)
        .bind(&token.ciphertext)
        .bind(token.updated_at)
        .execute(&self.writer)
        .await
        .map_err(db_error("storing a token"))?;
        Ok(())
    }

    async fn get_token(&self, credential: &str, subject: &str) -> Result<Option<StoredToken>> {
        // WAL readers see every committed write: a token stored a moment ago reads back.
        let row: Option<TokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM tokens WHERE credential = ?1 AND subject = ?2"
        ))
        .bind(credential)
        .bind(subject)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error("reading a token"))?;
        row.map(from_row).transpose()
    }

    async fn delete_token(&self, credential: &str, subject: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE credential = ?1 AND subject = ?2")
            .bind(credential)
            .bind(subject)
            .execute(&self.writer)
            .await
            .map_err(db_error("deleting a token"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_token_subjects(
        &self,
        credential: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT subject FROM tokens WHERE credential = ?1 AND subject > ?2 \
             ORDER BY subject LIMIT ?3",
        )
        .bind(credential)
        .bind(after)
        .bind(effective_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing token subjects"))?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(db_error("reading a token subject")))
            .collect()
    }

    async fn list_tokens(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<StoredToken>> {
        let (credential, subject) = after.unwrap_or(("", ""));
        let rows: Vec<TokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM tokens WHERE (credential, subject) > (?1, ?2) \
             ORDER BY credential, subject LIMIT ?3"
        ))
        .bind(credential)
        .bind(subject)
        .bind(effective_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing tokens"))?;
        rows.into_iter().map(from_row).collect()
    }

    async fn mark_token_relink(
        &self,
        credential: &str,
        subject: &str,
        reason: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tokens SET needs_relink = ?3 WHERE credential = ?1 AND subject = ?2",
        )
        .bind(credential)
        .bind(subject)
        .bind(crate::cap_error(reason).as_ref())
        .execute(&self.writer)
        .await
        .map_err(db_error("marking a token for relinking"))?;
        Ok(done.rows_affected() > 0)
    }
}
