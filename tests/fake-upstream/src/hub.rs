//! A fake WebSub hub (W3C WebSub, as a hub plays it) on 127.0.0.1: it takes
//! `hub.mode=subscribe` requests (answering 202), verifies each subscriber's intent with a
//! `GET` of its callback carrying a random `hub.challenge` and the lease it grants, and keeps
//! the subscriptions whose callback echoed the challenge. [`FakeHub::publish`] then POSTs an
//! update to every subscriber of a topic, signed `X-Hub-Signature: sha256=…` with that
//! subscriber's secret; [`FakeHub::publish_signed_with`] signs with another key, as a forger
//! would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A subscription the hub verified.
#[derive(Clone, Debug)]
pub struct HubSubscription {
    pub callback: String,
    pub topic: String,
    pub secret: String,
    /// The lease the hub granted, in seconds.
    pub lease_seconds: u64,
    pub verified_at: Instant,
}

/// How one delivery went: the subscriber's status, and when the hub started sending it.
#[derive(Clone, Debug)]
pub struct DeliveryOutcome {
    pub status: u16,
    pub sent_at: Instant,
}

struct HubState {
    lease_seconds: u64,
    requests: AtomicU64,
    verifications: AtomicU64,
    subscriptions: Mutex<Vec<HubSubscription>>,
    changed: Notify,
    client: reqwest::Client,
}

/// A running fake hub; aborted when dropped.
pub struct FakeHub {
    addr: std::net::SocketAddr,
    state: Arc<HubState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHub {
    /// A hub granting leases of `lease_seconds`.
    pub async fn start(lease_seconds: u64) -> anyhow::Result<FakeHub> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(HubState {
            lease_seconds,
            requests: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
            subscriptions: Mutex::new(Vec::new()),
            changed: Notify::new(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()?,
        });
        let shared = state.clone();
        let task = tokio::spawn(crate::accept::serve_each(listener, move |request| {
            let state = shared.clone();
            async move {
                let body = match request.into_body().collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(_) => return answer(StatusCode::BAD_REQUEST, "unreadable body"),
                };
                state.take_request(&body)
            }
        }));
        Ok(FakeHub { addr, state, task })
    }

    /// The hub's URL, as a feed names it in `<link rel="hub">`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Subscribe requests received.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Verifications the subscribers passed (renewals count again).
    pub fn verifications(&self) -> u64 {
        self.state.verifications.load(Ordering::Relaxed)
    }

    /// The verified subscriptions.
    pub fn subscriptions(&self) -> Vec<HubSubscription> {
        self.state.lock().clone()
    }

    /// Waits (at most `within`) until `verifications()` reaches `count`.
    pub async fn until_verified(&self, count: u64, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                let changed = self.state.changed.notified();
                if self.verifications() >= count {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }

    /// POSTs `body` to every subscriber of `topic`, signed with its own secret.
    pub async fn publish(
        &self,
        topic: &str,
        content_type: &str,
        body: &str,
    ) -> Vec<DeliveryOutcome> {
        self.deliver(topic, content_type, body, None).await
    }

    /// The same, signed with `secret` instead of the subscriber's (a forged delivery).
    pub async fn publish_signed_with(
        &self,
        topic: &str,
        content_type: &str,
        body: &str,
        secret: &str,
    ) -> Vec<DeliveryOutcome> {
        self.deliver(topic, content_type, body, Some(secret)).await
    }

    async fn deliver(
        &self,
        topic: &str,
        content_type: &str,
        body: &str,
        forged: Option<&str>,
    ) -> Vec<DeliveryOutcome> {
        let subscribers: Vec<HubSubscription> = self
            .subscriptions()
            .into_iter()
            .filter(|s| s.topic == topic)
            .collect();
        let mut outcomes = Vec::new();
        for subscriber in subscribers {
            let secret = forged.unwrap_or(&subscriber.secret);
            let sent_at = Instant::now();
            let status = self
                .state
                .client
                .post(&subscriber.callback)
                .header("content-type", content_type)
                .header("x-hub-signature", sign(secret, body.as_bytes()))
                .header(
                    "link",
                    format!("<{}>; rel=\"hub\", <{topic}>; rel=\"self\"", self.url()),
                )
                .body(body.to_string())
                .send()
                .await
                .map_or(0, |response| response.status().as_u16());
            outcomes.push(DeliveryOutcome { status, sent_at });
        }
        outcomes
    }
}

/// `sha256=HEX` of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn answer(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response
}

impl HubState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HubSubscription>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A subscribe request: 202, and the verification runs after the answer.
    fn take_request(self: &Arc<Self>, body: &[u8]) -> Response<Full<Bytes>> {
        let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let (Some(mode), Some(topic), Some(callback)) =
            (field("hub.mode"), field("hub.topic"), field("hub.callback"))
        else {
            return answer(
                StatusCode::BAD_REQUEST,
                "hub.mode, hub.topic and hub.callback are required",
            );
        };
        if mode != "subscribe" {
            return answer(StatusCode::BAD_REQUEST, "this hub only subscribes");
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let secret = field("hub.secret").unwrap_or_default();
        let state = self.clone();
        tokio::spawn(async move { state.verify(callback, topic, secret).await });
        answer(StatusCode::ACCEPTED, "verification follows")
    }

    async fn verify(self: Arc<Self>, callback: String, topic: String, secret: String) {
        let challenge = format!("challenge-{:016x}", rand_u64());
        let lease = self.lease_seconds.to_string();
        let Ok(mut url) = reqwest::Url::parse(&callback) else {
            return;
        };
        url.query_pairs_mut()
            .append_pair("hub.mode", "subscribe")
            .append_pair("hub.topic", &topic)
            .append_pair("hub.challenge", &challenge)
            .append_pair("hub.lease_seconds", &lease);
        let Ok(response) = self.client.get(url).send().await else {
            return;
        };
        let ok = response.status().is_success();
        let echoed = response.text().await.unwrap_or_default();
        if ok && echoed == challenge {
            let mut subscriptions = self.lock();
            subscriptions.retain(|s| s.callback != callback);
            subscriptions.push(HubSubscription {
                callback,
                topic,
                secret,
                lease_seconds: self.lease_seconds,
                verified_at: Instant::now(),
            });
            drop(subscriptions);
            self.verifications.fetch_add(1, Ordering::Relaxed);
            self.changed.notify_waiters();
        }
    }
}

/// A challenge nobody could predict from the test's side.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
