//! Reload: the hot-swap pipeline, from a trigger to a new version serving.
//!
//! A reload re-reads the config file (an invalid file is refused whole: nothing changes), and
//! for each connector whose settings or plugin file changed: compiles the plugin off the async
//! threads (wasmtime's compile cache makes a repeat cheap), validates it (the role's exports,
//! the WIT version, one real instantiation and the plugin's optional `self-test` export), and
//! only then swaps it in atomically (see [`crate::runtime::SwappableConnector`]). When the
//! schedule, retry policy, concurrency or sinks changed, the connector's pipeline is restarted
//! with them (the old one stops claiming and drains). A connector new in the file is added; one
//! gone from it stops claiming and drains, its targets and queue kept in the store for when it
//! returns. A connector whose new version fails any step keeps serving the old one, and the
//! report says why — to `tsunagi reload`, the admin API, `/status` and the log. Unchanged
//! connectors are not touched.
//!
//! Reloads run one at a time. Triggers: a change to the config or a plugin file (see `watch`,
//! unless `host.watch = false`), `tsunagi reload`, `POST /v1/reload`,
//! `POST /v1/connectors/{name}/reload`, SIGHUP.

mod watch;

pub use watch::spawn_watcher;

use crate::clock::SharedClock;
use crate::config::{Config, ConnectorSettings};
use crate::host::{ConnectorHandle, ConnectorSet, Pipelines, build_connector};
use crate::resilience::Resilience;
use crate::runtime::{Runtime, SwappableConnector};
use crate::stats::ConnectorStats;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tsunagi_backends::Backend;

/// What a reload did to one connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new version serves.
    Swapped,
    /// Settings and plugin file are what already serves.
    Unchanged,
    /// The new version failed a check; the old one keeps serving.
    Refused,
    /// Rolled back to the previous version.
    RolledBack,
    /// New in the config: built, validated and started.
    Added,
    /// Gone from the config: stopped claiming; in-flight calls drain; targets stay stored.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorReload {
    pub connector: String,
    pub outcome: Outcome,
    /// sha256 of the version serving before, and after (empty when there was none).
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From the trigger to the new version serving (or to the refusal).
    pub took_ms: u64,
    /// The pipeline was restarted with new schedule, retry, concurrency or sinks.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pipeline_restarted: bool,
    /// When it happened (RFC 3339).
    pub at: String,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// False when anything was refused.
    pub ok: bool,
    /// Why the whole config was refused, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Budgets and breakers added, changed or removed (unchanged ones keep their state).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protections: Vec<String>,
    pub connectors: Vec<ConnectorReload>,
}

/// Settings a running pipeline was started with; changing them restarts the pipeline.
fn pipeline_settings(settings: &ConnectorSettings) -> impl PartialEq + '_ {
    (
        settings.role,
        settings.concurrency,
        &settings.schedule,
        &settings.retry,
        &settings.sinks,
    )
}

/// The settings a connector's current and previous version were built from.
type Serving = BTreeMap<String, (ConnectorSettings, Option<ConnectorSettings>)>;

/// The host's reloader; one per running host.
pub struct Reloader {
    config_path: PathBuf,
    runtime: Arc<Runtime>,
    backend: Arc<dyn Backend>,
    resilience: Arc<Resilience>,
    clock: SharedClock,
    connectors: Arc<ConnectorSet>,
    /// Set when the host starts; until then a reload swaps runtimes but starts no pipeline.
    pipelines: OnceLock<Arc<Pipelines>>,
    serving: Mutex<Serving>,
    /// Connectors rolled back, with the config settings and plugin sha256 that were on disk
    /// then: reloads leave them alone until one of those changes.
    pins: Mutex<BTreeMap<String, (Option<ConnectorSettings>, String)>>,
    last: Mutex<BTreeMap<String, ConnectorReload>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        config: &Config,
        runtime: Arc<Runtime>,
        backend: Arc<dyn Backend>,
        resilience: Arc<Resilience>,
        clock: SharedClock,
        connectors: Arc<ConnectorSet>,
    ) -> Self {
        let serving = config
            .connectors
            .iter()
            .map(|(name, settings)| (name.clone(), (settings.clone(), None)))
            .collect();
        Self {
            config_path: config.source_path.clone(),
            runtime,
            backend,
            resilience,
            clock,
            connectors,
            pipelines: OnceLock::new(),
            serving: Mutex::new(serving),
            pins: Mutex::new(BTreeMap::new()),
            last: Mutex::new(BTreeMap::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Lets reloads start and stop pipelines (called once, when the host starts).
    pub fn attach_pipelines(&self, pipelines: Arc<Pipelines>) {
        let _ = self.pipelines.set(pipelines);
    }

    /// The latest reload of each connector, for `/status`.
    pub fn last_reloads(&self) -> BTreeMap<String, ConnectorReload> {
        self.last
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default()
    }

    /// Reloads `only` that connector, or every connector whose settings or plugin changed.
    pub async fn reload(&self, only: Option<&str>) -> ReloadReport {
        let _one = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let config = match Config::load(&self.config_path) {
            Ok(config) => config,
            Err(error) => {
                let message = format!("config refused, nothing changed: {error}");
                tracing::error!("reload: {message}");
                return ReloadReport {
                    ok: false,
                    error: Some(message),
                    protections: Vec::new(),
                    connectors: Vec::new(),
                };
            }
        };
        // Budgets and breakers first: a connector's new allow rules may name new ones.
        let protections = match self.resilience.apply(&config) {
            Ok(changes) => changes,
            Err(error) => {
                return ReloadReport {
                    ok: false,
                    error: Some(format!("config refused, nothing changed: {error}")),
                    protections: Vec::new(),
                    connectors: Vec::new(),
                };
            }
        };
        let names: Vec<String> = match only {
            Some(name) => vec![name.to_string()],
            None => {
                let mut names: BTreeSet<String> = self.connectors.names().into_iter().collect();
                names.extend(config.connectors.keys().cloned());
                names.into_iter().collect()
            }
        };
        let mut report = ReloadReport {
            ok: true,
            error: None,
            protections,
            connectors: Vec::new(),
        };
        for name in names {
            let result = self.reload_connector(&config, &name, started).await;
            if result.outcome == Outcome::Refused {
                report.ok = false;
            }
            self.remember(&result);
            report.connectors.push(result);
        }
        report
    }

    async fn reload_connector(
        &self,
        config: &Config,
        name: &str,
        started: Instant,
    ) -> ConnectorReload {
        let running = self.connectors.get(name);
        let Some(settings) = config.connectors.get(name) else {
            return match running {
                Some(handle) => self.remove(name, &handle, started),
                None => {
                    let reason = format!(
                        "no connector named '{name}' in {}",
                        self.config_path.display()
                    );
                    self.refusal(name, "", reason, started)
                }
            };
        };
        let pipelines = self.pipelines.get();
        if let Some(sink) = settings
            .sinks
            .iter()
            .find(|sink| pipelines.is_some_and(|p| !p.has_sink(sink)))
        {
            let reason = format!("sink '{sink}' is new; adding a sink needs a restart for now");
            return self.refusal(name, "", reason, started);
        }
        let Some(handle) = running else {
            return self.add(config, name, settings, started).await;
        };
        let from = handle.runtime.current().plugin().sha256.clone();
        let serving = self.serving_settings(name);
        let restart_pipeline = serving
            .as_ref()
            .is_some_and(|serving| pipeline_settings(serving) != pipeline_settings(settings));
        let path = config.resolve(&settings.plugin);
        let on_disk = match std::fs::read(&path) {
            Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
            Err(error) => {
                let reason = format!("cannot read plugin {}: {error}", path.display());
                return self.refusal(name, &from, reason, started);
            }
        };
        if serving.as_ref() == Some(settings) && on_disk == from {
            return self.entry(name, Outcome::Unchanged, &from, &from, started);
        }
        if let Ok(mut pins) = self.pins.lock()
            && let Some((pinned_settings, pinned_sha)) = pins.get(name)
        {
            if pinned_settings.as_ref() == Some(settings) && *pinned_sha == on_disk {
                // Rolled back on purpose: the same files must not swap the version back in.
                return self.entry(name, Outcome::Unchanged, &from, &from, started);
            }
            pins.remove(name);
        }
        let candidate = match self.build_and_test(config, name, settings).await {
            Ok(candidate) => candidate,
            Err(reason) => return self.refusal(name, &from, reason, started),
        };
        let to = candidate.plugin().sha256.clone();
        handle.runtime.swap(candidate, self.clock.now_ms());
        if let Ok(mut serving) = self.serving.lock()
            && let Some(entry) = serving.get_mut(name)
        {
            let previous = std::mem::replace(&mut entry.0, settings.clone());
            entry.1 = Some(previous);
        }
        if restart_pipeline && let Some(pipelines) = pipelines {
            drain_in_background(name, pipelines.stop(name));
            pipelines.start(&handle, settings);
        }
        tracing::info!(connector = %name, %from, %to, restart_pipeline, "swapped in a new version");
        let mut entry = self.entry(name, Outcome::Swapped, &from, &to, started);
        entry.pipeline_restarted = restart_pipeline;
        entry
    }

    /// Compiles and validates a candidate version: role exports, WIT version, instantiation,
    /// self-test.
    async fn build_and_test(
        &self,
        config: &Config,
        name: &str,
        settings: &ConnectorSettings,
    ) -> Result<crate::runtime::ConnectorRuntime, String> {
        let candidate = build_connector(
            &self.runtime,
            config,
            name,
            settings,
            self.backend.clone(),
            &self.resilience,
        )
        .await
        .map_err(|error| error.to_string())?;
        candidate
            .self_test()
            .await
            .map_err(|error| format!("plugin {}: {error}", candidate.plugin().path.display()))?;
        Ok(candidate)
    }

    /// Builds, validates and starts a connector new in the config.
    async fn add(
        &self,
        config: &Config,
        name: &str,
        settings: &ConnectorSettings,
        started: Instant,
    ) -> ConnectorReload {
        let candidate = match self.build_and_test(config, name, settings).await {
            Ok(candidate) => candidate,
            Err(reason) => return self.refusal(name, "", reason, started),
        };
        let to = candidate.plugin().sha256.clone();
        let handle = Arc::new(ConnectorHandle {
            name: name.to_string(),
            runtime: Arc::new(SwappableConnector::new(candidate, self.clock.now_ms())),
            stats: Arc::new(ConnectorStats::default()),
        });
        self.connectors.insert(handle.clone());
        if let Ok(mut serving) = self.serving.lock() {
            serving.insert(name.to_string(), (settings.clone(), None));
        }
        if let Some(pipelines) = self.pipelines.get() {
            pipelines.start(&handle, settings);
        }
        tracing::info!(connector = %name, sha256 = %to, "connector added");
        self.entry(name, Outcome::Added, "", &to, started)
    }

    /// Stops a connector gone from the config; its in-flight calls drain in the background.
    fn remove(&self, name: &str, handle: &ConnectorHandle, started: Instant) -> ConnectorReload {
        let from = handle.runtime.current().plugin().sha256.clone();
        if let Some(pipelines) = self.pipelines.get() {
            drain_in_background(name, pipelines.stop(name));
        }
        self.connectors.remove(name);
        if let Ok(mut serving) = self.serving.lock() {
            serving.remove(name);
        }
        tracing::info!(connector = %name,
            "connector removed: no new claims; in-flight calls finish; its targets stay stored");
        self.entry(name, Outcome::Removed, &from, "", started)
    }

    /// Makes `name`'s previous version current again.
    pub async fn rollback(&self, name: &str) -> ReloadReport {
        let _one = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let result = match self.connectors.get(name) {
            None => {
                let reason = format!("no connector named '{name}' is running");
                self.refusal(name, "", reason, started)
            }
            Some(handle) => {
                let from = handle.runtime.current().plugin().sha256.clone();
                if handle.runtime.rollback(self.clock.now_ms()) {
                    let mut restart_with = None;
                    if let Ok(mut serving) = self.serving.lock()
                        && let Some(entry) = serving.get_mut(name)
                        && let Some(previous) = entry.1.take()
                    {
                        if pipeline_settings(&previous) != pipeline_settings(&entry.0) {
                            restart_with = Some(previous.clone());
                        }
                        let current = std::mem::replace(&mut entry.0, previous);
                        entry.1 = Some(current);
                    }
                    if let (Some(settings), Some(pipelines)) = (restart_with, self.pipelines.get())
                    {
                        drain_in_background(name, pipelines.stop(name));
                        pipelines.start(&handle, &settings);
                    }
                    self.pin(name);
                    let to = handle.runtime.current().plugin().sha256.clone();
                    tracing::info!(connector = %name, %from, %to, "rolled back");
                    self.entry(name, Outcome::RolledBack, &from, &to, started)
                } else {
                    let reason = "there is no previous version".to_string();
                    self.refusal(name, &from, reason, started)
                }
            }
        };
        self.remember(&result);
        ReloadReport {
            ok: result.outcome != Outcome::Refused,
            error: None,
            protections: Vec::new(),
            connectors: vec![result],
        }
    }

    /// Remembers what is on disk for a rolled-back connector (see `pins`).
    fn pin(&self, name: &str) {
        let Ok(config) = Config::load(&self.config_path) else {
            return;
        };
        let settings = config.connectors.get(name).cloned();
        let on_disk = settings
            .as_ref()
            .and_then(|s| std::fs::read(config.resolve(&s.plugin)).ok())
            .map(|bytes| hex::encode(Sha256::digest(&bytes)))
            .unwrap_or_default();
        if let Ok(mut pins) = self.pins.lock() {
            pins.insert(name.to_string(), (settings, on_disk));
        }
    }

    fn serving_settings(&self, name: &str) -> Option<ConnectorSettings> {
        self.serving
            .lock()
            .ok()
            .and_then(|serving| serving.get(name).map(|(current, _)| current.clone()))
    }

    fn entry(
        &self,
        name: &str,
        outcome: Outcome,
        from: &str,
        to: &str,
        started: Instant,
    ) -> ConnectorReload {
        ConnectorReload {
            connector: name.to_string(),
            outcome,
            from: from.to_string(),
            to: to.to_string(),
            error: None,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            pipeline_restarted: false,
            at: crate::clock::rfc3339(self.clock.now_ms()),
        }
    }

    fn refusal(&self, name: &str, from: &str, error: String, started: Instant) -> ConnectorReload {
        tracing::error!(connector = %name, "reload refused; the current version keeps serving: {error}");
        let mut entry = self.entry(name, Outcome::Refused, from, from, started);
        entry.error = Some(error);
        entry
    }

    fn remember(&self, result: &ConnectorReload) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(result.connector.clone(), result.clone());
        }
    }
}

/// Lets a stopped pipeline's in-flight calls finish without holding up the reload.
fn drain_in_background(name: &str, task: Option<tokio::task::JoinHandle<()>>) {
    if let Some(task) = task {
        let name = name.to_string();
        tokio::spawn(async move {
            let _ = task.await;
            tracing::info!(connector = %name, "old pipeline drained");
        });
    }
}
