//! [`ItemStore`] for PostgreSQL: reading the deduplicated items that poll commits stored.

use super::{PostgresBackend, db_error, effective_limit};
use crate::{BackendError, ItemQuery, ItemStore, Result, StoredItem};
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

fn stored_item_from_row(row: &PgRow) -> Result<StoredItem> {
    let read = db_error("reading an item row");
    let seq: i64 = row.try_get("seq").map_err(read)?;
    let data: &str = row.try_get("data").map_err(read)?;
    let item = serde_json::from_str(data).map_err(|e| BackendError::Corrupt {
        context: "decoding a stored item",
        reason: format!("item seq {seq}: {e}"),
    })?;
    Ok(StoredItem {
        seq,
        connector: row.try_get("connector").map_err(read)?,
        target: row.try_get("target").map_err(read)?,
        fetched_at: row.try_get("fetched_at").map_err(read)?,
        item,
    })
}

#[async_trait]
impl ItemStore for PostgresBackend {
    async fn list_items(&self, query: &ItemQuery) -> Result<Vec<StoredItem>> {
        // Only the filters in use go into the SQL, so each of the 8 statement shapes gets a
        // plan for its filters (seq for paging, (target, seq) for one feed).
        let mut sql = QueryBuilder::<Postgres>::new(
            "SELECT seq, connector, target, fetched_at, data FROM items WHERE seq > ",
        );
        sql.push_bind(query.after_seq);
        if let Some(connector) = &query.connector {
            sql.push(" AND connector = ").push_bind(connector.as_str());
        }
        if let Some(target) = &query.target {
            sql.push(" AND target = ").push_bind(target.as_str());
        }
        if let Some(since) = query.fetched_since {
            sql.push(" AND fetched_at >= ").push_bind(since);
        }
        sql.push(" ORDER BY seq LIMIT ")
            .push_bind(effective_limit(query.limit));
        let rows = sql
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
