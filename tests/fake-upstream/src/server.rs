//! The HTTP side: accept loop, per-connection hyper tasks, and the `/feeds/{id}` handler with
//! its conditional-GET, slow, hanging, failing and malformed behaviours and stats counters.
//!
//! Plain hyper HTTP/1.1 with keep-alive (no router: one path shape is parsed by hand). Shutdown
//! is one `watch` flag: the accept loop stops, every connection is told to finish its current
//! request and close, hanging and slow requests answer 503 at once, and anything still open
//! after [`SHUTDOWN_GRACE`] is aborted so shutdown always ends.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::render::{self, FeedContext};
use crate::{FeedFormat, FeedStats};

/// How long shutdown waits for open connections before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Per-feed behaviour bits.
pub(crate) const SLOW: u8 = 1;
pub(crate) const HANGING: u8 = 2;
pub(crate) const FAILING: u8 = 4;
pub(crate) const MALFORMED: u8 = 8;

/// Atomic counters behind [`FeedStats`].
#[derive(Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    not_modified: AtomicU64,
    errors: AtomicU64,
    bytes_sent: AtomicU64,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
}

/// Counts one request as in flight while it lives.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counters.most_in_flight.fetch_max(now, Ordering::Relaxed);
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> FeedStats {
        FeedStats {
            requests: self.requests.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            most_in_flight: self.most_in_flight.load(Ordering::Relaxed),
        }
    }
}

/// State shared by the server tasks and the [`crate::FeedServer`] handle.
pub(crate) struct Shared {
    pub feeds: u32,
    pub items: u32,
    /// One byte of behaviour bits per feed id.
    pub behaviour: Box<[u8]>,
    pub slow_delay: Duration,
    pub cache_control: Option<HeaderValue>,
    pub ttl_minutes: Option<u32>,
    pub atom03_without_namespace: bool,
    pub hub: Option<String>,
    /// 304s without validators.
    pub bare_not_modified: bool,
    /// Per feed, the conditional headers of each request, when recording.
    pub conditionals: Option<std::sync::Mutex<Vec<Vec<crate::Conditionals>>>>,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// Filler bytes per item, per format (indexed by `FeedFormat as usize`).
    pub pads: [usize; 7],
    /// Body size with no filler, per format, to size buffers.
    pub overheads: [usize; 7],
    pub generation: AtomicU64,
    pub counters: Counters,
    pub per_feed: Box<[AtomicU64]>,
    /// Arrival times of feed requests, when recording.
    pub arrivals: Option<std::sync::Mutex<Vec<std::time::Instant>>>,
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn context(&self, id: u32, generation: u64, format: FeedFormat) -> FeedContext<'_> {
        FeedContext {
            base_url: &self.base_url,
            id,
            generation,
            items: self.items,
            pad: self.pads[format as usize],
            ttl_minutes: self.ttl_minutes,
            atom03_without_namespace: self.atom03_without_namespace,
            hub: self.hub.as_deref(),
        }
    }
}

/// Resolves once shutdown has been signalled (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accepts connections until shutdown, then drains them (bounded by [`SHUTDOWN_GRACE`]).
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(err) => {
                    // Typically EMFILE under load: back off instead of spinning.
                    tracing::debug!(%err, "fake upstream: accept failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::debug!("fake upstream: aborting connections still open after the grace period");
        connections.shutdown().await;
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut shutdown = shared.shutdown.subscribe();
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::trace!(%err, "fake upstream: connection ended with an error");
    }
}

/// Parses `/feeds/{id}` (decimal, no sign, no trailing slash).
fn parse_feed_path(path: &str) -> Option<u32> {
    let digits = path.strip_prefix("/feeds/")?;
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if !content_type.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    resp
}

fn header_value(value: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
}

impl Shared {
    fn count(&self, counter: &AtomicU64, body_len: usize, head: bool) {
        counter.fetch_add(1, Ordering::Relaxed);
        if !head {
            self.counters
                .bytes_sent
                .fetch_add(body_len as u64, Ordering::Relaxed);
        }
    }

    fn error(&self, status: StatusCode, body: &'static str, head: bool) -> Response<Full<Bytes>> {
        self.count(&self.counters.errors, body.len(), head);
        response(
            status,
            "text/html; charset=utf-8",
            Bytes::from_static(body.as_bytes()),
        )
    }
}

const NOT_FOUND: &str = "<html><body><h1>404 Not Found</h1></body></html>\n";
const METHOD_NOT_ALLOWED: &str = "<html><body><h1>405 Method Not Allowed</h1></body></html>\n";
const INTERNAL_ERROR: &str = "<html><body><h1>500 Internal Server Error</h1><p>The feed generator crashed.</p></body></html>\n";
const UNAVAILABLE: &str =
    "<html><body><h1>503 Service Unavailable</h1><p>Shutting down.</p></body></html>\n";

/// Answers one request. Never panics on request input.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter(&shared.counters);
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut resp = shared.error(StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED, head);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let Some(id) = parse_feed_path(req.uri().path()).filter(|id| *id < shared.feeds) else {
        return shared.error(StatusCode::NOT_FOUND, NOT_FOUND, head);
    };
    shared.per_feed[id as usize].fetch_add(1, Ordering::Relaxed);
    if let Some(log) = &shared.arrivals
        && let Ok(mut log) = log.lock()
    {
        log.push(std::time::Instant::now());
    }
    if let Some(log) = &shared.conditionals {
        let text = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let seen = crate::Conditionals {
            if_none_match: text(header::IF_NONE_MATCH),
            if_modified_since: text(header::IF_MODIFIED_SINCE),
        };
        if let Ok(mut log) = log.lock()
            && let Some(feed) = log.get_mut(id as usize)
        {
            feed.push(seen);
        }
    }
    let behaviour = shared.behaviour[id as usize];

    if behaviour & (HANGING | SLOW) != 0 {
        let mut shutdown = shared.shutdown.subscribe();
        let released = if behaviour & HANGING != 0 {
            stopped(&mut shutdown).await;
            true
        } else {
            tokio::select! {
                _ = tokio::time::sleep(shared.slow_delay) => false,
                _ = stopped(&mut shutdown) => true,
            }
        };
        if released {
            return shared.error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, head);
        }
    }
    if behaviour & FAILING != 0 {
        return shared.error(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR, head);
    }

    let format = crate::FeedServer::feed_format(id);
    let generation = shared.generation.load(Ordering::Relaxed);
    let ctx = shared.context(id, generation, format);

    if behaviour & MALFORMED != 0 {
        let body = render::render_malformed(format, &ctx);
        shared.count(&shared.counters.errors, body.len(), head);
        return response(StatusCode::OK, format.content_type(), Bytes::from(body));
    }

    let etag = format!("\"{id}-{generation}\"");
    let last_modified = render::last_modified_unix(generation, shared.items);
    let unchanged = not_modified(req.headers(), &etag, last_modified);
    let mut resp = if unchanged {
        shared.count(&shared.counters.not_modified, 0, head);
        let resp = response(StatusCode::NOT_MODIFIED, "", Bytes::new());
        if shared.bare_not_modified {
            return resp;
        }
        resp
    } else {
        let pad = shared.pads[format as usize];
        let overhead = shared.overheads[format as usize];
        let mut body = String::with_capacity(render::capacity_hint(overhead, pad, shared.items));
        render::render(format, &ctx, &mut body);
        shared.count(&shared.counters.ok, body.len(), head);
        response(StatusCode::OK, format.content_type(), Bytes::from(body))
    };
    let headers = resp.headers_mut();
    if let Some(value) = header_value(etag) {
        headers.insert(header::ETAG, value);
    }
    if let Some(value) = header_value(render::Rfc822(last_modified).to_string()) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    if let Some(value) = &shared.cache_control {
        headers.insert(header::CACHE_CONTROL, value.clone());
    }
    resp
}

/// RFC 9110 conditional GET: If-None-Match (weak comparison, `*` matches) takes precedence;
/// otherwise If-Modified-Since at or after Last-Modified means not modified. Unparseable
/// headers are ignored, as a real server would.
fn not_modified(headers: &HeaderMap, etag: &str, last_modified_unix: u64) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        let Ok(list) = value.to_str() else {
            return false;
        };
        return list
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    if let Some(value) = headers.get(header::IF_MODIFIED_SINCE)
        && let Ok(text) = value.to_str()
        && let Ok(since) = httpdate::parse_http_date(text)
    {
        return since >= UNIX_EPOCH + Duration::from_secs(last_modified_unix);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_paths() {
        assert_eq!(parse_feed_path("/feeds/0"), Some(0));
        assert_eq!(parse_feed_path("/feeds/4294967295"), Some(u32::MAX));
        assert_eq!(parse_feed_path("/feeds/4294967296"), None);
        assert_eq!(parse_feed_path("/feeds/+1"), None);
        assert_eq!(parse_feed_path("/feeds/"), None);
        assert_eq!(parse_feed_path("/feeds/1/"), None);
        assert_eq!(parse_feed_path("/feeds/1/items/2"), None);
        assert_eq!(parse_feed_path("/other/1"), None);
    }

    #[test]
    fn conditional_headers() {
        let lm = render::BASE_UNIX + 3600;
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"1-0\"", lm));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"1-0\""),
        );
        assert!(not_modified(&h, "\"1-0\"", lm));
        assert!(!not_modified(&h, "\"1-1\"", lm));
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Mon, 01 Jan 2024 01:00:00 GMT"),
        );
        assert!(not_modified(&h, "\"1-0\"", lm));
        assert!(!not_modified(&h, "\"1-0\"", lm + 1));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("garbage"),
        );
        assert!(!not_modified(&h, "\"1-0\"", lm));
    }
}
