//! The file trigger of a reload: watches the config file, every plugin file and the drop-in
//! folder (`host.connectors_dir`: a file added there is a new connector), and reloads once
//! things have been quiet for a moment.
//!
//! Editors and deploy tools rarely write a file in place: they write a temporary file and
//! rename it over the old one, or delete and recreate it. So the watch is on the *directories*
//! that hold the files, and any event that names one of the files counts; a burst of events
//! (write, rename, chmod) is debounced into one reload.

use crate::config::Config;
use futures::future::BoxFuture;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the files must be quiet before a reload starts.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching, calling `reload` once after each burst of changes; the task ends when
/// `stop` fires. Errors (no inotify, say) are logged and leave the other triggers working.
pub(super) fn spawn_watcher(
    config: &Config,
    reload: impl Fn() -> BoxFuture<'static, ()> + Send + 'static,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let config_path =
        std::path::absolute(&config.source_path).unwrap_or(config.source_path.clone());
    let files = Arc::new(RwLock::new(watched_files(config, &config_path)));
    let (events, mut received) = mpsc::unbounded_channel();
    let callback_files = files.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        // A watched file, or a `.toml` file in a watched folder (the drop-in folder).
        let watched = callback_files.read().is_ok_and(|files| {
            event.paths.iter().any(|path| {
                files.contains(path)
                    || (path.extension().is_some_and(|ext| ext == "toml")
                        && path.parent().is_some_and(|dir| files.contains(dir)))
            })
        });
        if watched {
            let _ = events.send(());
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
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                event = received.recv() => if event.is_none() { return },
            }
            // Quiet period: every further event restarts it.
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    event = received.recv() => if event.is_none() { return },
                }
            }
            tracing::info!("config or plugin file changed: reloading");
            reload().await;
            // A reload may add connectors or point at other plugin files: watch those too.
            if let Ok(config) = Config::load(&config_path)
                && let Ok(mut watched) = files.write()
            {
                *watched = watched_files(&config, &config_path);
            }
            watch_directories(&mut watcher, &mut directories, &files);
        }
    }))
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

/// Adds a watch on each directory holding a watched file (and on a watched folder itself)
/// that is not watched yet.
fn watch_directories(
    watcher: &mut impl Watcher,
    watching: &mut BTreeSet<PathBuf>,
    files: &RwLock<BTreeSet<PathBuf>>,
) {
    let wanted: BTreeSet<PathBuf> = files
        .read()
        .map(|files| {
            files
                .iter()
                .filter_map(|file| {
                    if file.is_dir() {
                        Some(file.clone())
                    } else {
                        file.parent().map(PathBuf::from)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
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
        let (reloads, mut reloaded) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let task = spawn_watcher(
            &config,
            move || {
                let reloads = reloads.clone();
                Box::pin(async move {
                    let _ = reloads.send(());
                })
            },
            stop.clone(),
        )
        .expect("inotify works here");
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
}
