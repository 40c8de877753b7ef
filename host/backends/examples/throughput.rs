//! Measures the stores on their two hot paths, SQLite and PostgreSQL side by side in one run:
//!
//! - polls: many concurrent workers claiming feeds and committing polls of 10 items each,
//!   delivering the new items to a queue (no HTTP, no wasm);
//! - jobs: no-op jobs enqueued, then leased 16 at a time and completed by many workers.
//!
//! Each part runs `runs` times per backend, alternating backends, each run on a fresh store (a
//! temporary SQLite file; a scratch schema on the PostgreSQL server `TSUNAGI_TEST_POSTGRES`
//! names, default the local test database), and prints every run and the medians.
//!
//! `cargo run --release -p tsunagi-backends --example throughput [feeds] [jobs] [workers] [runs]`

mod support;

use std::sync::Arc;
use std::time::Instant;
use support::{Error, LEASE, T0, enqueue_jobs, fresh, median, process_jobs};
use tsunagi_backends::postgres::testing::test_server;
use tsunagi_backends::{Backend, Delivery, Item, PollCommit};

/// Polls per second committing `feeds` polls with `workers` workers.
async fn polls(backend: Arc<dyn Backend>, feeds: usize, workers: usize) -> Result<f64, Error> {
    let targets: Vec<String> = (0..feeds)
        .map(|n| format!("https://feeds.example/{n}.xml"))
        .collect();
    backend.add_targets("rss", &targets, T0).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let backend = backend.clone();
        tasks.spawn(async move {
            let name = format!("worker-{worker}");
            let mut polls = 0u64;
            loop {
                let claims = backend.claim_due("rss", &name, T0, LEASE, 4).await?;
                if claims.is_empty() {
                    return Ok::<_, Error>(polls);
                }
                for claim in claims {
                    let items = (0..10)
                        .map(|n| Item {
                            id: format!("{}#{n}", claim.target.target),
                            title: Some(format!("Item {n}")),
                            link: Some(format!("{}/{n}", claim.target.target)),
                            summary: Some("x".repeat(300)),
                            ..Item::default()
                        })
                        .collect();
                    let commit = PollCommit::Success {
                        items,
                        etag: Some("\"etag\"".to_string()),
                        last_modified: None,
                        cursor: None,
                        state_writes: Vec::new(),
                        next_run_at: T0 + 7_200_000,
                        interval_ms: 7_200_000,
                        deliver_to: vec![Delivery {
                            queue: "sink".to_string(),
                            max_attempts: 10,
                        }],
                    };
                    let report = backend.complete_poll(&claim, commit, T0 + 1).await?;
                    if report.new_items != 10 {
                        return Err(format!("{} new items, not 10", report.new_items).into());
                    }
                    polls += 1;
                }
            }
        });
    }
    support::rate_of_all(tasks, feeds, "polls committed", started).await
}

/// Jobs per second: enqueueing `jobs` no-op jobs, then leasing and completing them all.
async fn jobs(backend: Arc<dyn Backend>, jobs: usize, workers: usize) -> Result<(f64, f64), Error> {
    let enqueued = enqueue_jobs(backend.clone(), jobs, workers).await?;
    let done = process_jobs(backend, jobs, workers, false).await?;
    Ok((enqueued, done))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| -> Result<usize, Error> {
        Ok(args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let feeds = next(20_000)?;
    let job_count = next(20_000)?;
    let workers = next(64)?.max(1);
    let runs = next(3)?.max(1);
    println!(
        "{feeds} polls, {job_count} jobs, {workers} workers, {runs} runs per backend; PostgreSQL at {}",
        tsunagi_backends::postgres::redact_url(&test_server())
    );

    let kinds = ["sqlite", "postgres"];
    let mut poll_rates = vec![Vec::new(); kinds.len()];
    let mut enqueue_rates = vec![Vec::new(); kinds.len()];
    let mut job_rates = vec![Vec::new(); kinds.len()];
    for run in 1..=runs {
        for (index, kind) in kinds.iter().enumerate() {
            let store = fresh(kind).await?;
            let rate = polls(store.backend.clone(), feeds, workers).await?;
            let store = fresh(kind).await?;
            let (enqueued, done) = jobs(store.backend.clone(), job_count, workers).await?;
            println!(
                "run {run} {kind}: {rate:.0} polls/s, {enqueued:.0} jobs enqueued/s, {done:.0} jobs leased+completed/s"
            );
            poll_rates[index].push(rate);
            enqueue_rates[index].push(enqueued);
            job_rates[index].push(done);
        }
    }
    println!();
    println!("| backend | polls/s | jobs enqueued/s | jobs leased + completed/s |");
    println!("| --- | ---: | ---: | ---: |");
    for (index, kind) in kinds.iter().enumerate() {
        println!(
            "| {kind} | {:.0} | {:.0} | {:.0} |",
            median(poll_rates[index].clone()),
            median(enqueue_rates[index].clone()),
            median(job_rates[index].clone())
        );
    }
    Ok(())
}
