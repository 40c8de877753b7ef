//! `tsunagi bench swap`: what a hot swap costs the jobs running through it.
//!
//! One run, two parts against the same loopback feed server, each on a fresh database with a
//! real host (pipelines, reloader, SQLite): first a steady crawl with no swaps, then the same
//! crawl while the plugin file is replaced and reloaded every second, alternating between two
//! builds. Each part reports job latency (claim handed to a worker → outcome committed) at p50
//! and p99 from the host's own histogram, and the ratio of the two p99s.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::config::Config;
use tsunagi::pipeline::RunMode;
use tsunagi::stats::LatencySnapshot;
use tsunagi::topology::{Control, Topology, TopologyOptions};
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench swap
  tsunagi bench swap --feeds 5000 --seconds 60 --swap-every-ms 500")]
pub struct SwapBenchArgs {
    /// Stand-in feeds to crawl.
    #[arg(long, default_value_t = 2_000)]
    pub feeds: u32,
    /// Length of each part.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Time between swaps in the second part.
    #[arg(long, default_value_t = 1_000)]
    pub swap_every_ms: u64,
    /// The first of the two builds swapped in turn.
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/plugin/tsunagi_plugin_hostile_a.wasm"
    )]
    pub plugin_a: PathBuf,
    /// The second of the two builds swapped in turn.
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/plugin/tsunagi_plugin_hostile_b.wasm"
    )]
    pub plugin_b: PathBuf,
}

struct Part {
    name: &'static str,
    swaps: u32,
    refused: u32,
    polls_ok: u64,
    polls_failed: u64,
    latency: LatencySnapshot,
}

pub async fn swap(args: SwapBenchArgs) -> anyhow::Result<ExitCode> {
    let builds = [&args.plugin_a, &args.plugin_b].map(|path| {
        std::fs::canonicalize(path)
            .with_context(|| format!("{} not found — run scripts/build-plugins", path.display()))
    });
    let [build_a, build_b] = builds;
    let (build_a, build_b) = (build_a?, build_b?);
    let server = FeedServer::start_in_thread(
        FeedServerConfig {
            feeds: args.feeds,
            ..FeedServerConfig::default()
        },
        1,
    )?;
    println!(
        "tsunagi bench swap: {} feeds on http://{}, concurrency {}, {}s per part, a swap every {}ms in the second",
        args.feeds,
        server.addr(),
        args.concurrency,
        args.seconds,
        args.swap_every_ms
    );
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-swap-bench-")
        .tempdir()?;
    let mut parts = Vec::new();
    for (name, swapping) in [("no swaps", false), ("swap every interval", true)] {
        let dir = workdir
            .path()
            .join(if swapping { "swapping" } else { "steady" });
        std::fs::create_dir_all(&dir)?;
        parts.push(run_part(name, swapping, &dir, &server, &args, [&build_a, &build_b]).await?);
    }
    server.shutdown().await;

    println!();
    println!("| part | swaps | refused | jobs ok | jobs failed | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for part in &parts {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} |",
            part.name,
            part.swaps,
            part.refused,
            part.polls_ok,
            part.polls_failed,
            part.latency.p50_ms,
            part.latency.p99_ms,
            part.latency.max_ms
        );
    }
    let ratio = parts[1].latency.p99_ms / parts[0].latency.p99_ms.max(1e-9);
    println!();
    println!(
        "p99 with swaps / without: {:.2} ({:+.0}%)",
        ratio,
        (ratio - 1.0) * 100.0
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_part(
    name: &'static str,
    swapping: bool,
    dir: &Path,
    server: &FeedServer,
    args: &SwapBenchArgs,
    builds: [&PathBuf; 2],
) -> anyhow::Result<Part> {
    let plugin = dir.join("tagged.wasm");
    install(builds[0], &plugin)?;
    let config_path = dir.join("bench.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"[host]
database = "bench.db"
compile_cache = "compile-cache"
watch = false
idle_poll = "20ms"

[connectors.tagged]
plugin = "tagged.wasm"
role = "poller"
concurrency = {concurrency}

[connectors.tagged.schedule]
min_interval = "1s"
max_interval = "2s"

[connectors.tagged.config]
mode = "tagged"

[[connectors.tagged.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
            concurrency = args.concurrency,
            port = server.addr().port()
        ),
    )?;
    let config = Config::load(&config_path)?;
    let backend = crate::commands::open_backend(&config).await?;
    for chunk in server.feed_urls().chunks(10_000) {
        backend
            .add_targets("tagged", chunk, SystemClock.now_ms())
            .await?;
    }
    let options = TopologyOptions {
        clock: Arc::new(SystemClock),
        mode: RunMode::Forever,
        ..TopologyOptions::default()
    };
    let topology = Topology::start(config, backend, options).await?;
    let started = Instant::now();
    let run_for = Duration::from_secs(args.seconds);
    let (mut swaps, mut refused) = (0, 0);
    if swapping {
        let every = Duration::from_millis(args.swap_every_ms.max(1));
        let mut next = started + every;
        while next < started + run_for {
            tokio::time::sleep_until(next.into()).await;
            install(builds[(swaps as usize + 1) % 2], &plugin)?;
            let report = topology.reload(Some("tagged")).await;
            if report.ok {
                swaps += 1;
            } else {
                refused += 1;
                eprintln!("swap refused: {}", serde_json::to_string(&report)?);
            }
            next += every;
        }
    }
    tokio::time::sleep_until((started + run_for).into()).await;
    topology.shutdown().await;
    let stats = topology.connectors().all()[0].stats.clone();
    let counters = stats.snapshot();
    let latency = stats.latency();
    println!(
        "{name}: {} jobs, p50 {:.2} ms, p99 {:.2} ms, {swaps} swaps",
        counters.polls_ok, latency.p50_ms, latency.p99_ms
    );
    Ok(Part {
        name,
        swaps,
        refused,
        polls_ok: counters.polls_ok,
        polls_failed: counters.polls_failed,
        latency,
    })
}

/// Replaces `to` with `from` as a deploy would: copy aside, then rename over.
fn install(from: &Path, to: &Path) -> std::io::Result<()> {
    let aside = to.with_extension("incoming");
    std::fs::copy(from, &aside)?;
    std::fs::rename(&aside, to)
}
