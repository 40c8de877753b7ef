//! [`SubscriptionStore`]: WebSub subscriptions (one per connector and target) and the updates
//! hubs delivered for them, kept until a poll has handed them to the connector.
//!
//! A subscription's `id` is the unguessable part of its callback URL and its `secret` the key
//! of the hub's signatures: neither is ever printed. A delivery is stored before the hub is
//! answered, so an update the host accepted survives a restart; it is deleted once a call has
//! read it (whatever the call made of it), so a bad one cannot come back forever.

use crate::{Millis, Result};
use async_trait::async_trait;

/// Where a subscription stands with its hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubscriptionState {
    /// Asked for; the hub has not verified it yet (or the request failed and is retried).
    Requested,
    /// Verified: the hub delivers until `lease_until`.
    Active,
    /// The hub refused it (`hub.mode=denied`); the target is polled as before.
    Denied,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Active => "active",
            Self::Denied => "denied",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "requested" => Some(Self::Requested),
            "active" => Some(Self::Active),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// One target's subscription with one hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The callback URL's id: unguessable, never printed.
    pub id: String,
    pub connector: String,
    pub target_id: i64,
    pub hub: String,
    pub topic: String,
    /// The HMAC key the hub signs deliveries with: never printed.
    pub secret: String,
    pub state: SubscriptionState,
    /// Until when the hub said it delivers (active subscriptions).
    pub lease_until: Option<Millis>,
    /// When the host acts on it next: renews an active one, asks again for one not verified.
    pub renew_at: Millis,
    /// Requests sent without a verification since the last one.
    pub attempts: u32,
    /// Why the last request failed or the hub refused, for `/status` (never a secret).
    pub last_error: Option<String>,
}

/// A hub's update of a target, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDelivery {
    /// Arrival order.
    pub id: i64,
    pub subscription_id: String,
    pub connector: String,
    pub target_id: i64,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub received_at: Millis,
}

/// How many subscriptions stand where, and the deliveries waiting for a poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionCounts {
    pub requested: u64,
    pub active: u64,
    pub denied: u64,
    pub deliveries_waiting: u64,
}

/// Why a delivery was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryRefusal {
    /// The target already has this many deliveries waiting: the hub should retry later.
    TargetFull,
    /// Every target's waiting deliveries together hold this many bytes already.
    StoreFull,
    /// The subscription's target is gone: the hub should stop (410).
    TargetGone,
}

impl DeliveryRefusal {
    /// Why a delivery of `body_bytes` is refused when its target has `waiting` deliveries and
    /// every target's together hold `total_bytes`, under the caps of
    /// [`SubscriptionStore::add_delivery`]; `None` when it fits.
    pub(crate) fn over_caps(
        waiting: i64,
        total_bytes: i64,
        body_bytes: usize,
        max_per_target: u32,
        max_total_bytes: u64,
    ) -> Option<Self> {
        if waiting >= i64::from(max_per_target) {
            return Some(Self::TargetFull);
        }
        let size = i64::try_from(body_bytes).unwrap_or(i64::MAX);
        if total_bytes.saturating_add(size) > i64::try_from(max_total_bytes).unwrap_or(i64::MAX) {
            return Some(Self::StoreFull);
        }
        None
    }
}

/// Subscriptions and their waiting deliveries.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores `subscription`, replacing the one its (connector, target) had (and that one's
    /// waiting deliveries).
    async fn put_subscription(&self, subscription: &Subscription) -> Result<()>;
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>>;
    async fn subscription_of(
        &self,
        connector: &str,
        target_id: i64,
    ) -> Result<Option<Subscription>>;
    /// Subscriptions (not denied) whose `renew_at` has come, earliest first, at most `limit`.
    async fn subscriptions_due(&self, now: Millis, limit: u32) -> Result<Vec<Subscription>>;
    /// Deletes a subscription and its waiting deliveries; false when there was none.
    async fn delete_subscription(&self, id: &str) -> Result<bool>;
    async fn count_subscriptions(&self) -> Result<SubscriptionCounts>;
    /// Stores a delivery and makes its target due at `delivery.received_at`, unless the target
    /// already has `max_per_target` waiting, all waiting deliveries hold `max_total_bytes`, or
    /// the target is gone. Durable before it answers.
    async fn add_delivery(
        &self,
        delivery: &PushDelivery,
        max_per_target: u32,
        max_total_bytes: u64,
    ) -> Result<Result<i64, DeliveryRefusal>>;
    /// The oldest delivery waiting for (connector, target).
    async fn next_delivery(&self, connector: &str, target_id: i64) -> Result<Option<PushDelivery>>;
    /// Deletes a delivery a call has read; false when it was gone already.
    async fn delete_delivery(&self, id: i64) -> Result<bool>;
}
