//! Runs one connector's calls on a pool of reused plugin instances.
//!
//! Instantiating is cheap, but a guest that sets up its parser on every fresh instance is not
//! (see DESIGN.md: ≈ 2.4 ms fresh vs ≈ 0.1 ms reused), so an instance serves up to
//! `calls_per_instance` calls. An instance whose call trapped, timed out or hit its memory cap is
//! discarded; the failure costs one call, never the host.

use super::bindings::{self, ErrorKind, PollRequest, PollResponse};
use super::instance::{ConnectorServices, InstanceState, TargetCall};
use super::{EPOCH_TICK, Plugin, Runtime};
use crate::egress::{ConnectorEgress, EgressClients, EgressLimits, EgressPolicy, ExchangeRecord};
use crate::resilience::Resilience;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tsunagi_backends::Item;
use wasmtime::Store;

/// The settings one connector's runtime needs.
#[derive(Clone)]
pub struct ConnectorRuntimeSettings {
    pub concurrency: usize,
    pub calls_per_instance: u32,
    pub call_timeout: Duration,
    pub memory_limit: usize,
    pub egress_limits: EgressLimits,
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
    #[error("could not instantiate the plugin: {0}")]
    Instantiate(String),
    /// A host service failed during the call; not the target's or the plugin's fault.
    #[error("host failure during the call: {0}")]
    Host(String),
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
pub struct CallOutcome {
    pub result: Result<PollResult, CallError>,
    /// Target-scoped state writes (`None` deletes).
    pub state_writes: BTreeMap<String, Option<String>>,
    /// What the host saw of each HTTP exchange the call made.
    pub exchanges: Vec<ExchangeRecord>,
    pub elapsed: Duration,
}

struct PooledInstance {
    store: Store<InstanceState>,
    poller: bindings::Poller,
    calls: u32,
}

/// One connector's plugin, its instances, and the limits its calls run under.
pub struct ConnectorRuntime {
    runtime: Arc<Runtime>,
    plugin: Plugin,
    services: Arc<ConnectorServices>,
    policy: Arc<EgressPolicy>,
    resilience: Arc<Resilience>,
    clients: EgressClients,
    settings: ConnectorRuntimeSettings,
    idle: Mutex<Vec<PooledInstance>>,
    permits: Semaphore,
    /// Swapped out: instances of calls still running are dropped when they end, not pooled.
    retired: std::sync::atomic::AtomicBool,
}

impl ConnectorRuntime {
    pub fn new(
        runtime: Arc<Runtime>,
        plugin: Plugin,
        services: Arc<ConnectorServices>,
        policy: EgressPolicy,
        resilience: Arc<Resilience>,
        settings: ConnectorRuntimeSettings,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let clients =
            crate::egress::build_client(&policy, &settings.egress_limits, settings.concurrency)?;
        Ok(Self {
            runtime,
            plugin,
            services,
            policy,
            resilience,
            clients,
            permits: Semaphore::new(settings.concurrency),
            settings,
            idle: Mutex::new(Vec::new()),
            retired: std::sync::atomic::AtomicBool::new(false),
        })
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
    ) -> CallOutcome {
        let started = Instant::now();
        let _permit = self.permits.acquire().await;
        let request = PollRequest {
            target: call.target.clone(),
            etag,
            last_modified,
            cursor,
        };
        let mut instance = match self.take_instance().await {
            Ok(instance) => instance,
            Err(error) => {
                return CallOutcome {
                    result: Err(error),
                    state_writes: BTreeMap::new(),
                    exchanges: Vec::new(),
                    elapsed: started.elapsed(),
                };
            }
        };

        let timeout = self.settings.call_timeout;
        let data = instance.store.data_mut();
        data.call = call;
        data.limits.exceeded = false;
        data.host_failure = None;
        data.deadline = Instant::now() + timeout;
        let exchange_log = data.egress.begin_call(&request.target, data.deadline);
        instance.store.set_epoch_deadline(1);

        // The epoch callback stops a plugin that computes forever; this timeout stops one stuck
        // waiting on the host (epochs are only checked while guest code runs).
        let outcome = tokio::time::timeout(
            timeout + EPOCH_TICK * 10,
            instance
                .poller
                .tsunagi_connector_poll()
                .call_poll(&mut instance.store, &request),
        )
        .await;

        let result = match outcome {
            Err(_) => Err(CallError::Timeout(timeout)),
            Ok(Ok(Ok(response))) => Ok(convert_response(response)),
            Ok(Ok(Err(error))) => Err(CallError::Connector {
                kind: convert_kind(error.kind),
                message: error.message,
            }),
            Ok(Err(trap)) => Err(self.classify_trap(&instance, &trap)),
        };
        let state_writes = std::mem::take(&mut instance.store.data_mut().call.writes);
        let mut exchanges = exchange_log
            .lock()
            .map(|mut log| std::mem::take(&mut *log))
            .unwrap_or_default();
        self.settle_breakers(&mut exchanges, &result);

        let healthy = matches!(result, Ok(_) | Err(CallError::Connector { .. }));
        instance.calls += 1;
        if healthy
            && instance.calls < self.settings.calls_per_instance
            && !self.retired.load(std::sync::atomic::Ordering::Acquire)
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(instance);
        }
        if let Err(error) = &result
            && !matches!(error, CallError::Connector { .. })
        {
            tracing::warn!(connector = %self.connector(), target = %request.target,
                "plugin instance discarded: {error}");
        }
        CallOutcome {
            result,
            state_writes,
            exchanges,
            elapsed: started.elapsed(),
        }
    }

    /// A store for one instance of this connector: its host services, egress, memory cap,
    /// and an epoch callback that yields every tick and interrupts the guest past its deadline
    /// (so a plugin that computes without pause never holds an executor thread).
    fn new_store(&self) -> Store<InstanceState> {
        let egress = ConnectorEgress::new(
            self.policy.clone(),
            self.resilience.clone(),
            self.clients.clone(),
            self.settings.egress_limits,
        );
        let state = InstanceState::new(self.services.clone(), egress, self.settings.memory_limit);
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.data_mut().deadline = Instant::now() + self.settings.call_timeout;
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Instantiates the plugin once, as a swap's last check before it serves, and runs its
    /// `self-test` export if it has one (a top-level `self-test: func() -> result<_, string>`
    /// in its world). Answers whether there was a self-test; errors say what failed.
    pub async fn self_test(&self) -> Result<bool, String> {
        let mut store = self.new_store();
        let timeout = self.settings.call_timeout;
        let instance = self
            .plugin
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("instantiating failed: {}", summarise_trap(&e)))?;
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
            Err(_) => Err(format!("self-test exceeded its time limit of {timeout:?}")),
            Ok(Err(trap)) => Err(format!("self-test trapped: {}", summarise_trap(&trap))),
            Ok(Ok((Err(message),))) => Err(format!("self-test failed: {message}")),
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
    fn settle_breakers(
        &self,
        exchanges: &mut [ExchangeRecord],
        result: &Result<PollResult, CallError>,
    ) {
        let bad_response = matches!(
            result,
            Err(CallError::Connector {
                kind: FailureKind::BadResponse,
                ..
            })
        );
        let last_answered = exchanges.iter().rposition(|e| e.status.is_some());
        for (index, exchange) in exchanges.iter_mut().enumerate() {
            if let Some(call) = exchange.breaker_call.as_mut() {
                let blamed = bad_response && Some(index) == last_answered;
                self.resilience.settle(call, blamed);
            }
        }
    }

    fn classify_trap(&self, instance: &PooledInstance, error: &wasmtime::Error) -> CallError {
        if let Some(failure) = &instance.store.data().host_failure {
            return CallError::Host(failure.clone());
        }
        if instance.store.data().limits.exceeded {
            return CallError::MemoryLimit(self.settings.memory_limit);
        }
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return CallError::Timeout(self.settings.call_timeout);
        }
        CallError::Trap(summarise_trap(error))
    }

    async fn take_instance(&self) -> Result<PooledInstance, CallError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some(instance) = reused {
            return Ok(instance);
        }
        let mut store = self.new_store();
        let poller = self
            .plugin
            .poller_pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::Instantiate(summarise_trap(&e)))?;
        Ok(PooledInstance {
            store,
            poller,
            calls: 0,
        })
    }
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

fn convert_response(response: PollResponse) -> PollResult {
    PollResult {
        not_modified: response.not_modified,
        items: response
            .items
            .into_iter()
            .map(|item| Item {
                id: item.id,
                title: item.title,
                link: item.link,
                published: item.published,
                updated: item.updated,
                authors: item.authors,
                summary: item.summary,
                content: item.content,
                categories: item.categories,
            })
            .collect(),
        etag: response.etag,
        last_modified: response.last_modified,
        cursor: response.cursor,
        refresh_after: response
            .refresh_after_seconds
            .map(|s| Duration::from_secs(u64::from(s))),
    }
}
