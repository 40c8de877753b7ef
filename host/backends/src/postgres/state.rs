//! [`StateStore`] for PostgreSQL: connector key/value state in one table, where
//! `scope_target_id = 0` is the connector scope (target ids start at 1).
//!
//! A capped put checks the scope's total and writes in one transaction holding an advisory
//! lock on the scope, so puts from any number of hosts are serialised per scope and cannot
//! together pass the cap; a poll commit's target-scoped writes take the same lock.

use super::PostgresBackend;
use crate::sql::{db_error, scope_id};
use crate::{Result, StatePut, StateScope, StateStore};
use async_trait::async_trait;
use sqlx::PgConnection;

/// Takes the transaction-scoped advisory lock of one scope's state (held until the
/// transaction ends). The key is a 64-bit hash of the connector, seeded with the scope id and
/// prefixed so it does not share keys with other advisory locks.
pub(super) async fn lock_scope(
    conn: &mut PgConnection,
    connector: &str,
    scope_target_id: i64,
) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tsunagi state ' || $1, $2))")
        .bind(connector)
        .bind(scope_target_id)
        .execute(&mut *conn)
        .await
        .map_err(db_error("locking a scope of connector state"))?;
    Ok(())
}

/// Sets (or with `None` deletes) one key. Shared with the poll commit, which applies a call's
/// target-scoped writes inside its own transaction.
pub(super) async fn write_state(
    conn: &mut PgConnection,
    connector: &str,
    scope_target_id: i64,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    const CONTEXT: &str = "writing connector state";
    let query = match value {
        Some(value) => sqlx::query(
            "INSERT INTO state (connector, scope_target_id, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (connector, scope_target_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(connector)
        .bind(scope_target_id)
        .bind(key)
        .bind(value),
        None => sqlx::query(
            "DELETE FROM state WHERE connector = $1 AND scope_target_id = $2 AND key = $3",
        )
        .bind(connector)
        .bind(scope_target_id)
        .bind(key),
    };
    query.execute(&mut *conn).await.map_err(db_error(CONTEXT))?;
    Ok(())
}

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
        const CONTEXT: &str = "writing connector state within its limit";
        let scope_target_id = scope_id(scope);
        let mut tx = self.begin(CONTEXT).await?;
        // The lock comes before the sum: under READ COMMITTED the sum's statement then sees
        // every put that held the lock before, committed.
        lock_scope(&mut tx, connector, scope_target_id).await?;
        // Lengths in bytes (`octet_length`), as the cap is.
        let others: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0)::bigint \
             FROM state WHERE connector = $1 AND scope_target_id = $2 AND key <> $3",
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
            "SELECT value FROM state WHERE connector = $1 AND scope_target_id = $2 AND key = $3",
        )
        .bind(connector)
        .bind(scope_id(scope))
        .bind(key)
        .fetch_optional(&self.pool)
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
            .pool
            .acquire()
            .await
            .map_err(db_error("writing connector state"))?;
        write_state(&mut conn, connector, scope_id(scope), key, value).await
    }

    async fn target_state(&self, connector: &str, target_id: i64) -> Result<Vec<(String, String)>> {
        // COLLATE "C": keys in byte order, as SQLite orders them.
        sqlx::query_as(
            "SELECT key, value FROM state WHERE connector = $1 AND scope_target_id = $2 \
             ORDER BY key COLLATE \"C\"",
        )
        .bind(connector)
        .bind(target_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("reading a target's state"))
    }
}
