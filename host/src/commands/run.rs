//! `tsunagi run`: the long-running host. SIGINT or SIGTERM stops claiming, lets in-flight calls
//! finish within `host.shutdown_grace`, and exits 0. SIGHUP reloads: the config file is read
//! again and every connector whose settings or plugin changed is swapped (see
//! [`crate::reload`]).

use super::{load_config, open_backend};
use crate::host::{Host, HostOptions};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let backend = open_backend(&config).await?;
    let host = Host::load(config, backend, HostOptions::default()).await?;
    let running = host.start().await?;
    if let Some(addr) = running.admin_addr() {
        tracing::info!("status at http://{addr}/status");
    }
    let reloader = running.view().reloader.clone();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let stop = wait_for_stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            stopped = &mut stop => {
                stopped?;
                break;
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let report = reloader.reload(None).await;
                tracing::info!(ok = report.ok, "reload finished: {}",
                    serde_json::to_string(&report).unwrap_or_default());
            }
        }
    }
    tracing::info!("stop requested: no new claims; finishing in-flight calls");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
