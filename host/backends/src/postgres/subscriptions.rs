//! [`SubscriptionStore`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::{
    BackendError, DeliveryRefusal, Millis, PushDelivery, Result, Subscription, SubscriptionCounts,
    SubscriptionState, SubscriptionStore,
};
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
impl SubscriptionStore for PostgresBackend {
    async fn put_subscription(&self, subscription: &Subscription) -> Result<()> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn subscription_of(
        &self,
        connector: &str,
        target_id: i64,
    ) -> Result<Option<Subscription>> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn subscriptions_due(&self, now: Millis, limit: u32) -> Result<Vec<Subscription>> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn count_subscriptions(&self) -> Result<SubscriptionCounts> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn add_delivery(
        &self,
        delivery: &PushDelivery,
        max_per_target: u32,
        max_total_bytes: u64,
    ) -> Result<Result<i64, DeliveryRefusal>> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn next_delivery(&self, connector: &str, target_id: i64) -> Result<Option<PushDelivery>> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }

    async fn delete_delivery(&self, id: i64) -> Result<bool> {
        unimplemented!("PostgreSQL SubscriptionStore")
    }
}
