//! `tsunagi run`: the long-running host. Starts the topology, and the admin API where
//! `host.admin_listen` says. SIGINT or SIGTERM stops claiming, lets in-flight calls finish
//! within `host.shutdown_grace`, and exits 0. SIGHUP reloads: the config file is read again and
//! every connector whose settings or plugin changed is swapped (see [`tsunagi::topology`]).

use super::{load_config, open_backend};
use std::path::Path;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tsunagi::topology::{Control, Topology, TopologyOptions};

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let backend = open_backend(&config).await?;
    let admin_listen = config.host.admin_listen.clone();
    let topology = Topology::start(config, backend, TopologyOptions::default()).await?;
    let admin_stop = CancellationToken::new();
    let admin = match &admin_listen {
        Some(listen) => {
            let served = tsunagi::admin::serve(listen, topology.clone(), admin_stop.clone()).await;
            match served {
                Ok(admin) => {
                    tracing::info!("status at http://{}/status", admin.addr);
                    Some(admin)
                }
                Err(error) => {
                    topology.shutdown().await;
                    return Err(error.into());
                }
            }
        }
        None => None,
    };
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
                let report = topology.reload(None).await;
                tracing::info!(ok = report.ok, "reload finished: {}",
                    serde_json::to_string(&report).unwrap_or_default());
            }
        }
    }
    tracing::info!("stop requested: no new claims; finishing in-flight calls");
    topology.shutdown().await;
    admin_stop.cancel();
    if let Some(admin) = admin {
        admin.stopped().await;
    }
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
