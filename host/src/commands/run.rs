//! `tsunagi run`: the long-running host. SIGINT or SIGTERM stops claiming, lets in-flight calls
//! finish within `host.shutdown_grace`, and exits 0.

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
    wait_for_stop_signal().await?;
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
