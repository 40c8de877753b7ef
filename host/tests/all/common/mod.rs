//! Helpers shared by the end-to-end tests: plugin paths, config files, crawl rounds.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tsunagi::backends::Backend;
use tsunagi::clock::{Clock, ManualClock, SharedClock, SystemClock};
use tsunagi::config::Config;
use tsunagi::pipeline::RunMode;
use tsunagi::stats::StatsSnapshot;
use tsunagi::topology::{Topology, TopologyOptions};

/// A started topology, with its admin API listening where the config's `host.admin_listen`
/// says (as `tsunagi run` does).
pub struct TestHost {
    topology: Arc<Topology>,
    admin: Option<SocketAddr>,
    admin_stop: CancellationToken,
}

impl TestHost {
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.clone()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Waits until every pipeline has ended by itself ([`RunMode::UntilIdle`]).
    pub async fn until_idle(&mut self) {
        self.topology.until_idle().await;
    }

    pub async fn shutdown(self) {
        self.topology.shutdown().await;
        self.admin_stop.cancel();
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A plugin built by `scripts/build-plugins`.
/// `TSUNAGI_TEST_PLUGIN_DIR` points the tests at other builds (a mutant, to see a test fail).
pub fn plugin(name: &str) -> PathBuf {
    let dir = std::env::var_os("TSUNAGI_TEST_PLUGIN_DIR").map_or_else(
        || workspace_root().join("target/wasm32-wasip2/plugin"),
        PathBuf::from,
    );
    let path = dir.join(format!("tsunagi_plugin_{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins (scripts/test does)",
        path.display()
    );
    path
}

/// Where `scripts/build-plugins` put the no-code interpreter (`host.declarative_plugins`).
pub fn declarative_plugins() -> PathBuf {
    plugin("declarative_searcher")
        .parent()
        .expect("a folder")
        .to_path_buf()
}

/// The shipped Yahoo! no-code file (`config/shops/yahoo.toml`) pointed at a fake at
/// `base_url`, its appid `app_id` read from `yahoo.app_id` in `dir`.
pub fn shipped_yahoo(dir: &Path, base_url: &str, app_id: &str) -> String {
    std::fs::write(dir.join("yahoo.app_id"), app_id).unwrap();
    let shipped = std::fs::read_to_string(workspace_root().join("config/shops/yahoo.toml"))
        .expect("config/shops/yahoo.toml ships");
    let pointed = shipped
        .replace("https://shopping.yahooapis.jp", base_url)
        .replace(
            "key = \"${YAHOO_APP_ID}\"",
            "key = { file = \"yahoo.app_id\" }",
        );
    assert_ne!(
        pointed, shipped,
        "the shipped file names Yahoo's URL and the appid variable"
    );
    pointed
}

/// Compiled plugins are cached across tests and test binaries.
pub fn compile_cache() -> PathBuf {
    workspace_root().join("target/tsunagi-test-cache")
}

/// A `[host]` section for tests: database in `dir`, shared compile cache, short idle poll, no
/// file watching (tests that reload say when).
pub fn host_section(extra: &str) -> String {
    format!(
        "[host]\ndatabase = \"test.db\"\ncompile_cache = \"{}\"\nidle_poll = \"50ms\"\nshutdown_grace = \"10s\"\nwatch = false\n{extra}\n",
        compile_cache().display()
    )
}

/// An RSS connector allowed to reach `port` on 127.0.0.1.
pub fn rss_connector(port: u16, extra: &str) -> String {
    format!(
        r#"
[connectors.rss]
plugin = "{plugin}"
role = "poller"
concurrency = 32
{extra}

[connectors.rss.schedule]
min_interval = "10m"
max_interval = "1h"

[connectors.rss.retry]
first_delay = "1m"

[connectors.rss.limits]
call_timeout = "20s"

[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
        plugin = plugin("rss").display()
    )
}

pub fn write_config(dir: &Path, text: &str) -> Config {
    let path = dir.join("tsunagi.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

pub async fn open_backend(config: &Config) -> Arc<dyn Backend> {
    tsunagi::backends::open(&config.database_url())
        .await
        .expect("open backend")
}

/// Starts a host with a manual clock.
pub async fn start_host(
    config: &Config,
    backend: Arc<dyn Backend>,
    clock: &ManualClock,
    mode: RunMode,
) -> TestHost {
    start_host_with_clock(config, backend, Arc::new(clock.clone()), mode).await
}

/// Starts a host with any clock (the real one for tests that run against real time).
pub async fn start_host_with_clock(
    config: &Config,
    backend: Arc<dyn Backend>,
    clock: SharedClock,
    mode: RunMode,
) -> TestHost {
    let options = TopologyOptions {
        clock,
        mode,
        ..TopologyOptions::default()
    };
    let topology = Topology::start(config.clone(), backend, options)
        .await
        .expect("host starts");
    let admin_stop = CancellationToken::new();
    let admin = match &config.host.admin_listen {
        Some(listen) => {
            let access = tsunagi::admin::Access::from_config(config).expect("admin token");
            let server = tsunagi::admin::serve(listen, access, admin_stop.clone())
                .await
                .expect("admin listens");
            server.attach(topology.clone());
            Some(server.addr)
        }
        None => None,
    };
    TestHost {
        topology,
        admin,
        admin_stop,
    }
}

/// Runs one round: until nothing is due and nothing is running. Returns the first connector's
/// counters for the round.
pub async fn run_round(
    config: &Config,
    backend: Arc<dyn Backend>,
    clock: &ManualClock,
) -> StatsSnapshot {
    let view = run_until_idle(config, backend, clock).await;
    view.connectors().all()[0].stats.snapshot()
}

/// Runs a host until nothing is due and nothing is running, stops it, and returns its view.
pub async fn run_until_idle(
    config: &Config,
    backend: Arc<dyn Backend>,
    clock: &ManualClock,
) -> Arc<Topology> {
    let mut running = start_host(config, backend, clock, RunMode::UntilIdle).await;
    running.until_idle().await;
    let view = running.topology();
    running.shutdown().await;
    view
}

/// A config in `dir` with the RSS connector allowed to reach `server`, its backend, a manual
/// clock at the real time, and every feed of `server` added as a target.
pub async fn rss_crawl(
    server: &tsunagi_fake_upstream::FeedServer,
    dir: &Path,
) -> (Config, Arc<dyn Backend>, ManualClock) {
    rss_crawl_with(server, dir, "").await
}

/// [`rss_crawl`] with `host_extra` added to the `[host]` section.
pub async fn rss_crawl_with(
    server: &tsunagi_fake_upstream::FeedServer,
    dir: &Path,
    host_extra: &str,
) -> (Config, Arc<dyn Backend>, ManualClock) {
    let config = write_config(
        dir,
        &(host_section(host_extra) + &rss_connector(server.addr().port(), "")),
    );
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let added = backend
        .add_targets("rss", &server.feed_urls(), clock.now_ms())
        .await
        .expect("targets added");
    assert_eq!(added.added, server.feed_urls().len() as u64);
    (config, backend, clock)
}

/// Replaces `to` with a copy of `from` the way deploy tools do: write aside, then rename.
pub fn install(from: &Path, to: &Path) {
    let aside = to.with_extension("incoming");
    std::fs::copy(from, &aside).expect("copy the new file aside");
    std::fs::rename(&aside, to).expect("rename it over the old one");
}

/// The item ids the RSS connector stores for fake feed `id`, written from the connector's rule
/// rather than by calling it: an id that is an absolute URI (the fake feeds' `urn:…`; a real
/// feed's `https://…` or `tag:…`) is kept as it is; a bare guid is scoped by the feed URL as
/// `{feed URL}#{guid}`.
pub fn rss_item_ids(server: &tsunagi_fake_upstream::FeedServer, id: u32) -> Vec<String> {
    let url = server.feed_url(id);
    server
        .expected_item_ids(id)
        .into_iter()
        .map(|item| {
            let absolute = ["https://", "http://", "urn:", "tag:"]
                .iter()
                .any(|scheme| item.starts_with(scheme));
            if absolute {
                item
            } else {
                assert!(
                    !item.contains(':'),
                    "fake feed {id} serves id {item:?}, which this rule does not cover"
                );
                format!("{url}#{item}")
            }
        })
        .collect()
}

/// The counters of connector `name` in a running (or finished) host.
pub fn connector_stats(view: &Topology, name: &str) -> StatsSnapshot {
    view.connectors()
        .get(name)
        .unwrap_or_else(|| panic!("no connector {name}"))
        .stats
        .snapshot()
}

/// `GET /status` of a host's admin port, as JSON.
pub async fn fetch_status(admin: impl std::fmt::Display) -> serde_json::Value {
    // Bounded: a host that stopped answering fails the test instead of hanging it.
    let fetch = async {
        reqwest::get(format!("http://{admin}/status"))
            .await
            .expect("admin answers")
            .json()
            .await
            .expect("status is JSON")
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), fetch)
        .await
        .expect("/status answers within 60 s")
}

/// A port free on 127.0.0.1 when asked: for the admin listener of a host run as a child
/// process, whose port the test must know before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until the host at `admin` is ready: its pipelines run and its store answers
/// (the admin port itself comes up before the plugins load).
pub async fn wait_ready(admin: SocketAddr) {
    let ready = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        loop {
            let answer = reqwest::get(format!("http://{admin}/readyz")).await;
            if answer.is_ok_and(|response| response.status() == 200) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "the host at {admin} became ready");
}

/// One connector's pool, built as the host builds it (`tsunagi poll` does the same).
pub async fn pool_of(
    config: &tsunagi::config::Config,
    name: &str,
) -> tsunagi::runtime::InstancePool {
    let backend = open_backend(config).await;
    let engine =
        tsunagi::runtime::Engine::new(&tsunagi::topology::engine_settings(config)).unwrap();
    let parts = tsunagi::topology::HostParts::alone(
        config,
        backend,
        std::sync::Arc::new(tsunagi::clock::SystemClock),
    )
    .unwrap();
    tsunagi::topology::build_connector(&engine, config, name, &config.connectors[name], &parts)
        .await
        .unwrap()
}

/// A host crawling feeds of the fake API through budget `api` and breaker `api` (a health probe
/// every second), its admin API on a port of its own: what the operator tests watch while the
/// upstream fails and recovers.
pub struct BreakerCrawl {
    pub api: tsunagi_fake_upstream::ApiServer,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub host: TestHost,
}

impl BreakerCrawl {
    /// `feeds` flaky feeds and the `extra_paths` of the API (e.g. `/gone/feed`) as targets;
    /// `host_extra` goes into `[host]`, `files` are written beside the config first.
    pub async fn start(
        feeds: u32,
        extra_paths: &[&str],
        host_extra: &str,
        files: &[(&str, &str)],
    ) -> Self {
        let api = tsunagi_fake_upstream::ApiServer::start(
            tsunagi_fake_upstream::ApiServerConfig::default(),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let text = host_section(&format!("admin_listen = \"127.0.0.1:0\"\n{host_extra}"))
            + &format!(
                r#"
[budgets.api]
rate = "200/s"
burst = 20

[breakers.api]
window = "20 calls"
minimum_calls = 5
failure_rate = 50
[breakers.api.probe]
url = "{probe}"
interval = "1s"
timeout = "500ms"

[connectors.rss]
plugin = "{plugin}"
role = "poller"
concurrency = 4

[connectors.rss.schedule]
min_interval = "1s"
max_interval = "2s"

[connectors.rss.retry]
first_delay = "1s"

[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
budget = "api"
breaker = "api"
"#,
                probe = api.url("/health"),
                plugin = plugin("rss").display(),
                port = api.addr().port(),
            );
        let config = write_config(dir.path(), &text);
        let backend = open_backend(&config).await;
        let targets: Vec<String> = (0..feeds)
            .map(|i| api.url(&format!("/flaky/{i}")))
            .chain(extra_paths.iter().map(|path| api.url(path)))
            .collect();
        backend
            .add_targets("rss", &targets, SystemClock.now_ms())
            .await
            .unwrap();
        let host = start_host_with_clock(
            &config,
            backend.clone(),
            Arc::new(SystemClock),
            RunMode::Forever,
        )
        .await;
        Self {
            api,
            dir,
            config,
            backend,
            host,
        }
    }

    pub fn admin(&self) -> SocketAddr {
        self.host.admin_addr().expect("admin listens")
    }
}

/// The lines a child process writes to `output`, as they come (read on a thread of their own,
/// so a test can wait for one with a bound).
pub fn lines_of(output: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (lines, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    receive
}
