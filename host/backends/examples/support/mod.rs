//! What the store benchmarks share (`throughput`, `queue_vs_apalis`): a fresh store per run and
//! the two phases of the job benchmark, so every example measures tsunagi's queue the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi_backends::postgres::PostgresBackend;
use tsunagi_backends::postgres::testing::{TestSchema, test_server};
use tsunagi_backends::sqlite::SqliteBackend;
use tsunagi_backends::{Backend, JobQueue, NewJob};

pub const T0: i64 = 1_700_000_000_000;
pub const LEASE: Duration = Duration::from_secs(600);
/// How many jobs a worker leases at a time.
pub const LEASE_BATCH: u32 = 16;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A fresh store and whatever keeps it alive.
pub struct Fresh {
    pub backend: Arc<dyn Backend>,
    /// The same backend as `backend` when it is PostgreSQL, for its completion counts.
    #[allow(
        dead_code,
        reason = "only queue_vs_apalis reads it; throughput shares this module"
    )]
    pub postgres: Option<PostgresBackend>,
    _keep: Box<dyn std::any::Any>,
}

/// A fresh store: a temporary SQLite file (`kind` "sqlite") or a scratch schema on the
/// PostgreSQL server `TSUNAGI_TEST_POSTGRES` names (default the local test database).
pub async fn fresh(kind: &str) -> Result<Fresh, Error> {
    if kind == "sqlite" {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bench.db");
        let backend = SqliteBackend::open(path.to_str().ok_or("non-UTF-8 path")?).await?;
        return Ok(Fresh {
            backend: Arc::new(backend),
            postgres: None,
            _keep: Box::new(dir),
        });
    }
    let schema = TestSchema::create_on(&test_server()).await;
    let backend = schema.open().await;
    Ok(Fresh {
        postgres: Some(backend.clone()),
        backend: Arc::new(backend),
        _keep: Box::new(schema),
    })
}

/// Jobs enqueued per second: `jobs` no-op jobs on queue `noop` (payload `{"n":…}`, 3 attempts),
/// one `enqueue` call each, from `workers` concurrent producers.
pub async fn enqueue_jobs(
    backend: Arc<dyn JobQueue>,
    jobs: usize,
    workers: usize,
) -> Result<f64, Error> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let backend = backend.clone();
        let share = jobs / workers + usize::from(worker < jobs % workers);
        tasks.spawn(async move {
            for n in 0..share {
                backend
                    .enqueue(NewJob::new("noop", format!("{{\"n\":{n}}}"), 3, T0))
                    .await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// Jobs processed per second: `workers` concurrent workers each lease [`LEASE_BATCH`] jobs of
/// queue `noop` at a time and complete each (one `complete_job` call per job), until the queue
/// is empty; fails unless exactly `jobs` were completed. A worker completes its lease's jobs one
/// after another, or, `at_once`, all at the same time (as the host's connector pipeline runs
/// the jobs of a lease, each in a task of its own).
pub async fn process_jobs(
    backend: Arc<dyn JobQueue>,
    jobs: usize,
    workers: usize,
    at_once: bool,
) -> Result<f64, Error> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let backend = backend.clone();
        tasks.spawn(async move {
            let name = format!("worker-{worker}");
            let mut done = 0u64;
            loop {
                let leases = backend
                    .lease_jobs("noop", &name, T0, LEASE, LEASE_BATCH)
                    .await?;
                if leases.is_empty() {
                    return Ok::<_, Error>(done);
                }
                let completed = if at_once {
                    let completing = leases
                        .iter()
                        .map(|lease| backend.complete_job(lease, T0 + 1));
                    futures::future::join_all(completing).await
                } else {
                    let mut completed = Vec::with_capacity(leases.len());
                    for lease in &leases {
                        completed.push(backend.complete_job(lease, T0 + 1).await);
                    }
                    completed
                };
                for (lease, completed) in leases.iter().zip(completed) {
                    if !completed? {
                        return Err(format!("job {} lost its lease", lease.id).into());
                    }
                    done += 1;
                }
            }
        });
    }
    rate_of_all(tasks, jobs, "jobs completed", started).await
}

/// Waits for `tasks`, each answering how many it did; per second since `started`, failing
/// unless exactly `expected` were done in all.
pub async fn rate_of_all(
    mut tasks: tokio::task::JoinSet<Result<u64, Error>>,
    expected: usize,
    what: &str,
    started: Instant,
) -> Result<f64, Error> {
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        done += joined??;
    }
    if done != expected as u64 {
        return Err(format!("{done} {what} of {expected}").into());
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// The median of `values` (the upper one of the two middle values for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
