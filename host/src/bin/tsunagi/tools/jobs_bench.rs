//! `tsunagi bench jobs`: jobs per second through the handler pipeline, and the host's own
//! overhead per job.
//!
//! Against a loopback upstream that answers every post at once (its own thread and runtime),
//! each run measures three things on a fresh SQLite database, `--runs` times, and reports the
//! medians side by side:
//!
//! - **pipeline**: `--jobs` jobs enqueued, then a real host (`Topology`, `RunMode::UntilIdle`)
//!   runs `plugins/test-handler` over them: lease, heartbeat, call, guarded commit;
//! - **plugin only**: the same number of calls straight into the connector's instance pool at
//!   the same concurrency, no queue (what the sandbox and the HTTP exchange cost);
//! - **queue only**: the same pipeline with a native handler that answers at once, no plugin
//!   (what leasing and committing cost).
//!
//! The host's overhead per job is the pipeline's time per job minus the plugin-only time per
//! job: what the queue, the leases and the commits add to each call.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::backends::{Backend, NewJob};
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::config::Config;
use tsunagi::pipeline::{HandlePipeline, JobHandler, RunMode};
use tsunagi::runtime::{CallReport, Earlier, HandleRequest, HandleResult, LogTally, TargetCall};
use tsunagi::scheduler::RetryPolicy;
use tsunagi::topology::{Topology, TopologyOptions};

#[derive(Debug, clap::Args)]
pub struct JobsBenchArgs {
    /// Jobs per run.
    #[arg(long, default_value_t = 5_000)]
    pub jobs: u32,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Runs; the table shows their medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/plugin/tsunagi_plugin_test_handler.wasm"
    )]
    pub plugin: PathBuf,
}

struct Run {
    pipeline: Duration,
    plugin_only: Duration,
    queue_only: Duration,
}

pub async fn jobs(args: JobsBenchArgs) -> anyhow::Result<ExitCode> {
    let plugin = std::fs::canonicalize(&args.plugin).with_context(|| {
        format!(
            "{} not found — run scripts/build-plugins",
            args.plugin.display()
        )
    })?;
    let upstream = start_upstream()?;
    println!(
        "tsunagi bench jobs: {} jobs per run, concurrency {}, {} run(s), upstream http://{upstream} answering at once",
        args.jobs, args.concurrency, args.runs
    );
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-jobs-bench-")
        .tempdir()?;
    let mut runs = Vec::new();
    for run in 0..args.runs.max(1) {
        let dir = workdir.path().join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        let measured = one_run(&dir, &plugin, upstream, &args).await?;
        println!(
            "run {}: pipeline {:.0} jobs/s, plugin only {:.0} calls/s, queue only {:.0} jobs/s",
            run + 1,
            per_second(args.jobs, measured.pipeline),
            per_second(args.jobs, measured.plugin_only),
            per_second(args.jobs, measured.queue_only)
        );
        runs.push(measured);
    }
    let median = |pick: fn(&Run) -> Duration| {
        let mut values: Vec<Duration> = runs.iter().map(pick).collect();
        values.sort();
        values[values.len() / 2]
    };
    let pipeline = median(|r| r.pipeline);
    let plugin_only = median(|r| r.plugin_only);
    let queue_only = median(|r| r.queue_only);
    let per_job_us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(args.jobs.max(1));
    println!();
    println!(
        "| measured (median of {}) | jobs/s | µs per job (wall / jobs) |",
        runs.len()
    );
    println!("| --- | ---: | ---: |");
    for (name, took) in [
        ("pipeline: queue + plugin + upstream", pipeline),
        ("plugin only: no queue", plugin_only),
        ("queue only: no plugin", queue_only),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} |",
            per_second(args.jobs, took),
            per_job_us(took)
        );
    }
    println!();
    println!(
        "host overhead per job (pipeline − plugin only): {:.1} µs of wall time at concurrency {}",
        per_job_us(pipeline) - per_job_us(plugin_only),
        args.concurrency
    );
    Ok(ExitCode::SUCCESS)
}

fn per_second(jobs: u32, took: Duration) -> f64 {
    f64::from(jobs) / took.as_secs_f64().max(1e-9)
}

async fn one_run(
    dir: &Path,
    plugin: &Path,
    upstream: SocketAddr,
    args: &JobsBenchArgs,
) -> anyhow::Result<Run> {
    let config_path = dir.join("bench.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"[host]
database = "bench.db"
compile_cache = "compile-cache"
watch = false
idle_poll = "20ms"

[connectors.posts]
plugin = "{plugin}"
role = "handler"
concurrency = {concurrency}

[connectors.posts.config]
upstream = "http://{upstream}"

[[connectors.posts.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
            plugin = plugin.display(),
            concurrency = args.concurrency,
            port = upstream.port(),
        ),
    )?;
    let config = Config::load(&config_path)?;
    let backend = tsunagi::backends::open(&config.database_url()).await?;
    enqueue(&backend, "posts", args.jobs).await?;
    let options = TopologyOptions {
        mode: RunMode::UntilIdle,
        ..TopologyOptions::default()
    };
    let started = Instant::now();
    let topology = Topology::start(config.clone(), backend.clone(), options).await?;
    // Loading compiles the plugin (cached after the first run); time the jobs, not that.
    let loaded = started.elapsed();
    topology.until_idle().await;
    let pipeline = started.elapsed().saturating_sub(loaded);
    let counts = backend.queue_counts("posts").await?;
    anyhow::ensure!(
        counts.done == u64::from(args.jobs),
        "the pipeline finished {} of {} jobs: {counts:?}",
        counts.done,
        args.jobs
    );

    let connector = topology
        .connectors()
        .get("posts")
        .context("the connector is loaded")?;
    let handler: Arc<dyn JobHandler> = connector.versions.clone();
    let started = Instant::now();
    call_directly(handler, args.jobs, args.concurrency).await?;
    let plugin_only = started.elapsed();
    topology.shutdown().await;

    enqueue(&backend, "noop", args.jobs).await?;
    let pipeline_without_plugin = Arc::new(HandlePipeline {
        connector: "noop".into(),
        queue: "noop".into(),
        backend: backend.clone(),
        handler: Arc::new(AnswersAtOnce),
        retry: RetryPolicy::from(&tsunagi::config::RetrySettings::default()),
        clock: Arc::new(SystemClock),
        worker_id: "bench".into(),
        lease: config.host.claim_lease,
        claim_batch: config.host.claim_batch,
        idle_poll: config.host.idle_poll,
        concurrency: args.concurrency,
        stats: Arc::default(),
    });
    let started = Instant::now();
    pipeline_without_plugin
        .run(
            tokio_util::sync::CancellationToken::new(),
            RunMode::UntilIdle,
            Duration::from_secs(10),
        )
        .await;
    let queue_only = started.elapsed();
    Ok(Run {
        pipeline,
        plugin_only,
        queue_only,
    })
}

async fn enqueue(backend: &Arc<dyn Backend>, queue: &str, jobs: u32) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    for n in 0..jobs {
        let job = NewJob {
            kind: "post".into(),
            ..NewJob::new(queue, format!("{{\"n\":{n}}}"), 5, now)
        };
        backend.enqueue_job(job).await?;
    }
    Ok(())
}

/// `jobs` calls into the plugin, `concurrency` at a time, as the pipeline would make them.
async fn call_directly(
    handler: Arc<dyn JobHandler>,
    jobs: u32,
    concurrency: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let handler = handler.clone();
        let next = next.clone();
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= jobs {
                    return Ok::<(), anyhow::Error>(());
                }
                let id = format!("direct-{n}");
                let call = TargetCall::detached(&format!("job:{id}"));
                let request = HandleRequest {
                    id,
                    kind: "post".into(),
                    payload: format!("{{\"n\":{n}}}"),
                    attempt: 1,
                    target: None,
                    earlier: Earlier::None,
                };
                let report = handler.handle(call, request).await;
                report
                    .result
                    .map_err(|e| anyhow::anyhow!("direct call {n} failed: {e}"))?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// A native handler that is done at once: the pipeline's own cost, without a plugin.
struct AnswersAtOnce;

#[async_trait::async_trait]
impl JobHandler for AnswersAtOnce {
    async fn handle(&self, _call: TargetCall, _job: HandleRequest) -> CallReport<HandleResult> {
        CallReport {
            result: Ok(HandleResult::default()),
            state_writes: Default::default(),
            exchanges: Vec::new(),
            elapsed: Duration::ZERO,
            log: LogTally::default(),
        }
    }
}

/// A loopback upstream that answers every post with 200 at once, on its own thread.
fn start_upstream() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("bench-upstream".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("bench upstream: {error}");
                    return;
                }
            };
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/effects/{id}",
                    axum::routing::post(|| async { "ref" }).get(|| async { "ref" }),
                );
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        let _ = axum::serve(listener, app).await;
                    }
                    Err(error) => eprintln!("bench upstream: {error}"),
                }
            });
        })?;
    Ok(addr)
}
