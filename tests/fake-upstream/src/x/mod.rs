//! A fake X (Twitter) API on 127.0.0.1, shaped like the real responses, for the X connectors'
//! tests and benchmarks.
//!
//! Endpoints (see `handler` for the exact shapes):
//! - `GET /2/users/{id}/tweets` (X API v2): `since_id`, `until_id`, `max_results` (5–100),
//!   `pagination_token`, `tweet.fields`; newest first; `data` / `meta` (`result_count`,
//!   `newest_id`, `oldest_id`, `next_token`).
//! - `GET /1.1/statuses/user_timeline.json` (v1.1): `user_id`, `since_id`, `count` (≤ 200),
//!   `max_id`; an array of v1.1 statuses.
//! - `POST /2/tweets` `{text}` → 201 `{data: {id, text}}`; 403 for duplicate content.
//! - `POST /2/oauth2/token` (`grant_type=refresh_token`): rotating refresh tokens, expiring
//!   access tokens.
//!
//! Auth ([`XAuth`]) is one switch per server: none, OAuth 1.0a HMAC-SHA1 verified from the
//! request ([`oauth1`]), or OAuth 2.0 bearer (an app token, or user access tokens). Every token
//! carries scopes. Rate limits are per token (per user id when auth is off), with the real
//! `x-rate-limit-*` headers. Misbehaviour is switched at run time on the [`XServer`] handle;
//! every answer is counted ([`XStats`]).

mod fixture;
mod handler;
pub mod oauth1;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use fixture::{
    FIXTURE_EPOCH_UNIX, FixtureSpec, HASHTAGS, POST_ID_BASE, Post, PostKind, USER_ID_BASE,
    hashtags_of, kind_of,
};

/// Unix time in seconds (with fraction) as the fake sees it; the system clock unless a test
/// injects its own.
#[derive(Clone)]
pub struct XClock(pub Arc<dyn Fn() -> f64 + Send + Sync>);

impl XClock {
    pub fn system() -> XClock {
        XClock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        }))
    }

    pub fn now(&self) -> f64 {
        (self.0)()
    }
}

impl std::fmt::Debug for XClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XClock({})", self.now())
    }
}

/// How requests must authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum XAuth {
    /// Anything goes; the acting user of `POST /2/tweets` is named by the `x-fake-user-id`
    /// header, and rate limits are per user id.
    #[default]
    None,
    /// RFC 5849 HMAC-SHA1 with this consumer; user tokens from [`XServer::link_oauth1_user`].
    OAuth1 {
        consumer_key: String,
        consumer_secret: String,
    },
    /// `Authorization: Bearer …`: the app token (read-only, any user's timeline) or a user
    /// access token from [`XServer::link_oauth2_user`].
    OAuth2 { app_bearer: Option<String> },
}

/// A token's permissions, as X's scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scopes {
    pub read: bool,
    pub write: bool,
}

impl Scopes {
    pub const READ: Scopes = Scopes {
        read: true,
        write: false,
    };
    pub const READ_WRITE: Scopes = Scopes {
        read: true,
        write: true,
    };

    fn as_x_scope(self) -> String {
        let mut scope = vec!["users.read", "offline.access"];
        if self.read {
            scope.push("tweet.read");
        }
        if self.write {
            scope.push("tweet.write");
        }
        scope.join(" ")
    }
}

#[derive(Clone, Debug)]
pub struct XServerConfig {
    pub fixture: FixtureSpec,
    pub auth: XAuth,
    /// Requests per token per window before 429 (X's user timeline: 900 per 15 minutes).
    pub rate_limit: u32,
    pub rate_window: Duration,
    /// How long an OAuth 2.0 user access token lives (X: 2 hours).
    pub access_token_lifetime: Duration,
    /// OAuth 1.0a timestamps further than this from the clock are refused.
    pub timestamp_skew: Duration,
    pub clock: XClock,
}

impl Default for XServerConfig {
    fn default() -> Self {
        XServerConfig {
            fixture: FixtureSpec::default(),
            auth: XAuth::None,
            rate_limit: 900,
            rate_window: Duration::from_secs(900),
            access_token_lifetime: Duration::from_secs(7200),
            timestamp_skew: Duration::from_secs(300),
            clock: XClock::system(),
        }
    }
}

/// A changed shape for timeline answers ([`XServer::set_shape`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeChange {
    /// Posts' `created_at` renamed `createdAt`.
    RenamedField,
    /// Posts lose `id`.
    MissingField,
    /// Posts' `id` is a number instead of a string (v2), `id_str` a number (v1.1).
    WrongType,
    /// The document is a JSON array (v2) / an object (v1.1).
    NotAnObject,
}

/// How "down" looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// Every request answers 503 with an HTML page.
    Unavailable,
    /// Every connection is closed at once, no answer (as a refused or reset connection).
    ConnectionDropped,
}

/// Counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XStats {
    pub requests: u64,
    pub timeline_requests: u64,
    /// 200 timeline pages served.
    pub timeline_pages: u64,
    pub rate_limited: u64,
    pub usage_capped: u64,
    pub auth_failures: u64,
    pub forbidden: u64,
    pub unavailable: u64,
    pub dropped_connections: u64,
    pub posts_accepted: u64,
    pub duplicates_refused: u64,
    pub refreshes: u64,
    pub refresh_failures: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    timeline_requests: AtomicU64,
    timeline_pages: AtomicU64,
    rate_limited: AtomicU64,
    usage_capped: AtomicU64,
    auth_failures: AtomicU64,
    forbidden: AtomicU64,
    unavailable: AtomicU64,
    dropped_connections: AtomicU64,
    posts_accepted: AtomicU64,
    duplicates_refused: AtomicU64,
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct OAuth1User {
    user: u64,
    token_secret: String,
    scopes: Scopes,
}

struct AccessToken {
    user: u64,
    scopes: Scopes,
    expires_unix: f64,
}

struct RefreshToken {
    user: u64,
    scopes: Scopes,
}

#[derive(Default)]
struct Tokens {
    oauth1: HashMap<String, OAuth1User>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    /// Refresh tokens already used: presenting one again is `invalid_grant`.
    spent_refresh: HashSet<String>,
    /// OAuth 1.0a nonces seen (with their timestamp), against replays.
    nonces: HashSet<(String, String)>,
    issued: u64,
}

#[derive(Default)]
struct Window {
    started_unix: u64,
    used: u32,
}

/// Run-time switches.
#[derive(Default)]
struct Switches {
    /// Fraction of requests (0..=1) answered 503, chosen by a seeded hash of the arrival number.
    fail_fraction: f64,
    fail_seed: u64,
    /// Down until this Unix time.
    down: Option<(f64, Outage)>,
    delay: Duration,
    user_delay: HashMap<u64, Duration>,
    html_200: bool,
    shape: Option<ShapeChange>,
    usage_capped: bool,
    /// The next this-many accepted posts get no answer (the connection is dropped).
    drop_after_accept: u32,
}

struct Shared {
    config: XServerConfig,
    base_url: String,
    timelines: Mutex<Vec<Vec<Post>>>,
    tokens: Mutex<Tokens>,
    windows: Mutex<HashMap<String, Window>>,
    switches: Mutex<Switches>,
    /// Users whose timeline requests wait until released.
    held: Mutex<HashSet<u64>>,
    release: watch::Sender<u64>,
    arrivals: AtomicU64,
    next_post: AtomicU64,
    counters: Counters,
    per_user_timeline: Mutex<HashMap<u64, u64>>,
    pending_per_user: Mutex<HashMap<u64, u64>>,
    accepted_by_user: Mutex<HashMap<u64, u64>>,
    accepted_by_text: Mutex<HashMap<String, u64>>,
    /// (user, text) of every accepted post, for the duplicate-content check.
    posted: Mutex<HashSet<(u64, String)>>,
    stopping: AtomicBool,
}

/// The fake's counters, readable from any thread ([`XServer::counters`]).
#[derive(Clone)]
pub struct XCounters(Arc<Shared>);

impl XCounters {
    pub fn stats(&self) -> XStats {
        let c = &self.0.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        XStats {
            requests: load(&c.requests),
            timeline_requests: load(&c.timeline_requests),
            timeline_pages: load(&c.timeline_pages),
            rate_limited: load(&c.rate_limited),
            usage_capped: load(&c.usage_capped),
            auth_failures: load(&c.auth_failures),
            forbidden: load(&c.forbidden),
            unavailable: load(&c.unavailable),
            dropped_connections: load(&c.dropped_connections),
            posts_accepted: load(&c.posts_accepted),
            duplicates_refused: load(&c.duplicates_refused),
            refreshes: load(&c.refreshes),
            refresh_failures: load(&c.refresh_failures),
        }
    }
}

/// A running fake X API; see the module docs.
pub struct XServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl XServer {
    /// Binds 127.0.0.1:0 on the current tokio runtime.
    pub async fn start(config: XServerConfig) -> anyhow::Result<XServer> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let timelines = fixture::build(&config.fixture);
        let posts: usize = timelines.iter().map(Vec::len).sum();
        let users = u64::from(config.fixture.users.max(1));
        let max_per_user = timelines.iter().map(Vec::len).max().unwrap_or(0) as u64;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            timelines: Mutex::new(timelines),
            tokens: Mutex::new(Tokens::default()),
            windows: Mutex::new(HashMap::new()),
            switches: Mutex::new(Switches::default()),
            held: Mutex::new(HashSet::new()),
            release: watch::channel(0).0,
            arrivals: AtomicU64::new(0),
            // New posts number after every generated one, whichever user has the most.
            next_post: AtomicU64::new((max_per_user * users).max(posts as u64)),
            counters: Counters::default(),
            per_user_timeline: Mutex::new(HashMap::new()),
            pending_per_user: Mutex::new(HashMap::new()),
            accepted_by_user: Mutex::new(HashMap::new()),
            accepted_by_text: Mutex::new(HashMap::new()),
            posted: Mutex::new(HashSet::new()),
            stopping: AtomicBool::new(false),
            config,
        });
        let task = tokio::spawn(handler::serve(listener, Arc::clone(&shared)));
        Ok(XServer { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the `base_url` a connector is configured with.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The id of user `index`.
    pub fn user_id(index: u32) -> u64 {
        USER_ID_BASE + u64::from(index)
    }

    /// User `user`'s posts, oldest first (the fixture plus whatever was posted since).
    pub fn posts(&self, user: u64) -> Vec<Post> {
        let index = user.wrapping_sub(USER_ID_BASE);
        lock(&self.shared.timelines)
            .get(index as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// Publishes a new post on user `user`'s timeline (newer than every other post); its id.
    pub fn publish(&self, user: u64, text: &str) -> Option<u64> {
        self.shared.publish(user, text.to_owned(), Vec::new())
    }

    /// Links an OAuth 1.0a user token.
    pub fn link_oauth1_user(&self, user: u64, token: &str, token_secret: &str, scopes: Scopes) {
        lock(&self.shared.tokens).oauth1.insert(
            token.to_owned(),
            OAuth1User {
                user,
                token_secret: token_secret.to_owned(),
                scopes,
            },
        );
    }

    /// Issues an OAuth 2.0 user token pair: (access token, refresh token).
    pub fn link_oauth2_user(&self, user: u64, scopes: Scopes) -> (String, String) {
        self.shared.issue_pair(user, scopes)
    }

    /// Makes `access_token` expire now (as if its lifetime had passed).
    pub fn expire_access_token(&self, access_token: &str) {
        if let Some(token) = lock(&self.shared.tokens).access.get_mut(access_token) {
            token.expires_unix = 0.0;
        }
    }

    /// Answers this fraction of requests 503, chosen deterministically from `seed` and each
    /// request's arrival number.
    pub fn fail_fraction(&self, fraction: f64, seed: u64) {
        let mut switches = lock(&self.shared.switches);
        switches.fail_fraction = fraction.clamp(0.0, 1.0);
        switches.fail_seed = seed;
    }

    /// Down for `window` from now (by the server's clock), in the way `outage` says.
    pub fn down_for(&self, window: Duration, outage: Outage) {
        let until = self.shared.config.clock.now() + window.as_secs_f64();
        lock(&self.shared.switches).down = Some((until, outage));
    }

    /// Up again at once.
    pub fn up(&self) {
        lock(&self.shared.switches).down = None;
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared.switches).delay = delay;
    }

    /// Timeline requests for `user` wait this long first.
    pub fn set_user_delay(&self, user: u64, delay: Duration) {
        lock(&self.shared.switches).user_delay.insert(user, delay);
    }

    /// Timeline requests for `user` wait until [`Self::release_users`].
    pub fn hold_user(&self, user: u64) {
        lock(&self.shared.held).insert(user);
    }

    /// Lets every held request answer.
    pub fn release_users(&self) {
        lock(&self.shared.held).clear();
        self.shared
            .release
            .send_modify(|generation| *generation += 1);
    }

    /// Timeline requests for `user` that arrived and have not been answered yet.
    pub fn pending_for(&self, user: u64) -> u64 {
        lock(&self.shared.pending_per_user)
            .get(&user)
            .copied()
            .unwrap_or(0)
    }

    /// Timeline answers become an HTML page with status 200.
    pub fn set_html_200(&self, on: bool) {
        lock(&self.shared.switches).html_200 = on;
    }

    /// Timeline answers change shape (or go back with `None`).
    pub fn set_shape(&self, shape: Option<ShapeChange>) {
        lock(&self.shared.switches).shape = shape;
    }

    /// Every request answers 429 with the usage-capped problem.
    pub fn set_usage_capped(&self, on: bool) {
        lock(&self.shared.switches).usage_capped = on;
    }

    /// The next `n` accepted posts are created, then the connection is dropped unanswered.
    pub fn drop_after_accepting(&self, n: u32) {
        lock(&self.shared.switches).drop_after_accept = n;
    }

    pub fn stats(&self) -> XStats {
        self.counters().stats()
    }

    /// A handle on the counters that outlives borrows of the server (another thread may
    /// own it).
    pub fn counters(&self) -> XCounters {
        XCounters(Arc::clone(&self.shared))
    }

    /// Timeline requests for `user` (any answer), counted on arrival.
    pub fn timeline_requests_for(&self, user: u64) -> u64 {
        lock(&self.shared.per_user_timeline)
            .get(&user)
            .copied()
            .unwrap_or(0)
    }

    /// Posts accepted through `POST /2/tweets` for `user`.
    pub fn accepted_posts_by(&self, user: u64) -> u64 {
        lock(&self.shared.accepted_by_user)
            .get(&user)
            .copied()
            .unwrap_or(0)
    }

    /// Posts accepted through `POST /2/tweets` with exactly `text` (any user).
    pub fn accepted_posts_with(&self, text: &str) -> u64 {
        lock(&self.shared.accepted_by_text)
            .get(text)
            .copied()
            .unwrap_or(0)
    }

    /// Stops accepting and releases held requests.
    pub fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.release_users();
        self.task.abort();
    }
}

impl Drop for XServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared
            .release
            .send_modify(|generation| *generation += 1);
        self.task.abort();
    }
}

impl Shared {
    fn publish(&self, user: u64, text: String, hashtags: Vec<String>) -> Option<u64> {
        let index = user.checked_sub(USER_ID_BASE)? as usize;
        let mut timelines = lock(&self.timelines);
        let timeline = timelines.get_mut(index)?;
        let number = self.next_post.fetch_add(1, Ordering::Relaxed);
        let id = POST_ID_BASE + number;
        timeline.push(Post {
            id,
            author: user,
            created_unix: FIXTURE_EPOCH_UNIX + number as i64,
            kind: PostKind::Original,
            hashtags,
            text,
            referenced: None,
        });
        Some(id)
    }

    fn issue_pair(&self, user: u64, scopes: Scopes) -> (String, String) {
        let mut tokens = lock(&self.tokens);
        tokens.issued += 1;
        let n = tokens.issued;
        let access = format!("fake-access-{user}-{n}");
        let refresh = format!("fake-refresh-{user}-{n}");
        let expires_unix =
            self.config.clock.now() + self.config.access_token_lifetime.as_secs_f64();
        tokens.access.insert(
            access.clone(),
            AccessToken {
                user,
                scopes,
                expires_unix,
            },
        );
        tokens
            .refresh
            .insert(refresh.clone(), RefreshToken { user, scopes });
        (access, refresh)
    }
}

/// Locks, recovering from a poisoned lock (a panicking test thread must not wedge the fake).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
