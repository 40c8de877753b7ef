//! Admin HTTP API over a running topology's [`Control`]: `GET /status` (connectors and their
//! versions, targets due, queue depth, jobs done and failed, recent errors, budgets, breakers,
//! the last reloads), `GET /metrics` (the same in the Prometheus text format), `GET /healthz` (liveness), `GET /readyz` (readiness), and the hot-swap
//! actions `POST /v1/reload`, `POST /v1/connectors/{name}/reload` and
//! `POST /v1/connectors/{name}/rollback` (200 with the report when everything was applied, 422
//! with it when something was refused), and the handler job endpoints in `jobs`
//! (`POST /v1/queues/{queue}/jobs`, `/pause`, `/resume`, `GET /v1/queues`), and the product
//! search in `search` (`GET /v1/search`), the rankings in `rankings`
//! (`GET /v1/rankings/{name}`), inbound events in `events` (`POST /v1/events/{topic}`) and
//! the cluster's pushes in `cluster` (`PUT /v1/cluster/plugins/{connector}`,
//! `PUT /v1/cluster/config`).
//!
//! Who may ask ([`Access`]): every request must name this API in its `Host` (an IP address,
//! `localhost`, or a name from `host.admin_hosts`), so a page on a DNS-rebound name cannot reach
//! it, and a request a browser sent on behalf of another site (`Origin`, `Sec-Fetch-Site`) is
//! refused. With a token configured, every `/v1/...` action needs `Authorization: Bearer`, and
//! so does `/status` when the listener is not loopback: it shows the topology, targets and
//! errors, which are nobody else's business, while a local monitor keeps reading it without a
//! secret. `/healthz` and `/readyz` stay open for load balancers and orchestrators, which carry
//! no token and learn nothing from them. Endpoints that accept jobs, events or searches join
//! the `/v1` actions.
//!
//! It depends on the topology one way: it sees only [`Control`]. The command that runs the host
//! decides whether and where it listens ([`serve`]), and attaches the topology once it has
//! started, so `/readyz` can say "not yet" while plugins compile.

mod cluster;
mod dashboard;
mod deadletters;
mod events;
mod jobs;
pub mod metrics;
mod rankings;
mod search;

pub use deadletters::MAX_LIMIT as MAX_DLQ_LISTED;
pub use jobs::MAX_BODY_BYTES as MAX_JOB_BODY_BYTES;

use crate::config::{Config, Secret, SecretError};
use crate::topology::{Control, ReloadReport};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post, put};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the admin API could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the admin listener on {addr}: {source}")]
pub struct AdminError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// Who may use the admin API.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Bearer token for the actions (and for `/status` off loopback); none means only a
    /// loopback listener, where the actions are open to local users.
    pub token: Option<Secret>,
    /// Host names the API answers to besides `localhost` and IP addresses.
    pub hosts: Vec<String>,
}

impl Access {
    /// From `[host] admin_token` and `admin_hosts`.
    pub fn from_config(config: &Config) -> Result<Self, SecretError> {
        Ok(Self {
            token: config.admin_token()?,
            hosts: config
                .host
                .admin_hosts
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
        })
    }

    /// Whether a `Host` (or `Origin` authority) names this API: an IP address, `localhost`, or a
    /// configured name, on any port (a proxy in front may use its own). Rebinding needs a name
    /// the attacker controls, which is none of these.
    fn names_us(&self, authority: &str) -> bool {
        let host = match authority.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((inside, after)) if after.is_empty() || after.starts_with(':') => inside,
                _ => return false,
            },
            None => authority
                .rsplit_once(':')
                .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                .map_or(authority, |(host, _)| host),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host.parse::<IpAddr>().is_ok() || host == "localhost" || self.hosts.contains(&host)
    }
}

/// What the handlers share: the topology once attached, and whether the host is draining.
struct Shared {
    control: OnceLock<Arc<dyn Control>>,
    draining: AtomicBool,
    access: Access,
    /// The listener is on a loopback address (so `/status` needs no token).
    loopback: bool,
}

type SharedState = Arc<Shared>;

/// The API's routes over `shared`, with the access checks in front.
fn router(shared: SharedState) -> axum::Router {
    let actions = axum::Router::new()
        .route("/v1/reload", post(reload_all))
        .route("/v1/connectors/{name}/reload", post(reload_one))
        .route("/v1/connectors/{name}/rollback", post(rollback))
        // Handler jobs (admin/jobs.rs).
        .route("/v1/queues", get(jobs::list))
        .route("/v1/queues/{queue}/jobs", post(jobs::enqueue))
        .route("/v1/queues/{queue}/pause", post(jobs::pause))
        .route("/v1/queues/{queue}/resume", post(jobs::resume))
        .route("/v1/connectors/{name}/resume", post(resume))
        // Dead letters (admin/deadletters.rs).
        .route("/v1/dlq", get(deadletters::list))
        .route("/v1/dlq/retry", post(deadletters::retry))
        .route("/v1/dlq/drop", post(deadletters::drop))
        // Product search (admin/search.rs).
        .route("/v1/events/{topic}", post(events::publish))
        .route("/v1/search", get(search::search))
        .route("/v1/rankings/{name}", get(rankings::ranking))
        // Pushes to every host of the cluster (admin/cluster.rs).
        .route("/v1/cluster/plugins/{connector}", put(cluster::push_plugin))
        .route("/v1/cluster/config", put(cluster::push_config))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    let reads = axum::Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_token_off_loopback,
        ));
    axum::Router::new()
        .route("/healthz", get(healthz))
        // The dashboard's page and assets (admin/dashboard.rs): no data in them, so open; what
        // they show comes from `/status` and `/v1/...`, under those routes' rules.
        .merge(dashboard::routes())
        .route("/readyz", get(readyz))
        .merge(reads)
        .merge(actions)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_our_host,
        ))
        .with_state(shared)
}

/// A listening admin API.
pub struct AdminServer {
    /// Where it listens (the port the OS picked when `listen` asked for port 0).
    pub addr: SocketAddr,
    shared: SharedState,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Hands the API the running topology: from now on `/status` and the actions answer, and
    /// `/readyz` asks it. A second call is ignored.
    pub fn attach(&self, control: Arc<dyn Control>) {
        let _ = self.shared.control.set(control);
    }

    /// `/readyz` answers 503 from now on (the host is stopping; a balancer should send
    /// nothing new).
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    /// Waits until the server has stopped (after `stop` fired).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Listens on `listen` and serves the API until `stop` fires. Until [`AdminServer::attach`],
/// `/healthz` answers and everything else says the host is starting.
pub async fn serve(
    listen: &str,
    access: Access,
    stop: CancellationToken,
) -> Result<AdminServer, AdminError> {
    let failed = |source| AdminError {
        addr: listen.to_string(),
        source,
    };
    let (listener, addr) = crate::listen::bind(listen).await.map_err(failed)?;
    let shared = Arc::new(Shared {
        control: OnceLock::new(),
        draining: AtomicBool::new(false),
        access,
        loopback: addr.ip().is_loopback(),
    });
    let task = crate::listen::spawn(listener, router(shared.clone()), stop, "admin");
    tracing::info!(%addr, "admin listening");
    Ok(AdminServer { addr, shared, task })
}

/// Refuses a request whose `Host` is not ours (421: rebinding) or that a browser sent from
/// another site's page (403: cross-site request forgery).
async fn require_our_host(
    State(shared): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if shared.access.names_us(host) => {}
        _ => {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this admin API answers only to its own address, localhost or a name in \
                 host.admin_hosts\n",
            )
                .into_response();
        }
    }
    if let Some(refusal) = cross_site(headers, &shared.access) {
        return (StatusCode::FORBIDDEN, refusal).into_response();
    }
    next.run(request).await
}

/// Why a request looks sent by a browser on another site's behalf, if it does.
fn cross_site(headers: &HeaderMap, access: &Access) -> Option<&'static str> {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site.eq_ignore_ascii_case("cross-site"))
    {
        return Some("cross-site requests are refused\n");
    }
    let origin = headers.get(header::ORIGIN)?;
    let ours = origin
        .to_str()
        .ok()
        .and_then(|origin| url::Url::parse(origin).ok())
        .and_then(|origin| {
            let host = origin.host_str()?.to_string();
            Some(match origin.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .is_some_and(|authority| access.names_us(&authority));
    (!ours).then_some("requests from another origin are refused\n")
}

/// 401 unless the request carries the configured bearer token. Without a token (only allowed
/// on loopback) actions are open to local users.
async fn require_token(
    State(shared): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    match &shared.access.token {
        Some(token) if !bearer_matches(request.headers(), token) => unauthorized(),
        _ => next.run(request).await,
    }
}

/// Like [`require_token`], but only when the listener is reachable from other machines.
async fn require_token_off_loopback(
    State(shared): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    match &shared.access.token {
        Some(token) if !shared.loopback && !bearer_matches(request.headers(), token) => {
            unauthorized()
        }
        _ => next.run(request).await,
    }
}

fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        })
        .is_some_and(|offered| token.matches(offered))
}

/// Says nothing about the token: not its length, not how the offered one differed.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"tsunagi\"")],
        "this needs Authorization: Bearer <host.admin_token>\n",
    )
        .into_response()
}

fn starting() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the host is starting: plugins are loading\n",
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 once pipelines run and the store answers; 503 before, and again while draining.
async fn readyz(State(shared): State<SharedState>) -> Response {
    if shared.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let Some(control) = shared.control.get() else {
        return starting();
    };
    match control.ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn status(State(shared): State<SharedState>) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    match control.status().await {
        Ok(report) => Json(report).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("status unavailable: {error}\n"),
        )
            .into_response(),
    }
}

/// `/status` in the Prometheus text format (see [`metrics`]).
async fn metrics_text(State(shared): State<SharedState>) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let rendered = match control.status().await {
        Ok(report) => metrics::render(report).map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("metrics unavailable: {error}\n"),
        )
            .into_response(),
    }
}

fn report_response(report: ReloadReport) -> Response {
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, Json(report)).into_response()
}

async fn reload_all(State(shared): State<SharedState>) -> Response {
    match shared.control.get() {
        Some(control) => report_response(control.reload(None).await),
        None => starting(),
    }
}

async fn reload_one(State(shared): State<SharedState>, Path(name): Path<String>) -> Response {
    match shared.control.get() {
        Some(control) => report_response(control.reload(Some(&name)).await),
        None => starting(),
    }
}

async fn rollback(State(shared): State<SharedState>, Path(name): Path<String>) -> Response {
    match shared.control.get() {
        Some(control) => report_response(control.rollback(&name).await),
        None => starting(),
    }
}

/// `POST /v1/connectors/{name}/resume`: lifts a `pause_on_problem` pause. 200 with
/// `{"connector", "resumed"}` (`resumed` false when it was not paused), 404 for no such
/// connector.
async fn resume(State(shared): State<SharedState>, Path(name): Path<String>) -> Response {
    match shared.control.get() {
        Some(control) => match control.resume(&name).await {
            Ok(resumed) => (
                StatusCode::OK,
                Json(serde_json::json!({"connector": name, "resumed": resumed})),
            )
                .into_response(),
            Err(reason) => (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({"error": reason})),
            )
                .into_response(),
        },
        None => starting(),
    }
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
        not_ready: bool,
        asked: Mutex<Vec<String>>,
    }

    fn scripted(status_fails: bool, refuse: bool) -> Arc<Scripted> {
        Arc::new(Scripted {
            status_fails,
            refuse,
            not_ready: false,
            asked: Mutex::new(Vec::new()),
        })
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
                released_refused: 0,
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
                reload_counts: Vec::new(),
                storage: None,
                inbound: None,
                cluster: None,
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
        async fn ready(&self) -> Result<(), String> {
            if self.not_ready {
                Err("the store does not answer".into())
            } else {
                Ok(())
            }
        }
        async fn enqueue(
            &self,
            queue: &str,
            _job: crate::topology::InboundJob,
        ) -> Result<tsunagi_backends::Enqueued, crate::topology::JobsError> {
            Err(crate::topology::JobsError::UnknownQueue(queue.to_string()))
        }
        async fn set_queue_paused(
            &self,
            queue: &str,
            _paused: bool,
        ) -> Result<(), crate::topology::JobsError> {
            Err(crate::topology::JobsError::UnknownQueue(queue.to_string()))
        }
        async fn queues(&self) -> Result<Vec<crate::topology::QueueStatus>, BackendError> {
            Ok(Vec::new())
        }
    }

    async fn start(status_fails: bool, refuse: bool) -> (AdminServer, Arc<Scripted>) {
        start_with(
            "127.0.0.1:0",
            Access::default(),
            scripted(status_fails, refuse),
        )
        .await
    }

    async fn start_with(
        listen: &str,
        access: Access,
        control: Arc<Scripted>,
    ) -> (AdminServer, Arc<Scripted>) {
        let server = serve(listen, access, CancellationToken::new())
            .await
            .expect("listens");
        server.attach(control.clone());
        (server, control)
    }

    const TOKEN: &str = "tok-3f9a81c2-secret";

    fn with_token() -> Access {
        Access {
            token: Some(Secret::new(TOKEN)),
            hosts: vec!["tsunagi.internal".into()],
        }
    }

    /// The local port of a server bound to 0.0.0.0, reached over loopback.
    fn local(server: &AdminServer) -> String {
        format!("127.0.0.1:{}", server.addr.port())
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
        let server = serve("127.0.0.1:0", Access::default(), stop.clone())
            .await
            .expect("listens");
        server.attach(scripted(false, false));
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
        drop(control);
        let error = serve(&taken, Access::default(), CancellationToken::new())
            .await
            .err()
            .expect("the port is taken");
        assert!(error.to_string().contains(&taken), "{error}");
    }

    #[tokio::test]
    async fn actions_need_the_bearer_token_and_a_refusal_says_nothing_of_it() {
        let (server, control) =
            start_with("127.0.0.1:0", with_token(), scripted(false, false)).await;
        let client = reqwest::Client::new();
        let url = format!("http://{}/v1/reload", server.addr);
        for offered in [None, Some("wrong"), Some("tok-3f9a81c2"), Some("")] {
            let mut request = client.post(&url);
            if let Some(offered) = offered {
                request = request.bearer_auth(offered);
            }
            let response = request.send().await.expect("answers");
            assert_eq!(response.status(), 401, "{offered:?}");
            assert!(response.headers().contains_key("www-authenticate"));
            let body = response.text().await.expect("text");
            assert!(!body.contains(TOKEN) && !body.contains("3f9a"), "{body}");
        }
        // Basic auth with the token as password is not a bearer token.
        let basic = client
            .post(&url)
            .basic_auth("x", Some(TOKEN))
            .send()
            .await
            .expect("answers");
        assert_eq!(basic.status(), 401);
        assert!(control.asked.lock().unwrap().is_empty(), "nothing ran");
        let allowed = client
            .post(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("answers");
        assert_eq!(allowed.status(), 200);
        assert_eq!(*control.asked.lock().unwrap(), ["reload *"]);
    }

    #[tokio::test]
    async fn a_rebound_or_cross_site_request_runs_nothing() {
        // No token: a loopback listener's actions are open to local users, so only the Host
        // and Origin checks stand between a browser page and a reload.
        let (server, control) = start(false, false).await;
        let client = reqwest::Client::new();
        let url = format!("http://{}/v1/reload", server.addr);
        let attack = |host: &'static str, origin: Option<&'static str>| {
            let mut request = client
                .post(&url)
                .header("host", host)
                .header("content-type", "text/plain")
                .body("x");
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            request.send()
        };
        let rebound = attack("evil.example", Some("http://evil.example"))
            .await
            .unwrap();
        assert_eq!(rebound.status(), 421);
        let rebound_port = attack("evil.example:7878", None).await.unwrap();
        assert_eq!(rebound_port.status(), 421);
        let forged = attack("127.0.0.1", Some("http://evil.example"))
            .await
            .unwrap();
        assert_eq!(forged.status(), 403);
        let fetch = client
            .post(&url)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(fetch.status(), 403);
        let status = client
            .get(format!("http://{}/status", server.addr))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 421, "reads are not rebound either");
        assert!(control.asked.lock().unwrap().is_empty(), "nothing ran");
        // Our own names pass.
        for host in ["localhost:7878", "127.0.0.1", "[::1]:7878", "LOCALHOST."] {
            let response = client
                .post(&url)
                .header("host", host)
                .header("origin", format!("http://{host}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{host}");
        }
    }

    #[tokio::test]
    async fn configured_names_are_accepted_as_host() {
        let (server, control) =
            start_with("127.0.0.1:0", with_token(), scripted(false, false)).await;
        let response = reqwest::Client::new()
            .post(format!("http://{}/v1/connectors/rss/rollback", server.addr))
            .header("host", "Tsunagi.Internal:443")
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(*control.asked.lock().unwrap(), ["rollback rss"]);
    }

    #[tokio::test]
    async fn status_needs_the_token_off_loopback_only() {
        let client = reqwest::Client::new();
        let (on_loopback, _) =
            start_with("127.0.0.1:0", with_token(), scripted(false, false)).await;
        let open = reqwest::get(format!("http://{}/status", on_loopback.addr))
            .await
            .unwrap();
        assert_eq!(
            open.status(),
            200,
            "a local monitor reads it without a secret"
        );

        let (everywhere, _) = start_with("0.0.0.0:0", with_token(), scripted(false, false)).await;
        let url = format!("http://{}/status", local(&everywhere));
        assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
        let with = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(with.status(), 200);
        for open in ["/healthz", "/readyz"] {
            let response = client
                .get(format!("http://{}{open}", local(&everywhere)))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{open} stays open for probes");
        }
    }

    #[tokio::test]
    async fn readyz_waits_for_the_topology_and_the_store_and_turns_off_on_drain() {
        let server = serve("127.0.0.1:0", Access::default(), CancellationToken::new())
            .await
            .expect("listens");
        let get = |path: &str| reqwest::get(format!("http://{}{path}", server.addr));
        assert_eq!(
            get("/healthz").await.unwrap().status(),
            200,
            "alive while starting"
        );
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        assert_eq!(get("/status").await.unwrap().status(), 503);
        let reload = reqwest::Client::new()
            .post(format!("http://{}/v1/reload", server.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(reload.status(), 503, "no action before the topology runs");
        server.attach(scripted(false, false));
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        server.drain();
        let draining = get("/readyz").await.unwrap();
        assert_eq!(draining.status(), 503);
        assert!(draining.text().await.unwrap().contains("draining"));
        assert_eq!(get("/healthz").await.unwrap().status(), 200);

        let (broken_store, _) = start_with(
            "127.0.0.1:0",
            Access::default(),
            Arc::new(Scripted {
                status_fails: false,
                refuse: false,
                not_ready: true,
                asked: Mutex::new(Vec::new()),
            }),
        )
        .await;
        let response = reqwest::get(format!("http://{}/readyz", broken_store.addr))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("store does not answer")
        );
    }

    #[test]
    fn host_names_are_read_with_ports_brackets_and_case() {
        let access = with_token();
        for ours in [
            "127.0.0.1",
            "127.0.0.1:7878",
            "[::1]",
            "[::1]:7878",
            "10.1.2.3:80",
            "localhost",
            "tsunagi.internal",
            "TSUNAGI.internal.:8443",
        ] {
            assert!(access.names_us(ours), "{ours}");
        }
        for foreign in [
            "evil.example",
            "localhost.evil.example",
            "tsunagi.internal.evil.example",
            "[::1",
            "[::1]x",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!access.names_us(foreign), "{foreign}");
        }
    }
}
