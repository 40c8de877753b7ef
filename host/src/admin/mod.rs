//! Admin HTTP port: `GET /status` (connectors and their versions, targets due, queue depth,
//! jobs done and failed, recent errors, budgets, breakers, the last reloads), `GET /healthz`,
//! and the hot-swap triggers `POST /v1/reload`, `POST /v1/connectors/{name}/reload` and
//! `POST /v1/connectors/{name}/rollback` (200 with the report when everything was applied, 422
//! with it when something was refused). It shows no secrets: the host keeps none in what it
//! reports.

use crate::clock::rfc3339;
use crate::host::HostView;
use crate::reload::{ConnectorReload, ReloadReport};
use crate::resilience::ResilienceStatus;
use crate::runtime::VersionInfo;
use crate::sinks::queue_name;
use crate::stats::{LatencySnapshot, RecentError, StatsSnapshot};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tsunagi_backends::QueueCounts;

pub fn router(view: Arc<HostView>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/v1/reload", post(reload_all))
        .route("/v1/connectors/{name}/reload", post(reload_one))
        .route("/v1/connectors/{name}/rollback", post(rollback))
        .with_state(view)
}

async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub worker_id: String,
    pub backend: &'static str,
    pub started_at: String,
    pub now: String,
    pub connectors: Vec<ConnectorStatus>,
    pub sinks: Vec<SinkStatus>,
    /// Every budget's fill and every breaker's state, counts and last probe.
    #[serde(flatten)]
    pub resilience: ResilienceStatus,
    /// The latest reload of each connector: what was swapped or why it was refused.
    pub reloads: BTreeMap<String, ConnectorReload>,
}

#[derive(Debug, Serialize)]
pub struct ConnectorStatus {
    pub name: String,
    /// The version serving now.
    pub plugin: VersionInfo,
    /// The version before it (what `tsunagi rollback` returns to).
    pub previous_plugin: Option<VersionInfo>,
    pub targets: u64,
    /// Targets due now and not claimed: the connector's queue depth.
    pub targets_due: u64,
    pub in_flight: i64,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    #[serde(flatten)]
    pub counters: StatsSnapshot,
    /// Claim to commit, over every job since the host started.
    pub latency: LatencySnapshot,
    pub last_errors: Vec<RecentError>,
}

#[derive(Debug, Serialize)]
pub struct SinkStatus {
    pub name: String,
    pub queue: QueueCounts,
}

/// Builds the status report; storage errors are reported, not hidden.
pub async fn status_report(
    view: &HostView,
) -> Result<StatusReport, tsunagi_backends::BackendError> {
    let now = view.clock.now_ms();
    let mut connectors = Vec::new();
    for handle in view.connectors.all() {
        let counters = handle.stats.snapshot();
        let (current, previous) = handle.runtime.versions();
        connectors.push(ConnectorStatus {
            name: handle.name.clone(),
            plugin: current,
            previous_plugin: previous,
            targets: view.backend.count_targets(&handle.name).await?,
            targets_due: view.backend.count_due(&handle.name, now).await?,
            in_flight: counters.in_flight,
            jobs_done: counters.polls_ok,
            jobs_failed: counters.polls_failed,
            counters,
            latency: handle.stats.latency(),
            last_errors: handle.stats.recent_errors(),
        });
    }
    let mut sinks = Vec::new();
    for name in &view.sinks {
        sinks.push(SinkStatus {
            name: name.clone(),
            queue: view.backend.queue_counts(&queue_name(name)).await?,
        });
    }
    Ok(StatusReport {
        worker_id: view.worker_id.clone(),
        backend: view.backend.kind(),
        started_at: rfc3339(view.started_at),
        now: rfc3339(now),
        connectors,
        sinks,
        resilience: view.resilience.status().await,
        reloads: view.reloader.last_reloads(),
    })
}

async fn status(State(view): State<Arc<HostView>>) -> axum::response::Response {
    match status_report(&view).await {
        Ok(report) => Json(report).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("status unavailable: {error}\n"),
        )
            .into_response(),
    }
}

fn report_response(report: ReloadReport) -> axum::response::Response {
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, Json(report)).into_response()
}

async fn reload_all(State(view): State<Arc<HostView>>) -> axum::response::Response {
    report_response(view.reloader.reload(None).await)
}

async fn reload_one(
    State(view): State<Arc<HostView>>,
    Path(name): Path<String>,
) -> axum::response::Response {
    report_response(view.reloader.reload(Some(&name)).await)
}

async fn rollback(
    State(view): State<Arc<HostView>>,
    Path(name): Path<String>,
) -> axum::response::Response {
    report_response(view.reloader.rollback(&name).await)
}
