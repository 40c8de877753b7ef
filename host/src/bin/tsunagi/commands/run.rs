//! `tsunagi run`: the long-running host. Starts the topology, and the admin API where
//! `host.admin_listen` says (before the plugins load, so `/readyz` answers 503 until the
//! pipelines run, and again once a stop is requested). SIGINT or SIGTERM stops claiming, lets
//! in-flight calls finish within `host.shutdown_grace`, and exits 0. SIGHUP reloads: the config file is read again and
//! every connector whose settings or plugin changed is swapped (see [`tsunagi::topology`]).

use super::{load_config, open_backend};
use std::path::Path;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tsunagi::admin::Access;
use tsunagi::topology::{Control, Topology, TopologyOptions};

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    // Signals are caught from the start: a SIGTERM while plugins load stops the host as soon
    // as it runs (with exit 0), rather than killing it half-started.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let config = load_config(config_path)?;
    let backend = open_backend(&config).await?;
    // The admin API listens before the plugins load, so `/readyz` can say "not yet" meanwhile.
    let admin_stop = CancellationToken::new();
    let admin = match &config.host.admin_listen {
        Some(listen) => {
            let access = Access::from_config(&config)?;
            let admin = tsunagi::admin::serve(listen, access, admin_stop.clone()).await?;
            tracing::info!("status at http://{}/status", admin.addr);
            Some(admin)
        }
        None => None,
    };
    let topology = match Topology::start(config, backend, TopologyOptions::default()).await {
        Ok(topology) => topology,
        Err(error) => {
            admin_stop.cancel();
            return Err(error.into());
        }
    };
    if let Some(admin) = &admin {
        admin.attach(topology.clone());
    }
    loop {
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                interrupted?;
                break;
            }
            _ = terminate.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let report = topology.reload(None).await;
                tracing::info!(ok = report.ok, "reload finished: {}",
                    serde_json::to_string(&report).unwrap_or_default());
            }
        }
    }
    tracing::info!("stop requested: no new claims; finishing in-flight calls");
    if let Some(admin) = &admin {
        admin.drain();
    }
    topology.shutdown().await;
    admin_stop.cancel();
    if let Some(admin) = admin {
        admin.stopped().await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
