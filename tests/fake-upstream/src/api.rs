//! A fake upstream API with the failure modes the resilience tests need.
//!
//! - `GET /limited/{name}`: rate limited to one request per `limit_interval`, judged on arrival
//!   with `limit_tolerance` of slack for network jitter (a GCRA, like many real APIs). Beyond
//!   it: `429 Too Many Requests` with `Retry-After`.
//! - `GET /flaky/{name}`: answers according to the [`ApiMode`] the test sets: a small RSS
//!   feed, `500`, or no answer at all until the mode changes.
//! - `GET /health`: the probe endpoint; follows the mode like `/flaky`.
//! - `GET /gone/{name}`: `410 Gone`, a failure no retry can fix.
//! - `GET /overloaded/{name}`: `503` with `Retry-After: 120` and a 64 KiB body, larger than a
//!   tight response size cap: the head must still count when the body is refused.
//!
//! - `GET /throttled/{status}/{seconds}/{name}`: `{status}` (429 or 503) with
//!   `Retry-After: {seconds}`, a small body: an upstream pushing back.
//! - `GET /exhausted/{reset}/{name}`: a `200` feed saying no requests are left until `{reset}`
//!   (Unix seconds): `x-rate-limit-remaining: 0` and `x-rate-limit-reset: {reset}`.
//! - `ANY /bytes/{n}/{name}`: reads the whole request body (its bytes are counted per path,
//!   [`ApiServer::body_bytes_to`]), then answers `200` with `n` bytes: a large response, and a
//!   sink for request bodies.
//!
//! Every request is counted by kind and by path ([`ApiServer::requests_to`]), and each accepted `/limited` request's arrival time is
//! kept, so a test can check both "never refused" and "used the allowed rate".

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How `/flaky` and `/health` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMode {
    Healthy,
    /// `500 Internal Server Error`.
    Failing,
    /// Accepts the request and never answers (until the mode changes).
    Hanging,
}

#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    pub limit_interval: Duration,
    pub limit_tolerance: Duration,
    /// The clock `/limited` judges arrivals by (and [`ApiServer::elapsed`] reads); real time
    /// since the start when `None`. A test driving the host with a manual clock passes the same
    /// clock here, so both sides agree on what "one per second" means.
    pub clock: Option<ApiClock>,
}

/// A source of time for the API server: any monotonic `Duration`.
#[derive(Clone)]
pub struct ApiClock(pub Arc<dyn Fn() -> Duration + Send + Sync>);

impl std::fmt::Debug for ApiClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiClock({:?})", (self.0)())
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            limit_interval: Duration::from_secs(1),
            limit_tolerance: Duration::from_millis(100),
            clock: None,
        }
    }
}

/// Request counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiStats {
    pub limited_accepted: u64,
    pub limited_refused: u64,
    /// `/flaky` requests that arrived, in any mode.
    pub flaky_requests: u64,
    pub probes: u64,
}

#[derive(Default)]
struct Counters {
    limited_accepted: AtomicU64,
    limited_refused: AtomicU64,
    flaky_requests: AtomicU64,
    probes: AtomicU64,
}

struct Shared {
    config: ApiServerConfig,
    started: Instant,
    /// The limiter's theoretical arrival time, as time since `started`.
    next_allowed: Mutex<Duration>,
    accepted_at: Mutex<Vec<Duration>>,
    mode: watch::Sender<ApiMode>,
    counters: Counters,
    by_path: Mutex<std::collections::HashMap<String, u64>>,
    body_bytes: Mutex<std::collections::HashMap<String, u64>>,
}

impl Shared {
    fn now(&self) -> Duration {
        match &self.config.clock {
            Some(clock) => (clock.0)(),
            None => self.started.elapsed(),
        }
    }
}

/// A running fake API server on 127.0.0.1.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ApiServer {
    pub async fn start(config: ApiServerConfig) -> anyhow::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            started: Instant::now(),
            next_allowed: Mutex::new(Duration::ZERO),
            accepted_at: Mutex::new(Vec::new()),
            mode: watch::channel(ApiMode::Healthy).0,
            counters: Counters::default(),
            by_path: Mutex::new(std::collections::HashMap::new()),
            body_bytes: Mutex::new(std::collections::HashMap::new()),
        });
        let answering = Arc::clone(&shared);
        let task = tokio::spawn(crate::accept::serve_each(listener, move |request| {
            let shared = Arc::clone(&answering);
            async move { handle(&shared, request).await }
        }));
        Ok(ApiServer { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Time since the server started: the clock of [`Self::accepted_times`].
    pub fn elapsed(&self) -> Duration {
        self.shared.now()
    }

    /// Requests received for `path` (any answer), counted on arrival.
    pub fn requests_to(&self, path: &str) -> u64 {
        self.shared
            .by_path
            .lock()
            .map(|counts| counts.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Bytes of request bodies received for `path` (only `/bytes/…` reads them).
    pub fn body_bytes_to(&self, path: &str) -> u64 {
        self.shared
            .body_bytes
            .lock()
            .map(|counts| counts.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn set_mode(&self, mode: ApiMode) {
        self.shared.mode.send_replace(mode);
    }

    pub fn stats(&self) -> ApiStats {
        let c = &self.shared.counters;
        ApiStats {
            limited_accepted: c.limited_accepted.load(Ordering::Relaxed),
            limited_refused: c.limited_refused.load(Ordering::Relaxed),
            flaky_requests: c.flaky_requests.load(Ordering::Relaxed),
            probes: c.probes.load(Ordering::Relaxed),
        }
    }

    /// Arrival times of the accepted `/limited` requests, since the server started.
    pub fn accepted_times(&self) -> Vec<Duration> {
        self.shared
            .accepted_at
            .lock()
            .map(|times| times.clone())
            .unwrap_or_default()
    }

    /// Stops accepting; open connections end with the runtime.
    pub fn shutdown(self) {
        self.task.abort();
        // Wakes hanging requests so their connections can close.
        self.shared.mode.send_replace(ApiMode::Failing);
    }
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    if let Ok(mut counts) = shared.by_path.lock() {
        *counts.entry(path.clone()).or_default() += 1;
    }
    if let Some(rest) = path.strip_prefix("/bytes/") {
        let size = rest.split('/').next().and_then(|n| n.parse::<usize>().ok());
        let Some(size) = size else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let received = match request.into_body().collect().await {
            Ok(body) => body.to_bytes().len() as u64,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "body not read\n"),
        };
        if let Ok(mut counts) = shared.body_bytes.lock() {
            *counts.entry(path.clone()).or_default() += received;
        }
        return Response::new(Full::new(Bytes::from(vec![b'b'; size])));
    }
    if let Some(rest) = path.strip_prefix("/throttled/") {
        let mut parts = rest.splitn(3, '/');
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let seconds = parts.next().and_then(|s| HeaderValue::from_str(s).ok());
        let status = status.and_then(|s| StatusCode::from_u16(s).ok());
        let (Some(status), Some(seconds)) = (status, seconds) else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let mut response = plain(status, "slow down\n");
        response.headers_mut().insert(header::RETRY_AFTER, seconds);
        return response;
    }
    if let Some(rest) = path.strip_prefix("/exhausted/") {
        let Some((reset, name)) = rest.split_once('/') else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let Ok(reset) = HeaderValue::from_str(reset) else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let mut response = Response::new(Full::new(feed(name)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/rss+xml"),
        );
        headers.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-rate-limit-reset", reset);
        return response;
    }
    if let Some(name) = path.strip_prefix("/limited/") {
        return limited(shared, name);
    }
    if let Some(name) = path.strip_prefix("/flaky/") {
        shared
            .counters
            .flaky_requests
            .fetch_add(1, Ordering::Relaxed);
        return by_mode(shared, feed(name)).await;
    }
    if path.starts_with("/gone/") {
        return plain(StatusCode::GONE, "gone\n");
    }
    if path.starts_with("/overloaded/") {
        let mut response = Response::new(Full::new(Bytes::from(vec![b'x'; 64 * 1024])));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        return response;
    }
    if path == "/health" {
        shared.counters.probes.fetch_add(1, Ordering::Relaxed);
        return by_mode(shared, Bytes::from_static(b"ok\n")).await;
    }
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn limited(shared: &Shared, name: &str) -> Response<Full<Bytes>> {
    let now = shared.now();
    let verdict = {
        let mut next = shared
            .next_allowed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now + shared.config.limit_tolerance >= *next {
            *next = (*next).max(now) + shared.config.limit_interval;
            Ok(())
        } else {
            Err(*next - now)
        }
    };
    match verdict {
        Ok(()) => {
            shared
                .counters
                .limited_accepted
                .fetch_add(1, Ordering::Relaxed);
            if let Ok(mut times) = shared.accepted_at.lock() {
                times.push(now);
            }
            let mut response = Response::new(Full::new(feed(name)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/rss+xml"),
            );
            response
        }
        Err(wait) => {
            shared
                .counters
                .limited_refused
                .fetch_add(1, Ordering::Relaxed);
            let mut response = plain(StatusCode::TOO_MANY_REQUESTS, "slow down\n");
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

async fn by_mode(shared: &Shared, healthy_body: Bytes) -> Response<Full<Bytes>> {
    let mut mode = shared.mode.subscribe();
    loop {
        let current = *mode.borrow_and_update();
        match current {
            ApiMode::Healthy => {
                let mut response = Response::new(Full::new(healthy_body));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/rss+xml"),
                );
                return response;
            }
            ApiMode::Failing => {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
            }
            ApiMode::Hanging => {
                if mode.changed().await.is_err() {
                    return plain(StatusCode::SERVICE_UNAVAILABLE, "stopping\n");
                }
            }
        }
    }
}

/// A one-item RSS feed whose item id names the path, so every poll stores something findable.
fn feed(name: &str) -> Bytes {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    Bytes::from(format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>{name}</title>\
         <link>http://example.invalid/{name}</link><description>fake api</description>\
         <item><guid isPermaLink=\"false\">api-{name}</guid><title>{name}</title></item>\
         </channel></rss>"
    ))
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
