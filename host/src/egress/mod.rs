//! Egress: the one path by which a plugin (or a sink) reaches the network.
//!
//! Plugins speak plain `wasi:http`; no default sender is linked, so every request lands in
//! [`ConnectorEgress::send_request`]. There it is checked against the connector's allowlist,
//! sent through the connector's pooled HTTP client under connect / first-byte / total timeouts,
//! and its request and response bodies are capped. Requests in flight are bounded per call and
//! per connector; a request holds its slots until the plugin drops its response, because the
//! host holds the whole response body until then. Each exchange is recorded for the call that
//! made it, so the scheduler can honour `Retry-After` and `Cache-Control` without trusting the
//! plugin, and so a refusal by the host's own policy is told apart from an upstream failure.
//! Between the allowlist and the send sit the rule's budget and breaker (see
//! [`crate::resilience`]). A request whose rule names a credential is signed for the call's
//! target just before it is sent (`signing`, over [`crate::credentials`]). A sink's deliveries go out
//! through a [`Destination`]: the same allowlist, resolver and redirect checks.
//!
//! Every URL this module prints (logs, refusals, exchange records) is redacted
//! ([`crate::redact`]); the unredacted one only makes the request.

mod addresses;
mod destination;
mod policy;
// WebSub: a delivered update answering the call's fetch of its target.
mod pushed;
// Credentials: signing requests, reaching token endpoints.
mod signing;
mod upstream;

pub use addresses::{AddressClass, GuardedResolver, InternalAddress, internal_reason};
pub use destination::{Destination, DestinationError};
pub use policy::{EgressPolicy, EgressRefusal, PolicyOwner};
pub use pushed::PushedContent;
pub use signing::GuardedTokenEndpoint;
pub use upstream::{
    Network, OutboundRequest, Upstream, UpstreamError, UpstreamResponse, too_large,
};

use crate::redact;
use crate::resilience::{BreakerCall, Resilience};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tsunagi_backends::Millis;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Per-connector caps on one HTTP exchange.
#[derive(Debug, Clone, Copy)]
pub struct EgressLimits {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub request_timeout: Duration,
    pub max_response_bytes: u64,
    pub max_request_bytes: u64,
    /// Requests one call (one instance) may have in flight.
    pub requests_in_flight: usize,
    /// Requests one call may make in all.
    pub requests_per_call: usize,
}

impl From<&crate::config::LimitSettings> for EgressLimits {
    fn from(limits: &crate::config::LimitSettings) -> Self {
        Self {
            connect_timeout: limits.connect_timeout,
            first_byte_timeout: limits.first_byte_timeout,
            request_timeout: limits.request_timeout,
            max_response_bytes: limits.response_size.as_u64(),
            max_request_bytes: limits.request_size.as_u64(),
            requests_in_flight: usize::try_from(limits.requests_in_flight).unwrap_or(usize::MAX),
            requests_per_call: usize::try_from(limits.requests_per_call).unwrap_or(usize::MAX),
        }
    }
}

/// What the host saw of one exchange a plugin made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeRecord {
    /// Redacted: fit to print.
    pub url: String,
    pub status: Option<u16>,
    /// From `Retry-After` (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    /// From `Cache-Control: max-age`.
    pub max_age: Option<Duration>,
    /// Why the exchange failed on the host side (refused, timed out, too large, …), redacted.
    pub error: Option<String>,
    /// Refused by the host's own policy (the allowlist, the SSRF guard, credentials in the
    /// URL): the refusal's text. A configuration problem, not the upstream's failure nor the
    /// target's: the target is parked until the rules change.
    pub refused: Option<String>,
    /// Held back by a budget without a slot in time or an open breaker: the call is not the
    /// target's failure, and the target should come back at its `retry_at` (a search reports
    /// the shop `rate-limited` or `breaker-open`).
    pub deferral: Option<crate::resilience::Deferral>,
    /// The breaker this exchange went through, if its rule names one.
    pub breaker_call: Option<BreakerCall>,
    /// When the upstream said its rate limit resets, if it said the limit is used up
    /// (`x-rate-limit-remaining: 0` with `x-rate-limit-reset`).
    pub rate_limit_reset: Option<Millis>,
    /// Refused because the target's token lacks this scope (least privilege; `refused` holds
    /// the text). A handler job refused so is skipped, not retried.
    pub missing_scope: Option<crate::config::Scope>,
    // --- For the handler pipeline's "outcome unknown" (see `unanswered_change`).
    /// The request's method may change something (not GET, HEAD or OPTIONS).
    pub changes: bool,
    /// The request was handed to the upstream (past every check of the host's own).
    pub sent: bool,
    /// From the send to the whole answer (or to the failure), once sent.
    pub elapsed: Option<Duration>,
    /// The `type` of an `application/problem+json` failure answer (RFC 9457), e.g. X's
    /// `…/problems/usage-capped`: what `pause_on_problem` matches. Read only from failure
    /// statuses with a small body; at most `config::MAX_PROBLEM_TYPE_BYTES`.
    pub problem_type: Option<String>,
    /// Answered by a hub's delivery ([`PushedContent`]): nothing went out.
    pub pushed: bool,
}

impl ExchangeRecord {
    /// When a held-back exchange's target should come back.
    pub fn deferred_until(&self) -> Option<Millis> {
        self.deferral
            .as_ref()
            .map(crate::resilience::Deferral::retry_at)
    }

    /// A request that may change something was sent and no answer came back (the connection
    /// broke or timed out after sending): whether it took effect is unknown.
    pub fn unanswered_change(&self) -> bool {
        self.changes && self.sent && self.status.is_none()
    }
}

/// The exchanges of the current call, shared with the futures that carry them out.
pub type ExchangeLog = Arc<Mutex<Vec<ExchangeRecord>>>;

/// A connector's pooled HTTP clients: `strict` never connects to an internal address; `opt_in`
/// serves only requests whose allow rule sets `allow_internal` (see [`GuardedResolver`]).
#[derive(Debug, Clone)]
struct EgressClients {
    strict: reqwest::Client,
    opt_in: reqwest::Client,
}

/// Why a connector's egress could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("cannot build the HTTP client of connector '{connector}': {source}")]
    Client {
        connector: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Builds the pooled HTTP clients of one connector. Names resolve through the connector's
/// [`GuardedResolver`], so only addresses its allowlist permits are ever connected to.
fn build_clients(
    policy: &Arc<EgressPolicy>,
    limits: &EgressLimits,
    pool_size: usize,
) -> Result<EgressClients, EgressError> {
    let client = |opt_in: bool| {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone(), opt_in)))
            .connect_timeout(limits.connect_timeout)
            .pool_max_idle_per_host(pool_size)
            // Crawls touch many hosts once per round; idle sockets are not worth keeping long.
            .pool_idle_timeout(Duration::from_secs(15))
            // A redirect is the plugin's decision, and each hop must pass the allowlist again.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .build()
    };
    let failed = |source| EgressError::Client {
        connector: policy.connector().to_string(),
        source,
    };
    Ok(EgressClients {
        strict: client(false).map_err(failed)?,
        opt_in: client(true).map_err(failed)?,
    })
}

/// Slots for requests in flight: a connector's, shared by its instances, with its size for
/// error messages.
#[derive(Debug, Clone)]
pub struct RequestSlots {
    slots: Arc<Semaphore>,
    size: usize,
}

impl RequestSlots {
    pub fn new(size: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

/// The `wasi:http` hooks of one plugin instance.
pub struct ConnectorEgress {
    policy: Arc<EgressPolicy>,
    resilience: Arc<Resilience>,
    upstream: Arc<dyn Upstream>,
    limits: EgressLimits,
    /// This instance's requests in flight: an instance serves one call at a time, and a
    /// response a plugin keeps across calls still counts.
    call_slots: RequestSlots,
    connector_slots: RequestSlots,
    /// Requests the current call has made, refused ones included.
    requests_made: usize,
    log: ExchangeLog,
    /// The current call's target (per-target budgets are keyed by it) and deadline (a budget
    /// wait must leave the request time to run).
    target: Arc<str>,
    deadline: Instant,
    /// A hub's delivery for the current call, until its fetch of the target takes it.
    pushed: Option<PushedContent>,
}

impl ConnectorEgress {
    pub fn new(
        policy: Arc<EgressPolicy>,
        resilience: Arc<Resilience>,
        upstream: Arc<dyn Upstream>,
        limits: EgressLimits,
        connector_slots: RequestSlots,
    ) -> Self {
        Self {
            policy,
            resilience,
            upstream,
            call_slots: RequestSlots::new(limits.requests_in_flight),
            limits,
            connector_slots,
            requests_made: 0,
            log: ExchangeLog::default(),
            target: Arc::from(""),
            deadline: Instant::now(),
            pushed: None,
        }
    }

    /// Starts a fresh record for the next call and returns it. `pushed` answers the call's
    /// first fetch of `target`.
    pub fn begin_call(
        &mut self,
        target: &str,
        deadline: Instant,
        pushed: Option<PushedContent>,
    ) -> ExchangeLog {
        self.log = ExchangeLog::default();
        self.requests_made = 0;
        self.target = Arc::from(target);
        self.deadline = deadline;
        self.pushed = pushed;
        self.log.clone()
    }

    /// The pushed answer, if the delivery is for this request.
    fn take_pushed(&mut self, request: &http::Request<WasiBody>) -> Option<PushedContent> {
        if self.pushed.is_some()
            && PushedContent::answers(&self.target, request.method(), request.uri())
        {
            return self.pushed.take();
        }
        None
    }

    /// Whether responses of this instance's requests are still held by the host (the plugin
    /// kept them without reading them to the end), or requests are still running.
    pub fn holds_responses(&self) -> bool {
        self.call_slots.available() < self.call_slots.size
    }

    /// A refusal for a request past `requests_per_call`. Only the first is recorded, so the
    /// call's exchange log stops growing there too.
    fn over_requests_per_call(&mut self, url: String) -> HttpError {
        let reason = format!(
            "connector '{}': the call already made {} requests (limits.requests_per_call)",
            self.policy.connector(),
            self.limits.requests_per_call
        );
        if self.requests_made == self.limits.requests_per_call + 1
            && let Ok(mut log) = self.log.lock()
        {
            log.push(ExchangeRecord {
                url,
                error: Some(reason.clone()),
                ..ExchangeRecord::default()
            });
        }
        HttpError::InternalError(Some(reason))
    }

    fn exchange(&self) -> Exchange {
        // Taken at once: a call over its own bound is refused, not queued.
        let call_slot = self.call_slots.slots.clone().try_acquire_owned().ok();
        Exchange {
            policy: self.policy.clone(),
            resilience: self.resilience.clone(),
            upstream: self.upstream.clone(),
            limits: self.limits,
            call_slot,
            call_slots: self.call_slots.size,
            connector_slots: self.connector_slots.clone(),
            log: self.log.clone(),
            target: self.target.clone(),
            deadline: self.deadline,
        }
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for ConnectorEgress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        self.requests_made = self.requests_made.saturating_add(1);
        if self.requests_made > self.limits.requests_per_call {
            let refusal = self.over_requests_per_call(request.uri().to_string());
            return Box::new(async move { Err(refusal) });
        }
        if let Some(pushed) = self.take_pushed(&request) {
            if let Ok(mut log) = self.log.lock() {
                log.push(ExchangeRecord {
                    url: redact::url(&request.uri().to_string()).into_owned(),
                    status: Some(200),
                    pushed: true,
                    ..ExchangeRecord::default()
                });
            }
            let response = pushed
                .into_response()
                .map_err(|e| HttpError::InternalError(Some(e.to_string())));
            return Box::new(async move {
                let io_done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response?, io_done))
            });
        }
        let exchange = self.exchange();
        Box::new(async move {
            let response = exchange.run(request, options).await?;
            let io_done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io_done))
        })
    }
}

/// One request on its way out, detached from the store.
struct Exchange {
    policy: Arc<EgressPolicy>,
    resilience: Arc<Resilience>,
    upstream: Arc<dyn Upstream>,
    limits: EgressLimits,
    /// The call's slot for this request, if it had one free.
    call_slot: Option<OwnedSemaphorePermit>,
    call_slots: usize,
    connector_slots: RequestSlots,
    log: ExchangeLog,
    target: Arc<str>,
    deadline: Instant,
}

impl Exchange {
    async fn run(
        mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let mut record = ExchangeRecord {
            url: redact::url(&request.uri().to_string()).into_owned(),
            changes: !matches!(
                *request.method(),
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            ),
            ..ExchangeRecord::default()
        };
        let result = self.guarded_send(request, options, &mut record).await;
        if let Err(failure) = &result {
            tracing::debug!(connector = %self.policy.connector(), url = %record.url,
                error = %redact::text(&format!("{:?}", failure.error)),
                "egress failed: {}", failure.reason);
            record.error = Some(failure.reason.clone());
            if failure.refused {
                record.refused = Some(failure.reason.clone());
            }
        }
        if let Some(call) = record.breaker_call.as_mut() {
            match &result {
                // Refused after the permit was taken (the name resolved to an internal
                // address): the upstream was never asked, so the breaker hears nothing.
                Err(failure) if failure.refused => self.resilience.release(call),
                // Failures count at once; a success waits for the plugin's verdict (see
                // `crate::resilience`).
                _ => {
                    if result.is_err() || record.status.is_some_and(upstream_failure) {
                        self.resilience.settle(call, true);
                    }
                }
            }
        }
        if let Ok(mut log) = self.log.lock() {
            log.push(record);
        }
        result.map_err(|failure| failure.error)
    }

    /// Allowlist, then the slots for requests in flight, then budget and breaker, then the
    /// request itself.
    async fn guarded_send(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        record: &mut ExchangeRecord,
    ) -> Result<http::Response<WasiBody>, UpstreamError> {
        // The one unredacted copy: it makes the request and is never printed.
        let url = url::Url::parse(&request.uri().to_string()).map_err(|e| {
            UpstreamError::new(
                HttpError::HttpRequestUriInvalid,
                format!("invalid request URL {:?}: {e}", record.url),
            )
        })?;
        let rule = match self.policy.check(&url) {
            Ok(index) => self.policy.rules().get(index).cloned().unwrap_or_default(),
            Err(refusal) => {
                tracing::warn!(connector = %self.policy.connector(), "{refusal}");
                return Err(UpstreamError::refused(&refusal));
            }
        };
        let limits = effective_limits(&self.limits, options);
        // Per-host budgets are keyed by it; the URL itself goes on to the send.
        let host = url.host_str().unwrap_or("").to_string();
        let mut slots = self.take_slots(&limits).await?;
        if !rule.budget.is_empty() || rule.breaker.is_some() {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            // Waiting for a slot must leave the request its own time.
            let max_wait = remaining.saturating_sub(limits.request_timeout.min(remaining / 2));
            // A place in flight first: a call deferred for want of one spends no rate slot.
            let admitted = match self
                .resilience
                .enter_in_flight(&rule.budget, &self.target, &host, max_wait)
                .await
            {
                Ok(places) => {
                    slots._in_flight = places;
                    self.resilience
                        .admit_to(
                            &rule.budget,
                            rule.breaker.as_deref(),
                            &self.target,
                            &host,
                            max_wait,
                        )
                        .await
                }
                Err(deferral) => Err(deferral),
            };
            match admitted {
                Ok(call) => record.breaker_call = call,
                Err(deferral) => {
                    let message = deferral.to_string();
                    record.deferral = Some(deferral);
                    tracing::debug!(connector = %self.policy.connector(), url = %record.url,
                        "{message}");
                    return Err(UpstreamError::internal(message));
                }
            }
        }
        let credential = signing::credential_of(&rule, request.method());
        let response = self
            .send(url, &rule, credential, request, limits, slots, record)
            .await;
        if !rule.budget.is_empty() {
            let now = self.resilience.clock().now_ms();
            let pushed_until = match record.status {
                Some(429 | 503) => Some(
                    now.saturating_add(
                        record
                            .retry_after
                            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    ),
                ),
                _ => None,
            }
            .into_iter()
            .chain(record.rate_limit_reset)
            .max();
            // An upstream's word counts, within reason: a bogus reset years away must not
            // freeze a budget every connector shares.
            let pushed_until =
                pushed_until.map(|until| until.min(now.saturating_add(MAX_PUSH_BACK_MS)));
            if let Some(until) = pushed_until {
                self.resilience
                    .upstream_limit_of(&rule.budget, &self.target, &host, until)
                    .await;
            }
        }
        response
    }

    /// The request's slot of its call (taken when the plugin made it) and of its connector
    /// (waited for while the call has time left for the request itself).
    async fn take_slots(&mut self, limits: &EgressLimits) -> Result<HeldSlots, UpstreamError> {
        let connector = self.policy.connector();
        let Some(call) = self.call_slot.take() else {
            return Err(UpstreamError::internal(format!(
                "connector '{connector}': the call already has {} requests in flight; read one to its end or drop \
                 it before starting another (limits.requests_in_flight)",
                self.call_slots
            )));
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let max_wait = remaining.saturating_sub(limits.request_timeout.min(remaining / 2));
        let waited =
            tokio::time::timeout(max_wait, self.connector_slots.slots.clone().acquire_owned())
                .await;
        match waited {
            Ok(Ok(slot)) => Ok(HeldSlots {
                _call: call,
                _connector: slot,
                _in_flight: Vec::new(),
            }),
            _ => Err(UpstreamError::internal(format!(
                "connector '{connector}': its calls kept {} requests in flight for {max_wait:?} \
                 (limits.connector_requests_in_flight)",
                self.connector_slots.size
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        url: url::Url,
        rule: &crate::config::AllowRule,
        credential: Option<(&str, crate::config::Scope)>,
        request: http::Request<WasiBody>,
        limits: EgressLimits,
        slots: HeldSlots,
        record: &mut ExchangeRecord,
    ) -> Result<http::Response<WasiBody>, UpstreamError> {
        let (parts, body) = request.into_parts();
        let body = read_request_body(self.policy.connector(), &parts.headers, body, limits).await?;
        let mut unsigned = signing::Unsigned {
            method: parts.method,
            url,
            headers: parts.headers,
            body,
        };
        if let Some(credential) = credential {
            unsigned =
                signing::decorate(&self.policy, credential, &self.target, unsigned, record).await?;
        }
        let outbound = OutboundRequest {
            method: unsigned.method,
            url: unsigned.url,
            headers: unsigned.headers,
            body: unsigned.body,
            allow_internal: rule.allow_internal,
        };
        record.sent = true;
        let sent_at = Instant::now();
        let answer = self.upstream.send(outbound, limits).await;
        record.elapsed = Some(sent_at.elapsed());
        let response = match answer {
            Ok(response) => response,
            Err(failure) => {
                if let Some(head) = &failure.head {
                    record_head(record, head.0, &head.1);
                }
                return Err(failure);
            }
        };
        record_head(record, response.status, &response.headers);
        record.problem_type = problem_type(response.status, &response.headers, &response.body);

        let mut builder = http::Response::builder().status(response.status);
        if let Some(target) = builder.headers_mut() {
            *target = response.headers;
        }
        builder
            .body(
                SlotBody::new(response.body, slots)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|e| {
                UpstreamError::new(
                    HttpError::InternalError(Some(e.to_string())),
                    format!("could not rebuild the response: {e}"),
                )
            })
    }
}

/// The plugin's request body, read up to `max_request_bytes` and never past it: a declared
/// length over the cap is refused before reading, and reading stops at the cap.
async fn read_request_body(
    connector: &str,
    headers: &http::HeaderMap,
    body: WasiBody,
    limits: EgressLimits,
) -> Result<Bytes, UpstreamError> {
    let cap = limits.max_request_bytes;
    let too_large = || {
        UpstreamError::internal(format!(
            "connector '{connector}': request body larger than {cap} bytes (limits.request_size)"
        ))
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > cap) {
        return Err(too_large());
    }
    let limited = Limited::new(body, usize::try_from(cap).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(UpstreamError::internal(format!(
            "could not read the plugin's request body: {error}"
        ))),
    }
}

/// The slots a request holds until its response is dropped.
struct HeldSlots {
    _call: OwnedSemaphorePermit,
    _connector: OwnedSemaphorePermit,
    /// Its places under budgets' `in_flight` caps.
    _in_flight: Vec<OwnedSemaphorePermit>,
}

/// How much of a response body the plugin is handed at a time.
const BODY_CHUNK: usize = 16 * 1024;

/// A whole response body that holds its request's slots while the host holds any of it. It is
/// handed over in chunks; `wasi:http` asks for the next chunk only once the plugin has taken
/// all of the last one, and the final byte comes alone, copied out of the shared buffer, so
/// when the plugin asks for it the host holds one byte of the body and the slots are freed.
/// Dropping the body frees them too. An empty body holds none.
struct SlotBody {
    rest: Bytes,
    slots: Option<HeldSlots>,
}

impl SlotBody {
    fn new(body: Bytes, slots: HeldSlots) -> Self {
        let slots = (!body.is_empty()).then_some(slots);
        Self { rest: body, slots }
    }
}

impl Body for SlotBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let chunk = match this.rest.len() {
            0 => {
                this.slots = None;
                return Poll::Ready(None);
            }
            1 => {
                let last = Bytes::copy_from_slice(&this.rest);
                this.rest = Bytes::new();
                this.slots = None;
                last
            }
            len => this.rest.split_to(BODY_CHUNK.min(len - 1)),
        };
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// What the host keeps of a response head: the status and the upstream's timing signals.
fn record_head(record: &mut ExchangeRecord, status: http::StatusCode, headers: &http::HeaderMap) {
    record.status = Some(status.as_u16());
    record.retry_after = retry_after(headers);
    record.max_age = max_age(headers);
    record.rate_limit_reset = rate_limit_reset(headers);
}

// --- xread: problem types, for `pause_on_problem` ---
/// Problem bodies larger than this are not parsed (X's are a few hundred bytes).
const MAX_PROBLEM_BODY: usize = 16 * 1024;

/// The `type` member of a failure answer's `application/problem+json` (or JSON) body.
pub fn problem_type(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<String> {
    if !(status.is_client_error() || status.is_server_error()) || body.len() > MAX_PROBLEM_BODY {
        return None;
    }
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let value = value.trim_start().to_ascii_lowercase();
            value.starts_with("application/problem+json") || value.starts_with("application/json")
        });
    if !json {
        return None;
    }
    let document: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kind = document.get("type")?.as_str()?;
    (!kind.is_empty() && kind.len() <= crate::config::MAX_PROBLEM_TYPE_BYTES)
        .then(|| redact::text(kind).into_owned())
}
// --- end xread ---

/// The connector's limits, tightened by the plugin's own request options where it asks for a
/// shorter first-byte wait. (The connect timeout belongs to the pooled client and cannot change
/// per request.)
fn effective_limits(limits: &EgressLimits, options: Option<RequestOptions>) -> EgressLimits {
    let mut out = *limits;
    if let Some(t) = options.and_then(|o| o.first_byte_timeout) {
        out.first_byte_timeout = out.first_byte_timeout.min(t);
    }
    out
}

fn transport_error(error: &reqwest::Error) -> UpstreamError {
    // The resolver's (or a redirect check's) refusal is the whole story; the plugin gets it
    // verbatim.
    if let Some(refusal) = refusal_in(error) {
        return UpstreamError::refused(refusal);
    }
    // reqwest names the URL in its errors: print it redacted.
    let reason = redact::text(&format!("{error}: {}", source_chain(error))).into_owned();
    let code = if error.is_connect() {
        HttpError::ConnectionRefused
    } else if error.is_timeout() {
        HttpError::ConnectionTimeout
    } else {
        HttpError::InternalError(Some(reason.clone()))
    };
    UpstreamError::new(code, reason)
}

/// The policy refusal behind a transport error, if one caused it.
fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressRefusal> {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<EgressRefusal>() {
            return Some(refusal);
        }
        source = cause.source();
    }
    None
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut current = error.source();
    while let Some(source) = current {
        parts.push(source.to_string());
        current = source.source();
    }
    parts.join(": ")
}

/// `Retry-After` as a delay: delta-seconds, or an HTTP date relative to now.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate_to_system_time(value)?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The furthest an upstream's rate-limit signal pushes a budget's next slot.
const MAX_PUSH_BACK_MS: Millis = 3_600_000;

/// A 5xx or a 429: the upstream is failing or pushing back, which a breaker counts.
fn upstream_failure(status: u16) -> bool {
    status >= 500 || status == 429
}

/// When the upstream's rate limit resets, if it says none is left: `x-rate-limit-remaining: 0`
/// with `x-rate-limit-reset` in Unix seconds (X/Twitter; GitHub spells it `x-ratelimit-*`).
pub fn rate_limit_reset(headers: &http::HeaderMap) -> Option<Millis> {
    let number =
        |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let remaining = number("x-rate-limit-remaining").or_else(|| number("x-ratelimit-remaining"))?;
    if remaining > 0 {
        return None;
    }
    let reset = number("x-rate-limit-reset").or_else(|| number("x-ratelimit-reset"))?;
    reset.checked_mul(1000)
}

/// `max-age` from `Cache-Control`, unless `no-store`/`no-cache` say not to rely on it.
pub fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return None;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            age = seconds
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

fn httpdate_to_system_time(value: &str) -> Option<std::time::SystemTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let parsed = time::PrimitiveDateTime::parse(value, &format).ok()?;
    let seconds = parsed.assume_utc().unix_timestamp();
    let seconds = u64::try_from(seconds).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_ignores_garbage() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn retry_after_date_in_the_past_is_zero() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn rate_limit_reset_only_when_none_remain() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-rate-limit-remaining", "3".parse().unwrap());
        headers.insert("x-rate-limit-reset", "1700000000".parse().unwrap());
        assert_eq!(rate_limit_reset(&headers), None);
        headers.insert("x-rate-limit-remaining", "0".parse().unwrap());
        assert_eq!(rate_limit_reset(&headers), Some(1_700_000_000_000));
        let mut github = http::HeaderMap::new();
        github.insert("x-ratelimit-remaining", "0".parse().unwrap());
        github.insert("x-ratelimit-reset", "1700000001".parse().unwrap());
        assert_eq!(rate_limit_reset(&github), Some(1_700_000_001_000));
        github.insert("x-ratelimit-reset", "soon".parse().unwrap());
        assert_eq!(rate_limit_reset(&github), None);
    }

    #[test]
    fn problem_types_come_from_small_failure_answers_only() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/problem+json".parse().unwrap());
        let capped = br#"{"title":"UsageCapExceeded","type":"https://api.twitter.com/2/problems/usage-capped"}"#;
        let status = http::StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            problem_type(status, &headers, capped).as_deref(),
            Some("https://api.twitter.com/2/problems/usage-capped")
        );
        assert_eq!(problem_type(http::StatusCode::OK, &headers, capped), None);
        assert_eq!(problem_type(status, &headers, b"<html>"), None);
        assert_eq!(problem_type(status, &headers, br#"{"type": 5}"#), None);
        let long = format!(r#"{{"type": "{}"}}"#, "x".repeat(600));
        assert_eq!(problem_type(status, &headers, long.as_bytes()), None);
        headers.insert("content-type", "text/html".parse().unwrap());
        assert_eq!(problem_type(status, &headers, capped), None);
    }

    #[test]
    fn max_age_respects_no_cache() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CACHE_CONTROL,
            "public, max-age=600".parse().unwrap(),
        );
        assert_eq!(max_age(&headers), Some(Duration::from_secs(600)));
        headers.insert(
            http::header::CACHE_CONTROL,
            "no-cache, max-age=600".parse().unwrap(),
        );
        assert_eq!(max_age(&headers), None);
    }
}
