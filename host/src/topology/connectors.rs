//! The connectors a topology runs, by name: a set the reloader can change while the host runs.

use crate::runtime::SwappableConnector;
use crate::stats::ConnectorStats;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// One connector as the running topology sees it.
pub struct ConnectorHandle {
    pub name: String,
    /// The connector's current version (and the previous one); a reload swaps it while calls
    /// run.
    pub versions: Arc<SwappableConnector>,
    pub stats: Arc<ConnectorStats>,
}

impl ConnectorHandle {
    pub fn new(name: &str, versions: SwappableConnector) -> Self {
        Self {
            name: name.to_string(),
            versions: Arc::new(versions),
            stats: Arc::new(ConnectorStats::default()),
        }
    }

    /// sha256 of the version serving now.
    pub fn sha256(&self) -> String {
        self.versions.current().plugin().sha256.clone()
    }
}

/// The connectors running now, by name.
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

    pub(super) fn insert(&self, handle: Arc<ConnectorHandle>) {
        self.handles
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(handle.name.clone(), handle);
    }

    pub(super) fn remove(&self, name: &str) -> Option<Arc<ConnectorHandle>> {
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
