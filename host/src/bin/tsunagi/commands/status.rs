//! `tsunagi status [--json]`: a running host's `/status` as terminal tables (connectors,
//! breakers, budgets, queues, cluster hosts, recent errors), or as the host's JSON. The view
//! reads only the fields it shows, so a newer host's additions do not break an older CLI;
//! `tsunagi top` draws the same tables live.

use super::reload::read_from_host;
use super::{ConfigArg, load_config};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi status --config config/tsunagi.toml
  tsunagi status --json
  tsunagi status --host 127.0.0.1:7878")]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The host's admin address (`host:port`); default: the config's `host.admin_listen`.
    #[arg(long)]
    pub host: Option<String>,
    /// Print the host's `/status` JSON as it came.
    #[arg(long)]
    pub json: bool,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    let text = read_from_host(&config, args.host.as_deref(), "/status").await?;
    if args.json {
        println!("{}", text.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    let view = StatusView::parse(&text)?;
    print!("{}", render_text(&view.sections(None)));
    Ok(ExitCode::SUCCESS)
}

/// The parts of `/status` the tables show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StatusView {
    pub worker_id: String,
    pub backend: String,
    pub started_at: String,
    pub now: String,
    pub connectors: Vec<ConnectorView>,
    pub sinks: Vec<SinkView>,
    pub budgets: BTreeMap<String, BudgetView>,
    pub breakers: BTreeMap<String, BreakerView>,
    pub cluster: Option<ClusterView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectorView {
    pub name: String,
    pub role: String,
    pub plugin: PluginView,
    pub targets: u64,
    pub targets_due: u64,
    pub in_flight: i64,
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub polls_deferred: u64,
    pub items_new: u64,
    pub latency: LatencyView,
    pub last_errors: Vec<ErrorView>,
    pub handler: Option<HandlerView>,
    pub paused: Option<PausedView>,
    pub upstream: UpstreamView,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PluginView {
    pub sha256: String,
    pub code: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LatencyView {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorView {
    pub target: String,
    pub error: String,
    pub at: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HandlerView {
    pub queue: String,
    pub paused: bool,
    pub counts: QueueCountsView,
    pub jobs: JobsView,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct QueueCountsView {
    pub queued: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobsView {
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PausedView {
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamView {
    pub responses: BTreeMap<String, u64>,
    pub unanswered: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SinkView {
    pub name: String,
    pub queue: QueueCountsView,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BudgetView {
    pub rate: String,
    pub per: String,
    pub waits: u64,
    pub waited_ms: u64,
    pub deferred: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BreakerView {
    pub state: String,
    pub probing: bool,
    pub window_calls: u64,
    pub failure_rate: f64,
    pub slow_rate: f64,
    pub rejected_total: u64,
    pub retry_at: Option<i64>,
    pub next_probe_at: Option<i64>,
    pub last_trip: Option<TripView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TripView {
    pub at: i64,
    pub cause: String,
    pub calls: u64,
    pub failures: u64,
    pub slow: u64,
    pub failure_rate: f64,
    pub slow_rate: f64,
    pub failure_rate_threshold: f64,
    pub slow_rate_threshold: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClusterView {
    pub revision: Option<u64>,
    pub hosts: Vec<MemberView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MemberView {
    pub worker_id: String,
    pub this_host: bool,
    pub behind: u64,
    pub heartbeat_age_ms: i64,
}

/// One table: a title, its column names, its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// Calls per second of each connector, from two reports a known time apart (`tsunagi top`).
pub type Rates = BTreeMap<String, f64>;

impl ConnectorView {
    /// Calls that ended well and badly: jobs done and failed (retried or dead) for a handler,
    /// polls otherwise.
    pub fn outcomes(&self) -> (u64, u64) {
        match &self.handler {
            Some(handler) => (handler.jobs.done, handler.jobs.failed + handler.jobs.dead),
            None => (self.polls_ok, self.polls_failed),
        }
    }
}

impl StatusView {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        serde_json::from_str(text).map_err(|error| {
            anyhow::anyhow!("the host's /status is not what this CLI reads: {error}")
        })
    }

    /// When the report was made, in ms since the epoch (0 if the host did not say).
    fn now_ms(&self) -> i64 {
        humantime::parse_rfc3339(&self.now)
            .ok()
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            })
    }

    /// The host's title line.
    pub fn title(&self) -> String {
        format!(
            "host {} · {} · up since {} · {}",
            self.worker_id, self.backend, self.started_at, self.now
        )
    }

    /// The tables, with each connector's rate when `rates` has it.
    pub fn sections(&self, rates: Option<&Rates>) -> Vec<Section> {
        let now = self.now_ms();
        let mut sections = vec![Section {
            title: self.title(),
            header: vec![
                "CONNECTOR",
                "ROLE",
                "CODE",
                "TARGETS",
                "DUE",
                "RUNNING",
                "OK",
                "FAILED",
                "HELD",
                "NEW ITEMS",
                "CALLS/S",
                "P50 MS",
                "P99 MS",
                "UPSTREAM",
                "STATE",
            ],
            rows: self
                .connectors
                .iter()
                .map(|c| {
                    let (ok, failed) = c.outcomes();
                    vec![
                        c.name.clone(),
                        c.role.clone(),
                        c.plugin.code.clone(),
                        c.targets.to_string(),
                        c.targets_due.to_string(),
                        c.in_flight.to_string(),
                        ok.to_string(),
                        failed.to_string(),
                        c.polls_deferred.to_string(),
                        c.items_new.to_string(),
                        rates
                            .and_then(|rates| rates.get(&c.name))
                            .map_or_else(|| "-".to_string(), |rate| format!("{rate:.1}")),
                        format!("{:.1}", c.latency.p50_ms),
                        format!("{:.1}", c.latency.p99_ms),
                        upstream_summary(&c.upstream),
                        match &c.paused {
                            Some(paused) => format!("paused: {}", paused.reason),
                            None => "serving".to_string(),
                        },
                    ]
                })
                .collect(),
        }];
        if !self.breakers.is_empty() {
            sections.push(Section {
                title: "breakers".into(),
                header: vec![
                    "BREAKER",
                    "STATE",
                    "WINDOW",
                    "REJECTED",
                    "LAST OPENED",
                    "NEXT",
                ],
                rows: self
                    .breakers
                    .iter()
                    .map(|(name, b)| {
                        vec![
                            name.clone(),
                            b.state.replace('_', "-"),
                            format!(
                                "{} calls, {:.0}% failed, {:.0}% slow",
                                b.window_calls, b.failure_rate, b.slow_rate
                            ),
                            b.rejected_total.to_string(),
                            b.last_trip.as_ref().map_or_else(
                                || "never".to_string(),
                                |trip| explain_trip(trip, now),
                            ),
                            next_attempt(b, now),
                        ]
                    })
                    .collect(),
            });
        }
        if !self.budgets.is_empty() {
            sections.push(Section {
                title: "budgets".into(),
                header: vec!["BUDGET", "RATE", "PER", "WAITS", "WAITED S", "DEFERRED"],
                rows: self
                    .budgets
                    .iter()
                    .map(|(name, b)| {
                        vec![
                            name.clone(),
                            b.rate.clone(),
                            b.per.clone(),
                            b.waits.to_string(),
                            format!("{:.1}", b.waited_ms as f64 / 1000.0),
                            b.deferred.to_string(),
                        ]
                    })
                    .collect(),
            });
        }
        let mut queues: Vec<Vec<String>> = self
            .connectors
            .iter()
            .filter_map(|c| c.handler.as_ref())
            .map(|h| queue_row(&h.queue, &h.counts, h.paused))
            .collect();
        queues.extend(
            self.sinks
                .iter()
                .map(|s| queue_row(&s.name, &s.queue, false)),
        );
        if !queues.is_empty() {
            sections.push(Section {
                title: "queues".into(),
                header: vec!["QUEUE", "QUEUED", "LEASED", "DONE", "DEAD", "PAUSED"],
                rows: queues,
            });
        }
        if let Some(cluster) = &self.cluster {
            sections.push(Section {
                title: format!(
                    "cluster (revision {})",
                    cluster
                        .revision
                        .map_or_else(|| "?".into(), |r| r.to_string())
                ),
                header: vec!["HOST", "BEHIND", "HEARTBEAT MS", ""],
                rows: cluster
                    .hosts
                    .iter()
                    .map(|host| {
                        vec![
                            host.worker_id.clone(),
                            host.behind.to_string(),
                            host.heartbeat_age_ms.to_string(),
                            if host.this_host { "this host" } else { "" }.to_string(),
                        ]
                    })
                    .collect(),
            });
        }
        let mut errors: Vec<(&str, &ErrorView)> = self
            .connectors
            .iter()
            .flat_map(|c| c.last_errors.iter().map(move |e| (c.name.as_str(), e)))
            .collect();
        errors.sort_by_key(|(_, e)| std::cmp::Reverse(e.at));
        if !errors.is_empty() {
            sections.push(Section {
                title: "recent errors".into(),
                header: vec!["CONNECTOR", "AGO", "TARGET", "ERROR"],
                rows: errors
                    .iter()
                    .take(RECENT_ERRORS_SHOWN)
                    .map(|(connector, e)| {
                        vec![
                            connector.to_string(),
                            ago(e.at, now),
                            e.target.clone(),
                            e.error.clone(),
                        ]
                    })
                    .collect(),
            });
        }
        sections
    }
}

/// How many recent errors the tables show (newest first, across connectors).
const RECENT_ERRORS_SHOWN: usize = 5;

fn queue_row(name: &str, counts: &QueueCountsView, paused: bool) -> Vec<String> {
    vec![
        name.to_string(),
        counts.queued.to_string(),
        counts.leased.to_string(),
        counts.done.to_string(),
        counts.dead.to_string(),
        if paused { "yes" } else { "no" }.to_string(),
    ]
}

/// `200×950 503×12 none×3`, most frequent first, at most four codes.
fn upstream_summary(upstream: &UpstreamView) -> String {
    let mut codes: Vec<(&String, &u64)> = upstream.responses.iter().collect();
    codes.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    let mut parts: Vec<String> = codes
        .iter()
        .take(4)
        .map(|(code, n)| format!("{code}×{n}"))
        .collect();
    if upstream.unanswered > 0 {
        parts.push(format!("none×{}", upstream.unanswered));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" ")
    }
}

/// Why a breaker opened, in words: `12 s ago: 6 of 10 calls failed (60% ≥ 50%)`.
pub fn explain_trip(trip: &TripView, now: i64) -> String {
    let why = match trip.cause.as_str() {
        "failure_rate" => format!(
            "{} of {} calls failed ({:.0}% ≥ {:.0}%)",
            trip.failures, trip.calls, trip.failure_rate, trip.failure_rate_threshold
        ),
        "slow_call_rate" => format!(
            "{} of {} calls slow ({:.0}% ≥ {:.0}%)",
            trip.slow, trip.calls, trip.slow_rate, trip.slow_rate_threshold
        ),
        "trial_calls" => format!(
            "trial calls: {} of {} failed, {} slow",
            trip.failures, trip.calls, trip.slow
        ),
        "trial_deadline" => "trial calls did not report in time".to_string(),
        other => other.to_string(),
    };
    format!("{}: {why}", ago(trip.at, now))
}

/// When an open breaker next lets something through.
fn next_attempt(breaker: &BreakerView, now: i64) -> String {
    if breaker.state != "open" {
        return "-".to_string();
    }
    match (breaker.probing, breaker.retry_at, breaker.next_probe_at) {
        (true, _, Some(at)) => format!("probe {}", from_now(at, now)),
        (true, _, None) => "probe soon".to_string(),
        (false, Some(at), _) => format!("trial call {}", from_now(at, now)),
        (false, None, _) => "-".to_string(),
    }
}

fn ago(at: i64, now: i64) -> String {
    format!("{} ago", span(now.saturating_sub(at)))
}

fn from_now(at: i64, now: i64) -> String {
    let wait = at.saturating_sub(now);
    if wait <= 0 {
        "now".to_string()
    } else if wait < 1000 {
        "in under 1 s".to_string()
    } else {
        format!("in {}", span(wait))
    }
}

fn span(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        0..=99 => format!("{seconds} s"),
        100..=5999 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    }
}

/// The sections as aligned plain text (columns padded to their widest cell).
pub fn render_text(sections: &[Section]) -> String {
    let mut out = String::new();
    for (index, section) in sections.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&section.title);
        out.push('\n');
        if section.rows.is_empty() {
            out.push_str("  (none)\n");
            continue;
        }
        let columns = section.header.len();
        let mut widths: Vec<usize> = section.header.iter().map(|h| h.chars().count()).collect();
        for row in &section.rows {
            for (column, cell) in row.iter().enumerate().take(columns) {
                widths[column] = widths[column].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        out.push_str(&line(section.header.clone()));
        for row in &section.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tripped_breaker_says_why_and_when_it_lets_a_call_through() {
        let now_text = "2026-12-07T10:00:30Z";
        let now = humantime::parse_rfc3339(now_text)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let json = serde_json::json!({
            "worker_id": "w-1", "backend": "sqlite", "now": now_text,
            "connectors": [{"name": "shop", "role": "searcher", "plugin": {"code": "optimized"},
                "upstream": {"responses": {"200": 7, "503": 9}, "unanswered": 1},
                "last_errors": [{"target": "t1", "error": "HTTP 503", "at": now - 2000}]}],
            "breakers": {"shop": {"state": "open", "window_calls": 0, "retry_at": now + 12_000,
                "last_trip": {"at": now - 5000, "cause": "failure_rate", "calls": 10,
                    "failures": 6, "failure_rate": 60.0, "failure_rate_threshold": 50.0}}},
            "unknown_new_field": true,
        });
        let view = StatusView::parse(&json.to_string()).expect("parses");
        let text = render_text(&view.sections(None));
        assert!(
            text.contains("5 s ago: 6 of 10 calls failed (60% ≥ 50%)"),
            "{text}"
        );
        assert!(text.contains("trial call in 12 s"), "{text}");
        assert!(text.contains("503×9 200×7 none×1"), "{text}");
        assert!(text.contains("2 s ago  t1      HTTP 503"), "{text}");
    }

    #[test]
    fn columns_line_up_under_their_header() {
        let text = render_text(&[Section {
            title: "t".into(),
            header: vec!["A", "LONG HEADER"],
            rows: vec![vec!["wide cell".into(), "x".into()]],
        }]);
        assert_eq!(text, "t\nA          LONG HEADER\nwide cell  x\n");
    }
}
