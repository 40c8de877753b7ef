//! The interface through which the outside watches and steers a running topology: the admin
//! API, SIGHUP and the CLI use it, so the topology never depends on them. Endpoints to come
//! (jobs, searches, dead letters) add a method here and an implementation in the topology.

use super::{ReloadReport, StatusReport, Topology};
use async_trait::async_trait;
use tsunagi_backends::BackendError;

#[async_trait]
pub trait Control: Send + Sync {
    /// Connectors and their versions, queues, budgets, breakers and the last reloads.
    async fn status(&self) -> Result<StatusReport, BackendError>;
    /// Swaps in what changed: `only` that connector, or every one whose settings or plugin
    /// changed.
    async fn reload(&self, only: Option<&str>) -> ReloadReport;
    /// Returns `connector` to its previous version.
    async fn rollback(&self, connector: &str) -> ReloadReport;
    /// Whether the host should be sent work: its pipelines run and its store answers. `Err`
    /// says why not.
    async fn ready(&self) -> Result<(), String>;
    /// Lifts `connector`'s pause (`pause_on_problem`): `Ok(true)` when it was paused, `Err`
    /// when there is no such connector.
    async fn resume(&self, connector: &str) -> Result<bool, String> {
        Err(format!("cannot resume '{connector}' here"))
    }
}

#[async_trait]
impl Control for Topology {
    async fn status(&self) -> Result<StatusReport, BackendError> {
        self.status_report().await
    }

    async fn reload(&self, only: Option<&str>) -> ReloadReport {
        self.reloader.reload(only).await
    }

    async fn rollback(&self, connector: &str) -> ReloadReport {
        self.reloader.rollback(connector).await
    }

    async fn resume(&self, connector: &str) -> Result<bool, String> {
        let handle = self
            .connectors
            .get(connector)
            .ok_or_else(|| format!("no connector '{connector}'"))?;
        let was_paused = handle.stats.resume();
        if was_paused {
            tracing::info!(%connector, "resumed by an operator");
        }
        Ok(was_paused)
    }

    async fn ready(&self) -> Result<(), String> {
        if self.stop_requested() {
            return Err("draining: the host is stopping".into());
        }
        // Any cheap read proves the store answers.
        self.backend
            .count_targets("")
            .await
            .map(|_| ())
            .map_err(|error| format!("the store does not answer: {error}"))
    }
}
