//! The `tsunagi` binary as operators run it: several processes on one database, SIGKILL and
//! restart, graceful SIGTERM, and the one-shot commands.

use crate::common::*;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tsunagi::backends::postgres::testing::TestSchema;
use tsunagi::backends::redis::testing::TestPrefix;
use tsunagi::backends::{Backend, ItemQuery};
use tsunagi::config::Config;
use tsunagi_fake_upstream::proxy::TcpProxy;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");

fn tsunagi(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        // TSUNAGI_TEST_LOG shows more of the hosts' logs when a run needs looking into.
        .env(
            "TSUNAGI_LOG",
            std::env::var("TSUNAGI_TEST_LOG").unwrap_or_else(|_| "warn".to_string()),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn spawn_host(config: &Path) -> Child {
    tsunagi(&["run", "--config", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tsunagi run")
}

fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("child is running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits (bounded) until every target of `connector` has been polled at least once.
async fn all_polled(backend: &Arc<dyn Backend>, connector: &str, expected: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let targets = backend
                .list_targets(Some(connector), 0, 100_000)
                .await
                .unwrap();
            let polled = targets
                .iter()
                .filter(|t| t.last_polled_at.is_some())
                .count();
            if targets.len() == expected && polled == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "every target of {connector} was polled in time"
    );
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("process exits in time")
        .expect("wait")
}

async fn jobs_done(admin_port: u16) -> u64 {
    let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
    status["connectors"][0]["jobs_done"].as_u64().unwrap()
}

/// A feed server whose every feed answers after `delay`.
async fn slow_feeds(feeds: u32, delay: Duration) -> FeedServer {
    FeedServer::start(FeedServerConfig {
        feeds,
        slow: (0..feeds).collect(),
        slow_delay: delay,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap()
}

/// Waits (bounded) until `server` has had `requests` requests: with slow feeds, that many calls
/// are in flight.
async fn requested(server: &FeedServer, requests: u32) {
    let all_in_flight = tokio::time::timeout(Duration::from_secs(60), async {
        while server.stats().requests < u64::from(requests) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(all_in_flight.is_ok(), "every feed was requested");
}

/// Waits until the host at `admin_port` is ready: its pipelines run and its store answers (the
/// admin port itself comes up before the plugins load).
async fn wait_for_admin(admin_port: u16) {
    wait_ready(SocketAddr::from(([127, 0, 0, 1], admin_port))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_processes_on_one_sqlite_file_fetch_every_target_exactly_once() {
    hosts_on_one_store_fetch_every_target_exactly_once(2, 1500, "../shared.db").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_host_processes_on_one_postgres_database_fetch_every_target_exactly_once() {
    let schema = TestSchema::create().await;
    hosts_on_one_store_fetch_every_target_exactly_once(3, 3000, &schema.url()).await;
}

/// Three hosts on one PostgreSQL database keep one 5 requests/s budget in Redis: the fake
/// upstream never sees more than that in any second, though each host alone would send 5/s
/// (15/s together, were budgets kept per host), and every feed is still fetched exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_keep_one_redis_budget_at_the_upstream() {
    let feeds = 40;
    let server = FeedServer::start(FeedServerConfig {
        feeds,
        record_arrivals: true,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let schema = TestSchema::create().await;
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let feed_port = server.addr().port();
    let budgets = format!(
        "\n[budgets.feeds]\nrate = \"5/s\"\n\n[backends]\nbudgets = \"{}\"\n",
        redis.url()
    );
    let configs = shared_store_configs(dir.path(), &ports, &schema.url(), feed_port, &|text| {
        let allow = format!("port = {feed_port}\n");
        assert!(text.contains(&allow), "the allow rule names the feed port");
        text.replace(&allow, &format!("{allow}budget = \"feeds\"\n")) + &budgets
    });
    crawl_once_on_shared_store(&server, &configs, &ports, feeds).await;
    // GCRA at 5/s with a burst of 1 spaces requests 200 ms apart on Redis's clock; a window of
    // one second holds 5 of them, 6 with the jitter of three processes' connections.
    let most = server.most_requests_within(Duration::from_secs(1));
    assert!(
        most <= 6,
        "{most} requests reached the upstream within one second"
    );
    server.shutdown().await;
}

/// PostgreSQL stops answering mid-crawl (every connection to it closed and new ones refused, as
/// in a restart): the hosts pause and resume on their own; no target fails, nothing is lost
/// and no item is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_ride_out_a_postgres_outage_without_failing_or_losing_anything() {
    hosts_ride_out_an_outage_of(Outage::Postgres).await;
}

/// The same for the Redis their shared budget lives in: with the budget unanswerable, calls
/// are deferred (never sent unmetered, never failed) until it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_ride_out_a_redis_outage_without_failing_or_losing_anything() {
    hosts_ride_out_an_outage_of(Outage::Redis).await;
}

/// Which shared store goes away.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outage {
    Postgres,
    Redis,
}

/// Two hosts crawl on PostgreSQL with a budget in Redis; `store` is put behind a proxy and cut
/// once a quarter of the feeds are fetched, until the hosts have tried to reconnect.
async fn hosts_ride_out_an_outage_of(store: Outage) {
    let feeds = 2000;
    let server = slow_feeds(feeds, Duration::from_millis(20)).await;
    let schema = TestSchema::create().await;
    let redis = TestPrefix::new();
    let behind = match store {
        Outage::Postgres => schema.address(),
        Outage::Redis => redis.address(),
    };
    let server_address: SocketAddr = tokio::net::lookup_host(&behind)
        .await
        .unwrap()
        .next()
        .expect("the test server has an address");
    let proxy = TcpProxy::start(server_address).await.unwrap();
    let via = proxy.addr().to_string();
    let (database, budgets) = match store {
        Outage::Postgres => (schema.url_via(&via), redis.url()),
        Outage::Redis => (schema.url(), redis.url_via(&via)),
    };
    assert!(
        database.contains(&via) || budgets.contains(&via),
        "the hosts go through the proxy"
    );
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let feed_port = server.addr().port();
    let configs = shared_store_configs(dir.path(), &ports, &database, feed_port, &|text| {
        let allow = format!("port = {feed_port}\n");
        with_short_lease(text).replace(&allow, &format!("{allow}budget = \"feeds\"\n"))
            + &format!(
                "\n[budgets.feeds]\nrate = \"5000/s\"\n\n[backends]\nbudgets = \"{budgets}\"\n"
            )
    });
    let backend: Arc<dyn Backend> = Arc::new(schema.open().await);
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();
    let mut children: Vec<Child> = configs.iter().map(|c| spawn_host(&c.source_path)).collect();
    for port in ports {
        wait_for_admin(port).await;
    }
    requested(&server, feeds / 4).await;

    // Both hosts noticed and tried to reconnect (and were refused) while the store was out.
    cut_until_retried(&proxy, 4).await;
    let during = server.stats().requests;
    proxy.restore();

    all_polled(&backend, "rss", feeds as usize).await;
    assert!(
        server.stats().requests > during,
        "the crawl resumed after the outage"
    );
    for child in &mut children {
        assert!(
            child.try_wait().unwrap().is_none(),
            "a host exited during the outage"
        );
    }
    for child in &children {
        signal(child, "TERM");
    }
    for child in &mut children {
        assert!(wait_exit(child).await.success(), "host exits 0 on SIGTERM");
    }

    // Paused, not failed: no target counts an error, none was given up on.
    let targets = backend.list_targets(Some("rss"), 0, 100_000).await.unwrap();
    let failed: Vec<_> = targets
        .iter()
        .filter(|t| t.error_count > 0 || t.dead_at.is_some())
        .map(|t| (t.target.clone(), t.last_error.clone()))
        .collect();
    assert!(
        failed.is_empty(),
        "targets failed by the outage: {failed:?}"
    );
    for id in 0..feeds {
        assert!(server.requests_for(id) >= 1, "feed {id} was fetched");
    }
    // Nothing lost, nothing twice: every feed's ten items stored once.
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * 10
    );
    server.shutdown().await;
}

/// `text` (configs of [`shared_store_configs`]) with a short lease and call timeout: a killed
/// host's claims, and polls whose commit an outage broke, are claimed again soon after.
fn with_short_lease(text: String) -> String {
    text.replace("claim_batch = 16", "claim_batch = 16\nclaim_lease = \"8s\"")
        .replace("call_timeout = \"20s\"", "call_timeout = \"3s\"")
}

/// Cuts the store behind `proxy` (every connection closed, new ones refused, as in a restart)
/// and waits (bounded) until `attempts` new connections were tried meanwhile.
async fn cut_until_retried(proxy: &TcpProxy, attempts: u64) {
    let before = proxy.connections();
    proxy.cut();
    let retried = tokio::time::timeout(Duration::from_secs(60), async {
        while proxy.connections() < before + attempts {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        retried.is_ok(),
        "the hosts try to reconnect during the outage"
    );
}

/// One config per admin port in `ports`, each in a directory of its own under `dir`, all on
/// the store `database` names, with an RSS connector of 8 slots on the feed server at
/// `feed_port`; `tweak` edits each file's text before it is written.
fn shared_store_configs(
    dir: &Path,
    ports: &[u16],
    database: &str,
    feed_port: u16,
    tweak: &dyn Fn(String) -> String,
) -> Vec<Config> {
    ports
        .iter()
        .enumerate()
        .map(|(index, port)| {
            let sub = dir.join(format!("host{index}"));
            std::fs::create_dir_all(&sub).unwrap();
            let text = host_section(&format!(
                "admin_listen = \"127.0.0.1:{port}\"\nclaim_batch = 16"
            ))
            .replace(
                "database = \"test.db\"",
                &format!("database = \"{database}\""),
            ) + &rss_connector(feed_port, "")
                .replace("concurrency = 32", "concurrency = 8");
            write_config(&sub, &tweak(text))
        })
        .collect()
}

/// Seeds `server`'s feeds, runs one host per config (admin on `ports`) until every feed is
/// polled, stops them with SIGTERM and checks each feed was fetched exactly once. Answers the
/// store and the jobs each host did.
async fn crawl_once_on_shared_store(
    server: &FeedServer,
    configs: &[Config],
    ports: &[u16],
    feeds: u32,
) -> (Arc<dyn Backend>, Vec<u64>) {
    let backend = open_backend(&configs[0]).await;
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();
    let mut children: Vec<Child> = configs.iter().map(|c| spawn_host(&c.source_path)).collect();
    for port in ports {
        wait_for_admin(*port).await;
    }
    all_polled(&backend, "rss", feeds as usize).await;
    let mut done = Vec::new();
    for port in ports {
        done.push(jobs_done(*port).await);
    }
    for child in &children {
        signal(child, "TERM");
    }
    for child in &mut children {
        assert!(wait_exit(child).await.success(), "host exits 0 on SIGTERM");
    }
    for id in 0..feeds {
        assert_eq!(server.requests_for(id), 1, "feed {id} fetched exactly once");
    }
    (backend, done)
}

/// `hosts` host processes share the store `database` names: each of `feeds` feeds is fetched
/// exactly once, every host does some of the work, and no item is stored twice.
async fn hosts_on_one_store_fetch_every_target_exactly_once(
    hosts: usize,
    feeds: u32,
    database: &str,
) {
    let server = slow_feeds(feeds, Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..hosts).map(|_| free_port()).collect();
    let configs = shared_store_configs(
        dir.path(),
        &ports,
        database,
        server.addr().port(),
        &|text| text,
    );
    let (backend, done) = crawl_once_on_shared_store(&server, &configs, &ports, feeds).await;
    assert_eq!(done.iter().sum::<u64>(), u64::from(feeds), "{done:?}");
    assert!(done.iter().all(|d| *d > 0), "every host worked: {done:?}");
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * 10
    );
    server.shutdown().await;
}

/// Reading SQLite's write-ahead log from outside, to tell where a SIGKILL landed: inside a
/// commit (the dead process had written some of a transaction's frames to the log, but not its
/// commit frame) or between commits. See <https://www.sqlite.org/fileformat.html#the_write_ahead_log>.
mod wal {
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    const HEADER: usize = 32;
    const FRAME_HEADER: usize = 24;

    /// The valid frames of the log's current generation: the salt of its header, and each
    /// frame's header (in order) with the checksum chain verified.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Log {
        pub salt: [u8; 8],
        pub frames: Vec<[u8; FRAME_HEADER]>,
        /// The header at every frame position in the file, valid or not (what a watcher must
        /// not take for a new write).
        pub raw: Vec<[u8; FRAME_HEADER]>,
    }

    impl Log {
        /// Frames after the last commit frame: a transaction that was written only in part.
        pub fn uncommitted_tail(&self) -> &[[u8; FRAME_HEADER]] {
            let last_commit = self
                .frames
                .iter()
                .rposition(|frame| commit_size(frame) != 0);
            &self.frames[last_commit.map_or(0, |i| i + 1)..]
        }
    }

    pub fn commit_size(frame: &[u8; FRAME_HEADER]) -> u32 {
        u32::from_be_bytes(frame[4..8].try_into().unwrap())
    }

    fn checksum(big_endian: bool, data: &[u8], mut s: (u32, u32)) -> (u32, u32) {
        for pair in data.chunks_exact(8) {
            let word = |b: &[u8]| {
                let b: [u8; 4] = b.try_into().unwrap();
                if big_endian {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            };
            s.0 = s.0.wrapping_add(word(&pair[0..4])).wrapping_add(s.1);
            s.1 = s.1.wrapping_add(word(&pair[4..8])).wrapping_add(s.0);
        }
        s
    }

    fn be(bytes: &[u8]) -> u32 {
        u32::from_be_bytes(bytes[0..4].try_into().unwrap())
    }

    /// Reads the log as SQLite's recovery would: frames whose salt matches the header and
    /// whose checksums chain from it, up to the first that does not.
    pub fn read(path: &std::path::Path) -> Log {
        let Ok(bytes) = std::fs::read(path) else {
            return Log::default();
        };
        if bytes.len() < HEADER {
            return Log::default();
        }
        let magic = be(&bytes[0..4]);
        if magic & !1 != 0x377f_0682 {
            return Log::default();
        }
        let big_endian = magic & 1 == 1;
        let page_size = be(&bytes[8..12]) as usize;
        let salt: [u8; 8] = bytes[16..24].try_into().unwrap();
        let mut sum = checksum(big_endian, &bytes[..24], (0, 0));
        if sum != (be(&bytes[24..28]), be(&bytes[28..32])) {
            return Log::default();
        }
        let mut log = Log {
            salt,
            frames: Vec::new(),
            raw: bytes[HEADER..]
                .chunks_exact(FRAME_HEADER + page_size)
                .map(|frame| frame[..FRAME_HEADER].try_into().unwrap())
                .collect(),
        };
        let mut at = HEADER;
        while at + FRAME_HEADER + page_size <= bytes.len() {
            let header: [u8; FRAME_HEADER] = bytes[at..at + FRAME_HEADER].try_into().unwrap();
            if header[8..16] != salt {
                break;
            }
            sum = checksum(big_endian, &header[..8], sum);
            let page = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + page_size];
            sum = checksum(big_endian, page, sum);
            if sum != (be(&header[16..20]), be(&header[20..24])) {
                break;
            }
            log.frames.push(header);
            at += FRAME_HEADER + page_size;
        }
        log
    }

    /// When to kill the writer.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Moment {
        /// While a large transaction is being written: `run` frames of it seen, no commit yet.
        InsideACommit { run: usize },
        /// Just after the commit frame of a transaction of at least `run` frames.
        AfterACommit { run: usize },
    }

    /// Watches the log (a blocking loop, bounded by `deadline`) for frames written after
    /// `before` and returns once `moment` has come; `false` if it did not in time. Frames of
    /// `before`'s uncommitted tail (left by an earlier kill) do not count as new until they are
    /// overwritten.
    pub fn wait_for(
        path: &std::path::Path,
        before: &Log,
        moment: Moment,
        deadline: std::time::Instant,
    ) -> bool {
        let mut file = None;
        let mut salt = [0u8; 8];
        let mut next = 0usize;
        let mut run = 0usize;
        let mut page_size = 0usize;
        while std::time::Instant::now() < deadline {
            if file.is_none() {
                file = File::open(path).ok();
            }
            let Some(f) = &file else {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            };
            let mut header = [0u8; HEADER];
            if f.read_exact_at(&mut header, 0).is_err() {
                std::thread::sleep(std::time::Duration::from_micros(200));
                continue;
            }
            let current: [u8; 8] = header[16..24].try_into().unwrap();
            if current != salt {
                // A new generation (or the first look): start from its first frame, except
                // that frames `before` already held are old.
                salt = current;
                page_size = be(&header[8..12]) as usize;
                next = if current == before.salt {
                    before.frames.len() - before.uncommitted_tail().len()
                } else {
                    0
                };
                run = 0;
            }
            let mut frame = [0u8; FRAME_HEADER];
            let offset = (HEADER + next * (FRAME_HEADER + page_size)) as u64;
            let fresh = f.read_exact_at(&mut frame, offset).is_ok()
                && frame[8..16] == salt
                && (salt != before.salt || before.raw.get(next) != Some(&frame));
            if !fresh {
                std::thread::sleep(std::time::Duration::from_micros(200));
                continue;
            }
            next += 1;
            if commit_size(&frame) == 0 {
                run += 1;
                if let Moment::InsideACommit { run: wanted } = moment
                    && run >= wanted
                {
                    return true;
                }
            } else {
                let frames = run + 1;
                run = 0;
                if let Moment::AfterACommit { run: wanted } = moment
                    && frames >= wanted
                {
                    return true;
                }
            }
        }
        false
    }
}

/// Where a kill landed, judged from the log before the process started and after it died.
fn landed_inside_a_commit(before: &wal::Log, after: &wal::Log) -> bool {
    let tail = after.uncommitted_tail();
    if tail.is_empty() {
        return false;
    }
    // A tail the dead process wrote, not one an earlier kill left behind.
    after.salt != before.salt
        || after.frames.len() - tail.len() != before.frames.len() - before.uncommitted_tail().len()
        || tail != before.uncommitted_tail()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_crawl_and_restarted_loses_no_job_and_stores_no_item_twice() {
    // Large feeds (about 200 KB each) make a commit write hundreds of log frames, a window a
    // kill can be aimed at.
    let feeds = 300;
    let server = FeedServer::start(FeedServerConfig {
        feeds,
        slow: (0..feeds).collect(),
        slow_delay: Duration::from_millis(25),
        target_feed_bytes: 200_000,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("claim_lease = \"8s\"\nclaim_batch = 8")
        + &rss_connector(server.addr().port(), "sinks = [\"archive\"]")
            .replace("concurrency = 32", "concurrency = 8")
            .replace("call_timeout = \"20s\"", "call_timeout = \"3s\"")
        + "\n[sinks.archive]\nkind = \"jsonl\"\npath = \"items.jsonl\"\n";
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();
    let log_path = dir.path().join("test.db-wal");
    let total = u64::from(feeds) * 10;

    // Kill, restart, kill again: alternately while a commit is being written and just after
    // one, until each kind has landed at least twice (the log says which it was).
    let (mut inside, mut between, mut kills) = (0, 0, 0u64);
    for attempt in 0..24 {
        if inside >= 2 && between >= 2 {
            break;
        }
        let moment = if inside < 2 && (attempt % 2 == 0 || between >= 2) {
            wal::Moment::InsideACommit { run: 24 }
        } else {
            wal::Moment::AfterACommit { run: 24 }
        };
        let before = wal::read(&log_path);
        let host = spawn_host(&config.source_path);
        let path = log_path.clone();
        let watched = before.clone();
        // The watcher kills the host itself, the moment it sees the moment come.
        let (came, mut host) = tokio::task::spawn_blocking(move || {
            let mut host = host;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let came = wal::wait_for(&path, &watched, moment, deadline);
            host.start_kill().expect("SIGKILL the host");
            (came, host)
        })
        .await
        .unwrap();
        let status = wait_exit(&mut host).await;
        assert!(!status.success(), "SIGKILL ended the host");
        kills += 1;
        assert!(came, "attempt {attempt}: {moment:?} never came");
        let after = wal::read(&log_path);
        if landed_inside_a_commit(&before, &after) {
            inside += 1;
            eprintln!(
                "kill {kills} ({moment:?}) landed inside a commit: {} of its frames were in the \
                 log, no commit frame",
                after.uncommitted_tail().len()
            );
        } else {
            between += 1;
            eprintln!("kill {kills} ({moment:?}) landed between commits");
        }
        assert!(
            backend.count_items(Some("rss")).await.unwrap() < total,
            "the crawl was still under way at kill {kills}"
        );
    }
    assert!(
        inside >= 1 && between >= 1,
        "kills inside a commit: {inside}, between commits: {between}"
    );

    let mut last = spawn_host(&config.source_path);
    all_polled(&backend, "rss", feeds as usize).await;
    // Wait until the sink has caught up: every stored item delivered, no delivery pending.
    let sink_path = dir.path().join("items.jsonl");
    let delivered = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let text = std::fs::read_to_string(&sink_path).unwrap_or_default();
            let ids: BTreeSet<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect();
            let queue = backend.queue_counts("sink:archive").await.unwrap();
            if ids.len() as u64 == total && queue.queued == 0 && queue.leased == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(delivered.is_ok(), "every stored item reached the sink");
    signal(&last, "TERM");
    assert!(wait_exit(&mut last).await.success());

    assert_eq!(backend.count_items(Some("rss")).await.unwrap(), total);
    let all = backend
        .list_items(&ItemQuery {
            connector: Some("rss".into()),
            limit: 100_000,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    let unique: BTreeSet<&str> = all.iter().map(|s| s.item.id.as_str()).collect();
    assert_eq!(unique.len(), all.len(), "no item stored twice");

    // The sink, counted line by line. Delivery is at-least-once: a kill after a delivery was
    // written but before it was marked done has it delivered again, whole. The runner writes
    // one delivery (one poll's ten items) at a time, so each kill can double at most one.
    let text = std::fs::read_to_string(&sink_path).unwrap();
    let mut lines_per_id: std::collections::BTreeMap<String, u64> = Default::default();
    let mut target_of: std::collections::BTreeMap<String, String> = Default::default();
    for (n, line) in text.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "items.jsonl:{}: not one JSON item ({e}): {line:.200}",
                n + 1
            )
        });
        let id = value["id"].as_str().expect("an id").to_string();
        target_of.insert(
            id.clone(),
            value["target"].as_str().expect("a target").to_string(),
        );
        *lines_per_id.entry(id).or_default() += 1;
    }
    let stored: BTreeSet<String> = unique.iter().map(|id| id.to_string()).collect();
    let in_sink: BTreeSet<String> = lines_per_id.keys().cloned().collect();
    assert_eq!(in_sink, stored, "the sink holds exactly the stored items");
    let extra: u64 = lines_per_id.values().map(|n| n - 1).sum();
    assert!(
        extra <= kills * 10,
        "{extra} duplicate lines after {kills} kills: more than one delivery per kill repeated"
    );
    // Repeats are whole deliveries: all ten items of a feed are repeated alike.
    let mut per_feed: std::collections::BTreeMap<&str, BTreeSet<u64>> = Default::default();
    for (id, count) in &lines_per_id {
        per_feed
            .entry(target_of[id].as_str())
            .or_default()
            .insert(*count);
    }
    for (feed, counts) in &per_feed {
        assert_eq!(
            counts.len(),
            1,
            "{feed}: its items were delivered unevenly: {counts:?}"
        );
    }
    eprintln!(
        "{kills} kills ({inside} inside a commit, {between} between commits); {} lines in the \
         sink for {} items",
        text.lines().count(),
        stored.len()
    );

    // Every feed was fetched; each kill can cost at most one refetch per call slot.
    let mut refetches = 0;
    for id in 0..feeds {
        let fetches = server.requests_for(id);
        assert!(fetches >= 1, "feed {id} was never fetched");
        refetches += fetches - 1;
    }
    assert!(
        refetches <= kills * 8,
        "{refetches} refetches after {kills} kills with 8 call slots"
    );
    for id in (0..feeds).step_by(29) {
        for expected in rss_item_ids(&server, id) {
            assert!(
                unique.contains(expected.as_str()),
                "feed {id}: {expected} stored"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_calls_finish_then_exits_0() {
    let feeds = 12;
    let server = slow_feeds(feeds, Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(host_section("") + &rss_connector(server.addr().port(), "")),
    );
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();

    let mut host = spawn_host(&config.source_path);
    requested(&server, feeds).await;
    signal(&host, "TERM");
    assert!(wait_exit(&mut host).await.success(), "exit 0 after SIGTERM");
    // The calls that were in flight finished and were committed before the exit.
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * 10
    );

    let output = tsunagi(&[
        "items",
        "--connector",
        "rss",
        "--config",
        &config.source_path.display().to_string(),
    ])
    .output()
    .await
    .unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), (feeds * 10) as usize);
    assert!(
        lines
            .iter()
            .all(|l| l["connector"] == "rss" && l["id"].is_string())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_config_errors_with_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = host_section("") + &rss_connector(8080, "");
    let config = write_config(dir.path(), &good);
    let path = config.source_path.display().to_string();
    let output = tsunagi(&["check", "--config", &path])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ok    rss:"), "{stdout}");

    let typo = good.replace("min_interval", "min_intervall");
    std::fs::write(&path, &typo).unwrap();
    let line = typo
        .lines()
        .position(|l| l.starts_with("min_intervall"))
        .unwrap()
        + 1;
    let output = tsunagi(&["check", "--config", &path])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "{path}:{line}:1: connectors.rss.schedule.min_intervall: unknown field"
        )),
        "{stderr}"
    );

    // Every error of the file, one a line, each where it is written.
    let absurd = good
        .replace("concurrency = 32", "concurrency = 18446744073709551615")
        .replace("idle_poll = \"50ms\"", "idle_poll = \"500000000 years\"")
        .replace("min_interval = \"10m\"", "min_intervall = \"10m\"");
    std::fs::write(&path, &absurd).unwrap();
    let line_of = |needle: &str| absurd.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let output = tsunagi(&["check", "--config", &path])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error ")).collect();
    assert_eq!(
        errors,
        vec![
            format!(
                "error {path}:{}:1: host.idle_poll: must be between 1ms and 10m, not 500000000years",
                line_of("idle_poll")
            ),
            format!(
                "error {path}:{}:1: connectors.rss.concurrency: must be between 1 and 1024, not 18446744073709551615",
                line_of("concurrency")
            ),
            format!(
                "error {path}:{}:1: connectors.rss.schedule.min_intervall: unknown field `min_intervall`, expected `min_interval` or `max_interval`",
                line_of("min_intervall")
            ),
        ],
        "{stderr}"
    );

    // A plugin path naming a device is refused, not read without end.
    let device = good.replace(&plugin("rss").display().to_string(), "/dev/zero");
    std::fs::write(&path, &device).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tsunagi(&["check", "--config", &path]).output(),
    )
    .await
    .expect("check returns")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("connectors.rss.plugin")
            && stderr.contains("/dev/zero is not a regular file (it is a character device)"),
        "{stderr}"
    );

    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let wrong_plugin = good.replace(
        &plugin("rss").display().to_string(),
        &not_wasm.display().to_string(),
    );
    std::fs::write(&path, &wrong_plugin).unwrap();
    let output = tsunagi(&["check", "--config", &path])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("connectors.rss.plugin") && stderr.contains("not a WebAssembly component"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_import_keeps_good_lines_and_names_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &(host_section("") + &rss_connector(8080, "")));
    let path = config.source_path.display().to_string();
    let mut text = String::new();
    for i in 0..210_000 {
        text.push_str(&format!("https://feeds{}.example.org/{i}.xml\n", i % 97));
        if i == 1000 {
            text.push_str("not a url\n");
        }
        if i == 2000 {
            text.push_str("ftp://files.example.org/feed\n");
        }
        if i == 3000 {
            // Refused by its line number and length; never echoed.
            text.push_str(&format!(
                "https://huge.example.org/{}\n",
                "x".repeat(50 << 20)
            ));
        }
    }
    let list = dir.path().join("feeds.txt");
    std::fs::write(&list, &text).unwrap();
    let output = tsunagi(&[
        "targets",
        "import",
        "rss",
        &list.display().to_string(),
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(4),
        "a partial import exits 4 (not clap's usage code 2): {stdout}{stderr}"
    );
    assert!(
        stdout.contains("210000 added, 0 already present, 3 bad line(s) (1 too long)"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "feeds.txt:3004: is {} bytes long; a target is at most 2048 bytes",
            (50 << 20) + 25
        )),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.len() < 4096,
        "nothing long is echoed: {} bytes",
        stderr.len()
    );
    assert!(stderr.contains("feeds.txt:1002: \"not a url\""), "{stderr}");
    assert!(
        stderr.contains("feeds.txt:2003: \"ftp://files.example.org/feed\""),
        "{stderr}"
    );

    // Importing again adds nothing.
    let output = tsunagi(&[
        "targets",
        "import",
        "rss",
        &list.display().to_string(),
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 added, 210000 already present"));

    let output = tsunagi(&[
        "targets",
        "remove",
        "rss",
        "https://feeds0.example.org/0.xml",
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    assert!(output.status.success());
    let backend = open_backend(&config).await;
    assert_eq!(backend.count_targets("rss").await.unwrap(), 209_999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_prints_one_targets_items_as_json_lines() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 8,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(host_section("") + &rss_connector(server.addr().port(), "")),
    );
    let path = config.source_path.display().to_string();
    for id in 0..8 {
        let output = tsunagi(&["poll", "rss", &server.feed_url(id), "--config", &path])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let ids: BTreeSet<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let expected: BTreeSet<String> = rss_item_ids(&server, id).into_iter().collect();
        assert_eq!(
            ids,
            expected,
            "feed {id} ({:?})",
            FeedServer::feed_format(id)
        );
    }
    // Nothing was stored: poll is a dry run.
    assert!(!dir.path().join("test.db").exists());

    let output = tsunagi(&[
        "poll",
        "rss",
        "http://127.0.0.1:9/elsewhere",
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("egress refused by connector 'rss'"),
        "{stderr}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_checks_from_the_repository_root() {
    // As the README has it: relative config path, relative database and compile cache.
    let output = tsunagi(&["check", "--config", "config/tsunagi.toml"])
        .current_dir(workspace_root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ok    rss:"), "{stdout}");
    assert!(stdout.contains("0 error(s)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rollback_and_sighup_swap_plugins_of_a_running_process() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 5,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin_file = dir.path().join("tagged.wasm");
    let install = |build: &str| install(&plugin(build), &plugin_file);
    install("hostile_a");
    let admin_port = free_port();
    // The CLI reads the token where the config says and sends it.
    std::fs::write(dir.path().join("admin.token"), "reload-test-token\n").unwrap();
    let text = host_section(&format!(
        "admin_listen = \"127.0.0.1:{admin_port}\"\nadmin_token = {{ file = \"admin.token\" }}"
    )) + &format!(
        r#"
[connectors.tagged]
plugin = "tagged.wasm"
role = "poller"
concurrency = 2
[connectors.tagged.config]
mode = "tagged"
[[connectors.tagged.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {}
"#,
        server.addr().port()
    );
    let config = write_config(dir.path(), &text);
    let config_arg = config.source_path.display().to_string();
    let mut host = spawn_host(&config.source_path);
    wait_for_admin(admin_port).await;
    let serving = || async {
        let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
        status["connectors"][0]["plugin"]["sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let build_a = serving().await;

    install("hostile_b");
    let reload = tsunagi(&["reload", "tagged", "--config", &config_arg])
        .output()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&reload.stdout).unwrap();
    assert!(reload.status.success(), "{report}");
    assert_eq!(report["connectors"][0]["outcome"], "swapped", "{report}");
    let build_b = serving().await;
    assert_ne!(build_a, build_b);

    let rollback = tsunagi(&["rollback", "tagged", "--config", &config_arg])
        .output()
        .await
        .unwrap();
    assert!(rollback.status.success());
    assert_eq!(serving().await, build_a, "rolled back to build a");

    std::fs::write(&plugin_file, b"not a plugin").unwrap();
    let refused = tsunagi(&["reload", "--config", &config_arg])
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "a refused reload exits 1");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(serving().await, build_a, "the old version keeps serving");

    // SIGHUP reloads too.
    install("hostile_b");
    signal(&host, "HUP");
    let swapped = tokio::time::timeout(Duration::from_secs(30), async {
        while serving().await != build_b {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(swapped.is_ok(), "SIGHUP swapped build b in");

    signal(&host, "TERM");
    assert!(wait_exit(&mut host).await.success());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_of_a_running_host_wants_its_token_and_its_own_name_and_drains_on_sigterm() {
    let feeds = 6;
    let server = slow_feeds(feeds, Duration::from_millis(2500)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = "9c1e-admin-token-under-test";
    let admin_port = free_port();
    std::fs::write(dir.path().join("admin.token"), format!("{token}\n")).unwrap();
    let text = host_section(&format!(
        "admin_listen = \"127.0.0.1:{admin_port}\"\nadmin_token = {{ file = \"admin.token\" }}"
    )) + &rss_connector(server.addr().port(), "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();
    let host = tsunagi(&["run", "--config", &config.source_path.display().to_string()])
        .env("TSUNAGI_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tsunagi run");
    wait_for_admin(admin_port).await;
    let base = format!("http://127.0.0.1:{admin_port}");
    let client = reqwest::Client::new();
    let readyz = || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(readyz().await, 200, "ready once the pipelines run");

    let reload = format!("{base}/v1/reload");
    let without = client.post(&reload).send().await.unwrap();
    assert_eq!(without.status(), 401);
    assert!(!without.text().await.unwrap().contains(token));
    let wrong = client
        .post(&reload)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let rebound = client
        .post(&reload)
        .bearer_auth(token)
        .header("host", "evil.example")
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(
        rebound.status(),
        421,
        "a foreign Host is refused even with the token"
    );
    let forged = client
        .post(&reload)
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert!(
        [401, 403].contains(&forged.status().as_u16()),
        "{}",
        forged.status()
    );
    let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
    assert!(
        status["reloads"].as_object().unwrap().is_empty(),
        "no refused request ran a reload: {status}"
    );
    let allowed = client
        .post(&reload)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);

    // Every feed is in flight (each takes 2.5 s); SIGTERM drains them, and meanwhile the
    // host tells balancers it is not ready.
    requested(&server, feeds).await;
    signal(&host, "TERM");
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while readyz().await != 503 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(drained.is_ok(), "/readyz says 503 while draining");
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "still alive while draining"
    );
    let output = tokio::time::timeout(Duration::from_secs(60), host.wait_with_output())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!log.contains(token), "the token is never logged: {log}");
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * 10,
        "the in-flight calls finished"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_target_urls_never_reach_the_log_status_or_printed_items() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 3,
        failing: vec![1],
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let port = server.addr().port();
    let targets = [
        format!("{}?token=SECRET-TOK-0&page=1", server.feed_url(0)),
        format!("{}?api_key=SECRET-KEY-1", server.feed_url(1)),
        format!("{}?access_token=SECRET-AT-99", server.feed_url(99)),
        format!("http://reader:SECRET-PW-2@127.0.0.1:{port}/feeds/2"),
        format!("{}?sig=SECRET-SIG-0", server.feed_url(0)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let config = write_config(
        dir.path(),
        &(host_section(&format!("admin_listen = \"127.0.0.1:{admin_port}\""))
            + &rss_connector(port, "")),
    );
    let backend = open_backend(&config).await;
    backend.add_targets("rss", &targets, 0).await.unwrap();
    let config_arg = config.source_path.display().to_string();
    let host = tsunagi(&["run", "--config", &config_arg])
        .env("TSUNAGI_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tsunagi run");
    all_polled(&backend, "rss", targets.len()).await;
    let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
    let last_errors = &status["connectors"][0]["last_errors"];
    assert!(
        last_errors
            .as_array()
            .is_some_and(|errors| errors.len() >= 2),
        "the failing targets are among the recent errors: {status}"
    );
    signal(&host, "TERM");
    let output = tokio::time::timeout(Duration::from_secs(60), host.wait_with_output())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        log.contains("REDACTED"),
        "the debug log names the targets, redacted"
    );

    let mut printed = Vec::new();
    for args in [
        &["items", "--connector", "rss"][..],
        &["targets", "list"][..],
        &["dlq", "list"][..],
    ] {
        let mut full = args.to_vec();
        full.extend(["--config", &config_arg]);
        let out = tsunagi(&full).output().await.unwrap();
        assert!(out.status.success(), "{args:?}");
        printed.push((
            format!("{args:?}"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    let items = backend
        .list_items(&ItemQuery {
            connector: Some("rss".into()),
            limit: 10_000,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    assert!(!items.is_empty(), "the good targets stored items");
    let stored_items =
        serde_json::to_string(&items.iter().map(|i| &i.item).collect::<Vec<_>>()).unwrap();
    let stored_errors = serde_json::to_string(
        &backend
            .list_targets(Some("rss"), 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|t| (&t.last_error, &t.history))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let places = [
        ("log".to_string(), log),
        ("status".to_string(), status.to_string()),
        ("stored items".to_string(), stored_items),
        ("stored errors".to_string(), stored_errors),
    ]
    .into_iter()
    .chain(printed);
    for (place, text) in places {
        assert!(!text.contains("SECRET-"), "a secret in the {place}: {text}");
    }
    server.shutdown().await;
}

/// The plugin at `path` with a custom section appended: another sha256, the same behaviour (a
/// component may carry custom sections anywhere), so a push of it swaps every host.
fn same_plugin_new_sha(path: &Path, mark: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"tsunagi-test";
    let content_len = 1 + name.len() + mark.len();
    assert!(
        content_len < 128 && name.len() < 128,
        "one-byte LEB128 lengths"
    );
    bytes.push(0);
    bytes.push(content_len as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(mark.as_bytes());
    bytes
}

/// Resolves `address` (`host:port` of a test server) for a proxy in front of it.
async fn socket_of(address: &str) -> SocketAddr {
    tokio::net::lookup_host(address)
        .await
        .unwrap()
        .next()
        .expect("the test server has an address")
}

/// Waits (bounded) until the host at `admin_port` lists `hosts` live hosts in the cluster.
async fn cluster_lists(admin_port: u16, hosts: usize) {
    let listed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
            if status["cluster"]["hosts"].as_array().map(Vec::len) == Some(hosts) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(listed.is_ok(), "the cluster lists {hosts} hosts");
}

/// The issue's acceptance run. Three host processes share PostgreSQL (targets, items, jobs) and
/// Redis (budgets, the cluster) for a crawl of `TSUNAGI_SCALE_FEEDS` feeds (default 50,000; two
/// items each; `scripts/test` runs 20,000 to keep CI within its time) while a second connector's 20 feeds go through a 5 requests/s budget. During the
/// crawl: Redis restarts (its proxy cuts every connection and refuses new ones until the hosts
/// have tried again), then PostgreSQL, then one host is SIGKILLed and started again, then a
/// plugin is pushed through one host. At the end: no host exited, no target failed, every
/// feed was fetched, each refetch is explained by the kill or a commit the outages broke, every
/// item is stored exactly once, the pushed plugin runs on all three, and the budget held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_crawl_through_store_restarts_a_kill_and_a_push() {
    let feeds: u32 = std::env::var("TSUNAGI_SCALE_FEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(50_000);
    let items_per_feed = 2;
    let server = FeedServer::start(FeedServerConfig {
        feeds,
        items_per_feed,
        target_feed_bytes: 1_000,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let paced_feeds = 20;
    let paced = FeedServer::start(FeedServerConfig {
        feeds: paced_feeds,
        record_arrivals: true,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let schema = TestSchema::create().await;
    let redis = TestPrefix::new();
    let postgres_proxy = TcpProxy::start(socket_of(&schema.address()).await)
        .await
        .unwrap();
    let redis_proxy = TcpProxy::start(socket_of(&redis.address()).await)
        .await
        .unwrap();
    let database = schema.url_via(&postgres_proxy.addr().to_string());
    let shared = redis.url_via(&redis_proxy.addr().to_string());
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let feed_port = server.addr().port();
    let paced_port = paced.addr().port();
    let paced_connector = rss_connector(paced_port, "")
        .replace("connectors.rss", "connectors.paced")
        .replace("concurrency = 32", "concurrency = 4")
        .replace(
            &format!("port = {paced_port}\n"),
            &format!("port = {paced_port}\nbudget = \"paced\"\n"),
        );
    // The key every host holds: the host a push lands on shares the code it compiled.
    let key_file = dir.path().join("cluster.key");
    std::fs::write(&key_file, format!("{:0>40}", std::process::id())).unwrap();
    let configs = shared_store_configs(dir.path(), &ports, &database, feed_port, &|text| {
        with_short_lease(text + &paced_connector)
            + &format!(
                "\n[budgets.paced]\nrate = \"5/s\"\n\n[backends]\nbudgets = \"{shared}\"\ncluster = \"{shared}\"\ncluster_key = {{ file = \"{}\" }}\n",
                key_file.display()
            )
    });
    let backend: Arc<dyn Backend> = Arc::new(schema.open().await);
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();
    backend
        .add_targets("paced", &paced.feed_urls(), 0)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut children: Vec<Child> = configs.iter().map(|c| spawn_host(&c.source_path)).collect();
    for port in &ports {
        wait_for_admin(*port).await;
    }

    for (store, proxy, at) in [
        ("Redis", &redis_proxy, feeds / 5),
        ("PostgreSQL", &postgres_proxy, 2 * feeds / 5),
    ] {
        requested(&server, at).await;
        // Each host noticed and tried to reach it again while it was out.
        cut_until_retried(proxy, 3).await;
        proxy.restore();
        eprintln!("{store} restarted at {:.1?}", started.elapsed());
    }

    requested(&server, 3 * feeds / 5).await;
    children[2].start_kill().expect("SIGKILL a host");
    assert!(!wait_exit(&mut children[2]).await.success());
    children[2] = spawn_host(&configs[2].source_path);
    wait_for_admin(ports[2]).await;
    eprintln!(
        "host 2 killed and started again at {:.1?}",
        started.elapsed()
    );
    // The killed host's card expires; the push then waits for the three that live.
    cluster_lists(ports[0], 3).await;

    let pushed = dir.path().join("rss-marked.wasm");
    // A mark of this run's own: a plugin no host compiled before (nothing in the compile cache).
    let mark = format!("run-{}-{}", std::process::id(), free_port());
    std::fs::write(&pushed, same_plugin_new_sha(&plugin("rss"), &mark)).unwrap();
    let output = tsunagi(&[
        "push",
        "--config",
        &configs[0].source_path.display().to_string(),
        "rss",
        &pushed.display().to_string(),
    ])
    .output()
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("push printed no JSON ({e}): {output:?}"));
    assert!(
        output.status.success(),
        "every host applied the push: {report}"
    );
    let hosts = report["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3, "{report}");
    let pushed_sha = hosts[0]["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connector"] == "rss")
        .expect("rss in the report")["to"]
        .clone();
    let took: Vec<i64> = hosts.iter().filter_map(|h| h["took_ms"].as_i64()).collect();
    eprintln!(
        "pushed at {:.1?}: every host ran it within {took:?} ms",
        started.elapsed()
    );

    all_polled(&backend, "rss", feeds as usize).await;
    all_polled(&backend, "paced", paced_feeds as usize).await;
    eprintln!("crawl done at {:.1?}", started.elapsed());
    for port in &ports {
        let status = fetch_status(format!("127.0.0.1:{port}")).await;
        let rss = status["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "rss")
            .expect("rss runs")
            .clone();
        assert_eq!(
            rss["plugin"]["sha256"], pushed_sha,
            "host {port} runs the push"
        );
    }
    for child in &mut children {
        assert!(child.try_wait().unwrap().is_none(), "a host exited");
    }
    for child in &children {
        signal(child, "TERM");
    }
    for child in &mut children {
        assert!(wait_exit(child).await.success(), "host exits 0 on SIGTERM");
    }

    let targets = backend
        .list_targets(Some("rss"), 0, 1_000_000)
        .await
        .unwrap();
    let failed: Vec<_> = targets
        .iter()
        .filter(|t| t.error_count > 0 || t.dead_at.is_some())
        .map(|t| (t.target.clone(), t.last_error.clone()))
        .collect();
    assert!(
        failed.is_empty(),
        "targets failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    let mut refetched = 0;
    for id in 0..feeds {
        let fetches = server.requests_for(id);
        assert!(fetches >= 1, "feed {id} was never fetched");
        refetched += fetches - 1;
    }
    // The killed host's calls in flight (8 slots and its claimed batch) and each host's polls
    // whose commit the PostgreSQL cut broke (at most its slots and batch) are fetched again.
    let most_refetched = (8 + 16) * 4;
    assert!(
        refetched <= most_refetched,
        "{refetched} refetches: more than the kill and the outage explain"
    );
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * u64::from(items_per_feed),
        "every item stored exactly once"
    );
    let most = paced.most_requests_within(Duration::from_secs(1));
    assert!(
        most <= 6,
        "{most} requests reached the paced upstream in one second"
    );
    eprintln!(
        "{feeds} feeds, {refetched} refetched, done in {:.1?}",
        started.elapsed()
    );
    server.shutdown().await;
    paced.shutdown().await;
}
