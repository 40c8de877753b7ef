//! `tsunagi bench websub`: how soon a hub's update is in the store. A fake WebSub hub, the
//! fake feeds naming it (the RSS 2.0 and Atom 1.0 ones), and a real host with the RSS
//! component and `websub = true`: the host subscribes to every feed that names the hub, then
//! the hub publishes updates one at a time, and each is timed from the hub's delivery request
//! to its new item in the store.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::backends::{Backend, ItemQuery};
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::config::Config;
use tsunagi::pipeline::RunMode;
use tsunagi::topology::{Topology, TopologyOptions};
use tsunagi_fake_upstream::hub::FakeHub;
use tsunagi_fake_upstream::{FeedFormat, FeedServer, FeedServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench websub
  tsunagi bench websub --feeds 7000 --updates 1000")]
pub struct WebSubBenchArgs {
    /// Feeds served; two in seven name the hub.
    #[arg(long, default_value_t = 700)]
    pub feeds: u32,
    /// Updates published, one at a time.
    #[arg(long, default_value_t = 200)]
    pub updates: u32,
    /// The RSS component.
    #[arg(long, default_value = super::demo::DEFAULT_RSS_PLUGIN)]
    pub plugin: std::path::PathBuf,
}

/// An update not stored within this counts as lost.
const UPDATE_LIMIT: Duration = Duration::from_secs(30);

pub async fn websub(mut args: WebSubBenchArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    args.plugin = std::fs::canonicalize(&args.plugin).with_context(|| {
        format!(
            "{}: no such plugin; run scripts/build-plugins first",
            args.plugin.display()
        )
    })?;
    let hub = FakeHub::start(10 * 24 * 3600).await?;
    let server = FeedServer::start(FeedServerConfig {
        feeds: args.feeds,
        items_per_feed: 10,
        hub: Some(hub.url()),
        ..FeedServerConfig::default()
    })
    .await?;
    let pushed: Vec<u32> = (0..args.feeds)
        .filter(|id| {
            matches!(
                FeedServer::feed_format(*id),
                FeedFormat::Rss20 | FeedFormat::Atom10
            )
        })
        .collect();
    anyhow::ensure!(!pushed.is_empty(), "--feeds must be at least 2");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("websub.toml");
    let hub_port = hub
        .url()
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse::<u16>()?;
    std::fs::write(&path, config_text(&args, server.addr().port(), hub_port))?;
    let config = Config::load(&path)?;
    let backend = tsunagi::backends::open(&config.database_url()).await?;
    backend
        .add_targets("rss", &server.feed_urls(), SystemClock.now_ms())
        .await?;
    let topology = Topology::start(
        config,
        backend.clone(),
        TopologyOptions {
            clock: Arc::new(SystemClock),
            mode: RunMode::Forever,
            ..TopologyOptions::default()
        },
    )
    .await?;
    println!(
        "tsunagi bench websub: {} feeds, {} naming the hub; subscribing",
        args.feeds,
        pushed.len()
    );
    let started = Instant::now();
    let verified = hub
        .until_verified(pushed.len() as u64, Duration::from_secs(300))
        .await;
    anyhow::ensure!(
        verified,
        "only {} of {} subscriptions verified",
        hub.verifications(),
        pushed.len()
    );
    println!(
        "{} subscriptions verified {:.1}s after the start",
        pushed.len(),
        started.elapsed().as_secs_f64()
    );

    let mut latencies = Vec::new();
    let mut lost = 0;
    for n in 0..args.updates {
        let id = pushed[n as usize % pushed.len()];
        server.publish_round();
        let (content_type, body) = server.document(id);
        let newest = server.expected_item_ids(id)[0].clone();
        let topic = server.feed_url(id);
        let outcome = hub.publish(&topic, content_type, &body).await;
        let Some(delivery) = outcome.first().filter(|o| o.status == 202) else {
            anyhow::bail!(
                "delivery {n} answered {:?}",
                outcome.first().map(|o| o.status)
            );
        };
        match stored_after(backend.as_ref(), &topic, &newest, delivery.sent_at).await? {
            Some(latency) => latencies.push(latency),
            None => lost += 1,
        }
    }
    topology.shutdown().await;
    let fetched = server.stats().requests;
    server.shutdown().await;
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies
            .get(index)
            .map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
    };
    println!();
    println!(
        "| updates | stored | lost | median (ms) | p90 (ms) | p99 (ms) | max (ms) | feed fetches |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {} | {lost} | {} | {} | {} | {} | {fetched} |",
        args.updates,
        latencies.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How long after `sent` the item `id` of `target` was in the store (None past the limit).
async fn stored_after(
    backend: &dyn Backend,
    target: &str,
    id: &str,
    sent: Instant,
) -> anyhow::Result<Option<Duration>> {
    let query = ItemQuery {
        connector: Some("rss".into()),
        target: Some(target.to_string()),
        ..ItemQuery::default()
    };
    while sent.elapsed() < UPDATE_LIMIT {
        if backend
            .list_items(&query)
            .await?
            .iter()
            .any(|stored| stored.item.id == id)
        {
            return Ok(Some(sent.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(None)
}

fn config_text(args: &WebSubBenchArgs, feeds_port: u16, hub_port: u16) -> String {
    format!(
        r#"# Written by tsunagi bench websub.
[host]
database = "websub.db"
compile_cache = "compile-cache"
watch = false
inbound_listen = "127.0.0.1:0"

[connectors.rss]
plugin = "{plugin}"
role = "poller"
concurrency = 16
websub = true

[connectors.rss.schedule]
min_interval = "1h"
max_interval = "2h"

[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {feeds_port}

[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {hub_port}
"#,
        plugin = args.plugin.display()
    )
}
