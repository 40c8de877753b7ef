//! The benchmarks' stand-in servers, each on a thread and runtime of its own so that serving
//! the load does not take the host's executor threads (nor count as the host's CPU).

use anyhow::Context;
use std::future::Future;

/// A server running on its own thread, with what `start` answered about it (its address, its
/// counters). Dropping it stops the server: its runtime ends, and every task on it.
pub struct ServerThread<T> {
    pub started: T,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Runs `start` on a new thread named `name`. It answers what the caller may know (`T`) and a
/// guard (`G`) kept on that thread until the server stops.
pub fn start<T, G, Start, Started>(name: &str, start: Start) -> anyhow::Result<ServerThread<T>>
where
    T: Send + 'static,
    G: 'static,
    Start: FnOnce() -> Started + Send + 'static,
    Started: Future<Output = anyhow::Result<(T, G)>>,
{
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = started_tx.send(Err(anyhow::anyhow!(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                match start().await {
                    Ok((started, guard)) => {
                        let _ = started_tx.send(Ok(started));
                        // Until the sender is used or dropped.
                        let _ = stopped.await;
                        drop(guard);
                    }
                    Err(error) => {
                        let _ = started_tx.send(Err(error));
                    }
                }
            });
        })?;
    let started = started_rx
        .recv()
        .with_context(|| format!("the {name} thread died while starting"))??;
    Ok(ServerThread {
        started,
        _stop: stop,
    })
}
