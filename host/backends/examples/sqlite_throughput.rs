//! Measures the SQLite backend on the crawl's hot path: importing targets, then many concurrent
//! workers claiming feeds and committing polls of 10 items each, delivering new items to a
//! queue.
//!
//! `cargo run --release -p tsunagi-backends --example sqlite_throughput [feeds] [workers]`

use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi_backends::sqlite::SqliteBackend;
use tsunagi_backends::{Item, PollCommit, TargetStore};

const T0: i64 = 1_700_000_000_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let feeds: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let workers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let backend = Arc::new(SqliteBackend::open(path.to_str().ok_or("non-UTF-8 path")?).await?);

    let targets: Vec<String> = (0..feeds)
        .map(|n| format!("https://feeds.example/{n}.xml"))
        .collect();
    let started = Instant::now();
    let report = backend.add_targets("rss", &targets, T0).await?;
    println!(
        "add_targets: {} targets in {:?}",
        report.added,
        started.elapsed()
    );

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let backend = backend.clone();
        tasks.spawn(async move {
            let name = format!("worker-{worker}");
            let mut polls = 0u64;
            loop {
                let claims = backend
                    .claim_due("rss", &name, T0, Duration::from_secs(600), 4)
                    .await?;
                if claims.is_empty() {
                    return Ok::<_, tsunagi_backends::BackendError>(polls);
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
                        deliver_to: vec![tsunagi_backends::Delivery {
                            queue: "sink".to_string(),
                            max_attempts: 10,
                        }],
                    };
                    let report = backend.complete_poll(&claim, commit, T0 + 1).await?;
                    assert_eq!(report.new_items, 10);
                    polls += 1;
                }
            }
        });
    }
    let mut polls = 0;
    while let Some(joined) = tasks.join_next().await {
        polls += joined??;
    }
    let elapsed = started.elapsed();
    println!(
        "claim + complete_poll: {polls} polls (10 items each) in {elapsed:?} = {:.0} polls/s",
        polls as f64 / elapsed.as_secs_f64()
    );
    backend.close().await;
    Ok(())
}
