//! The fake X API for the benchmarks, on a thread and runtime of its own so that its CPU is not
//! counted as the host's.

use anyhow::Context;
use std::net::SocketAddr;
use tsunagi_fake_upstream::x::{XCounters, XServer, XServerConfig};

/// A running fake X API; dropping it stops the server.
pub struct FakeX {
    pub addr: SocketAddr,
    /// What the fake has seen: requests, accepted posts, signature failures.
    pub counters: XCounters,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts the fake with `config`, running `setup` on it (linking users) before it is used.
pub fn start(
    config: XServerConfig,
    setup: impl FnOnce(&XServer) + Send + 'static,
) -> anyhow::Result<FakeX> {
    let (addr_tx, addr_rx) = std::sync::mpsc::sync_channel(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("fake-x-api".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = addr_tx.send(Err(anyhow::anyhow!(err)));
                    return;
                }
            };
            runtime.block_on(async move {
                match XServer::start(config).await {
                    Ok(server) => {
                        setup(&server);
                        let _ = addr_tx.send(Ok((server.addr(), server.counters())));
                        let _ = stop_rx.await;
                        server.shutdown();
                    }
                    Err(err) => {
                        let _ = addr_tx.send(Err(err));
                    }
                }
            });
        })?;
    let (addr, counters) = addr_rx
        .recv()
        .context("the fake X API thread died while starting")??;
    Ok(FakeX {
        addr,
        counters,
        _stop: stop_tx,
    })
}
