//! [`ItemStore`] for SQLite: reading the deduplicated items that poll commits stored.

use super::SqliteBackend;
use crate::sql::{db_error, list_items_query, stored_item_from_row};
use crate::{ItemQuery, ItemStore, Result, StoredItem};
use async_trait::async_trait;
use sqlx::Sqlite;

#[async_trait]
impl ItemStore for SqliteBackend {
    async fn list_items(&self, query: &ItemQuery) -> Result<Vec<StoredItem>> {
        // Only the filters in use go into the SQL, so SQLite can pick the matching index
        // (seq for paging, (target, seq) for one feed). At most 8 statement shapes get cached.
        let rows = list_items_query::<Sqlite>(query)
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing items"))?;
        rows.iter().map(stored_item_from_row).collect()
    }

    async fn count_items(&self, connector: Option<&str>) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM items WHERE ?1 IS NULL OR connector = ?1")
                .bind(connector)
                .fetch_one(&self.reader)
                .await
                .map_err(db_error("counting items"))?;
        Ok(count.unsigned_abs())
    }

    async fn purge_target_items(&self, connector: &str, target: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM items WHERE connector = ?1 AND target = ?2")
            .bind(connector)
            .bind(target)
            .execute(&self.writer)
            .await
            .map_err(db_error("purging a target's items"))?;
        Ok(done.rows_affected())
    }
}
