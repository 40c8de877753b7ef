//! Reload: the hot-swap pipeline, from a trigger to a new version serving.
//!
//! A reload re-reads the config file (an invalid file is refused whole: nothing changes), and
//! for each connector whose settings or plugin file changed: compiles the plugin off the async
//! threads (wasmtime's compile cache makes a repeat cheap), validates it (the role's exports,
//! the WIT version, one real instantiation and the plugin's optional `self-test` export), and
//! only then swaps it in atomically (see [`crate::runtime::SwappableConnector`]). A connector
//! whose new version fails any step keeps serving the old one, and the report says why — to
//! `tsunagi reload`, the admin API, `/status` and the log. Unchanged connectors are not touched.
//!
//! Reloads run one at a time. Triggers: a change to the config or a plugin file (see `watch`,
//! unless `host.watch = false`), `tsunagi reload`, `POST /v1/reload`,
//! `POST /v1/connectors/{name}/reload`, SIGHUP.

mod watch;

pub use watch::{DEBOUNCE, spawn_watcher};

use crate::clock::SharedClock;
use crate::config::{Config, ConnectorSettings};
use crate::host::build_connector;
use crate::resilience::Resilience;
use crate::runtime::{Runtime, SwappableConnector};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorReload {
    pub connector: String,
    pub outcome: Outcome,
    /// sha256 of the version serving before, and after.
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From the trigger to the new version serving (or to the refusal).
    pub took_ms: u64,
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
    pub connectors: Vec<ConnectorReload>,
}

impl ReloadReport {
    fn refused_whole(error: String) -> Self {
        Self {
            ok: false,
            error: Some(error),
            connectors: Vec::new(),
        }
    }
}

/// Settings a running pipeline was started with; changing them needs a restart for now.
fn pipeline_settings(settings: &ConnectorSettings) -> impl PartialEq + '_ {
    (
        settings.role,
        settings.concurrency,
        &settings.schedule,
        &settings.retry,
        &settings.sinks,
    )
}

/// The host's reloader; one per running host.
pub struct Reloader {
    config_path: PathBuf,
    runtime: Arc<Runtime>,
    backend: Arc<dyn Backend>,
    resilience: Arc<Resilience>,
    clock: SharedClock,
    connectors: BTreeMap<String, Arc<SwappableConnector>>,
    /// The settings each connector's current and previous version were built from.
    serving: Mutex<BTreeMap<String, (ConnectorSettings, Option<ConnectorSettings>)>>,
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
        connectors: BTreeMap<String, Arc<SwappableConnector>>,
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
            serving: Mutex::new(serving),
            last: Mutex::new(BTreeMap::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
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
                return ReloadReport::refused_whole(message);
            }
        };
        let names: Vec<String> = match only {
            Some(name) => vec![name.to_string()],
            None => self.connectors.keys().cloned().collect(),
        };
        let mut report = ReloadReport {
            ok: true,
            error: None,
            connectors: Vec::new(),
        };
        for name in &config.connectors {
            if !self.connectors.contains_key(name.0) {
                report.ok = false;
                report.error = Some(format!(
                    "connector '{}' is new; adding a connector needs a restart for now",
                    name.0
                ));
            }
        }
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
        let Some(connector) = self.connectors.get(name) else {
            return self.refusal(
                name,
                "",
                format!("no connector named '{name}' is running"),
                started,
            );
        };
        let from = connector.current().plugin().sha256.clone();
        let Some(settings) = config.connectors.get(name) else {
            return self.refusal(
                name,
                &from,
                format!(
                    "'{name}' is no longer in {}; removing a connector needs a restart for now",
                    self.config_path.display()
                ),
                started,
            );
        };
        let serving = self
            .serving
            .lock()
            .ok()
            .and_then(|serving| serving.get(name).map(|(current, _)| current.clone()));
        if let Some(serving) = &serving
            && pipeline_settings(serving) != pipeline_settings(settings)
        {
            return self.refusal(
                name,
                &from,
                "role, concurrency, schedule, retry or sinks changed; those apply after a \
                 restart for now (nothing was swapped)"
                    .to_string(),
                started,
            );
        }
        let path = config.resolve(&settings.plugin);
        let on_disk = match std::fs::read(&path) {
            Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
            Err(error) => {
                return self.refusal(
                    name,
                    &from,
                    format!("cannot read plugin {}: {error}", path.display()),
                    started,
                );
            }
        };
        if serving.as_ref() == Some(settings) && on_disk == from {
            return ConnectorReload {
                connector: name.to_string(),
                outcome: Outcome::Unchanged,
                to: from.clone(),
                from,
                error: None,
                took_ms: elapsed_ms(started),
                at: crate::clock::rfc3339(self.clock.now_ms()),
            };
        }
        let built = build_connector(
            &self.runtime,
            config,
            name,
            settings,
            self.backend.clone(),
            &self.resilience,
        )
        .await;
        let candidate = match built {
            Ok(candidate) => candidate,
            Err(error) => return self.refusal(name, &from, error.to_string(), started),
        };
        if let Err(error) = candidate.self_test().await {
            return self.refusal(
                name,
                &from,
                format!("plugin {}: {error}", path.display()),
                started,
            );
        }
        let to = candidate.plugin().sha256.clone();
        connector.swap(candidate, self.clock.now_ms());
        if let Ok(mut serving) = self.serving.lock()
            && let Some(entry) = serving.get_mut(name)
        {
            let previous = std::mem::replace(&mut entry.0, settings.clone());
            entry.1 = Some(previous);
        }
        tracing::info!(connector = %name, %from, %to, "swapped in a new version");
        ConnectorReload {
            connector: name.to_string(),
            outcome: Outcome::Swapped,
            from,
            to,
            error: None,
            took_ms: elapsed_ms(started),
            at: crate::clock::rfc3339(self.clock.now_ms()),
        }
    }

    /// Makes `name`'s previous version current again.
    pub async fn rollback(&self, name: &str) -> ReloadReport {
        let _one = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let result = match self.connectors.get(name) {
            None => self.refusal(
                name,
                "",
                format!("no connector named '{name}' is running"),
                started,
            ),
            Some(connector) => {
                let from = connector.current().plugin().sha256.clone();
                if connector.rollback(self.clock.now_ms()) {
                    if let Ok(mut serving) = self.serving.lock()
                        && let Some(entry) = serving.get_mut(name)
                        && let Some(previous) = entry.1.take()
                    {
                        let current = std::mem::replace(&mut entry.0, previous);
                        entry.1 = Some(current);
                    }
                    let to = connector.current().plugin().sha256.clone();
                    tracing::info!(connector = %name, %from, %to, "rolled back");
                    ConnectorReload {
                        connector: name.to_string(),
                        outcome: Outcome::RolledBack,
                        from,
                        to,
                        error: None,
                        took_ms: elapsed_ms(started),
                        at: crate::clock::rfc3339(self.clock.now_ms()),
                    }
                } else {
                    self.refusal(
                        name,
                        &from,
                        "there is no previous version".to_string(),
                        started,
                    )
                }
            }
        };
        self.remember(&result);
        ReloadReport {
            ok: result.outcome != Outcome::Refused,
            error: None,
            connectors: vec![result],
        }
    }

    fn refusal(&self, name: &str, from: &str, error: String, started: Instant) -> ConnectorReload {
        tracing::error!(connector = %name, "reload refused; the current version keeps serving: {error}");
        ConnectorReload {
            connector: name.to_string(),
            outcome: Outcome::Refused,
            from: from.to_string(),
            to: from.to_string(),
            error: Some(error),
            took_ms: elapsed_ms(started),
            at: crate::clock::rfc3339(self.clock.now_ms()),
        }
    }

    fn remember(&self, result: &ConnectorReload) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(result.connector.clone(), result.clone());
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
