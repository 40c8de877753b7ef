//! `tsunagi demo`: stand-in feed servers on 127.0.0.1, the RSS connector crawling a few
//! thousand of them through the real host (SQLite, sandbox, egress), a live progress line, and a
//! summary. A second round shows conditional GET: every feed answers 304 and nothing is parsed.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::config::Config;
use tsunagi::pipeline::RunMode;
use tsunagi::stats::StatsSnapshot;
use tsunagi::topology::{Topology, TopologyOptions};
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

/// Where `scripts/build-plugins` puts the RSS connector.
pub const DEFAULT_RSS_PLUGIN: &str = "target/wasm32-wasip2/plugin/tsunagi_plugin_rss.wasm";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi demo
  tsunagi demo --feeds 10000 --concurrency 128 --keep
  tsunagi demo --plugin target/wasm32-wasip2/plugin/tsunagi_plugin_rss.wasm")]
pub struct DemoArgs {
    /// How many stand-in feeds to crawl.
    #[arg(long, default_value_t = 3000)]
    pub feeds: u32,
    /// The RSS connector component.
    #[arg(long, default_value = DEFAULT_RSS_PLUGIN)]
    pub plugin: PathBuf,
    /// Plugin calls running at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Keep the demo's working directory (database, config) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

/// The result of one crawl round.
#[derive(Debug, Clone, Copy)]
pub struct RoundSummary {
    pub stats: StatsSnapshot,
    pub elapsed: Duration,
}

impl RoundSummary {
    pub fn polls_per_second(&self) -> f64 {
        self.stats.polls() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let plugin = std::fs::canonicalize(&args.plugin).with_context(|| {
        format!(
            "RSS plugin not found at {} — build it with scripts/build-plugins",
            args.plugin.display()
        )
    })?;
    // A few feeds misbehave on purpose, as real ones do.
    let troubled = |every: u32, offset: u32| -> Vec<u32> {
        (0..args.feeds).filter(|id| id % every == offset).collect()
    };
    let server = FeedServer::start_in_thread(
        FeedServerConfig {
            feeds: args.feeds,
            failing: troubled(500, 7),
            malformed: troubled(500, 11),
            slow: troubled(1000, 13),
            slow_delay: Duration::from_secs(2),
            ..FeedServerConfig::default()
        },
        1,
    )?;
    let workdir = tempfile::Builder::new().prefix("tsunagi-demo-").tempdir()?;
    let config_path = workdir.path().join("demo.toml");
    std::fs::write(
        &config_path,
        crawl_config(&plugin, server.addr().port(), args.concurrency, 256),
    )?;
    let config = Config::load(&config_path)?;
    let backend = crate::commands::open_backend(&config).await?;
    let urls = server.feed_urls();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    backend.add_targets("rss", &urls, clock.now_ms()).await?;

    println!(
        "tsunagi demo: {} feeds on http://{} (RSS 2.0/1.0/0.91, Atom 1.0/0.3, JSON Feed 1.1/1.0; some failing, malformed or slow)",
        args.feeds,
        server.addr()
    );
    println!("plugin {}", plugin.display());

    let first = crawl_round(
        &config,
        backend.clone(),
        &clock,
        args.feeds,
        "round 1 (full fetch)",
    )
    .await?;
    // Jump past the longest interval so every feed is due again, without waiting.
    clock.advance(config.connectors["rss"].schedule.max_interval * 2);
    let second = crawl_round(
        &config,
        backend.clone(),
        &clock,
        args.feeds,
        "round 2 (conditional GET)",
    )
    .await?;

    let items = backend.count_items(Some("rss")).await?;
    println!();
    println!("summary");
    print_round("round 1", &first);
    print_round("round 2", &second);
    println!("  items stored: {items}");
    println!(
        "  feeds answering 304 in round 2: {} of {}",
        second.stats.not_modified,
        second.stats.polls()
    );
    println!(
        "  database: {}",
        tsunagi::backends::postgres::redact_url(&config.database_url())
    );
    if args.keep {
        let kept = workdir.keep();
        println!("  kept {}", kept.display());
    }
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn print_round(label: &str, round: &RoundSummary) {
    println!(
        "  {label}: {} feeds polled, {} ok, {} errors, {} new items, {:.1}s, {:.0} feeds/s",
        round.stats.polls(),
        round.stats.polls_ok,
        round.stats.polls_failed,
        round.stats.items_new,
        round.elapsed.as_secs_f64(),
        round.polls_per_second()
    );
}

/// Runs the host until no target is due, drawing a progress line.
pub async fn crawl_round(
    config: &Config,
    backend: Arc<dyn tsunagi_backends::Backend>,
    clock: &ManualClock,
    expected: u32,
    label: &str,
) -> anyhow::Result<RoundSummary> {
    let options = TopologyOptions {
        clock: Arc::new(clock.clone()),
        mode: RunMode::UntilIdle,
        ..TopologyOptions::default()
    };
    let topology = Topology::start(config.clone(), backend, options).await?;
    // Plugins are compiled by now; the pipelines have only just been spawned.
    let started = Instant::now();
    let progress = super::round_progress::start(
        label,
        u64::from(expected),
        topology.connectors().all()[0].stats.clone(),
    );
    topology.until_idle().await;
    let elapsed = started.elapsed();
    topology.shutdown().await;
    progress.finish(elapsed);
    let stats = topology.connectors().all()[0].stats.snapshot();
    Ok(RoundSummary { stats, elapsed })
}

/// The config of a loopback crawl (demo and benchmark): one RSS connector allowed to reach the
/// fake feed server, a database and compile cache beside the config file.
pub fn crawl_config(plugin: &Path, port: u16, concurrency: usize, claim_batch: u32) -> String {
    format!(
        r#"# Written by tsunagi for a loopback crawl.
[host]
database = "crawl.db"
compile_cache = "compile-cache"
claim_batch = {claim_batch}

[connectors.rss]
plugin = "{plugin}"
role = "poller"
concurrency = {concurrency}

[connectors.rss.schedule]
min_interval = "10m"
max_interval = "2h"

[connectors.rss.retry]
first_delay = "5m"

[connectors.rss.limits]
call_timeout = "10s"
first_byte_timeout = "5s"

[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
        plugin = plugin
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}
