//! `tsunagi bench memory`: what a hostile plugin can make the host hold, and what it costs the
//! connectors beside it.
//!
//! One run, two parts, each a real host (pipelines, SQLite) on a fresh database:
//!
//! 1. a *bystander* connector alone: the `hostile` plugin in `tagged` mode polling loopback
//!    feeds about once a second each (an HTTP GET and one new item per poll);
//! 2. the same bystander beside a *hostile* connector running `--hostile-calls` calls at once of
//!    the `hostile` plugin in `worst` mode (by default a wave of 64 such calls every 10 s; with
//!    `--hostile-targets 2048 --hostile-interval 1`, without pause): each call fills its memory, keeps the most responses
//!    in flight its limits allow (each as large as `response_size`, read to the end), sends a
//!    request body of `request_size`, rewrites state up to its target's total, logs the most
//!    and longest lines, and returns the most items bytes it may.
//!
//! Each part reports the bystander's polls per second and the process's peak resident memory
//! (the kernel's high-water mark, reset at the start of the part), and the second part the
//! bound its limits give: part 1's peak plus `hostile-calls` × the per-call bound.

use anyhow::Context;
use bytesize::ByteSize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::config::{Config, LimitSettings};
use tsunagi::pipeline::RunMode;
use tsunagi::runtime::CallLimits;
use tsunagi::topology::{Topology, TopologyOptions};
use tsunagi_fake_upstream::{ApiServer, ApiServerConfig, FeedServer, FeedServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench memory
  tsunagi bench memory --hostile-targets 2048 --hostile-interval 1
  tsunagi bench memory --seconds 10 --set items=10")]
pub struct MemoryBenchArgs {
    /// Calls of the hostile connector running at once (its `concurrency`).
    #[arg(long, default_value_t = 64)]
    pub hostile_calls: usize,
    /// Targets of the hostile connector. As many as its calls: a wave of that many worst calls
    /// every `--hostile-interval`; many more keep its calls running without pause.
    #[arg(long, default_value_t = 64)]
    pub hostile_targets: usize,
    /// How often each hostile target is polled (its `min_interval`; `max_interval` is twice).
    #[arg(long, default_value_t = 10)]
    pub hostile_interval: u64,
    /// Length of each part.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Feeds of the bystander, each polled about once a second.
    #[arg(long, default_value_t = 500)]
    pub feeds: u32,
    /// Calls of the bystander connector in flight at once.
    #[arg(long, default_value_t = 16)]
    pub bystander_concurrency: usize,
    /// The `hostile` component, run by both connectors (`tagged` and `worst` modes).
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/plugin/tsunagi_plugin_hostile.wasm"
    )]
    pub plugin: PathBuf,
    /// Overrides one of the hostile plugin's config values (`items=10`), to see what each
    /// part of the worst costs; may repeat.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// The hostile connector's limits: small enough that 64 calls of the worst fit this machine.
const HOSTILE_LIMITS: &str = r#"call_timeout = "30s"
memory = "16 MiB"
response_size = "256 KiB"
request_size = "256 KiB"
requests_in_flight = 4
state_value_size = "64 KiB"
state_per_target = "256 KiB"
log_line_size = "4 KiB"
log_lines_per_call = 200
items_per_call = 1000
items_size = "2 MiB"
"#;

/// The worst the hostile plugin does, each within the limits above.
const HOSTILE_WORST: &str = r#"mode = "worst"
balloon-mib = "8"
fanout = "4"
body-bytes = "262144"
state-keys = "3"
state-value-bytes = "60000"
state-fixed = "true"
log-lines = "200"
log-bytes = "4096"
items = "900"
item-bytes = "2000"
"#;

struct Part {
    name: &'static str,
    bystander_ok: u64,
    bystander_failed: u64,
    hostile_ok: u64,
    hostile_failed: u64,
    hostile_error: Option<String>,
    peak_rss_mb: f64,
    seconds: f64,
}

impl Part {
    fn bystander_per_second(&self) -> f64 {
        self.bystander_ok as f64 / self.seconds
    }
}

pub async fn memory(args: MemoryBenchArgs) -> anyhow::Result<ExitCode> {
    let plugin = std::fs::canonicalize(&args.plugin).with_context(|| {
        format!(
            "{} not found — run scripts/build-plugins",
            args.plugin.display()
        )
    })?;
    let feeds = FeedServer::start_in_thread(
        FeedServerConfig {
            feeds: args.feeds,
            ..FeedServerConfig::default()
        },
        1,
    )?;
    // On its own thread and runtime, so serving the hostile load does not take the host's
    // executor threads.
    let api = super::server_thread::start("fake-api", || async {
        let server = ApiServer::start(ApiServerConfig::default()).await?;
        Ok((server.addr(), server))
    })?;
    let limits = hostile_limits()?;
    let per_call = per_call_bound(&limits);
    println!(
        "tsunagi bench memory: bystander {} feeds (concurrency {}), hostile {} calls at once \
         (worst mode) over {} targets polled every {}s, {}s per part",
        args.feeds,
        args.bystander_concurrency,
        args.hostile_calls,
        args.hostile_targets,
        args.hostile_interval,
        args.seconds
    );
    println!(
        "per-call bound {:.1} MiB = memory {} + requests_in_flight {} × (response_size {} + \
         request_size {}) + transfer cap {} + 2 × state_per_target {} + log_line_size {} + \
         fiber stack 2 MiB + 3 × (items_size + state_per_target) waiting for the commit",
        mib(per_call),
        limits.memory.display().iec(),
        limits.requests_in_flight,
        limits.response_size.display().iec(),
        limits.request_size.display().iec(),
        ByteSize::b(CallLimits::from_settings(&limits).transfer_cap() as u64)
            .display()
            .iec(),
        limits.state_per_target.display().iec(),
        limits.log_line_size.display().iec(),
    );
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-memory-bench-")
        .tempdir()?;
    let mut parts = Vec::new();
    for (name, hostile) in [
        ("bystander alone", false),
        ("beside the hostile load", true),
    ] {
        let dir = workdir
            .path()
            .join(if hostile { "hostile" } else { "alone" });
        std::fs::create_dir_all(&dir)?;
        let part = run_part(name, hostile, &dir, &plugin, &feeds, api.started, &args).await?;
        parts.push(part);
    }
    feeds.shutdown().await;
    drop(api);

    let baseline = parts[0].peak_rss_mb;
    let bound = baseline + args.hostile_calls as f64 * mib(per_call);
    println!();
    println!(
        "| part | bystander polls/s | bystander failed | hostile calls ok | hostile failed | peak RSS MB |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for part in &parts {
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.0} |",
            part.name,
            part.bystander_per_second(),
            part.bystander_failed,
            part.hostile_ok,
            part.hostile_failed,
            part.peak_rss_mb
        );
    }
    if let Some(error) = parts.iter().find_map(|p| p.hostile_error.as_ref()) {
        println!("\nfirst hostile failure: {error}");
    }
    let ratio = parts[1].bystander_per_second() / parts[0].bystander_per_second().max(1e-9);
    println!();
    println!(
        "peak RSS beside the hostile load: {:.0} MB; bound {:.0} MB = part 1's peak {:.0} + {} × {:.1} MiB",
        parts[1].peak_rss_mb,
        bound,
        baseline,
        args.hostile_calls,
        mib(per_call)
    );
    println!(
        "bystander throughput beside the hostile load / alone: {:.2} ({:+.0}%)",
        ratio,
        (ratio - 1.0) * 100.0
    );
    Ok(ExitCode::SUCCESS)
}

/// What one hostile call slot may make the host hold, by its limits (see
/// `docs/BENCHMARKS.md`): the running call (its memory, responses and request bodies in
/// flight, its lifted result, its target's state and writes, a log line, its fiber stack), and
/// the finished calls waiting for the store's group commit, two per slot (the pipeline's
/// `commit_slots`), each with its items and state writes, plus their copy in the batch.
fn per_call_bound(limits: &LimitSettings) -> u64 {
    let transfer = CallLimits::from_settings(limits).transfer_cap() as u64;
    let result = limits.items_size.as_u64() + limits.state_per_target.as_u64();
    limits.memory.as_u64()
        + u64::from(limits.requests_in_flight)
            * (limits.response_size.as_u64() + limits.request_size.as_u64())
        + transfer
        + 2 * limits.state_per_target.as_u64()
        + limits.log_line_size.as_u64()
        + (2 << 20)
        + 3 * result
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The hostile plugin's config values: [`HOSTILE_WORST`] with the overrides applied.
fn hostile_config(overrides: &[String]) -> anyhow::Result<String> {
    let mut values: Vec<(String, String)> = HOSTILE_WORST
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, value)| (key.to_string(), value.trim_matches('"').to_string()))
        .collect();
    for entry in overrides {
        let (key, value) = entry
            .split_once('=')
            .with_context(|| format!("--set {entry:?}: expected KEY=VALUE"))?;
        match values.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => values.push((key.to_string(), value.to_string())),
        }
    }
    Ok(values
        .iter()
        .map(|(key, value)| format!("{key} = {value:?}\n"))
        .collect())
}

/// The hostile limits as the config reads them.
fn hostile_limits() -> anyhow::Result<LimitSettings> {
    Ok(toml::from_str(HOSTILE_LIMITS)?)
}

#[allow(clippy::too_many_arguments)]
async fn run_part(
    name: &'static str,
    hostile: bool,
    dir: &Path,
    plugin: &Path,
    feeds: &FeedServer,
    api: std::net::SocketAddr,
    args: &MemoryBenchArgs,
) -> anyhow::Result<Part> {
    let mut text = format!(
        r#"[host]
database = "bench.db"
compile_cache = "compile-cache"
watch = false
idle_poll = "20ms"

[connectors.bystander]
plugin = "{plugin}"
role = "poller"
concurrency = {concurrency}

[connectors.bystander.schedule]
min_interval = "1s"
max_interval = "2s"

[connectors.bystander.config]
mode = "tagged"

[[connectors.bystander.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
        plugin = plugin.display(),
        concurrency = args.bystander_concurrency,
        port = feeds.addr().port()
    );
    if hostile {
        text += &format!(
            r#"
[connectors.hostile]
plugin = "{plugin}"
role = "poller"
concurrency = {calls}

[connectors.hostile.schedule]
min_interval = "{interval}s"
max_interval = "{max_interval}s"

[connectors.hostile.config]
{worst}
[connectors.hostile.limits]
{HOSTILE_LIMITS}
[[connectors.hostile.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
            plugin = plugin.display(),
            calls = args.hostile_calls,
            port = api.port(),
            worst = hostile_config(&args.overrides)?,
            interval = args.hostile_interval.max(1),
            max_interval = 2 * args.hostile_interval.max(1),
        );
    }
    let config_path = dir.join("bench.toml");
    std::fs::write(&config_path, text)?;
    let config = Config::load(&config_path)?;
    let backend = crate::commands::open_backend(&config).await?;
    let now = SystemClock.now_ms();
    for chunk in feeds.feed_urls().chunks(10_000) {
        backend.add_targets("bystander", chunk, now).await?;
    }
    if hostile {
        let size = hostile_limits()?.response_size.as_u64();
        let targets: Vec<String> = (0..args.hostile_targets)
            .map(|n| format!("http://{api}/bytes/{size}/h{n}"))
            .collect();
        backend.add_targets("hostile", &targets, now).await?;
    }
    let options = TopologyOptions {
        clock: Arc::new(SystemClock),
        mode: RunMode::Forever,
        ..TopologyOptions::default()
    };
    let topology = Topology::start(config, backend, options).await?;
    super::peak_rss::reset();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_mb = super::peak_rss::mib().unwrap_or(f64::NAN);
    topology.shutdown().await;
    let stats = |name: &str| {
        topology
            .connectors()
            .get(name)
            .map(|connector| (connector.stats.snapshot(), connector.stats.recent_errors()))
    };
    let (bystander, _) = stats("bystander").context("no bystander connector")?;
    let (hostile_counts, hostile_errors) = stats("hostile").unwrap_or_default();
    println!(
        "{name}: bystander {} polls ok ({:.0}/s), hostile {} ok / {} failed, peak RSS {peak_rss_mb:.0} MB",
        bystander.polls_ok,
        bystander.polls_ok as f64 / seconds,
        hostile_counts.polls_ok,
        hostile_counts.polls_failed
    );
    Ok(Part {
        name,
        bystander_ok: bystander.polls_ok,
        bystander_failed: bystander.polls_failed,
        hostile_ok: hostile_counts.polls_ok,
        hostile_failed: hostile_counts.polls_failed,
        hostile_error: hostile_errors.first().map(|e| e.error.clone()),
        peak_rss_mb,
        seconds,
    })
}
