//! A fake upstream feed server on 127.0.0.1 for integration tests, `tsunagi demo` and the
//! benchmark.
//!
//! `GET /feeds/{id}` serves feed `id` (ids `0..feeds`) in the format [`FeedServer::feed_format`]
//! gives: `id % 7` picks, in order, RSS 2.0, Atom 1.0, JSON Feed 1.1, RSS 1.0, RSS 0.91,
//! Atom 0.3, JSON Feed 1.0 — so any 7 consecutive ids cover every format.
//!
//! Content is deterministic in (id, generation): at generation `g` a feed serves the
//! `items_per_feed` newest items `k = g + n - 1 ..= g`, newest first; [`FeedServer::publish_round`]
//! moves every feed's window by one item. Item `k` keeps its id, title, link
//! (`http://127.0.0.1:PORT/feeds/{id}/items/{k}`) and date (2024-01-01T00:00:00Z + `k` hours)
//! across generations. Responses carry `ETag: "{id}-{generation}"` and a Last-Modified equal to
//! the newest item's date, and honour If-None-Match / If-Modified-Since with 304.
//!
//! Entry ids as the RSS connector's reader reports them ([`FeedServer::expected_item_ids`]):
//! `urn:tsunagi-fake:feed:{id}:item:{k}` from `<guid>` (RSS 2.0 and RSS 0.91, which gets a guid
//! although 0.91 has none), `<id>` (Atom 1.0 and 0.3) and `"id"` (JSON Feed); for RSS 1.0 the
//! item's `rdf:about`, which equals the link. [`FeedServer::expected_item_links`] gives the links.
//!
//! The fake X API lives in [`x`] (its own server, [`x::XServer`]); the fake shop search APIs
//! (Rakuten, Yahoo!) in [`shop`] ([`shop::ShopServer`]).
//!
//! Other paths and ids answer 404; feeds listed in the config as slow, hanging, failing or
//! malformed behave so (see [`FeedServerConfig`]). Nothing is cached: bodies are rendered per
//! request into one right-sized buffer, so memory does not grow with the number of feeds.

mod accept;
mod api;
pub mod corpus;
pub mod hub;
pub mod pinger;
pub mod proxy;
mod render;
mod server;
pub mod shop;
pub mod x;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::{oneshot, watch};

pub use crate::api::{ApiClock, ApiMode, ApiServer, ApiServerConfig, ApiStats};
use crate::server::Shared;

/// What the fake server serves and how each feed misbehaves.
#[derive(Clone, Debug)]
pub struct FeedServerConfig {
    /// Feed ids are `0..feeds`. Default 7 (one feed per format).
    pub feeds: u32,
    /// Items in every feed (a sliding window of the newest). Default 10.
    pub items_per_feed: u32,
    /// Approximate body size per feed in bytes; item contents are padded with filler text to
    /// reach it (never below the unpadded size). Default 5,000.
    pub target_feed_bytes: usize,
    /// Feed ids that answer normally after `slow_delay` (or 503 if shut down meanwhile).
    pub slow: Vec<u32>,
    /// Delay for `slow` feeds. Default 2 s.
    pub slow_delay: Duration,
    /// Feed ids that never answer until shutdown, then answer 503.
    pub hanging: Vec<u32>,
    /// Feed ids answering 500 with a small HTML body.
    pub failing: Vec<u32>,
    /// Feed ids answering 200 with a broken body: XML cut before the first item and closed by a
    /// mismatched tag, JSON cut in half. No ETag or Last-Modified.
    pub malformed: Vec<u32>,
    /// If set, 200 and 304 answers carry `Cache-Control: max-age=N`.
    pub cache_control_max_age: Option<u32>,
    /// If set, RSS 2.0 feeds include `<ttl>N</ttl>`.
    pub ttl_minutes: Option<u32>,
    /// If set, the arrival time of every `/feeds/{id}` request is kept for
    /// [`FeedServer::most_requests_within`] (a budget's test counts requests per second with it). Default
    /// false.
    pub record_arrivals: bool,
    /// If set, Atom 0.3 feeds are served without their namespace, as the previous reader
    /// (feed-rs, which knows only Atom 1.0's) needs to see their entries: for measuring it side
    /// by side with the current one on the same feeds. Default false.
    pub atom03_without_namespace: bool,
    /// If set, RSS 2.0 and Atom 1.0 feeds name this WebSub hub (`<link rel="hub">`; their
    /// `rel="self"` is always there). Default none.
    pub hub: Option<String>,
    /// If set, 304 answers carry no ETag or Last-Modified (as many real servers answer), so a
    /// client must keep the validators that earned the 304 itself. Default false.
    pub bare_not_modified: bool,
    /// If set, the conditional headers of every `/feeds/{id}` request are kept for
    /// [`FeedServer::conditional_requests`]. Default false (the benchmark's hot path).
    pub record_conditionals: bool,
}

/// The validators one request to a feed carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditionals {
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

impl Default for FeedServerConfig {
    fn default() -> Self {
        FeedServerConfig {
            feeds: 7,
            items_per_feed: 10,
            target_feed_bytes: 5_000,
            slow: Vec::new(),
            slow_delay: Duration::from_secs(2),
            hanging: Vec::new(),
            failing: Vec::new(),
            malformed: Vec::new(),
            cache_control_max_age: None,
            ttl_minutes: None,
            bare_not_modified: false,
            record_conditionals: false,
            atom03_without_namespace: false,
            hub: None,
            record_arrivals: false,
        }
    }
}

/// The format a feed id is served in; see [`FeedServer::feed_format`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedFormat {
    Rss20,
    Rss10,
    Rss091,
    Atom10,
    Atom03,
    JsonFeed11,
    JsonFeed10,
}

impl FeedFormat {
    /// Every format, in `FeedFormat as usize` order.
    pub const ALL: [FeedFormat; 7] = [
        FeedFormat::Rss20,
        FeedFormat::Rss10,
        FeedFormat::Rss091,
        FeedFormat::Atom10,
        FeedFormat::Atom03,
        FeedFormat::JsonFeed11,
        FeedFormat::JsonFeed10,
    ];

    /// The Content-Type this format is served with (varied the way real servers vary).
    pub fn content_type(self) -> &'static str {
        match self {
            FeedFormat::Rss20 => "application/rss+xml; charset=utf-8",
            FeedFormat::Rss10 => "application/rdf+xml; charset=utf-8",
            FeedFormat::Rss091 => "text/xml; charset=utf-8",
            FeedFormat::Atom10 => "application/atom+xml; charset=utf-8",
            FeedFormat::Atom03 => "application/xml; charset=utf-8",
            FeedFormat::JsonFeed11 => "application/feed+json",
            FeedFormat::JsonFeed10 => "application/json",
        }
    }
}

/// Counters since start. `requests` counts every request received (any path, counted on
/// arrival); each answered request is then counted once in `ok` (well-formed 200 feed),
/// `not_modified` (304) or `errors` (404, 405, 500, malformed 200, and 503 for slow/hanging
/// requests released by shutdown). `bytes_sent` sums response body bytes (not headers; HEAD
/// adds nothing).
#[derive(Clone, Debug, Default)]
pub struct FeedStats {
    pub requests: u64,
    pub ok: u64,
    pub not_modified: u64,
    pub errors: u64,
    pub bytes_sent: u64,
    /// The most requests that were being answered at once (a slow feed's delay included).
    pub most_in_flight: u64,
}

/// How the server task runs, for shutdown to wait on.
enum Runner {
    /// A task on the caller's tokio runtime.
    Task(tokio::task::JoinHandle<()>),
    /// An OS thread with its own runtime; the receiver fires when it has stopped.
    Thread(oneshot::Receiver<()>),
}

/// A running fake feed server; see the module docs.
pub struct FeedServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    runner: Option<Runner>,
}

impl FeedServer {
    /// Binds 127.0.0.1:0 on the current tokio runtime.
    pub async fn start(config: FeedServerConfig) -> anyhow::Result<FeedServer> {
        Self::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds `listen` on the current tokio runtime (the `fake-upstream feeds` command).
    pub async fn start_on(
        config: FeedServerConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<FeedServer> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(build_shared(&config, addr));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        Ok(FeedServer {
            shared,
            addr,
            runner: Some(Runner::Task(task)),
        })
    }

    /// Runs the server on its own OS thread with its own multi-thread tokio runtime of
    /// `worker_threads` threads (so benchmarks can keep server CPU apart from the host's runtime).
    pub fn start_in_thread(
        config: FeedServerConfig,
        worker_threads: usize,
    ) -> anyhow::Result<FeedServer> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(build_shared(&config, addr));
        let thread_shared = Arc::clone(&shared);
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
        let (done_tx, done_rx) = oneshot::channel();
        // The runtime is built, used and dropped on the server thread only, so this works from
        // inside another runtime too (dropping a runtime in async context would panic).
        std::thread::Builder::new()
            .name("fake-upstream-main".into())
            .spawn(move || {
                let started = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(worker_threads.max(1))
                    .thread_name("fake-upstream")
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        let listener = {
                            let _guard = runtime.enter();
                            tokio::net::TcpListener::from_std(std_listener)?
                        };
                        Ok((runtime, listener))
                    });
                let (runtime, listener) = match started {
                    Ok(started) => {
                        let _ = started_tx.send(Ok(()));
                        started
                    }
                    Err(err) => {
                        let _ = started_tx.send(Err(err));
                        return;
                    }
                };
                runtime.block_on(server::serve(listener, thread_shared));
                // Dropping the runtime cancels any task the grace period left behind.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        started_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("fake upstream server thread died while starting"))??;
        Ok(FeedServer {
            shared,
            addr,
            runner: Some(Runner::Thread(done_rx)),
        })
    }

    /// The bound address (127.0.0.1 unless started on another).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/feeds/ID`
    pub fn feed_url(&self, id: u32) -> String {
        format!("{}/feeds/{id}", self.shared.base_url)
    }

    /// The URLs of all feeds, ids in order.
    pub fn feed_urls(&self) -> Vec<String> {
        (0..self.shared.feeds).map(|id| self.feed_url(id)).collect()
    }

    /// The format feed `id` is served in, rotating by `id % 7` through RSS 2.0, Atom 1.0,
    /// JSON Feed 1.1, RSS 1.0, RSS 0.91, Atom 0.3, JSON Feed 1.0.
    pub fn feed_format(id: u32) -> FeedFormat {
        match id % 7 {
            0 => FeedFormat::Rss20,
            1 => FeedFormat::Atom10,
            2 => FeedFormat::JsonFeed11,
            3 => FeedFormat::Rss10,
            4 => FeedFormat::Rss091,
            5 => FeedFormat::Atom03,
            _ => FeedFormat::JsonFeed10,
        }
    }

    /// Publishes one new item on every feed (items are a sliding window of the newest
    /// `items_per_feed`); changes ETag/Last-Modified so conditional GETs see a change.
    pub fn publish_round(&self) {
        self.shared.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// How many rounds have been published (starts at 0).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FeedStats {
        self.shared.counters.snapshot()
    }

    /// Requests received for feed `id` (any answer, including 304s and hanging ones); 0 for
    /// ids outside `0..feeds`.
    pub fn requests_for(&self, id: u32) -> u64 {
        self.shared
            .per_feed
            .get(id as usize)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// The conditional headers of every request feed `id` received, in arrival order (empty
    /// unless [`FeedServerConfig::record_conditionals`] is set).
    pub fn conditional_requests(&self, id: u32) -> Vec<Conditionals> {
        self.shared
            .conditionals
            .as_ref()
            .and_then(|log| log.lock().ok())
            .and_then(|log| log.get(id as usize).cloned())
            .unwrap_or_default()
    }

    /// The most requests that arrived within any `window` (with `record_arrivals`).
    pub fn most_requests_within(&self, window: Duration) -> usize {
        let mut arrivals = self
            .shared
            .arrivals
            .as_ref()
            .and_then(|log| log.lock().ok())
            .map(|log| log.clone())
            .unwrap_or_default();
        // Handlers on several threads push in nearly, not exactly, arrival order.
        arrivals.sort_unstable();
        let mut most = 0;
        let mut start = 0;
        for (end, at) in arrivals.iter().enumerate() {
            while at.duration_since(arrivals[start]) >= window {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most
    }

    /// Stops accepting, releases hanging requests, and waits for the server to stop (at most
    /// about 5 s for connections that stay open; then they are aborted).
    pub async fn shutdown(mut self) {
        let _ = self.shared.shutdown.send(true);
        match self.runner.take() {
            Some(Runner::Task(task)) => {
                let _ = task.await;
            }
            Some(Runner::Thread(done)) => {
                let _ = done.await;
            }
            None => {}
        }
    }

    /// The ids the RSS connector reports for the items feed `id` serves at the current
    /// generation, newest first (see the module docs for RSS 1.0). Empty for ids outside `0..feeds`.
    pub fn expected_item_ids(&self, id: u32) -> Vec<String> {
        let format = Self::feed_format(id);
        self.item_numbers(id)
            .map(|k| render::item_id(format, &self.shared.base_url, id, k))
            .collect()
    }

    /// Feed `id` as it is served now: its `Content-Type` and body (what a hub would push).
    pub fn document(&self, id: u32) -> (&'static str, String) {
        let format = Self::feed_format(id);
        let generation = self.generation();
        let mut body = String::new();
        render::render(
            format,
            &self.shared.context(id, generation, format),
            &mut body,
        );
        (format.content_type(), body)
    }

    /// The links of the items feed `id` serves at the current generation, newest first.
    pub fn expected_item_links(&self, id: u32) -> Vec<String> {
        self.item_numbers(id)
            .map(|k| render::item_link(&self.shared.base_url, id, k))
            .collect()
    }

    fn item_numbers(&self, id: u32) -> impl Iterator<Item = u64> + use<> {
        let items = if id < self.shared.feeds {
            u64::from(self.shared.items)
        } else {
            0
        };
        let generation = self.generation();
        (generation..generation + items).rev()
    }
}

impl Drop for FeedServer {
    /// Signals shutdown without waiting; the server winds down on its own.
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
    }
}

fn build_shared(config: &FeedServerConfig, addr: SocketAddr) -> Shared {
    let feeds = config.feeds;
    let mut behaviour = vec![0u8; feeds as usize].into_boxed_slice();
    let lists = [
        (&config.slow, server::SLOW),
        (&config.hanging, server::HANGING),
        (&config.failing, server::FAILING),
        (&config.malformed, server::MALFORMED),
    ];
    for (ids, bit) in lists {
        for &id in ids {
            if let Some(b) = behaviour.get_mut(id as usize) {
                *b |= bit;
            }
        }
    }
    let (shutdown, _) = watch::channel(false);
    let mut shared = Shared {
        feeds,
        items: config.items_per_feed,
        behaviour,
        slow_delay: config.slow_delay,
        cache_control: config
            .cache_control_max_age
            .and_then(|age| HeaderValue::try_from(format!("max-age={age}")).ok()),
        ttl_minutes: config.ttl_minutes,
        atom03_without_namespace: config.atom03_without_namespace,
        hub: config.hub.clone(),
        bare_not_modified: config.bare_not_modified,
        conditionals: config
            .record_conditionals
            .then(|| std::sync::Mutex::new((0..feeds).map(|_| Vec::new()).collect())),
        arrivals: config
            .record_arrivals
            .then(|| std::sync::Mutex::new(Vec::new())),
        base_url: format!("http://{addr}"),
        pads: [0; 7],
        overheads: [0; 7],
        generation: AtomicU64::new(0),
        counters: server::Counters::default(),
        per_feed: (0..feeds).map(|_| AtomicU64::new(0)).collect(),
        shutdown,
    };
    // Size the padding from an unpadded render of the widest id, per format.
    let probe_id = feeds.saturating_sub(1);
    for format in FeedFormat::ALL {
        let mut body = String::new();
        render::render(format, &shared.context(probe_id, 0, format), &mut body);
        let overhead = body.len();
        shared.overheads[format as usize] = overhead;
        shared.pads[format as usize] = config.target_feed_bytes.saturating_sub(overhead)
            / config.items_per_feed.max(1) as usize;
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<FeedServer>();
        assert_send_sync::<FeedServerConfig>();
        assert_send_sync::<FeedStats>();
    }

    #[test]
    fn every_format_is_reachable_from_seven_consecutive_ids() {
        let formats: Vec<FeedFormat> = (100..107).map(FeedServer::feed_format).collect();
        for format in FeedFormat::ALL {
            assert!(formats.contains(&format), "{format:?}");
            assert_eq!(FeedFormat::ALL[format as usize], format);
        }
    }
}
