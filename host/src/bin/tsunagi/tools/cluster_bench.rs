//! `tsunagi bench cluster`: the crawl with 1, 2, 3 … host processes on one PostgreSQL
//! database. Each part is a fresh scratch schema with every feed of the fake feed server (on
//! its own thread) as a target, and that many `tsunagi run` processes of this binary, each
//! with its own admin port and the same connector; timed from every host ready to every
//! feed's items stored. On one machine the hosts share its cores with each other, the feed
//! server and PostgreSQL, so what it shows is where a cluster's crawl stops scaling here, not
//! what more machines would give.

use super::demo::{DEFAULT_RSS_PLUGIN, crawl_config};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use tsunagi::backends::postgres::testing::TestSchema;
use tsunagi_backends::Backend;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench cluster
  tsunagi bench cluster --feeds 20000 --hosts 1,2,3
  tsunagi bench cluster --postgres postgres://postgres@db.example:5432/bench --hosts 1,4")]
pub struct ClusterBenchArgs {
    /// The PostgreSQL server (a scratch schema per part, dropped after it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Stand-in feeds to crawl.
    #[arg(long, default_value_t = 20_000)]
    pub feeds: u32,
    /// Items in each feed.
    #[arg(long, default_value_t = 10)]
    pub items: u32,
    /// How many hosts in each part, one part after another.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub hosts: Vec<usize>,
    /// Calls in flight at once per host.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Due targets each host claims from the store at a time.
    #[arg(long, default_value_t = 64)]
    pub claim_batch: u32,
    /// The RSS component.
    #[arg(long, default_value = DEFAULT_RSS_PLUGIN)]
    pub plugin: PathBuf,
}

pub async fn cluster(args: ClusterBenchArgs) -> anyhow::Result<ExitCode> {
    let plugin = std::fs::canonicalize(&args.plugin)
        .with_context(|| format!("{}: run scripts/build-plugins", args.plugin.display()))?;
    let server = FeedServer::start_in_thread(
        FeedServerConfig {
            feeds: args.feeds,
            items_per_feed: args.items,
            ..FeedServerConfig::default()
        },
        1,
    )?;
    println!(
        "tsunagi bench cluster: {} feeds × {} items on http://{}, hosts {:?}, concurrency {} each",
        args.feeds,
        args.items,
        server.addr(),
        args.hosts,
        args.concurrency
    );
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-bench-cluster-")
        .tempdir()?;
    let mut rows = Vec::new();
    for &hosts in &args.hosts {
        let seconds = part(&args, &plugin, workdir.path(), &server, hosts).await?;
        println!("{hosts} host(s): {seconds:.1} s");
        rows.push((hosts, seconds));
    }
    server.shutdown().await;
    println!();
    println!("| hosts | seconds | feeds/s | ÷ one host |");
    println!("| ---: | ---: | ---: | ---: |");
    let alone = rows.first().map_or(1.0, |(_, seconds)| *seconds);
    for (hosts, seconds) in rows {
        println!(
            "| {hosts} | {seconds:.1} | {:.0} | {:.2}× |",
            f64::from(args.feeds) / seconds,
            alone / seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One part: `hosts` processes crawl every feed once; answers the seconds it took.
async fn part(
    args: &ClusterBenchArgs,
    plugin: &Path,
    workdir: &Path,
    server: &FeedServer,
    hosts: usize,
) -> anyhow::Result<f64> {
    let schema = TestSchema::create_on(&args.postgres).await;
    let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(schema.open().await);
    for chunk in server.feed_urls().chunks(10_000) {
        backend.add_targets("rss", chunk, 0).await?;
    }
    let cache = workdir.join("compile-cache");
    let mut children = Vec::new();
    let mut ports = Vec::new();
    for index in 0..hosts {
        let dir = workdir.join(format!("{hosts}-hosts/host{index}"));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let text = crawl_config(
            plugin,
            server.addr().port(),
            args.concurrency,
            args.claim_batch,
        )
        .replace(
            "database = \"crawl.db\"",
            &format!(
                "database = \"{}\"\nadmin_listen = \"127.0.0.1:{port}\"\nwatch = false",
                schema.url()
            ),
        )
        .replace(
            "compile_cache = \"compile-cache\"",
            &format!("compile_cache = \"{}\"", cache.display()),
        );
        let path = dir.join("tsunagi.toml");
        std::fs::write(&path, text)?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["run", "--config", &path.display().to_string()])
            .env("TSUNAGI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting a host")?;
        children.push(child);
        ports.push(port);
    }
    // Timed from every host ready, so the plugin's compile does not count.
    for port in &ports {
        wait_ready(*port).await?;
    }
    let started = Instant::now();
    let expected = u64::from(args.feeds) * u64::from(args.items);
    let deadline = started + Duration::from_secs(3600);
    while backend.count_items(Some("rss")).await? < expected {
        anyhow::ensure!(Instant::now() < deadline, "the crawl took over an hour");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    for child in &children {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for mut child in children {
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    }
    Ok(seconds)
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if reqwest::get(&url)
            .await
            .is_ok_and(|response| response.status() == 200)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the host at {url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
