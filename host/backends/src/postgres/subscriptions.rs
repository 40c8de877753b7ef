//! [`SubscriptionStore`] for PostgreSQL: `websub_subscriptions` and `websub_deliveries`.
//!
//! Many hosts take deliveries at once, so the writes that check something lock it first: a
//! delivery takes [`DELIVERIES_LOCK`] before counting what waits (the byte cap is over every
//! target's deliveries, so no narrower lock would do; deliveries are rare next to polls), and a
//! subscription's replacement locks its (connector, target), so two hosts replacing one at once
//! cannot both insert.

use super::PostgresBackend;
use crate::sql::{
    db_error, delivery_from_row, effective_limit, subscription_columns as columns,
    subscription_counts, subscription_from_row as from_row,
};
use crate::{
    DeliveryRefusal, Millis, PushDelivery, Result, Subscription, SubscriptionCounts,
    SubscriptionStore,
};
use async_trait::async_trait;

/// The advisory lock (`pg_advisory_xact_lock`) a delivery takes before checking the caps: the
/// count and bytes it checks are the ones it writes against. An arbitrary constant: "websub"
/// in ASCII.
const DELIVERIES_LOCK: i64 = 0x0000_7765_6273_7562;

/// Serializes the writes of one (connector, target)'s subscription (transaction-scoped).
const LOCK_TARGET_SUBSCRIPTION: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('websub:' || $1 || ':' || $2::text, 0))";

#[async_trait]
impl SubscriptionStore for PostgresBackend {
    async fn put_subscription(&self, subscription: &Subscription) -> Result<()> {
        const CONTEXT: &str = "storing a subscription";
        let mut tx = self.begin(CONTEXT).await?;
        sqlx::query(LOCK_TARGET_SUBSCRIPTION)
            .bind(&subscription.connector)
            .bind(subscription.target_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        // A replaced subscription's deliveries were signed with its secret: they go with it.
        sqlx::query(
            "DELETE FROM websub_deliveries WHERE subscription_id IN (SELECT id FROM \
             websub_subscriptions WHERE connector = $1 AND target_id = $2 AND id != $3)",
        )
        .bind(&subscription.connector)
        .bind(subscription.target_id)
        .bind(&subscription.id)
        .execute(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        sqlx::query(
            "DELETE FROM websub_subscriptions WHERE connector = $1 AND target_id = $2 AND id != $3",
        )
        .bind(&subscription.connector)
        .bind(subscription.target_id)
        .bind(&subscription.id)
        .execute(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        sqlx::query(concat!(
            "INSERT INTO websub_subscriptions (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET hub = excluded.hub, topic = excluded.topic, \
             secret = excluded.secret, state = excluded.state, \
             lease_until = excluded.lease_until, renew_at = excluded.renew_at, \
             attempts = excluded.attempts, last_error = excluded.last_error"
        ))
        .bind(&subscription.id)
        .bind(&subscription.connector)
        .bind(subscription.target_id)
        .bind(&subscription.hub)
        .bind(&subscription.topic)
        .bind(&subscription.secret)
        .bind(subscription.state.as_str())
        .bind(subscription.lease_until)
        .bind(subscription.renew_at)
        .bind(i64::from(subscription.attempts))
        .bind(subscription.last_error.as_deref().map(crate::cap_error))
        .execute(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        tx.commit().await.map_err(db_error(CONTEXT))
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM websub_subscriptions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("reading a subscription"))?;
        row.as_ref().map(from_row).transpose()
    }

    async fn subscription_of(
        &self,
        connector: &str,
        target_id: i64,
    ) -> Result<Option<Subscription>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM websub_subscriptions WHERE connector = $1 AND target_id = $2"
        ))
        .bind(connector)
        .bind(target_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("reading a target's subscription"))?;
        row.as_ref().map(from_row).transpose()
    }

    async fn subscriptions_due(&self, now: Millis, limit: u32) -> Result<Vec<Subscription>> {
        // `state != 'denied'` as the partial index `websub_subscriptions_by_renewal` has it.
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM websub_subscriptions WHERE state != 'denied' AND renew_at <= $1 \
             ORDER BY renew_at LIMIT $2"
        ))
        .bind(now)
        .bind(effective_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("listing subscriptions due"))?;
        rows.iter().map(from_row).collect()
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        const CONTEXT: &str = "deleting a subscription";
        let mut tx = self.begin(CONTEXT).await?;
        sqlx::query("DELETE FROM websub_deliveries WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        let deleted = sqlx::query("DELETE FROM websub_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?
            .rows_affected();
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(deleted > 0)
    }

    async fn count_subscriptions(&self) -> Result<SubscriptionCounts> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM websub_subscriptions WHERE state = 'requested'), \
               (SELECT COUNT(*) FROM websub_subscriptions WHERE state = 'active'), \
               (SELECT COUNT(*) FROM websub_subscriptions WHERE state = 'denied'), \
               (SELECT COUNT(*) FROM websub_deliveries)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error("counting subscriptions"))?;
        subscription_counts(&row)
    }

    async fn add_delivery(
        &self,
        delivery: &PushDelivery,
        max_per_target: u32,
        max_total_bytes: u64,
    ) -> Result<Result<i64, DeliveryRefusal>> {
        const CONTEXT: &str = "storing a delivery";
        let mut tx = self.begin(CONTEXT).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DELIVERIES_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        // READ COMMITTED: started after the lock, this sees every delivery its previous
        // holders committed.
        let (waiting, total): (i64, i64) = sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM websub_deliveries WHERE connector = $1 AND target_id = $2), \
               (SELECT COALESCE(SUM(octet_length(body)), 0)::bigint FROM websub_deliveries)",
        )
        .bind(&delivery.connector)
        .bind(delivery.target_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        if let Some(refusal) = DeliveryRefusal::over_caps(
            waiting,
            total,
            delivery.body.len(),
            max_per_target,
            max_total_bytes,
        ) {
            tx.rollback().await.map_err(db_error(CONTEXT))?;
            return Ok(Err(refusal));
        }
        // Makes the target due, and locks its row until commit: a removal waits for this
        // delivery, or came first and the target is gone.
        let woken = sqlx::query(
            "UPDATE targets SET next_run_at = LEAST(next_run_at, $3) \
             WHERE id = $2 AND connector = $1 AND dead_at IS NULL AND refused_at IS NULL",
        )
        .bind(&delivery.connector)
        .bind(delivery.target_id)
        .bind(delivery.received_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?
        .rows_affected();
        if woken == 0 {
            tx.rollback().await.map_err(db_error(CONTEXT))?;
            return Ok(Err(DeliveryRefusal::TargetGone));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO websub_deliveries \
             (subscription_id, connector, target_id, content_type, body, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&delivery.subscription_id)
        .bind(&delivery.connector)
        .bind(delivery.target_id)
        .bind(&delivery.content_type)
        .bind(&delivery.body)
        .bind(delivery.received_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error(CONTEXT))?;
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(Ok(id))
    }

    async fn next_delivery(&self, connector: &str, target_id: i64) -> Result<Option<PushDelivery>> {
        let row = sqlx::query(
            "SELECT id, subscription_id, connector, target_id, content_type, body, received_at \
             FROM websub_deliveries WHERE connector = $1 AND target_id = $2 ORDER BY id LIMIT 1",
        )
        .bind(connector)
        .bind(target_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("reading a delivery"))?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn delete_delivery(&self, id: i64) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM websub_deliveries WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error("deleting a delivery"))?
            .rows_affected();
        Ok(deleted > 0)
    }
}
