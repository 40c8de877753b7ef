//! The running connectors and their poll pipelines, as sets the reloader can change while the
//! host runs: add a connector, remove one (its pipeline stops claiming and drains; its targets
//! and queue stay in the store for when it returns), or restart one with new schedule settings.

use super::ConnectorHandle;
use crate::clock::SharedClock;
use crate::config::{ConnectorSettings, HostSettings, Role, SinkSettings};
use crate::scheduler::PollPolicy;
use crate::sinks::queue_name;
use crate::workers::{PollPipeline, RunMode};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::{Backend, Delivery};

/// The connectors a host runs now, by name.
#[derive(Default)]
pub struct ConnectorSet {
    handles: RwLock<BTreeMap<String, Arc<ConnectorHandle>>>,
}

impl ConnectorSet {
    /// Every connector, ordered by name.
    pub fn all(&self) -> Vec<Arc<ConnectorHandle>> {
        self.read().values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<ConnectorHandle>> {
        self.read().get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    pub(crate) fn insert(&self, handle: Arc<ConnectorHandle>) {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(handle.name.clone(), handle);
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Arc<ConnectorHandle>> {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ConnectorHandle>>> {
        self.handles
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One poll pipeline per connector, each stoppable on its own.
pub struct Pipelines {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) clock: SharedClock,
    pub(super) worker_id: String,
    pub(super) host: HostSettings,
    pub(super) mode: RunMode,
    /// The sinks the host runs (deliveries to others would wait for a restart).
    pub(super) sinks: BTreeMap<String, SinkSettings>,
    /// Cancelling it stops every pipeline (shutdown); each pipeline has a child token.
    pub(super) stop_all: CancellationToken,
    pub(super) running: Mutex<BTreeMap<String, (CancellationToken, JoinHandle<()>)>>,
}

impl Pipelines {
    /// Starts `handle`'s pipeline with `settings`' schedule, retry and concurrency.
    /// Only pollers have a pipeline: handlers and searchers are loaded, validated and
    /// hot-swapped, and `tsunagi plugin test` runs them, but the host has no job queue or search
    /// endpoint feeding them yet.
    pub fn start(&self, handle: &ConnectorHandle, settings: &ConnectorSettings) {
        if settings.role != Role::Poller {
            tracing::info!(connector = %handle.name, role = %settings.role,
                "loaded; the host runs no pipeline for this role yet");
            return;
        }
        let pipeline = Arc::new(PollPipeline {
            connector: handle.name.clone(),
            backend: self.backend.clone(),
            poller: handle.runtime.clone(),
            policy: PollPolicy::from(settings),
            clock: self.clock.clone(),
            worker_id: self.worker_id.clone(),
            lease: self.host.claim_lease,
            claim_batch: self.host.claim_batch,
            idle_poll: self.host.idle_poll,
            concurrency: settings.concurrency,
            deliver_to: settings
                .sinks
                .iter()
                .map(|sink| Delivery {
                    queue: queue_name(sink),
                    max_attempts: self.sinks.get(sink).map_or(1, SinkSettings::max_attempts),
                })
                .collect(),
            stats: handle.stats.clone(),
        });
        let stop = self.stop_all.child_token();
        let task = tokio::spawn(pipeline.run(stop.clone(), self.mode, self.host.shutdown_grace));
        let replaced = self.lock().insert(handle.name.clone(), (stop, task));
        if let Some((old_stop, _)) = replaced {
            old_stop.cancel();
        }
    }

    /// Stops claiming for `name`; its in-flight calls finish (within the shutdown grace) in
    /// the returned task.
    pub fn stop(&self, name: &str) -> Option<JoinHandle<()>> {
        let (stop, task) = self.lock().remove(name)?;
        stop.cancel();
        Some(task)
    }

    /// Every pipeline task, for shutdown or to wait for them all.
    pub(super) fn take_all(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.lock())
            .into_values()
            .map(|(_, task)| task)
            .collect()
    }

    /// Whether the host delivers to this sink.
    pub fn has_sink(&self, sink: &str) -> bool {
        self.sinks.contains_key(sink)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, (CancellationToken, JoinHandle<()>)>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
