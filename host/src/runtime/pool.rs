//! Runs one connector's calls on a pool of reused plugin instances.
//!
//! Instantiating is cheap, but a guest that sets up its parser on every fresh instance is not
//! (see DESIGN.md: ≈ 2.4 ms fresh vs ≈ 0.1 ms reused), so an instance serves up to
//! `calls_per_instance` calls. An instance whose call trapped, timed out or hit its memory cap is
//! discarded; the failure costs one call, never the host.

use super::bindings::{
    self, EarlierOutcome, ErrorKind, Job, JobDone, JobResult, LegacyJob, LegacyJobOutcome,
    PollRequest, PollResponse, ProductPage as WitProductPage, SearchRequest, SearchResponse,
    WitItem, WitProductQuery,
};
use super::instance::{ConnectorServices, HubLink, InstanceState, LogTally, TargetCall};
use super::limits::{CallLimits, LimitExceeded, check_items, clip, is_transfer_cap};
use super::products::{self, ProductPage, ProductQuery};
use super::{EPOCH_TICK, Engine, Plugin, RolePre, Tier};
use crate::config::{LimitSettings, Role};
use crate::egress::{
    ConnectorEgress, EgressLimits, EgressPolicy, ExchangeRecord, RequestSlots, Upstream,
};
use crate::resilience::Resilience;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tsunagi_backends::Item;
use wasmtime::Store;

/// The settings one connector's instance pool needs.
#[derive(Clone)]
pub struct PoolSettings {
    pub concurrency: usize,
    pub calls_per_instance: u32,
    pub call_timeout: Duration,
    pub memory_limit: usize,
    pub egress_limits: EgressLimits,
    /// Requests all calls may have in flight at once.
    pub connector_requests_in_flight: usize,
    pub call_limits: CallLimits,
}

impl PoolSettings {
    /// The settings of a connector running `concurrency` calls under `limits`.
    pub fn new(concurrency: usize, calls_per_instance: u32, limits: &LimitSettings) -> Self {
        Self {
            concurrency,
            calls_per_instance,
            call_timeout: limits.call_timeout,
            memory_limit: usize::try_from(limits.memory.as_u64()).unwrap_or(usize::MAX),
            egress_limits: EgressLimits::from(limits),
            connector_requests_in_flight: limits.connector_requests_in_flight_for(concurrency),
            call_limits: CallLimits::from_settings(limits),
        }
    }
}

/// What a successful poll returned, in host types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollResult {
    pub not_modified: bool,
    pub items: Vec<Item>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub cursor: Option<String>,
    /// The upstream's own refresh hint (feed TTL).
    pub refresh_after: Option<Duration>,
}

/// A job for a handler, in host types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleRequest {
    pub id: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub attempt: u32,
    /// The linked target the job acts for (not passed to a 0.1.0 handler).
    pub target: Option<String>,
    /// What the host knows of the earlier attempts (not passed to a 0.1.0 handler).
    pub earlier: Earlier,
}

/// What the host knows of a job's earlier attempts (WIT `earlier-outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Earlier {
    /// The first attempt.
    #[default]
    None,
    /// Earlier attempts are known not to have taken effect.
    Failed,
    /// An earlier attempt may have taken effect; the plugin should check before acting again.
    Unknown,
}

/// What a handler made of a job: done (a 0.1.0 handler's outcome always is), or deliberately
/// skipped with the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum HandleResult {
    Done {
        reference: Option<String>,
        detail: Option<String>,
    },
    Skipped {
        skipped: String,
    },
}

impl Default for HandleResult {
    fn default() -> Self {
        Self::Done {
            reference: None,
            detail: None,
        }
    }
}

/// A search for a searcher, in host types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    pub query: String,
    pub limit: u32,
    pub cursor: Option<String>,
    pub params: Vec<(String, String)>,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchResult {
    pub items: Vec<Item>,
    pub next_cursor: Option<String>,
    pub total: Option<u64>,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error; `kind` says how the host should treat it.
    #[error("{kind}: {message}")]
    Connector { kind: FailureKind, message: String },
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("call exceeded its time limit of {0:?}")]
    Timeout(Duration),
    #[error("plugin exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The plugin ran into one of its other limits (state, items, the size of what it hands
    /// the host).
    #[error("{0}")]
    Limit(LimitExceeded),
    #[error("could not instantiate the plugin: {0}")]
    Instantiate(String),
    /// A host service failed during the call; not the target's or the plugin's fault.
    #[error("host failure during the call: {0}")]
    HostService(String),
}

/// Why a candidate version failed the check a swap runs before it serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelfTestError {
    #[error("instantiating failed: {0}")]
    Instantiate(String),
    #[error("self-test exceeded its time limit of {0:?}")]
    Timeout(Duration),
    #[error("self-test trapped: {0}")]
    Trap(String),
    /// The plugin's own `self-test` export said why.
    #[error("self-test failed: {0}")]
    Failed(String),
}

/// How a failure reported by a plugin should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Transient,
    Permanent,
    RateLimited,
    BadResponse,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient error",
            Self::Permanent => "permanent error",
            Self::RateLimited => "rate limited",
            Self::BadResponse => "bad response",
        })
    }
}

/// Everything one call produced.
#[derive(Debug, Clone)]
pub struct CallReport<T = PollResult> {
    pub result: Result<T, CallError>,
    /// Target-scoped state writes (`None` deletes).
    pub state_writes: BTreeMap<String, Option<String>>,
    /// What the host saw of each HTTP exchange the call made.
    pub exchanges: Vec<ExchangeRecord>,
    pub elapsed: Duration,
    /// What became of the plugin's log lines.
    pub log: LogTally,
    /// The WebSub hubs the plugin reported for the target (`websub.discovered`).
    pub hubs: Vec<HubLink>,
}

impl<T> CallReport<T> {
    /// The same outcome with its answer converted (a conversion may still fail the call).
    fn map<U>(self, convert: impl FnOnce(T) -> Result<U, CallError>) -> CallReport<U> {
        CallReport {
            result: self.result.and_then(convert),
            state_writes: self.state_writes,
            exchanges: self.exchanges,
            elapsed: self.elapsed,
            log: self.log,
            hubs: self.hubs,
        }
    }
}

struct PooledInstance {
    store: Store<InstanceState>,
    exports: RoleInstance,
    calls: u32,
    /// Whose code it runs: a quick instance is dropped once the fast code serves.
    tier: Tier,
}

/// An instance's exports, by role.
enum RoleInstance {
    Poller(bindings::Poller),
    Handler(bindings::handler::Handler),
    LegacyHandler(bindings::legacy_handler::LegacyHandler),
    Searcher(bindings::searcher::Searcher),
    Shop(bindings::shop::Shop),
}

/// One call of a role's export.
enum RoleRequest {
    Poll(PollRequest),
    Handle(Job),
    Search(SearchRequest),
    Products(WitProductQuery),
}

/// What a role's export answered.
enum RoleAnswer {
    Poll(PollResponse),
    Handle(JobResult),
    Search(SearchResponse),
    Products(WitProductPage),
}

/// A pool's instances at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct InstanceCounts {
    /// Kept for the next call.
    pub idle: usize,
    /// Serving a call now.
    pub busy: usize,
    /// Linear memory and tables the idle instances hold, in bytes.
    pub idle_memory_bytes: u64,
}

/// One connector's plugin, its instances, and the limits its calls run under.
pub struct InstancePool {
    engine: Arc<Engine>,
    plugin: Plugin,
    services: Arc<ConnectorServices>,
    policy: Arc<EgressPolicy>,
    resilience: Arc<Resilience>,
    /// Where allowed requests go: the network, or a cassette in `tsunagi plugin test`.
    upstream: Arc<dyn Upstream>,
    settings: PoolSettings,
    idle: Mutex<Vec<PooledInstance>>,
    permits: Semaphore,
    /// Requests in flight across this version's calls.
    request_slots: RequestSlots,
    /// Swapped out: instances of calls still running are dropped when they end, not pooled.
    retired: std::sync::atomic::AtomicBool,
    /// Instances made so far, on quick and on optimized code.
    made: [std::sync::atomic::AtomicU64; 2],
}

impl InstancePool {
    /// A pool for `plugin` whose allowed requests go to `upstream`: the network
    /// ([`crate::egress::Network`]) in production, a cassette in `tsunagi plugin test`.
    pub fn new(
        engine: Arc<Engine>,
        plugin: Plugin,
        services: Arc<ConnectorServices>,
        policy: Arc<EgressPolicy>,
        resilience: Arc<Resilience>,
        settings: PoolSettings,
        upstream: Arc<dyn Upstream>,
    ) -> Self {
        Self {
            engine,
            plugin,
            services,
            policy,
            resilience,
            upstream,
            permits: Semaphore::new(settings.concurrency),
            request_slots: RequestSlots::new(settings.connector_requests_in_flight),
            settings,
            idle: Mutex::new(Vec::new()),
            retired: std::sync::atomic::AtomicBool::new(false),
            made: Default::default(),
        }
    }

    /// Instances alive now, and what the idle ones hold.
    pub fn instances(&self) -> InstanceCounts {
        let (idle, idle_memory_bytes) = self
            .idle
            .lock()
            .map(|idle| {
                let bytes = idle
                    .iter()
                    .map(|instance| instance.store.data().limits.memory_bytes() as u64)
                    .sum();
                (idle.len(), bytes)
            })
            .unwrap_or_default();
        InstanceCounts {
            idle,
            busy: self
                .settings
                .concurrency
                .saturating_sub(self.permits.available_permits()),
            idle_memory_bytes,
        }
    }

    /// Instances this pool has made on `tier`'s code.
    pub fn instances_made(&self, tier: Tier) -> u64 {
        self.made[tier as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub fn connector(&self) -> &str {
        &self.services.connector
    }

    /// Polls one target. Waits for a free slot when `concurrency` calls are already running.
    pub async fn poll(
        &self,
        call: TargetCall,
        etag: Option<String>,
        last_modified: Option<String>,
        cursor: Option<String>,
    ) -> CallReport {
        let request = PollRequest {
            target: call.target.clone(),
            etag,
            last_modified,
            cursor,
        };
        self.call(call, RoleRequest::Poll(request), None)
            .await
            .map(|answer| match answer {
                RoleAnswer::Poll(response) => Ok(convert_response(response)),
                _ => Err(wrong_answer()),
            })
    }

    /// Hands one job to a handler. The call's target is the job's queue entry.
    pub async fn handle(&self, call: TargetCall, job: HandleRequest) -> CallReport<HandleResult> {
        let job = Job {
            id: job.id,
            kind: job.kind,
            payload: job.payload,
            attempt: job.attempt,
            target: job.target,
            earlier: match job.earlier {
                Earlier::None => EarlierOutcome::None,
                Earlier::Failed => EarlierOutcome::Failed,
                Earlier::Unknown => EarlierOutcome::Unknown,
            },
        };
        self.call(call, RoleRequest::Handle(job), None)
            .await
            .map(|answer| match answer {
                RoleAnswer::Handle(JobResult::Done(done)) => Ok(HandleResult::Done {
                    reference: done.reference,
                    detail: done.detail,
                }),
                RoleAnswer::Handle(JobResult::Skipped(reason)) => {
                    Ok(HandleResult::Skipped { skipped: reason })
                }
                _ => Err(wrong_answer()),
            })
    }

    /// Runs one search on a searcher. The call's target names the search (its query).
    pub async fn search(&self, call: TargetCall, query: SearchQuery) -> CallReport<SearchResult> {
        let request = SearchRequest {
            query: query.query,
            limit: query.limit,
            cursor: query.cursor,
            params: query.params,
        };
        self.call(call, RoleRequest::Search(request), None)
            .await
            .map(|answer| match answer {
                RoleAnswer::Search(response) => Ok(SearchResult {
                    items: response.items.into_iter().map(convert_item).collect(),
                    next_cursor: response.next_cursor,
                    total: response.total,
                }),
                _ => Err(wrong_answer()),
            })
    }

    /// Runs one product search on a searcher, in the common product schema (a 0.1.1 searcher's
    /// items are mapped onto it), ending by `deadline` when that comes before the connector's
    /// call timeout: a search's deadline bounds the call, its requests and their waits for a
    /// budget slot.
    pub async fn search_products(
        &self,
        call: TargetCall,
        query: &ProductQuery,
        deadline: Instant,
    ) -> CallReport<ProductPage> {
        let shop = self.connector().to_string();
        let request = match &self.plugin.role_pre {
            RolePre::Searcher(_) => RoleRequest::Search(SearchRequest::from(query)),
            _ => RoleRequest::Products(WitProductQuery::from(query)),
        };
        self.call(call, request, Some(deadline))
            .await
            .map(|answer| {
                let mut page = match answer {
                    RoleAnswer::Products(page) => ProductPage {
                        products: page.products.into_iter().map(products::from_wit).collect(),
                        total: page.total,
                    },
                    RoleAnswer::Search(response) => products::from_items(response),
                    _ => return Err(wrong_answer()),
                };
                for product in &mut page.products {
                    product.shop.clone_from(&shop);
                }
                Ok(page)
            })
    }

    /// One call of the plugin's role export on a pooled instance, under the connector's time and
    /// memory limits (the time cut short by `deadline`, if given and sooner), with the exchanges
    /// it made and the state it wrote.
    async fn call(
        &self,
        mut call: TargetCall,
        request: RoleRequest,
        deadline: Option<Instant>,
    ) -> CallReport<RoleAnswer> {
        let started = Instant::now();
        let _permit = self.permits.acquire().await;
        let target = call.target.clone();
        let asked = match &request {
            RoleRequest::Poll(_) => Role::Poller,
            RoleRequest::Handle(_) => Role::Handler,
            RoleRequest::Search(_) | RoleRequest::Products(_) => Role::Searcher,
        };
        let instance = if asked == self.plugin.role {
            self.take_instance().await
        } else {
            Err(CallError::HostService(format!(
                "connector '{}' is a {}, not a {asked}",
                self.connector(),
                self.plugin.role
            )))
        };
        let mut instance = match instance {
            Ok(instance) => instance,
            Err(error) => {
                return CallReport {
                    result: Err(error),
                    state_writes: BTreeMap::new(),
                    exchanges: Vec::new(),
                    elapsed: started.elapsed(),
                    log: LogTally::default(),
                    hubs: Vec::new(),
                };
            }
        };

        // Taken after the wait for an instance, so that wait counts against the deadline too.
        let timeout = deadline.map_or(self.settings.call_timeout, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(self.settings.call_timeout)
        });
        let pushed = call.pushed.take();
        let data = instance.store.data_mut();
        data.call = call;
        data.limits.exceeded = false;
        data.host_failure = None;
        data.limit_exceeded = None;
        data.deadline = Instant::now() + timeout;
        let exchange_log = data.egress.begin_call(&target, data.deadline, pushed);
        instance.store.set_epoch_deadline(1);

        // The epoch callback stops a plugin that computes forever; this timeout stops one stuck
        // waiting on the host (epochs are only checked while guest code runs).
        let PooledInstance { store, exports, .. } = &mut instance;
        let outcome =
            tokio::time::timeout(timeout + EPOCH_TICK * 10, invoke(exports, store, &request)).await;

        let limits = &self.settings.call_limits;
        let result = match outcome {
            Err(_) => Err(CallError::Timeout(timeout)),
            // Checked as soon as it is lifted, before anything is built from it.
            Ok(Ok(Ok(answer))) => check_answer(self.connector(), limits, &answer)
                .map(|()| answer)
                .map_err(CallError::Limit),
            Ok(Ok(Err(error))) => Err(CallError::Connector {
                kind: convert_kind(error.kind),
                // The plugin's text travels on to logs, the store and `/status`: capped here,
                // where it enters the host, no longer than a log line nor a stored error.
                message: tsunagi_backends::cap_error(&clip(&error.message, limits.log_line_size))
                    .into_owned(),
            }),
            Ok(Err(trap)) => Err(self.classify_trap(&instance, &trap)),
        };
        let state_writes = std::mem::take(&mut instance.store.data_mut().call.writes);
        let hubs = std::mem::take(&mut instance.store.data_mut().call.hubs);
        let log = instance.store.data().call.log;
        if log.cut > 0 || log.dropped > 0 {
            tracing::warn!(connector = %self.connector(), %target,
                "plugin log: {} line(s) cut to limits.log_line_size ({} bytes), {} dropped past \
                 limits.log_lines_per_call ({})",
                log.cut, limits.log_line_size, log.dropped, limits.log_lines_per_call);
        }
        let mut exchanges = exchange_log
            .lock()
            .map(|mut log| std::mem::take(&mut *log))
            .unwrap_or_default();
        self.settle_breakers(&mut exchanges, &result);

        instance.calls += 1;
        let retired = self.retired.load(std::sync::atomic::Ordering::Acquire);
        // A plugin that kept responses past its call would hold their bodies, and its slots,
        // for as long as the instance lives: dropping the instance frees both.
        let holds_responses = instance.store.data().egress.holds_responses();
        if holds_responses {
            tracing::debug!(connector = %self.connector(), %target,
                "plugin instance discarded: it kept responses it had not read to the end");
        }
        if !holds_responses
            && reuse_instance(
                &result,
                instance.calls,
                self.settings.calls_per_instance,
                retired,
            )
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(instance);
        }
        if let Err(error) = &result
            && !matches!(error, CallError::Connector { .. })
        {
            let target = crate::redact::url(&target);
            let error = crate::redact::text(&error.to_string()).into_owned();
            tracing::warn!(connector = %self.connector(), %target,
                "plugin instance discarded: {error}");
        }
        CallReport {
            result,
            state_writes,
            exchanges,
            elapsed: started.elapsed(),
            log,
            hubs,
        }
    }

    /// A store for one instance of this connector: its host services, egress, memory cap,
    /// and an epoch callback that yields every tick and interrupts the guest past its deadline
    /// (so a plugin that computes without pause never holds an executor thread).
    fn new_store(&self, engine: &wasmtime::Engine) -> Store<InstanceState> {
        let egress = ConnectorEgress::new(
            self.policy.clone(),
            self.resilience.clone(),
            self.upstream.clone(),
            self.settings.egress_limits,
            self.request_slots.clone(),
        );
        let state = InstanceState::new(
            self.services.clone(),
            egress,
            self.settings.memory_limit,
            self.settings.call_limits,
        );
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        // What one transfer out of the plugin may make the host copy (see `super::limits`).
        store.set_hostcall_fuel(self.settings.call_limits.transfer_cap());
        store.data_mut().deadline = Instant::now() + self.settings.call_timeout;
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                // tokio's own yield lets the runtime poll its I/O driver and timers before
                // the guest runs again; a plain wake-and-pend does not.
                Ok(wasmtime::UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Instantiates the plugin once, as a swap's last check before it serves, and runs its
    /// `self-test` export if it has one (a top-level `self-test: func() -> result<_, string>`
    /// in its world). Answers whether there was a self-test; errors say what failed.
    pub async fn self_test(&self) -> Result<bool, SelfTestError> {
        let (pre, _) = self.engine.serving(&self.plugin);
        let mut store = self.new_store(pre.instance_pre().engine());
        let timeout = self.settings.call_timeout;
        let instance = pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| SelfTestError::Instantiate(summarise_trap(&e)))?;
        let Ok(self_test) =
            instance.get_typed_func::<(), (Result<(), String>,)>(&mut store, "self-test")
        else {
            return Ok(false);
        };
        let ran = tokio::time::timeout(
            timeout + EPOCH_TICK * 10,
            self_test.call_async(&mut store, ()),
        )
        .await;
        match ran {
            Err(_) => Err(SelfTestError::Timeout(timeout)),
            Ok(Err(trap)) => Err(SelfTestError::Trap(summarise_trap(&trap))),
            Ok(Ok((Err(message),))) => Err(SelfTestError::Failed(message)),
            Ok(Ok((Ok(()),))) => Ok(true),
        }
    }

    /// Marks this version swapped out: its idle instances are dropped now, and those of calls
    /// still running when they end, so a previous version holds no instance slots.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Release);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Makes a retired version current again (rollback).
    pub fn reinstate(&self) {
        self.retired
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Records the outcome of every breaker call the plugin's exchanges left open: all
    /// successes, except the last exchange when the plugin reported its response as bad.
    fn settle_breakers<T>(&self, exchanges: &mut [ExchangeRecord], result: &Result<T, CallError>) {
        let blamed = blamed_exchange(exchanges, result);
        for (index, exchange) in exchanges.iter_mut().enumerate() {
            if let Some(call) = exchange.breaker_call.as_mut() {
                self.resilience.settle(call, Some(index) == blamed);
            }
        }
    }

    fn classify_trap(&self, instance: &PooledInstance, error: &wasmtime::Error) -> CallError {
        let data = instance.store.data();
        if let Some(failure) = &data.host_failure {
            return CallError::HostService(failure.clone());
        }
        if let Some(exceeded) = &data.limit_exceeded {
            return CallError::Limit(exceeded.clone());
        }
        if data.limits.exceeded {
            return CallError::MemoryLimit(self.settings.memory_limit);
        }
        if is_transfer_cap(error) {
            return CallError::Limit(LimitExceeded {
                connector: self.connector().to_string(),
                limit: "items_size",
                what: format!(
                    "the plugin handed the host more than {} bytes at once (a call's result, or \
                     the arguments of one host call)",
                    self.settings.call_limits.transfer_cap()
                ),
            });
        }
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return CallError::Timeout(self.settings.call_timeout);
        }
        CallError::Trap(summarise_trap(error))
    }

    async fn take_instance(&self) -> Result<PooledInstance, CallError> {
        let (pre, tier) = self.engine.serving(&self.plugin);
        while let Some(instance) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            // Quick instances go as the fast code takes over.
            if instance.tier == tier {
                return Ok(instance);
            }
        }
        let mut store = self.new_store(pre.instance_pre().engine());
        let exports = match pre {
            RolePre::Poller(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(RoleInstance::Poller),
            RolePre::Handler(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(RoleInstance::Handler),
            RolePre::LegacyHandler(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(RoleInstance::LegacyHandler),
            RolePre::Searcher(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(RoleInstance::Searcher),
            RolePre::Shop(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(RoleInstance::Shop),
        }
        .map_err(|e| {
            // A component whose memories together start above the cap is the plugin's
            // fault, not the host's.
            if store.data().limits.exceeded {
                CallError::MemoryLimit(self.settings.memory_limit)
            } else {
                CallError::Instantiate(summarise_trap(&e))
            }
        })?;
        self.made[tier as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PooledInstance {
            store,
            exports,
            calls: 0,
            tier,
        })
    }
}

/// Whether an instance goes back to the pool after a call: not after a trap, timeout, memory
/// cap or failed instantiation (its state is suspect), not once it served its calls, and not
/// when its version was swapped out.
fn reuse_instance<T>(
    result: &Result<T, CallError>,
    calls: u32,
    calls_per_instance: u32,
    retired: bool,
) -> bool {
    let healthy = matches!(result, Ok(_) | Err(CallError::Connector { .. }));
    healthy && calls < calls_per_instance && !retired
}

/// The exchange a plugin's `bad-response` verdict counts against its breaker: the last one
/// that got an answer (a later refused or failed exchange has no response to be bad). None
/// when the host's policy refused one of the call's exchanges: the call failed by the host's
/// configuration, and the plugin's verdict then says nothing about an upstream.
fn blamed_exchange<T>(
    exchanges: &[ExchangeRecord],
    result: &Result<T, CallError>,
) -> Option<usize> {
    let bad_response = matches!(
        result,
        Err(CallError::Connector {
            kind: FailureKind::BadResponse,
            ..
        })
    );
    if !bad_response || exchanges.iter().any(|e| e.refused.is_some()) {
        return None;
    }
    exchanges.iter().rposition(|e| e.status.is_some())
}

fn summarise_trap(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    // Backtraces of wasm frames make the message many lines long; the first line says what.
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) if !first.contains(&trap.to_string()) => format!("{first}: {trap}"),
        _ => first,
    }
}

fn convert_kind(kind: ErrorKind) -> FailureKind {
    match kind {
        ErrorKind::Transient => FailureKind::Transient,
        ErrorKind::Permanent => FailureKind::Permanent,
        ErrorKind::RateLimited => FailureKind::RateLimited,
        ErrorKind::BadResponse => FailureKind::BadResponse,
    }
}

/// Calls the export `request` is for; a request of another role is the host's mistake.
async fn invoke(
    exports: &RoleInstance,
    store: &mut Store<InstanceState>,
    request: &RoleRequest,
) -> wasmtime::Result<Result<RoleAnswer, bindings::tsunagi::connector::types::ConnectorError>> {
    Ok(match (exports, request) {
        (RoleInstance::Poller(poller), RoleRequest::Poll(request)) => poller
            .tsunagi_connector_poll()
            .call_poll(store, request)
            .await?
            .map(RoleAnswer::Poll),
        (RoleInstance::Handler(handler), RoleRequest::Handle(job)) => handler
            .tsunagi_connector_jobs()
            .call_handle(store, job)
            .await?
            .map(RoleAnswer::Handle),
        // A 0.1.0 handler gets the old record (no target, no earlier outcome); what it returns
        // is done.
        (RoleInstance::LegacyHandler(handler), RoleRequest::Handle(job)) => {
            let legacy = LegacyJob {
                id: job.id.clone(),
                kind: job.kind.clone(),
                payload: job.payload.clone(),
                attempt: job.attempt,
            };
            handler
                .tsunagi_connector_handle()
                .call_handle(store, &legacy)
                .await?
                .map(|LegacyJobOutcome { reference, detail }| {
                    RoleAnswer::Handle(JobResult::Done(JobDone { reference, detail }))
                })
        }
        (RoleInstance::Searcher(searcher), RoleRequest::Search(request)) => searcher
            .tsunagi_connector_search()
            .call_search(store, request)
            .await?
            .map(RoleAnswer::Search),
        (RoleInstance::Shop(shop), RoleRequest::Products(query)) => shop
            .tsunagi_connector_products()
            .call_search_products(store, query)
            .await?
            .map(RoleAnswer::Products),
        // A cassette (`tsunagi plugin test`) asks a 0.1.2 searcher in 0.1.1 terms: the request's
        // parameters become the query's fields and the products come back as items.
        (RoleInstance::Shop(shop), RoleRequest::Search(request)) => shop
            .tsunagi_connector_products()
            .call_search_products(store, &WitProductQuery::from(&ProductQuery::from(request)))
            .await?
            .map(|page| RoleAnswer::Search(products::to_response(&page.products, page.total))),
        _ => {
            return Err(wasmtime::format_err!(
                "the host called an export this plugin's role does not have"
            ));
        }
    })
}

/// Checks an answer's items and text against the connector's bounds.
fn check_answer(
    connector: &str,
    limits: &CallLimits,
    answer: &RoleAnswer,
) -> Result<(), LimitExceeded> {
    match answer {
        RoleAnswer::Poll(response) => check_items(
            connector,
            limits,
            &response.items,
            [
                response.etag.as_ref(),
                response.last_modified.as_ref(),
                response.cursor.as_ref(),
            ],
        ),
        RoleAnswer::Search(response) => check_items(
            connector,
            limits,
            &response.items,
            [response.next_cursor.as_ref()],
        ),
        RoleAnswer::Products(page) => products::check_products(connector, limits, &page.products),
        RoleAnswer::Handle(JobResult::Done(done)) => check_items(
            connector,
            limits,
            &[],
            [done.reference.as_ref(), done.detail.as_ref()],
        ),
        RoleAnswer::Handle(JobResult::Skipped(reason)) => {
            check_items(connector, limits, &[], [Some(reason), None])
        }
    }
}

fn wrong_answer() -> CallError {
    CallError::HostService("the plugin answered for another role".to_string())
}

fn convert_item(item: WitItem) -> Item {
    Item {
        id: item.id,
        title: item.title,
        link: item.link,
        published: item.published,
        updated: item.updated,
        authors: item.authors,
        summary: item.summary,
        content: item.content,
        categories: item.categories,
        origin: None,
    }
}

fn convert_response(response: PollResponse) -> PollResult {
    PollResult {
        not_modified: response.not_modified,
        items: response.items.into_iter().map(convert_item).collect(),
        etag: response.etag,
        last_modified: response.last_modified,
        cursor: response.cursor,
        refresh_after: response
            .refresh_after_seconds
            .map(|s| Duration::from_secs(u64::from(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector_error(kind: FailureKind) -> Result<(), CallError> {
        Err(CallError::Connector {
            kind,
            message: "m".into(),
        })
    }

    fn answered(status: Option<u16>) -> ExchangeRecord {
        ExchangeRecord {
            status,
            ..ExchangeRecord::default()
        }
    }

    #[test]
    fn a_bad_response_blames_the_last_answered_exchange() {
        let exchanges = [answered(Some(200)), answered(Some(200)), answered(None)];
        assert_eq!(
            blamed_exchange(&exchanges, &connector_error(FailureKind::BadResponse)),
            Some(1)
        );
        assert_eq!(
            blamed_exchange(
                &[answered(None)],
                &connector_error(FailureKind::BadResponse)
            ),
            None,
            "nothing answered, nothing to blame"
        );
        let refused = ExchangeRecord {
            refused: Some("egress refused by connector 'x' allowlist: …".into()),
            ..answered(None)
        };
        assert_eq!(
            blamed_exchange(
                &[answered(Some(200)), refused],
                &connector_error(FailureKind::BadResponse)
            ),
            None,
            "a call the host's policy refused blames no upstream"
        );
    }

    #[test]
    fn other_outcomes_blame_no_exchange() {
        let exchanges = [answered(Some(200))];
        for result in [
            Ok(()),
            connector_error(FailureKind::Transient),
            connector_error(FailureKind::Permanent),
            connector_error(FailureKind::RateLimited),
            Err(CallError::Timeout(Duration::from_secs(1))),
        ] {
            assert_eq!(blamed_exchange(&exchanges, &result), None, "{result:?}");
        }
    }

    #[test]
    fn instances_are_reused_only_when_healthy_fresh_and_current() {
        assert!(reuse_instance(&Ok::<(), _>(()), 1, 1000, false));
        assert!(
            reuse_instance(&connector_error(FailureKind::Transient), 1, 1000, false),
            "the plugin answered: its instance is fine"
        );
        for broken in [
            CallError::Trap("unreachable".into()),
            CallError::Timeout(Duration::from_secs(1)),
            CallError::MemoryLimit(1 << 20),
            CallError::Limit(LimitExceeded {
                connector: "c".into(),
                limit: "items_size",
                what: "too much".into(),
            }),
            CallError::Instantiate("pool full".into()),
            CallError::HostService("store down".into()),
        ] {
            assert!(
                !reuse_instance(&Err::<(), _>(broken.clone()), 1, 1000, false),
                "{broken}"
            );
        }
        assert!(
            !reuse_instance(&Ok::<(), _>(()), 1000, 1000, false),
            "served its calls"
        );
        assert!(!reuse_instance(&Ok::<(), _>(()), 1, 1000, true), "retired");
    }

    #[test]
    fn a_poll_response_becomes_host_types() {
        let response = PollResponse {
            not_modified: false,
            items: vec![WitItem {
                id: "urn:1".into(),
                title: Some("t".into()),
                link: None,
                published: None,
                updated: None,
                authors: vec!["a".into()],
                summary: None,
                content: None,
                categories: vec![],
            }],
            etag: Some("\"e\"".into()),
            last_modified: None,
            cursor: Some("c".into()),
            refresh_after_seconds: Some(90),
        };
        let result = convert_response(response);
        assert_eq!(result.items[0].id, "urn:1");
        assert_eq!(result.items[0].authors, ["a"]);
        assert_eq!(result.etag.as_deref(), Some("\"e\""));
        assert_eq!(result.cursor.as_deref(), Some("c"));
        assert_eq!(result.refresh_after, Some(Duration::from_secs(90)));
    }

    #[test]
    fn failures_read_as_the_host_treats_them() {
        assert_eq!(
            CallError::Connector {
                kind: FailureKind::RateLimited,
                message: "slow down".into()
            }
            .to_string(),
            "rate limited: slow down"
        );
        assert_eq!(
            CallError::MemoryLimit(1024).to_string(),
            "plugin exceeded its memory limit of 1024 bytes"
        );
    }
}
