//! The status report of a running topology: what `GET /status` serves. It holds no secrets:
//! the topology keeps none in what it reports.

use super::{ConnectorReload, Topology};
use crate::clock::rfc3339;
use crate::resilience::ResilienceStatus;
use crate::retention::StorageStatus;
use crate::runtime::InstanceCounts;
use crate::runtime::VersionInfo;
use crate::sinks::queue_name;
use crate::stats::{
    Distribution, JobStatsSnapshot, LatencySnapshot, RecentError, StatsSnapshot, UpstreamCounts,
};
use serde::Serialize;
use std::collections::BTreeMap;
use tsunagi_backends::{BackendError, QueueCounts};

/// How many policy-refused targets `/status` lists per connector (all of them are counted).
const REFUSED_SHOWN: u32 = 20;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub worker_id: String,
    pub backend: &'static str,
    pub started_at: String,
    pub now: String,
    pub connectors: Vec<ConnectorStatus>,
    pub sinks: Vec<SinkStatus>,
    /// Every budget's fill and every breaker's state, counts and last probe.
    #[serde(flatten)]
    pub resilience: ResilienceStatus,
    /// The latest reload of each connector: what was swapped or why it was refused.
    pub reloads: BTreeMap<String, ConnectorReload>,
    /// Every reload result since the start, counted by connector and outcome.
    pub reload_counts: Vec<ReloadCount>,
    /// Database size and rows per table as the last retention pass measured them (null until
    /// the first pass ends), and what that pass did.
    pub storage: Option<StorageStatus>,
    /// The inbound listener's address and pings, when `host.inbound_listen` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound: Option<crate::inbound::InboundStatus>,
    /// Every live host of the cluster (`[backends] cluster`): how many revisions it is behind
    /// and how its plugins differ from this host's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::membership::ClusterStatus>,
}

#[derive(Debug, Serialize)]
pub struct ConnectorStatus {
    pub name: String,
    /// `poller`, `handler` or `searcher`.
    pub role: &'static str,
    /// The version serving now.
    pub plugin: VersionInfo,
    /// The version before it (what `tsunagi rollback` returns to).
    pub previous_plugin: Option<VersionInfo>,
    pub targets: u64,
    /// Targets due now and not claimed: the connector's queue depth.
    pub targets_due: u64,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    #[serde(flatten)]
    pub counters: StatsSnapshot,
    /// Claim to commit, over every job since the host started.
    pub latency: LatencySnapshot,
    pub last_errors: Vec<RecentError>,
    /// Targets parked because the host's egress policy refused their call: not failing, not
    /// polled, until a reload changes the connector's egress rules.
    pub targets_refused_by_policy: u64,
    /// The first of them, with why.
    pub refused_by_policy: Vec<RefusedTarget>,
    /// A handler's queue and job counters; absent for other roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<HandlerStatus>,
    /// Set while a problem answer (`pause_on_problem`) keeps the connector from calling out.
    pub paused: Option<PausedStatus>,
    /// What the upstream answered the requests that went out, and how fast.
    pub upstream: UpstreamStatus,
    /// The serving version's instances.
    pub instances: InstanceCounts,
    /// A shop's parts of product searches, by how each ended (`ok`, `timeout`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub searches: BTreeMap<&'static str, u64>,
    /// Latencies in buckets, for `/metrics`.
    #[serde(skip)]
    pub distributions: Distributions,
}

/// The upstream's answers to a connector's requests since the host started.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    #[serde(flatten)]
    pub counts: UpstreamCounts,
    /// Send to answer.
    pub latency: LatencySnapshot,
}

/// A connector's latencies in Prometheus buckets.
#[derive(Debug, Default)]
pub struct Distributions {
    /// Claim to commit (a poll or a job).
    pub calls: Distribution,
    /// Each request that went out, send to answer.
    pub requests: Distribution,
}

/// How many reloads of a connector ended one way.
#[derive(Debug, Serialize)]
pub struct ReloadCount {
    pub connector: String,
    pub outcome: &'static str,
    pub count: u64,
}

/// A handler connector's queue (counts, paused) and what its pipeline did since the start.
#[derive(Debug, Serialize)]
pub struct HandlerStatus {
    pub queue: String,
    /// Where the queue's jobs live ("sqlite", "redis redis://…", `[backends] queue`).
    pub store: String,
    pub paused: bool,
    pub counts: QueueCounts,
    pub jobs: JobStatsSnapshot,
}

/// A connector's pause, as `/status` shows it.
#[derive(Debug, Serialize)]
pub struct PausedStatus {
    /// The problem type and the (redacted) URL that answered it.
    pub reason: String,
    /// RFC 3339.
    pub since: String,
    /// RFC 3339; null: until `POST /v1/connectors/NAME/resume` (or a restart).
    pub until: Option<String>,
}

/// A target parked by the egress policy.
#[derive(Debug, Serialize)]
pub struct RefusedTarget {
    /// Redacted.
    pub target: String,
    pub reason: String,
    /// RFC 3339.
    pub since: String,
}

#[derive(Debug, Serialize)]
pub struct SinkStatus {
    pub name: String,
    pub queue: QueueCounts,
}

impl Topology {
    /// Builds the status report; storage errors are reported, not hidden.
    pub async fn status_report(&self) -> Result<StatusReport, BackendError> {
        let now = self.clock.now_ms();
        let mut connectors = Vec::new();
        let queues = self.pipelines.job_queues();
        for handle in self.connectors.all() {
            let mut handler = None;
            if let Some((queue, _)) = queues
                .iter()
                .find(|(_, info)| info.connector == handle.name)
            {
                handler = Some(HandlerStatus {
                    queue: queue.clone(),
                    store: self.jobs_store.clone(),
                    paused: self.jobs.queue_paused(queue).await?,
                    counts: self.jobs.queue_counts(queue).await?,
                    jobs: handle.stats.job_snapshot(),
                });
            }
            let counters = handle.stats.snapshot();
            let (current, previous) = handle.versions.versions();
            let refused_by_policy = self
                .backend
                .list_refused_targets(Some(&handle.name), 0, REFUSED_SHOWN)
                .await?
                .into_iter()
                .map(|target| RefusedTarget {
                    target: crate::redact::url(&target.target).into_owned(),
                    reason: target.refused_reason.unwrap_or_default(),
                    since: target.refused_at.map(rfc3339).unwrap_or_default(),
                })
                .collect();
            let serving = handle.versions.current();
            connectors.push(ConnectorStatus {
                name: handle.name.clone(),
                role: serving.plugin().role.name(),
                plugin: current,
                previous_plugin: previous,
                targets: self.backend.count_targets(&handle.name).await?,
                targets_due: self.backend.count_due(&handle.name, now).await?,
                jobs_done: counters.polls_ok,
                jobs_failed: counters.polls_failed,
                counters,
                latency: handle.stats.latency(),
                last_errors: handle.stats.recent_errors(),
                targets_refused_by_policy: self.backend.count_refused(&handle.name).await?,
                refused_by_policy,
                handler,
                paused: handle.stats.paused(now).map(|pause| PausedStatus {
                    reason: pause.reason,
                    since: rfc3339(pause.since),
                    until: pause.until.map(rfc3339),
                }),
                upstream: UpstreamStatus {
                    counts: handle.stats.upstream(),
                    latency: handle.stats.request_latency(),
                },
                instances: serving.instances(),
                searches: handle.stats.shop_outcomes(),
                distributions: Distributions {
                    calls: handle.stats.latency_distribution(),
                    requests: handle.stats.request_distribution(),
                },
            });
        }
        let mut sinks = Vec::new();
        for name in self.pipelines.sink_names() {
            sinks.push(SinkStatus {
                name: name.clone(),
                queue: self.backend.queue_counts(&queue_name(name)).await?,
            });
        }
        Ok(StatusReport {
            worker_id: self.worker_id.clone(),
            backend: self.backend.kind(),
            started_at: rfc3339(self.started_at),
            now: rfc3339(now),
            connectors,
            sinks,
            resilience: self.resilience.status().await,
            reloads: self.reloader.last_reloads(),
            reload_counts: self
                .reloader
                .reload_counts()
                .into_iter()
                .map(|(connector, outcome, count)| ReloadCount {
                    connector,
                    outcome,
                    count,
                })
                .collect(),
            storage: self.retention.status(),
            inbound: match &self.inbound {
                Some(inbound) => Some(inbound.counters.status(inbound.addr, &inbound.websub).await),
                None => None,
            },
            cluster: match &self.membership {
                Some(membership) => {
                    let newest = match &self.cluster {
                        Some(cluster) => cluster.newest().await.ok(),
                        None => None,
                    };
                    Some(
                        membership
                            .status(&super::plugins_running(&self.connectors), newest)
                            .await,
                    )
                }
                None => None,
            },
        })
    }
}
