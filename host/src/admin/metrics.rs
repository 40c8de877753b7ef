//! `GET /metrics`: the host in the Prometheus text format (0.0.4), for Prometheus to scrape.
//!
//! Each scrape encodes one [`StatusReport`], the picture `/status` gives, so the two never
//! disagree and nothing is counted twice. Counters run from the host's start. Names follow
//! Prometheus's conventions (`tsunagi_…_total`, `_seconds`, `_bytes`, ratios 0–1); every label
//! value comes from a bounded set — connector, queue, budget, breaker and table names from the
//! config, status codes, outcomes, cluster hosts — and never from a URL or a target.

use crate::stats::Distribution;
use crate::topology::StatusReport;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The report as Prometheus text.
pub fn render(report: StatusReport) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("tsunagi");
    registry.register_collector(Box::new(Snapshot(report)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// One scrape's report, encoded when the registry asks.
#[derive(Debug)]
struct Snapshot(StatusReport);

type Labels = Vec<(&'static str, String)>;

/// One sample's value.
enum Value<'a> {
    Counter(f64),
    Gauge(f64),
    Histogram(&'a Distribution),
    Info,
}

/// Writes one metric family: its name, help, unit and type once, then every sample.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: impl IntoIterator<Item = (Labels, Value<'a>)>,
) -> fmt::Result {
    let samples: Vec<_> = samples.into_iter().collect();
    let Some((_, first)) = samples.first() else {
        return Ok(());
    };
    let kind = match first {
        Value::Counter(_) => MetricType::Counter,
        Value::Gauge(_) => MetricType::Gauge,
        Value::Histogram(_) => MetricType::Histogram,
        Value::Info => MetricType::Info,
    };
    let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
    for (labels, value) in &samples {
        let mut sample = metric.encode_family(labels)?;
        match value {
            Value::Counter(v) => sample.encode_counter::<NoLabelSet, _, f64>(v, None)?,
            Value::Gauge(v) => sample.encode_gauge(v)?,
            Value::Histogram(d) => {
                sample.encode_histogram::<NoLabelSet>(d.sum_seconds, d.count, &d.buckets, None)?
            }
            // The info metric's labels are the family's; it adds none.
            Value::Info => sample.encode_info(&Labels::new())?,
        }
    }
    Ok(())
}

fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

fn with(mut labels: Labels, name: &'static str, value: impl Into<String>) -> Labels {
    labels.push((name, value.into()));
    labels
}

fn count(v: u64) -> Value<'static> {
    Value::Counter(v as f64)
}

fn gauge(v: impl Into<f64>) -> Value<'static> {
    Value::Gauge(v.into())
}

fn seconds(ms: i64) -> Value<'static> {
    Value::Gauge(ms as f64 / 1000.0)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let report = &self.0;
        let e = &mut encoder;
        family(
            e,
            "host",
            "This host: its worker id and where its targets live.",
            None,
            [(
                vec![
                    ("worker_id", report.worker_id.clone()),
                    ("backend", report.backend.to_string()),
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                ],
                Value::Info,
            )],
        )?;
        connectors(e, report)?;
        queues(e, report)?;
        breakers(e, report)?;
        budgets(e, report)?;
        family(
            e,
            "reloads",
            "Reload results by connector and outcome.",
            None,
            report.reload_counts.iter().map(|reload| {
                (
                    with(
                        label("connector", &reload.connector),
                        "outcome",
                        reload.outcome,
                    ),
                    count(reload.count),
                )
            }),
        )?;
        if let Some(storage) = &report.storage {
            family(
                e,
                "database",
                "Size of the database, as the last retention pass measured it.",
                Some(Unit::Bytes),
                [(Labels::new(), gauge(storage.stats.database_bytes as f64))],
            )?;
            family(
                e,
                "database_rows",
                "Rows per table, as the last retention pass counted them.",
                None,
                storage
                    .stats
                    .rows
                    .iter()
                    .map(|(table, rows)| (label("table", table), gauge(*rows as f64))),
            )?;
        }
        if let Some(inbound) = &report.inbound {
            family(
                e,
                "pings",
                "Update pings received, by outcome.",
                None,
                [
                    (label("outcome", "accepted"), count(inbound.pings_accepted)),
                    (label("outcome", "refused"), count(inbound.pings_refused)),
                ],
            )?;
        }
        if let Some(cluster) = &report.cluster {
            family(
                e,
                "cluster_hosts",
                "Live hosts of the cluster.",
                None,
                [(Labels::new(), gauge(cluster.hosts.len() as f64))],
            )?;
            family(
                e,
                "cluster_revisions_behind",
                "Revisions each live host has yet to apply.",
                None,
                cluster.hosts.iter().map(|host| {
                    (
                        label("worker_id", &host.card.worker_id),
                        gauge(host.behind as f64),
                    )
                }),
            )?;
        }
        Ok(())
    }
}

fn connectors(e: &mut DescriptorEncoder, report: &StatusReport) -> fmt::Result {
    let each = &report.connectors;
    let of = |name: &str| label("connector", name);
    family(
        e,
        "plugin",
        "The plugin version serving each connector: its sha256, whose code its instances run \
         and where that code came from.",
        None,
        each.iter().map(|c| {
            let labels = vec![
                ("connector", c.name.clone()),
                ("sha256", c.plugin.sha256.chars().take(12).collect()),
                ("code", tier_name(c.plugin.code).to_string()),
                ("code_from", origin_name(c.plugin.code_from).to_string()),
            ];
            (labels, Value::Info)
        }),
    )?;
    family(
        e,
        "plugin_size",
        "Size of the serving plugin's file.",
        Some(Unit::Bytes),
        each.iter()
            .map(|c| (of(&c.name), gauge(c.plugin.size as f64))),
    )?;
    family(
        e,
        "instances",
        "Plugin instances of the serving version: idle in the pool or serving a call.",
        None,
        each.iter().flat_map(|c| {
            [
                (
                    with(of(&c.name), "state", "idle"),
                    gauge(c.instances.idle as f64),
                ),
                (
                    with(of(&c.name), "state", "busy"),
                    gauge(c.instances.busy as f64),
                ),
            ]
        }),
    )?;
    family(
        e,
        "instance_memory",
        "Linear memory and tables the idle instances hold.",
        Some(Unit::Bytes),
        each.iter()
            .map(|c| (of(&c.name), gauge(c.instances.idle_memory_bytes as f64))),
    )?;
    family(
        e,
        "polls",
        "Polls that ended, by outcome (a poll put back is counted in calls_put_back).",
        None,
        each.iter().filter(|c| c.role == "poller").flat_map(|c| {
            [
                (
                    with(of(&c.name), "outcome", "ok"),
                    count(c.counters.polls_ok),
                ),
                (
                    with(of(&c.name), "outcome", "failed"),
                    count(c.counters.polls_failed),
                ),
            ]
        }),
    )?;
    family(
        e,
        "polls_not_modified",
        "Polls the upstream answered 304 Not Modified.",
        None,
        each.iter()
            .filter(|c| c.role == "poller")
            .map(|c| (of(&c.name), count(c.counters.not_modified))),
    )?;
    family(
        e,
        "calls_put_back",
        "Calls put back without counting against their target: held by a budget or an open \
         breaker, refused by the egress policy, or failed on the host's side.",
        None,
        each.iter().flat_map(|c| {
            [
                (
                    with(of(&c.name), "reason", "held"),
                    count(c.counters.polls_deferred),
                ),
                (
                    with(of(&c.name), "reason", "policy"),
                    count(c.counters.polls_refused),
                ),
                (
                    with(of(&c.name), "reason", "host"),
                    count(c.counters.host_failures),
                ),
            ]
        }),
    )?;
    family(
        e,
        "items",
        "Items the plugin returned (seen) and those stored as new.",
        None,
        each.iter().filter(|c| c.role == "poller").flat_map(|c| {
            [
                (
                    with(of(&c.name), "kind", "seen"),
                    count(c.counters.items_seen),
                ),
                (
                    with(of(&c.name), "kind", "new"),
                    count(c.counters.items_new),
                ),
            ]
        }),
    )?;
    family(
        e,
        "items_filtered",
        "Items the connector's filters dropped before storing, by filter.",
        None,
        each.iter().filter(|c| c.role == "poller").flat_map(|c| {
            let dropped = c.counters.items_filtered;
            [
                (
                    with(of(&c.name), "filter", "drop_categories"),
                    count(dropped.drop_categories),
                ),
                (
                    with(of(&c.name), "filter", "drop_hashtags"),
                    count(dropped.drop_hashtags),
                ),
                (
                    with(of(&c.name), "filter", "drop_matching"),
                    count(dropped.drop_matching),
                ),
            ]
        }),
    )?;
    family(
        e,
        "calls_in_flight",
        "Calls running now.",
        None,
        each.iter()
            .map(|c| (of(&c.name), gauge(c.counters.in_flight as f64))),
    )?;
    family(
        e,
        "call_duration",
        "From a claim handed to a worker to its outcome committed (a poll or a job).",
        Some(Unit::Seconds),
        each.iter()
            .map(|c| (of(&c.name), Value::Histogram(&c.distributions.calls))),
    )?;
    family(
        e,
        "targets",
        "Targets stored.",
        None,
        each.iter().map(|c| (of(&c.name), gauge(c.targets as f64))),
    )?;
    family(
        e,
        "targets_due",
        "Targets due now and not claimed: the connector's backlog.",
        None,
        each.iter()
            .map(|c| (of(&c.name), gauge(c.targets_due as f64))),
    )?;
    family(
        e,
        "targets_refused_by_policy",
        "Targets parked because the egress policy refused their call.",
        None,
        each.iter()
            .map(|c| (of(&c.name), gauge(c.targets_refused_by_policy as f64))),
    )?;
    family(
        e,
        "connector_paused",
        "1 while a problem answer (pause_on_problem) keeps the connector from calling out.",
        None,
        each.iter()
            .map(|c| (of(&c.name), gauge(u8::from(c.paused.is_some())))),
    )?;
    family(
        e,
        "jobs",
        "Handler job attempts, by how they ended.",
        None,
        each.iter()
            .filter_map(|c| c.handler.as_ref().map(|h| (c, h)))
            .flat_map(|(c, h)| {
                let jobs = h.jobs;
                [
                    ("done", jobs.done),
                    ("skipped", jobs.skipped),
                    ("failed", jobs.failed),
                    ("dead", jobs.dead),
                    ("deferred", jobs.deferred),
                ]
                .map(|(outcome, n)| (with(of(&c.name), "outcome", outcome), count(n)))
            }),
    )?;
    family(
        e,
        "upstream_responses",
        "Answers to the requests that went out, by HTTP status code.",
        None,
        each.iter().flat_map(|c| {
            c.upstream
                .counts
                .responses
                .iter()
                .map(|(code, n)| (with(of(&c.name), "code", code.to_string()), count(*n)))
        }),
    )?;
    family(
        e,
        "upstream_unanswered",
        "Requests sent that got no answer (timed out, reset, refused to connect, too large).",
        None,
        each.iter()
            .map(|c| (of(&c.name), count(c.upstream.counts.unanswered))),
    )?;
    family(
        e,
        "upstream_request_duration",
        "Each request that went out, from the send to the whole answer.",
        Some(Unit::Seconds),
        each.iter()
            .map(|c| (of(&c.name), Value::Histogram(&c.distributions.requests))),
    )?;
    family(
        e,
        "search_shop_answers",
        "Each shop's parts of product searches, by how they ended.",
        None,
        each.iter().filter(|c| c.role == "searcher").flat_map(|c| {
            c.searches
                .iter()
                .map(|(status, n)| (with(label("shop", &c.name), "status", *status), count(*n)))
        }),
    )
}

fn queues(e: &mut DescriptorEncoder, report: &StatusReport) -> fmt::Result {
    let handler_queues = report
        .connectors
        .iter()
        .filter_map(|c| c.handler.as_ref())
        .map(|h| (h.queue.as_str(), &h.counts));
    let sink_queues = report.sinks.iter().map(|s| (s.name.as_str(), &s.queue));
    let all: Vec<_> = handler_queues.chain(sink_queues).collect();
    family(
        e,
        "queue_jobs",
        "Jobs of each handler queue and sink, by state.",
        None,
        all.iter().flat_map(|(queue, counts)| {
            [
                ("queued", counts.queued),
                ("leased", counts.leased),
                ("done", counts.done),
                ("dead", counts.dead),
            ]
            .map(|(state, n)| {
                (
                    with(label("queue", *queue), "state", state),
                    gauge(n as f64),
                )
            })
        }),
    )?;
    family(
        e,
        "queue_paused",
        "1 while a handler queue is paused.",
        None,
        report
            .connectors
            .iter()
            .filter_map(|c| c.handler.as_ref())
            .map(|h| (label("queue", &h.queue), gauge(u8::from(h.paused)))),
    )
}

fn breakers(e: &mut DescriptorEncoder, report: &StatusReport) -> fmt::Result {
    let all = &report.resilience.breakers;
    let of = |name: &str| label("breaker", name);
    family(
        e,
        "breaker_state",
        "1 for the state each breaker is in, 0 for the others.",
        None,
        all.iter().flat_map(|(name, b)| {
            use tsunagi_backends::breaker::BreakerState::{Closed, HalfOpen, Open};
            [(Closed, "closed"), (Open, "open"), (HalfOpen, "half_open")].map(|(state, shown)| {
                (
                    with(of(name), "state", shown),
                    gauge(u8::from(b.state == state)),
                )
            })
        }),
    )?;
    family(
        e,
        "breaker_transitions",
        "State changes of each breaker.",
        None,
        all.iter().map(|(name, b)| (of(name), count(b.transitions))),
    )?;
    family(
        e,
        "breaker_calls",
        "Calls each breaker let through or rejected.",
        None,
        all.iter().flat_map(|(name, b)| {
            [
                (
                    with(of(name), "result", "permitted"),
                    count(b.permitted_total),
                ),
                (
                    with(of(name), "result", "rejected"),
                    count(b.rejected_total),
                ),
            ]
        }),
    )?;
    family(
        e,
        "breaker_bad_outcomes",
        "Failed and slow outcomes each breaker recorded.",
        None,
        all.iter().flat_map(|(name, b)| {
            [
                (with(of(name), "outcome", "failed"), count(b.failed_total)),
                (with(of(name), "outcome", "slow"), count(b.slow_total)),
            ]
        }),
    )?;
    family(
        e,
        "breaker_window_calls",
        "Calls in the window each breaker judges by now (empty while open).",
        None,
        all.iter()
            .map(|(name, b)| (of(name), gauge(b.window_calls as f64))),
    )?;
    family(
        e,
        "breaker_window_failure",
        "Share of the window's calls that failed.",
        Some(Unit::Other("ratio".into())),
        all.iter()
            .map(|(name, b)| (of(name), gauge(b.failure_rate / 100.0))),
    )?;
    family(
        e,
        "breaker_window_slow",
        "Share of the window's calls that were slow.",
        Some(Unit::Other("ratio".into())),
        all.iter()
            .map(|(name, b)| (of(name), gauge(b.slow_rate / 100.0))),
    )?;
    family(
        e,
        "breaker_last_trip_timestamp",
        "When each breaker last opened, and why (cause).",
        Some(Unit::Seconds),
        all.iter().filter_map(|(name, b)| {
            b.last_trip.map(|trip| {
                (
                    with(of(name), "cause", trip_cause(trip.cause)),
                    seconds(trip.at),
                )
            })
        }),
    )?;
    family(
        e,
        "breaker_last_trip_failure",
        "Share of failed calls in the window that last opened each breaker.",
        Some(Unit::Other("ratio".into())),
        all.iter().filter_map(|(name, b)| {
            b.last_trip
                .map(|trip| (of(name), gauge(trip.failure_rate / 100.0)))
        }),
    )?;
    family(
        e,
        "breaker_next_attempt_timestamp",
        "When an open breaker next lets a call (or its probe) through.",
        Some(Unit::Seconds),
        all.iter().filter_map(|(name, b)| {
            let next = if b.probing {
                b.next_probe_at
            } else {
                b.retry_at
            };
            next.filter(|_| b.state == tsunagi_backends::breaker::BreakerState::Open)
                .map(|at| (of(name), seconds(at)))
        }),
    )?;
    family(
        e,
        "breaker_last_probe_success",
        "1 if each breaker's last health probe succeeded, 0 if it failed.",
        None,
        all.iter()
            .filter_map(|(name, b)| b.last_probe.map(|(_, ok)| (of(name), gauge(u8::from(ok))))),
    )
}

fn budgets(e: &mut DescriptorEncoder, report: &StatusReport) -> fmt::Result {
    let all = &report.resilience.budgets;
    let of = |name: &str| label("budget", name);
    family(
        e,
        "budget_waits",
        "Requests that waited for a slot of each budget.",
        None,
        all.iter()
            .map(|(name, b)| (of(name), count(b.counts.waits))),
    )?;
    family(
        e,
        "budget_wait",
        "Time requests waited for a slot of each budget, summed.",
        Some(Unit::Seconds),
        all.iter()
            .map(|(name, b)| (of(name), Value::Counter(b.counts.waited_ms as f64 / 1000.0))),
    )?;
    family(
        e,
        "budget_deferrals",
        "Requests each budget held back: no slot, or no place in flight, in their call's time.",
        None,
        all.iter()
            .map(|(name, b)| (of(name), count(b.counts.deferred))),
    )?;
    family(
        e,
        "budget_available",
        "Requests a shared budget would let through at once now.",
        None,
        all.iter().filter_map(|(name, b)| {
            b.fill
                .as_ref()
                .map(|fill| (of(name), gauge(fill.available)))
        }),
    )
}

fn tier_name(tier: crate::runtime::Tier) -> &'static str {
    match tier {
        crate::runtime::Tier::Quick => "quick",
        crate::runtime::Tier::Optimized => "optimized",
    }
}

fn origin_name(origin: crate::runtime::Origin) -> &'static str {
    match origin {
        crate::runtime::Origin::Compiled => "compiled",
        crate::runtime::Origin::Cache => "cache",
        crate::runtime::Origin::Cluster => "cluster",
    }
}

fn trip_cause(cause: tsunagi_backends::breaker::TripCause) -> &'static str {
    use tsunagi_backends::breaker::TripCause;
    match cause {
        TripCause::FailureRate => "failure_rate",
        TripCause::SlowCallRate => "slow_call_rate",
        TripCause::TrialCalls => "trial_calls",
        TripCause::TrialDeadline => "trial_deadline",
    }
}
