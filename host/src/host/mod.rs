//! Host assembly: wires the config, the backend, the runtime, one poll pipeline per connector,
//! one runner per sink and the admin port into one running process, and takes them down again
//! in order (stop claiming, let in-flight calls finish, stop delivering).

mod pipelines;

pub use pipelines::{ConnectorSet, Pipelines};

use crate::admin;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError, ConnectorSettings, config_texts};
use crate::egress::{EgressLimits, EgressPolicy};
use crate::reload::{Reloader, spawn_watcher};
use crate::resilience::Resilience;
use crate::runtime::{
    ConnectorRuntime, ConnectorRuntimeSettings, ConnectorServices, Runtime, RuntimeSettings,
    SwappableConnector,
};
use crate::scheduler::RetryPolicy;
use crate::sinks::{SinkRunner, build_sink};
use crate::stats::ConnectorStats;
use crate::workers::RunMode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Backend, Millis};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] tsunagi_backends::BackendError),
    #[error("cannot start the admin listener on {addr}: {source}")]
    Admin {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client of {what}: {source}")]
    HttpClient {
        what: String,
        #[source]
        source: reqwest::Error,
    },
}

/// How a host runs, apart from its config.
#[derive(Clone)]
pub struct HostOptions {
    pub clock: SharedClock,
    /// Unique per process: leases name it, so a restarted host never mistakes an old lease for
    /// its own.
    pub worker_id: String,
    pub mode: RunMode,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            worker_id: unique_worker_id(),
            mode: RunMode::Forever,
        }
    }
}

/// `host-pid-random`, unique across processes and restarts.
pub fn unique_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Engine settings sized for every connector of a config.
pub fn runtime_settings(config: &Config) -> RuntimeSettings {
    // Twice the calls that can run at once: during a hot swap, calls still running on the old
    // version and calls on the new one each hold an instance.
    let instances: usize = 2 * config
        .connectors
        .values()
        .map(|c| c.concurrency)
        .sum::<usize>();
    let memory = config
        .connectors
        .values()
        .map(|c| c.limits.memory.as_u64())
        .max()
        .unwrap_or(RuntimeSettings::default().max_memory_bytes);
    RuntimeSettings {
        max_instances: u32::try_from(instances + 8).unwrap_or(u32::MAX),
        max_memory_bytes: memory,
        compile_cache: config
            .host
            .compile_cache
            .as_ref()
            .map(|p| config.resolve(p)),
    }
}

/// Compiles and validates one connector's plugin and builds its runtime. Errors name the
/// config field that points at the plugin.
pub async fn build_connector(
    runtime: &Arc<Runtime>,
    config: &Config,
    name: &str,
    settings: &ConnectorSettings,
    backend: Arc<dyn Backend>,
    resilience: &Arc<Resilience>,
) -> Result<ConnectorRuntime, HostError> {
    let path = config.resolve(&settings.plugin);
    let plugin = runtime
        .load_blocking(path, settings.role)
        .await
        .map_err(|e| config.error_at(&format!("connectors.{name}.plugin"), &e.to_string()))?;
    let services = Arc::new(ConnectorServices {
        connector: name.to_string(),
        config: config_texts(&settings.config),
        state: backend.clone(),
    });
    let limits = &settings.limits;
    let runtime_settings = ConnectorRuntimeSettings {
        concurrency: settings.concurrency,
        calls_per_instance: settings.calls_per_instance,
        call_timeout: limits.call_timeout,
        memory_limit: usize::try_from(limits.memory.as_u64()).unwrap_or(usize::MAX),
        egress_limits: EgressLimits::from(limits),
    };
    ConnectorRuntime::new(
        runtime.clone(),
        plugin,
        services,
        EgressPolicy::new(name, settings.egress.allow.clone()),
        resilience.clone(),
        runtime_settings,
    )
    .map_err(|source| HostError::HttpClient {
        what: format!("connector '{name}'"),
        source,
    })
}

/// One connector as the running host sees it.
pub struct ConnectorHandle {
    pub name: String,
    /// The connector's current version; a reload swaps it while calls run.
    pub runtime: Arc<SwappableConnector>,
    pub stats: Arc<ConnectorStats>,
}

/// What admin and status read of a running host.
pub struct HostView {
    pub worker_id: String,
    pub backend: Arc<dyn Backend>,
    pub clock: SharedClock,
    pub started_at: Millis,
    /// The connectors running now; a reload may add or remove some.
    pub connectors: Arc<ConnectorSet>,
    pub sinks: Vec<String>,
    /// Budgets and breakers, shared by every connector.
    pub resilience: Arc<Resilience>,
    /// Hot swap of plugins and connector settings.
    pub reloader: Arc<Reloader>,
}

/// A host whose plugins are loaded and validated, ready to start.
pub struct Host {
    config: Config,
    backend: Arc<dyn Backend>,
    options: HostOptions,
    view: Arc<HostView>,
}

impl Host {
    /// Loads every connector's plugin (failing on the first that does not validate).
    pub async fn load(
        config: Config,
        backend: Arc<dyn Backend>,
        options: HostOptions,
    ) -> Result<Host, HostError> {
        let runtime = Runtime::new(&runtime_settings(&config))
            .map_err(|e| config.error_at("host", &e.to_string()))?;
        let resilience = Resilience::in_process(&config, options.clock.clone())?;
        let connectors = Arc::new(ConnectorSet::default());
        for (name, settings) in &config.connectors {
            let connector = build_connector(
                &runtime,
                &config,
                name,
                settings,
                backend.clone(),
                &resilience,
            )
            .await?;
            tracing::info!(connector = %name, plugin = %connector.plugin().path.display(),
                sha256 = %connector.plugin().sha256, "connector loaded");
            connectors.insert(Arc::new(ConnectorHandle {
                name: name.clone(),
                runtime: Arc::new(SwappableConnector::new(connector, options.clock.now_ms())),
                stats: Arc::new(ConnectorStats::default()),
            }));
        }
        let reloader = Arc::new(Reloader::new(
            &config,
            runtime.clone(),
            backend.clone(),
            resilience.clone(),
            options.clock.clone(),
            connectors.clone(),
        ));
        let view = Arc::new(HostView {
            worker_id: options.worker_id.clone(),
            backend: backend.clone(),
            clock: options.clock.clone(),
            started_at: options.clock.now_ms(),
            connectors,
            sinks: config.sinks.keys().cloned().collect(),
            resilience,
            reloader,
        });
        Ok(Host {
            config,
            backend,
            options,
            view,
        })
    }

    pub fn view(&self) -> Arc<HostView> {
        self.view.clone()
    }

    /// Starts the pipelines, sink runners and admin port.
    pub async fn start(self) -> Result<RunningHost, HostError> {
        let host = &self.config.host;
        let pipelines = Arc::new(Pipelines {
            backend: self.backend.clone(),
            clock: self.options.clock.clone(),
            worker_id: self.options.worker_id.clone(),
            host: host.clone(),
            mode: self.options.mode,
            sinks: self.config.sinks.clone(),
            stop_all: CancellationToken::new(),
            running: std::sync::Mutex::new(Default::default()),
        });
        for handle in self.view.connectors.all() {
            if let Some(settings) = self.config.connectors.get(&handle.name) {
                pipelines.start(&handle, settings);
            }
        }
        self.view.reloader.attach_pipelines(pipelines.clone());

        let sink_stop = CancellationToken::new();
        // Probes run until the very end: breakers matter while in-flight calls drain too.
        self.view.resilience.start_probes(&sink_stop);
        let mut sink_tasks = Vec::new();
        if host.watch
            && let Some(watcher) =
                spawn_watcher(&self.config, self.view.reloader.clone(), sink_stop.clone())
        {
            sink_tasks.push(watcher);
        }
        for (name, settings) in &self.config.sinks {
            let sink = build_sink(settings, |p| self.config.resolve(p)).map_err(|source| {
                HostError::HttpClient {
                    what: format!("sink '{name}'"),
                    source,
                }
            })?;
            let runner = Arc::new(SinkRunner {
                name: name.clone(),
                sink,
                backend: self.backend.clone(),
                clock: self.options.clock.clone(),
                worker_id: self.options.worker_id.clone(),
                idle_poll: host.idle_poll,
                lease: host.claim_lease,
                retry: RetryPolicy {
                    first_delay: Duration::from_secs(1),
                    max_delay: Duration::from_secs(600),
                    multiplier: 2.0,
                    jitter: 0.25,
                    max_failures: settings.max_attempts(),
                },
            });
            sink_tasks.push(tokio::spawn(runner.run(sink_stop.clone())));
        }

        let mut admin_addr = None;
        let mut admin_task = None;
        if let Some(listen) = &host.admin_listen {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| HostError::Admin {
                    addr: listen.clone(),
                    source,
                })?;
            admin_addr = listener.local_addr().ok();
            let router = admin::router(self.view.clone());
            let admin_stop = sink_stop.clone();
            admin_task = Some(tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { admin_stop.cancelled().await })
                    .await;
                if let Err(error) = served {
                    tracing::error!("admin listener failed: {error}");
                }
            }));
            tracing::info!(addr = ?admin_addr, "admin listening");
        }

        Ok(RunningHost {
            sink_stop,
            pipelines,
            sink_tasks,
            admin_task,
            admin_addr,
            view: self.view,
        })
    }
}

/// A started host.
pub struct RunningHost {
    sink_stop: CancellationToken,
    pipelines: Arc<Pipelines>,
    sink_tasks: Vec<JoinHandle<()>>,
    admin_task: Option<JoinHandle<()>>,
    admin_addr: Option<SocketAddr>,
    view: Arc<HostView>,
}

impl RunningHost {
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn view(&self) -> Arc<HostView> {
        self.view.clone()
    }

    /// Waits until every pipeline has ended by itself (only happens in [`RunMode::UntilIdle`]).
    pub async fn pipelines_finished(&mut self) {
        for pipeline in self.pipelines.take_all() {
            let _ = pipeline.await;
        }
    }

    /// Stops claiming, lets in-flight calls finish within the grace period, then stops sink
    /// delivery and the admin port.
    pub async fn shutdown(mut self) {
        self.pipelines.stop_all.cancel();
        for pipeline in self.pipelines.take_all() {
            let _ = pipeline.await;
        }
        self.sink_stop.cancel();
        for task in self.sink_tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(task) = self.admin_task.take() {
            let _ = task.await;
        }
    }
}
