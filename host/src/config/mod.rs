//! The host's TOML configuration: the model (which mirrors the running topology: host,
//! connectors, sinks), loading with errors that name `file:line:column` and the field, and
//! validation of what TOML alone cannot check (references between sections, egress rules).

mod limits;
mod locate;
mod resilience;

use bytesize::ByteSize;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use locate::SourceLocator;
pub use resilience::{BreakerSettings, BudgetScope, BudgetSettings, ProbeSettings};

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `connectors.rss.schedule.min_interval`.
    pub field: String,
    pub message: String,
}

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
    /// Directory of the config file; relative paths in it are resolved against this.
    #[serde(skip)]
    pub base_dir: PathBuf,
    #[serde(skip)]
    pub source_path: PathBuf,
}

/// `[host]`: process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// `sqlite://PATH` or a file path (relative to the config file).
    #[serde(default = "default_database")]
    pub database: String,
    /// Admin HTTP listener (`/status`, `/healthz`); none when absent.
    #[serde(default)]
    pub admin_listen: Option<String>,
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
    /// Directory for wasmtime's compiled-code cache; none disables it.
    #[serde(default)]
    pub compile_cache: Option<PathBuf>,
    /// Reload when the config file or a plugin file changes.
    #[serde(default = "default_watch")]
    pub watch: bool,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            database: default_database(),
            admin_listen: None,
            claim_lease: default_lease(),
            claim_batch: default_claim_batch(),
            idle_poll: default_idle_poll(),
            shutdown_grace: default_shutdown_grace(),
            compile_cache: None,
            watch: default_watch(),
        }
    }
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
    /// Path to the component (`.wasm`), relative to the config file.
    pub plugin: PathBuf,
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
}

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
    #[serde(default = "default_min_interval", with = "humantime_serde")]
    pub min_interval: Duration,
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
    /// A `[budgets.NAME]` every request through this rule spends from.
    #[serde(default)]
    pub budget: Option<String>,
    /// A `[breakers.NAME]` guarding the upstream this rule reaches.
    #[serde(default)]
    pub breaker: Option<String>,
}

/// `[sinks.NAME]`: where new items are delivered besides the item store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum SinkSettings {
    /// Appends one JSON object per line.
    Jsonl { path: PathBuf },
    /// POSTs a JSON array of items; retried with backoff until `max_attempts`.
    Webhook {
        url: String,
        #[serde(default = "default_webhook_attempts")]
        max_attempts: u32,
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
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            field: "(file)".to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let locator = SourceLocator::new(path, text);
        let mut config: Config = toml::from_str(text).map_err(|e| locator.toml_error(&e))?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        config.source_path = path.to_path_buf();
        config.validate(&locator)?;
        Ok(config)
    }

    fn validate(&self, locator: &SourceLocator) -> Result<(), ConfigError> {
        let host = &self.host;
        if host.claim_batch == 0 {
            return Err(locator.field_error("host.claim_batch", "must be at least 1"));
        }
        for (field, value) in [
            ("host.claim_lease", host.claim_lease),
            ("host.idle_poll", host.idle_poll),
        ] {
            if value.is_zero() {
                return Err(locator.field_error(field, "must be longer than 0s"));
            }
        }
        if let Some(listen) = &host.admin_listen
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(locator.field_error(
                "host.admin_listen",
                &format!("{listen:?} is not an address like 127.0.0.1:7878"),
            ));
        }
        for (name, connector) in &self.connectors {
            let at = |field: &str| format!("connectors.{name}.{field}");
            if !is_valid_name(name) {
                return Err(locator.field_error(
                    &format!("connectors.{name}"),
                    "connector names use lowercase letters, digits, '-' and '_'",
                ));
            }
            if connector.concurrency == 0 {
                return Err(locator.field_error(&at("concurrency"), "must be at least 1"));
            }
            if connector.calls_per_instance == 0 {
                return Err(locator.field_error(&at("calls_per_instance"), "must be at least 1"));
            }
            let schedule = &connector.schedule;
            if schedule.min_interval > schedule.max_interval {
                return Err(locator.field_error(
                    &at("schedule.min_interval"),
                    "is longer than schedule.max_interval",
                ));
            }
            let retry = &connector.retry;
            if retry.first_delay.is_zero() || retry.first_delay > retry.max_delay {
                return Err(locator.field_error(
                    &at("retry.first_delay"),
                    "must be longer than 0s and no longer than retry.max_delay",
                ));
            }
            if !(1.0..=100.0).contains(&retry.multiplier) {
                return Err(
                    locator.field_error(&at("retry.multiplier"), "must be between 1 and 100")
                );
            }
            if !(0.0..=1.0).contains(&retry.jitter) {
                return Err(locator.field_error(&at("retry.jitter"), "must be between 0 and 1"));
            }
            if retry.max_failures == 0 {
                return Err(locator.field_error(&at("retry.max_failures"), "must be at least 1"));
            }
            let limits = &connector.limits;
            if limits.memory.as_u64() < ByteSize::mib(2).as_u64() {
                return Err(locator.field_error(&at("limits.memory"), "must be at least 2 MiB"));
            }
            if limits.response_size.as_u64() == 0 {
                return Err(locator.field_error(&at("limits.response_size"), "must be above 0"));
            }
            for (field, value) in [
                ("limits.call_timeout", limits.call_timeout),
                ("limits.connect_timeout", limits.connect_timeout),
                ("limits.first_byte_timeout", limits.first_byte_timeout),
                ("limits.request_timeout", limits.request_timeout),
            ] {
                if value.is_zero() || value > MAX_TIMEOUT {
                    return Err(locator.field_error(
                        &at(field),
                        &format!(
                            "must be between 0s and {}",
                            humantime::format_duration(MAX_TIMEOUT)
                        ),
                    ));
                }
            }
            limits::validate(limits, &at, locator)?;
            // A call that outlives its target's lease lets another worker claim the target
            // while the first is still fetching it.
            if limits.call_timeout + LEASE_MARGIN > host.claim_lease {
                return Err(locator.field_error(
                    &at("limits.call_timeout"),
                    &format!(
                        "must be at least {} shorter than host.claim_lease ({})",
                        humantime::format_duration(LEASE_MARGIN),
                        humantime::format_duration(host.claim_lease)
                    ),
                ));
            }
            for (index, rule) in connector.egress.allow.iter().enumerate() {
                if let Some(scheme) = &rule.scheme
                    && scheme != "http"
                    && scheme != "https"
                {
                    return Err(locator.field_error(
                        &at(&format!("egress.allow[{index}].scheme")),
                        &format!("{scheme:?} is not \"http\" or \"https\""),
                    ));
                }
                if rule.host.is_empty() {
                    return Err(locator.field_error(
                        &at(&format!("egress.allow[{index}].host")),
                        "must not be empty",
                    ));
                }
            }
            for sink in &connector.sinks {
                if !self.sinks.contains_key(sink) {
                    return Err(
                        locator.field_error(&at("sinks"), &format!("no [sinks.{sink}] is defined"))
                    );
                }
            }
            for (key, value) in &connector.config {
                if config_value_text(value).is_none() {
                    return Err(locator.field_error(
                        &at(&format!("config.{key}")),
                        "must be a string, number or boolean",
                    ));
                }
            }
        }
        resilience::validate(self, locator)?;
        for (name, sink) in &self.sinks {
            if let SinkSettings::Webhook { url, .. } = sink {
                let parsed = url::Url::parse(url).map_err(|e| {
                    locator.field_error(&format!("sinks.{name}.url"), &format!("{e}"))
                })?;
                if parsed.scheme() != "http" && parsed.scheme() != "https" {
                    return Err(locator.field_error(
                        &format!("sinks.{name}.url"),
                        "must be an http or https URL",
                    ));
                }
            }
        }
        Ok(())
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

    /// A locator for errors found after loading (plugin files, etc.).
    pub fn locator(&self) -> Option<SourceLocator> {
        let text = std::fs::read_to_string(&self.source_path).ok()?;
        Some(SourceLocator::new(&self.source_path, &text))
    }

    /// Builds an error for `field`, located in the file when it can still be read.
    /// Where `field` stands in the file (line 0 when it is not written there).
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

    pub fn error_at(&self, field: &str, message: &str) -> ConfigError {
        match self.locator() {
            Some(locator) => locator.field_error(field, message),
            None => ConfigError {
                file: self.source_path.display().to_string(),
                line: 0,
                column: 0,
                field: field.to_string(),
                message: message.to_string(),
            },
        }
    }
}

/// The longest time limit a config may set (larger values are mistakes, and overflow clocks).
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Time a finished call needs to commit before its lease runs out.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
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
mod tests;
