//! `tsunagi bench retention`: what a retention pass costs the claims and poll commits running
//! beside it.
//!
//! One SQLite database is filled with `--items` items fetched 100 days ago, plus `--targets`
//! live targets that are always due. Then two parts, each with `--workers` tasks that loop
//! "claim one target, commit ten new items for it" on the backend (no HTTP, no wasm: only the
//! store is measured):
//!
//! 1. no retention, for `--seconds`;
//! 2. the same load while one retention pass (`keep_items = "90d"`, batches of `--batch`
//!    rows) forgets every old item; the part ends with the pass.
//!
//! Each part reports claim and commit latency (p50, p99, max) and the pass its duration and
//! rate.

use futures::StreamExt;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::retention::{ItemRule, PassReport, Retention, RetentionRules};
use tsunagi_backends::{Backend, Item, Millis, PollCommit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench retention
  tsunagi bench retention --batch 100
  tsunagi bench retention --items 500000 --workers 16 --seconds 20")]
pub struct RetentionBenchArgs {
    /// Old items the pass forgets.
    #[arg(long, default_value_t = 200_000)]
    pub items: u32,
    /// Live targets the workers claim (always due).
    #[arg(long, default_value_t = 2_000)]
    pub targets: u32,
    /// Tasks claiming and committing at once.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Rows per retention batch.
    #[arg(long, default_value_t = tsunagi::retention::BATCH_ROWS)]
    pub batch: u32,
    /// Length of the part without retention.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

const CONNECTOR: &str = "rss";
const LEASE: Duration = Duration::from_secs(120);
const DAY_MS: Millis = 86_400_000;
const OLD_ITEMS_PER_POLL: u32 = 100;
const NEW_ITEMS_PER_POLL: usize = 10;

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 min at two significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

#[derive(Default)]
struct Latencies {
    claim: Option<Histogram<u64>>,
    commit: Option<Histogram<u64>>,
}

impl Latencies {
    fn record(slot: &mut Option<Histogram<u64>>, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        slot.get_or_insert_with(histogram).saturating_record(micros);
    }
}

struct Part {
    name: &'static str,
    elapsed: Duration,
    latencies: Latencies,
    pass: Option<PassReport>,
}

pub async fn retention(args: RetentionBenchArgs) -> anyhow::Result<ExitCode> {
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-retention-bench-")
        .tempdir()?;
    let url = format!("sqlite://{}", workdir.path().join("bench.db").display());
    let backend = tsunagi_backends::open(&url).await?;
    println!(
        "tsunagi bench retention: {} old items, {} live targets, {} workers, batches of {}",
        args.items, args.targets, args.workers, args.batch
    );
    let filled = Instant::now();
    fill(&backend, args.items).await?;
    let live: Vec<String> = (0..args.targets).map(|n| format!("live-{n}")).collect();
    backend
        .add_targets(CONNECTOR, &live, SystemClock.now_ms())
        .await?;
    println!(
        "filled in {:.1}s: {} items",
        filled.elapsed().as_secs_f64(),
        backend.count_items(Some(CONNECTOR)).await?
    );

    let mut parts = Vec::new();
    let stop = CancellationToken::new();
    let (latencies, workers) = start_workers(&backend, args.workers, &stop, "a");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    parts.push(finish("no retention", started, latencies, workers, stop, None).await?);

    let retention = Retention::with_batch_rows(
        backend.clone(),
        Arc::new(SystemClock),
        RetentionRules {
            keep_done_jobs: Duration::from_secs(7 * 86_400),
            interval: Duration::from_secs(3600),
            keep_forgotten_ids: Duration::from_secs(365 * 86_400),
            max_forgotten_ids: 10_000_000,
            items: BTreeMap::from([(
                CONNECTOR.to_string(),
                ItemRule {
                    keep_for: Some(Duration::from_secs(90 * 86_400)),
                    keep_count: None,
                },
            )]),
        },
        args.batch,
    );
    let stop = CancellationToken::new();
    let (latencies, workers) = start_workers(&backend, args.workers, &stop, "b");
    let started = Instant::now();
    let pass = retention.pass(&CancellationToken::new()).await;
    parts.push(
        finish(
            "during a retention pass",
            started,
            latencies,
            workers,
            stop,
            Some(pass),
        )
        .await?,
    );

    println!();
    println!(
        "| part | seconds | claims | claim p50 ms | claim p99 ms | claim max ms | commit p50 ms | commit p99 ms | commit max ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for part in &parts {
        let (claim, commit) = (&part.latencies.claim, &part.latencies.commit);
        println!(
            "| {} | {:.1} | {} | {} | {} |",
            part.name,
            part.elapsed.as_secs_f64(),
            claim.as_ref().map_or(0, Histogram::len),
            quantiles(claim),
            quantiles(commit),
        );
    }
    for part in &parts {
        if let Some(pass) = &part.pass {
            let forgotten: u64 = pass.items_forgotten.values().sum();
            println!();
            println!(
                "pass: {forgotten} items forgotten in {} batches, {:.1}s ({:.0} items/s){}",
                pass.batches,
                pass.took_ms as f64 / 1000.0,
                forgotten as f64 / (pass.took_ms.max(1) as f64 / 1000.0),
                pass.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(", error: {e}"))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn quantiles(histogram: &Option<Histogram<u64>>) -> String {
    let ms = |micros: u64| micros as f64 / 1000.0;
    match histogram {
        Some(h) => format!(
            "{:.2} | {:.2} | {:.1}",
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        ),
        None => "n/a | n/a | n/a".to_string(),
    }
}

/// Stores `items` old items, 100 per poll, with many polls committing at once (the group
/// committer batches them as in a crawl).
async fn fill(backend: &Arc<dyn Backend>, items: u32) -> anyhow::Result<()> {
    let old = SystemClock.now_ms() - 100 * DAY_MS;
    let polls = items.div_ceil(OLD_ITEMS_PER_POLL);
    let targets: Vec<String> = (0..polls).map(|n| format!("old-{n}")).collect();
    for chunk in targets.chunks(10_000) {
        backend.add_targets(CONNECTOR, chunk, old).await?;
    }
    let mut claims = Vec::new();
    while claims.len() < targets.len() {
        let more = backend
            .claim_due(CONNECTOR, "filler", old, LEASE, 10_000)
            .await?;
        if more.is_empty() {
            break;
        }
        claims.extend(more);
    }
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(claims)
        .map(|claim| {
            let backend = backend.clone();
            async move {
                let ids = (0..OLD_ITEMS_PER_POLL).map(|k| format!("{}#{k}", claim.target.target));
                backend
                    .complete_poll(&claim, success(ids, Millis::MAX / 2), old)
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

fn success(ids: impl Iterator<Item = String>, next_run_at: Millis) -> PollCommit {
    PollCommit::Success {
        items: ids
            .map(|id| Item {
                id,
                title: Some("an item of the retention benchmark".to_string()),
                summary: Some("x".repeat(300)),
                ..Item::default()
            })
            .collect(),
        etag: None,
        last_modified: None,
        cursor: None,
        state_writes: Vec::new(),
        next_run_at,
        interval_ms: 60_000,
        deliver_to: Vec::new(),
    }
}

type Workers = Vec<tokio::task::JoinHandle<anyhow::Result<()>>>;

/// Workers looping "claim one due live target, commit ten new items for it" until `stop`.
fn start_workers(
    backend: &Arc<dyn Backend>,
    count: usize,
    stop: &CancellationToken,
    part: &str,
) -> (Arc<Mutex<Latencies>>, Workers) {
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let workers = (0..count)
        .map(|worker| {
            let (backend, stop, latencies) = (backend.clone(), stop.clone(), latencies.clone());
            let name = format!("bench-{part}-{worker}");
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.is_cancelled() {
                    let now = SystemClock.now_ms();
                    let started = Instant::now();
                    let claims = backend.claim_due(CONNECTOR, &name, now, LEASE, 1).await?;
                    let claimed = started.elapsed();
                    let Some(claim) = claims.into_iter().next() else {
                        continue;
                    };
                    n += 1;
                    let ids = (0..NEW_ITEMS_PER_POLL).map(|k| format!("{name}-{n}-{k}"));
                    let started = Instant::now();
                    backend
                        .complete_poll(&claim, success(ids, now), now)
                        .await?;
                    let committed = started.elapsed();
                    let mut latencies = latencies
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    Latencies::record(&mut latencies.claim, claimed);
                    Latencies::record(&mut latencies.commit, committed);
                }
                Ok(())
            })
        })
        .collect();
    (latencies, workers)
}

async fn finish(
    name: &'static str,
    started: Instant,
    latencies: Arc<Mutex<Latencies>>,
    workers: Workers,
    stop: CancellationToken,
    pass: Option<PassReport>,
) -> anyhow::Result<Part> {
    let elapsed = started.elapsed();
    stop.cancel();
    for worker in workers {
        worker.await??;
    }
    let latencies = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    Ok(Part {
        name,
        elapsed,
        latencies,
        pass,
    })
}
