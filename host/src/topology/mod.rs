//! The topology: builds, owns and tears down everything that runs — the engine, every
//! connector (its current and previous version), one pipeline per connector, the sink runners,
//! the retention runner, the health probes, the reloader and the file watcher — from the moment
//! it is built.
//!
//! Read the host from here down. [`Topology::start`] loads every plugin (failing on the first
//! that does not validate) and then starts what runs; [`Topology::shutdown`] stops claiming,
//! lets in-flight calls finish within the grace period, then stops delivering and retention
//! (a pass in progress ends after its current batch). Everything that
//! watches or steers a running host (the admin API, SIGHUP, `tsunagi reload`) goes through the
//! [`Control`] interface; this module never imports the admin API.
//!
//! A reload is two steps: [`plan`] computes what to do as data (a pure function of what serves,
//! the new config, the plugin files' sha256 and rollback pins), and [`Reloader`] carries the
//! plan out.

mod connectors;
mod control;
mod pipelines;
pub mod plan;
mod reload;
mod status;
mod watch;

pub use connectors::{ConnectorHandle, ConnectorSet};
pub use control::{Control, EventJob, InboundEvent, InboundJob, JobsError, QueueStatus};
pub use pipelines::PipelineSet;
pub use reload::{ConnectorReload, Outcome, ReloadError, ReloadReport, Reloader};
pub use status::{ConnectorStatus, PausedStatus, RefusedTarget, SinkStatus, StatusReport};

use crate::clock::{SharedClock, SystemClock};
use crate::cluster::{BlobCache, Cluster, Overlay};
use crate::config::{Config, ConfigError, ConnectorSettings, FieldLocation, config_texts};
use crate::egress::{EgressError, EgressPolicy, Network};
use crate::pipeline::RunMode;
use crate::resilience::Resilience;
use crate::retention::{Retention, RetentionRules};
use crate::runtime::{
    ConnectorServices, Engine, EngineSettings, InstancePool, LoadError, PoolSettings,
    SwappableConnector,
};
use crate::scheduler::RetryPolicy;
use crate::sinks::{SinkError, SinkRunner, build_sink};
use pipelines::PipelineContext;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Backend, BackendError, JobQueue, Millis};

/// Why a topology could not start.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("sink '{name}': {source}")]
    Sink {
        name: String,
        #[source]
        source: SinkError,
    },
    #[error(transparent)]
    Inbound(#[from] crate::inbound::InboundError),
    #[error(transparent)]
    Stores(#[from] crate::stores::StoreError),
    #[error("{at}: {reason}")]
    ClusterKey { at: FieldLocation, reason: String },
}

/// Why one connector could not be built: its plugin did not load (at the config field that
/// names it), or its egress could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{at}: {source}")]
    Load {
        at: FieldLocation,
        #[source]
        source: LoadError,
    },
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// A credential the connector's rules name could not be set up (a secret or the token
    /// key unreadable since the config was checked).
    #[error("{at}: {source}")]
    Credentials {
        at: FieldLocation,
        #[source]
        source: Box<crate::credentials::CredentialError>,
    },
}

/// How a topology runs, apart from its config.
#[derive(Clone)]
pub struct TopologyOptions {
    pub clock: SharedClock,
    /// Unique per process: leases name it, so a restarted host never mistakes an old lease for
    /// its own.
    pub worker_id: String,
    pub mode: RunMode,
    /// Where plugins pushed to the cluster are kept as files (see [`BlobCache`]).
    pub pushed_plugins: std::path::PathBuf,
}

impl Default for TopologyOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            worker_id: unique_worker_id(),
            mode: RunMode::Forever,
            pushed_plugins: BlobCache::default_dir(),
        }
    }
}

/// Instance slots an engine has at least when `host.instance_slots` is not set: room for a
/// reload to add several connectors at the default concurrency.
pub const DEFAULT_INSTANCE_SLOTS: u64 = 512;

/// Slots kept for the self-tests a reload runs on a new version before it serves.
pub const SELF_TEST_SLOTS: u64 = 8;

/// `host-pid-random`, unique across processes and restarts.
pub fn unique_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Engine settings sized for every connector of a config, with room for reloads to add
/// connectors or raise concurrency (the pooling allocator cannot grow while running; a reload
/// that would need more is refused, see [`plan`]).
pub fn engine_settings(config: &Config) -> EngineSettings {
    let needed: u64 = config
        .connectors
        .values()
        .map(|c| plan::slots_for(c.concurrency))
        .fold(SELF_TEST_SLOTS, u64::saturating_add);
    let slots = match config.host.instance_slots {
        Some(slots) => u64::from(slots),
        None => needed.max(DEFAULT_INSTANCE_SLOTS),
    };
    let memory = config
        .connectors
        .values()
        .map(|c| c.limits.memory.as_u64())
        .max()
        .unwrap_or(EngineSettings::default().max_memory_bytes);
    EngineSettings {
        max_instances: u32::try_from(slots).unwrap_or(u32::MAX),
        max_memory_bytes: memory,
        compile_cache: config
            .host
            .compile_cache
            .as_ref()
            .map(|p| config.resolve(p)),
        compiler: config.host.compiler,
    }
}

/// `backends.cluster_key`, read and checked; why not.
fn cluster_key(config: &Config) -> Result<Option<crate::config::Secret>, String> {
    let Some(source) = &config.backends.cluster_key else {
        return Ok(None);
    };
    let key = source
        .resolve(&config.base_dir)
        .map_err(|e| e.to_string())?;
    if key.expose().len() < crate::config::backends::MIN_CLUSTER_KEY {
        return Err(format!(
            "the key is shorter than {} characters",
            crate::config::backends::MIN_CLUSTER_KEY
        ));
    }
    Ok(Some(key))
}

/// What the host lends every connector it builds.
#[derive(Clone)]
pub struct HostParts {
    pub backend: Arc<dyn Backend>,
    pub resilience: Arc<Resilience>,
    pub rankings: Arc<crate::rankings::Rankings>,
    /// Hosts sharing the token store refresh one at a time through it (`[backends] cluster`).
    pub cluster_lock: Option<Arc<dyn tsunagi_backends::coordination::ClusterLock>>,
}

impl HostParts {
    /// A host on its own (`tsunagi poll`, benchmarks): budgets and breakers in memory,
    /// rankings in `backend`, no cluster.
    pub fn alone(
        config: &Config,
        backend: Arc<dyn Backend>,
        clock: SharedClock,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            resilience: Resilience::in_process(config, clock.clone())?,
            rankings: Arc::new(crate::rankings::Rankings::new(
                backend.clone(),
                clock,
                config,
            )),
            backend,
            cluster_lock: None,
        })
    }
}

/// Compiles and validates one connector's plugin and builds its instance pool, with the
/// network its allowlist permits and the host's `rankings` (those it lists). Errors name the
/// config field that points at the plugin.
pub async fn build_connector(
    engine: &Arc<Engine>,
    config: &Config,
    name: &str,
    settings: &ConnectorSettings,
    host: &HostParts,
) -> Result<InstancePool, BuildError> {
    let HostParts {
        backend,
        resilience,
        rankings,
        cluster_lock,
    } = host;
    let backend = backend.clone();
    let path = config.resolve(&settings.plugin);
    let plugin = engine
        .load_blocking(path, settings.role)
        .await
        .map_err(|source| BuildError::Load {
            at: config.locate(&format!("connectors.{name}.plugin")),
            source,
        })?;
    let policy = Arc::new(signed_policy(
        config,
        name,
        settings,
        backend.clone(),
        resilience,
        cluster_lock.clone(),
    )?);
    let services = Arc::new(ConnectorServices {
        connector: name.to_string(),
        config: config_texts(&settings.config),
        rankings: crate::runtime::RankingAccess {
            rankings: (!settings.rankings.is_empty()).then(|| rankings.clone()),
            allowed: settings.rankings.clone(),
        },
        state: backend,
    });
    let pool_settings = PoolSettings::new(
        settings.concurrency,
        settings.calls_per_instance,
        &settings.limits,
    );
    let network = Network::new(&policy, &pool_settings.egress_limits, settings.concurrency)?;
    Ok(InstancePool::new(
        engine.clone(),
        plugin,
        services,
        policy,
        resilience.clone(),
        pool_settings,
        Arc::new(network),
    ))
}

/// The connector's allowlist; when its rules name credentials, with the host's credentials
/// signing their requests (token refreshes go out through guarded destinations).
// Its error is build_connector's own, passed straight up.
#[allow(clippy::result_large_err)]
fn signed_policy(
    config: &Config,
    name: &str,
    settings: &ConnectorSettings,
    backend: Arc<dyn Backend>,
    resilience: &Arc<Resilience>,
    cluster_lock: Option<Arc<dyn tsunagi_backends::coordination::ClusterLock>>,
) -> Result<EgressPolicy, BuildError> {
    let policy = EgressPolicy::new(name, settings.egress.allow.clone());
    if settings
        .egress
        .allow
        .iter()
        .all(|rule| rule.credential.is_none())
    {
        return Ok(policy);
    }
    let credentials =
        crate::credentials::Credentials::from_config(config, backend, resilience.clock().clone())
            .map_err(|source| BuildError::Credentials {
                at: config.locate(&format!("connectors.{name}.egress.allow")),
                source: Box::new(source),
            })?
            .with_token_endpoint(Arc::new(crate::egress::GuardedTokenEndpoint::new(
                settings.limits.request_timeout,
            )))
            .with_cluster_lock(cluster_lock);
    Ok(policy.with_signer(Arc::new(credentials)))
}

/// Everything that runs, and the way to stop it.
/// The running inbound listener: its address, its ping counts, its WebSub service.
struct Inbound {
    addr: std::net::SocketAddr,
    counters: Arc<crate::inbound::InboundCounters>,
    websub: Arc<crate::websub::WebSub>,
}

pub struct Topology {
    worker_id: String,
    backend: Arc<dyn Backend>,
    /// Handler job queues (`[backends] queue`, or `backend`); sink deliveries are in `backend`.
    jobs: Arc<dyn JobQueue>,
    /// What serves the handler job queues, for `/status` ("sqlite", "redis redis://…").
    jobs_store: String,
    /// Targets given up on and jobs out of attempts, in both stores (`/v1/dlq`).
    dead_letters: crate::deadletters::DeadLetters,
    clock: SharedClock,
    started_at: Millis,
    connectors: Arc<ConnectorSet>,
    pipelines: Arc<PipelineSet>,
    resilience: Arc<Resilience>,
    retention: Arc<Retention>,
    /// The host's rankings, for the API and the search's popularity count.
    rankings: Arc<crate::rankings::Rankings>,
    reloader: Arc<Reloader>,
    /// Stops the sink runners, retention, probes and watcher, after the pipelines have drained.
    stop: CancellationToken,
    /// Set when [`Topology::shutdown`] begins.
    stopping: std::sync::atomic::AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Where the inbound listener (`host.inbound_listen`) listens, if it does, and its counts.
    inbound: Option<Inbound>,
    /// This host's card in the cluster (`[backends] cluster`).
    membership: Option<Arc<crate::membership::Membership>>,
    /// Pushed plugins and config revisions (`[backends] cluster`).
    cluster: Option<Arc<Cluster>>,
}

/// The plugin (sha256) each running connector serves.
fn plugins_running(connectors: &ConnectorSet) -> std::collections::BTreeMap<String, String> {
    connectors
        .all()
        .into_iter()
        .map(|handle| (handle.name.clone(), handle.sha256()))
        .collect()
}

impl Topology {
    /// Loads every connector's plugin (failing on the first that does not validate, before
    /// anything runs), then starts the pipelines, probes, watcher and sink runners.
    pub async fn start(
        mut config: Config,
        backend: Arc<dyn Backend>,
        options: TopologyOptions,
    ) -> Result<Arc<Topology>, TopologyError> {
        let clock = options.clock.clone();
        let engine = Engine::new(&engine_settings(&config)).map_err(|source| BuildError::Load {
            at: config.locate("host"),
            source,
        })?;
        let stores = crate::stores::Stores::open(&config, backend.clone()).await?;
        for (concern, store) in &stores.serving {
            tracing::info!(concern, store = %store, "store");
        }
        let code_key = cluster_key(&config).map_err(|reason| TopologyError::ClusterKey {
            at: config.locate("backends.cluster_key"),
            reason,
        })?;
        let cluster = stores.cluster.clone().map(|store| {
            let cluster = Cluster::new(
                store,
                &options.worker_id,
                config.source_path.clone(),
                BlobCache::new(options.pushed_plugins.clone()),
                clock.clone(),
            );
            Arc::new(match &code_key {
                Some(key) => cluster.with_code_key(key.expose().as_bytes()),
                None => cluster,
            })
        });
        // A host joining a cluster runs its newest revision from the first job on.
        let mut overlay = Overlay::default();
        if let Some(cluster) = &cluster
            && let Some(newest) = cluster.boot().await
        {
            match newest.config(&config.source_path) {
                Ok(under_revision) => {
                    tracing::info!(
                        revision = newest.revision,
                        "starting on the cluster's revision"
                    );
                    config = under_revision;
                    cluster.booted(newest.revision);
                    overlay = newest;
                }
                Err(error) => tracing::error!(
                    revision = newest.revision,
                    "starting on this host's own config: the cluster's revision is refused: {error}"
                ),
            }
        }
        let resilience = Arc::new(
            Resilience::from_config(
                &config,
                clock.clone(),
                stores.budgets.clone(),
                stores.breakers.clone(),
            )?
            .with_probe_board(stores.probe_board.clone()),
        );
        let rankings = Arc::new(crate::rankings::Rankings::new(
            stores.rankings.clone(),
            clock.clone(),
            &config,
        ));
        let parts = HostParts {
            backend: backend.clone(),
            resilience: resilience.clone(),
            rankings: rankings.clone(),
            cluster_lock: stores.cluster_lock.clone(),
        };
        let connectors = Arc::new(ConnectorSet::default());
        for (name, settings) in &config.connectors {
            let pool = build_connector(&engine, &config, name, settings, &parts).await?;
            tracing::info!(connector = %name, plugin = %pool.plugin().path.display(),
                sha256 = %pool.plugin().sha256, "connector loaded");
            connectors.insert(Arc::new(ConnectorHandle::new(
                name,
                SwappableConnector::new(pool, clock.now_ms()),
            )));
        }
        for name in config.connectors.keys() {
            // Rules may have changed while the host was down: what they refused is tried again
            // (and parked again if still refused).
            let released = backend.release_refused(name, clock.now_ms()).await?;
            if released > 0 {
                tracing::info!(connector = %name, released,
                    "targets the egress policy refused before the restart are due again");
            }
        }
        let host = &config.host;
        let mut sink_runners = Vec::new();
        for (name, settings) in &config.sinks {
            let sink = build_sink(name, settings, |p| config.resolve(p)).map_err(|source| {
                TopologyError::Sink {
                    name: name.clone(),
                    source,
                }
            })?;
            sink_runners.push(Arc::new(SinkRunner {
                name: name.clone(),
                sink,
                backend: backend.clone(),
                clock: clock.clone(),
                worker_id: options.worker_id.clone(),
                idle_poll: host.idle_poll,
                lease: host.claim_lease,
                retry: RetryPolicy {
                    first_delay: Duration::from_secs(1),
                    max_delay: Duration::from_secs(600),
                    multiplier: 2.0,
                    jitter: 0.25,
                    max_failures: settings.max_attempts(),
                },
            }));
        }

        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        // Bound before anything runs: a port in use fails the start with nothing left behind.
        let inbound = match &host.inbound_listen {
            Some(listen) => {
                let inbound = crate::inbound::serve(
                    listen,
                    host.inbound_url.as_deref(),
                    backend.clone(),
                    clock.clone(),
                    stop.clone(),
                )
                .await?;
                tasks.push(inbound.task);
                Some(Inbound {
                    addr: inbound.addr,
                    counters: inbound.counters,
                    websub: inbound.websub,
                })
            }
            None => None,
        };
        let pipelines = Arc::new(PipelineSet::new(PipelineContext {
            backend: backend.clone(),
            jobs: stores.jobs.clone(),
            clock: clock.clone(),
            worker_id: options.worker_id.clone(),
            host: host.clone(),
            mode: options.mode,
            sinks: config.sinks.clone(),
            search: config.search.clone(),
            websub: inbound.as_ref().map(|inbound| inbound.websub.clone()),
        }));
        for handle in connectors.all() {
            if let Some(settings) = config.connectors.get(&handle.name) {
                pipelines.start(&handle, settings);
            }
        }
        // After the pipelines: they turn WebSub on per connector, and the subscriber sets
        // aside the renewals of connectors it does not know.
        if let Some(inbound) = &inbound {
            tasks.extend(inbound.websub.start(stop.clone()));
        }
        let retention = Arc::new(
            Retention::new(
                backend.clone(),
                clock.clone(),
                RetentionRules::from_config(&config),
            )
            .with_redis_queue(stores.redis_queue.clone()),
        );
        let reloader = Arc::new(
            Reloader::new(
                &config,
                engine,
                parts,
                connectors.clone(),
                pipelines.clone(),
            )
            .with_retention(retention.clone())
            .with_overlay(overlay),
        );
        if let Some(cluster) = &cluster {
            let applier: Arc<dyn crate::cluster::Apply> = reloader.clone();
            tasks.push(cluster.clone().spawn(applier, stop.clone()));
        }

        // Probes run until the very end: breakers matter while in-flight calls drain too.
        resilience.start_probes(&stop);
        let watched = reloader.clone();
        let reload_on_change = move || -> futures::future::BoxFuture<'static, ()> {
            let reloader = watched.clone();
            Box::pin(async move {
                let report = reloader.reload(None).await;
                tracing::info!(
                    ok = report.ok,
                    "reload finished: {}",
                    serde_json::to_string(&report).unwrap_or_default()
                );
            })
        };
        if host.watch
            && let Some(watcher) = watch::spawn_watcher(&config, reload_on_change, stop.clone())
        {
            tasks.push(watcher);
        }
        for runner in sink_runners {
            tasks.push(tokio::spawn(runner.run(stop.clone())));
        }
        tasks.push(tokio::spawn(retention.clone().run(stop.clone())));
        let membership = stores.members.clone().map(|members| {
            Arc::new(crate::membership::Membership::new(
                members,
                &options.worker_id,
                clock.clone(),
            ))
        });
        if let Some(membership) = &membership {
            let running = connectors.clone();
            let standing = cluster.clone();
            let facts = move || {
                let standing = standing
                    .as_ref()
                    .map(|cluster| cluster.standing())
                    .unwrap_or_default();
                (plugins_running(&running), standing)
            };
            tasks.push(membership.clone().spawn(facts, stop.clone()));
        }
        let dead_letter_store = backend.clone();
        Ok(Arc::new(Topology {
            worker_id: options.worker_id,
            started_at: clock.now_ms(),
            clock,
            backend,
            jobs: stores.jobs.clone(),
            jobs_store: stores.serving_of("queue"),
            dead_letters: crate::deadletters::DeadLetters::new(
                dead_letter_store,
                stores
                    .redis_queue
                    .clone()
                    .map(|queue| Arc::new(queue) as Arc<dyn JobQueue>),
            ),
            connectors,
            pipelines,
            resilience,
            retention,
            rankings,
            reloader,
            stop,
            stopping: std::sync::atomic::AtomicBool::new(false),
            tasks: Mutex::new(tasks),
            inbound,
            membership,
            cluster,
        }))
    }

    /// The connectors running now; a reload may add or remove some.
    pub fn connectors(&self) -> &ConnectorSet {
        &self.connectors
    }

    /// Budgets and breakers, shared by every connector.
    pub fn resilience(&self) -> &Arc<Resilience> {
        &self.resilience
    }

    /// The host's rankings, in whichever store `[backends]` gave them.
    pub fn rankings(&self) -> &Arc<crate::rankings::Rankings> {
        &self.rankings
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Where the handler job queues live: the Redis queue (`[backends] queue`) or the backend.
    pub fn jobs(&self) -> &Arc<dyn JobQueue> {
        &self.jobs
    }

    /// The retention runner: its last pass and measurement, and passes on demand.
    pub fn retention(&self) -> &Arc<Retention> {
        &self.retention
    }

    /// Hot swap of plugins and connector settings (also reachable through [`Control`]).
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// Where the inbound listener listens (its port when `host.inbound_listen` asked for 0).
    pub fn inbound_addr(&self) -> Option<std::net::SocketAddr> {
        self.inbound.as_ref().map(|inbound| inbound.addr)
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Whether [`Topology::shutdown`] has begun.
    pub fn stop_requested(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until every pipeline has ended by itself (only happens in [`RunMode::UntilIdle`]).
    pub async fn until_idle(&self) {
        self.pipelines.wait_all().await;
    }

    /// Stops claiming, lets in-flight calls finish within the grace period, then stops sink
    /// delivery, retention, the probes and the watcher.
    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.pipelines.stop_all().await;
        self.stop.cancel();
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            let _ = task.await;
        }
    }
}
