//! Admin HTTP API over a running topology's [`Control`]: `GET /status` (connectors and their
//! versions, targets due, queue depth, jobs done and failed, recent errors, budgets, breakers,
//! the last reloads), `GET /healthz`, and the hot-swap triggers `POST /v1/reload`,
//! `POST /v1/connectors/{name}/reload` and `POST /v1/connectors/{name}/rollback` (200 with the
//! report when everything was applied, 422 with it when something was refused).
//!
//! It depends on the topology one way: it sees only [`Control`], and the command that runs the
//! host decides whether and where it listens ([`serve`]).

use crate::topology::{Control, ReloadReport};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Shared = Arc<dyn Control>;

/// Why the admin API could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the admin listener on {addr}: {source}")]
pub struct AdminError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

pub fn router(control: Shared) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/v1/reload", post(reload_all))
        .route("/v1/connectors/{name}/reload", post(reload_one))
        .route("/v1/connectors/{name}/rollback", post(rollback))
        .with_state(control)
}

/// A listening admin API.
pub struct AdminServer {
    /// Where it listens (the port the OS picked when `listen` asked for port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Waits until the server has stopped (after `stop` fired).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Listens on `listen` and serves [`router`] until `stop` fires.
pub async fn serve(
    listen: &str,
    control: Shared,
    stop: CancellationToken,
) -> Result<AdminServer, AdminError> {
    let failed = |source| AdminError {
        addr: listen.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    let app = router(control);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!("admin listener failed: {error}");
        }
    });
    tracing::info!(%addr, "admin listening");
    Ok(AdminServer { addr, task })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn status(State(control): State<Shared>) -> axum::response::Response {
    match control.status().await {
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

async fn reload_all(State(control): State<Shared>) -> axum::response::Response {
    report_response(control.reload(None).await)
}

async fn reload_one(
    State(control): State<Shared>,
    Path(name): Path<String>,
) -> axum::response::Response {
    report_response(control.reload(Some(&name)).await)
}

async fn rollback(
    State(control): State<Shared>,
    Path(name): Path<String>,
) -> axum::response::Response {
    report_response(control.rollback(&name).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::ResilienceStatus;
    use crate::topology::{ConnectorReload, Outcome, StatusReport};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tsunagi_backends::BackendError;

    /// A control that answers as told and remembers what it was asked.
    struct Scripted {
        status_fails: bool,
        refuse: bool,
        asked: Mutex<Vec<String>>,
    }

    fn report(ok: bool, connector: &str) -> ReloadReport {
        ReloadReport {
            ok,
            error: None,
            protections: Vec::new(),
            connectors: vec![ConnectorReload {
                connector: connector.to_string(),
                outcome: if ok {
                    Outcome::Swapped
                } else {
                    Outcome::Refused
                },
                from: "a".into(),
                to: "b".into(),
                error: (!ok).then(|| "self-test failed".to_string()),
                took_ms: 1,
                pipeline_restarted: false,
                at: "2026-12-01T00:00:00Z".into(),
            }],
        }
    }

    #[async_trait::async_trait]
    impl Control for Scripted {
        async fn status(&self) -> Result<StatusReport, BackendError> {
            self.asked.lock().unwrap().push("status".into());
            if self.status_fails {
                return Err(BackendError::Open {
                    url: "sqlite://gone.db".into(),
                    reason: "disk gone".into(),
                });
            }
            Ok(StatusReport {
                worker_id: "w-1".into(),
                backend: "sqlite",
                started_at: "2026-12-01T00:00:00Z".into(),
                now: "2026-12-01T00:00:01Z".into(),
                connectors: Vec::new(),
                sinks: Vec::new(),
                resilience: ResilienceStatus {
                    budgets: BTreeMap::new(),
                    breakers: BTreeMap::new(),
                },
                reloads: BTreeMap::new(),
                storage: None,
            })
        }
        async fn reload(&self, only: Option<&str>) -> ReloadReport {
            let name = only.unwrap_or("*");
            self.asked.lock().unwrap().push(format!("reload {name}"));
            report(!self.refuse, name)
        }
        async fn rollback(&self, connector: &str) -> ReloadReport {
            self.asked
                .lock()
                .unwrap()
                .push(format!("rollback {connector}"));
            report(!self.refuse, connector)
        }
    }

    async fn start(status_fails: bool, refuse: bool) -> (AdminServer, Arc<Scripted>) {
        let control = Arc::new(Scripted {
            status_fails,
            refuse,
            asked: Mutex::new(Vec::new()),
        });
        let server = serve("127.0.0.1:0", control.clone(), CancellationToken::new())
            .await
            .expect("listens");
        (server, control)
    }

    #[tokio::test]
    async fn status_serves_the_report_as_json() {
        let (server, _) = start(false, false).await;
        let response = reqwest::get(format!("http://{}/status", server.addr))
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["worker_id"], "w-1");
        assert!(
            body["budgets"].is_object(),
            "resilience is flattened: {body}"
        );
    }

    #[tokio::test]
    async fn a_store_that_fails_makes_status_unavailable() {
        let (server, _) = start(true, false).await;
        let response = reqwest::get(format!("http://{}/status", server.addr))
            .await
            .expect("answers");
        assert_eq!(response.status(), 503);
        let text = response.text().await.expect("text");
        assert!(
            text.contains("status unavailable") && text.contains("disk gone"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn reloads_and_rollbacks_answer_200_when_applied_and_422_when_refused() {
        let client = reqwest::Client::new();
        for (refuse, expected) in [(false, 200), (true, 422)] {
            let (server, control) = start(false, refuse).await;
            for path in [
                "/v1/reload",
                "/v1/connectors/rss/reload",
                "/v1/connectors/rss/rollback",
            ] {
                let response = client
                    .post(format!("http://{}{path}", server.addr))
                    .send()
                    .await
                    .expect("answers");
                assert_eq!(response.status(), expected, "{path}");
                let body: serde_json::Value = response.json().await.expect("JSON report");
                assert_eq!(body["ok"], !refuse);
            }
            assert_eq!(
                *control.asked.lock().unwrap(),
                ["reload *", "reload rss", "rollback rss"]
            );
        }
    }

    #[tokio::test]
    async fn the_listener_stops_when_told() {
        let stop = CancellationToken::new();
        let control = Arc::new(Scripted {
            status_fails: false,
            refuse: false,
            asked: Mutex::new(Vec::new()),
        });
        let server = serve("127.0.0.1:0", control, stop.clone())
            .await
            .expect("listens");
        let addr = server.addr;
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(30), server.stopped())
            .await
            .expect("stops");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error_naming_it() {
        let (server, control) = start(false, false).await;
        let taken = server.addr.to_string();
        let error = serve(&taken, control, CancellationToken::new())
            .await
            .err()
            .expect("the port is taken");
        assert!(error.to_string().contains(&taken), "{error}");
    }
}
