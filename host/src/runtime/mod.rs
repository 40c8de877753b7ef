//! Runtime: the wasmtime engine, loading and validating connector components, and running
//! calls on reused instances under time and memory limits.
//!
//! - [`Engine`] owns the wasmtime engines (Cranelift's with the pooling allocator, Winch's for
//!   quick code, see `compile`), epoch interruption and a thread that advances the epoch.
//! - [`Plugin`] is a compiled, validated component: its imports link, its exports match the role
//!   the TOML declares, and it is identified by the sha256 of its bytes.
//! - [`InstancePool`] runs calls for one connector on a pool of reused instances.

mod bindings;
mod compile;
mod instance;
mod limits;
mod pool;
mod products;
mod swap;

pub use compile::{ARTIFACTS_KEPT, OPTIMIZE_QUEUE, Optimizing, Origin, SharedCode, Tier};
pub use instance::{
    ConnectorServices, HubLink, LogTally, MAX_HUB_URL_BYTES, MAX_HUBS_PER_CALL, RankingAccess,
    TargetCall,
};
pub use limits::{CallLimits, LimitExceeded, clip};
pub use pool::{
    CallError, CallReport, Earlier, FailureKind, HandleRequest, HandleResult, InstanceCounts,
    InstancePool, PollResult, PoolSettings, SearchQuery, SearchResult, SelfTestError,
};
pub use products::{Product, ProductPage, ProductQuery, SortOrder};
pub use swap::{SwappableConnector, VersionInfo};

use crate::config::files::{FileError, read_regular};
use crate::config::{Compiler, Role};
use compile::{Compiled, Compilers};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config as WasmConfig, Engine as WasmEngine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// How often the epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances that may exist at once across all connectors (sizes the pooling allocator).
    pub max_instances: u32,
    /// Largest linear memory any connector may grow to.
    pub max_memory_bytes: u64,
    /// Directory for plugins' optimized code.
    pub compile_cache: Option<PathBuf>,
    pub compiler: Compiler,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_memory_bytes: 128 << 20,
            compile_cache: None,
            compiler: Compiler::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    #[error("plugin {path} is not a WebAssembly component: {reason}")]
    NotAComponent { path: PathBuf, reason: String },
    #[error("plugin {path} cannot be linked: {reason}")]
    Link { path: PathBuf, reason: String },
    #[error("plugin {path} does not fit role '{role}': {reason}")]
    WrongRole {
        path: PathBuf,
        role: &'static str,
        reason: String,
    },
    #[error(
        "plugin {path} was built against tsunagi:connector@{plugin}, which this host \
         (tsunagi:connector@{host}) cannot run: {reason}"
    )]
    WitVersion {
        path: PathBuf,
        plugin: String,
        host: &'static str,
        reason: &'static str,
    },
    #[error("engine setup failed: {0}")]
    Engine(String),
}

/// The largest plugin file read. Components of a JavaScript or Python runtime are tens of MiB;
/// anything past this is a mistake (or `/dev/zero`), not a connector.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// The hex sha256 of a plugin's bytes: its version identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a plugin file: a regular file (symlinks followed) of at most [`MAX_PLUGIN_BYTES`]. The
/// one way the host reads plugins: loading, reload's hashing, `tsunagi check`, the harness.
pub fn read_plugin(path: &Path) -> Result<Vec<u8>, LoadError> {
    read_regular(path, MAX_PLUGIN_BYTES, "plugin").map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The version of the `tsunagi:connector` WIT package this host implements.
pub const WIT_VERSION: &str = "0.1.3";

/// Whether a plugin built against WIT version `plugin` runs on a host implementing `host`, and
/// if not, why. Semver: the same major version (for 0.x, the same minor), and not newer than
/// the host (a newer plugin may call what this host lacks).
pub fn wit_compatibility(plugin: &str, host: &str) -> Result<(), &'static str> {
    let parse = |text: &str| -> Option<(u64, u64, u64)> {
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(str::parse::<u64>);
        Some((
            parts.next()?.ok()?,
            parts.next()?.ok()?,
            parts.next()?.ok()?,
        ))
    };
    let (Some(p), Some(h)) = (parse(plugin), parse(host)) else {
        return Err("the version is not semver");
    };
    if p.0 != h.0 || (p.0 == 0 && p.1 != h.1) {
        return Err("a different major version (for 0.x, minor) is incompatible");
    }
    if p > h {
        return Err("the plugin is newer than the host; upgrade tsunagi");
    }
    Ok(())
}

/// The wasmtime engine and what every connector shares.
pub struct Engine {
    /// Cranelift's, with the pooling allocator.
    engine: WasmEngine,
    linker: Linker<instance::InstanceState>,
    /// Winch's (instances allocated on demand, memory capped by each store's limiter), unless
    /// the compiler is `cranelift`.
    quick: Option<(WasmEngine, Linker<instance::InstanceState>)>,
    compilers: Compilers,
    /// Component instances the pooling allocator holds slots for.
    instance_slots: u32,
    /// The components compiled last, by the sha256 of their bytes: a push checks a plugin and
    /// then swaps it in, and a rollback returns to one just served, without compiling again.
    compiled: std::sync::Mutex<Vec<(String, Arc<Compiled>)>>,
}

/// How many compiled components [`Engine`] keeps for a repeat.
const COMPILED_KEPT: usize = 8;

impl Engine {
    pub fn new(settings: &EngineSettings) -> Result<Arc<Self>, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = settings.max_instances.max(4);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(usize::try_from(settings.max_memory_bytes).unwrap_or(usize::MAX));

        let mut config = WasmConfig::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if settings.compiler == Compiler::Tiered {
            // Cranelift then compiles in the background on one low-priority thread, leaving
            // the cores to what serves (a quick compile elsewhere, the calls).
            config.parallel_compilation(false);
        }
        let engine = WasmEngine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let linker = new_linker(&engine)?;
        let quick = match settings.compiler {
            Compiler::Cranelift => None,
            Compiler::Tiered | Compiler::Winch => {
                let mut config = WasmConfig::new();
                config
                    .wasm_component_model(true)
                    .epoch_interruption(true)
                    .strategy(wasmtime::Strategy::Winch);
                let quick = WasmEngine::new(&config)
                    .map_err(|e| LoadError::Engine(format!("winch: {e:#}")))?;
                let linker = new_linker(&quick)?;
                Some((quick, linker))
            }
        };
        let compilers = Compilers::new(
            settings.compiler,
            engine.clone(),
            quick.as_ref().map(|(quick, _)| quick.clone()),
            settings.compile_cache.as_deref(),
        );

        let engine = Arc::new(Self {
            engine,
            linker,
            quick,
            compilers,
            instance_slots: instances,
            compiled: std::sync::Mutex::new(Vec::new()),
        });
        spawn_epoch_ticker(Arc::downgrade(&engine));
        Ok(engine)
    }

    /// Instances that can exist at once; fixed for the engine's life (a reload cannot grow it).
    pub fn instance_slots(&self) -> u32 {
        self.instance_slots
    }

    /// The linker of the engine whose code a plugin of this tier runs.
    fn linker_for(&self, tier: Tier) -> &Linker<instance::InstanceState> {
        match (tier, &self.quick) {
            (Tier::Quick, Some((_, linker))) => linker,
            _ => &self.linker,
        }
    }

    /// Reads, compiles and validates a plugin for `role`. Compilation is CPU-heavy; call this
    /// from a blocking-friendly context (see [`Engine::load_blocking`]).
    pub fn load(&self, path: &Path, role: Role) -> Result<Plugin, LoadError> {
        let bytes = read_plugin(path)?;
        self.load_bytes(path, &bytes, role)
    }

    /// Like [`Engine::load`], off the async executor's threads.
    pub async fn load_blocking(
        self: &Arc<Self>,
        path: PathBuf,
        role: Role,
    ) -> Result<Plugin, LoadError> {
        let engine = self.clone();
        let join_path = path.clone();
        tokio::task::spawn_blocking(move || engine.load(&path, role))
            .await
            .map_err(|e| {
                LoadError::Engine(format!("loading {} panicked: {e}", join_path.display()))
            })?
    }

    pub fn load_bytes(&self, path: &Path, bytes: &[u8], role: Role) -> Result<Plugin, LoadError> {
        let sha256 = sha256_hex(bytes);
        let compiled = self.compile(path, bytes, &sha256)?;
        self.prepare(path, bytes.len(), sha256, compiled, role)
    }

    /// The quick code compiled here for the plugin `sha256`, for other hosts of this build
    /// (`None` when it was not compiled here by Winch, or is no longer remembered).
    pub fn shared_code(&self, sha256: &str) -> Option<SharedCode> {
        let tag = self.compilers.quick_tag()?.to_string();
        let compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (_, code) = compiled.iter().find(|(seen, _)| seen == sha256)?;
        Some(SharedCode {
            tag,
            code: code.quick_code()?,
        })
    }

    /// Whether code for the plugin `sha256` is to be had without compiling: remembered, or in
    /// the compile cache.
    pub fn has_code(&self, sha256: &str) -> bool {
        let remembered = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|(seen, _)| seen == sha256);
        remembered || self.compilers.cached(sha256)
    }

    /// The tag of the quick code this engine runs (what [`Engine::adopt_code`] takes).
    pub fn quick_code_tag(&self) -> Option<&str> {
        self.compilers.quick_tag()
    }

    /// Remembers `shared` as the quick code of the plugin `bytes` (whose sha256 is `sha256`), so
    /// its next load takes it instead of compiling. Answers whether it was taken (it is not when
    /// this engine cannot run it).
    ///
    /// # Safety
    /// `shared.code` must come from a trusted host's compiler: wasmtime runs it unchecked.
    pub unsafe fn adopt_code(&self, sha256: &str, bytes: &[u8], shared: &SharedCode) -> bool {
        if sha256_hex(bytes) != sha256 {
            return false;
        }
        // SAFETY: passed on from the caller.
        let Some(code) = (unsafe { self.compilers.adopt(sha256, bytes, shared) }) else {
            return false;
        };
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        compiled.retain(|(seen, _)| seen != sha256);
        if compiled.len() >= COMPILED_KEPT {
            compiled.remove(0);
        }
        compiled.push((sha256.to_string(), code));
        true
    }

    /// Loads a plugin for whichever role its exports say (`tsunagi plugin test`, `build`).
    pub fn load_any_role(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = read_plugin(path)?;
        let sha256 = sha256_hex(&bytes);
        let compiled = self.compile(path, &bytes, &sha256)?;
        let component = compiled.first();
        let exports: Vec<String> = component
            .component_type()
            .exports(component.engine())
            .map(|(name, _)| name.to_string())
            .collect();
        let roles: Vec<Role> = [Role::Poller, Role::Handler, Role::Searcher]
            .into_iter()
            .filter(|role| {
                role_exports(*role).iter().any(|export| {
                    let wanted = format!("tsunagi:connector/{export}@");
                    exports.iter().any(|name| name.starts_with(&wanted))
                })
            })
            .collect();
        let role = match roles.as_slice() {
            [role] => *role,
            _ => {
                return Err(LoadError::WrongRole {
                    path: path.to_path_buf(),
                    role: "poller, handler or searcher",
                    reason: format!(
                        "it must export exactly one of tsunagi:connector/poll, jobs (or the \
                         0.1.0 handle) or search; it exports: {}",
                        if exports.is_empty() {
                            "nothing".to_string()
                        } else {
                            exports.join(", ")
                        }
                    ),
                });
            }
        };
        self.prepare(path, bytes.len(), sha256, compiled, role)
    }

    /// Compiles `bytes` (whose hex sha256 is `sha256`), or takes the code compiled last time
    /// they were loaded.
    fn compile(&self, path: &Path, bytes: &[u8], sha256: &str) -> Result<Arc<Compiled>, LoadError> {
        if !wasmparser_is_component(bytes) {
            return Err(LoadError::NotAComponent {
                path: path.to_path_buf(),
                reason: if bytes.starts_with(b"\0asm") {
                    "it is a core wasm module; build it as a component (target wasm32-wasip2)"
                        .to_string()
                } else {
                    "it does not start with the wasm magic bytes".to_string()
                },
            });
        }
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(at) = compiled.iter().position(|(seen, _)| *seen == sha256) {
            let hit = compiled.remove(at);
            let code = hit.1.clone();
            compiled.push(hit);
            return Ok(code);
        }
        // Not under the lock: compiling takes long and other plugins may load meanwhile.
        drop(compiled);
        let code = self
            .compilers
            .compile(sha256, bytes)
            .map_err(|e| LoadError::NotAComponent {
                path: path.to_path_buf(),
                reason: e.0,
            })?;
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if compiled.len() >= COMPILED_KEPT {
            compiled.remove(0);
        }
        compiled.push((sha256.to_string(), code.clone()));
        Ok(code)
    }

    /// Checks the WIT version and the role's exports, and links the imports.
    fn prepare(
        &self,
        path: &Path,
        size: usize,
        sha256: String,
        compiled: Arc<Compiled>,
        role: Role,
    ) -> Result<Plugin, LoadError> {
        self.check_wit_version(path, compiled.first())?;
        let (component, tier) = match compiled.optimized() {
            Some(component) => (component, Tier::Optimized),
            None => (compiled.first(), compiled.first_tier()),
        };
        let role_pre = self.role_pre(path, self.linker_for(tier), component, role)?;
        Ok(Plugin {
            path: path.to_path_buf(),
            sha256,
            size,
            role,
            role_pre,
            tier,
            compiled,
            optimized_pre: Arc::new(std::sync::OnceLock::new()),
        })
    }

    /// What a plugin's instances are made from now, and by which compiler: its fast code as
    /// soon as the background compile has it.
    pub(crate) fn serving<'p>(&self, plugin: &'p Plugin) -> (&'p RolePre, Tier) {
        if plugin.tier == Tier::Optimized {
            return (&plugin.role_pre, Tier::Optimized);
        }
        if let Some(pre) = plugin.optimized_pre.get() {
            return (pre, Tier::Optimized);
        }
        let Some(component) = plugin.compiled.optimized() else {
            return (&plugin.role_pre, Tier::Quick);
        };
        match self.role_pre(&plugin.path, &self.linker, component, plugin.role) {
            Ok(pre) => (plugin.optimized_pre.get_or_init(|| pre), Tier::Optimized),
            Err(error) => {
                // Cannot be: both compilers made code of the same component.
                tracing::warn!(path = %plugin.path.display(),
                    "the optimized code does not link; the quick code keeps serving: {error}");
                (&plugin.role_pre, Tier::Quick)
            }
        }
    }

    /// `component` linked and checked for `role`'s exports.
    fn role_pre(
        &self,
        path: &Path,
        linker: &Linker<instance::InstanceState>,
        component: &Component,
        role: Role,
    ) -> Result<RolePre, LoadError> {
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Link {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
        let wrong_role = |e: wasmtime::Error| LoadError::WrongRole {
            path: path.to_path_buf(),
            role: role.name(),
            reason: format!(
                "it must export tsunagi:connector/{}@{WIT_VERSION}{} ({})",
                role_exports(role)[0],
                match role {
                    Role::Handler => " (or handle, from 0.1.0)",
                    Role::Searcher => " (or search, from 0.1.1)",
                    Role::Poller => "",
                },
                first_line(&format!("{e:#}"))
            ),
        };
        Ok(match role {
            Role::Poller => {
                RolePre::Poller(bindings::PollerPre::new(instance_pre).map_err(wrong_role)?)
            }
            // A 0.1.0 handler exports `handle`, which the host still calls.
            Role::Handler => match bindings::handler::HandlerPre::new(instance_pre.clone()) {
                Ok(pre) => RolePre::Handler(pre),
                Err(error) => RolePre::LegacyHandler(
                    bindings::legacy_handler::LegacyHandlerPre::new(instance_pre)
                        .map_err(|_| wrong_role(error))?,
                ),
            },
            // A 0.1.1 searcher exports `search`, whose items the host maps onto products.
            Role::Searcher => match bindings::shop::ShopPre::new(instance_pre.clone()) {
                Ok(pre) => RolePre::Shop(pre),
                Err(error) => RolePre::Searcher(
                    bindings::searcher::SearcherPre::new(instance_pre)
                        .map_err(|_| wrong_role(error))?,
                ),
            },
        })
    }
}

impl Engine {
    /// Refuses a plugin built against an incompatible `tsunagi:connector` version with a message
    /// naming both versions (the linker's own error would only name a missing import).
    fn check_wit_version(&self, path: &Path, component: &Component) -> Result<(), LoadError> {
        let ty = component.component_type();
        let engine = component.engine();
        let names: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .chain(ty.exports(engine).map(|(name, _)| name.to_string()))
            .collect();
        for name in names {
            let Some(version) = name
                .strip_prefix("tsunagi:connector/")
                .and_then(|rest| rest.split_once('@'))
                .map(|(_, version)| version)
            else {
                continue;
            };
            if let Err(reason) = wit_compatibility(version, WIT_VERSION) {
                return Err(LoadError::WitVersion {
                    path: path.to_path_buf(),
                    plugin: version.to_string(),
                    host: WIT_VERSION,
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// The interfaces a component of `role` may export, newest first: a handler exports `jobs`
/// (0.1.1) or, built against 0.1.0, `handle`; a searcher `products` (0.1.2) or `search`.
fn role_exports(role: Role) -> &'static [&'static str] {
    match role {
        Role::Handler => &["jobs", "handle"],
        Role::Poller => &["poll"],
        Role::Searcher => &["products", "search"],
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// A component has layer 1 in the version field of its preamble; a core module has layer 0.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[6..8] == [1, 0]
}

fn new_linker(engine: &WasmEngine) -> Result<Linker<instance::InstanceState>, LoadError> {
    let mut linker = Linker::new(engine);
    instance::add_to_linker(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
    Ok(linker)
}

fn spawn_epoch_ticker(engine: Weak<Engine>) {
    let spawned = std::thread::Builder::new()
        .name("tsunagi-epoch".to_string())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.engine.increment_epoch();
                if let Some((quick, _)) = &engine.quick {
                    quick.increment_epoch();
                }
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch thread, runaway plugins cannot be stopped: {e}");
    }
}

/// A compiled, validated plugin.
#[derive(Clone)]
pub struct Plugin {
    pub path: PathBuf,
    /// Hex sha256 of the component's bytes: the plugin's version identity.
    pub sha256: String,
    pub size: usize,
    pub role: Role,
    /// Made from the first code compiled.
    pub(crate) role_pre: RolePre,
    /// Which compiler made that first code.
    tier: Tier,
    compiled: Arc<Compiled>,
    /// Made from the fast code when it came after the quick (see [`Engine::serving`]).
    optimized_pre: Arc<std::sync::OnceLock<RolePre>>,
}

/// A component linked and checked for its role's exports, ready to instantiate.
#[derive(Clone)]
pub(crate) enum RolePre {
    Poller(bindings::PollerPre<instance::InstanceState>),
    Handler(bindings::handler::HandlerPre<instance::InstanceState>),
    /// A handler built against 0.1.0 (exports `handle`).
    LegacyHandler(bindings::legacy_handler::LegacyHandlerPre<instance::InstanceState>),
    /// A searcher built against 0.1.1 (exports `search`, items).
    Searcher(bindings::searcher::SearcherPre<instance::InstanceState>),
    Shop(bindings::shop::ShopPre<instance::InstanceState>),
}

impl Plugin {
    /// Which compiler made the code it started on: `quick` when it was not in the cache.
    pub fn started_on(&self) -> Tier {
        self.tier
    }

    /// Where the code it started on came from.
    pub fn origin(&self) -> Origin {
        self.compiled.origin()
    }

    /// Which compiler made the code its instances run now.
    pub fn tier(&self) -> Tier {
        if self.tier == Tier::Optimized || self.compiled.optimized().is_some() {
            Tier::Optimized
        } else {
            Tier::Quick
        }
    }

    /// Waits for the background compile to settle: done, or why not.
    pub async fn optimized(&self) -> Optimizing {
        let mut progress = self.compiled.progress();
        let settled = progress
            .wait_for(|now| *now != Optimizing::Pending)
            .await
            .map(|now| now.clone());
        settled.unwrap_or_else(|_| Optimizing::Failed("the compiler stopped".to_string()))
    }
}

impl RolePre {
    pub(crate) fn instance_pre(
        &self,
    ) -> &wasmtime::component::InstancePre<instance::InstanceState> {
        match self {
            RolePre::Poller(pre) => pre.instance_pre(),
            RolePre::Handler(pre) => pre.instance_pre(),
            RolePre::LegacyHandler(pre) => pre.instance_pre(),
            RolePre::Searcher(pre) => pre.instance_pre(),
            RolePre::Shop(pre) => pre.instance_pre(),
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .field("tier", &self.tier())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_version_is_the_wit_package_version() {
        let wit = include_str!("../../../wit/connector.wit");
        assert!(
            wit.contains(&format!("package tsunagi:connector@{WIT_VERSION};")),
            "WIT_VERSION must match wit/connector.wit"
        );
    }

    #[test]
    fn compatibility_follows_semver() {
        assert_eq!(wit_compatibility("0.1.0", "0.1.0"), Ok(()));
        assert_eq!(
            wit_compatibility("0.1.0", "0.1.3"),
            Ok(()),
            "older patch loads"
        );
        assert!(
            wit_compatibility("0.1.4", "0.1.3").is_err(),
            "newer plugin is refused"
        );
        assert!(wit_compatibility("0.2.0", "0.1.0").is_err());
        assert!(wit_compatibility("1.0.0", "0.1.0").is_err());
        assert_eq!(wit_compatibility("1.2.0", "1.4.1"), Ok(()));
        assert!(wit_compatibility("2.0.0", "1.4.1").is_err());
        assert!(wit_compatibility("x", "0.1.0").is_err());
    }

    #[test]
    fn a_component_without_a_role_export_is_refused_naming_what_it_exports() {
        let engine = Engine::new(&EngineSettings::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.wasm");
        std::fs::write(&path, wat::parse_str("(component)").unwrap()).unwrap();
        let error = engine.load_any_role(&path).unwrap_err().to_string();
        assert!(
            error.contains(
                "exactly one of tsunagi:connector/poll, jobs (or the 0.1.0 handle) or search"
            ) && error.contains("it exports: nothing"),
            "{error}"
        );
    }

    #[test]
    fn an_incompatible_plugin_is_refused_naming_both_versions() {
        let engine = Engine::new(&EngineSettings::default()).unwrap();
        let bytes =
            wat::parse_str(r#"(component (import "tsunagi:connector/log@0.2.0" (instance)))"#)
                .unwrap();
        let error = engine
            .load_bytes(Path::new("new.wasm"), &bytes, Role::Poller)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tsunagi:connector@0.2.0") && error.contains("tsunagi:connector@0.1.3"),
            "{error}"
        );
        // A compatible version passes the check and fails later, on what is really missing.
        let bytes =
            wat::parse_str(r#"(component (import "tsunagi:connector/log@0.1.0" (instance)))"#)
                .unwrap();
        let error = engine
            .load_bytes(Path::new("old.wasm"), &bytes, Role::Poller)
            .unwrap_err();
        assert!(!matches!(error, LoadError::WitVersion { .. }), "{error}");
    }
}
