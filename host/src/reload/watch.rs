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
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the files must be quiet before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching; the task ends when `stop` fires. Errors (no inotify, say) are logged and
/// leave the other triggers working.
pub fn spawn_watcher(
    config: &Config,
    reloader: Arc<Reloader>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let mut files: BTreeSet<PathBuf> = config
        .connectors
        .values()
        .map(|connector| config.resolve(&connector.plugin))
        .collect();
    files.insert(std::path::absolute(&config.source_path).unwrap_or(config.source_path.clone()));
    let directories: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|file| file.parent().map(PathBuf::from))
        .collect();

    let (events, mut received) = mpsc::unbounded_channel();
    let watched_files = files.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|path| watched_files.contains(path))
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
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
    for directory in &directories {
        if let Err(error) = watcher.watch(directory, RecursiveMode::NonRecursive) {
            tracing::error!(directory = %directory.display(),
                "cannot watch; changes there need SIGHUP or `tsunagi reload`: {error}");
        }
    }
    tracing::info!(
        files = files.len(),
        "watching the config and plugin files for changes"
    );
    Some(tokio::spawn(async move {
        // Owned by the task: dropping it stops the watch.
        let _watcher = watcher;
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
        }
    }))
}
