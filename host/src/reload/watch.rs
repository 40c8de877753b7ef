//! The file trigger of a reload: watches the config file and every plugin file, and reloads
//! once things have been quiet for a moment.
//!
//! Editors and deploy tools rarely write a file in place: they write a temporary file and
//! rename it over the old one, or delete and recreate it. So the watch is on the *directories*
//! that hold the files, and any event that names one of the files counts; a burst of events
//! (write, rename, chmod) is debounced into one reload.

use super::Reloader;
use crate::config::Config;
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

/// Starts watching; the task ends when `stop` fires. Errors (no inotify, say) are logged and
/// leave the other triggers working.
pub fn spawn_watcher(
    config: &Config,
    reloader: Arc<Reloader>,
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
        let watched = callback_files
            .read()
            .is_ok_and(|files| event.paths.iter().any(|path| files.contains(path)));
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
            let report = reloader.reload(None).await;
            tracing::info!(
                ok = report.ok,
                "reload finished: {}",
                serde_json::to_string(&report).unwrap_or_default()
            );
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

/// The config file and every connector's plugin file, as absolute paths.
fn watched_files(config: &Config, config_path: &std::path::Path) -> BTreeSet<PathBuf> {
    let mut files: BTreeSet<PathBuf> = config
        .connectors
        .values()
        .map(|connector| config.resolve(&connector.plugin))
        .collect();
    files.insert(config_path.to_path_buf());
    files
}

/// Adds a watch on each directory holding a watched file that is not watched yet.
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
                .filter_map(|file| file.parent().map(PathBuf::from))
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
