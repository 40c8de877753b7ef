//! Hot swap: one connector's current [`ConnectorRuntime`] behind an atomic pointer.
//!
//! A call loads the current runtime once and keeps that `Arc` until it ends, so in-flight calls
//! finish on the version they started with while new calls get the new one, and nothing waits
//! for anything: the swap itself is one pointer store. The runtime swapped out is kept (with its
//! idle instances dropped) as the previous version, for rollback and for `/status`.

use super::TargetCall;
use super::pool::{CallOutcome, ConnectorRuntime};
use crate::workers::TargetPoller;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tsunagi_backends::Millis;

/// A loaded version of a connector, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub sha256: String,
    pub path: String,
    pub size: usize,
    /// When this version started serving (RFC 3339).
    pub loaded_at: String,
}

struct Loaded {
    runtime: Arc<ConnectorRuntime>,
    loaded_at: Millis,
}

/// A connector whose runtime can be replaced while calls run.
pub struct SwappableConnector {
    current: ArcSwap<ConnectorRuntime>,
    /// The current version's load time, and the version before it.
    history: Mutex<(Millis, Option<Loaded>)>,
}

impl SwappableConnector {
    pub fn new(runtime: ConnectorRuntime, loaded_at: Millis) -> Self {
        Self {
            current: ArcSwap::from_pointee(runtime),
            history: Mutex::new((loaded_at, None)),
        }
    }

    /// The runtime new calls use.
    pub fn current(&self) -> Arc<ConnectorRuntime> {
        self.current.load_full()
    }

    /// Makes `runtime` current; the one it replaces becomes the previous version.
    pub fn swap(&self, runtime: ConnectorRuntime, now: Millis) {
        let mut history = self.lock_history();
        let old = self.current.swap(Arc::new(runtime));
        old.retire();
        let old_loaded_at = std::mem::replace(&mut history.0, now);
        history.1 = Some(Loaded {
            runtime: old,
            loaded_at: old_loaded_at,
        });
    }

    /// Makes the previous version current again (and the current one previous). False when
    /// there is no previous version.
    pub fn rollback(&self, now: Millis) -> bool {
        let mut history = self.lock_history();
        let Some(previous) = history.1.take() else {
            return false;
        };
        previous.runtime.reinstate();
        let replaced = self.current.swap(previous.runtime);
        replaced.retire();
        let replaced_loaded_at = std::mem::replace(&mut history.0, now);
        history.1 = Some(Loaded {
            runtime: replaced,
            loaded_at: replaced_loaded_at,
        });
        true
    }

    /// The current and the previous version.
    pub fn versions(&self) -> (VersionInfo, Option<VersionInfo>) {
        let history = self.lock_history();
        let current = version_info(&self.current.load(), history.0);
        let previous = history
            .1
            .as_ref()
            .map(|loaded| version_info(&loaded.runtime, loaded.loaded_at));
        (current, previous)
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, (Millis, Option<Loaded>)> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn version_info(runtime: &ConnectorRuntime, loaded_at: Millis) -> VersionInfo {
    let plugin = runtime.plugin();
    VersionInfo {
        sha256: plugin.sha256.clone(),
        path: plugin.path.display().to_string(),
        size: plugin.size,
        loaded_at: crate::clock::rfc3339(loaded_at),
    }
}

#[async_trait]
impl TargetPoller for SwappableConnector {
    async fn poll(
        &self,
        call: TargetCall,
        etag: Option<String>,
        last_modified: Option<String>,
        cursor: Option<String>,
    ) -> CallOutcome {
        // Held for the whole call: a swap meanwhile does not touch this call's version.
        let runtime = self.current();
        runtime.poll(call, etag, last_modified, cursor).await
    }
}
