//! WebSub (W3C Recommendation): feeds whose updates a hub pushes to us instead of being polled.
//!
//! A poller reports the hubs its target names (`websub.discovered`, WIT 0.1.3). For a connector
//! with `websub = true` the host then subscribes ([`subscriber`]): it sends the hub
//! `hub.mode=subscribe` with a callback URL on the inbound listener that carries an
//! unguessable subscription id, and a per-subscription secret. The hub verifies the intent with
//! a `GET` of the callback ([`callback::verify`]), and from then on POSTs each update there
//! ([`callback::deliver`]): the signature is checked against the secret (a bad one stores
//! nothing and is logged), and the body is stored as a delivery that makes the target due.
//! The poll pipeline hands the delivery to the connector as the answer to its fetch of the
//! target ([`crate::egress::PushedContent`]), so the connector's own parser makes the items;
//! a subscribed target is otherwise polled only at `max_interval`, as a safety net. Leases are
//! renewed before they end; a request the hub does not verify is asked again.
//!
//! Everything a hub sends is bounded: delivery bodies (the connector's `limits.response_size`),
//! deliveries waiting per target ([`MAX_WAITING_PER_TARGET`]) and in all
//! ([`MAX_WAITING_BYTES`]), challenges ([`MAX_CHALLENGE_BYTES`]), leases ([`MAX_LEASE`]);
//! discoveries waiting for the subscriber ([`MAX_QUEUED_DISCOVERIES`]).

pub mod callback;
pub mod signature;
mod subscriber;

use crate::clock::SharedClock;
use crate::egress::EgressPolicy;
use crate::runtime::HubLink;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Backend, Millis, PushDelivery, SubscriptionCounts};

/// The lease the host asks hubs for; they may grant another.
pub const REQUESTED_LEASE: Duration = Duration::from_secs(10 * 24 * 3600);
/// A longer lease a hub grants is taken as this: the subscription is renewed within it.
pub const MAX_LEASE: Duration = Duration::from_secs(366 * 24 * 3600);
/// A hub that has not verified a request within this is asked again.
pub const VERIFY_WAIT: Duration = Duration::from_secs(300);
/// Requests in a row a hub may leave unverified or fail before the subscription is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// Deliveries one target may have waiting for its poll; more answer 503 (the hub retries).
pub const MAX_WAITING_PER_TARGET: u32 = 8;
/// Bytes all waiting deliveries together may hold.
pub const MAX_WAITING_BYTES: u64 = 256 * 1024 * 1024;
/// A verification's `hub.challenge` longer than this is refused.
pub const MAX_CHALLENGE_BYTES: usize = 1024;
/// Discoveries waiting for the subscriber; more are dropped (the next poll reports them again).
pub const MAX_QUEUED_DISCOVERIES: usize = 4096;

/// The WebSub service of a host: shared by the poll pipelines (which report hubs and take
/// deliveries), the inbound listener (which answers hubs) and the subscriber task.
pub struct WebSub {
    backend: Arc<dyn Backend>,
    clock: SharedClock,
    /// `http://host:port` (or `host.inbound_url`), no trailing slash.
    callback_base: String,
    connectors: Mutex<HashMap<String, Registered>>,
    discoveries: mpsc::Sender<Discovery>,
    pending: Mutex<Option<mpsc::Receiver<Discovery>>>,
    counters: WebSubCounters,
}

/// What the service knows of a connector with WebSub on.
#[derive(Clone)]
struct Registered {
    /// Its allowlist: a hub is reached only if the connector may reach it.
    policy: Arc<EgressPolicy>,
    /// Its `limits.response_size`: a delivery is a response by another road.
    max_body: usize,
    /// Wakes its poll pipeline when a delivery made a target due.
    nudge: Arc<Notify>,
}

/// A hub a poll reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Discovery {
    connector: String,
    target_id: i64,
    link: HubLink,
}

#[derive(Debug, Default)]
struct WebSubCounters {
    requests_sent: AtomicU64,
    requests_failed: AtomicU64,
    verified: AtomicU64,
    deliveries: AtomicU64,
    bad_signatures: AtomicU64,
    refused_deliveries: AtomicU64,
    dropped_discoveries: AtomicU64,
}

/// `/status`'s `inbound.websub`.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct WebSubStatus {
    /// Where hubs are told to call back (`{callback_base}/websub/{id}`).
    pub callback_base: String,
    #[serde(flatten)]
    pub subscriptions: SubscriptionCounts,
    /// Subscribe requests sent to hubs, and those that failed.
    pub requests_sent: u64,
    pub requests_failed: u64,
    /// Verifications of intent answered.
    pub verified: u64,
    /// Deliveries stored.
    pub deliveries: u64,
    /// Deliveries ignored for a missing or wrong signature.
    pub bad_signatures: u64,
    /// Deliveries refused for a cap (too large, too many waiting) or a gone target.
    pub refused_deliveries: u64,
    /// Discoveries dropped because the subscriber was behind.
    pub dropped_discoveries: u64,
}

impl WebSub {
    /// The service, calling back at `callback_base`.
    pub fn new(backend: Arc<dyn Backend>, clock: SharedClock, callback_base: &str) -> Arc<Self> {
        let (discoveries, receiver) = mpsc::channel(MAX_QUEUED_DISCOVERIES);
        Arc::new(Self {
            backend,
            clock,
            callback_base: callback_base.trim_end_matches('/').to_string(),
            connectors: Mutex::new(HashMap::new()),
            discoveries,
            pending: Mutex::new(Some(receiver)),
            counters: WebSubCounters::default(),
        })
    }

    /// Starts the subscriber (discoveries, renewals, retries) until `stop`; once.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let receiver = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(tokio::spawn(subscriber::run(self.clone(), receiver, stop)))
    }

    /// Turns WebSub on for `connector` (again, after a reload): what its poll pipeline uses.
    pub fn connector(
        self: &Arc<Self>,
        connector: &str,
        policy: Arc<EgressPolicy>,
        max_body: u64,
    ) -> ConnectorWebSub {
        let nudge = Arc::new(Notify::new());
        self.lock().insert(
            connector.to_string(),
            Registered {
                policy,
                max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
                nudge: nudge.clone(),
            },
        );
        ConnectorWebSub {
            service: self.clone(),
            connector: connector.to_string(),
            nudge,
        }
    }

    /// Turns WebSub off for `connector`: its deliveries are refused from now on.
    pub fn forget_connector(&self, connector: &str) {
        self.lock().remove(connector);
    }

    fn registered(&self, connector: &str) -> Option<Registered> {
        self.lock().get(connector).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registered>> {
        self.connectors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn callback_url(&self, id: &str) -> String {
        format!("{}/websub/{id}", self.callback_base)
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    pub async fn status(&self) -> WebSubStatus {
        let subscriptions = self.backend.count_subscriptions().await.unwrap_or_default();
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WebSubStatus {
            callback_base: self.callback_base.clone(),
            subscriptions,
            requests_sent: load(&c.requests_sent),
            requests_failed: load(&c.requests_failed),
            verified: load(&c.verified),
            deliveries: load(&c.deliveries),
            bad_signatures: load(&c.bad_signatures),
            refused_deliveries: load(&c.refused_deliveries),
            dropped_discoveries: load(&c.dropped_discoveries),
        }
    }
}

/// One connector's side of WebSub, held by its poll pipeline.
#[derive(Clone)]
pub struct ConnectorWebSub {
    service: Arc<WebSub>,
    connector: String,
    nudge: Arc<Notify>,
}

impl ConnectorWebSub {
    /// Notified when a delivery made one of the connector's targets due.
    pub fn nudge(&self) -> &Notify {
        &self.nudge
    }

    /// The oldest delivery waiting for `target_id`; a store failure is logged and the poll goes
    /// out as usual.
    pub async fn waiting(&self, target_id: i64) -> Option<PushDelivery> {
        match self
            .service
            .backend
            .next_delivery(&self.connector, target_id)
            .await
        {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(connector = %self.connector, "cannot read waiting deliveries: {error}");
                None
            }
        }
    }

    /// After a poll of `target_id` was committed: the delivery the call read (its id, if any) is
    /// deleted, and if another waits — or one arrived while the poll ran, whose commit then
    /// moved the target's next run — the target is due again at once.
    pub async fn after_poll(&self, read: Option<i64>, target_id: i64, target: &str) {
        let backend = &self.service.backend;
        if let Some(delivery) = read
            && let Err(error) = backend.delete_delivery(delivery).await
        {
            tracing::warn!(connector = %self.connector, target = %crate::redact::url(target),
                "cannot delete a delivery that was read; it will be read again: {error}");
        }
        if let Ok(Some(_)) = backend.next_delivery(&self.connector, target_id).await
            && backend
                .wake_target(target, self.service.now())
                .await
                .is_ok()
        {
            self.nudge.notify_one();
        }
    }

    /// Whether `target_id`'s updates are pushed now (an active subscription within its lease).
    pub async fn subscribed(&self, target_id: i64) -> bool {
        let now = self.service.now();
        matches!(
            self.service.backend.subscription_of(&self.connector, target_id).await,
            Ok(Some(subscription))
                if subscription.state == tsunagi_backends::SubscriptionState::Active
                    && subscription.lease_until.is_some_and(|until| until > now)
        )
    }

    /// Hubs a poll of `target_id` reported, for the subscriber (dropped if it is behind).
    pub fn discovered(&self, target_id: i64, hubs: Vec<HubLink>) {
        for link in hubs {
            let discovery = Discovery {
                connector: self.connector.clone(),
                target_id,
                link,
            };
            if self.service.discoveries.try_send(discovery).is_err() {
                self.service
                    .counters
                    .dropped_discoveries
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
