//! Makes a plugin's machine code: quickly first, fast soon after.
//!
//! Cranelift makes fast code but takes over a second for a 2 MB component; Winch, wasmtime's
//! baseline compiler, makes slower code in a fraction of that. Under [`Compiler::Tiered`] a
//! plugin that is not in the compile cache runs at once on Winch's code while one background
//! thread, at low priority, compiles it with Cranelift; each pool's next instance then runs the fast code (the
//! quick instances are dropped as they come back) and the fast code goes to the compile cache,
//! so the next load, here or in another process, starts on it. A pushed or reloaded plugin so
//! serves within a fraction of a second rather than after its compile.
//!
//! The cache holds only code this host's own compiler made (wasmtime runs cached code without
//! checking it), one file per plugin sha256 and engine, at most [`ARTIFACTS_KEPT`] files.

use crate::config::Compiler;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock, Weak};
use wasmtime::component::Component;

/// Compiled files the cache keeps; the oldest go first.
pub const ARTIFACTS_KEPT: usize = 64;
/// Plugins waiting for the background compile; past it a plugin stays on its quick code.
pub const OPTIMIZE_QUEUE: usize = 16;

/// Which compiler made the code a plugin's instances run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Winch's: made quickly, runs slower.
    Quick,
    /// Cranelift's.
    Optimized,
}

/// Where a plugin's first code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Compiled by this host.
    Compiled,
    /// The compile cache (this host's or another process's on this machine).
    Cache,
    /// Another host of the cluster, signed (`backends.cluster_key`).
    Cluster,
}

/// Where a plugin's background compile stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Optimizing {
    /// Queued or compiling.
    Pending,
    /// The fast code is ready.
    Done,
    /// Not to be had; the quick code keeps serving. Why.
    Failed(String),
}

/// Compiled code another host of the same build can run (`Engine::shared_code`).
#[derive(Clone)]
pub struct SharedCode {
    /// The compiling engine's compatibility tag: code is run only by an engine of that tag.
    pub tag: String,
    pub code: Arc<[u8]>,
}

/// One plugin's code: the first made, and the fast code when it comes.
pub(crate) struct Compiled {
    first: Component,
    first_tier: Tier,
    /// The first code serialized, when it is Winch's (for other hosts).
    quick_code: Option<Arc<[u8]>>,
    origin: Origin,
    optimized: OnceLock<Component>,
    progress: tokio::sync::watch::Sender<Optimizing>,
}

impl Compiled {
    fn new(first: Component, first_tier: Tier, progress: Optimizing) -> Self {
        Self {
            first,
            first_tier,
            quick_code: None,
            origin: Origin::Compiled,
            optimized: OnceLock::new(),
            progress: tokio::sync::watch::Sender::new(progress),
        }
    }

    pub(crate) fn first(&self) -> &Component {
        &self.first
    }

    pub(crate) fn first_tier(&self) -> Tier {
        self.first_tier
    }

    pub(crate) fn quick_code(&self) -> Option<Arc<[u8]>> {
        self.quick_code.clone()
    }

    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// Cranelift's code, when it came after the first.
    pub(crate) fn optimized(&self) -> Option<&Component> {
        self.optimized.get()
    }

    pub(crate) fn progress(&self) -> tokio::sync::watch::Receiver<Optimizing> {
        self.progress.subscribe()
    }

    fn settle(&self, progress: Optimizing) {
        self.progress.send_replace(progress);
    }
}

/// Compiled code on disk, by plugin sha256 and engine.
#[derive(Clone)]
struct Artifacts {
    dir: PathBuf,
    /// The engine's compatibility hash: code made by another wasmtime or config is not loaded.
    engine_tag: String,
}

/// What code of `engine` is compatible with: engines of one wasmtime build and config agree.
pub(crate) fn engine_tag(engine: &wasmtime::Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

impl Artifacts {
    fn new(dir: &Path, engine: &wasmtime::Engine) -> Self {
        Self {
            dir: dir.to_path_buf(),
            engine_tag: engine_tag(engine),
        }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_tag))
    }

    fn load(&self, engine: &wasmtime::Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        // Read rather than mapped: a file cut short under a mapping would crash the process.
        let code = std::fs::read(&path).ok()?;
        // SAFETY: files in the cache directory are written only by `store` below, from code
        // this engine's own compiler made (the directory is the host's, like wasmtime's own
        // cache); a spoiled or incompatible file is refused by wasmtime's header checks.
        match unsafe { Component::deserialize(engine, &code) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::debug!(path = %path.display(), "compile cache entry unusable, compiling again: {error:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn store(&self, sha256: &str, code: &[u8]) {
        let stored = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let partial = self.dir.join(format!(
                ".{sha256}-{}.{}",
                self.engine_tag,
                std::process::id()
            ));
            std::fs::write(&partial, code)?;
            std::fs::rename(&partial, self.path(sha256))
        });
        match stored {
            Ok(()) => self.prune(),
            Err(error) => tracing::warn!(dir = %self.dir.display(),
                "cannot write to the compile cache (the next start compiles again): {error}"),
        }
    }

    /// Keeps the newest [`ARTIFACTS_KEPT`] files.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        if files.len() <= ARTIFACTS_KEPT {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - ARTIFACTS_KEPT] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A plugin waiting for its fast code.
struct Job {
    sha256: String,
    bytes: Arc<[u8]>,
    /// Gone when nobody needs the plugin any more: then it is not compiled.
    compiled: Weak<Compiled>,
}

/// Compiles plugins with the [`Compiler`] chosen, the fast code through the compile cache.
pub(crate) struct Compilers {
    choice: Compiler,
    optimizing: wasmtime::Engine,
    quick: Option<wasmtime::Engine>,
    artifacts: Option<Artifacts>,
    /// The background compile's queue (under `tiered`).
    queue: Option<SyncSender<Job>>,
    /// The quick engine's [`engine_tag`].
    quick_tag: Option<String>,
}

/// Why no code could be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CompileError(pub String);

impl Compilers {
    pub(crate) fn new(
        choice: Compiler,
        optimizing: wasmtime::Engine,
        quick: Option<wasmtime::Engine>,
        cache: Option<&Path>,
    ) -> Self {
        let artifacts = cache.map(|dir| Artifacts::new(dir, &optimizing));
        let queue = match (choice, &quick) {
            (Compiler::Tiered, Some(_)) => spawn_optimizer(optimizing.clone(), artifacts.clone()),
            _ => None,
        };
        let quick_tag = quick.as_ref().map(engine_tag);
        Self {
            choice,
            optimizing,
            quick,
            artifacts,
            queue,
            quick_tag,
        }
    }

    /// Whether the compile cache holds fast code for `sha256`.
    pub(crate) fn cached(&self, sha256: &str) -> bool {
        self.choice != Compiler::Winch
            && self
                .artifacts
                .as_ref()
                .is_some_and(|artifacts| artifacts.path(sha256).is_file())
    }

    /// The tag quick code made here carries.
    pub(crate) fn quick_tag(&self) -> Option<&str> {
        self.quick_tag.as_deref()
    }

    /// Takes quick code another host compiled from `bytes`, if this engine can run code of
    /// `shared.tag`; the fast code is made here in the background as for code compiled here.
    ///
    /// # Safety
    /// `shared.code` must be code a trusted wasmtime compiled (the cluster checks its
    /// signature): wasmtime runs it as it is.
    pub(crate) unsafe fn adopt(
        &self,
        sha256: &str,
        bytes: &[u8],
        shared: &SharedCode,
    ) -> Option<Arc<Compiled>> {
        let quick = self.quick.as_ref()?;
        if self.choice == Compiler::Cranelift || self.quick_tag.as_deref() != Some(&shared.tag) {
            return None;
        }
        // SAFETY: the caller vouches for the code.
        let component = match unsafe { Component::deserialize(quick, &shared.code) } {
            Ok(component) => component,
            Err(error) => {
                tracing::debug!("shared code refused, compiling here: {error:#}");
                return None;
            }
        };
        Some(self.optimize_later(
            sha256,
            bytes,
            component,
            shared.code.clone(),
            Origin::Cluster,
        ))
    }

    /// Code for `bytes` (a component whose hex sha256 is `sha256`).
    pub(crate) fn compile(
        &self,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Arc<Compiled>, CompileError> {
        if self.choice != Compiler::Winch
            && let Some(component) = self
                .artifacts
                .as_ref()
                .and_then(|artifacts| artifacts.load(&self.optimizing, sha256))
        {
            return Ok(Arc::new(Compiled {
                origin: Origin::Cache,
                ..Compiled::new(component, Tier::Optimized, Optimizing::Done)
            }));
        }
        if let (Compiler::Tiered | Compiler::Winch, Some(quick)) = (self.choice, &self.quick) {
            // Serialized, so that other hosts can run it too (`SharedCode`).
            let made = quick.precompile_component(bytes).and_then(|code| {
                // SAFETY: `code` is what this engine's compiler made just now.
                let component = unsafe { Component::deserialize(quick, &code) }?;
                Ok((component, Arc::<[u8]>::from(code)))
            });
            match made {
                Ok((component, code)) => {
                    return Ok(self.optimize_later(
                        sha256,
                        bytes,
                        component,
                        code,
                        Origin::Compiled,
                    ));
                }
                // Winch does not take every feature Cranelift does (SIMD, for one): Cranelift
                // then compiles it now, and its error is the one that counts.
                Err(error) => tracing::debug!(
                    "winch cannot compile the plugin ({error:#}); cranelift compiles it"
                ),
            }
        }
        let component = self.compile_optimized(sha256, bytes)?;
        Ok(Arc::new(Compiled::new(
            component,
            Tier::Optimized,
            Optimizing::Done,
        )))
    }

    fn optimize_later(
        &self,
        sha256: &str,
        bytes: &[u8],
        quick: Component,
        quick_code: Arc<[u8]>,
        origin: Origin,
    ) -> Arc<Compiled> {
        let Some(queue) = &self.queue else {
            return Arc::new(Compiled {
                quick_code: Some(quick_code),
                origin,
                ..Compiled::new(
                    quick,
                    Tier::Quick,
                    Optimizing::Failed("the compiler is winch: quick code only".to_string()),
                )
            });
        };
        let compiled = Arc::new(Compiled {
            quick_code: Some(quick_code),
            origin,
            ..Compiled::new(quick, Tier::Quick, Optimizing::Pending)
        });
        let job = Job {
            sha256: sha256.to_string(),
            bytes: bytes.into(),
            compiled: Arc::downgrade(&compiled),
        };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => compiled.settle(Optimizing::Failed(format!(
                "{OPTIMIZE_QUEUE} plugins were already waiting for cranelift; this one keeps \
                 its quick code until it is loaded again"
            ))),
            Err(TrySendError::Disconnected(_)) => compiled.settle(Optimizing::Failed(
                "the background compiler stopped".to_string(),
            )),
        }
        compiled
    }

    fn compile_optimized(&self, sha256: &str, bytes: &[u8]) -> Result<Component, CompileError> {
        optimize(&self.optimizing, self.artifacts.as_ref(), sha256, bytes)
            .map_err(|e| CompileError(format!("{e:#}")))
    }
}

/// Cranelift's code for `bytes`, kept in the cache for the next load.
fn optimize(
    engine: &wasmtime::Engine,
    artifacts: Option<&Artifacts>,
    sha256: &str,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let Some(artifacts) = artifacts else {
        return Component::new(engine, bytes);
    };
    let code = engine.precompile_component(bytes)?;
    artifacts.store(sha256, &code);
    // SAFETY: `code` is what this engine's compiler made just now.
    unsafe { Component::deserialize(engine, &code) }
}

/// One thread compiling queued plugins with Cranelift, one after another, at low priority and
/// on that thread alone (the engine compiles serially under `tiered`); it ends when the engine
/// is dropped.
fn spawn_optimizer(
    engine: wasmtime::Engine,
    artifacts: Option<Artifacts>,
) -> Option<SyncSender<Job>> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(OPTIMIZE_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("tsunagi-optimizer".to_string())
        .spawn(move || {
            lower_priority();
            optimize_queued(&engine, artifacts.as_ref(), &receiver);
        });
    match spawned {
        Ok(_) => Some(sender),
        Err(error) => {
            tracing::error!(
                "cannot start the background compiler; plugins keep their quick code: {error}"
            );
            None
        }
    }
}

/// Gives this thread the lowest CPU priority but one (nice 10), so the background compile takes
/// only what the host leaves over.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with `who` 0 changes only the calling thread's nice value on Linux.
    unsafe {
        if libc::setpriority(libc::PRIO_PROCESS, 0, 10) != 0 {
            tracing::debug!("cannot lower the background compiler's priority");
        }
    }
}

fn optimize_queued(engine: &wasmtime::Engine, artifacts: Option<&Artifacts>, jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if job.compiled.strong_count() == 0 {
            continue;
        }
        let started = std::time::Instant::now();
        let outcome = optimize(engine, artifacts, &job.sha256, &job.bytes);
        let Some(compiled) = job.compiled.upgrade() else {
            continue;
        };
        match outcome {
            Ok(component) => {
                let _ = compiled.optimized.set(component);
                compiled.settle(Optimizing::Done);
                tracing::debug!(sha256 = %job.sha256, took_ms = started.elapsed().as_millis() as u64,
                    "the plugin's optimized code is ready");
            }
            Err(error) => {
                tracing::warn!(sha256 = %job.sha256,
                    "cranelift cannot compile the plugin; it keeps winch's code: {error:#}");
                compiled.settle(Optimizing::Failed(format!("{error:#}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> (wasmtime::Engine, wasmtime::Engine) {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let optimizing = wasmtime::Engine::new(&config).unwrap();
        config.strategy(wasmtime::Strategy::Winch);
        (optimizing, wasmtime::Engine::new(&config).unwrap())
    }

    fn component(mark: u32) -> Vec<u8> {
        wat::parse_str(format!(
            "(component (core module (func (export \"f\") (result i32) i32.const {mark})))"
        ))
        .unwrap()
    }

    #[test]
    fn past_the_queue_a_plugin_keeps_its_quick_code_and_says_why() {
        let (optimizing, quick) = engines();
        // Nobody drains this queue: the background compiler is busy.
        let (sender, _receiver) = std::sync::mpsc::sync_channel(OPTIMIZE_QUEUE);
        let compilers = Compilers {
            choice: Compiler::Tiered,
            optimizing,
            quick: Some(quick),
            artifacts: None,
            queue: Some(sender),
            quick_tag: None,
        };
        let mut kept = Vec::new();
        for mark in 0..=OPTIMIZE_QUEUE {
            let bytes = component(u32::try_from(mark).unwrap());
            let compiled = compilers.compile(&format!("sha-{mark}"), &bytes).unwrap();
            assert_eq!(compiled.first_tier(), Tier::Quick);
            kept.push(compiled);
        }
        let progress: Vec<Optimizing> =
            kept.iter().map(|c| c.progress().borrow().clone()).collect();
        assert!(
            progress[..OPTIMIZE_QUEUE]
                .iter()
                .all(|p| *p == Optimizing::Pending),
            "{progress:?}"
        );
        match &progress[OPTIMIZE_QUEUE] {
            Optimizing::Failed(why) => assert!(why.contains("already waiting"), "{why}"),
            other => panic!("the plugin past the queue: {other:?}"),
        }
    }

    #[test]
    fn the_fast_code_is_cached_and_a_spoiled_entry_is_compiled_again() {
        let (optimizing, quick) = engines();
        let dir = tempfile::tempdir().unwrap();
        let compilers = Compilers::new(
            Compiler::Tiered,
            optimizing.clone(),
            Some(quick),
            Some(dir.path()),
        );
        let bytes = component(7);
        let first = compilers.compile("sha-7", &bytes).unwrap();
        assert_eq!(first.first_tier(), Tier::Quick, "nothing was cached");
        let mut progress = first.progress();
        let settled = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                progress
                    .wait_for(|p| *p != Optimizing::Pending)
                    .await
                    .map(|p| p.clone())
            })
            .unwrap();
        assert_eq!(settled, Optimizing::Done);
        assert!(first.optimized().is_some());

        let again = compilers.compile("sha-7", &bytes).unwrap();
        assert_eq!(again.first_tier(), Tier::Optimized, "from the cache");

        let artifacts = Artifacts::new(dir.path(), &optimizing);
        std::fs::write(artifacts.path("sha-7"), b"not machine code").unwrap();
        let spoiled = compilers.compile("sha-7", &bytes).unwrap();
        assert_eq!(
            spoiled.first_tier(),
            Tier::Quick,
            "the spoiled entry was refused"
        );
        assert!(
            !artifacts.path("sha-7").exists()
                || std::fs::read(artifacts.path("sha-7")).unwrap() != b"not machine code",
            "and removed"
        );
    }

    #[test]
    fn the_cache_keeps_its_newest_files() {
        let (optimizing, _) = engines();
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::new(dir.path(), &optimizing);
        let start = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let extra = 3;
        for n in 0..ARTIFACTS_KEPT + extra {
            let path = artifacts.path(&format!("sha-{n:03}"));
            std::fs::write(&path, b"code").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(start + std::time::Duration::from_secs(n as u64))
                .unwrap();
        }
        std::fs::write(dir.path().join("unrelated.txt"), b"kept").unwrap();
        artifacts.prune();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), ARTIFACTS_KEPT + 1, "{left:?}");
        assert!(left.contains(&"unrelated.txt".to_string()));
        for n in 0..extra {
            assert!(
                !left
                    .iter()
                    .any(|name| name.starts_with(&format!("sha-{n:03}-"))),
                "the oldest went: {left:?}"
            );
        }
    }
}
