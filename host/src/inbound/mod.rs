//! The inbound listener (`host.inbound_listen`): where the outside pushes to us instead of
//! being polled. It listens apart from the admin API, since pingers are strangers: they reach
//! these endpoints and nothing else.
//!
//! - `POST /ping` and `POST /RPC2`: XML-RPC `weblogUpdates.ping(name, site)` and
//!   `weblogUpdates.extendedPing(name, site, changes, feed)` ([`ping`]). A ping for a feed we
//!   crawl — extendedPing's feed URL, else the site URL as a target — makes that target due
//!   now in every connector holding it; failing that, up to [`MAX_SITE_TARGETS`] targets under
//!   the site's path. A URL pinged again within [`PING_FLOOR`] is due when the floor ends, not
//!   at once, so a pinger cannot make us poll a feed faster than that. A ping naming nothing
//!   we crawl, or a malformed call, answers an XML-RPC fault and changes nothing.
//!
//! - `GET` and `POST /websub/{id}`: a WebSub hub verifying a subscription we asked for, and
//!   delivering an update ([`crate::websub::callback`]); the id is the subscription's
//!   unguessable callback id. Delivery bodies are capped by the connector's
//!   `limits.response_size` (413 beyond), read only once the id is known.
//!
//! Everything a stranger sends is bounded: bodies ([`MAX_BODY_BYTES`], 413 beyond), calls at
//! once ([`MAX_CONCURRENT`], 503 beyond), the URLs remembered for the floor
//! ([`MAX_REMEMBERED`]).

pub mod ping;
mod websub;

use crate::clock::SharedClock;
use crate::websub::WebSub;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ping::{Ping, PingFault};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Backend, Millis};

/// A ping is a few hundred bytes; 16 KiB leaves room for long names and tags.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Calls served at once; the rest answer 503 at once rather than queueing.
pub const MAX_CONCURRENT: usize = 64;
/// Targets one site ping may make due: a ping for a whole blog host must not wake its
/// thousands of feeds.
pub const MAX_SITE_TARGETS: u32 = 64;
/// A URL pinged again within this is due when it has passed since the last ping.
pub const PING_FLOOR: Duration = Duration::from_secs(60);
const FLOOR_MS: Millis = PING_FLOOR.as_millis() as Millis;
/// URLs remembered for [`PING_FLOOR`]; older entries are forgotten first when it is full.
pub const MAX_REMEMBERED: usize = 10_000;

/// Why the inbound listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the inbound listener on {addr} (host.inbound_listen): {source}")]
pub struct InboundError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// A running inbound listener.
pub struct InboundServer {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
    pub counters: Arc<InboundCounters>,
    /// The WebSub service whose callbacks it answers.
    pub websub: Arc<WebSub>,
}

/// What the listener received, for `/status`.
#[derive(Debug, Default)]
pub struct InboundCounters {
    pings_accepted: AtomicU64,
    pings_refused: AtomicU64,
    feeds_woken: AtomicU64,
}

/// `/status`'s `inbound`.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct InboundStatus {
    pub listen: String,
    /// Pings that made at least one feed due.
    pub pings_accepted: u64,
    /// Pings answered with a fault (malformed, unknown method, nothing crawled there).
    pub pings_refused: u64,
    /// Targets the accepted pings made due.
    pub feeds_woken: u64,
    /// WebSub subscriptions, deliveries and refusals.
    pub websub: crate::websub::WebSubStatus,
}

impl InboundCounters {
    pub async fn status(&self, addr: SocketAddr, websub: &WebSub) -> InboundStatus {
        InboundStatus {
            listen: addr.to_string(),
            pings_accepted: self.pings_accepted.load(Ordering::Relaxed),
            pings_refused: self.pings_refused.load(Ordering::Relaxed),
            feeds_woken: self.feeds_woken.load(Ordering::Relaxed),
            websub: websub.status().await,
        }
    }
}

struct Shared {
    backend: Arc<dyn Backend>,
    counters: Arc<InboundCounters>,
    clock: SharedClock,
    slots: Semaphore,
    /// When each recently pinged URL was last made due.
    recent: Mutex<HashMap<String, Millis>>,
    websub: Arc<WebSub>,
}

/// Binds `listen` and serves until `stop` is cancelled. Hubs are told to call back at
/// `public_url` (`host.inbound_url`), else at the address bound.
pub async fn serve(
    listen: &str,
    public_url: Option<&str>,
    backend: Arc<dyn Backend>,
    clock: SharedClock,
    stop: CancellationToken,
) -> Result<InboundServer, InboundError> {
    let failed = |source| InboundError {
        addr: listen.to_string(),
        source,
    };
    let (listener, addr) = crate::listen::bind(listen).await.map_err(failed)?;
    let callback_base = public_url.map_or_else(|| format!("http://{addr}"), str::to_string);
    let websub = WebSub::new(backend.clone(), clock.clone(), &callback_base);
    let counters = Arc::new(InboundCounters::default());
    let shared = Arc::new(Shared {
        backend,
        counters: counters.clone(),
        clock,
        slots: Semaphore::new(MAX_CONCURRENT),
        recent: Mutex::new(HashMap::new()),
        websub: websub.clone(),
    });
    let pings = axum::Router::new()
        .route("/ping", post(receive_ping))
        .route("/RPC2", post(receive_ping))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // Deliveries are sized by their connector's cap, read by the handler itself.
    let hubs = axum::Router::new()
        .route("/websub/{id}", get(websub::verify).post(websub::deliver))
        .layer(DefaultBodyLimit::disable());
    let app = pings.merge(hubs).with_state(shared);
    let task = crate::listen::spawn(listener, app, stop, "inbound");
    tracing::info!(%addr, %callback_base,
        "inbound listening (pings at /ping and /RPC2, WebSub callbacks at /websub/)");
    Ok(InboundServer {
        addr,
        task,
        counters,
        websub,
    })
}

async fn receive_ping(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(_slot) = shared.slots.try_acquire() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many pings at once\n").into_response();
    };
    let answer = match ping::parse(&body) {
        Ok(ping) => wake(&shared, &ping).await.map(|woken| {
            let counters = &shared.counters;
            counters.pings_accepted.fetch_add(1, Ordering::Relaxed);
            counters.feeds_woken.fetch_add(woken, Ordering::Relaxed);
            tracing::info!(site = %crate::redact::url(&ping.site), woken, "ping: feeds due now");
            ping::success(&format!("Thanks for the ping: {woken} feed(s) due"))
        }),
        Err(fault) => Err(fault),
    };
    let text = answer.unwrap_or_else(|fault| {
        shared
            .counters
            .pings_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!("ping refused: {fault}");
        ping::fault(&fault)
    });
    // XML-RPC answers faults with 200 too: the fault is in the body.
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], text).into_response()
}

/// Makes the pinged feed — or the site's feeds — due now (or when the floor ends); how many.
async fn wake(shared: &Shared, ping: &Ping) -> Result<u64, PingFault> {
    let key = ping.feed.clone().unwrap_or_else(|| ping.site.clone());
    let due = shared.due_time(&key);
    let store = |error: tsunagi_backends::BackendError| {
        tracing::warn!("ping: the store failed: {error}");
        PingFault::Unavailable
    };
    let backend = &shared.backend;
    let mut woken = 0;
    if let Some(feed) = &ping.feed {
        woken += backend.wake_target(feed, due).await.map_err(store)?;
    }
    if woken == 0 {
        woken += backend.wake_target(&ping.site, due).await.map_err(store)?;
    }
    if woken == 0 {
        let prefix = ping::site_prefix(&ping.site);
        woken += backend
            .wake_targets_under(&prefix, due, MAX_SITE_TARGETS)
            .await
            .map_err(store)?;
    }
    if woken == 0 {
        return Err(PingFault::Unknown(crate::redact::url(&key).into_owned()));
    }
    shared.remember(key, due);
    Ok(woken)
}

impl Shared {
    /// Now, or [`PING_FLOOR`] after the time `key` was last made due.
    fn due_time(&self, key: &str) -> Millis {
        let now = self.clock.now_ms();
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match recent.get(key) {
            Some(at) => now.max(at + FLOOR_MS),
            None => now,
        }
    }

    fn remember(&self, key: String, due: Millis) {
        let now = self.clock.now_ms();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MAX_REMEMBERED && !recent.contains_key(&key) {
            recent.retain(|_, at| *at + FLOOR_MS > now);
            if recent.len() >= MAX_REMEMBERED {
                // Every entry is recent: the oldest half goes, so memory stays bounded.
                let mut times: Vec<Millis> = recent.values().copied().collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                recent.retain(|_, at| *at > cut);
            }
        }
        recent.insert(key, due);
    }
}
