//! `tsunagi bench hosts`: a per-host budget under a crowd. Many feeds live on one hosting
//! service; its budget (`per = "host"`) must hold it to its rate without slowing the feeds
//! that live elsewhere.
//!
//! One fake feed server per host, each on its own loopback address (127.0.0.2 for the busy
//! host, 127.1.x.y for the others, all on one port), so every host has a registrable domain of
//! its own. Two parts, each a fresh database and a real host (`Topology`, the RSS component,
//! egress with the budget):
//!
//! - **others alone**: the feeds spread over the other hosts;
//! - **with the busy host**: the same feeds plus the busy host's, their targets interleaved.
//!
//! Reported: when the other hosts' feeds were all fetched in each part (the figure that must
//! not move), how long the busy host's took, and the most requests the busy host saw within
//! any second (which must stay within its budget).

use super::demo::RoundSummary;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::config::Config;
use tsunagi::pipeline::RunMode;
use tsunagi::topology::{Topology, TopologyOptions};
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench hosts
  tsunagi bench hosts --clustered
  tsunagi bench hosts --busy-feeds 2000 --other-hosts 100 --rate 50/s")]
pub struct HostsBenchArgs {
    /// Feeds on the busy host.
    #[arg(long, default_value_t = 5_000)]
    pub busy_feeds: u32,
    /// Feeds spread evenly over the other hosts.
    #[arg(long, default_value_t = 50_000)]
    pub other_feeds: u32,
    /// Other hosts, each on its own loopback address.
    #[arg(long, default_value_t = 500)]
    pub other_hosts: u32,
    /// The per-host budget's rate (as in `[budgets.NAME] rate`).
    #[arg(long, default_value = "100/s")]
    pub rate: String,
    /// Items in each feed.
    #[arg(long, default_value_t = 2)]
    pub items: u32,
    /// Approximate size of each feed.
    #[arg(long, default_value_t = 1_000)]
    pub feed_bytes: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// List each other host's feeds together rather than round robin.
    #[arg(long)]
    pub clustered: bool,
    /// The RSS component.
    #[arg(long, default_value = super::demo::DEFAULT_RSS_PLUGIN)]
    pub plugin: std::path::PathBuf,
}

/// A part that takes longer than this is stopped and reported as not done.
const PART_LIMIT: Duration = Duration::from_secs(30 * 60);

/// What one part measured.
struct Part {
    label: &'static str,
    round: RoundSummary,
    /// From the pipelines' start until every other host's feed had been fetched.
    others_done: Option<Duration>,
    /// The same for the busy host's feeds.
    busy_done: Option<Duration>,
    busy_most_per_second: usize,
}

pub async fn hosts(mut args: HostsBenchArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    // The config lives in a temporary directory, where a relative path would not resolve.
    args.plugin = std::fs::canonicalize(&args.plugin).with_context(|| {
        format!(
            "{}: no such plugin; run scripts/build-plugins first",
            args.plugin.display()
        )
    })?;
    anyhow::ensure!(args.other_hosts > 0, "--other-hosts must be at least 1");
    anyhow::ensure!(
        args.other_hosts <= 60_000,
        "--other-hosts above 60,000 runs out of 127.1.x.y addresses"
    );
    let server_config = |feeds: u32, record_arrivals: bool| FeedServerConfig {
        feeds,
        items_per_feed: args.items,
        target_feed_bytes: args.feed_bytes,
        record_arrivals,
        ..FeedServerConfig::default()
    };
    let busy_address = Ipv4Addr::new(127, 0, 0, 2);
    let busy = FeedServer::start_on(
        server_config(args.busy_feeds, true),
        SocketAddr::from((busy_address, 0)),
    )
    .await?;
    let port = busy.addr().port();
    let per_host = args.other_feeds.div_ceil(args.other_hosts);
    let mut others = Vec::new();
    for n in 0..args.other_hosts {
        let address = Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8);
        let server = FeedServer::start_on(
            server_config(per_host, false),
            SocketAddr::from((address, port)),
        )
        .await
        .map_err(|error| anyhow::anyhow!("cannot serve feeds on {address}:{port}: {error}"))?;
        others.push(server);
    }
    // Round robin over the hosts, as a list of feeds from many sites is; `--clustered` lists
    // each host's feeds together instead, as an import of one service's feeds does.
    let per_server: Vec<Vec<String>> = others.iter().map(FeedServer::feed_urls).collect();
    let other_urls: Vec<String> = if args.clustered {
        per_server.concat()
    } else {
        (0..per_host as usize)
            .flat_map(|k| {
                per_server
                    .iter()
                    .filter_map(move |urls| urls.get(k).cloned())
            })
            .collect()
    };
    let busy_urls = busy.feed_urls();
    println!(
        "tsunagi bench hosts: {} feeds on {} (budget {} per host) and {} over {} other hosts, \
         concurrency {}",
        busy_urls.len(),
        busy_address,
        args.rate,
        other_urls.len(),
        others.len(),
        args.concurrency
    );

    let mut parts = Vec::new();
    for (label, with_busy) in [("others alone", false), ("with the busy host", true)] {
        let mut urls = Vec::with_capacity(other_urls.len() + busy_urls.len());
        if with_busy {
            // Interleaved, as a real list of feeds mixes hosts.
            let step = (other_urls.len() / busy_urls.len().max(1)).max(1);
            let mut busy_iter = busy_urls.iter();
            for (i, url) in other_urls.iter().enumerate() {
                if i % step == 0
                    && let Some(busy_url) = busy_iter.next()
                {
                    urls.push(busy_url.clone());
                }
                urls.push(url.clone());
            }
            urls.extend(busy_iter.cloned());
        } else {
            urls.extend(other_urls.iter().cloned());
        }
        parts.push(run_part(label, &args, port, &urls, &busy, &others, with_busy).await?);
    }

    println!();
    println!(
        "| part | feeds | errors | other hosts' feeds done (s) | busy host's feeds done (s) | \
         busy host's most requests in 1 s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let secs =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
    for part in &parts {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            part.label,
            part.round.stats.polls(),
            part.round.stats.polls_failed,
            secs(part.others_done),
            secs(part.busy_done),
            part.busy_most_per_second
        );
    }
    if let (Some(alone), Some(crowded)) = (parts[0].others_done, parts[1].others_done) {
        println!(
            "\nother hosts' round with the busy host / without: {:.2}×",
            crowded.as_secs_f64() / alone.as_secs_f64().max(1e-9)
        );
    }
    busy.shutdown().await;
    for server in others {
        server.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_part(
    label: &'static str,
    args: &HostsBenchArgs,
    port: u16,
    urls: &[String],
    busy: &FeedServer,
    others: &[FeedServer],
    with_busy: bool,
) -> anyhow::Result<Part> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("hosts.toml");
    std::fs::write(&path, config_text(args, port))?;
    let config = Config::load(&path)?;
    let backend = tsunagi::backends::open(&config.database_url()).await?;
    for chunk in urls.chunks(10_000) {
        backend
            .add_targets("rss", chunk, SystemClock.now_ms())
            .await?;
    }
    let requests = |servers: &[FeedServer]| -> u64 {
        servers.iter().map(|server| server.stats().requests).sum()
    };
    let others_before = requests(others);
    let busy_before = busy.stats().requests;
    let other_feeds = u64::try_from(others.iter().map(|s| s.feed_urls().len()).sum::<usize>())?;
    let busy_feeds = if with_busy {
        u64::try_from(busy.feed_urls().len())?
    } else {
        0
    };

    let topology = Topology::start(
        config,
        backend,
        TopologyOptions {
            // Real time: the budget paces real requests.
            clock: Arc::new(SystemClock),
            // Deferred targets are not due, so a round "until idle" would end before the busy
            // host's queue: run until every feed has been fetched.
            mode: RunMode::Forever,
            ..TopologyOptions::default()
        },
    )
    .await?;
    let started = Instant::now();
    let (mut others_done, mut busy_done) = (None, None);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while others_done.is_none() || (with_busy && busy_done.is_none()) {
        tick.tick().await;
        if others_done.is_none() && requests(others) - others_before >= other_feeds {
            others_done = Some(started.elapsed());
        }
        if with_busy && busy_done.is_none() && busy.stats().requests - busy_before >= busy_feeds {
            busy_done = Some(started.elapsed());
        }
        if started.elapsed() > PART_LIMIT {
            println!("{label}: not done after {PART_LIMIT:?}; stopping");
            break;
        }
    }
    let elapsed = started.elapsed();
    topology.shutdown().await;
    let stats = topology.connectors().all()[0].stats.snapshot();
    // Only the second part reaches the busy host, so its arrivals are that part's.
    let busy_most_per_second = busy.most_requests_within(Duration::from_secs(1));
    println!(
        "{label}: {} polls ({} ok, {} failed, {} deferred) in {:.1}s",
        stats.polls(),
        stats.polls_ok,
        stats.polls_failed,
        stats.polls_deferred,
        elapsed.as_secs_f64()
    );
    Ok(Part {
        label,
        round: RoundSummary { stats, elapsed },
        others_done,
        busy_done,
        busy_most_per_second,
    })
}

fn config_text(args: &HostsBenchArgs, port: u16) -> String {
    format!(
        r#"# Written by tsunagi bench hosts.
[host]
database = "hosts.db"
compile_cache = "compile-cache"
watch = false

[budgets.hosts]
rate = "{rate}"
per = "host"

[connectors.rss]
plugin = "{plugin}"
role = "poller"
concurrency = {concurrency}

[connectors.rss.schedule]
min_interval = "1h"
max_interval = "2h"

[connectors.rss.limits]
call_timeout = "10s"

[[connectors.rss.egress.allow]]
scheme = "http"
host = "*"
port = {port}
allow_internal = true
budget = "hosts"
"#,
        rate = args.rate,
        concurrency = args.concurrency,
        plugin = args
            .plugin
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}
