//! A TCP proxy on 127.0.0.1 that a test puts between hosts and a shared store (PostgreSQL,
//! Redis) to make the store fail the way networks do, without touching the real server that
//! other tests share:
//!
//! - [`TcpProxy::cut`]: every open connection is closed and new ones are refused, as when the
//!   server restarts (its sessions end, its transactions roll back) — until
//!   [`TcpProxy::restore`];
//! - [`TcpProxy::blackhole`]: connections stay open but nothing passes in either direction, as
//!   when a proxy or firewall silently drops a connection's traffic — until `restore`;
//! - [`TcpProxy::silence_open`]: the connections open now pass nothing ever again, while new
//!   ones pass (a NAT entry that expired under a long-lived connection): only a client that
//!   notices and connects again hears anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    /// Open connections closed, new ones closed as soon as they are accepted.
    Cut,
    /// Connections accepted and kept, their bytes read and thrown away.
    Blackhole,
}

/// A running proxy to one upstream address.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    mode: watch::Sender<(ProxyMode, u64)>,
    connections: Arc<AtomicU64>,
    /// Connections numbered below this pass nothing.
    silenced_below: Arc<AtomicU64>,
    acceptor: JoinHandle<()>,
}

/// Bytes one read may move; the copy loop's buffer.
const BUFFER: usize = 16 * 1024;

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // The generation moves on at every change, so a connection cut once stays cut even if
        // the proxy passes again before the connection notices.
        let (mode, watcher) = watch::channel((ProxyMode::Pass, 0));
        let connections = Arc::new(AtomicU64::new(0));
        let silenced_below = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let silenced = silenced_below.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = counted.fetch_add(1, Ordering::SeqCst);
                let watcher = watcher.clone();
                let silence = Silence {
                    number,
                    below: silenced.clone(),
                };
                tokio::spawn(serve(client, upstream, watcher, silence));
            }
        });
        Ok(Self {
            addr,
            mode,
            connections,
            silenced_below,
            acceptor,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn mode(&self) -> ProxyMode {
        self.mode.borrow().0
    }

    /// Closes every connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        self.set(ProxyMode::Cut);
    }

    /// Drops every byte of every connection, old and new, until [`Self::restore`].
    pub fn blackhole(&self) {
        self.set(ProxyMode::Blackhole);
    }

    /// Drops every byte of the connections open now, for good; later ones pass.
    pub fn silence_open(&self) {
        self.silenced_below
            .store(self.connections.load(Ordering::SeqCst), Ordering::SeqCst);
        // Wakes the copy loops, so each checks whether it is silenced.
        self.mode.send_modify(|(_, generation)| *generation += 1);
    }

    /// Passes traffic again (connections cut meanwhile stay closed).
    pub fn restore(&self) {
        self.set(ProxyMode::Pass);
    }

    fn set(&self, mode: ProxyMode) {
        self.mode.send_modify(|(now, generation)| {
            *now = mode;
            *generation += 1;
        });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        // Closes every connection: their tasks see the sender gone.
        self.set(ProxyMode::Cut);
    }
}

/// A connection's number, and the number below which connections are silenced.
struct Silence {
    number: u64,
    below: Arc<AtomicU64>,
}

impl Silence {
    fn silenced(&self) -> bool {
        self.number < self.below.load(Ordering::SeqCst)
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut watcher: watch::Receiver<(ProxyMode, u64)>,
    silence: Silence,
) {
    let mode = watcher.borrow_and_update().0;
    if mode == ProxyMode::Cut {
        return;
    }
    if mode == ProxyMode::Blackhole {
        return swallow(client, watcher).await;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut up = [0u8; BUFFER];
    let mut down = [0u8; BUFFER];
    loop {
        let passing = watcher.borrow().0 == ProxyMode::Pass && !silence.silenced();
        tokio::select! {
            changed = watcher.changed() => {
                if changed.is_err() || watcher.borrow().0 == ProxyMode::Cut {
                    return;
                }
            }
            read = client_read.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if passing => if server_write.write_all(&up[..n]).await.is_err() { return },
                Ok(_) => {}
            },
            read = server_read.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if passing => if client_write.write_all(&down[..n]).await.is_err() { return },
                Ok(_) => {}
            },
        }
    }
}

/// A connection opened into a blackhole: read and drop until it closes or the blackhole
/// ends (then it is closed: it never reached the upstream, so the client must connect again).
async fn swallow(mut client: TcpStream, mut watcher: watch::Receiver<(ProxyMode, u64)>) {
    let mut buffer = [0u8; BUFFER];
    loop {
        tokio::select! {
            changed = watcher.changed() => {
                if changed.is_err() || watcher.borrow().0 != ProxyMode::Blackhole {
                    return;
                }
            }
            read = client.read(&mut buffer) => if matches!(read, Ok(0) | Err(_)) { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server: every byte comes back.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut back = vec![0u8; bytes.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn passes_cuts_refuses_and_passes_again() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut first, b"hello").await.unwrap(), b"hello");

        proxy.cut();
        assert_eq!(proxy.mode(), ProxyMode::Cut);
        let mut rest = Vec::new();
        // The open connection is closed: its read ends.
        assert_eq!(first.read_to_end(&mut rest).await.unwrap_or(0), 0);
        // A new one is accepted and closed at once.
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut refused, b"x").await.is_err());

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"back").await.unwrap(), b"back");
        assert_eq!(proxy.connections(), 3);
    }

    #[tokio::test]
    async fn a_blackhole_keeps_connections_open_and_passes_nothing_until_restored() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"1").await.unwrap(), b"1");

        proxy.blackhole();
        open.write_all(b"lost").await.unwrap();
        let mut byte = [0u8; 1];
        let silent =
            tokio::time::timeout(std::time::Duration::from_millis(200), open.read(&mut byte)).await;
        assert!(silent.is_err(), "nothing comes back through a blackhole");

        proxy.restore();
        // The connection still works; what was sent into the hole is gone.
        assert_eq!(round_trip(&mut open, b"2").await.unwrap(), b"2");
    }

    #[tokio::test]
    async fn silenced_connections_pass_nothing_for_good_and_new_ones_pass() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut old, b"1").await.unwrap(), b"1");

        proxy.silence_open();
        old.write_all(b"lost").await.unwrap();
        let mut byte = [0u8; 1];
        let silent =
            tokio::time::timeout(std::time::Duration::from_millis(200), old.read(&mut byte)).await;
        assert!(silent.is_err(), "the old connection hears nothing");
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut new, b"2").await.unwrap(), b"2");
        assert_eq!(proxy.mode(), ProxyMode::Pass);
    }
}
