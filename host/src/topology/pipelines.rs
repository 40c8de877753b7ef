//! The pipelines a topology runs: one per connector, each stoppable on its own, so a reload can
//! add one, stop one (it stops claiming and drains; its targets and queue stay in the store for
//! when it returns), or restart one with new schedule settings.

use super::ConnectorHandle;
use crate::clock::SharedClock;
use crate::config::{ConnectorSettings, HostSettings, Role, SinkSettings};
use crate::pipeline::{HandlePipeline, PollPipeline, RunMode, SearchPipeline};
use crate::scheduler::{PollPolicy, RetryPolicy};
use crate::sinks::queue_name;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Backend, Delivery, JobQueue};

/// What every pipeline of one topology shares.
pub(super) struct PipelineContext {
    pub backend: Arc<dyn Backend>,
    /// Where handler job queues live (`Stores::jobs`): the database or the Redis queue. Sink
    /// deliveries stay in `backend`, enqueued by its poll commits.
    pub jobs: Arc<dyn JobQueue>,
    pub clock: SharedClock,
    pub worker_id: String,
    pub host: HostSettings,
    pub mode: RunMode,
    /// The sinks the topology runs (deliveries to others would wait for a restart).
    pub sinks: BTreeMap<String, SinkSettings>,
    /// `[search]` at start; reloads apply theirs.
    pub search: crate::config::SearchSettings,
    /// The host's WebSub service, when the inbound listener runs.
    pub websub: Option<Arc<crate::websub::WebSub>>,
}

/// The running pipelines, by connector.
pub struct PipelineSet {
    context: PipelineContext,
    /// Cancelling it stops every pipeline (shutdown); each pipeline has a child token.
    stop_all: CancellationToken,
    running: Mutex<BTreeMap<String, (CancellationToken, JoinHandle<()>)>>,
    /// The job queues the running handler pipelines serve, by queue name.
    queues: Mutex<BTreeMap<String, JobQueueInfo>>,
    /// The one search pipeline, over every searcher connector.
    searches: Arc<SearchPipeline>,
}

/// A job queue a handler pipeline serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQueueInfo {
    pub connector: String,
    /// What an enqueued job may take: the connector's `retry.max_failures`.
    pub max_attempts: u32,
    /// The event topics the connector subscribes to (`jobs.events`).
    pub events: Vec<String>,
}

impl PipelineSet {
    pub(super) fn new(context: PipelineContext) -> Self {
        Self {
            searches: Arc::new(SearchPipeline::new(context.search.clone())),
            context,
            stop_all: CancellationToken::new(),
            running: Mutex::new(BTreeMap::new()),
            queues: Mutex::new(BTreeMap::new()),
        }
    }

    /// The search pipeline: searcher connectors are its shops.
    pub fn searches(&self) -> &Arc<SearchPipeline> {
        &self.searches
    }

    /// Starts `handle`'s pipeline with `settings`' schedule, retry and concurrency, replacing
    /// (and stopping) one already running for it. Pollers get a poll pipeline and handlers a
    /// job pipeline over their queue; searchers become shops of the search pipeline.
    pub fn start(&self, handle: &ConnectorHandle, settings: &ConnectorSettings) {
        let context = &self.context;
        let stop = self.stop_all.child_token();
        self.forget_queue_of(&handle.name);
        let task = match settings.role {
            Role::Poller => self.start_poll(handle, settings, stop.clone()),
            Role::Handler => {
                self.lock_queues().insert(
                    settings.job_queue(&handle.name),
                    JobQueueInfo {
                        connector: handle.name.clone(),
                        max_attempts: settings.retry.max_failures,
                        events: settings.jobs.events.clone(),
                    },
                );
                let pipeline = Arc::new(HandlePipeline {
                    connector: handle.name.clone(),
                    queue: settings.job_queue(&handle.name),
                    backend: context.backend.clone(),
                    jobs: context.jobs.clone(),
                    handler: handle.versions.clone(),
                    retry: RetryPolicy::from(&settings.retry),
                    clock: context.clock.clone(),
                    worker_id: context.worker_id.clone(),
                    lease: context.host.claim_lease,
                    claim_batch: context.host.claim_batch,
                    idle_poll: context.host.idle_poll,
                    concurrency: settings.concurrency,
                    stats: handle.stats.clone(),
                });
                tokio::spawn(pipeline.run(stop.clone(), context.mode, context.host.shutdown_grace))
            }
            Role::Searcher => {
                self.stop(&handle.name);
                self.searches
                    .add_shop(&handle.name, handle.versions.clone(), handle.stats.clone());
                tracing::info!(connector = %handle.name, "searches may ask this shop");
                return;
            }
        };
        let replaced = self.lock().insert(handle.name.clone(), (stop, task));
        if let Some((old_stop, old_task)) = replaced {
            old_stop.cancel();
            drain_in_background(&handle.name, old_task);
        }
    }

    fn start_poll(
        &self,
        handle: &ConnectorHandle,
        settings: &ConnectorSettings,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let context = &self.context;
        let pipeline = Arc::new(PollPipeline {
            connector: handle.name.clone(),
            backend: context.backend.clone(),
            poller: handle.versions.clone(),
            policy: PollPolicy::from(settings),
            clock: context.clock.clone(),
            worker_id: context.worker_id.clone(),
            lease: context.host.claim_lease,
            claim_batch: context.host.claim_batch,
            idle_poll: context.host.idle_poll,
            concurrency: settings.concurrency,
            deliver_to: settings
                .sinks
                .iter()
                .map(|sink| Delivery {
                    queue: queue_name(sink),
                    max_attempts: context
                        .sinks
                        .get(sink)
                        .map_or(1, SinkSettings::max_attempts),
                })
                .collect(),
            stats: handle.stats.clone(),
            filters: Arc::new(crate::filter::Filters::new(&settings.filters)),
            pause: crate::pipeline::PausePolicy {
                problems: settings.pause_on_problem.clone(),
                pause_for: settings.pause_for,
            },
            origin: settings.origin.clone(),
            websub: self.websub_of(&handle.name, settings),
        });
        tokio::spawn(pipeline.run(stop, context.mode, context.host.shutdown_grace))
    }

    /// Stops claiming for `name`; its in-flight calls finish (within the shutdown grace) in
    /// the background.
    /// The connector's side of WebSub when it has `websub = true` (and the host a listener).
    fn websub_of(
        &self,
        name: &str,
        settings: &ConnectorSettings,
    ) -> Option<crate::websub::ConnectorWebSub> {
        let service = self.context.websub.as_ref()?;
        if !settings.websub {
            service.forget_connector(name);
            return None;
        }
        // The hub is reached only where the connector itself may go.
        let policy = crate::egress::EgressPolicy::new(name, settings.egress.allow.clone());
        Some(service.connector(
            name,
            Arc::new(policy),
            settings.limits.response_size.as_u64(),
        ))
    }

    pub fn stop(&self, name: &str) {
        if let Some(websub) = &self.context.websub {
            websub.forget_connector(name);
        }
        self.forget_queue_of(name);
        self.searches.remove_shop(name);
        if let Some((stop, task)) = self.lock().remove(name) {
            stop.cancel();
            drain_in_background(name, task);
        }
    }

    /// Stops every pipeline and waits for their in-flight calls (each within the grace).
    pub(super) async fn stop_all(&self) {
        self.stop_all.cancel();
        self.wait_all().await;
    }

    /// Waits until every pipeline has ended by itself (only happens in [`RunMode::UntilIdle`]).
    pub(super) async fn wait_all(&self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.lock())
            .into_values()
            .map(|(_, task)| task)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Whether the topology delivers to this sink.
    pub fn has_sink(&self, sink: &str) -> bool {
        self.context.sinks.contains_key(sink)
    }

    /// The sinks the topology delivers to.
    pub fn sink_names(&self) -> impl Iterator<Item = &String> {
        self.context.sinks.keys()
    }

    /// The job queue `queue`, if a running handler pipeline serves it.
    pub fn job_queue(&self, queue: &str) -> Option<JobQueueInfo> {
        self.lock_queues().get(queue).cloned()
    }

    /// Every job queue served now, by name.
    pub fn job_queues(&self) -> BTreeMap<String, JobQueueInfo> {
        self.lock_queues().clone()
    }

    fn forget_queue_of(&self, connector: &str) {
        self.lock_queues()
            .retain(|_, info| info.connector != connector);
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JobQueueInfo>> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, (CancellationToken, JoinHandle<()>)>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Lets a stopped pipeline's in-flight calls finish without holding up the caller.
fn drain_in_background(name: &str, task: JoinHandle<()>) {
    let name = name.to_string();
    tokio::spawn(async move {
        let _ = task.await;
        tracing::info!(connector = %name, "old pipeline drained");
    });
}
