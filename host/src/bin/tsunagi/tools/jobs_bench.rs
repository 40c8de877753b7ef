//! `tsunagi bench jobs`: jobs per second through the handler pipeline, the host's own overhead
//! per job, and the peak resident memory of each part.
//!
//! Against an upstream that answers every post at once (its own thread and runtime): for
//! `--connector test-handler` a loopback server answering 200, for `--connector x-write` the
//! fake X API verifying each post's OAuth 1.0a signature, with `--users` linked users whose
//! tokens the host holds and budgets per app and per user on the rule, as in production. Each
//! run measures three things on a fresh SQLite database, `--runs` times, and reports the
//! medians side by side:
//!
//! - **pipeline**: `--jobs` jobs enqueued, then a real host (`Topology`, `RunMode::UntilIdle`)
//!   runs the connector over them: lease, heartbeat, call, guarded commit;
//! - **plugin only**: the same number of calls straight into the connector's instance pool at
//!   the same concurrency, no queue (what the sandbox and the HTTP exchange cost);
//! - **queue only**: the same pipeline with a native handler that answers at once, no plugin
//!   (what leasing and committing cost).
//!
//! The host's overhead per job is the pipeline's time per job minus the plugin-only time per
//! job: what the queue, the leases and the commits add to each call.

use super::server_thread::ServerThread;
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
use tsunagi_fake_upstream::x::{FixtureSpec, Scopes, XAuth, XCounters, XServer, XServerConfig};

/// The connector the jobs go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchConnector {
    /// `plugins/test-handler`: one POST to a loopback server answering 200.
    TestHandler,
    /// `plugins/x-write`: `POST /2/tweets` to the fake X API, signed per user.
    XWrite,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench jobs
  tsunagi bench jobs --jobs 2000 --runs 3
  tsunagi bench jobs --connector x-write --jobs 2000 --users 500")]
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
    /// The handler the jobs go through.
    #[arg(long, value_enum, default_value_t = BenchConnector::TestHandler)]
    pub connector: BenchConnector,
    /// Linked X users the x-write posts are spread over.
    #[arg(long, default_value_t = 100)]
    pub users: u32,
    /// The connector's component (default: the one `scripts/build-plugins` builds).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

/// One part's time and the process's peak resident memory during it.
#[derive(Clone, Copy)]
struct Part {
    took: Duration,
    peak_rss_mib: Option<f64>,
}

struct Run {
    pipeline: Part,
    plugin_only: Part,
    queue_only: Part,
}

/// The consumer of the fake X API the bench posts as. Not secrets: a throwaway app of a fake.
const BENCH_CONSUMER_KEY: &str = "bench-consumer-key";
const BENCH_CONSUMER_SECRET: &str = "bench-consumer-secret";
const BENCH_TOKEN_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// What the chosen connector posts to, and for whom.
struct Workload {
    connector: BenchConnector,
    /// The upstream's address (and, for x-write, the fake X API's counters); dropping it
    /// stops the server.
    upstream: ServerThread<(SocketAddr, Option<XCounters>)>,
    /// The linked users (targets) the jobs act for; none for the test handler.
    users: Vec<String>,
}

impl Workload {
    fn start(args: &JobsBenchArgs) -> anyhow::Result<Self> {
        match args.connector {
            BenchConnector::TestHandler => Ok(Self {
                connector: args.connector,
                upstream: start_upstream()?,
                users: Vec::new(),
            }),
            BenchConnector::XWrite => {
                let count = args.users.max(1);
                let users: Vec<String> = (0..count)
                    .map(|index| XServer::user_id(index).to_string())
                    .collect();
                let config = XServerConfig {
                    fixture: FixtureSpec {
                        users: count,
                        posts_per_user: 1,
                        posts_override: Vec::new(),
                    },
                    auth: XAuth::OAuth1 {
                        consumer_key: BENCH_CONSUMER_KEY.into(),
                        consumer_secret: BENCH_CONSUMER_SECRET.into(),
                    },
                    // Answering at once: the bench measures the host, not X's limits.
                    rate_limit: u32::MAX / 2,
                    ..XServerConfig::default()
                };
                let upstream = super::server_thread::start("fake-x-api", move || async move {
                    let server = XServer::start(config).await?;
                    for index in 0..count {
                        let user = XServer::user_id(index);
                        let (token, secret) = bench_token(user);
                        server.link_oauth1_user(user, &token, &secret, Scopes::READ_WRITE);
                    }
                    Ok(((server.addr(), Some(server.counters())), server))
                })?;
                Ok(Self {
                    connector: args.connector,
                    upstream,
                    users,
                })
            }
        }
    }

    fn default_plugin(&self) -> &'static str {
        match self.connector {
            BenchConnector::TestHandler => {
                "target/wasm32-wasip2/plugin/tsunagi_plugin_test_handler.wasm"
            }
            BenchConnector::XWrite => "target/wasm32-wasip2/plugin/tsunagi_plugin_x_write.wasm",
        }
    }

    /// The host's config for the `posts` connector, written into `dir` with its secrets.
    fn config_text(&self, dir: &Path, plugin: &Path, concurrency: usize) -> anyhow::Result<String> {
        let (upstream, _) = self.upstream.started;
        let port = upstream.port();
        let plugin = plugin.display();
        Ok(match self.connector {
            BenchConnector::TestHandler => format!(
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
            ),
            BenchConnector::XWrite => {
                for (file, value) in [
                    ("consumer_key", BENCH_CONSUMER_KEY),
                    ("consumer_secret", BENCH_CONSUMER_SECRET),
                    ("token_key", BENCH_TOKEN_KEY),
                ] {
                    std::fs::write(dir.join(file), value)?;
                }
                format!(
                    r#"[host]
database = "bench.db"
compile_cache = "compile-cache"
watch = false
idle_poll = "20ms"
token_key = {{ file = "token_key" }}

[credentials.x-app]
kind = "oauth1"
consumer_key = {{ file = "consumer_key" }}
consumer_secret = {{ file = "consumer_secret" }}

# As in production, but wide enough never to hold a post back: their cost is measured, not
# their smoothing.
[budgets.x-app-posts]
rate = "100000/s"
burst = 1000

[budgets.x-user-posts]
rate = "10000/s"
burst = 100
per = "target"

[connectors.posts]
plugin = "{plugin}"
role = "handler"
concurrency = {concurrency}

[connectors.posts.config]
base_url = "http://{upstream}"

[[connectors.posts.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
credential = "x-app"
budget = ["x-app-posts", "x-user-posts"]
"#,
                )
            }
        })
    }

    /// Adds the users as targets of `connectors` and links their tokens (x-write).
    async fn link_users(
        &self,
        config: &Config,
        backend: &Arc<dyn Backend>,
        connectors: &[&str],
    ) -> anyhow::Result<()> {
        if self.users.is_empty() {
            return Ok(());
        }
        let now = SystemClock.now_ms();
        for connector in connectors {
            backend.add_targets(connector, &self.users, now).await?;
        }
        let credentials = tsunagi::credentials::Credentials::from_config(
            config,
            backend.clone(),
            Arc::new(SystemClock),
        )?;
        for user in &self.users {
            let (token, secret) = bench_token(user);
            let file = format!(
                r#"{{"token": "{token}", "token_secret": "{secret}", "scopes": ["read", "write"]}}"#
            );
            credentials.link("x-app", user, file.as_bytes()).await?;
        }
        Ok(())
    }

    /// Posts the fake X API has accepted so far (x-write only).
    fn posts_accepted(&self) -> Option<u64> {
        let (_, counters) = &self.upstream.started;
        counters
            .as_ref()
            .map(|counters| counters.stats().posts_accepted)
    }

    /// Job `n` of `part` in run `run`: its payload and the target it acts for. Texts are
    /// unique, as X refuses a duplicate post.
    fn job(&self, run: usize, part: &str, n: u32) -> (String, Option<String>) {
        if self.users.is_empty() {
            return (format!("{{\"n\":{n}}}"), None);
        }
        let user = &self.users[n as usize % self.users.len()];
        (
            serde_json::json!({"text": format!("bench {part} {run}-{n}")}).to_string(),
            Some(user.clone()),
        )
    }
}

/// User `user`'s token and token secret, the same in the fake and in the host.
fn bench_token(user: impl std::fmt::Display) -> (String, String) {
    (
        format!("bench-token-{user}"),
        format!("bench-token-secret-{user}"),
    )
}

pub async fn jobs(args: JobsBenchArgs) -> anyhow::Result<ExitCode> {
    let workload = Workload::start(&args)?;
    let wanted = args
        .plugin
        .clone()
        .unwrap_or_else(|| PathBuf::from(workload.default_plugin()));
    let plugin = std::fs::canonicalize(&wanted)
        .with_context(|| format!("{} not found — run scripts/build-plugins", wanted.display()))?;
    println!(
        "tsunagi bench jobs: {:?}, {} jobs per run, concurrency {}, {} run(s), {}upstream http://{} answering at once",
        args.connector,
        args.jobs,
        args.concurrency,
        args.runs,
        if workload.users.is_empty() {
            String::new()
        } else {
            format!("{} linked users, ", workload.users.len())
        },
        workload.upstream.started.0
    );
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-jobs-bench-")
        .tempdir()?;
    let mut runs = Vec::new();
    for run in 0..args.runs.max(1) {
        let dir = workdir.path().join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        let measured = one_run(&dir, &plugin, &workload, run, &args).await?;
        println!(
            "run {}: pipeline {:.0} jobs/s, plugin only {:.0} calls/s, queue only {:.0} jobs/s",
            run + 1,
            per_second(args.jobs, measured.pipeline.took),
            per_second(args.jobs, measured.plugin_only.took),
            per_second(args.jobs, measured.queue_only.took)
        );
        runs.push(measured);
    }
    let median = |pick: fn(&Run) -> Part| {
        let mut values: Vec<Duration> = runs.iter().map(|r| pick(r).took).collect();
        values.sort();
        let peak = runs
            .iter()
            .filter_map(|r| pick(r).peak_rss_mib)
            .fold(None, |most: Option<f64>, mib| {
                Some(most.map_or(mib, |m| m.max(mib)))
            });
        (values[values.len() / 2], peak)
    };
    let pipeline = median(|r| r.pipeline);
    let plugin_only = median(|r| r.plugin_only);
    let queue_only = median(|r| r.queue_only);
    let per_job_us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(args.jobs.max(1));
    println!();
    println!(
        "| measured (median of {}) | jobs/s | µs per job (wall / jobs) | peak RSS (highest run) |",
        runs.len()
    );
    println!("| --- | ---: | ---: | ---: |");
    for (name, (took, peak)) in [
        ("pipeline: queue + plugin + upstream", pipeline),
        ("plugin only: no queue", plugin_only),
        ("queue only: no plugin", queue_only),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {} |",
            per_second(args.jobs, took),
            per_job_us(took),
            super::peak_rss::cell(peak)
        );
    }
    let (pipeline, plugin_only) = (pipeline.0, plugin_only.0);
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
    workload: &Workload,
    run: usize,
    args: &JobsBenchArgs,
) -> anyhow::Result<Run> {
    let config_path = dir.join("bench.toml");
    std::fs::write(
        &config_path,
        workload.config_text(dir, plugin, args.concurrency)?,
    )?;
    let config = Config::load(&config_path)?;
    let backend = tsunagi::backends::open(&config.database_url()).await?;
    workload
        .link_users(&config, &backend, &["posts", "noop"])
        .await?;
    enqueue(&backend, workload, run, "posts", args.jobs).await?;
    let options = TopologyOptions {
        mode: RunMode::UntilIdle,
        ..TopologyOptions::default()
    };
    let posted_at_start = workload.posts_accepted();
    let started = Instant::now();
    let topology = Topology::start(config.clone(), backend.clone(), options).await?;
    // Loading compiles the plugin (cached after the first run); time the jobs, not that.
    let loaded = started.elapsed();
    super::peak_rss::reset();
    topology.until_idle().await;
    let pipeline = Part {
        took: started.elapsed().saturating_sub(loaded),
        peak_rss_mib: super::peak_rss::mib(),
    };
    let connector = topology
        .connectors()
        .get("posts")
        .context("the connector is loaded")?;
    let jobs = connector.stats.job_snapshot();
    anyhow::ensure!(
        jobs.done == u64::from(args.jobs) && jobs.failed == 0,
        "the pipeline carried out {} of {} jobs: {jobs:?}",
        jobs.done,
        args.jobs
    );
    let posted_before = workload.posts_accepted();
    if let (Some(start), Some(now)) = (posted_at_start, posted_before) {
        anyhow::ensure!(
            now - start == u64::from(args.jobs),
            "the fake X API accepted {} of {} posts from the pipeline",
            now - start,
            args.jobs
        );
    }
    let handler: Arc<dyn JobHandler> = connector.versions.clone();
    let targets = backend.list_targets(Some("posts"), 0, u32::MAX).await?;
    let calls: Vec<(TargetCall, HandleRequest)> = (0..args.jobs)
        .map(|n| {
            let (payload, target) = workload.job(run, "direct", n);
            let id = format!("direct-{n}");
            let call = match target
                .as_ref()
                .and_then(|t| targets.iter().find(|stored| &stored.target == t))
            {
                Some(stored) => TargetCall::new(stored.id, &stored.target),
                None => TargetCall::detached(&format!("job:{id}")),
            };
            let request = HandleRequest {
                id,
                kind: "post".into(),
                payload,
                attempt: 1,
                target,
                earlier: Earlier::None,
            };
            (call, request)
        })
        .collect();
    super::peak_rss::reset();
    let started = Instant::now();
    call_directly(handler, calls, args.concurrency).await?;
    let plugin_only = Part {
        took: started.elapsed(),
        peak_rss_mib: super::peak_rss::mib(),
    };
    if let (Some(before), Some(after)) = (posted_before, workload.posts_accepted()) {
        anyhow::ensure!(
            after - before == u64::from(args.jobs),
            "the fake X API accepted {} of {} direct posts",
            after - before,
            args.jobs
        );
    }
    topology.shutdown().await;

    enqueue(&backend, workload, run, "noop", args.jobs).await?;
    let pipeline_without_plugin = Arc::new(HandlePipeline {
        connector: "noop".into(),
        queue: "noop".into(),
        backend: backend.clone(),
        jobs: backend.clone(),
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
    super::peak_rss::reset();
    let started = Instant::now();
    pipeline_without_plugin
        .run(
            tokio_util::sync::CancellationToken::new(),
            RunMode::UntilIdle,
            Duration::from_secs(10),
        )
        .await;
    let queue_only = Part {
        took: started.elapsed(),
        peak_rss_mib: super::peak_rss::mib(),
    };
    let counts = backend.queue_counts("noop").await?;
    anyhow::ensure!(
        counts.done == u64::from(args.jobs),
        "the queue alone finished {} of {} jobs: {counts:?}",
        counts.done,
        args.jobs
    );
    Ok(Run {
        pipeline,
        plugin_only,
        queue_only,
    })
}

async fn enqueue(
    backend: &Arc<dyn Backend>,
    workload: &Workload,
    run: usize,
    queue: &str,
    jobs: u32,
) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    for n in 0..jobs {
        let (payload, target) = workload.job(run, queue, n);
        let job = NewJob {
            kind: "post".into(),
            target,
            ..NewJob::new(queue, payload, 5, now)
        };
        backend.enqueue_job(job).await?;
    }
    Ok(())
}

/// The calls into the plugin, `concurrency` at a time, as the pipeline would make them.
async fn call_directly(
    handler: Arc<dyn JobHandler>,
    calls: Vec<(TargetCall, HandleRequest)>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let calls = Arc::new(std::sync::Mutex::new(calls));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let handler = handler.clone();
        let calls = calls.clone();
        workers.spawn(async move {
            loop {
                let next = calls.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some((call, request)) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                let id = request.id.clone();
                let report = handler.handle(call, request).await;
                match report.result {
                    Ok(HandleResult::Done { .. }) => {}
                    Ok(HandleResult::Skipped { skipped }) => {
                        anyhow::bail!("direct call {id} was skipped: {skipped}")
                    }
                    Err(e) => anyhow::bail!("direct call {id} failed: {e}"),
                }
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
            hubs: Vec::new(),
        }
    }
}

/// A loopback upstream that answers every post with 200 at once, on its own thread.
fn start_upstream() -> anyhow::Result<ServerThread<(SocketAddr, Option<XCounters>)>> {
    super::server_thread::start("bench-upstream", || async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/effects/{id}",
            axum::routing::post(|| async { "ref" }).get(|| async { "ref" }),
        );
        let serving = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(((addr, None), serving))
    })
}
