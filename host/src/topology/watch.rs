//! The file trigger of a reload: watches the config file, every plugin file and the drop-in
//! folder (`host.connectors_dir`: a file added there is a new connector), and reloads once
//! things have been quiet for a moment.
//!
//! Editors and deploy tools rarely write a file in place: they write a temporary file and
//! rename it over the old one, or delete and recreate it. So the watch is on the *directories*
//! that hold the files, and any event that names one of the files counts; a burst of events
//! (write, rename, chmod) is debounced into one reload.
//!
//! Kubernetes mounts a ConfigMap as symlinks into a hidden folder (`tsunagi.toml ->
//! ..data/tsunagi.toml`, `..data -> ..2026_12_07_…`) and updates it by swapping the `..data`
//! link, so no event names the file itself. Every symlink on the way from a watched name to
//! its file is watched as well (and the directory holding it), so a swap anywhere on the way
//! counts — the same holds for a `current -> releases/…` deploy.
//!
//! When the kernel's event queue overflows, events are lost and nobody knows which: the
//! watcher then rescans — it compares what every watched name leads to now with what it led to
//! at the last reload, reloads if anything differs, and watches every directory afresh.

use crate::config::Config;
use futures::future::BoxFuture;
use notify::{RecursiveMode, Watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the files must be quiet before a reload starts.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Symlinks followed from one watched name, as the kernel's limit (`ELOOP`) does.
const MAX_LINK_HOPS: usize = 40;

/// Entries of the drop-in folder a rescan looks at; more than the config takes
/// ([`crate::config::dropin::MAX_DROPIN_FILES`]) so a folder over the limit still shows a change.
const MAX_RESCANNED_ENTRIES: usize = 4096;

/// What the watcher tells its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// An event named a watched file, a symlink on the way to one, or a drop-in `.toml`.
    Named,
    /// Events were lost (the queue overflowed, or reading it failed): look at everything.
    Rescan,
}

/// Starts watching, calling `reload` once after each burst of changes; the task ends when
/// `stop` fires. Errors (no inotify, say) are logged and leave the other triggers working.
pub(super) fn spawn_watcher(
    config: &Config,
    reload: impl Fn() -> BoxFuture<'static, ()> + Send + 'static,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    spawn_watcher_with(config, reload, stop, Arc::new(|_| {}))
}

/// Called with each event on the watcher's thread before it is looked at.
type EventHook = Arc<dyn Fn(&notify::Result<notify::Event>) + Send + Sync>;

/// [`spawn_watcher`] with a hook (a test holds the watcher's thread there to make the
/// kernel's queue overflow, and sees which events arrived).
fn spawn_watcher_with(
    config: &Config,
    reload: impl Fn() -> BoxFuture<'static, ()> + Send + 'static,
    stop: CancellationToken,
    before_each_event: EventHook,
) -> Option<JoinHandle<()>> {
    let config_path =
        std::path::absolute(&config.source_path).unwrap_or(config.source_path.clone());
    let files = Arc::new(RwLock::new(Watched::of(config, &config_path)));
    let (events, mut received) = mpsc::unbounded_channel();
    let callback_files = files.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        before_each_event(&event);
        let change = match event {
            Err(_) => Some(Change::Rescan),
            Ok(event) if event.need_rescan() => Some(Change::Rescan),
            Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => None,
            Ok(event) => callback_files
                .read()
                .is_ok_and(|files| event.paths.iter().any(|path| files.names(path)))
                .then_some(Change::Named),
        };
        if let Some(change) = change {
            let _ = events.send(change);
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(
                "cannot watch the config and plugin files; reload with SIGHUP or `tsunagi reload`: {error}"
            );
            return None;
        }
    };
    let mut directories = BTreeSet::new();
    watch_directories(&mut watcher, &mut directories, &files);
    let mut last_seen = files.read().map(|files| files.snapshot()).ok();
    Some(tokio::spawn(async move {
        loop {
            let mut change = tokio::select! {
                () = stop.cancelled() => return,
                event = received.recv() => match event { Some(change) => change, None => return },
            };
            // Quiet period: every further event restarts it.
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    event = received.recv() => match event {
                        Some(Change::Named) => change = Change::Named,
                        Some(Change::Rescan) => {}
                        None => return,
                    },
                }
            }
            if change == Change::Rescan {
                // Directories may have been replaced while events were lost.
                for directory in std::mem::take(&mut directories) {
                    let _ = watcher.unwatch(&directory);
                }
                watch_directories(&mut watcher, &mut directories, &files);
                let now = files.read().map(|files| files.snapshot()).ok();
                if now == last_seen {
                    tracing::info!("file events were lost; a rescan found nothing changed");
                    continue;
                }
                tracing::info!("file events were lost; a rescan found changes: reloading");
            } else {
                tracing::info!("config or plugin file changed: reloading");
            }
            reload().await;
            // A reload may add connectors or point at other plugin files: watch those too.
            if let Ok(config) = Config::load(&config_path)
                && let Ok(mut watched) = files.write()
            {
                *watched = Watched::of(&config, &config_path);
            }
            watch_directories(&mut watcher, &mut directories, &files);
            last_seen = files.read().map(|files| files.snapshot()).ok();
        }
    }))
}

/// The names a reload depends on, as absolute paths.
#[derive(Debug, Default)]
struct Watched {
    /// The config file, every connector's plugin file and the drop-in folder.
    files: BTreeSet<PathBuf>,
    /// Every symlink on the way from one of `files` to what it names, and where it ends.
    links: BTreeSet<PathBuf>,
}

impl Watched {
    fn of(config: &Config, config_path: &Path) -> Watched {
        let files = watched_files(config, config_path);
        let links = files.iter().flat_map(|file| link_chain(file)).collect();
        Watched { files, links }
    }

    /// Whether an event on `path` may change what a reload reads.
    fn names(&self, path: &Path) -> bool {
        self.files.contains(path)
            || self.links.contains(path)
            || (path.extension().is_some_and(|ext| ext == "toml")
                && path.parent().is_some_and(|dir| self.files.contains(dir)))
    }

    /// The directories whose events matter: each one holding a watched name or link, and a
    /// watched folder itself.
    fn directories(&self) -> BTreeSet<PathBuf> {
        self.files
            .iter()
            .chain(&self.links)
            .filter_map(|path| {
                if path.is_dir() && self.files.contains(path) {
                    Some(path.clone())
                } else {
                    path.parent().map(PathBuf::from)
                }
            })
            .collect()
    }

    /// What each watched name leads to now, for a rescan to compare.
    fn snapshot(&self) -> Snapshot {
        let mut stamps = BTreeMap::new();
        for file in &self.files {
            stamps.insert(file.clone(), Stamp::of(file));
            if file.is_dir()
                && let Ok(entries) = std::fs::read_dir(file)
            {
                for entry in entries.flatten().take(MAX_RESCANNED_ENTRIES) {
                    let path = entry.path();
                    if path.extension().is_some_and(|ext| ext == "toml") {
                        stamps.insert(path.clone(), Stamp::of(&path));
                    }
                }
            }
        }
        Snapshot(stamps)
    }
}

/// Each watched name and what it resolves to, size and modification time.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot(BTreeMap<PathBuf, Option<Stamp>>);

#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    resolved: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Stamp {
            resolved: std::fs::canonicalize(path).ok()?,
            len: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// The symlinks met on the way from `path` to the file it names (each as the absolute,
/// unresolved path an event in its directory carries), then that file.
fn link_chain(path: &Path) -> Vec<PathBuf> {
    let mut chain = Vec::new();
    let mut current = PathBuf::new();
    let mut rest: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .map(|part| part.as_os_str().to_owned())
        .collect();
    let mut hops = 0;
    while let Some(part) = rest.pop() {
        match Path::new(&part).components().next() {
            Some(std::path::Component::ParentDir) => {
                current.pop();
                continue;
            }
            Some(std::path::Component::CurDir) => continue,
            _ => current.push(&part),
        }
        let Ok(target) = std::fs::read_link(&current) else {
            continue;
        };
        hops += 1;
        if hops > MAX_LINK_HOPS {
            break;
        }
        chain.push(current.clone());
        // The target replaces this component; a relative one is read from its directory.
        current.pop();
        if target.is_absolute() {
            current = PathBuf::new();
        }
        rest.extend(
            target
                .components()
                .rev()
                .map(|part| part.as_os_str().to_owned()),
        );
    }
    if !chain.is_empty() {
        chain.push(current);
    }
    chain
}

/// The config file, every connector's plugin file and the drop-in folder, as absolute paths.
fn watched_files(config: &Config, config_path: &std::path::Path) -> BTreeSet<PathBuf> {
    let mut files: BTreeSet<PathBuf> = config
        .connectors
        .values()
        .map(|connector| config.resolve(&connector.plugin))
        .collect();
    files.insert(config_path.to_path_buf());
    files.extend(
        config
            .host
            .connectors_dir
            .as_ref()
            .map(|dir| config.resolve(dir)),
    );
    files
}

/// Adds a watch on each directory holding a watched file or link (and on a watched folder
/// itself) that is not watched yet, and drops those no longer wanted (a ConfigMap's old data
/// folder), so the set stays as small as what is watched.
fn watch_directories(
    watcher: &mut impl Watcher,
    watching: &mut BTreeSet<PathBuf>,
    files: &RwLock<Watched>,
) {
    let Ok(wanted) = files.read().map(|files| files.directories()) else {
        return;
    };
    for directory in watching.difference(&wanted) {
        // Gone with its folder, often: nothing to undo then.
        let _ = watcher.unwatch(directory);
    }
    watching.retain(|directory| wanted.contains(directory));
    for directory in wanted.difference(&watching.clone()) {
        match watcher.watch(directory, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watching.insert(directory.clone());
            }
            Err(error) => tracing::error!(directory = %directory.display(),
                "cannot watch; changes there need SIGHUP or `tsunagi reload`: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A reload that only says it happened.
    fn reload_signal() -> (
        impl Fn() -> BoxFuture<'static, ()> + Send + 'static,
        mpsc::UnboundedReceiver<()>,
    ) {
        let (reloads, reloaded) = mpsc::unbounded_channel();
        let reload = move || -> BoxFuture<'static, ()> {
            let reloads = reloads.clone();
            Box::pin(async move {
                let _ = reloads.send(());
            })
        };
        (reload, reloaded)
    }

    fn config_in(dir: &Path, plugin: &str) -> Config {
        let path = dir.join("tsunagi.toml");
        let text = format!(
            "[host]\ndatabase = \"t.db\"\n[connectors.rss]\nplugin = {plugin:?}\nrole = \"poller\"\n"
        );
        std::fs::write(&path, text).expect("config written");
        Config::load(&path).expect("config valid")
    }

    #[test]
    fn the_config_and_every_plugin_file_are_watched_by_absolute_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_in(dir.path(), "plugins/rss.wasm");
        let files = watched_files(&config, &config.source_path);
        let root = std::path::absolute(dir.path()).expect("absolute");
        assert!(files.contains(&root.join("plugins/rss.wasm")), "{files:?}");
        assert!(files.iter().all(|f| f.is_absolute()), "{files:?}");
        assert_eq!(files.len(), 2);
    }

    #[tokio::test]
    async fn a_burst_of_changes_to_a_watched_file_reloads_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugin = dir.path().join("rss.wasm");
        std::fs::write(&plugin, b"v1").expect("plugin written");
        let config = config_in(dir.path(), "rss.wasm");
        let (reload, mut reloaded) = reload_signal();
        let stop = CancellationToken::new();
        let task = spawn_watcher(&config, reload, stop.clone()).expect("inotify works here");
        // Write aside and rename over, twice, the way deploy tools replace a file.
        for version in [b"v2", b"v3"] {
            let aside = dir.path().join("rss.wasm.incoming");
            std::fs::write(&aside, version).expect("write aside");
            std::fs::rename(&aside, &plugin).expect("rename over");
        }
        let first = tokio::time::timeout(Duration::from_secs(30), reloaded.recv()).await;
        assert_eq!(first.expect("a reload within 30 s"), Some(()));
        stop.cancel();
        task.await.expect("watcher ends");
        let mut extra = 0;
        while reloaded.try_recv().is_ok() {
            extra += 1;
        }
        assert_eq!(extra, 0, "one burst, one reload");
    }

    /// Writes `files` the way the kubelet updates a ConfigMap volume: a new hidden folder,
    /// `..data_tmp` pointing at it renamed over `..data`, the visible names linked once, the
    /// old folder removed.
    fn configmap_write(dir: &Path, version: u32, files: &[(&str, &[u8])]) {
        let folder = format!("..2026_12_07_23_00_0{version}.12345");
        std::fs::create_dir(dir.join(&folder)).expect("data folder");
        for (name, bytes) in files {
            std::fs::write(dir.join(&folder).join(name), bytes).expect("data file");
        }
        let old = std::fs::read_link(dir.join("..data")).ok();
        std::os::unix::fs::symlink(&folder, dir.join("..data_tmp")).expect("data_tmp link");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
        for (name, _) in files {
            let visible = dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &visible)
                    .expect("visible link");
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).expect("old data folder removed");
        }
    }

    fn config_text(version: u32) -> Vec<u8> {
        format!(
            "# version {version}\n[host]\ndatabase = \"t.db\"\n[connectors.rss]\nplugin = \"rss.wasm\"\nrole = \"poller\"\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_links_on_the_way_to_a_configmap_file_are_watched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        configmap_write(
            &root,
            1,
            &[("tsunagi.toml", &config_text(1)), ("rss.wasm", b"v1")],
        );
        let chain = link_chain(&root.join("tsunagi.toml"));
        assert_eq!(
            chain,
            vec![
                root.join("tsunagi.toml"),
                root.join("..data"),
                root.join("..2026_12_07_23_00_01.12345/tsunagi.toml"),
            ]
        );
        assert!(link_chain(&root.join("..2026_12_07_23_00_01.12345/rss.wasm")).is_empty());
        // A loop ends at the hop limit instead of spinning.
        std::os::unix::fs::symlink("loop", root.join("loop")).expect("loop link");
        assert_eq!(link_chain(&root.join("loop")).len(), MAX_LINK_HOPS + 1);
    }

    #[tokio::test]
    async fn a_configmap_update_swapping_the_data_link_reloads_with_the_new_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        configmap_write(
            dir.path(),
            1,
            &[("tsunagi.toml", &config_text(1)), ("rss.wasm", b"v1")],
        );
        let config = Config::load(&dir.path().join("tsunagi.toml")).expect("config valid");
        let (reloads, mut reloaded) = mpsc::unbounded_channel();
        let config_path = dir.path().join("tsunagi.toml");
        let stop = CancellationToken::new();
        let task = spawn_watcher(
            &config,
            move || {
                let (reloads, config_path) = (reloads.clone(), config_path.clone());
                Box::pin(async move {
                    let _ = reloads.send(std::fs::read(&config_path).unwrap_or_default());
                })
            },
            stop.clone(),
        )
        .expect("inotify works here");
        for version in [2, 3] {
            configmap_write(
                dir.path(),
                version,
                &[
                    ("tsunagi.toml", &config_text(version)),
                    ("rss.wasm", b"new"),
                ],
            );
            let read = tokio::time::timeout(Duration::from_secs(30), reloaded.recv()).await;
            let read = read
                .expect("a reload within 30 s")
                .expect("watcher running");
            assert_eq!(read, config_text(version), "update {version}");
        }
        stop.cancel();
        task.await.expect("watcher ends");
    }

    #[tokio::test]
    async fn a_change_lost_in_a_queue_overflow_is_found_by_the_rescan() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::write(root.join("rss.wasm"), b"v1").expect("plugin written");
        let config = config_in(&root, "rss.wasm");
        let config_path = config.source_path.clone();
        // The watcher's thread waits here while the test fills the kernel's queue.
        let gate = Arc::new(std::sync::Mutex::new(()));
        let held = gate.lock().expect("gate");
        let (seen, mut seen_events) = mpsc::unbounded_channel();
        let hook_gate = gate.clone();
        let hook: EventHook = Arc::new(move |event: &notify::Result<notify::Event>| {
            drop(hook_gate.lock());
            let _ = seen.send(match event {
                Ok(event) if event.need_rescan() => None,
                // Reading the config after the reload opens it: that says nothing of a change.
                Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => Some(Vec::new()),
                Ok(event) => Some(event.paths.clone()),
                Err(_) => None,
            });
        });
        let (reload, mut reloaded) = reload_signal();
        let stop = CancellationToken::new();
        let task =
            spawn_watcher_with(&config, reload, stop.clone(), hook).expect("inotify works here");
        let queue: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(16_384);
        // Each round queues at least two events (create, delete): twice the queue and more.
        let noise = root.join("noise");
        for _ in 0..queue + 1000 {
            std::fs::write(&noise, b"").expect("noise");
            std::fs::remove_file(&noise).expect("noise removed");
        }
        std::fs::write(&config_path, config_text(2)).expect("config changed");
        drop(held);
        let reload = tokio::time::timeout(Duration::from_secs(30), reloaded.recv()).await;
        assert_eq!(reload.expect("a reload within 30 s"), Some(()));
        stop.cancel();
        task.await.expect("watcher ends");
        let (mut overflowed, mut named_config) = (false, false);
        while let Ok(event) = seen_events.try_recv() {
            match event {
                None => overflowed = true,
                Some(paths) => named_config |= paths.contains(&config_path),
            }
        }
        assert!(overflowed, "the queue overflowed");
        assert!(
            !named_config,
            "the config's own event was lost, so the rescan found it"
        );
    }
}
