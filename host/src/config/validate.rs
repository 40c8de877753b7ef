//! What TOML alone cannot check: the range of every number and duration (so nothing
//! downstream overflows or waits for ever), names, references between sections and egress
//! rules. Every check adds to one [`Checks`] list, so a file reports all its errors at once.
//!
//! Adding a field: give it a range below (or a check in its section's function) and a test
//! that sets it out of range; the section functions are the places to add to.

use super::locate::SourceLocator;
use super::{AllowRule, Config, ConfigError, ConnectorSettings, LimitSettings, Role, SinkSettings};
use bytesize::ByteSize;
use std::collections::BTreeSet;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

const MILLISECOND: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

// The ranges. Upper bounds are far beyond any sensible setting and far below what overflows
// the millisecond clocks, semaphores and allocator sizes the values feed.

pub const CLAIM_LEASE: RangeInclusive<Duration> = SECOND..=DAY;
pub const CLAIM_BATCH: RangeInclusive<u32> = 1..=10_000;
pub const IDLE_POLL: RangeInclusive<Duration> = MILLISECOND..=Duration::from_secs(600);
pub const SHUTDOWN_GRACE: RangeInclusive<Duration> = Duration::ZERO..=HOUR;
/// Calls at once per connector; the engine reserves twice the sum of these as instances.
pub const CONCURRENCY: RangeInclusive<usize> = 1..=1024;
/// Plugin instances one engine holds slots for (`host.instance_slots`).
pub const INSTANCE_SLOTS: RangeInclusive<u32> = 1..=16_384;
pub const CALLS_PER_INSTANCE: RangeInclusive<u32> = 1..=1_000_000;
pub const POLL_INTERVAL: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(30 * 24 * 3600);
pub const RETRY_DELAY: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(30 * 24 * 3600);
pub const RETRY_MULTIPLIER: RangeInclusive<f64> = 1.0..=100.0;
pub const RETRY_JITTER: RangeInclusive<f64> = 0.0..=1.0;
pub const MAX_FAILURES: RangeInclusive<u32> = 1..=1000;
/// Every time limit: call, connect, first byte, request, webhook, probe.
pub const TIMEOUT: RangeInclusive<Duration> = MILLISECOND..=HOUR;
/// wasm32 memories cannot grow past 4 GiB.
pub const MEMORY: RangeInclusive<u64> = (2 << 20)..=(4 << 30);
pub const RESPONSE_SIZE: RangeInclusive<u64> = 1..=(1 << 30);
pub const WEBHOOK_ATTEMPTS: RangeInclusive<u32> = 1..=1000;
pub const PORT: RangeInclusive<u16> = 1..=u16::MAX;
/// Connector, sink, budget and breaker names.
pub const NAME_LENGTH: RangeInclusive<usize> = 1..=64;
/// A DNS name is at most 253 characters.
pub const HOST_LENGTH: RangeInclusive<usize> = 1..=253;
pub const BUDGET_BURST: RangeInclusive<u32> = 1..=100_000;
/// `in_flight` on a budget: requests out at once under one key.
pub const BUDGET_IN_FLIGHT: RangeInclusive<u32> = 1..=10_000;
pub const BUDGET_PERIOD: RangeInclusive<Duration> =
    MILLISECOND..=Duration::from_secs(30 * 24 * 3600);
pub const BREAKER_CALLS: RangeInclusive<u32> = 1..=10_000;
pub const BREAKER_WAIT: RangeInclusive<Duration> = MILLISECOND..=DAY;
pub const PERCENT: RangeInclusive<f64> = 0.0..=100.0;
pub const HALF_OPEN_CALLS: RangeInclusive<u32> = 1..=1000;
pub const SUCCESSES_TO_CLOSE: RangeInclusive<u32> = 1..=1000;
pub const HTTP_STATUS: RangeInclusive<u16> = 100..=599;
pub const EXPECT_STATUSES: usize = 64;

/// How long done jobs are kept (`host.keep_done_jobs`).
pub const KEEP_DONE_JOBS: RangeInclusive<Duration> = Duration::from_secs(60)..=KEEP_MAX;
/// How long items are kept (`keep_items`): under an hour is a slip (`"90s"` for `"90d"`) that
/// would empty the item store.
pub const KEEP_ITEMS: RangeInclusive<Duration> = HOUR..=KEEP_MAX;
pub const RETENTION_INTERVAL: RangeInclusive<Duration> = SECOND..=DAY;
// xread: pausing a connector on a problem answer.
/// How long a `pause_on_problem` pause may last.
pub const PAUSE_FOR: RangeInclusive<Duration> = SECOND..=Duration::from_secs(31 * 86_400);
/// Entries in `pause_on_problem`.
pub const MAX_PAUSE_PROBLEMS: usize = 100;
/// The longest problem `type` kept from an answer or listed in `pause_on_problem`.
pub const MAX_PROBLEM_TYPE_BYTES: usize = 512;
/// Forgotten ids' last-seen times are refreshed at most this often; a shorter horizon would
/// drop ids feeds still list.
pub const KEEP_FORGOTTEN_IDS: RangeInclusive<Duration> =
    Duration::from_secs(2 * tsunagi_backends::FORGOTTEN_SEEN_REFRESH.as_secs())..=KEEP_MAX;
pub const MAX_FORGOTTEN_IDS: RangeInclusive<u64> = 1_000..=1_000_000_000;
pub const KEEP_ITEMS_COUNT: RangeInclusive<u64> = 1..=u32::MAX as u64;
const KEEP_MAX: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Time a finished call needs to commit before its lease runs out.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The errors found so far, each located in the file.
pub struct Checks<'a> {
    locator: &'a SourceLocator,
    /// Fields cut out because they did not deserialize: they hold defaults now, so checks on
    /// them would report made-up errors.
    refused: &'a BTreeSet<String>,
    errors: Vec<ConfigError>,
}

impl<'a> Checks<'a> {
    pub fn new(locator: &'a SourceLocator, refused: &'a BTreeSet<String>) -> Self {
        Self {
            locator,
            refused,
            errors: Vec::new(),
        }
    }

    /// Records an error at `field` (unless the field was refused already).
    pub fn error(&mut self, field: &str, message: impl Display) {
        if !self.refused(field) {
            self.errors
                .push(self.locator.field_error(field, &message.to_string()));
        }
    }

    /// Whether `field`, or a table or array holding it, did not deserialize.
    pub fn refused(&self, field: &str) -> bool {
        self.refused.iter().any(|refused| {
            field == refused
                || field
                    .strip_prefix(refused.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }

    /// Checks a count or a port against its range.
    pub fn count<T: PartialOrd + Display>(
        &mut self,
        field: &str,
        value: T,
        range: RangeInclusive<T>,
    ) -> bool {
        let ok = range.contains(&value);
        if !ok {
            self.error(
                field,
                format!(
                    "must be between {} and {}, not {value}",
                    range.start(),
                    range.end()
                ),
            );
        }
        ok
    }

    /// Checks a number with a fraction (NaN is out of every range).
    pub fn number(&mut self, field: &str, value: f64, range: RangeInclusive<f64>) -> bool {
        self.count(field, value, range)
    }

    pub fn duration(
        &mut self,
        field: &str,
        value: Duration,
        range: RangeInclusive<Duration>,
    ) -> bool {
        let ok = range.contains(&value);
        if !ok {
            self.error(
                field,
                format!(
                    "must be between {} and {}, not {}",
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end()),
                    humantime::format_duration(value)
                ),
            );
        }
        ok
    }

    pub fn bytes(&mut self, field: &str, value: ByteSize, range: RangeInclusive<u64>) -> bool {
        let ok = range.contains(&value.as_u64());
        if !ok {
            self.error(
                field,
                format!(
                    "must be between {} and {}, not {value}",
                    ByteSize::b(*range.start()),
                    ByteSize::b(*range.end())
                ),
            );
        }
        ok
    }

    /// Checks a name of a connector, sink, budget or breaker.
    pub fn name(&mut self, field: &str, name: &str, what: &str) {
        if !NAME_LENGTH.contains(&name.len()) || !is_valid_name(name) {
            self.error(
                field,
                format!(
                    "{what} names use {} to {} lowercase letters, digits, '-' and '_'",
                    NAME_LENGTH.start(),
                    NAME_LENGTH.end()
                ),
            );
        }
    }

    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

fn is_valid_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Every check of a whole config.
pub(super) fn validate(config: &Config, checks: &mut Checks) {
    check_host(config, checks);
    check_retention(config, checks);
    for (name, connector) in &config.connectors {
        check_connector(config, name, connector, checks);
    }
    for (name, sink) in &config.sinks {
        check_sink(name, sink, checks);
    }
    check_job_queues(config, checks);
    super::resilience::validate(config, checks);
    super::credentials::validate(config, checks);
    super::search::validate(config, checks);
    super::declarative::validate(config, checks);
    super::rankings::validate(config, checks);
    super::backends::validate(config, checks);
}

/// `[connectors.NAME.jobs]`: a valid queue name, only on handlers, and no two connectors
/// running one queue (each job would go to whichever leased it first).
fn check_job_queues(config: &Config, checks: &mut Checks) {
    let mut owners: std::collections::BTreeMap<String, &str> = std::collections::BTreeMap::new();
    for (name, connector) in &config.connectors {
        let field = format!("connectors.{name}.jobs.queue");
        if let Some(queue) = &connector.jobs.queue {
            checks.name(&field, queue, "queue");
            if connector.role != super::Role::Handler {
                checks.error(
                    &field,
                    format!(
                        "only handlers run jobs; this connector is a {}",
                        connector.role
                    ),
                );
                continue;
            }
        }
        for (index, topic) in connector.jobs.events.iter().enumerate() {
            let field = format!("connectors.{name}.jobs.events[{index}]");
            checks.name(&field, topic, "topic");
            if connector.role != super::Role::Handler {
                checks.error(
                    &field,
                    format!(
                        "only handlers take events as jobs; this connector is a {}",
                        connector.role
                    ),
                );
            }
        }
        if connector.role != super::Role::Handler {
            continue;
        }
        let queue = connector.job_queue(name);
        if let Some(first) = owners.get(&queue) {
            checks.error(
                &field,
                format!("queue '{queue}' is already the queue of connector '{first}'"),
            );
        } else {
            owners.insert(queue, name);
        }
    }
}

fn check_host(config: &Config, checks: &mut Checks) {
    let host = &config.host;
    checks.duration("host.claim_lease", host.claim_lease, CLAIM_LEASE);
    checks.count("host.claim_batch", host.claim_batch, CLAIM_BATCH);
    checks.duration("host.idle_poll", host.idle_poll, IDLE_POLL);
    checks.duration("host.shutdown_grace", host.shutdown_grace, SHUTDOWN_GRACE);
    // Read now, so an unset variable or a missing file is a config error.
    let token = match config.admin_token() {
        Ok(token) => token,
        Err(error) => {
            checks.error("host.admin_token", error);
            None
        }
    };
    if let Some(listen) = &host.admin_listen {
        match listen.parse::<std::net::SocketAddr>() {
            Err(_) => checks.error(
                "host.admin_listen",
                format!("{listen:?} is not an address like 127.0.0.1:7878"),
            ),
            Ok(addr)
                if !addr.ip().is_loopback()
                    && token.is_none()
                    && !checks.refused("host.admin_token") =>
            {
                checks.error(
                    "host.admin_listen",
                    format!(
                        "{listen} is reachable from other machines, so the admin API needs a \
                         token: set host.admin_token = {{ env = \"TSUNAGI_ADMIN_TOKEN\" }} (or \
                         {{ file = \"...\" }}), or listen on 127.0.0.1"
                    ),
                );
            }
            Ok(_) => {}
        }
    }
    if let Some(listen) = &host.inbound_listen {
        match listen.parse::<std::net::SocketAddr>() {
            Err(_) => checks.error(
                "host.inbound_listen",
                format!("{listen:?} is not an address like 0.0.0.0:8080"),
            ),
            Ok(addr) if host.admin_listen.as_deref().and_then(|a| a.parse().ok()) == Some(addr) => {
                checks.error(
                    "host.inbound_listen",
                    format!(
                        "{listen} is also host.admin_listen; the inbound listener needs a port \
                         of its own, since pingers must not reach the admin API"
                    ),
                );
            }
            Ok(_) => {}
        }
    }
    if let Some(public) = &host.inbound_url {
        let usable = url::Url::parse(public).ok().filter(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.query().is_none()
                && url.username().is_empty()
                && url.password().is_none()
        });
        if usable.is_none() {
            checks.error(
                "host.inbound_url",
                format!(
                    "{:?} is not an http(s) URL without query or credentials, like                      https://feeds.example.com",
                    crate::redact::url(public)
                ),
            );
        }
        if host.inbound_listen.is_none() {
            checks.error("host.inbound_url", "is set, but host.inbound_listen is not");
        }
    }
    for (index, name) in host.admin_hosts.iter().enumerate() {
        let valid = HOST_LENGTH.contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            checks.error(
                &format!("host.admin_hosts[{index}]"),
                format!("{name:?} is not a host name (letters, digits, '-' and '.')"),
            );
        }
    }
    if let Some(slots) = host.instance_slots {
        let needed = config
            .connectors
            .values()
            .map(|c| (c.concurrency as u64).saturating_mul(2))
            .fold(8, u64::saturating_add);
        if u64::from(slots) < needed || !INSTANCE_SLOTS.contains(&slots) {
            checks.error(
                "host.instance_slots",
                format!(
                    "must cover what the connectors need now ({needed}: 2 per unit of \
                     concurrency, plus 8) and be at most {}, not {slots}",
                    INSTANCE_SLOTS.end()
                ),
            );
        }
    }
}

/// Retention periods within their ranges, so none overflows the clock and a slip is refused
/// rather than emptying a store.
fn check_retention(config: &Config, checks: &mut Checks) {
    let host = &config.host;
    checks.duration("host.keep_done_jobs", host.keep_done_jobs, KEEP_DONE_JOBS);
    checks.duration(
        "host.retention_interval",
        host.retention_interval,
        RETENTION_INTERVAL,
    );
    checks.duration(
        "host.keep_forgotten_ids",
        host.keep_forgotten_ids,
        KEEP_FORGOTTEN_IDS,
    );
    checks.count(
        "host.max_forgotten_ids",
        host.max_forgotten_ids,
        MAX_FORGOTTEN_IDS,
    );
    for (name, connector) in &config.connectors {
        if let Some(keep) = connector.keep_items {
            checks.duration(&format!("connectors.{name}.keep_items"), keep, KEEP_ITEMS);
        }
        if let Some(count) = connector.keep_items_count {
            checks.count(
                &format!("connectors.{name}.keep_items_count"),
                count,
                KEEP_ITEMS_COUNT,
            );
        }
    }
}

fn check_connector(
    config: &Config,
    name: &str,
    connector: &ConnectorSettings,
    checks: &mut Checks,
) {
    let at = |field: &str| format!("connectors.{name}.{field}");
    checks.name(&format!("connectors.{name}"), name, "connector");
    if let Some(origin) = &connector.origin {
        checks.name(&at("origin"), origin, "origin");
    }
    checks.count(&at("concurrency"), connector.concurrency, CONCURRENCY);
    checks.count(
        &at("calls_per_instance"),
        connector.calls_per_instance,
        CALLS_PER_INSTANCE,
    );

    let schedule = &connector.schedule;
    let min_ok = checks.duration(
        &at("schedule.min_interval"),
        schedule.min_interval,
        POLL_INTERVAL,
    );
    let max_ok = checks.duration(
        &at("schedule.max_interval"),
        schedule.max_interval,
        POLL_INTERVAL,
    );
    if min_ok
        && max_ok
        && schedule.min_interval > schedule.max_interval
        && !checks.refused(&at("schedule.max_interval"))
    {
        checks.error(
            &at("schedule.min_interval"),
            "is longer than schedule.max_interval",
        );
    }

    let retry = &connector.retry;
    let first_ok = checks.duration(&at("retry.first_delay"), retry.first_delay, RETRY_DELAY);
    let max_ok = checks.duration(&at("retry.max_delay"), retry.max_delay, RETRY_DELAY);
    if first_ok
        && max_ok
        && retry.first_delay > retry.max_delay
        && !checks.refused(&at("retry.max_delay"))
    {
        checks.error(&at("retry.first_delay"), "is longer than retry.max_delay");
    }
    checks.number(&at("retry.multiplier"), retry.multiplier, RETRY_MULTIPLIER);
    checks.number(&at("retry.jitter"), retry.jitter, RETRY_JITTER);
    checks.count(&at("retry.max_failures"), retry.max_failures, MAX_FAILURES);

    let limits = &connector.limits;
    let call_timeout_ok = limits.check(&at("limits"), checks);
    // A call that outlives its target's lease lets another worker claim the target while the
    // first is still fetching it.
    let lease = config.host.claim_lease;
    if call_timeout_ok
        && CLAIM_LEASE.contains(&lease)
        && !checks.refused("host.claim_lease")
        && limits.call_timeout + LEASE_MARGIN > lease
    {
        checks.error(
            &at("limits.call_timeout"),
            format!(
                "must be at least {} shorter than host.claim_lease ({})",
                humantime::format_duration(LEASE_MARGIN),
                humantime::format_duration(lease)
            ),
        );
    }

    for (index, rule) in connector.egress.allow.iter().enumerate() {
        rule.check(&at(&format!("egress.allow[{index}]")), checks);
    }
    for sink in &connector.sinks {
        if !config.sinks.contains_key(sink) && !checks.refused(&format!("sinks.{sink}")) {
            checks.error(&at("sinks"), format!("no [sinks.{sink}] is defined"));
        }
    }
    check_config_values(&at("config"), &connector.config, checks);
    // --- xread: item filters ---
    let filters = &connector.filters;
    for (field, list) in [
        ("filters.drop_categories", &filters.drop_categories),
        ("filters.drop_hashtags", &filters.drop_hashtags),
    ] {
        checks.count(&at(field), list.len(), 0..=crate::filter::MAX_LIST_ENTRIES);
        if list
            .iter()
            .any(|entry| entry.trim().trim_start_matches('#').is_empty())
        {
            checks.error(&at(field), "has an empty entry");
        }
    }
    checks.count(
        &at("pause_on_problem"),
        connector.pause_on_problem.len(),
        0..=MAX_PAUSE_PROBLEMS,
    );
    if connector
        .pause_on_problem
        .iter()
        .any(|problem| problem.trim().is_empty() || problem.len() > MAX_PROBLEM_TYPE_BYTES)
    {
        checks.error(
            &at("pause_on_problem"),
            format!(
                "has an empty entry or one longer than {} bytes",
                MAX_PROBLEM_TYPE_BYTES
            ),
        );
    }
    if let Some(pause) = connector.pause_for {
        checks.duration(&at("pause_for"), pause, PAUSE_FOR);
    }
    // --- end xread ---
    if connector.websub {
        check_websub(config, &at("websub"), connector, checks);
    }
}

/// `websub = true` needs a poller and an inbound listener that hubs can reach.
fn check_websub(config: &Config, at: &str, connector: &ConnectorSettings, checks: &mut Checks) {
    let host = &config.host;
    if connector.role != Role::Poller {
        checks.error(
            at,
            "WebSub pushes to pollers only; this connector is not one",
        );
    }
    let Some(listen) = &host.inbound_listen else {
        checks.error(
            at,
            "needs host.inbound_listen: hubs deliver to the inbound listener",
        );
        return;
    };
    let unspecified = listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|addr| addr.ip().is_unspecified());
    if unspecified && host.inbound_url.is_none() {
        checks.error(
            at,
            format!(
                "host.inbound_listen {listen} is no address a hub can call back; set                  host.inbound_url to the public URL of the listener"
            ),
        );
    }
}

/// A plugin's `config` values (a connector's, or a cassette's) are what its `config` import
/// can answer: strings, numbers and booleans.
pub(crate) fn check_config_values(
    at: &str,
    values: &std::collections::BTreeMap<String, toml::Value>,
    checks: &mut Checks,
) {
    for (key, value) in values {
        if super::config_value_text(value).is_none() {
            checks.error(
                &format!("{at}.{key}"),
                "must be a string, number or boolean",
            );
        }
    }
}

impl LimitSettings {
    /// Checks the limits at `at` (`connectors.NAME.limits`, or a cassette's `limits`); false
    /// when `call_timeout` is out of range.
    pub(crate) fn check(&self, at: &str, checks: &mut Checks) -> bool {
        let field = |name: &str| format!("{at}.{name}");
        checks.bytes(&field("memory"), self.memory, MEMORY);
        checks.bytes(&field("response_size"), self.response_size, RESPONSE_SIZE);
        let mut call_timeout_ok = true;
        for (name, value) in [
            ("call_timeout", self.call_timeout),
            ("connect_timeout", self.connect_timeout),
            ("first_byte_timeout", self.first_byte_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            let ok = checks.duration(&field(name), value, TIMEOUT);
            if name == "call_timeout" {
                call_timeout_ok = ok && !checks.refused(&field(name));
            }
        }
        // What a plugin can make the host hold outside its memory.
        let parent = at.strip_suffix(".limits").unwrap_or(at);
        super::limits::check(self, &|name: &str| format!("{parent}.{name}"), checks);
        call_timeout_ok
    }
}

impl AllowRule {
    /// Checks one allowlist entry at `at` (`connectors.NAME.egress.allow[i]`, a cassette's
    /// `allow[i]`).
    pub(crate) fn check(&self, at: &str, checks: &mut Checks) {
        let field = |name: &str| format!("{at}.{name}");
        if let Some(scheme) = &self.scheme
            && scheme != "http"
            && scheme != "https"
        {
            checks.error(
                &field("scheme"),
                format!("{scheme:?} is not \"http\" or \"https\""),
            );
        }
        if self.host.is_empty() {
            checks.error(&field("host"), "must not be empty");
        } else if !HOST_LENGTH.contains(&self.host.len()) {
            checks.error(
                &field("host"),
                format!(
                    "is {} characters long; a host name has at most {}",
                    self.host.len(),
                    HOST_LENGTH.end()
                ),
            );
        }
        if let Some(port) = self.port {
            checks.count(&field("port"), port, PORT);
        }
    }
}

fn check_sink(name: &str, sink: &SinkSettings, checks: &mut Checks) {
    let at = |field: &str| format!("sinks.{name}.{field}");
    checks.name(&format!("sinks.{name}"), name, "sink");
    if let SinkSettings::Webhook {
        url,
        max_attempts,
        timeout,
        ..
    } = sink
    {
        match url::Url::parse(url) {
            Err(e) => checks.error(&at("url"), e),
            Ok(parsed) if parsed.scheme() != "http" && parsed.scheme() != "https" => {
                checks.error(&at("url"), "must be an http or https URL");
            }
            Ok(_) => {}
        }
        checks.count(&at("max_attempts"), *max_attempts, WEBHOOK_ATTEMPTS);
        checks.duration(&at("timeout"), *timeout, TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_ordered_and_timeouts_fit_inside_the_longest_lease() {
        assert!(CLAIM_LEASE.start() < CLAIM_LEASE.end());
        assert!(*TIMEOUT.end() + LEASE_MARGIN <= *CLAIM_LEASE.end());
        // The engine sizes its pool at twice the summed concurrency in a u32.
        assert!(u32::try_from(2 * CONCURRENCY.end()).is_ok());
    }
}
