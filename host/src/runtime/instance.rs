//! The state each plugin instance's store carries, and the host side of the `tsunagi:connector`
//! imports (state, config, log). WASI is linked with no files, no sockets and no environment:
//! the only way out is `wasi:http`, which lands in [`crate::egress`].

use super::bindings;
use super::bindings::tsunagi::connector::{config, log, state, types};
use crate::egress::ConnectorEgress;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tsunagi_backends::{StateScope, StateStore};
use wasmtime::ResourceLimiter;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Log lines one call may write before the rest are dropped (a plugin must not flood the log).
const LOG_LINES_PER_CALL: u32 = 200;

/// What the host provides to every instance of one connector.
pub struct ConnectorServices {
    pub connector: String,
    /// `[connectors.NAME.config]`, as text.
    pub config: BTreeMap<String, String>,
    pub state: Arc<dyn StateStore>,
}

/// The target a call is for, with its target-scoped state: loaded on the plugin's first read
/// (most calls never read it), and the writes the call made, committed by the caller together
/// with the call's results.
#[derive(Debug, Clone, Default)]
pub struct TargetCall {
    pub target_id: i64,
    pub target: String,
    state: Option<HashMap<String, String>>,
    pub writes: BTreeMap<String, Option<String>>,
    log_lines: u32,
}

impl TargetCall {
    /// A call for a stored target; its state is loaded from the store when first read.
    pub fn new(target_id: i64, target: &str) -> Self {
        Self {
            target_id,
            target: target.to_string(),
            ..Self::default()
        }
    }

    /// A call for a target that is not stored (`tsunagi poll`): it starts with empty state.
    pub fn detached(target: &str) -> Self {
        Self::with_state(target, HashMap::new())
    }

    /// A call for a target that is not stored, with the state it starts from
    /// (`tsunagi plugin test` carries state from case to case).
    pub fn with_state(target: &str, state: HashMap<String, String>) -> Self {
        Self {
            target: target.to_string(),
            state: Some(state),
            ..Self::default()
        }
    }
}

pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(super) limits: MemoryCap,
    pub(super) egress: ConnectorEgress,
    pub(super) services: Arc<ConnectorServices>,
    pub(super) call: TargetCall,
    /// When the current call (or instantiation) must end.
    pub(super) deadline: std::time::Instant,
    /// Set when a host service failed during the call (e.g. the state store): the call then
    /// fails as the host's fault, not the plugin's.
    pub(super) host_failure: Option<String>,
}

impl InstanceState {
    pub fn new(
        services: Arc<ConnectorServices>,
        egress: ConnectorEgress,
        memory_limit: usize,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: MemoryCap {
                limit: memory_limit,
                exceeded: false,
            },
            egress,
            services,
            call: TargetCall::default(),
            deadline: std::time::Instant::now(),
            host_failure: None,
        }
    }
}

/// Caps an instance's linear memory, and remembers whether the plugin ran into the cap, so a
/// failed call can say "memory limit" rather than a bare trap.
pub struct MemoryCap {
    pub limit: usize,
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit;
        self.exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond any honest plugin.
        Ok(desired <= 1_000_000)
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

/// Links WASI (sandboxed), `wasi:http` (through the egress hook) and the host services.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    bindings::Poller::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |s| s)?;
    Ok(())
}

impl types::Host for InstanceState {}

impl state::Host for InstanceState {
    async fn get(&mut self, scope: state::Scope, key: String) -> wasmtime::Result<Option<String>> {
        match scope {
            state::Scope::Target => {
                if let Some(written) = self.call.writes.get(&key) {
                    return Ok(written.clone());
                }
                if self.call.state.is_none() {
                    let loaded = self
                        .services
                        .state
                        .target_state(&self.services.connector, self.call.target_id)
                        .await;
                    let loaded = self.host_result(loaded)?;
                    self.call.state = Some(loaded.into_iter().collect());
                }
                Ok(self
                    .call
                    .state
                    .as_ref()
                    .and_then(|state| state.get(&key).cloned()))
            }
            state::Scope::Connector => {
                let value = self
                    .services
                    .state
                    .get_state(&self.services.connector, StateScope::Connector, &key)
                    .await;
                self.host_result(value)
            }
        }
    }

    async fn set(
        &mut self,
        scope: state::Scope,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.write_state(scope, key, Some(value)).await
    }

    async fn delete(&mut self, scope: state::Scope, key: String) -> wasmtime::Result<()> {
        self.write_state(scope, key, None).await
    }
}

impl InstanceState {
    async fn write_state(
        &mut self,
        scope: state::Scope,
        key: String,
        value: Option<String>,
    ) -> wasmtime::Result<()> {
        match scope {
            state::Scope::Target => {
                self.call.writes.insert(key, value);
                Ok(())
            }
            state::Scope::Connector => {
                let written = self
                    .services
                    .state
                    .set_state(
                        &self.services.connector,
                        StateScope::Connector,
                        &key,
                        value.as_deref(),
                    )
                    .await;
                self.host_result(written)
            }
        }
    }

    /// Passes a host service's result through; a failure ends the call as the host's fault.
    fn host_result<T>(
        &mut self,
        result: Result<T, tsunagi_backends::BackendError>,
    ) -> wasmtime::Result<T> {
        result.map_err(|error| {
            let message = error.to_string();
            self.host_failure = Some(message.clone());
            wasmtime::Error::msg(message)
        })
    }
}

impl config::Host for InstanceState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.services.config.get(&key).cloned())
    }
}

impl log::Host for InstanceState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.call.log_lines += 1;
        if self.call.log_lines > LOG_LINES_PER_CALL {
            if self.call.log_lines == LOG_LINES_PER_CALL + 1 {
                tracing::warn!(connector = %self.services.connector, target = %self.call.target,
                    "plugin log limit of {LOG_LINES_PER_CALL} lines per call reached; dropping the rest");
            }
            return Ok(());
        }
        let connector = &self.services.connector;
        let target = &self.call.target;
        match level {
            log::Level::Trace => tracing::trace!(%connector, %target, plugin = true, "{message}"),
            log::Level::Debug => tracing::debug!(%connector, %target, plugin = true, "{message}"),
            log::Level::Info => tracing::info!(%connector, %target, plugin = true, "{message}"),
            log::Level::Warn => tracing::warn!(%connector, %target, plugin = true, "{message}"),
            log::Level::Error => tracing::error!(%connector, %target, plugin = true, "{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::Config;
    use crate::egress::{
        EgressLimits, EgressPolicy, OutboundRequest, Upstream, UpstreamError, UpstreamResponse,
    };
    use crate::resilience::Resilience;
    use async_trait::async_trait;
    use futures::future::BoxFuture;
    use std::sync::Mutex;
    use std::time::Duration;
    use tsunagi_backends::BackendError;

    /// A state store in memory that can be told to fail.
    #[derive(Default)]
    struct MemoryState {
        values: Mutex<BTreeMap<(String, String), String>>,
        target_loads: Mutex<u32>,
        fail: bool,
    }

    fn scope_key(scope: StateScope) -> String {
        match scope {
            StateScope::Connector => "connector".into(),
            StateScope::Target(id) => format!("target:{id}"),
        }
    }

    #[async_trait]
    impl StateStore for MemoryState {
        async fn get_state(
            &self,
            _connector: &str,
            scope: StateScope,
            key: &str,
        ) -> tsunagi_backends::Result<Option<String>> {
            if self.fail {
                return Err(BackendError::Open {
                    url: "memory".into(),
                    reason: "store down".into(),
                });
            }
            let values = self.values.lock().unwrap();
            Ok(values.get(&(scope_key(scope), key.to_string())).cloned())
        }
        async fn set_state(
            &self,
            _connector: &str,
            scope: StateScope,
            key: &str,
            value: Option<&str>,
        ) -> tsunagi_backends::Result<()> {
            let mut values = self.values.lock().unwrap();
            let slot = (scope_key(scope), key.to_string());
            match value {
                Some(value) => values.insert(slot, value.to_string()),
                None => values.remove(&slot),
            };
            Ok(())
        }
        async fn target_state(
            &self,
            _connector: &str,
            target_id: i64,
        ) -> tsunagi_backends::Result<Vec<(String, String)>> {
            *self.target_loads.lock().unwrap() += 1;
            let values = self.values.lock().unwrap();
            let scope = scope_key(StateScope::Target(target_id));
            Ok(values
                .iter()
                .filter(|((s, _), _)| *s == scope)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    struct Nowhere;

    impl Upstream for Nowhere {
        fn send(
            &self,
            _request: OutboundRequest,
            _limits: EgressLimits,
        ) -> BoxFuture<'_, Result<UpstreamResponse, UpstreamError>> {
            Box::pin(async { Err(UpstreamError::internal("no network in this test")) })
        }
    }

    fn instance(store: Arc<MemoryState>) -> InstanceState {
        let services = Arc::new(ConnectorServices {
            connector: "rss".into(),
            config: BTreeMap::from([("user_agent".to_string(), "tsunagi".to_string())]),
            state: store,
        });
        let resilience =
            Resilience::in_process(&Config::default(), Arc::new(SystemClock)).expect("resilience");
        let limits = EgressLimits {
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_response_bytes: 1024,
        };
        let egress = ConnectorEgress::new(
            Arc::new(EgressPolicy::new("rss", Vec::new())),
            resilience,
            Arc::new(Nowhere),
            limits,
        );
        InstanceState::new(services, egress, 1 << 20)
    }

    #[tokio::test]
    async fn target_state_is_loaded_once_and_writes_wait_for_the_commit() {
        let store = Arc::new(MemoryState::default());
        store
            .set_state("rss", StateScope::Target(7), "seen", Some("3"))
            .await
            .unwrap();
        let mut state = instance(store.clone());
        state.call = TargetCall::new(7, "http://127.0.0.1/feed");
        use state::Host as _;
        assert_eq!(
            state
                .get(state::Scope::Target, "seen".into())
                .await
                .unwrap(),
            Some("3".into())
        );
        state
            .set(state::Scope::Target, "seen".into(), "4".into())
            .await
            .unwrap();
        state
            .delete(state::Scope::Target, "gone".into())
            .await
            .unwrap();
        assert_eq!(
            state
                .get(state::Scope::Target, "seen".into())
                .await
                .unwrap(),
            Some("4".into()),
            "the call reads its own write"
        );
        assert_eq!(*store.target_loads.lock().unwrap(), 1, "loaded once");
        assert_eq!(
            store
                .get_state("rss", StateScope::Target(7), "seen")
                .await
                .unwrap(),
            Some("3".into()),
            "nothing reaches the store before the commit"
        );
        assert_eq!(
            state.call.writes,
            BTreeMap::from([
                ("gone".to_string(), None),
                ("seen".to_string(), Some("4".to_string()))
            ])
        );
    }

    #[tokio::test]
    async fn a_detached_call_starts_from_empty_state_without_the_store() {
        let store = Arc::new(MemoryState::default());
        let mut state = instance(store.clone());
        state.call = TargetCall::detached("http://127.0.0.1/feed");
        use state::Host as _;
        assert_eq!(
            state
                .get(state::Scope::Target, "seen".into())
                .await
                .unwrap(),
            None
        );
        assert_eq!(*store.target_loads.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn connector_state_writes_through_at_once() {
        let store = Arc::new(MemoryState::default());
        let mut state = instance(store.clone());
        use state::Host as _;
        state
            .set(state::Scope::Connector, "token".into(), "t".into())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_state("rss", StateScope::Connector, "token")
                .await
                .unwrap(),
            Some("t".into())
        );
    }

    #[tokio::test]
    async fn a_failing_store_fails_the_call_as_the_hosts_fault() {
        let store = Arc::new(MemoryState {
            fail: true,
            ..MemoryState::default()
        });
        let mut state = instance(store);
        use state::Host as _;
        let error = state
            .get(state::Scope::Connector, "token".into())
            .await
            .expect_err("the store is down");
        assert!(error.to_string().contains("store down"), "{error}");
        assert_eq!(
            state.host_failure.as_deref(),
            Some("could not open backend memory: store down")
        );
    }

    #[tokio::test]
    async fn config_values_are_the_connectors_and_logs_stop_at_the_cap() {
        let mut state = instance(Arc::new(MemoryState::default()));
        use config::Host as _;
        assert_eq!(
            state.get("user_agent".into()).await.unwrap(),
            Some("tsunagi".into())
        );
        assert_eq!(state.get("password".into()).await.unwrap(), None);
        use log::Host as _;
        for _ in 0..LOG_LINES_PER_CALL + 50 {
            state.log(log::Level::Info, "line".into()).await.unwrap();
        }
        assert_eq!(state.call.log_lines, LOG_LINES_PER_CALL + 50);
    }

    #[test]
    fn memory_growth_past_the_cap_is_refused_and_remembered() {
        let mut cap = MemoryCap {
            limit: 1 << 20,
            exceeded: false,
        };
        assert!(cap.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!cap.exceeded);
        assert!(!cap.memory_growing(1 << 20, (1 << 20) + 1, None).unwrap());
        assert!(cap.exceeded);
        assert!(!cap.table_growing(0, 1_000_001, None).unwrap());
    }
}
