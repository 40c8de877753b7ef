//! The reloader: carries out a [`ReloadPlan`], from a trigger to a new version serving.
//!
//! A reload re-reads the config file (an invalid file is refused whole: nothing changes),
//! applies budgets and breakers, hashes each plugin file, and plans. Then for each step: a swap
//! compiles the plugin off the async threads (wasmtime's compile cache makes a repeat cheap),
//! validates it (the role's exports, the WIT version, one real instantiation and the plugin's
//! optional `self-test` export), and only then swaps it in atomically (see
//! [`crate::runtime::SwappableConnector`]), restarting the pipeline when the plan says so; an
//! add builds, validates and starts; a remove stops claiming and drains. A connector whose new
//! version fails any step keeps serving the old one, and the report says why — to
//! `tsunagi reload`, the admin API, `/status` and the log.
//!
//! A connector whose egress rules change (swapped in, rolled back, or added again) has its
//! policy-refused targets released: they are due at once, and parked again if still refused.
//!
//! Under a cluster (`[backends] cluster`), the config a reload reads is the host's file under
//! the revision it runs (see [`crate::cluster`]): the pushed config's text and pushed plugins,
//! so a local reload never undoes a push. A push is checked first with
//! [`Reloader::check_overlay`], which builds and self-tests without swapping anything.
//!
//! Reloads run one at a time. Triggers: a change to the config or a plugin file (see `watch`,
//! unless `host.watch = false`), `tsunagi reload`, `POST /v1/reload`,
//! `POST /v1/connectors/{name}/reload`, SIGHUP.

use super::plan::{Pin, PlanInput, Refusal, ReloadPlan, Serving, Step, same_pipeline};
use super::{BuildError, ConnectorHandle, ConnectorSet, PipelineSet, build_connector};
use crate::clock::SharedClock;
use crate::cluster::{Applied, ConnectorApplied, Overlay};
use crate::config::{Config, ConfigErrors, ConnectorSettings};
use crate::retention::Retention;
use crate::runtime::{Engine, InstancePool, SelfTestError, SwappableConnector};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

impl Outcome {
    /// As `/status` names it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Swapped => "swapped",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
            Outcome::RolledBack => "rolled_back",
            Outcome::Added => "added",
            Outcome::Removed => "removed",
        }
    }
}

/// How many reload results the counts keep apart (connector × outcome); past it, results are
/// counted under the connector `other`, so a config that keeps renaming connectors cannot grow
/// them without bound.
const RELOAD_COUNTS_KEPT: usize = 4096;

/// Why a reload (or one connector's part of it) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config refused, nothing changed: {0}")]
    Config(#[source] ConfigErrors),
    #[error("no connector named '{name}' in {}", config.display())]
    UnknownConnector { name: String, config: PathBuf },
    #[error("no connector named '{0}' is running")]
    NotRunning(String),
    #[error("sink '{0}' is new; adding a sink needs a restart for now")]
    NewSink(String),
    #[error("cannot read plugin {}: {reason}", path.display())]
    PluginUnreadable { path: PathBuf, reason: String },
    #[error(
        "the connectors would need {needed} instance slots (2 per unit of concurrency), but the \
         engine was sized for {capacity} when the host started; lower concurrency, or raise \
         host.instance_slots and restart"
    )]
    InstanceSlots { needed: u64, capacity: u32 },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("plugin {}: {source}", path.display())]
    SelfTest {
        path: PathBuf,
        #[source]
        source: SelfTestError,
    },
    #[error("there is no previous version")]
    NoPreviousVersion,
    #[error(
        "{0}: changed; which store serves budgets and rankings is fixed when the host starts \
         (running work is not moved between stores): restart the host to apply it"
    )]
    Backends(crate::config::FieldLocation),
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
    /// Targets parked by the egress policy that the changed rules made due again.
    #[serde(skip_serializing_if = "is_zero")]
    pub released_refused: u64,
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

impl ReloadReport {
    fn refused_whole(error: &ReloadError) -> Self {
        tracing::error!("reload: {error}");
        Self {
            ok: false,
            error: Some(error.to_string()),
            protections: Vec::new(),
            connectors: Vec::new(),
        }
    }
}

/// The settings a connector's current and previous version were built from.
#[derive(Debug, Clone)]
struct SettingsHistory {
    current: ConnectorSettings,
    previous: Option<ConnectorSettings>,
}

/// The topology's reloader.
pub struct Reloader {
    config_path: PathBuf,
    engine: Arc<Engine>,
    /// What new versions of connectors are built with.
    parts: super::HostParts,
    /// Takes each valid config's retention rules; none in tests of the reloader alone.
    retention: Option<Arc<Retention>>,
    clock: SharedClock,
    connectors: Arc<ConnectorSet>,
    pipelines: Arc<PipelineSet>,
    settings: Mutex<BTreeMap<String, SettingsHistory>>,
    pins: Mutex<BTreeMap<String, Pin>>,
    last: Mutex<BTreeMap<String, ConnectorReload>>,
    /// Reload results since the start, by connector and outcome.
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
    one_at_a_time: tokio::sync::Mutex<()>,
    /// `[backends]` as the host started with it: stores are not swapped under running work.
    backends: crate::config::backends::BackendSettings,
    /// The cluster revision this host runs on top of its config file (none pushed: empty).
    overlay: Mutex<Overlay>,
}

impl Reloader {
    pub(super) fn new(
        config: &Config,
        engine: Arc<Engine>,
        parts: super::HostParts,
        connectors: Arc<ConnectorSet>,
        pipelines: Arc<PipelineSet>,
    ) -> Self {
        // The clock budgets and breakers run on is the reloader's too.
        let clock = parts.resilience.clock().clone();
        let settings = config
            .connectors
            .iter()
            .map(|(name, settings)| {
                let history = SettingsHistory {
                    current: settings.clone(),
                    previous: None,
                };
                (name.clone(), history)
            })
            .collect();
        Self {
            config_path: config.source_path.clone(),
            engine,
            parts,
            retention: None,
            clock,
            connectors,
            pipelines,
            settings: Mutex::new(settings),
            pins: Mutex::new(BTreeMap::new()),
            last: Mutex::new(BTreeMap::new()),
            counts: Mutex::new(BTreeMap::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
            backends: config.backends.clone(),
            overlay: Mutex::new(Overlay::default()),
        }
    }

    /// The host started under `overlay` (a cluster revision).
    pub(super) fn with_overlay(self, overlay: Overlay) -> Self {
        *lock(&self.overlay) = overlay;
        self
    }

    /// The config as it applies now: the file, under the cluster revision this host runs.
    fn load(&self) -> Result<Config, ConfigErrors> {
        let overlay = lock(&self.overlay).clone();
        overlay.config(&self.config_path)
    }

    /// Hands each reloaded config's retention rules to `retention`.
    pub(super) fn with_retention(mut self, retention: Arc<Retention>) -> Self {
        self.retention = Some(retention);
        self
    }

    /// The latest reload of each connector, for `/status`.
    pub fn last_reloads(&self) -> BTreeMap<String, ConnectorReload> {
        lock(&self.last).clone()
    }

    /// Reloads `only` that connector, or every connector whose settings or plugin changed.
    pub async fn reload(&self, only: Option<&str>) -> ReloadReport {
        let _one = self.one_at_a_time.lock().await;
        self.reload_now(only).await
    }

    /// Runs the cluster's revision `overlay` from now on, on top of the config file; a revision
    /// refused whole leaves the one before in place.
    pub async fn apply_overlay(&self, overlay: Overlay) -> ReloadReport {
        let _one = self.one_at_a_time.lock().await;
        let before = std::mem::replace(&mut *lock(&self.overlay), overlay);
        let report = self.reload_now(None).await;
        if report.error.is_some() {
            *lock(&self.overlay) = before;
        }
        report
    }

    /// What [`Reloader::apply_overlay`] would do, changing nothing: each connector that would
    /// be swapped in or added is built, instantiated and self-tested, then dropped.
    pub async fn check_overlay(&self, overlay: &Overlay) -> ReloadReport {
        let started = Instant::now();
        let config = match overlay.config(&self.config_path) {
            Ok(config) => config,
            Err(error) => return ReloadReport::refused_whole(&ReloadError::Config(error)),
        };
        let plan = self.plan(&config, None);
        let mut report = ReloadReport {
            ok: true,
            error: None,
            protections: Vec::new(),
            connectors: Vec::new(),
        };
        for planned in &plan.steps {
            let name = planned.connector.as_str();
            let from = self
                .connectors
                .get(name)
                .map(|handle| handle.sha256())
                .unwrap_or_default();
            let settings = config.connectors.get(name);
            let result = match (&planned.step, settings) {
                (Step::Refuse(refusal), _) => {
                    let error = self.refusal_error(&config, name, refusal);
                    self.refusal(name, &from, &error, started)
                }
                (Step::Add | Step::Swap { .. }, Some(settings)) => {
                    match self.build_and_test(&config, name, settings).await {
                        Ok(candidate) => {
                            let outcome = if matches!(planned.step, Step::Add) {
                                Outcome::Added
                            } else {
                                Outcome::Swapped
                            };
                            let to = candidate.plugin().sha256.clone();
                            self.entry(name, outcome, &from, &to, started)
                        }
                        Err(error) => self.refusal(name, &from, &error, started),
                    }
                }
                (Step::Remove, _) => self.entry(name, Outcome::Removed, &from, "", started),
                _ => self.entry(name, Outcome::Unchanged, &from, &from, started),
            };
            report.ok &= result.outcome != Outcome::Refused;
            report.connectors.push(result);
        }
        report
    }

    async fn reload_now(&self, only: Option<&str>) -> ReloadReport {
        let started = Instant::now();
        let config = match self.load() {
            Ok(config) => config,
            Err(error) => return ReloadReport::refused_whole(&ReloadError::Config(error)),
        };
        if config.backends != self.backends {
            return ReloadReport::refused_whole(&ReloadError::Backends(config.locate("backends")));
        }
        // Budgets and breakers first: a connector's new allow rules may name new ones.
        let protections = match self.parts.resilience.apply(&config) {
            Ok(changes) => changes,
            Err(error) => {
                return ReloadReport::refused_whole(&ReloadError::Config(error.into()));
            }
        };
        // Retention is the host's, not the plugin's: a valid config's rules apply at once.
        if let Some(retention) = &self.retention {
            retention.apply(&config);
        }
        self.pipelines.searches().apply(&config.search);
        self.parts.rankings.apply(&config);
        let plan = self.plan(&config, only);
        let mut report = ReloadReport {
            ok: true,
            error: None,
            protections,
            connectors: Vec::new(),
        };
        for planned in &plan.steps {
            let result = self
                .carry_out(&config, &planned.connector, &planned.step, started)
                .await;
            if result.outcome == Outcome::Refused {
                report.ok = false;
            }
            self.remember(&result);
            report.connectors.push(result);
        }
        report
    }

    /// What a reload to `config` would do, from what serves now.
    fn plan(&self, config: &Config, only: Option<&str>) -> ReloadPlan {
        let serving: BTreeMap<String, Serving> = {
            let settings = lock(&self.settings);
            self.connectors
                .all()
                .into_iter()
                .filter_map(|handle| {
                    let history = settings.get(&handle.name)?;
                    let serving = Serving {
                        settings: history.current.clone(),
                        sha256: handle.sha256(),
                    };
                    Some((handle.name.clone(), serving))
                })
                .collect()
        };
        let on_disk = config
            .connectors
            .iter()
            .filter(|(name, _)| only.is_none_or(|only| only == name.as_str()))
            .map(|(name, settings)| {
                let sha256 = file_sha256(&config.resolve(&settings.plugin));
                (name.clone(), sha256)
            })
            .collect();
        let pins = lock(&self.pins).clone();
        let sinks: BTreeSet<String> = self.pipelines.sink_names().cloned().collect();
        ReloadPlan::new(PlanInput {
            serving: &serving,
            config: &config.connectors,
            on_disk: &on_disk,
            pins: &pins,
            sinks: &sinks,
            only,
            instance_slots: u32::try_from(
                u64::from(self.engine.instance_slots()).saturating_sub(super::SELF_TEST_SLOTS),
            )
            .unwrap_or(0),
        })
    }

    async fn carry_out(
        &self,
        config: &Config,
        name: &str,
        step: &Step,
        started: Instant,
    ) -> ConnectorReload {
        if !step.keeps_pin() {
            lock(&self.pins).remove(name);
        }
        let running = self.connectors.get(name);
        let from = running.as_ref().map(|h| h.sha256()).unwrap_or_default();
        let settings = config.connectors.get(name);
        let refused = |error: ReloadError| self.refusal(name, &from, &error, started);
        match (step, settings, running) {
            (Step::Refuse(refusal), _, _) => refused(self.refusal_error(config, name, refusal)),
            (Step::Unchanged | Step::Pinned, _, _) => {
                self.entry(name, Outcome::Unchanged, &from, &from, started)
            }
            (Step::Remove, _, _) => {
                self.pipelines.stop(name);
                self.connectors.remove(name);
                lock(&self.settings).remove(name);
                tracing::info!(connector = %name,
                    "connector removed: no new claims; in-flight calls finish; its targets stay stored");
                self.entry(name, Outcome::Removed, &from, "", started)
            }
            (Step::Add, Some(settings), _) => {
                match self.build_and_test(config, name, settings).await {
                    Err(error) => refused(error),
                    Ok(pool) => {
                        // Targets stay stored while a connector is gone; its rules may have
                        // changed meanwhile.
                        let released = self.release_refused(name).await;
                        let to = pool.plugin().sha256.clone();
                        let versions = SwappableConnector::new(pool, self.clock.now_ms());
                        let handle = Arc::new(ConnectorHandle::new(name, versions));
                        self.connectors.insert(handle.clone());
                        lock(&self.settings).insert(
                            name.to_string(),
                            SettingsHistory {
                                current: settings.clone(),
                                previous: None,
                            },
                        );
                        self.pipelines.start(&handle, settings);
                        tracing::info!(connector = %name, sha256 = %to, "connector added");
                        let mut entry = self.entry(name, Outcome::Added, "", &to, started);
                        entry.released_refused = released;
                        entry
                    }
                }
            }
            (Step::Swap { restart_pipeline }, Some(settings), Some(handle)) => {
                match self.build_and_test(config, name, settings).await {
                    Err(error) => refused(error),
                    Ok(pool) => {
                        let to = pool.plugin().sha256.clone();
                        let egress_changed = lock(&self.settings)
                            .get(name)
                            .is_none_or(|history| history.current.egress != settings.egress);
                        handle.versions.swap(pool, self.clock.now_ms());
                        if let Some(history) = lock(&self.settings).get_mut(name) {
                            let previous =
                                std::mem::replace(&mut history.current, settings.clone());
                            history.previous = Some(previous);
                        }
                        if *restart_pipeline {
                            self.pipelines.start(&handle, settings);
                        }
                        tracing::info!(connector = %name, %from, %to, restart_pipeline,
                            "swapped in a new version");
                        let mut entry = self.entry(name, Outcome::Swapped, &from, &to, started);
                        entry.pipeline_restarted = *restart_pipeline;
                        if egress_changed {
                            entry.released_refused = self.release_refused(name).await;
                        }
                        entry
                    }
                }
            }
            // The plan was made from the same config and connector set.
            (Step::Add | Step::Swap { .. }, _, _) => {
                refused(ReloadError::NotRunning(name.to_string()))
            }
        }
    }

    fn refusal_error(&self, config: &Config, name: &str, refusal: &Refusal) -> ReloadError {
        match refusal {
            Refusal::UnknownConnector => ReloadError::UnknownConnector {
                name: name.to_string(),
                config: self.config_path.clone(),
            },
            Refusal::NewSink(sink) => ReloadError::NewSink(sink.clone()),
            Refusal::PluginUnreadable(reason) => ReloadError::PluginUnreadable {
                path: config
                    .connectors
                    .get(name)
                    .map_or_else(PathBuf::new, |s| config.resolve(&s.plugin)),
                reason: reason.clone(),
            },
            Refusal::InstanceSlots { needed, capacity } => ReloadError::InstanceSlots {
                needed: *needed,
                capacity: *capacity,
            },
        }
    }

    /// Compiles and validates a candidate version: role exports, WIT version, instantiation,
    /// self-test.
    async fn build_and_test(
        &self,
        config: &Config,
        name: &str,
        settings: &ConnectorSettings,
    ) -> Result<InstancePool, ReloadError> {
        let candidate = build_connector(&self.engine, config, name, settings, &self.parts).await?;
        candidate
            .self_test()
            .await
            .map_err(|source| ReloadError::SelfTest {
                path: candidate.plugin().path.clone(),
                source,
            })?;
        Ok(candidate)
    }

    /// Makes `name`'s previous version current again, and pins it there until its files
    /// change.
    pub async fn rollback(&self, name: &str) -> ReloadReport {
        let _one = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let result = match self.connectors.get(name) {
            None => {
                let error = ReloadError::NotRunning(name.to_string());
                self.refusal(name, "", &error, started)
            }
            Some(handle) => {
                let from = handle.sha256();
                if handle.versions.rollback(self.clock.now_ms()) {
                    let mut restart_with = None;
                    let mut egress_changed = false;
                    if let Some(history) = lock(&self.settings).get_mut(name)
                        && let Some(previous) = history.previous.take()
                    {
                        if !same_pipeline(&previous, &history.current) {
                            restart_with = Some(previous.clone());
                        }
                        egress_changed = previous.egress != history.current.egress;
                        let current = std::mem::replace(&mut history.current, previous);
                        history.previous = Some(current);
                    }
                    if let Some(settings) = restart_with {
                        self.pipelines.start(&handle, &settings);
                    }
                    self.pin(name);
                    let to = handle.sha256();
                    tracing::info!(connector = %name, %from, %to, "rolled back");
                    let mut entry = self.entry(name, Outcome::RolledBack, &from, &to, started);
                    if egress_changed {
                        entry.released_refused = self.release_refused(name).await;
                    }
                    entry
                } else {
                    self.refusal(name, &from, &ReloadError::NoPreviousVersion, started)
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

    /// Remembers what is on disk for a rolled-back connector (see [`Pin`]).
    fn pin(&self, name: &str) {
        let Ok(config) = self.load() else {
            return;
        };
        let settings = config.connectors.get(name).cloned();
        let sha256 = settings
            .as_ref()
            .and_then(|s| file_sha256(&config.resolve(&s.plugin)).ok())
            .unwrap_or_default();
        lock(&self.pins).insert(name.to_string(), Pin { settings, sha256 });
    }

    /// Makes `name`'s policy-refused targets due now: its egress rules changed, so the
    /// refusal may no longer hold (a target still refused is parked again by its next call).
    async fn release_refused(&self, name: &str) -> u64 {
        match self
            .parts
            .backend
            .release_refused(name, self.clock.now_ms())
            .await
        {
            Ok(released) => {
                if released > 0 {
                    tracing::info!(connector = %name, released,
                        "egress rules changed: targets the old rules refused are due again");
                }
                released
            }
            Err(error) => {
                tracing::error!(connector = %name,
                    "cannot release the targets the old egress rules refused: {error}");
                0
            }
        }
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
            released_refused: 0,
            at: crate::clock::rfc3339(self.clock.now_ms()),
        }
    }

    fn refusal(
        &self,
        name: &str,
        from: &str,
        error: &ReloadError,
        started: Instant,
    ) -> ConnectorReload {
        tracing::error!(connector = %name, "reload refused; the current version keeps serving: {error}");
        let mut entry = self.entry(name, Outcome::Refused, from, from, started);
        // Kept for `/status`: capped, as a plugin's self-test writes part of it.
        entry.error = Some(tsunagi_backends::cap_error(&error.to_string()).into_owned());
        entry
    }

    fn remember(&self, result: &ConnectorReload) {
        lock(&self.last).insert(result.connector.clone(), result.clone());
        let mut counts = lock(&self.counts);
        let mut key = (result.connector.clone(), result.outcome.as_str());
        if counts.len() >= RELOAD_COUNTS_KEPT && !counts.contains_key(&key) {
            key.0 = "other".to_string();
        }
        *counts.entry(key).or_default() += 1;
    }

    /// Reload results since the start: (connector, outcome, how many).
    pub fn reload_counts(&self) -> Vec<(String, &'static str, u64)> {
        lock(&self.counts)
            .iter()
            .map(|((connector, outcome), count)| (connector.clone(), *outcome, *count))
            .collect()
    }
}

/// The cluster applies its revisions through the reloader.
#[async_trait::async_trait]
impl crate::cluster::Apply for Reloader {
    async fn check(&self, overlay: &Overlay) -> Applied {
        applied(self.check_overlay(overlay).await)
    }

    async fn apply(&self, overlay: Overlay) -> Applied {
        applied(self.apply_overlay(overlay).await)
    }

    fn shared_code(&self, sha256: &str) -> Option<crate::runtime::SharedCode> {
        self.engine.shared_code(sha256)
    }

    fn has_code(&self, sha256: &str) -> bool {
        self.engine.has_code(sha256)
    }

    fn code_tag(&self) -> Option<String> {
        self.engine.quick_code_tag().map(str::to_string)
    }

    fn adopt_code(&self, sha256: &str, bytes: &[u8], shared: &crate::runtime::SharedCode) -> bool {
        // SAFETY: the cluster checked the code's signature by the key every host holds.
        unsafe { self.engine.adopt_code(sha256, bytes, shared) }
    }
}

/// A reload's report as the cluster reports it.
fn applied(report: ReloadReport) -> Applied {
    Applied {
        ok: report.ok,
        error: report.error,
        connectors: report
            .connectors
            .into_iter()
            .map(|entry| ConnectorApplied {
                outcome: serde_json::to_value(&entry.outcome)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_string))
                    .unwrap_or_default(),
                connector: entry.connector,
                from: entry.from,
                to: entry.to,
                error: entry.error,
            })
            .collect(),
    }
}

/// The hex sha256 of a plugin file, or why it cannot be read (read as the engine reads it:
/// a regular file under the size cap).
fn file_sha256(path: &Path) -> Result<String, String> {
    match crate::runtime::read_plugin(path) {
        Ok(bytes) => Ok(crate::runtime::sha256_hex(&bytes)),
        Err(crate::runtime::LoadError::Read { source, .. }) => Err(source.to_string()),
        Err(other) => Err(other.to_string()),
    }
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
