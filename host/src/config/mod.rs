//! The host's TOML configuration: the model (which mirrors the running topology: host,
//! connectors, sinks), loading with errors that name `file:line:column` and the field (every
//! error of a file at once), and validation of what TOML alone cannot check (the range of each
//! number and duration, references between sections, egress rules).
//!
//! - [`locate`]: positions from the toml parser's spans, and deserializing that collects errors;
//! - [`files`]: reading outside files (config, plugins, cassettes) under a size cap;
//! - `validate` and `resilience`: the checks, and the ranges they hold values to.

// Credentials the host holds: `[credentials.*]`, `host.token_key`.
pub mod backends;
mod credentials;
mod declarative;
mod dropin;
pub mod files;
mod limits;
pub mod locate;
mod rankings;
mod resilience;
mod search;
mod secret;
mod validate;

use bytesize::ByteSize;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use credentials::{
    CredentialSettings, REFRESH_BEFORE, Scope, TOKEN_KEY_BYTES, decode_token_key,
};
pub use locate::{MAX_ERRORS, Parsed, SourceLocator, parse_collecting};
pub use rankings::{Period, RANKING_MEMBERS, RankingSettings};
pub use resilience::{BreakerSettings, BudgetScope, BudgetSettings, ProbeSettings};
pub use search::{SEARCH_LIMIT, SearchSettings};
pub use secret::{MAX_SECRET_FILE, Secret, SecretError, SecretSource};
pub use validate::Checks;
pub use validate::MAX_PROBLEM_TYPE_BYTES;
pub(crate) use validate::check_config_values;

/// The largest config file read (a config of a thousand connectors is well under 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A configuration error, located in its file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `connectors.rss.schedule.min_interval`.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    /// An error about a whole file (it cannot be read), not a place in it.
    pub fn file(path: &Path, message: String) -> Self {
        Self {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            field: "(file)".to_string(),
            message,
        }
    }
}

/// Every error of one config file (never none), in the order of the file. Displayed one per
/// line, each `file:line:column: field: message`.
#[derive(Debug)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
    /// More than [`MAX_ERRORS`] were found; the rest are not listed.
    truncated: bool,
}

impl ConfigErrors {
    /// The errors of a file; `None` when there are none.
    pub fn new(mut errors: Vec<ConfigError>, truncated: bool) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        let truncated = truncated || errors.len() > MAX_ERRORS;
        errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        errors.truncate(MAX_ERRORS);
        Some(Self { errors, truncated })
    }

    /// The first error in the file.
    pub fn first(&self) -> &ConfigError {
        &self.errors[0]
    }

    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Whether more errors were found than are listed.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
            truncated: false,
        }
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        if self.truncated {
            write!(
                f,
                "\n{}: stopped after {MAX_ERRORS} errors",
                self.first().file
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a field stands in its config file: `file:line:column: field`. Errors that other
/// modules raise about a field (a plugin that does not load) carry it beside their own source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldLocation {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
}

impl std::fmt::Display for FieldLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.field
        )
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub host: HostSettings,
    #[serde(default)]
    pub connectors: BTreeMap<String, ConnectorSettings>,
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkSettings>,
    /// Rate limits that egress allow rules name.
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetSettings>,
    /// Circuit breakers that egress allow rules name, one per upstream.
    #[serde(default)]
    pub breakers: BTreeMap<String, BreakerSettings>,
    /// Credentials the host adds to requests (allow rules name them).
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialSettings>,
    /// `[search]`: the product search across searcher connectors.
    #[serde(default)]
    pub search: SearchSettings,
    /// `[rankings.NAME]`: rankings kept per period, for plugins and the API.
    #[serde(default)]
    pub rankings: BTreeMap<String, RankingSettings>,
    /// `[backends]`: stores beside `host.database` (Redis for budgets, rankings).
    #[serde(default)]
    pub backends: backends::BackendSettings,
    /// Directory of the config file; relative paths in it are resolved against this.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub source_path: PathBuf,
    /// Where each field is written, for errors found after loading (a plugin that fails).
    #[serde(skip)]
    locator: Arc<SourceLocator>,
}

/// `[host]`: process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// `sqlite://PATH` or a file path (relative to the config file), or `postgres://…` for
    /// the store many hosts share (a password in it is never shown; `PGPASSWORD` works too).
    #[serde(default = "default_database")]
    pub database: String,
    /// Admin HTTP listener (`/status`, `/healthz`, `/readyz`, the `/v1/...` actions); none when
    /// absent. Anything but a loopback address needs `admin_token`.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// Where the admin API's bearer token comes from (`{ env = "NAME" }`, `"${NAME}"` or
    /// `{ file = "path" }`). With it, every action needs `Authorization: Bearer <token>`, and so
    /// does `/status` on a non-loopback listener.
    #[serde(default)]
    pub admin_token: Option<SecretSource>,
    /// Host names (besides `localhost` and IP addresses) under which the admin API may be
    /// addressed; requests naming any other `Host` are refused, so a DNS-rebound page cannot
    /// reach it.
    #[serde(default)]
    pub admin_hosts: Vec<String>,
    /// The inbound listener for what the outside pushes (`weblogUpdates` pings at `POST /ping`
    /// and `/RPC2`); none when absent. Apart from the admin port: pingers are strangers and get
    /// nothing but that endpoint.
    #[serde(default)]
    pub inbound_listen: Option<String>,
    /// The public URL at which hubs reach the inbound listener (`https://feeds.example.com`,
    /// behind a proxy): WebSub callbacks are `{inbound_url}/websub/{id}`. Default
    /// `http://{inbound_listen}` with the port it bound, which a listener on `0.0.0.0` cannot
    /// use.
    #[serde(default)]
    pub inbound_url: Option<String>,
    /// How long a claimed target or delivery job stays leased to this host before another may
    /// take it.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub claim_lease: Duration,
    /// How many due targets one claim takes at most.
    #[serde(default = "default_claim_batch")]
    pub claim_batch: u32,
    /// How often the scheduler looks for due targets when it has nothing to do.
    #[serde(default = "default_idle_poll", with = "humantime_serde")]
    pub idle_poll: Duration,
    /// On shutdown, how long in-flight jobs may take before they are abandoned (their leases
    /// expire and another host picks them up).
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Directory for plugins' optimized machine code, shared by hosts on one machine; none
    /// disables it (every start compiles again).
    #[serde(default)]
    pub compile_cache: Option<PathBuf>,
    /// How plugins are compiled: `tiered` (a plugin not in the compile cache runs at once on
    /// Winch's quickly made code while Cranelift makes the fast code, which takes over with the
    /// next instance), `cranelift` (wait for the fast code), or `winch` (quick code only).
    #[serde(default)]
    pub compiler: Compiler,
    /// Reload when the config file or a plugin file changes.
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// Plugin instances that may exist at once across all connectors (each unit of a
    /// connector's concurrency takes two, so a hot swap can run both versions). Fixed at start;
    /// a reload that would need more is refused. Default: what the connectors need, and at
    /// least 512.
    #[serde(default)]
    pub instance_slots: Option<u32>,
    /// Finished (done) jobs are deleted this long after they finished; dead ones stay.
    #[serde(default = "default_keep_done_jobs", with = "humantime_serde")]
    pub keep_done_jobs: Duration,
    /// Time between retention passes (the first runs at start).
    #[serde(default = "default_retention_interval", with = "humantime_serde")]
    pub retention_interval: Duration,
    /// How long the id of an item retention deleted is remembered after a poll last returned
    /// it, so a feed that still lists the item does not bring it back as new.
    #[serde(default = "default_keep_forgotten_ids", with = "humantime_serde")]
    pub keep_forgotten_ids: Duration,
    /// At most this many forgotten ids are remembered (the least recently seen go first): a
    /// feed inventing new ids on every poll cannot grow the store without bound.
    #[serde(default = "default_max_forgotten_ids")]
    pub max_forgotten_ids: u64,
    /// The key sealing per-target tokens in the store (32 bytes, hex or base64), from the
    /// environment or a file. Needed by credentials that keep linked tokens.
    #[serde(default)]
    pub token_key: Option<SecretSource>,
    /// The key before the last rotation: still read, never written (`tsunagi tokens rekey`
    /// re-seals every token with `token_key`).
    #[serde(default)]
    pub token_key_previous: Option<SecretSource>,
    /// A folder of drop-in config files (`*.toml`, relative to this file), each holding
    /// `[connectors.*]`, `[budgets.*]`, `[breakers.*]` and `[credentials.*]` tables, merged
    /// into this config; a file added there while the host runs is picked up by the next
    /// reload (the watcher reloads on its own). Relative paths inside them are relative to this
    /// file, as here.
    #[serde(default)]
    pub connectors_dir: Option<PathBuf>,
    /// Where the no-code interpreter's builds are (`tsunagi_plugin_declarative_searcher.wasm`,
    /// `…_poller.wasm`): a connector with a `declarative` table and no `plugin` runs them.
    #[serde(default = "default_declarative_plugins")]
    pub declarative_plugins: PathBuf,
}

fn default_declarative_plugins() -> PathBuf {
    PathBuf::from("../target/wasm32-wasip2/plugin")
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            database: default_database(),
            admin_listen: None,
            inbound_listen: None,
            inbound_url: None,
            admin_token: None,
            admin_hosts: Vec::new(),
            claim_lease: default_lease(),
            claim_batch: default_claim_batch(),
            idle_poll: default_idle_poll(),
            shutdown_grace: default_shutdown_grace(),
            compile_cache: None,
            compiler: Compiler::default(),
            watch: default_watch(),
            instance_slots: None,
            keep_done_jobs: default_keep_done_jobs(),
            retention_interval: default_retention_interval(),
            keep_forgotten_ids: default_keep_forgotten_ids(),
            max_forgotten_ids: default_max_forgotten_ids(),
            token_key: None,
            token_key_previous: None,
            connectors_dir: None,
            declarative_plugins: default_declarative_plugins(),
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

fn default_keep_done_jobs() -> Duration {
    7 * DAY
}
fn default_retention_interval() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_keep_forgotten_ids() -> Duration {
    365 * DAY
}
fn default_max_forgotten_ids() -> u64 {
    10_000_000
}

fn default_watch() -> bool {
    true
}

fn default_database() -> String {
    "tsunagi.db".to_string()
}
fn default_lease() -> Duration {
    Duration::from_secs(120)
}
fn default_claim_batch() -> u32 {
    256
}
fn default_idle_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(15)
}

/// Which of wasmtime's compilers make a plugin's machine code (`[host] compiler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compiler {
    /// Winch's code first, Cranelift's when it is ready.
    #[default]
    Tiered,
    /// Cranelift only: the fast code, after waiting for it.
    Cranelift,
    /// Winch only: quick to make, slower to run.
    Winch,
}

/// The role a connector plays, which decides the world its component must export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pulls from targets on a schedule; exports `poll`.
    Poller,
    /// Carries out queued jobs; exports `handle`.
    Handler,
    /// Answers searches on request; exports `search`.
    Searcher,
}

impl Role {
    /// The role's name in the TOML and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Poller => "poller",
            Self::Handler => "handler",
            Self::Searcher => "searcher",
        }
    }

    /// The WIT interface a component of this role must export.
    pub fn export(self) -> &'static str {
        match self {
            Self::Poller => "poll",
            Self::Handler => "handle",
            Self::Searcher => "search",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[connectors.NAME]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSettings {
    /// Path to the component (`.wasm`), relative to the config file; a no-code connector
    /// (with `declarative`) may leave it out and runs the host's interpreter.
    #[serde(default)]
    pub plugin: PathBuf,
    /// What the plugin does: `poller` (scheduled pulls of targets), `handler` (queued jobs) or
    /// `searcher` (answers searches); its exports must match.
    pub role: Role,
    /// Calls of this connector running at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Calls one plugin instance serves before it is replaced by a fresh one.
    #[serde(default = "default_calls_per_instance")]
    pub calls_per_instance: u32,
    #[serde(default)]
    pub schedule: ScheduleSettings,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub egress: EgressSettings,
    /// Names of `[sinks.*]` that receive this connector's new items (items are always stored).
    #[serde(default)]
    pub sinks: Vec<String>,
    /// Values the plugin reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Stored items older than this are deleted (their ids remembered, so they do not come
    /// back as new); none keeps them forever.
    #[serde(default, with = "humantime_serde")]
    pub keep_items: Option<Duration>,
    /// Only the newest this many stored items are kept; none keeps every one.
    #[serde(default)]
    pub keep_items_count: Option<u64>,
    /// When a target is removed (a user unlinked), delete its stored items too; by default
    /// they are kept.
    #[serde(default)]
    pub purge_items_on_unlink: bool,
    /// Where this connector's items come from (`"x"` for X), stamped by the host on every item
    /// it stores and delivers; the X write connector skips posts whose origin is `"x"`.
    #[serde(default)]
    pub origin: Option<String>,
    /// Subscribe with the WebSub hubs the plugin reports for its targets (a poller; needs
    /// `host.inbound_listen`): a hub's updates arrive as they are published, and a subscribed
    /// target is polled only at `schedule.max_interval`.
    #[serde(default)]
    pub websub: bool,
    /// `[connectors.NAME.jobs]`: where a handler's jobs come from.
    #[serde(default)]
    pub jobs: JobSettings,
    // --- xread: item filters (host-side, every connector) ---
    /// `[connectors.NAME.filters]`: items dropped before they are stored, counted in `/status`.
    #[serde(default)]
    pub filters: crate::filter::FilterSettings,
    /// Problem types (the `type` of an `application/problem+json` answer, e.g.
    /// `https://api.twitter.com/2/problems/usage-capped`) that pause the whole connector
    /// instead of being retried: no more calls until `pause_for` has passed, an operator's
    /// `POST /v1/connectors/NAME/resume`, or a restart.
    #[serde(default)]
    pub pause_on_problem: Vec<String>,
    /// How long such a pause lasts; none: until resumed.
    #[serde(default, with = "humantime_serde")]
    pub pause_for: Option<Duration>,
    // --- end xread ---
    /// `[connectors.NAME.declarative]`: the connector declared in TOML (request template,
    /// record selector, field mapping, paging, error rules), run by `plugins/declarative`.
    #[serde(default)]
    pub declarative: Option<tsunagi_declarative_spec::Spec>,
    /// The `[rankings.*]` the plugin may add to and read (through the `rankings` import).
    #[serde(default)]
    pub rankings: Vec<String>,
}

// --- Handler jobs (`[connectors.NAME.jobs]`) ---------------------------------------------------

/// `[connectors.NAME.jobs]`: the queue a handler connector runs jobs from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// The queue's name (default: the connector's name); unique among connectors, and what
    /// `POST /v1/queues/{queue}/jobs` and `tsunagi enqueue` name.
    pub queue: Option<String>,
    /// Topics of `POST /v1/events/{topic}` this handler subscribes to: each event becomes a
    /// job on its queue, of kind = the topic, with the event (ids only) as its payload.
    #[serde(default)]
    pub events: Vec<String>,
}

impl ConnectorSettings {
    /// The job queue of connector `name`: `jobs.queue`, or the connector's name.
    pub fn job_queue(&self, name: &str) -> String {
        self.jobs.queue.clone().unwrap_or_else(|| name.to_string())
    }
}

// --- End of handler jobs -------------------------------------------------------------------------

fn default_concurrency() -> usize {
    32
}
fn default_calls_per_instance() -> u32 {
    1000
}

/// `[connectors.NAME.schedule]`: how often targets are polled.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// The shortest time between two polls of a target, whatever its feed says.
    #[serde(default = "default_min_interval", with = "humantime_serde")]
    pub min_interval: Duration,
    /// The longest: a quiet target is still polled this often.
    #[serde(default = "default_max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            min_interval: default_min_interval(),
            max_interval: default_max_interval(),
        }
    }
}

fn default_min_interval() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `[connectors.NAME.retry]`: how a target that keeps failing is retried, and when it is
/// given up on (moved to the dead-letter state, see `tsunagi dlq`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Wait after the first failure.
    #[serde(default = "default_first_delay", with = "humantime_serde")]
    pub first_delay: Duration,
    /// Longest wait between attempts.
    #[serde(default = "default_max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
    /// Each consecutive failure multiplies the wait by this.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Fraction of each wait spread at random (0 to 1), so failures do not retry in step.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Consecutive failures after which the target is dead-lettered. Errors the plugin marks
    /// permanent dead-letter it at once.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            first_delay: default_first_delay(),
            max_delay: default_max_delay(),
            multiplier: default_multiplier(),
            jitter: default_jitter(),
            max_failures: default_max_failures(),
        }
    }
}

fn default_first_delay() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_jitter() -> f64 {
    0.2
}
fn default_max_failures() -> u32 {
    20
}

/// `[connectors.NAME.limits]`: what one call may use.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Wall-clock time for one call, including its HTTP requests.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Linear memory one plugin instance may grow to.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Largest HTTP response body the plugin may receive.
    #[serde(default = "default_response_size")]
    pub response_size: ByteSize,
    /// Time to set up the connection (TCP and TLS).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time until the response headers arrive.
    #[serde(default = "default_first_byte_timeout", with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Time for a whole HTTP exchange, body included.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest HTTP request body the plugin may send (read under this cap, never past it).
    #[serde(default = "limits::default_request_size")]
    pub request_size: ByteSize,
    /// HTTP requests one call may make in all.
    #[serde(default = "limits::default_requests_per_call")]
    pub requests_per_call: u32,
    /// HTTP requests one call may have in flight at once. A request counts until the plugin
    /// has read its response body to the end or dropped it, since the host holds the body (up
    /// to `response_size`) till then.
    #[serde(default = "limits::default_requests_in_flight")]
    pub requests_in_flight: u32,
    /// HTTP requests all calls of the connector may have in flight at once; a request over it
    /// waits for a slot while its call has time. Absent: twice `concurrency`.
    #[serde(default)]
    pub connector_requests_in_flight: Option<u32>,
    /// Longest state key.
    #[serde(default = "limits::default_state_key_size")]
    pub state_key_size: ByteSize,
    /// Longest state value.
    #[serde(default = "limits::default_state_value_size")]
    pub state_value_size: ByteSize,
    /// Keys plus values one target may hold in target-scoped state, counted against what is
    /// stored.
    #[serde(default = "limits::default_state_per_target")]
    pub state_per_target: ByteSize,
    /// Keys plus values the connector may hold in connector-scoped state, counted against what
    /// is stored.
    #[serde(default = "limits::default_state_per_connector")]
    pub state_per_connector: ByteSize,
    /// Longest plugin log line (and error message); longer ones are cut, with a marker.
    #[serde(default = "limits::default_log_line_size")]
    pub log_line_size: ByteSize,
    /// Log lines one call may write; the rest are dropped and counted.
    #[serde(default = "limits::default_log_lines_per_call")]
    pub log_lines_per_call: u32,
    /// Items one call may return.
    #[serde(default = "limits::default_items_per_call")]
    pub items_per_call: u32,
    /// Bytes the host may hold for one call's result: the items' text, about 220 bytes per
    /// item and 24 per author or category, plus validators and cursor. Enforced while the
    /// result is copied out of the plugin.
    #[serde(default = "limits::default_items_size")]
    pub items_size: ByteSize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            call_timeout: default_call_timeout(),
            memory: default_memory(),
            response_size: default_response_size(),
            connect_timeout: default_connect_timeout(),
            first_byte_timeout: default_first_byte_timeout(),
            request_timeout: default_request_timeout(),
            request_size: limits::default_request_size(),
            requests_per_call: limits::default_requests_per_call(),
            requests_in_flight: limits::default_requests_in_flight(),
            connector_requests_in_flight: None,
            state_key_size: limits::default_state_key_size(),
            state_value_size: limits::default_state_value_size(),
            state_per_target: limits::default_state_per_target(),
            state_per_connector: limits::default_state_per_connector(),
            log_line_size: limits::default_log_line_size(),
            log_lines_per_call: limits::default_log_lines_per_call(),
            items_per_call: limits::default_items_per_call(),
            items_size: limits::default_items_size(),
        }
    }
}

fn default_call_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_memory() -> ByteSize {
    ByteSize::mib(128)
}
fn default_response_size() -> ByteSize {
    ByteSize::mib(8)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_first_byte_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(45)
}

/// `[connectors.NAME.egress]`: where the plugin may send requests.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EgressSettings {
    #[serde(default)]
    pub allow: Vec<AllowRule>,
}

/// One allowlist entry. A request is allowed when some rule matches its scheme, host and port.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `http`, `https`, or absent for both.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Exact host, `*.example.com` for subdomains, or `*` for any host.
    pub host: String,
    /// Absent means the scheme's default port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Lets the hosts this rule names resolve to internal addresses (loopback, private,
    /// link-local, cloud metadata). Off by default: such addresses are then reachable only
    /// through a rule whose `host` is the address itself. DNS answers are screened per host
    /// name, so the opt-in covers that name on every port the allowlist permits.
    #[serde(default)]
    pub allow_internal: bool,
    /// The `[budgets.NAME]` every request through this rule spends from: one name, or a list
    /// when several limits apply at once (an app's and each user's, `["x-app", "x-user"]`); a
    /// request goes when every one of them has room.
    #[serde(default, deserialize_with = "one_or_many")]
    pub budget: Vec<String>,
    /// A `[breakers.NAME]` guarding the upstream this rule reaches.
    #[serde(default)]
    pub breaker: Option<String>,
    /// A `[credentials.NAME]` the host adds to every request through this rule, for the
    /// call's target.
    #[serde(default)]
    pub credential: Option<String>,
    /// The scope those requests need of the target's token; absent: `read` for GET, HEAD and
    /// OPTIONS, `write` for other methods.
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// `[sinks.NAME]`: where new items are delivered besides the item store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum SinkSettings {
    /// Appends one JSON object per line.
    Jsonl {
        /// The file (relative to the config file), created if missing.
        path: PathBuf,
    },
    /// POSTs a JSON array of items; retried with backoff until `max_attempts`. Goes out
    /// through egress: only to the URL's own scheme, host and port (redirects too), and to an
    /// internal address only when the URL spells that address or `allow_internal` is set.
    Webhook {
        /// Where the items are POSTed.
        url: String,
        /// Lets the URL's host name resolve to internal addresses (loopback, private, …).
        #[serde(default)]
        allow_internal: bool,
        /// Attempts a delivery gets before it is dead-lettered (see `tsunagi dlq`).
        #[serde(default = "default_webhook_attempts")]
        max_attempts: u32,
        /// Time one delivery may take.
        #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
}

impl SinkSettings {
    /// Attempts a delivery job gets before it goes to the dead-letter state.
    pub fn max_attempts(&self) -> u32 {
        match self {
            // A local file failing is rare and worth many tries before giving up.
            Self::Jsonl { .. } => 100,
            Self::Webhook { max_attempts, .. } => *max_attempts,
        }
    }
}

fn default_webhook_attempts() -> u32 {
    12
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(15)
}

impl Config {
    /// Reads, parses and validates a config file (a regular file of at most
    /// [`MAX_CONFIG_BYTES`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = files::read_regular_text(path, MAX_CONFIG_BYTES, "config file")
            .map_err(|e| ConfigError::file(path, e.to_string()))?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` names it in errors and anchors relative paths.
    /// Every error of the text is reported, each where it is written.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let Parsed {
            value,
            mut locator,
            mut errors,
            mut refused,
            truncated,
        } = parse_collecting::<Config>(path, text);
        if let Some(mut config) = value {
            config.base_dir = path
                .parent()
                .map(Path::to_path_buf)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("."));
            config.source_path = path.to_path_buf();
            dropin::merge_fragments(&mut config, &mut locator, &mut errors, &mut refused);
            let mut checks = Checks::new(&locator, &refused);
            validate::validate(&config, &mut checks);
            errors.extend(checks.into_errors());
            if errors.is_empty() {
                declarative::complete(&mut config);
                config.locator = Arc::new(locator);
                return Ok(config);
            }
        }
        Err(ConfigErrors::new(errors, truncated).unwrap_or_else(|| {
            locator
                .field_error("(document)", "does not describe a configuration")
                .into()
        }))
    }

    /// The admin API's token, read from where `host.admin_token` says.
    pub fn admin_token(&self) -> Result<Option<Secret>, SecretError> {
        self.host
            .admin_token
            .as_ref()
            .map(|source| source.resolve(&self.base_dir))
            .transpose()
    }

    /// Resolves a path from the config file against the file's directory, as an absolute path
    /// (some consumers, like wasmtime's compile cache, accept nothing else).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        };
        std::path::absolute(&joined).unwrap_or(joined)
    }

    /// The database URL with a relative SQLite path resolved against the config file.
    pub fn database_url(&self) -> String {
        let raw = self.host.database.as_str();
        if raw.contains("://") && !raw.starts_with("sqlite://") {
            return raw.to_string();
        }
        let path = raw.strip_prefix("sqlite://").unwrap_or(raw);
        format!("sqlite://{}", self.resolve(Path::new(path)).display())
    }

    /// Where the fields of this config are written.
    pub fn locator(&self) -> &SourceLocator {
        &self.locator
    }

    /// Where `field` stands in the file (where its nearest enclosing table is, when the
    /// field itself is not written).
    pub fn locate(&self, field: &str) -> FieldLocation {
        let ConfigError {
            file, line, column, ..
        } = self.error_at(field, "");
        FieldLocation {
            file,
            line,
            column,
            field: field.to_string(),
        }
    }

    /// An error about `field`, located where the file writes it.
    pub fn error_at(&self, field: &str, message: &str) -> ConfigError {
        let mut error = self.locator.field_error(field, message);
        if error.file.is_empty() {
            error.file = self.source_path.display().to_string();
        }
        error
    }
}

/// What a plugin's `config` import answers: each value of a `[connectors.NAME.config]` table
/// (or a cassette's `[config]`) as text; validation refuses the values that have none.
pub fn config_texts(table: &BTreeMap<String, toml::Value>) -> BTreeMap<String, String> {
    table
        .iter()
        .filter_map(|(key, value)| config_value_text(value).map(|text| (key.clone(), text)))
        .collect()
}

/// The text a plugin sees for a `[connectors.NAME.config]` value.
pub fn config_value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod properties;
#[cfg(test)]
mod tests;
