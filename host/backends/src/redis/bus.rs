//! Announcements between hosts on Redis Pub/Sub ("plugin X is now version Y"), with the
//! watchdog of the config-push write-up: Pub/Sub delivers at most once and says nothing when a
//! connection silently stops delivering (a NAT entry or a proxy that dropped it), so a
//! subscriber that has heard nothing for half its watchdog interval publishes a ping to a
//! channel of its own, and reconnects when the ping does not come back within the other half.
//! A message missed meanwhile is the periodic reconcile's to catch; the bus only promises to
//! be listening again within about one watchdog interval.

use super::RedisStore;
use crate::{BackendError, Result};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The largest message the bus carries (announcements name a version, not its content); a
/// longer one is refused when published and dropped when received.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Messages received and not yet taken; past it new ones are dropped (counted), since the
/// reconcile catches up anyway.
pub const QUEUED_MESSAGES: usize = 256;
/// Pause before connecting again after a failed attempt: from this, doubling …
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
/// … up to this.
const RECONNECT_LONGEST: Duration = Duration::from_secs(5);

/// Publishing and subscribing to topics under the store's prefix.
#[derive(Debug, Clone)]
pub struct RedisBus {
    store: RedisStore,
}

/// How a subscription is doing, for `/status` and tests.
#[derive(Debug, Default)]
pub struct SubscriptionHealth {
    connected: AtomicBool,
    /// Connections given up (closed, or silent past the watchdog) and made again.
    reconnects: AtomicU64,
    /// Messages dropped: over [`MAX_MESSAGE_BYTES`], or with [`QUEUED_MESSAGES`] waiting.
    dropped: AtomicU64,
}

impl SubscriptionHealth {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Messages of one topic, as they arrive; the listening task ends when this is dropped.
#[derive(Debug)]
pub struct Subscription {
    messages: mpsc::Receiver<String>,
    health: Arc<SubscriptionHealth>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// The next message (waits; `None` only if the listener stopped).
    pub async fn next(&mut self) -> Option<String> {
        self.messages.recv().await
    }

    pub fn health(&self) -> &Arc<SubscriptionHealth> {
        &self.health
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisBus {
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn channel(&self, topic: &str) -> String {
        self.store.key(&format!("bus:{topic}"))
    }

    /// Sends `message` to every subscriber of `topic` now listening; answers how many heard it.
    pub async fn publish(&self, topic: &str, message: &str) -> Result<u64> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(BackendError::Refused(format!(
                "a bus message of {} bytes is over the limit of {MAX_MESSAGE_BYTES}",
                message.len()
            )));
        }
        let mut connection = self.store.connection();
        redis::cmd("PUBLISH")
            .arg(self.channel(topic))
            .arg(message)
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("publishing on the bus"))
    }

    /// Listens to `topic` from now on, with a watchdog of `watchdog` (see the module's doc).
    pub fn subscribe(&self, topic: &str, watchdog: Duration) -> Subscription {
        let (sender, messages) = mpsc::channel(QUEUED_MESSAGES);
        let health = Arc::new(SubscriptionHealth::default());
        let listener = Listener {
            client: self.store.client().clone(),
            channel: self.channel(topic),
            ping_channel: self.store.key(&format!(
                "bus-ping:{}:{}",
                std::process::id(),
                NEXT_LISTENER.fetch_add(1, Ordering::Relaxed)
            )),
            quiet: (watchdog / 2).max(Duration::from_millis(10)),
            sender,
            health: health.clone(),
        };
        Subscription {
            messages,
            health,
            task: tokio::spawn(listener.run()),
        }
    }
}

static NEXT_LISTENER: AtomicU64 = AtomicU64::new(0);

struct Listener {
    client: redis::Client,
    channel: String,
    ping_channel: String,
    /// Half the watchdog: silence before a ping, and how long the ping may take.
    quiet: Duration,
    sender: mpsc::Sender<String>,
    health: Arc<SubscriptionHealth>,
}

impl Listener {
    async fn run(self) {
        let mut pause = RECONNECT_FIRST;
        loop {
            let connected = tokio::time::timeout(self.quiet, self.connect()).await;
            let Ok(Ok((pubsub, publisher))) = connected else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_LONGEST);
                continue;
            };
            pause = RECONNECT_FIRST;
            self.health.connected.store(true, Ordering::SeqCst);
            let open = self.listen(pubsub, publisher).await;
            self.health.connected.store(false, Ordering::SeqCst);
            if !open {
                return;
            }
            self.health.reconnects.fetch_add(1, Ordering::SeqCst);
            tracing::info!(channel = %self.channel,
                "the bus connection went silent or closed; connecting again");
        }
    }

    async fn connect(
        &self,
    ) -> redis::RedisResult<(redis::aio::PubSub, redis::aio::MultiplexedConnection)> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        pubsub.subscribe(&self.ping_channel).await?;
        // Pings go out on a connection of their own, the way announcements come in.
        let publisher = self.client.get_multiplexed_async_connection().await?;
        Ok((pubsub, publisher))
    }

    /// Forwards messages until the connection closes or goes silent (true), or nobody takes
    /// messages any more (false).
    async fn listen(
        &self,
        mut pubsub: redis::aio::PubSub,
        mut publisher: redis::aio::MultiplexedConnection,
    ) -> bool {
        let mut messages = pubsub.on_message();
        let mut ping_sent: Option<Instant> = None;
        loop {
            let wait = match ping_sent {
                None => self.quiet,
                Some(at) => self.quiet.saturating_sub(at.elapsed()),
            };
            match tokio::time::timeout(wait, messages.next()).await {
                Ok(Some(message)) => {
                    ping_sent = None;
                    if message.get_channel_name() == self.ping_channel {
                        continue;
                    }
                    if !self.forward(message.get_payload_bytes()) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) if ping_sent.is_none() => {
                    let mut ping = redis::cmd("PUBLISH");
                    ping.arg(&self.ping_channel).arg("ping");
                    let sent = ping.query_async::<i64>(&mut publisher);
                    match tokio::time::timeout(self.quiet, sent).await {
                        Ok(Ok(_)) => ping_sent = Some(Instant::now()),
                        _ => return true,
                    }
                }
                // The ping did not come back.
                Err(_) => return true,
            }
        }
    }

    /// Hands a message on; false when the subscription was dropped.
    fn forward(&self, payload: &[u8]) -> bool {
        let message = match std::str::from_utf8(payload) {
            Ok(text) if payload.len() <= MAX_MESSAGE_BYTES => text.to_string(),
            _ => {
                self.health.dropped.fetch_add(1, Ordering::SeqCst);
                return true;
            }
        };
        match self.sender.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.health.dropped.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
