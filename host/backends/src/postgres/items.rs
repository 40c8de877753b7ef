//! [`ItemStore`] for PostgreSQL: reading the deduplicated items that poll commits stored.

use super::PostgresBackend;
use crate::sql::{db_error, list_items_query, stored_item_from_row};
use crate::{ItemQuery, ItemStore, Result, StoredItem};
use async_trait::async_trait;
use sqlx::Postgres;

#[async_trait]
impl ItemStore for PostgresBackend {
    async fn list_items(&self, query: &ItemQuery) -> Result<Vec<StoredItem>> {
        // Only the filters in use go into the SQL, so each of the 8 statement shapes gets a
        // plan for its filters (seq for paging, (target, seq) for one feed).
        let rows = list_items_query::<Postgres>(query)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("listing items"))?;
        rows.iter().map(stored_item_from_row).collect()
    }

    async fn count_items(&self, connector: Option<&str>) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM items WHERE $1::text IS NULL OR connector = $1",
        )
        .bind(connector)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error("counting items"))?;
        Ok(count.unsigned_abs())
    }

    async fn purge_target_items(&self, connector: &str, target: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM items WHERE connector = $1 AND target = $2")
            .bind(connector)
            .bind(target)
            .execute(&self.pool)
            .await
            .map_err(db_error("purging a target's items"))?;
        Ok(done.rows_affected())
    }
}
