//! What the host's HTTP listeners (the admin API, the inbound listener) share: binding the
//! address a config names, and serving an axum router on it until a stop token fires, open
//! connections finishing first.

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Binds `listen` (`host:port`; port 0 picks one) and says where it listens.
pub async fn bind(listen: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves `app` on `listener` until `stop` is cancelled; `what` names the listener in the log
/// line a failure writes.
pub fn spawn(
    listener: TcpListener,
    app: axum::Router,
    stop: CancellationToken,
    what: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!("{what} listener failed: {error}");
        }
    })
}
