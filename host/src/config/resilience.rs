//! `[budgets.*]` and `[breakers.*]`: the named protections that egress allow rules refer to.
//!
//! A budget is a rate limit (GCRA with burst) shared by every request whose allow rule names
//! it, across connectors. A breaker guards one upstream; its optional probe is a request the
//! host sends on its own schedule to learn when a broken upstream has recovered.

use super::validate::{
    BREAKER_CALLS, BREAKER_WAIT, BUDGET_BURST, BUDGET_IN_FLIGHT, BUDGET_PERIOD, Checks,
    EXPECT_STATUSES, HALF_OPEN_CALLS, HTTP_STATUS, PERCENT, SUCCESSES_TO_CLOSE, TIMEOUT,
};
use serde::Deserialize;
use std::time::Duration;
use tsunagi_backends::breaker::{BreakerPolicy, Window};
use tsunagi_backends::ratelimit::{Quota, QuotaError};

/// `[budgets.NAME]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// Requests per period: `1/s`, `900/15min`, `100/h`, `2/500ms`.
    pub rate: String,
    /// Requests that may go at once after a quiet spell (1 = evenly spaced).
    #[serde(default)]
    pub burst: Option<u32>,
    /// `shared` (one budget for everything that names it), `target` (one per target, as an
    /// API that limits each user's token separately) or `host` (one per upstream host, keyed
    /// by its registrable domain: the tens of thousands of feeds one blog service hosts share
    /// one, and a 429 from it slows it alone).
    #[serde(default)]
    pub per: BudgetScope,
    /// Requests under the budget (per its `per`: in all, per target, or per host) that may be
    /// in flight at once, from the send until the response is read; none: no cap.
    #[serde(default)]
    pub in_flight: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    #[default]
    Shared,
    Target,
    Host,
}

impl BudgetSettings {
    pub fn quota(&self) -> Result<Quota, QuotaError> {
        Quota::parse(&self.rate, self.burst)
    }
}

/// `[breakers.NAME]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// `"20 calls"` (the last 20 outcomes) or a duration like `"60s"` (the outcomes of the last
    /// minute).
    #[serde(default = "default_window")]
    pub window: String,
    /// Percent of failed calls in the window that opens the breaker.
    #[serde(default = "default_failure_rate")]
    pub failure_rate: f64,
    /// Percent of slow calls in the window that opens the breaker.
    #[serde(default = "default_slow_call_rate")]
    pub slow_call_rate: f64,
    /// A call taking at least this long is slow.
    #[serde(default = "default_slow_call", with = "humantime_serde")]
    pub slow_call: Duration,
    /// Calls the window must hold before its rates count.
    #[serde(default = "default_minimum_calls")]
    pub minimum_calls: u32,
    /// Without a probe: how long the breaker stays open before trial calls test the upstream.
    #[serde(default = "default_open_wait", with = "humantime_serde")]
    pub open_wait: Duration,
    /// Trial calls in half-open.
    #[serde(default = "default_half_open_calls")]
    pub half_open_calls: u32,
    /// Half-open opens again if its trial calls have not all answered within this.
    #[serde(default = "default_half_open_max_wait", with = "humantime_serde")]
    pub half_open_max_wait: Duration,
    #[serde(default)]
    pub probe: Option<ProbeSettings>,
}

/// `[breakers.NAME.probe]`: while the breaker is open, only these results close it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// A cheap GET on the upstream (a health or status endpoint).
    pub url: String,
    /// Time between probes (the probe runs whatever the breaker's state).
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A probe not answered within this has failed.
    #[serde(default = "default_probe_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Successful probes in a row that close an open breaker.
    #[serde(default = "default_successes_to_close")]
    pub successes_to_close: u32,
    /// Statuses that count as healthy; any 2xx when absent.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

impl ProbeSettings {
    pub fn healthy(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }
}

fn default_window() -> String {
    "20 calls".to_string()
}
fn default_failure_rate() -> f64 {
    50.0
}
fn default_slow_call_rate() -> f64 {
    100.0
}
fn default_slow_call() -> Duration {
    Duration::from_secs(30)
}
fn default_minimum_calls() -> u32 {
    10
}
fn default_open_wait() -> Duration {
    Duration::from_secs(60)
}
fn default_half_open_calls() -> u32 {
    3
}
fn default_half_open_max_wait() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_successes_to_close() -> u32 {
    1
}

impl BreakerSettings {
    /// The state machine's settings. Errors name the field at fault.
    pub fn settings(&self) -> Result<BreakerPolicy, (&'static str, String)> {
        let window = parse_window(&self.window).map_err(|message| ("window", message))?;
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let settings = BreakerPolicy {
            window,
            failure_rate_percent: self.failure_rate,
            slow_call_rate_percent: self.slow_call_rate,
            slow_call_ms: millis(self.slow_call),
            minimum_calls: self.minimum_calls,
            open_wait_ms: millis(self.open_wait),
            half_open_calls: self.half_open_calls,
            half_open_max_wait_ms: millis(self.half_open_max_wait),
            probe_successes_to_close: self
                .probe
                .as_ref()
                .map_or(1, |probe| probe.successes_to_close),
        };
        settings
            .validate()
            .map_err(|e| ("(breaker)", e.to_string()))?;
        Ok(settings)
    }
}

fn parse_window(text: &str) -> Result<Window, String> {
    let trimmed = text.trim();
    if let Some(count) = trimmed
        .strip_suffix("calls")
        .or_else(|| trimmed.strip_suffix("call"))
    {
        return count
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .map(Window::Count)
            .ok_or_else(|| format!("{text:?}: expected a number of calls, like \"20 calls\""));
    }
    let duration = humantime::parse_duration(trimmed).map_err(|e| {
        format!("{text:?} is neither \"N calls\" nor a duration like \"60s\" ({e})")
    })?;
    let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    if ms <= 0 {
        return Err(format!("{text:?}: a time window must be longer than 0s"));
    }
    Ok(Window::Time { ms })
}

/// Checks the `[budgets]` and `[breakers]` tables, and the allow rules that name them.
pub(super) fn validate(config: &super::Config, checks: &mut Checks) {
    for (name, budget) in &config.budgets {
        let at = |field: &str| format!("budgets.{name}.{field}");
        checks.name(&format!("budgets.{name}"), name, "budget");
        let burst_ok = budget
            .burst
            .is_none_or(|burst| checks.count(&at("burst"), burst, BUDGET_BURST));
        if let Some(in_flight) = budget.in_flight {
            checks.count(&at("in_flight"), in_flight, BUDGET_IN_FLIGHT);
        }
        match budget.quota() {
            Err(e) if burst_ok => checks.error(&at("rate"), e),
            Err(_) => {}
            Ok(quota) => {
                let period = Duration::from_millis(u64::try_from(quota.per_ms).unwrap_or(u64::MAX));
                if !BUDGET_PERIOD.contains(&period) {
                    checks.error(
                        &at("rate"),
                        format!(
                            "{:?}: the period must be between {} and {}",
                            budget.rate,
                            humantime::format_duration(*BUDGET_PERIOD.start()),
                            humantime::format_duration(*BUDGET_PERIOD.end())
                        ),
                    );
                }
            }
        }
    }
    for (name, breaker) in &config.breakers {
        check_breaker(name, breaker, checks);
    }
    for (connector_name, connector) in &config.connectors {
        for (index, rule) in connector.egress.allow.iter().enumerate() {
            let at =
                |field: &str| format!("connectors.{connector_name}.egress.allow[{index}].{field}");
            for budget in &rule.budget {
                if !config.budgets.contains_key(budget)
                    && !checks.refused(&format!("budgets.{budget}"))
                {
                    checks.error(&at("budget"), format!("no [budgets.{budget}] is defined"));
                }
            }
            if let Some(breaker) = &rule.breaker
                && !config.breakers.contains_key(breaker)
                && !checks.refused(&format!("breakers.{breaker}"))
            {
                checks.error(
                    &at("breaker"),
                    format!("no [breakers.{breaker}] is defined"),
                );
            }
        }
    }
}

fn check_breaker(name: &str, breaker: &BreakerSettings, checks: &mut Checks) {
    let at = |field: &str| format!("breakers.{name}.{field}");
    checks.name(&format!("breakers.{name}"), name, "breaker");
    let mut ok = true;
    match parse_window(&breaker.window) {
        Err(message) => {
            checks.error(&at("window"), message);
            ok = false;
        }
        Ok(Window::Count(count)) => {
            ok &= checks.count(&at("window"), count, BREAKER_CALLS);
        }
        Ok(Window::Time { ms }) => {
            let window = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
            ok &= checks.duration(&at("window"), window, BREAKER_WAIT);
        }
    }
    ok &= checks.number(&at("failure_rate"), breaker.failure_rate, PERCENT);
    ok &= checks.number(&at("slow_call_rate"), breaker.slow_call_rate, PERCENT);
    ok &= checks.duration(&at("slow_call"), breaker.slow_call, TIMEOUT);
    ok &= checks.count(&at("minimum_calls"), breaker.minimum_calls, BREAKER_CALLS);
    ok &= checks.duration(&at("open_wait"), breaker.open_wait, BREAKER_WAIT);
    ok &= checks.count(
        &at("half_open_calls"),
        breaker.half_open_calls,
        HALF_OPEN_CALLS,
    );
    ok &= checks.duration(
        &at("half_open_max_wait"),
        breaker.half_open_max_wait,
        BREAKER_WAIT,
    );
    if let Some(probe) = &breaker.probe {
        let at = |field: &str| format!("breakers.{name}.probe.{field}");
        match url::Url::parse(&probe.url) {
            Err(e) => checks.error(&at("url"), e),
            Ok(url) if url.scheme() != "http" && url.scheme() != "https" => {
                checks.error(&at("url"), "must be an http or https URL");
            }
            Ok(_) => {}
        }
        checks.duration(&at("interval"), probe.interval, TIMEOUT);
        checks.duration(&at("timeout"), probe.timeout, TIMEOUT);
        ok &= checks.count(
            &at("successes_to_close"),
            probe.successes_to_close,
            SUCCESSES_TO_CLOSE,
        );
        if probe.expect_status.len() > EXPECT_STATUSES {
            checks.error(
                &at("expect_status"),
                format!(
                    "lists {} statuses; at most {EXPECT_STATUSES}",
                    probe.expect_status.len()
                ),
            );
        }
        for (index, status) in probe.expect_status.iter().enumerate() {
            checks.count(
                &at(&format!("expect_status[{index}]")),
                *status,
                HTTP_STATUS,
            );
        }
    }
    // What is left for the state machine to refuse relates fields to each other (a minimum of
    // calls larger than the window, a rate of 0%).
    if ok
        && !checks.refused(&format!("breakers.{name}"))
        && let Err((field, message)) = breaker.settings()
    {
        let field = if field == "(breaker)" {
            format!("breakers.{name}")
        } else {
            at(field)
        };
        checks.error(&field, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Config;
    use std::path::Path;

    fn error_of(text: &str) -> String {
        Config::parse(text, Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let base = "[connectors.rss]\nplugin = \"p.wasm\"\nrole = \"poller\"\n";
        let unknown_budget = format!(
            "{base}[[connectors.rss.egress.allow]]\nhost = \"a.example\"\nbudget = \"shop\"\n"
        );
        let error = error_of(&unknown_budget);
        assert!(
            error.starts_with("t.toml:6:")
                && error.contains("connectors.rss.egress.allow[0].budget: no [budgets.shop]"),
            "{error}"
        );
        let two_budgets = format!(
            "{base}[[connectors.rss.egress.allow]]\nhost = \"a.example\"\n\
             budget = [\"app\", \"users\"]\n[budgets.app]\nrate = \"1/s\"\n"
        );
        let error = error_of(&two_budgets);
        assert!(
            error.starts_with("t.toml:6:")
                && error.contains("allow[0].budget: no [budgets.users]")
                && !error.contains("[budgets.app]"),
            "{error}"
        );
        let both_declared =
            format!("{two_budgets}[budgets.users]\nrate = \"1/min\"\nper = \"target\"\n");
        let config = Config::parse(&both_declared, Path::new("t.toml")).unwrap();
        assert_eq!(
            config.connectors["rss"].egress.allow[0].budget,
            ["app".to_string(), "users".to_string()]
        );
        let bad_rate = "[budgets.shop]\nrate = \"fast\"\n";
        let error = error_of(bad_rate);
        assert!(
            error.starts_with("t.toml:2:") && error.contains("budgets.shop.rate"),
            "{error}"
        );
        let bad_window = "[breakers.shop]\nwindow = \"soon\"\n";
        let error = error_of(bad_window);
        assert!(
            error.contains("t.toml:2:") && error.contains("breakers.shop.window"),
            "{error}"
        );
        let bad_probe = "[breakers.shop.probe]\nurl = \"ftp://x\"\n";
        assert!(error_of(bad_probe).contains("breakers.shop.probe.url: must be an http"));
    }

    #[test]
    fn windows_are_calls_or_durations() {
        assert_eq!(parse_window("20 calls"), Ok(Window::Count(20)));
        assert_eq!(parse_window("1 call"), Ok(Window::Count(1)));
        assert_eq!(parse_window("60s"), Ok(Window::Time { ms: 60_000 }));
        assert!(parse_window("0 calls").is_err());
        assert!(parse_window("soon").unwrap_err().contains("neither"));
    }
}
