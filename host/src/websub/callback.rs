//! What the inbound listener answers a hub at `/websub/{id}`: the verification of intent
//! (`GET`, echo `hub.challenge` for a subscription we asked for, with its topic) and content
//! distribution (`POST`, signature checked, body stored as a delivery that makes the target
//! due). An unknown id answers 404 to a verification and 410 Gone to a delivery, so a hub stops
//! sending to a subscription we no longer hold.

use super::signature::{self, SignatureError};
use super::{MAX_CHALLENGE_BYTES, MAX_LEASE, MAX_WAITING_BYTES, MAX_WAITING_PER_TARGET, WebSub};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tsunagi_backends::{DeliveryRefusal, Millis, PushDelivery, Subscription, SubscriptionState};

/// An answer to a hub: status, plain-text body, and a `Retry-After` for a 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<u32>,
}

impl Answer {
    /// 503 with `Retry-After: 60`: the store failed; the hub should try again.
    fn unavailable() -> Self {
        Self {
            retry_after: Some(60),
            ..Self::new(503, "try again later\n")
        }
    }

    /// 410 Gone: a delivery for an id we do not hold; the hub should stop.
    pub fn gone() -> Self {
        Self::new(410, "no such subscription\n")
    }

    fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            retry_after: None,
        }
    }
}

/// A callback id is 32 lowercase hex digits; anything else is not ours (and not a store query).
fn well_formed(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl WebSub {
    /// The subscription a callback id names (the listener sizes a delivery's body by it); an
    /// answer for the hub when the store fails.
    pub async fn callback_subscription(&self, id: &str) -> Result<Option<Subscription>, Answer> {
        if !well_formed(id) {
            return Ok(None);
        }
        self.backend.subscription(id).await.map_err(|error| {
            tracing::warn!("WebSub: cannot read a subscription: {error}");
            Answer::unavailable()
        })
    }

    /// A hub's `GET` of the callback, with its query's `hub.*` parameters.
    pub async fn verify(&self, id: &str, query: &[(String, String)]) -> Answer {
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let subscription = match self.callback_subscription(id).await {
            Ok(Some(subscription)) => subscription,
            Ok(None) => return Answer::new(404, "no such subscription\n"),
            Err(answer) => return answer,
        };
        let shown_hub = crate::redact::url(&subscription.hub).into_owned();
        match param("hub.mode") {
            Some("subscribe") => {}
            Some("denied") => {
                let reason: String = param("hub.reason")
                    .unwrap_or("no reason given")
                    .chars()
                    .take(200)
                    .collect();
                let reason = crate::redact::text(&reason).into_owned();
                tracing::warn!(connector = %subscription.connector, hub = %shown_hub,
                    "WebSub: the hub denied the subscription; the target is polled as before: {reason}");
                let mut denied = subscription;
                denied.state = SubscriptionState::Denied;
                denied.last_error = Some(format!("denied by the hub: {reason}"));
                let _ = self.backend.put_subscription(&denied).await;
                return Answer::new(200, "");
            }
            // We never unsubscribe through this id: a hub asking is not acting for us.
            _ => return Answer::new(404, "not a subscription request we made\n"),
        }
        if param("hub.topic") != Some(subscription.topic.as_str()) {
            return Answer::new(404, "not the topic we subscribed to\n");
        }
        let Some(challenge) = param("hub.challenge").filter(|c| !c.is_empty()) else {
            return Answer::new(400, "hub.challenge is missing\n");
        };
        if challenge.len() > MAX_CHALLENGE_BYTES {
            return Answer::new(400, "hub.challenge is too long\n");
        }
        let lease = param("hub.lease_seconds")
            .and_then(|seconds| seconds.trim().parse::<u64>().ok())
            .map_or(super::REQUESTED_LEASE, Duration::from_secs)
            .clamp(Duration::from_secs(1), MAX_LEASE);
        let now = self.now();
        let lease_ms = Millis::try_from(lease.as_millis()).unwrap_or(Millis::MAX);
        let mut active = subscription;
        active.state = SubscriptionState::Active;
        active.lease_until = Some(now.saturating_add(lease_ms));
        // Renewed when nine tenths of the lease have passed.
        active.renew_at = now.saturating_add(lease_ms / 10 * 9);
        active.attempts = 0;
        active.last_error = None;
        if let Err(error) = self.backend.put_subscription(&active).await {
            tracing::warn!(connector = %active.connector, "WebSub: cannot store a verification: {error}");
            return Answer::unavailable();
        }
        self.counters.verified.fetch_add(1, Ordering::Relaxed);
        tracing::info!(connector = %active.connector, hub = %shown_hub,
            lease_seconds = lease.as_secs(), "WebSub: subscription verified");
        Answer::new(200, challenge)
    }

    /// The largest delivery body `id`'s connector takes (0 when the id is not ours).
    pub fn max_body(&self, connector: &str) -> usize {
        self.registered(connector).map_or(0, |r| r.max_body)
    }

    /// A hub's `POST` of an update. `body` is `Err(())` when it was over
    /// [`Self::max_body`] (the caller read no further).
    pub async fn deliver(
        &self,
        subscription: &Subscription,
        content_type: Option<&str>,
        signature_header: Option<&str>,
        body: Result<Vec<u8>, ()>,
    ) -> Answer {
        let connector = subscription.connector.as_str();
        let refused = || {
            self.counters
                .refused_deliveries
                .fetch_add(1, Ordering::Relaxed);
        };
        let Some(registered) = self.registered(connector) else {
            refused();
            return Answer::new(410, "this subscription is no longer wanted\n");
        };
        let body = match body {
            Ok(body) => body,
            Err(_) => {
                refused();
                tracing::warn!(%connector, hub = %crate::redact::url(&subscription.hub),
                    "WebSub: a delivery over limits.response_size ({} bytes) was refused",
                    registered.max_body);
                return Answer::new(413, "the update is larger than this subscriber takes\n");
            }
        };
        if let Err(error) =
            signature::verify(signature_header, subscription.secret.as_bytes(), &body)
        {
            self.counters.bad_signatures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%connector, hub = %crate::redact::url(&subscription.hub),
                "WebSub: a delivery was ignored, nothing stored: {error}");
            // WebSub lets a subscriber acknowledge an invalid one, so a forger learns nothing.
            return Answer::new(
                202,
                match error {
                    SignatureError::UnknownMethod(_) => "unsupported signature method\n",
                    _ => "",
                },
            );
        }
        if subscription.state != SubscriptionState::Active {
            refused();
            return Answer::new(410, "this subscription is not active\n");
        }
        let delivery = PushDelivery {
            id: 0,
            subscription_id: subscription.id.clone(),
            connector: connector.to_string(),
            target_id: subscription.target_id,
            content_type: content_type.map(|kind| kind.chars().take(200).collect()),
            body,
            received_at: self.now(),
        };
        let stored = self
            .backend
            .add_delivery(&delivery, MAX_WAITING_PER_TARGET, MAX_WAITING_BYTES)
            .await;
        match stored {
            Ok(Ok(_)) => {
                self.counters.deliveries.fetch_add(1, Ordering::Relaxed);
                registered.nudge.notify_one();
                Answer::new(202, "")
            }
            Ok(Err(DeliveryRefusal::TargetGone)) => {
                refused();
                let _ = self.backend.delete_subscription(&subscription.id).await;
                Answer::new(410, "the feed is no longer crawled\n")
            }
            Ok(Err(full)) => {
                refused();
                tracing::info!(%connector, "WebSub: a delivery was refused for now: {full:?}");
                Answer {
                    retry_after: Some(60),
                    ..Answer::new(503, "too many updates waiting; retry later\n")
                }
            }
            Err(error) => {
                tracing::warn!(%connector, "WebSub: cannot store a delivery: {error}");
                Answer::unavailable()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::egress::EgressPolicy;
    use std::sync::{Arc, Mutex};

    /// The log lines written while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_bad_signature_stores_nothing_and_is_logged_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn tsunagi_backends::Backend> = Arc::new(
            tsunagi_backends::sqlite::SqliteBackend::open(
                dir.path().join("t.db").to_str().unwrap(),
            )
            .await
            .unwrap(),
        );
        let now = 1_700_000_000_000;
        let feed = "http://127.0.0.1:9/feed".to_string();
        backend
            .add_targets("rss", std::slice::from_ref(&feed), now + 3_600_000)
            .await
            .unwrap();
        let target = backend.get_target("rss", &feed).await.unwrap().unwrap();
        let subscription = Subscription {
            id: "ab".repeat(16),
            connector: "rss".into(),
            target_id: target.id,
            hub: "http://127.0.0.1:9/hub".into(),
            topic: feed.clone(),
            secret: "the-subscription-secret".into(),
            state: SubscriptionState::Active,
            lease_until: Some(now + 60_000),
            renew_at: now + 50_000,
            attempts: 0,
            last_error: None,
        };
        backend.put_subscription(&subscription).await.unwrap();
        let websub = WebSub::new(
            backend.clone(),
            Arc::new(ManualClock::starting_at(now)),
            "http://127.0.0.1:8080",
        );
        let _on = websub.connector("rss", Arc::new(EgressPolicy::new("rss", Vec::new())), 1024);

        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let body = b"<feed/>".to_vec();
        let forged = signature::sign_sha256(b"guess", &body);
        let answer = websub
            .deliver(
                &subscription,
                Some("application/atom+xml"),
                Some(&forged),
                Ok(body.clone()),
            )
            .await;
        assert_eq!(answer.status, 202);
        let counts = backend.count_subscriptions().await.unwrap();
        assert_eq!(counts.deliveries_waiting, 0, "nothing stored");
        assert_eq!(
            backend.count_due("rss", now).await.unwrap(),
            0,
            "nothing woken"
        );
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(
            logged.contains("WebSub: a delivery was ignored, nothing stored")
                && logged.contains("does not match"),
            "{logged}"
        );
        assert!(!logged.contains("the-subscription-secret"), "{logged}");

        // Signed right, it is stored and its target due; over the cap it is refused.
        let signed = signature::sign_sha256(subscription.secret.as_bytes(), &body);
        let answer = websub
            .deliver(&subscription, None, Some(&signed), Ok(body))
            .await;
        assert_eq!(answer.status, 202);
        assert_eq!(backend.count_due("rss", now).await.unwrap(), 1);
        let answer = websub
            .deliver(&subscription, None, Some(&signed), Err(()))
            .await;
        assert_eq!(answer.status, 413);
        assert_eq!(websub.max_body("rss"), 1024);
    }

    #[test]
    fn only_our_ids_reach_the_store() {
        assert!(well_formed("0123456789abcdef0123456789abcdef"));
        assert!(!well_formed("0123456789abcdef"));
        assert!(!well_formed("0123456789abcdef0123456789abcdeg"));
        assert!(!well_formed("../../../../etc/passwd0123456789ab"));
    }
}
