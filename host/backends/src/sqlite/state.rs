//! [`StateStore`] for SQLite: connector key/value state in one table, where
//! `scope_target_id = 0` is the connector scope (target ids start at 1).

use super::SqliteBackend;
use crate::sql::{db_error, scope_id};
use crate::{Result, StatePut, StateScope, StateStore};
use async_trait::async_trait;
use sqlx::SqliteConnection;

/// Sets (or with `None` deletes) one key. Shared with the poll commit, which applies a call's
/// target-scoped writes inside its own transaction.
pub(super) async fn write_state(
    conn: &mut SqliteConnection,
    connector: &str,
    scope_target_id: i64,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    const CONTEXT: &str = "writing connector state";
    let query = match value {
        Some(value) => sqlx::query(
            "INSERT INTO state (connector, scope_target_id, key, value) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (connector, scope_target_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(connector)
        .bind(scope_target_id)
        .bind(key)
        .bind(value),
        None => sqlx::query(
            "DELETE FROM state WHERE connector = ?1 AND scope_target_id = ?2 AND key = ?3",
        )
        .bind(connector)
        .bind(scope_target_id)
        .bind(key),
    };
    query.execute(&mut *conn).await.map_err(db_error(CONTEXT))?;
    Ok(())
}

#[async_trait]
impl StateStore for SqliteBackend {
    async fn put_state_within(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
        value: &str,
        max_total: u64,
    ) -> Result<StatePut> {
        const CONTEXT: &str = "writing connector state within its limit";
        let scope_target_id = scope_id(scope);
        // One write transaction, holding the write lock from its first statement: the sum it
        // checks is the sum it writes into, in this process or another. Lengths are in bytes
        // (`CAST … AS BLOB`), as the cap is.
        let mut tx = self.begin_write(CONTEXT).await?;
        let others: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0) \
             FROM state WHERE connector = ?1 AND scope_target_id = ?2 AND key <> ?3",
        )
        .bind(connector)
        .bind(scope_target_id)
        .bind(key)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        if let Some(over) = StatePut::over_limit(others, key, value, max_total) {
            return Ok(over);
        }
        write_state(&mut tx, connector, scope_target_id, key, Some(value)).await?;
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(StatePut::Stored)
    }

    async fn get_state(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT value FROM state WHERE connector = ?1 AND scope_target_id = ?2 AND key = ?3",
        )
        .bind(connector)
        .bind(scope_id(scope))
        .bind(key)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error("reading connector state"))
    }

    async fn set_state(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(db_error("writing connector state"))?;
        write_state(&mut conn, connector, scope_id(scope), key, value).await
    }

    async fn target_state(&self, connector: &str, target_id: i64) -> Result<Vec<(String, String)>> {
        sqlx::query_as(
            "SELECT key, value FROM state WHERE connector = ?1 AND scope_target_id = ?2 \
             ORDER BY key",
        )
        .bind(connector)
        .bind(target_id)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("reading a target's state"))
    }
}
