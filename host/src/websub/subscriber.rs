//! The subscriber task: turns reported hubs into subscriptions and keeps them alive. It sends
//! `hub.mode=subscribe` for a new (target, hub, topic), asks again when a hub does not verify
//! within [`VERIFY_WAIT`](super::VERIFY_WAIT) or a request fails (backing off, at most
//! [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS) in a row), and renews an active subscription when
//! nine tenths of its lease have passed. A hub is reached only if the connector's allowlist
//! allows it, through the SSRF-guarded client every host-made request uses.

use super::{Discovery, MAX_ATTEMPTS, REQUESTED_LEASE, Registered, VERIFY_WAIT, WebSub};
use crate::egress::{Destination, PolicyOwner};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Millis, Subscription, SubscriptionState};

/// How often the subscriber looks for subscriptions to renew or ask again.
const RENEW_CHECK: Duration = Duration::from_millis(250);
/// Subscriptions taken up per look.
const RENEW_BATCH: u32 = 64;
/// Requests to hubs at once.
const REQUESTS_AT_ONCE: usize = 8;
/// One request to a hub, connection to answer.
const HUB_TIMEOUT: Duration = Duration::from_secs(10);
/// What of a hub's answer is read (for the error message).
const MAX_HUB_ANSWER: usize = 4096;
/// The first retry of a failed request; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// When the connector's WebSub is off (or off for a moment, in a reload), its due
/// subscriptions are looked at again after this, so they do not crowd out the others.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

pub(super) async fn run(
    service: Arc<WebSub>,
    mut discoveries: mpsc::Receiver<Discovery>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(REQUESTS_AT_ONCE));
    let mut tick = tokio::time::interval(RENEW_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(discovery) = discoveries.recv() => {
                if let Some(subscription) = service.subscription_for(&discovery).await {
                    spawn_request(&service, &slots, subscription).await;
                }
            }
            _ = tick.tick() => {
                for subscription in service.due().await {
                    spawn_request(&service, &slots, subscription).await;
                }
            }
        }
    }
}

async fn spawn_request(service: &Arc<WebSub>, slots: &Arc<Semaphore>, subscription: Subscription) {
    let Ok(slot) = slots.clone().acquire_owned().await else {
        return;
    };
    let service = service.clone();
    tokio::spawn(async move {
        service.request(subscription).await;
        drop(slot);
    });
}

fn random_hex(bytes: usize) -> String {
    let random: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(random)
}

fn ms(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempts.min(16))
        .min(MAX_BACKOFF)
}

impl WebSub {
    /// A new subscription for a reported hub, unless the target has one for it already.
    async fn subscription_for(&self, discovery: &Discovery) -> Option<Subscription> {
        self.registered(&discovery.connector)?;
        let existing = self
            .backend
            .subscription_of(&discovery.connector, discovery.target_id)
            .await
            .map_err(|error| {
                tracing::warn!(connector = %discovery.connector,
                "cannot read a target's subscription: {error}")
            })
            .ok()?;
        if existing.is_some_and(|s| s.hub == discovery.link.hub && s.topic == discovery.link.topic)
        {
            return None;
        }
        let subscription = Subscription {
            // 128 bits: the callback URL is the only thing a stranger could guess.
            id: random_hex(16),
            connector: discovery.connector.clone(),
            target_id: discovery.target_id,
            hub: discovery.link.hub.clone(),
            topic: discovery.link.topic.clone(),
            secret: random_hex(32),
            state: SubscriptionState::Requested,
            lease_until: None,
            // Not taken up by the renewal look while its first request runs.
            renew_at: self.now().saturating_add(ms(VERIFY_WAIT)),
            attempts: 0,
            last_error: None,
        };
        if let Err(error) = self.backend.put_subscription(&subscription).await {
            tracing::warn!(connector = %discovery.connector, "cannot store a subscription: {error}");
            return None;
        }
        Some(subscription)
    }

    /// Subscriptions to renew or ask again now; those of connectors with WebSub off wait.
    async fn due(&self) -> Vec<Subscription> {
        let now = self.now();
        let Ok(due) = self.backend.subscriptions_due(now, RENEW_BATCH).await else {
            return Vec::new();
        };
        let mut ready = Vec::with_capacity(due.len());
        for mut subscription in due {
            if self.registered(&subscription.connector).is_some() {
                // Not taken up again while its request runs.
                subscription.renew_at = now.saturating_add(ms(VERIFY_WAIT));
            } else {
                subscription.renew_at = now.saturating_add(ms(IDLE_RECHECK));
                let _ = self.backend.put_subscription(&subscription).await;
                continue;
            }
            if self.backend.put_subscription(&subscription).await.is_ok() {
                ready.push(subscription);
            }
        }
        ready
    }

    /// Sends `hub.mode=subscribe` and records a failure. The attempt is counted before the
    /// request goes out: the hub may verify (and so update the subscription) before it answers.
    async fn request(&self, mut subscription: Subscription) {
        let Some(registered) = self.registered(&subscription.connector) else {
            return;
        };
        subscription.attempts = subscription.attempts.saturating_add(1);
        if subscription.attempts > MAX_ATTEMPTS
            && subscription.state == SubscriptionState::Requested
        {
            let why = subscription
                .last_error
                .clone()
                .unwrap_or_else(|| "no verification came".into());
            tracing::warn!(connector = %subscription.connector,
                hub = %crate::redact::url(&subscription.hub),
                "WebSub: giving the subscription up after {MAX_ATTEMPTS} requests; the target is polled as before: {why}");
            subscription.state = SubscriptionState::Denied;
            subscription.last_error =
                Some(format!("given up after {MAX_ATTEMPTS} requests: {why}"));
            let _ = self.backend.put_subscription(&subscription).await;
            return;
        }
        if let Err(error) = self.backend.put_subscription(&subscription).await {
            tracing::warn!(connector = %subscription.connector, "cannot store a subscription: {error}");
            return;
        }
        let sent = self.send_subscribe(&subscription, &registered).await;
        self.counters.requests_sent.fetch_add(1, Ordering::Relaxed);
        let Err(reason) = sent else {
            return;
        };
        self.counters
            .requests_failed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(connector = %subscription.connector,
            hub = %crate::redact::url(&subscription.hub), attempts = subscription.attempts,
            "WebSub subscribe request failed: {reason}");
        // Unless something else changed it meanwhile, it is asked again after a backoff.
        let Ok(Some(current)) = self.backend.subscription(&subscription.id).await else {
            return;
        };
        if current != subscription {
            return;
        }
        let mut next = current;
        next.last_error = Some(reason);
        next.renew_at = self.now().saturating_add(ms(backoff(next.attempts)));
        if let Err(error) = self.backend.put_subscription(&next).await {
            tracing::warn!(connector = %next.connector, "cannot store a subscription: {error}");
        }
    }

    async fn send_subscribe(
        &self,
        subscription: &Subscription,
        registered: &Registered,
    ) -> Result<(), String> {
        let hub = url::Url::parse(&subscription.hub).map_err(|e| {
            format!(
                "the hub {:?} is not a URL: {e}",
                crate::redact::url(&subscription.hub)
            )
        })?;
        let index = registered
            .policy
            .check(&hub)
            .map_err(|refusal| refusal.to_string())?;
        let allow_internal = registered
            .policy
            .rules()
            .get(index)
            .is_some_and(|rule| rule.allow_internal);
        let owner = PolicyOwner::Connector(subscription.connector.clone());
        let destination = Destination::new(owner, hub.as_str(), allow_internal, HUB_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let callback = self.callback_url(&subscription.id);
        let lease = REQUESTED_LEASE.as_secs().to_string();
        let form = [
            ("hub.mode", "subscribe"),
            ("hub.topic", subscription.topic.as_str()),
            ("hub.callback", callback.as_str()),
            ("hub.secret", subscription.secret.as_str()),
            ("hub.lease_seconds", lease.as_str()),
        ];
        let (status, body) = destination
            .post_form(&form, None, MAX_HUB_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            return Ok(());
        }
        let said: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        Err(format!(
            "{} answered HTTP {}: {}",
            destination.printed_url(),
            status.as_u16(),
            crate::redact::text(said.trim())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(3), FIRST_BACKOFF * 8);
        assert_eq!(backoff(40), MAX_BACKOFF);
        let id = random_hex(16);
        assert_eq!(id.len(), 32);
        assert_ne!(id, random_hex(16));
    }
}
