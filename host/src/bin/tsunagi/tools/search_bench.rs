//! `tsunagi bench search`: what the search fan-out adds to a search, and how many cached
//! searches the host answers per second.
//!
//! Three fake shops on loopback, on a thread of their own (`super::server_thread`): Rakuten
//! (the `rakuten` plugin) answering after `--delay-ms`, Yahoo! (the shipped no-code
//! `config/shops/yahoo.toml`, run by `plugins/declarative`) after twice that — the slowest
//! healthy shop — and a Rakuten in maintenance. Each round asks, one after another, the slowest
//! shop directly (the floor), the host for the two healthy shops, and the host for all three
//! with one down; distinct queries, so nothing is cached. The overhead is our p50 / p99 minus
//! the slowest healthy shop's own, measured side by side in the same run. The fakes here have
//! no rate limit (the overhead, not the shops' pacing, is measured). Then one query is asked
//! over and over by `--concurrency` clients: answers from the cache per second.

use anyhow::Context;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tsunagi::config::Config;
use tsunagi::topology::{Topology, TopologyOptions};
use tsunagi_fake_upstream::shop::{ShopApi, ShopMode, ShopServer, ShopServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench search
  tsunagi bench search --requests 1000 --delay-ms 50
  tsunagi bench search --concurrency 64 --cached-seconds 10")]
pub struct SearchBenchArgs {
    /// Searches of each kind.
    #[arg(long, default_value_t = 500)]
    pub requests: u32,
    /// How long the fake Rakuten takes to answer (the fake Yahoo! takes twice as long).
    #[arg(long, default_value_t = 10)]
    pub delay_ms: u64,
    /// Clients asking the cached search at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long the cached round runs.
    #[arg(long, default_value_t = 5)]
    pub cached_seconds: u64,
    /// Where scripts/build-plugins put the components.
    #[arg(long, default_value = "target/wasm32-wasip2/plugin")]
    pub plugins: PathBuf,
}

struct Shops {
    rakuten: (String, u16),
    yahoo: (String, u16),
    down: (String, u16),
}

fn start_shops(delay: Duration) -> anyhow::Result<super::server_thread::ServerThread<Shops>> {
    super::server_thread::start("fake-shops", move || async move {
        let open = |api| ShopServerConfig {
            min_interval: Duration::ZERO,
            ..ShopServerConfig::new(api, "bench-app")
        };
        let rakuten = ShopServer::start(open(ShopApi::Rakuten)).await?;
        rakuten.set_delay(delay);
        let yahoo = ShopServer::start(open(ShopApi::Yahoo)).await?;
        yahoo.set_delay(delay * 2);
        let down = ShopServer::start(open(ShopApi::Rakuten)).await?;
        down.set_mode(ShopMode::Maintenance);
        let shops = Shops {
            rakuten: (rakuten.search_url(), rakuten.addr().port()),
            yahoo: (yahoo.base_url().to_string(), yahoo.addr().port()),
            down: (down.search_url(), down.addr().port()),
        };
        Ok((shops, (rakuten, yahoo, down)))
    })
}

fn config_text(shops: &Shops, plugins: &str) -> anyhow::Result<String> {
    let rakuten = |name: &str, (url, port): &(String, u16)| {
        format!(
            r#"
[connectors.{name}]
plugin = "{plugins}/tsunagi_plugin_rakuten.wasm"
role = "searcher"
concurrency = 16
[connectors.{name}.config]
base_url = "{url}"
[[connectors.{name}.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
credential = "app"
breaker = "{name}"
[breakers.{name}]
window = "20 calls"
minimum_calls = 2
failure_rate = 50
open_wait = "1h"
"#
        )
    };
    Ok(format!(
        r#"# Written by tsunagi bench search.
[host]
database = "search.db"
compile_cache = "compile-cache"
watch = false
declarative_plugins = "{plugins}"
connectors_dir = "connectors"
[search]
deadline = "2s"
cache_ttl = "10m"
[credentials.app]
kind = "api-key"
key = {{ file = "app_id" }}
query = "applicationId"
"#
    ) + &rakuten("rakuten", &shops.rakuten)
        + &rakuten("down", &shops.down))
}

fn clip(value: &serde_json::Value) -> String {
    value.to_string().chars().take(400).collect()
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

async fn timed(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let started = Instant::now();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url}: {status}: {}", clip(&body));
    Ok((started.elapsed(), body))
}

pub async fn search(args: SearchBenchArgs) -> anyhow::Result<ExitCode> {
    let plugins = std::fs::canonicalize(&args.plugins).with_context(|| {
        format!(
            "{} not found — run scripts/build-plugins",
            args.plugins.display()
        )
    })?;
    let delay = Duration::from_millis(args.delay_ms);
    let shops = start_shops(delay)?;
    let shops = &shops.started;
    let dir = tempfile::Builder::new()
        .prefix("tsunagi-search-bench-")
        .tempdir()?;
    std::fs::write(dir.path().join("app_id"), "bench-app")?;
    std::fs::create_dir(dir.path().join("connectors"))?;
    let shipped = include_str!("../../../../../config/shops/yahoo.toml");
    let yahoo_base = &shops.yahoo.0;
    std::fs::write(
        dir.path().join("connectors/yahoo.toml"),
        shipped
            .replace("https://shopping.yahooapis.jp", yahoo_base)
            .replace("key = \"${YAHOO_APP_ID}\"", "key = { file = \"app_id\" }")
            // The real API's pacing is not what this measures.
            .replace("budget = \"yahoo\"\n", ""),
    )?;
    let path = dir.path().join("tsunagi.toml");
    let plugins_text = plugins.display().to_string().replace('\\', "\\\\");
    std::fs::write(&path, config_text(shops, &plugins_text)?)?;
    let config = Config::load(&path)?;
    let backend = tsunagi_backends::open(&config.database_url()).await?;
    let topology = Topology::start(config.clone(), backend, TopologyOptions::default()).await?;
    let stop = CancellationToken::new();
    let access = tsunagi::admin::Access::from_config(&config)?;
    let admin = tsunagi::admin::serve("127.0.0.1:0", access, stop.clone()).await?;
    admin.attach(topology.clone());
    let base = format!("http://{}", admin.addr);
    let client = reqwest::Client::new();
    println!(
        "tsunagi bench search: {} searches of each kind; Rakuten answers in {} ms, Yahoo! in {} ms, a third shop is in maintenance",
        args.requests,
        args.delay_ms,
        args.delay_ms * 2
    );

    // Warm-up: instances, connections, and the down shop's breaker opening.
    for i in 0..20 {
        timed(
            &client,
            &format!("{base}/v1/search?q=warm+{i}&shops=rakuten,yahoo,down"),
            None,
        )
        .await?;
    }
    let direct_url = |i: u32| {
        format!(
            "{yahoo_base}/ShoppingWebService/V3/itemSearch?appid=bench-app&query=floor+{i}&results=20&start=1&sort=-score"
        )
    };
    let (mut floor, mut healthy, mut with_down) = (histogram(), histogram(), histogram());
    let mut statuses = std::collections::BTreeMap::<String, u64>::new();
    for i in 0..args.requests {
        let (took, _) = timed(&client, &direct_url(i), None).await?;
        floor.record(took.as_micros() as u64)?;
        let (took, body) = timed(
            &client,
            &format!("{base}/v1/search?q=tea+{i}&shops=rakuten,yahoo"),
            None,
        )
        .await?;
        healthy.record(took.as_micros() as u64)?;
        for shop in ["rakuten", "yahoo"] {
            anyhow::ensure!(
                body["shops"][shop]["status"] == "ok",
                "{shop}: {}",
                clip(&body["shops"])
            );
        }
        let (took, body) = timed(
            &client,
            &format!("{base}/v1/search?q=tea+{i}+down&shops=rakuten,yahoo,down"),
            None,
        )
        .await?;
        with_down.record(took.as_micros() as u64)?;
        let status = body["shops"]["down"]["status"].as_str().unwrap_or("?");
        *statuses.entry(status.to_string()).or_default() += 1;
    }
    let quantile = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q);
    println!();
    println!("| | p50 ms | p99 ms | overhead p50 ms | overhead p99 ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| slowest healthy shop, asked directly | {:.2} | {:.2} | – | – |",
        ms(quantile(&floor, 0.5)),
        ms(quantile(&floor, 0.99))
    );
    for (label, h) in [
        ("search, two healthy shops", &healthy),
        ("search, two healthy + one down", &with_down),
    ] {
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(quantile(h, 0.5)),
            ms(quantile(h, 0.99)),
            ms(quantile(h, 0.5).saturating_sub(quantile(&floor, 0.5))),
            ms(quantile(h, 0.99).saturating_sub(quantile(&floor, 0.99)))
        );
    }
    println!("(the down shop's status over those searches: {statuses:?})");

    // Cached: one search, asked by many clients at once.
    let cached_url = format!("{base}/v1/search?q=cached+tea&shops=rakuten,yahoo");
    timed(&client, &cached_url, None).await?;
    let until = Instant::now() + Duration::from_secs(args.cached_seconds);
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, url, answered) = (client.clone(), cached_url.clone(), answered.clone());
        clients.spawn(async move {
            while Instant::now() < until {
                let (_, body) = timed(&client, &url, None).await?;
                anyhow::ensure!(
                    body["cached"] == true,
                    "not cached: {}",
                    clip(&body["shops"])
                );
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = clients.join_next().await {
        done??;
    }
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "cached: {answered} answers in {} s by {} clients = {:.0} searches/s",
        args.cached_seconds,
        args.concurrency,
        answered as f64 / args.cached_seconds as f64
    );
    let p99_overhead = quantile(&healthy, 0.99)
        .saturating_sub(quantile(&floor, 0.99))
        .max(quantile(&with_down, 0.99).saturating_sub(quantile(&floor, 0.99)));
    topology.shutdown().await;
    stop.cancel();
    println!(
        "fan-out overhead p99 {:.2} ms (target ≤ 5 ms): {}",
        ms(p99_overhead),
        if p99_overhead <= 5_000 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(ExitCode::SUCCESS)
}
