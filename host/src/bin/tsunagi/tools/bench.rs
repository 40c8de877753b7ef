//! `tsunagi bench rss`: the crawl benchmark. In one run, on the loopback fake feed server:
//!
//! 1. the real pipeline (wasm RSS component, SQLite): a full first round, then a round where every
//!    feed answers 304;
//! 2. the same pipeline with the feed parsed natively in the host — the cost of the sandbox;
//! 3. a fetch-only loop over the same HTTP client — where the time goes.
//!
//! Each part reports feeds/s and its peak resident memory (the kernel's high-water mark, reset
//! between parts). The feed server runs on its own thread and runtime.

use super::demo::DEFAULT_RSS_PLUGIN;
use anyhow::Context;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::config::Config;
use tsunagi::egress::{EgressLimits, EgressPolicy, Network};
use tsunagi::pipeline::{PollPipeline, RunMode, TargetPoller};
use tsunagi::runtime::{CallError, CallReport, Engine, FailureKind, PollResult, TargetCall};
use tsunagi::scheduler::PollPolicy;
use tsunagi::stats::{ConnectorStats, StatsSnapshot};
use tsunagi::topology::{HostParts, build_connector, engine_settings};
use tsunagi_backends::{Backend, Item};
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Crawl benchmark: wasm pipeline vs native-parse pipeline vs fetch-only.
    Rss(RssBenchArgs),
    /// Job latency with and without a plugin hot swap every second.
    Swap(super::swap_bench::SwapBenchArgs),
    /// Claim and commit latency with and without a retention pass running beside them.
    Retention(super::retention_bench::RetentionBenchArgs),
    /// Peak memory and a bystander's throughput beside a plugin doing the worst its limits allow.
    Memory(super::memory_bench::MemoryBenchArgs),
    /// Jobs per second through the handler pipeline, and the host's overhead per job.
    Jobs(super::jobs_bench::JobsBenchArgs),
    /// Timeline polls/s for many linked X users against the fake X API, and peak memory.
    #[command(name = "x-read")]
    XRead(super::x_read_bench::XReadBenchArgs),
    /// A per-host budget under a crowd: one busy host held to its rate while the feeds on
    /// hundreds of other hosts go as fast as without it.
    Hosts(super::hosts_bench::HostsBenchArgs),
    /// What the search fan-out adds over the slowest healthy shop, with and without a shop
    /// down, and cached searches per second.
    Search(super::search_bench::SearchBenchArgs),
    /// How soon a WebSub hub's update is in the store, from its delivery.
    Websub(super::websub_bench::WebSubBenchArgs),
    /// The crawl with 1, 2, 3 … host processes on one PostgreSQL database.
    Cluster(super::cluster_bench::ClusterBenchArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench rss
  tsunagi bench rss --feeds 20000 --skip-native --skip-fetch --winch
  tsunagi bench rss --feeds 50000 --skip-fetch --plugin /tmp/rss-old.wasm --plugin /tmp/rss-new.wasm
  tsunagi bench rss --feeds 20000 --postgres postgres://postgres@127.0.0.1:5432/test")]
pub struct RssBenchArgs {
    /// Stand-in feeds to crawl.
    #[arg(long, default_value_t = 210_000)]
    pub feeds: u32,
    /// Items in each feed.
    #[arg(long, default_value_t = 10)]
    pub items: u32,
    /// Approximate size of each feed.
    #[arg(long, default_value_t = 5_000)]
    pub feed_bytes: usize,
    /// Calls (or requests) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Due targets claimed from the store at a time.
    #[arg(long, default_value_t = 512)]
    pub claim_batch: u32,
    /// Threads of the fake feed server's own runtime.
    #[arg(long, default_value_t = 1)]
    pub server_threads: usize,
    /// The RSS component to measure; repeat it to measure several builds one after another in
    /// the same run (say, the previous reader and this one), each against the same feeds.
    #[arg(long, default_value = DEFAULT_RSS_PLUGIN)]
    pub plugin: Vec<PathBuf>,
    /// Serve Atom 0.3 feeds without their namespace, so that a build with the previous reader
    /// (feed-rs, which sees no entries in namespaced Atom 0.3) reads every feed too.
    #[arg(long)]
    pub atom03_without_namespace: bool,
    /// Skip the native-parse reference.
    #[arg(long)]
    pub skip_native: bool,
    /// Skip the fetch-only reference.
    #[arg(long)]
    pub skip_fetch: bool,
    /// Also run the (first) build's rounds on this PostgreSQL server, in a scratch schema
    /// dropped afterwards, after the same rounds on SQLite: e.g.
    /// `postgres://postgres@127.0.0.1:5432/test`.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Also run the (first) build's rounds on Winch's quick code (`compiler = "winch"`, what a
    /// plugin runs until Cranelift's code is ready), after the same rounds on Cranelift's.
    #[arg(long)]
    pub winch: bool,
}

/// The HTTP client the `rss` connector of `config` would get: same limits, same allowlist.
fn rss_client(config: &Config, pool_size: usize) -> anyhow::Result<reqwest::Client> {
    let connector = &config.connectors["rss"];
    let policy = Arc::new(EgressPolicy::new("rss", connector.egress.allow.clone()));
    let limits = EgressLimits::from(&connector.limits);
    Ok(Network::new(&policy, &limits, pool_size)?
        .public_client()
        .clone())
}

/// One measured part of the run.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub name: String,
    pub feeds: u64,
    pub errors: u64,
    pub items_new: u64,
    pub not_modified: u64,
    pub elapsed: Duration,
    pub peak_rss_mb: Option<f64>,
}

impl Measurement {
    pub fn rate(&self) -> f64 {
        self.feeds as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn bench(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Rss(args) => rss(args).await,
        BenchCommand::Swap(args) => super::swap_bench::swap(args).await,
        BenchCommand::Retention(args) => super::retention_bench::retention(args).await,
        BenchCommand::Memory(args) => super::memory_bench::memory(args).await,
        BenchCommand::Jobs(args) => super::jobs_bench::jobs(args).await,
        BenchCommand::XRead(args) => super::x_read_bench::x_read(args).await,
        BenchCommand::Search(args) => super::search_bench::search(args).await,
        BenchCommand::Hosts(args) => super::hosts_bench::hosts(args).await,
        BenchCommand::Websub(args) => super::websub_bench::websub(args).await,
        BenchCommand::Cluster(args) => super::cluster_bench::cluster(args).await,
    }
}

async fn rss(args: RssBenchArgs) -> anyhow::Result<ExitCode> {
    let plugins = args
        .plugin
        .iter()
        .map(|path| {
            std::fs::canonicalize(path).with_context(|| {
                format!(
                    "RSS plugin not found at {} — run scripts/build-plugins",
                    path.display()
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // One build: "wasm"; several: "wasm <file name>" each.
    let label = |plugin: &std::path::Path| {
        if plugins.len() == 1 {
            "wasm".to_string()
        } else {
            let name = plugin
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            format!("wasm {name}")
        }
    };
    let plugin = plugins[0].clone();
    let server = FeedServer::start_in_thread(
        FeedServerConfig {
            feeds: args.feeds,
            items_per_feed: args.items,
            target_feed_bytes: args.feed_bytes,
            atom03_without_namespace: args.atom03_without_namespace,
            ..FeedServerConfig::default()
        },
        args.server_threads,
    )?;
    let urls = server.feed_urls();
    println!(
        "tsunagi bench rss: {} feeds × {} items (~{} bytes each) on http://{}, concurrency {}, {} server thread(s)",
        args.feeds,
        args.items,
        args.feed_bytes,
        server.addr(),
        args.concurrency,
        args.server_threads
    );
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-bench-")
        .tempdir()?;
    let mut results = Vec::new();

    // The wasm pipeline, once per build.
    for (index, wasm) in plugins.iter().enumerate() {
        let config = bench_config(
            &workdir.path().join(format!("wasm-{index}")),
            wasm,
            server.addr().port(),
            &args,
        )?;
        let backend = crate::commands::open_backend(&config).await?;
        let poller = wasm_poller(&config, &backend).await?;
        results
            .extend(pipeline_rounds(&label(wasm), &config, backend, poller, &urls, &args).await?);
    }

    if let Some(server_url) = &args.postgres {
        let schema = tsunagi::backends::postgres::testing::TestSchema::create_on(server_url).await;
        let mut config = bench_config(
            &workdir.path().join("postgres"),
            &plugin,
            server.addr().port(),
            &args,
        )?;
        config.host.database = schema.url();
        let backend = crate::commands::open_backend(&config).await?;
        let poller = wasm_poller(&config, &backend).await?;
        let name = format!("{} on postgres", label(&plugin));
        results.extend(pipeline_rounds(&name, &config, backend, poller, &urls, &args).await?);
    }

    if args.winch {
        let mut config = bench_config(
            &workdir.path().join("winch"),
            &plugin,
            server.addr().port(),
            &args,
        )?;
        config.host.compiler = tsunagi::config::Compiler::Winch;
        let backend = crate::commands::open_backend(&config).await?;
        let poller = wasm_poller(&config, &backend).await?;
        let name = format!("{} on winch", label(&plugin));
        results.extend(pipeline_rounds(&name, &config, backend, poller, &urls, &args).await?);
    }

    if !args.skip_native {
        let config = bench_config(
            &workdir.path().join("native"),
            &plugin,
            server.addr().port(),
            &args,
        )?;
        let backend = crate::commands::open_backend(&config).await?;
        let poller: Arc<dyn TargetPoller> = Arc::new(NativeRssPoller {
            client: rss_client(&config, args.concurrency)?,
        });
        results
            .extend(pipeline_rounds("native parse", &config, backend, poller, &urls, &args).await?);
    }

    if !args.skip_fetch {
        let config = bench_config(
            &workdir.path().join("fetch"),
            &plugin,
            server.addr().port(),
            &args,
        )?;
        let client = rss_client(&config, args.concurrency)?;
        super::peak_rss::reset();
        results.push(fetch_only(client, &urls, args.concurrency).await);
    }
    server.shutdown().await;

    println!();
    println!("| part | feeds | errors | new items | 304s | seconds | feeds/s | peak RSS MB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in &results {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.0} | {} |",
            m.name,
            m.feeds,
            m.errors,
            m.items_new,
            m.not_modified,
            m.elapsed.as_secs_f64(),
            m.rate(),
            m.peak_rss_mb
                .map_or("n/a".to_string(), |mb| format!("{mb:.0}"))
        );
    }
    let rate = |name: &str| {
        results
            .iter()
            .find(|m| m.name == name)
            .map(Measurement::rate)
    };
    println!();
    let first = label(&plugins[0]);
    for wasm in &plugins {
        let name = label(wasm);
        if let (Some(wasm), Some(native)) = (
            rate(&format!("{name} round 1")),
            rate("native parse round 1"),
        ) {
            println!(
                "{name} / native-parse, round 1: {:.0}%",
                100.0 * wasm / native
            );
        }
        if name != first {
            for round in ["round 1", "round 2"] {
                if let (Some(this), Some(base)) = (
                    rate(&format!("{name} {round}")),
                    rate(&format!("{first} {round}")),
                ) {
                    println!("{name} / {first}, {round}: {:.2}×", this / base);
                }
            }
        }
    }
    if args.postgres.is_some() {
        for round in ["round 1", "round 2"] {
            if let (Some(postgres), Some(sqlite)) = (
                rate(&format!("{first} on postgres {round}")),
                rate(&format!("{first} {round}")),
            ) {
                println!("postgres / sqlite, {round}: {:.2}×", postgres / sqlite);
            }
        }
    }
    if args.winch {
        for round in ["round 1", "round 2"] {
            if let (Some(winch), Some(cranelift)) = (
                rate(&format!("{first} on winch {round}")),
                rate(&format!("{first} {round}")),
            ) {
                println!("winch / cranelift, {round}: {:.2}×", winch / cranelift);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `rss` connector of `config` as a real host builds it, on `backend`.
async fn wasm_poller(
    config: &Config,
    backend: &Arc<dyn Backend>,
) -> anyhow::Result<Arc<dyn TargetPoller>> {
    let engine = Engine::new(&engine_settings(config))?;
    let parts = HostParts::alone(config, backend.clone(), Arc::new(SystemClock))?;
    let connector =
        build_connector(&engine, config, "rss", &config.connectors["rss"], &parts).await?;
    // Measured on the code it settles on, not on the quick code it may start with.
    if connector.plugin().started_on() == tsunagi::runtime::Tier::Quick {
        let _ = connector.plugin().optimized().await;
    }
    Ok(Arc::new(connector))
}

fn bench_config(
    dir: &std::path::Path,
    plugin: &std::path::Path,
    port: u16,
    args: &RssBenchArgs,
) -> anyhow::Result<Config> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("bench.toml");
    std::fs::write(
        &path,
        super::demo::crawl_config(plugin, port, args.concurrency, args.claim_batch),
    )?;
    Ok(Config::load(&path)?)
}

/// Adds the targets, then runs a full round and a 304 round through [`PollPipeline`].
async fn pipeline_rounds(
    name: &str,
    config: &Config,
    backend: Arc<dyn Backend>,
    poller: Arc<dyn TargetPoller>,
    urls: &[String],
    args: &RssBenchArgs,
) -> anyhow::Result<Vec<Measurement>> {
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let added = Instant::now();
    for chunk in urls.chunks(10_000) {
        backend.add_targets("rss", chunk, clock.now_ms()).await?;
    }
    println!(
        "{name}: {} targets added in {:.1}s",
        urls.len(),
        added.elapsed().as_secs_f64()
    );
    let settings = &config.connectors["rss"];
    let mut out = Vec::new();
    for round in 1..=2 {
        super::peak_rss::reset();
        let stats = Arc::new(ConnectorStats::default());
        let pipeline = Arc::new(PollPipeline {
            connector: "rss".to_string(),
            backend: backend.clone(),
            poller: poller.clone(),
            policy: PollPolicy::from(settings),
            clock: Arc::new(clock.clone()),
            worker_id: tsunagi::topology::unique_worker_id(),
            lease: config.host.claim_lease,
            claim_batch: args.claim_batch,
            idle_poll: config.host.idle_poll,
            concurrency: args.concurrency,
            deliver_to: Vec::new(),
            stats: stats.clone(),
            filters: Arc::new(tsunagi::filter::Filters::default()),
            origin: None,
            websub: None,
            pause: Default::default(),
        });
        let started = Instant::now();
        let progress = super::round_progress::start(
            &format!("{name} round {round}"),
            urls.len() as u64,
            stats.clone(),
        );
        pipeline
            .run(
                CancellationToken::new(),
                RunMode::UntilIdle,
                Duration::from_secs(30),
            )
            .await;
        let elapsed = started.elapsed();
        progress.finish(elapsed);
        let s: StatsSnapshot = stats.snapshot();
        let m = Measurement {
            name: format!("{name} round {round}"),
            feeds: s.polls(),
            errors: s.polls_failed,
            items_new: s.items_new,
            not_modified: s.not_modified,
            elapsed,
            peak_rss_mb: super::peak_rss::mib(),
        };
        println!(
            "{}: {:.0} feeds/s ({} feeds in {:.1}s)",
            m.name,
            m.rate(),
            m.feeds,
            elapsed.as_secs_f64()
        );
        out.push(m);
        clock.advance(settings.schedule.max_interval * 2);
    }
    Ok(out)
}

/// GETs every URL with `concurrency` requests in flight; reads and drops the bodies.
async fn fetch_only(client: reqwest::Client, urls: &[String], concurrency: usize) -> Measurement {
    use futures::StreamExt;
    let started = Instant::now();
    let results: Vec<bool> = futures::stream::iter(urls.iter().cloned())
        .map(|url| {
            let client = client.clone();
            async move {
                match client.get(&url).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let errors = results.iter().filter(|ok| !**ok).count() as u64;
    let m = Measurement {
        name: "fetch only".to_string(),
        feeds: results.len() as u64,
        errors,
        items_new: 0,
        not_modified: 0,
        elapsed: started.elapsed(),
        peak_rss_mb: super::peak_rss::mib(),
    };
    println!("fetch only: {:.0} feeds/s", m.rate());
    m
}

/// The RSS connector's logic, natively in the host: the same conditional GET and the same
/// feed-to-item mapping as the component, minus the sandbox.
struct NativeRssPoller {
    client: reqwest::Client,
}

#[async_trait]
impl TargetPoller for NativeRssPoller {
    async fn poll(
        &self,
        call: TargetCall,
        etag: Option<String>,
        last_modified: Option<String>,
        _cursor: Option<String>,
    ) -> CallReport {
        let started = Instant::now();
        let result = self.fetch(&call.target, etag, last_modified).await;
        CallReport {
            result,
            state_writes: BTreeMap::new(),
            exchanges: Vec::new(),
            elapsed: started.elapsed(),
            log: Default::default(),
            hubs: Vec::new(),
        }
    }
}

impl NativeRssPoller {
    async fn fetch(
        &self,
        url: &str,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Result<PollResult, CallError> {
        let transient = |message: String| CallError::Connector {
            kind: FailureKind::Transient,
            message,
        };
        let mut request = self
            .client
            .get(url)
            .header("accept", tsunagi_rss_feed::ACCEPT)
            .header("user-agent", tsunagi_rss_feed::USER_AGENT);
        if let Some(etag) = &etag {
            request = request.header("if-none-match", etag);
        }
        if let Some(last_modified) = &last_modified {
            request = request.header("if-modified-since", last_modified);
        }
        let response = request.send().await.map_err(|e| transient(e.to_string()))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let new_etag = header("etag");
        let new_last_modified = header("last-modified");
        let content_type = header("content-type");
        if response.status().as_u16() == 304 {
            return Ok(PollResult {
                not_modified: true,
                etag: new_etag.or(etag),
                last_modified: new_last_modified.or(last_modified),
                ..PollResult::default()
            });
        }
        if !response.status().is_success() {
            return Err(transient(format!("HTTP {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transient(e.to_string()))?;
        let parsed = tsunagi_rss_feed::parse_response(&body, url, content_type.as_deref())
            .map_err(|message| CallError::Connector {
                kind: FailureKind::BadResponse,
                message,
            })?;
        Ok(PollResult {
            not_modified: false,
            items: parsed
                .items
                .into_iter()
                .map(|item| Item {
                    id: item.id,
                    title: item.title,
                    link: item.link,
                    published: item.published,
                    updated: item.updated,
                    authors: item.authors,
                    summary: item.summary,
                    content: item.content,
                    categories: item.categories,
                    origin: None,
                })
                .collect(),
            etag: new_etag,
            last_modified: new_last_modified,
            cursor: None,
            refresh_after: parsed
                .refresh_after_seconds
                .map(|s| Duration::from_secs(u64::from(s))),
        })
    }
}
