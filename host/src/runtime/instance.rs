//! The state each plugin instance's store carries, and the host side of the `tsunagi:connector`
//! imports (state, config, log). WASI is linked with no files, no sockets and no environment:
//! the only way out is `wasi:http`, which lands in [`crate::egress`].

use super::WIT_VERSION;
use super::bindings;
use super::bindings::tsunagi::connector::{log, rankings, state};
use super::limits::{CallLimits, LimitExceeded, clip};
use crate::egress::ConnectorEgress;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tsunagi_backends::{StatePut, StateScope, StateStore};
use wasmtime::component::{HasSelf, Linker, ResourceTable, WasmStr};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Table elements (function references) all tables of one instance may hold together. The
/// pooling allocator caps each table at 20,000; honest plugins use a few thousand at most.
const TABLE_ELEMENTS: usize = 100_000;

/// What the host provides to every instance of one connector.
pub struct ConnectorServices {
    pub connector: String,
    /// `[connectors.NAME.config]`, as text.
    pub config: BTreeMap<String, String>,
    pub state: Arc<dyn StateStore>,
    /// The rankings the connector may use (`[connectors.NAME] rankings`).
    pub rankings: RankingAccess,
}

/// A connector's way to the host's rankings: the ones its TOML lists, nothing else.
#[derive(Clone, Default)]
pub struct RankingAccess {
    pub rankings: Option<Arc<crate::rankings::Rankings>>,
    pub allowed: Vec<String>,
}

impl RankingAccess {
    fn open(&self, connector: &str, ranking: &str) -> Result<&crate::rankings::Rankings, String> {
        match &self.rankings {
            Some(rankings) if self.allowed.iter().any(|allowed| allowed == ranking) => Ok(rankings),
            _ => Err(format!(
                "connector '{connector}' may not use ranking {:?}: list it in \
                 [connectors.{connector}] rankings",
                clip(ranking, 64)
            )),
        }
    }
}

/// How a call's log lines fared against `log_lines_per_call` and `log_line_size`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogTally {
    /// Lines written to the host's log (cut ones included).
    pub written: u32,
    /// Lines cut to `log_line_size`.
    pub cut: u32,
    /// Lines dropped past `log_lines_per_call`.
    pub dropped: u32,
}

/// The target a call is for, with its target-scoped state: loaded on the plugin's first read
/// or write (most calls never touch it), and the writes the call made, committed by the caller
/// together with the call's results.
#[derive(Debug, Clone, Default)]
pub struct TargetCall {
    pub target_id: i64,
    pub target: String,
    state: Option<HashMap<String, String>>,
    pub writes: BTreeMap<String, Option<String>>,
    /// Keys plus values of the target's state as it stands with this call's writes.
    state_bytes: usize,
    pub(super) log: LogTally,
    /// A hub's delivery for this target, answering the call's fetch of it (WebSub).
    pub pushed: Option<crate::egress::PushedContent>,
    /// Hubs the plugin reported, at most [`MAX_HUBS_PER_CALL`].
    pub(super) hubs: Vec<HubLink>,
}

/// Hubs one call may report; more are ignored.
pub const MAX_HUBS_PER_CALL: usize = 4;
/// A reported hub or topic URL longer than this is ignored.
pub const MAX_HUB_URL_BYTES: usize = 2048;

/// A WebSub hub the plugin found for the call's target: `hub` pushes updates of `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubLink {
    pub hub: String,
    pub topic: String,
}

impl TargetCall {
    /// A call for a stored target; its state is loaded from the store when first used.
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
            state_bytes: entries_size(&state),
            state: Some(state),
            ..Self::default()
        }
    }

    /// The size of `key`'s entry as the call sees it (its own writes over the stored state).
    fn entry_size(&self, key: &str) -> usize {
        let value = match self.writes.get(key) {
            Some(written) => written.as_deref(),
            None => self
                .state
                .as_ref()
                .and_then(|state| state.get(key).map(String::as_str)),
        };
        value.map_or(0, |value| key.len() + value.len())
    }
}

fn entries_size(state: &HashMap<String, String>) -> usize {
    state.iter().map(|(k, v)| k.len() + v.len()).sum()
}

pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(super) limits: MemoryCap,
    pub(super) call_limits: CallLimits,
    pub(super) egress: ConnectorEgress,
    pub(super) services: Arc<ConnectorServices>,
    pub(super) call: TargetCall,
    /// When the current call (or instantiation) must end.
    pub(super) deadline: std::time::Instant,
    /// Set when a host service failed during the call (e.g. the state store): the call then
    /// fails as the host's fault, not the plugin's.
    pub(super) host_failure: Option<String>,
    /// Set when the plugin ran into one of its limits in a host call, which then trapped.
    pub(super) limit_exceeded: Option<LimitExceeded>,
}

impl InstanceState {
    pub fn new(
        services: Arc<ConnectorServices>,
        egress: ConnectorEgress,
        memory_limit: usize,
        call_limits: CallLimits,
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
            limits: MemoryCap::new(memory_limit),
            call_limits,
            egress,
            services,
            call: TargetCall::default(),
            deadline: std::time::Instant::now(),
            host_failure: None,
            limit_exceeded: None,
        }
    }

    /// Records that the call ran into `limit` and returns the error that traps it.
    fn over_limit(&mut self, limit: &'static str, what: String) -> wasmtime::Error {
        let exceeded = LimitExceeded {
            connector: self.services.connector.clone(),
            limit,
            what,
        };
        let error = wasmtime::Error::msg(exceeded.to_string());
        self.limit_exceeded = Some(exceeded);
        error
    }
}

/// Caps an instance's linear memories and tables, summed over all of them (a component may
/// hold several core instances, each with its own memory), and remembers whether the plugin ran
/// into the cap, so a failed call can say "memory limit" rather than a bare trap.
pub struct MemoryCap {
    pub limit: usize,
    pub exceeded: bool,
    /// Bytes of all the instance's memories, as last allowed.
    memory_bytes: usize,
    /// Elements of all the instance's tables, as last allowed.
    table_elements: usize,
}

impl MemoryCap {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: false,
            memory_bytes: 0,
            table_elements: 0,
        }
    }

    /// Bytes of the instance's memories, as last allowed to grow.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Each memory reports its own size; the others' stay in the sum.
        let total = (self.memory_bytes.saturating_sub(current)).saturating_add(desired);
        let allowed = total <= self.limit;
        if allowed {
            self.memory_bytes = total;
        }
        self.exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.table_elements.saturating_sub(current)).saturating_add(desired);
        let allowed = total <= TABLE_ELEMENTS;
        if allowed {
            self.table_elements = total;
        }
        Ok(allowed)
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

/// Links WASI (sandboxed), `wasi:http` (through the egress hook) and the host services. State
/// and log are linked by hand rather than through the generated bindings so that their text
/// arrives uncopied and only what fits its bound is copied (see [`super::limits`]).
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    bindings::tsunagi::connector::types::add_to_linker::<InstanceState, HasSelf<InstanceState>>(
        linker,
        |s| s,
    )?;
    bindings::tsunagi::connector::config::add_to_linker::<InstanceState, HasSelf<InstanceState>>(
        linker,
        |s| s,
    )?;
    bindings::tsunagi::connector::rankings::add_to_linker::<InstanceState, HasSelf<InstanceState>>(
        linker,
        |s| s,
    )?;
    bindings::tsunagi::connector::websub::add_to_linker::<InstanceState, HasSelf<InstanceState>>(
        linker,
        |s| s,
    )?;
    add_state_to_linker(linker)?;
    add_log_to_linker(linker)
}

type Store<'a> = StoreContextMut<'a, InstanceState>;

/// `text` copied out of the plugin if it is at most `max` bytes, else its length.
fn text_within(
    store: &Store<'_>,
    text: &WasmStr,
    max: usize,
) -> wasmtime::Result<Result<String, usize>> {
    let text = text.to_str(store)?;
    Ok(if text.len() <= max {
        Ok(text.into_owned())
    } else {
        Err(text.len())
    })
}

fn state_key(store: &mut Store<'_>, key: &WasmStr) -> wasmtime::Result<String> {
    let max = store.data().call_limits.state_key_size;
    match text_within(store, key, max)? {
        Ok(key) => Ok(key),
        Err(len) => Err(store.data_mut().over_limit(
            "state_key_size",
            format!("a state key of {len} bytes is longer than {max}"),
        )),
    }
}

fn add_state_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(&format!("tsunagi:connector/state@{WIT_VERSION}"))?;
    instance.func_wrap_async(
        "get",
        |mut store: Store<'_>, (scope, key): (state::Scope, WasmStr)| {
            Box::new(async move {
                let key = state_key(&mut store, &key)?;
                Ok((store.data_mut().state_get(scope, key).await?,))
            })
        },
    )?;
    instance.func_wrap_async(
        "set",
        |mut store: Store<'_>, (scope, key, value): (state::Scope, WasmStr, WasmStr)| {
            Box::new(async move {
                let key = state_key(&mut store, &key)?;
                let max = store.data().call_limits.state_value_size;
                let value = match text_within(&store, &value, max)? {
                    Ok(value) => value,
                    Err(len) => {
                        return Err(store.data_mut().over_limit(
                            "state_value_size",
                            format!(
                                "a state value of {len} bytes (key {key:?}) is longer than {max}"
                            ),
                        ));
                    }
                };
                store.data_mut().write_state(scope, key, Some(value)).await
            })
        },
    )?;
    instance.func_wrap_async(
        "delete",
        |mut store: Store<'_>, (scope, key): (state::Scope, WasmStr)| {
            Box::new(async move {
                let key = state_key(&mut store, &key)?;
                store.data_mut().write_state(scope, key, None).await
            })
        },
    )?;
    Ok(())
}

fn add_log_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(&format!("tsunagi:connector/log@{WIT_VERSION}"))?;
    instance.func_wrap(
        "log",
        |mut store: Store<'_>, (level, message): (log::Level, WasmStr)| {
            let limits = store.data().call_limits;
            if store.data().call.log.written >= limits.log_lines_per_call {
                // Past the cap a line is counted, not even read.
                let tally = &mut store.data_mut().call.log;
                tally.dropped = tally.dropped.saturating_add(1);
                return Ok(());
            }
            let text = message.to_str(&store)?;
            let cut = text.len() > limits.log_line_size;
            let line = clip(&text, limits.log_line_size).into_owned();
            store.data_mut().log_line(level, &line, cut);
            Ok(())
        },
    )?;
    Ok(())
}

impl InstanceState {
    /// Makes sure the call's target state is loaded (it is, for a detached call).
    async fn load_target_state(&mut self) -> wasmtime::Result<()> {
        if self.call.state.is_none() {
            let loaded = self
                .services
                .state
                .target_state(&self.services.connector, self.call.target_id)
                .await;
            let loaded: HashMap<String, String> = self.host_result(loaded)?.into_iter().collect();
            self.call.state_bytes = entries_size(&loaded);
            self.call.state = Some(loaded);
        }
        Ok(())
    }

    pub(super) async fn state_get(
        &mut self,
        scope: state::Scope,
        key: String,
    ) -> wasmtime::Result<Option<String>> {
        match scope {
            state::Scope::Target => {
                if let Some(written) = self.call.writes.get(&key) {
                    return Ok(written.clone());
                }
                self.load_target_state().await?;
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

    /// Sets (`Some`) or deletes (`None`) one key, within the scope's total.
    pub(super) async fn write_state(
        &mut self,
        scope: state::Scope,
        key: String,
        value: Option<String>,
    ) -> wasmtime::Result<()> {
        match scope {
            state::Scope::Target => self.write_target_state(key, value).await,
            state::Scope::Connector => {
                let connector = &self.services.connector;
                let written = match &value {
                    Some(value) => {
                        let cap = self.call_limits.state_per_connector;
                        self.services
                            .state
                            .put_state_within(connector, StateScope::Connector, &key, value, cap)
                            .await
                    }
                    None => self
                        .services
                        .state
                        .set_state(connector, StateScope::Connector, &key, None)
                        .await
                        .map(|()| StatePut::Stored),
                };
                match self.host_result(written)? {
                    StatePut::Stored => Ok(()),
                    StatePut::OverLimit { total } => {
                        let cap = self.call_limits.state_per_connector;
                        Err(self.over_limit(
                            "state_per_connector",
                            format!(
                                "connector state would hold {total} bytes with key {key:?}, more than {cap}"
                            ),
                        ))
                    }
                }
            }
        }
    }

    /// Buffers a target-scoped write for the commit, checked against what the target stores
    /// plus this call's writes. A delete of a key that is not stored leaves nothing to commit,
    /// so the buffer never outgrows the stored keys plus what the total allows.
    async fn write_target_state(
        &mut self,
        key: String,
        value: Option<String>,
    ) -> wasmtime::Result<()> {
        self.load_target_state().await?;
        let old = self.call.entry_size(&key);
        let new = value.as_ref().map_or(0, |value| key.len() + value.len());
        let total = self.call.state_bytes - old + new;
        let cap = self.call_limits.state_per_target;
        if new > old && total > cap {
            return Err(self.over_limit(
                "state_per_target",
                format!(
                    "the target's state would hold {total} bytes with key {key:?}, more than {cap}"
                ),
            ));
        }
        self.call.state_bytes = total;
        let stored = self
            .call
            .state
            .as_ref()
            .is_some_and(|state| state.contains_key(&key));
        match value {
            Some(value) => {
                self.call.writes.insert(key, Some(value));
            }
            None if stored => {
                self.call.writes.insert(key, None);
            }
            None => {
                self.call.writes.remove(&key);
            }
        }
        Ok(())
    }

    /// Writes one plugin log line (already cut to `log_line_size`) to the host's log.
    fn log_line(&mut self, level: log::Level, message: &str, cut: bool) {
        let tally = &mut self.call.log;
        tally.written += 1;
        tally.cut += u32::from(cut);
        let connector = &self.services.connector;
        // A plugin may print the URL it was given or one it built; neither leaks a credential.
        let target = crate::redact::url(&self.call.target);
        let message = crate::redact::text(message);
        match level {
            log::Level::Trace => tracing::trace!(%connector, %target, plugin = true, "{message}"),
            log::Level::Debug => tracing::debug!(%connector, %target, plugin = true, "{message}"),
            log::Level::Info => tracing::info!(%connector, %target, plugin = true, "{message}"),
            log::Level::Warn => tracing::warn!(%connector, %target, plugin = true, "{message}"),
            log::Level::Error => tracing::error!(%connector, %target, plugin = true, "{message}"),
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

impl bindings::tsunagi::connector::types::Host for InstanceState {}

/// The `websub` import: noted for the caller, which subscribes if the connector has WebSub on.
/// Past the caps the report is dropped, never an error: discovery is a hint.
impl bindings::tsunagi::connector::websub::Host for InstanceState {
    async fn discovered(&mut self, hub: String, topic: String) -> wasmtime::Result<()> {
        let link = HubLink { hub, topic };
        let fits = link.hub.len() <= MAX_HUB_URL_BYTES && link.topic.len() <= MAX_HUB_URL_BYTES;
        let hubs = &mut self.call.hubs;
        if fits && hubs.len() < MAX_HUBS_PER_CALL && !hubs.contains(&link) {
            hubs.push(link);
        }
        Ok(())
    }
}

/// The `rankings` import. A refusal (a ranking not listed, a member too long, a board at its
/// cap) is the plugin's to handle, so it is an `Err` to the plugin, not a trap; a store that
/// fails fails the call as the host's fault.
impl bindings::tsunagi::connector::rankings::Host for InstanceState {
    async fn add(
        &mut self,
        ranking: String,
        member: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, String>> {
        let connector = self.services.connector.clone();
        let rankings = match self.services.rankings.open(&connector, &ranking) {
            Ok(rankings) => rankings,
            Err(refused) => return Ok(Err(refused)),
        };
        self.ranking_result(rankings.add(&ranking, &member, delta).await)
    }

    async fn me(
        &mut self,
        ranking: String,
        period: rankings::Period,
        member: String,
    ) -> wasmtime::Result<Result<Option<rankings::Standing>, String>> {
        let query = crate::rankings::RankingQuery::Me { member };
        Ok(self
            .ranking_query(&ranking, period, &query)
            .await?
            .map(|answer| answer.me.map(standing)))
    }

    async fn top(
        &mut self,
        ranking: String,
        period: rankings::Period,
        n: u32,
    ) -> wasmtime::Result<Result<Vec<rankings::Standing>, String>> {
        let query = crate::rankings::RankingQuery::Top { n };
        Ok(self
            .ranking_query(&ranking, period, &query)
            .await?
            .map(|answer| answer.top.into_iter().map(standing).collect()))
    }

    async fn around(
        &mut self,
        ranking: String,
        period: rankings::Period,
        member: String,
        k: u32,
    ) -> wasmtime::Result<Result<Vec<rankings::Standing>, String>> {
        let query = crate::rankings::RankingQuery::Around { member, k };
        Ok(self
            .ranking_query(&ranking, period, &query)
            .await?
            .map(|answer| answer.around.into_iter().map(standing).collect()))
    }
}

fn standing(standing: tsunagi_backends::Standing) -> rankings::Standing {
    rankings::Standing {
        member: standing.member,
        score: standing.score,
        rank: standing.rank,
    }
}

impl InstanceState {
    async fn ranking_query(
        &mut self,
        ranking: &str,
        period: rankings::Period,
        query: &crate::rankings::RankingQuery,
    ) -> wasmtime::Result<Result<crate::rankings::RankingAnswer, String>> {
        let connector = self.services.connector.clone();
        let rankings = match self.services.rankings.open(&connector, ranking) {
            Ok(rankings) => rankings,
            Err(refused) => return Ok(Err(refused)),
        };
        let period = match period {
            rankings::Period::Daily => crate::config::Period::Daily,
            rankings::Period::Weekly => crate::config::Period::Weekly,
            rankings::Period::AllTime => crate::config::Period::AllTime,
        };
        let answer = rankings.query(ranking, period, query).await;
        self.ranking_result(answer)
    }

    /// A refusal goes to the plugin; a store failure fails the call as the host's.
    fn ranking_result<T>(
        &mut self,
        result: Result<T, crate::rankings::RankingError>,
    ) -> wasmtime::Result<Result<T, String>> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(crate::rankings::RankingError::Store(message)) => {
                self.host_failure = Some(message.clone());
                Err(wasmtime::Error::msg(message))
            }
            Err(refused) => Ok(Err(refused.to_string())),
        }
    }
}

impl bindings::tsunagi::connector::config::Host for InstanceState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.services.config.get(&key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::Config;
    use crate::egress::{
        EgressLimits, EgressPolicy, OutboundRequest, RequestSlots, Upstream, UpstreamError,
        UpstreamResponse,
    };
    use crate::resilience::Resilience;
    use async_trait::async_trait;
    use futures::future::BoxFuture;
    use state::Scope;
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
        async fn put_state_within(
            &self,
            _connector: &str,
            scope: StateScope,
            key: &str,
            value: &str,
            max_total: u64,
        ) -> tsunagi_backends::Result<StatePut> {
            let mut values = self.values.lock().unwrap();
            let scope = scope_key(scope);
            let others: usize = values
                .iter()
                .filter(|((s, k), _)| *s == scope && k != key)
                .map(|((_, k), v)| k.len() + v.len())
                .sum();
            let total = (others + key.len() + value.len()) as u64;
            if total > max_total {
                return Ok(StatePut::OverLimit { total });
            }
            values.insert((scope, key.to_string()), value.to_string());
            Ok(StatePut::Stored)
        }
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

    fn instance_with(store: Arc<MemoryState>, call_limits: CallLimits) -> InstanceState {
        let services = Arc::new(ConnectorServices {
            connector: "rss".into(),
            config: BTreeMap::from([("user_agent".to_string(), "tsunagi".to_string())]),
            state: store,
            rankings: RankingAccess::default(),
        });
        let resilience =
            Resilience::in_process(&Config::default(), Arc::new(SystemClock)).expect("resilience");
        let limits = EgressLimits {
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_response_bytes: 1024,
            max_request_bytes: 1024,
            requests_in_flight: 8,
            requests_per_call: 1000,
        };
        let egress = ConnectorEgress::new(
            Arc::new(EgressPolicy::new("rss", Vec::new())),
            resilience,
            Arc::new(Nowhere),
            limits,
            RequestSlots::new(8),
        );
        InstanceState::new(services, egress, 1 << 20, call_limits)
    }

    fn instance(store: Arc<MemoryState>) -> InstanceState {
        instance_with(store, CallLimits::default())
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
        assert_eq!(
            state.state_get(Scope::Target, "seen".into()).await.unwrap(),
            Some("3".into())
        );
        state
            .write_state(Scope::Target, "seen".into(), Some("4".into()))
            .await
            .unwrap();
        state
            .write_state(Scope::Target, "seen-too".into(), Some("5".into()))
            .await
            .unwrap();
        state
            .write_state(Scope::Target, "seen-too".into(), None)
            .await
            .unwrap();
        assert_eq!(
            state.state_get(Scope::Target, "seen".into()).await.unwrap(),
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
            BTreeMap::from([("seen".to_string(), Some("4".to_string()))]),
            "a key set and deleted in one call leaves nothing to commit"
        );
        state
            .write_state(Scope::Target, "seen".into(), None)
            .await
            .unwrap();
        assert_eq!(
            state.call.writes,
            BTreeMap::from([("seen".to_string(), None)]),
            "a stored key's delete is committed"
        );
    }

    #[tokio::test]
    async fn deletes_of_keys_never_stored_buffer_nothing() {
        let mut state = instance(Arc::new(MemoryState::default()));
        state.call = TargetCall::new(7, "http://127.0.0.1/feed");
        for n in 0..1000 {
            state
                .write_state(Scope::Target, format!("absent-{n}"), None)
                .await
                .unwrap();
        }
        assert!(
            state.call.writes.is_empty(),
            "{:?}",
            state.call.writes.len()
        );
    }

    #[tokio::test]
    async fn target_state_stays_within_its_total_counting_what_is_stored() {
        let store = Arc::new(MemoryState::default());
        // 40 bytes stored before the call: "old" + 37 bytes.
        store
            .set_state("rss", StateScope::Target(7), "old", Some(&"o".repeat(37)))
            .await
            .unwrap();
        let limits = CallLimits {
            state_per_target: 100,
            ..CallLimits::default()
        };
        let mut state = instance_with(store.clone(), limits);
        state.call = TargetCall::new(7, "http://127.0.0.1/feed");
        let value = |n: usize| Some("v".repeat(n));
        // "a" + 49 = 50: 90 in all.
        state
            .write_state(Scope::Target, "a".into(), value(49))
            .await
            .unwrap();
        // Replacing "a" with a value one byte longer: 91.
        state
            .write_state(Scope::Target, "a".into(), value(50))
            .await
            .unwrap();
        let error = state
            .write_state(Scope::Target, "b".into(), value(9))
            .await
            .expect_err("91 + 10 is over 100");
        assert!(
            error.to_string().contains(
                "the target's state would hold 101 bytes with key \"b\", more than 100 \
                 (limits.state_per_target)"
            ) && error.to_string().contains("connector 'rss'"),
            "{error}"
        );
        assert_eq!(
            state.limit_exceeded.as_ref().map(|e| e.limit),
            Some("state_per_target")
        );
        assert!(
            !state.call.writes.contains_key("b"),
            "a refused write is not kept"
        );
        // Deleting the stored key makes room: 91 - 40 + 10 = 61.
        state
            .write_state(Scope::Target, "old".into(), None)
            .await
            .unwrap();
        state
            .write_state(Scope::Target, "b".into(), value(9))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn connector_state_writes_through_at_once_within_its_total() {
        let store = Arc::new(MemoryState::default());
        let limits = CallLimits {
            state_per_connector: 20,
            ..CallLimits::default()
        };
        let mut state = instance_with(store.clone(), limits);
        state
            .write_state(Scope::Connector, "token".into(), Some("t".into()))
            .await
            .unwrap();
        assert_eq!(
            store
                .get_state("rss", StateScope::Connector, "token")
                .await
                .unwrap(),
            Some("t".into())
        );
        let error = state
            .write_state(Scope::Connector, "big".into(), Some("x".repeat(15)))
            .await
            .expect_err("6 + 18 is over 20");
        assert!(
            error.to_string().contains(
                "connector state would hold 24 bytes with key \"big\", more than 20 \
                 (limits.state_per_connector)"
            ),
            "{error}"
        );
        assert_eq!(
            store
                .get_state("rss", StateScope::Connector, "big")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_detached_call_starts_from_empty_state_without_the_store() {
        let store = Arc::new(MemoryState::default());
        let mut state = instance(store.clone());
        state.call = TargetCall::detached("http://127.0.0.1/feed");
        assert_eq!(
            state.state_get(Scope::Target, "seen".into()).await.unwrap(),
            None
        );
        assert_eq!(*store.target_loads.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn a_failing_store_fails_the_call_as_the_hosts_fault() {
        let store = Arc::new(MemoryState {
            fail: true,
            ..MemoryState::default()
        });
        let mut state = instance(store);
        let error = state
            .state_get(Scope::Connector, "token".into())
            .await
            .expect_err("the store is down");
        assert!(error.to_string().contains("store down"), "{error}");
        assert_eq!(
            state.host_failure.as_deref(),
            Some("could not open backend memory: store down")
        );
    }

    #[tokio::test]
    async fn config_values_are_the_connectors_and_log_lines_are_counted() {
        let mut state = instance(Arc::new(MemoryState::default()));
        use bindings::tsunagi::connector::config::Host as _;
        assert_eq!(
            state.get("user_agent".into()).await.unwrap(),
            Some("tsunagi".into())
        );
        assert_eq!(state.get("password".into()).await.unwrap(), None);
        state.log_line(log::Level::Info, "line", false);
        state.log_line(log::Level::Warn, "cut… [cut: 9000 bytes in all]", true);
        assert_eq!(
            state.call.log,
            LogTally {
                written: 2,
                cut: 1,
                dropped: 0
            }
        );
    }

    #[test]
    fn memory_growth_past_the_cap_is_refused_and_remembered() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(cap.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!cap.exceeded);
        assert!(!cap.memory_growing(1 << 20, (1 << 20) + 1, None).unwrap());
        assert!(cap.exceeded);
        assert!(!cap.table_growing(0, TABLE_ELEMENTS + 1, None).unwrap());
    }

    #[test]
    fn the_cap_is_on_the_sum_of_all_memories_and_tables() {
        let mut cap = MemoryCap::new(1 << 20);
        // Two memories of 600 KiB each: each under the cap, together over it.
        assert!(cap.memory_growing(0, 600 << 10, None).unwrap());
        assert!(!cap.memory_growing(0, 600 << 10, None).unwrap());
        assert!(cap.exceeded);
        // The first memory may still grow into what is left.
        assert!(cap.memory_growing(600 << 10, 1 << 20, None).unwrap());
        assert!(cap.table_growing(0, TABLE_ELEMENTS / 2, None).unwrap());
        assert!(cap.table_growing(0, TABLE_ELEMENTS / 2, None).unwrap());
        assert!(!cap.table_growing(0, 1, None).unwrap());
    }

    /// A component with two core instances, each with its own 40-page memory (2.5 MiB), under a
    /// cap of 4 MiB: each memory fits, both do not, so instantiating it fails.
    #[test]
    fn a_component_whose_memories_together_pass_the_cap_does_not_instantiate() {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let run = |pages: u32| {
            let bytes = wat::parse_str(format!(
                r#"(component
                    (core module $a (memory {pages}))
                    (core instance (instantiate $a))
                    (core module $b (memory {pages}))
                    (core instance (instantiate $b)))"#
            ))
            .unwrap();
            let component = wasmtime::component::Component::new(&engine, bytes).unwrap();
            let mut store = wasmtime::Store::new(&engine, MemoryCap::new(4 << 20));
            store.limiter(|cap| cap);
            let linker = Linker::<MemoryCap>::new(&engine);
            let result = linker.instantiate(&mut store, &component).map(|_| ());
            (result, store.data().exceeded)
        };
        let (fits, exceeded) = run(20);
        assert!(fits.is_ok() && !exceeded, "2 × 1.25 MiB fits: {fits:?}");
        let (refused, exceeded) = run(40);
        assert!(
            refused.is_err() && exceeded,
            "2 × 2.5 MiB does not: {refused:?}"
        );
    }
}
