//! tsunagi's job queue against apalis 1.0 (<https://docs.rs/apalis>), on the same database
//! server, doing the same no-op jobs, in one run.
//!
//! For each backend both support — SQLite and PostgreSQL — and each of `runs` runs, every
//! contender gets a fresh store and two timed phases: *enqueue* `jobs` no-op jobs, then
//! *process* them all with `workers` concurrent workers until every one is recorded as done.
//! Contenders alternate within a run (tsunagi, then each apalis arrangement); the example prints
//! every run, then the medians and the ratios tsunagi / apalis per backend and phase. apalis on
//! Redis too: tsunagi's queue on Streams (`redis::queue::RedisJobQueue`) beside apalis-redis.
//!
//! `cargo run --release -p tsunagi-backends --example queue_vs_apalis --features apalis-bench -- [jobs] [workers] [runs]`
//!
//! (defaults 20000 16 3; PostgreSQL is the server `TSUNAGI_TEST_POSTGRES` names, Redis the one
//! `TSUNAGI_TEST_REDIS` names, by default the local test services).
//!
//! What each side does, exactly:
//!
//! - **Payload**: the same on both sides, `{"n":<index>}` (a `Noop { n }` serialized by apalis's
//!   JSON codec; a JSON string for tsunagi). Queue `noop`; all jobs due at once.
//! - **Enqueue** (both sides): `workers` concurrent producers, each enqueueing its share one job
//!   per call. tsunagi: `JobQueue::enqueue`, one `INSERT … RETURNING id` (autocommit; SQLite:
//!   `BEGIN IMMEDIATE`, insert, commit on its single writer connection). apalis: `TaskSink::push`,
//!   one transaction per job (`BEGIN`, one `INSERT … SELECT unnest(…)`, `COMMIT`; Redis: one Lua
//!   script call). On PostgreSQL apalis's `jobs` table also has an `AFTER INSERT` trigger that
//!   calls `pg_notify` for every row (its pub/sub wake-up, there whether or not a worker listens),
//!   so every enqueue commit also queues a notification, which PostgreSQL serialises across
//!   sessions at commit. apalis also has a bulk `push_all` (one INSERT for many jobs) that tsunagi
//!   has no counterpart for; it is not used, so both sides do one job per call.
//! - **Process**, tsunagi (`support::process_jobs`, the same code as the `throughput` example):
//!   `workers` tasks, each in a loop leasing 16 jobs (`lease_jobs`: on PostgreSQL two autocommit
//!   statements, bury-lost + `UPDATE … FOR UPDATE SKIP LOCKED … RETURNING`; on SQLite one
//!   `BEGIN IMMEDIATE` transaction) and completing each with its own `complete_job` call, until
//!   a lease comes back empty. On PostgreSQL the backend group-commits completions: those of all
//!   workers waiting at the same moment go as one guarded `UPDATE … FROM unnest(…)` (a lone one
//!   as its own `UPDATE`); the run prints how many completions a completion statement carried.
//!   Two arrangements:
//!   - `tsunagi`: a worker completes its lease's jobs one after another, so each job waits for
//!     its completion's commit (a WAL flush) before the next starts;
//!   - `tsunagi-lease`: a worker completes its lease's jobs all at once and leases again when all
//!     are answered — how the host's connector pipeline runs a lease (a task per job), and the
//!     shape of an apalis worker, which runs the tasks it fetched concurrently.
//! - **Process**, apalis, its documented way: `PostgresStorage` / `SqliteStorage` /
//!   `RedisStorage` with `Config::default()` except `queue("noop")` and `batch_size(16)` (default
//!   10; 16 to match tsunagi's lease), a `Monitor` running `WorkerBuilder` workers whose handler
//!   does nothing but count, and defaults everywhere else: `lock_tasks` and `persist_results` on,
//!   30 s heartbeats. Each worker registers itself first (a row in `apalis.workers`), then
//!   fetches 16 tasks at a time (one transaction: `apalis.get_jobs`, `UPDATE … FOR UPDATE SKIP
//!   LOCKED`), runs them, and sends a lock and an ack event per task into a channel; whatever
//!   events have piled up when the worker next polls its backend are written in one transaction
//!   (a `Running` lock `UPDATE` for tasks not yet acked, and one `UPDATE … FROM
//!   jsonb_array_elements` storing every acked task's status and result). So both batch
//!   opportunistically: apalis a worker's acks, tsunagi a backend's completions across its
//!   workers. The run prints how many PostgreSQL commits
//!   apalis made per job (everything committed in its database: registrations, fetches, acks) to
//!   show what that came to. On SQLite the same steps, without `SKIP LOCKED`: every connection
//!   waits for the one write lock (sqlx's 5 s busy timeout). Two arrangements:
//!   - `apalis-workers`: `workers` workers on one `Monitor` (`register_n`), each with default
//!     concurrency (no limit) — the same shape as tsunagi's `workers` independent leasers;
//!   - `apalis-1xN`: one worker with `.concurrency(workers)`, as apalis's README shows — one
//!     fetch stream for all.
//!
//!   A monitor polls all its workers from one task, where tsunagi's workers are tasks of their
//!   own on the runtime's threads; spawning each apalis worker as a task of its own instead
//!   measured the same within this machine's noise, so the monitor (apalis's way) stays.
//!
//!   The phase ends when the handler has counted `jobs` runs (an atomic and a `Notify`, no
//!   polling), the monitor is shut down gracefully (which flushes the pending acks) and it has
//!   returned; then the store is checked to hold exactly `jobs` tasks in state `Done`.
//! - **Connections**: PostgreSQL 16 per side (tsunagi's pool size; apalis gets a pool of 16).
//!   tsunagi's tables live in a scratch schema of the test database; apalis keeps everything in
//!   a fixed schema `apalis`, so it gets a scratch database per run on the same server instead.
//!   SQLite: both a temporary file in WAL mode with `synchronous = NORMAL` on every connection
//!   (tsunagi: one writer connection plus readers; apalis: one connection — with sqlx's default
//!   pool of 10, 16 apalis workers failed within seconds on "database is locked", its
//!   transactions beginning deferred; its `setup` runs on a pool of its own first, because it
//!   turns `synchronous` off on whichever one connection it happens to use).
//! - **Redis**: at most 7,000 jobs for both, whatever `jobs` says. apalis-redis's `push`
//!   files every task under its schedule (a sorted set) at "now", and its fetch script moves all
//!   the due ones to the active list in one Lua `unpack`, which Redis refuses beyond ~8,000
//!   values ("too many results to unpack"): with 20,000 jobs waiting, every fetch fails and the
//!   workers stop.
//! - **Not measured**: apalis-1xN on SQLite. apalis-sqlite's ack (`UPDATE … WHERE lock_by = ?`)
//!   and lock (`UPDATE … WHERE id IN (…) AND (status = 'Queued' OR …)`) statements are planned
//!   on its `lock_by` and `status` indexes (a fresh file has no statistics), so each scans every
//!   job its worker has taken, or every pending one: the cost per job grows with the queue, and
//!   the more so the fewer workers share it (apalis-workers pays the ack scan too, split `workers` ways). One
//!   worker managed ~150 jobs/s at 20,000 jobs, over two minutes a run.

mod support;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Error, LEASE_BATCH, enqueue_jobs, fresh, median, process_jobs};
use tokio::sync::Notify;
use tsunagi_backends::JobQueue;
use tsunagi_backends::postgres::redact_url;
use tsunagi_backends::postgres::testing::run_on_server_blocking;
use tsunagi_backends::postgres::testing::test_server;
use tsunagi_backends::redis::queue::RedisJobQueue;
use tsunagi_backends::redis::testing::{TestPrefix, test_server as redis_server};

/// apalis's fetch batch: tsunagi's lease batch.
const BATCH: usize = LEASE_BATCH as usize;
/// Connections of apalis's PostgreSQL pool: as many as tsunagi's `PostgresBackend` opens.
const PG_CONNECTIONS: u32 = 16;
/// At most this many jobs on Redis: apalis-redis's fetch script moves every due job out of its
/// schedule in one Lua `unpack`, which fails beyond ~8,000 (see the top of the file).
const REDIS_MAX_JOBS: usize = 7_000;
/// A processing phase that takes longer than this has hung (a worker died): fail the run.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

/// The job apalis runs; serialized as `{"n":…}`, like tsunagi's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    n: usize,
}

/// Counts handler runs and wakes whoever waits once `jobs` have run, or once a worker failed.
struct Done {
    jobs: usize,
    count: AtomicUsize,
    /// The first worker error, if any.
    failure: Mutex<Option<String>>,
    all: Notify,
}

impl Done {
    fn new(jobs: usize) -> Arc<Self> {
        Arc::new(Self {
            jobs,
            count: AtomicUsize::new(0),
            failure: Mutex::new(None),
            all: Notify::new(),
        })
    }

    fn one(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.jobs {
            self.all.notify_waiters();
        }
    }

    fn finished(&self) -> bool {
        self.count.load(Ordering::Acquire) >= self.jobs
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records what went wrong (the first report wins) and wakes the waiters.
    fn fail(&self, why: String) {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.all.notify_waiters();
    }

    /// Returns once `jobs` have run or a worker failed (at once if either already happened).
    async fn wait(&self) {
        loop {
            // Made before the check, so a `notify_waiters` right after it still wakes it.
            let notified = self.all.notified();
            if self.finished() || self.failure().is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// The apalis handler: does nothing but count.
async fn noop(_job: Noop, done: Data<Arc<Done>>) -> Result<(), BoxDynError> {
    done.one();
    Ok(())
}

/// How apalis's workers are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// `workers` workers on one monitor, each with apalis's default concurrency.
    Workers,
    /// One worker with `.concurrency(workers)`.
    OneConcurrent,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Self::Workers => "apalis-workers",
            Self::OneConcurrent => "apalis-1xN",
        }
    }
}

/// Jobs enqueued per second by apalis: `workers` producers, each pushing its share one task per
/// `push` on a clone of `storage`.
async fn apalis_enqueue<S, K>(storage: S, jobs: usize, workers: usize) -> Result<f64, Error>
where
    S: TaskSink<Noop, K> + Clone + Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let mut storage = storage.clone();
        let share = jobs / workers + usize::from(worker < jobs % workers);
        tasks.spawn(async move {
            for n in 0..share {
                storage.push(Noop { n }).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// Jobs processed per second by apalis: runs a monitor of workers (arranged as `$shape`, with
/// `$workers`) on clones of `$storage` until the handler has run `$jobs` times, then shuts it
/// down gracefully (flushing the last acks) and waits for it. A macro because the worker types
/// apalis's monitor takes carry bounds too long to restate generically.
macro_rules! apalis_process {
    ($storage:expr, $shape:expr, $jobs:expr, $workers:expr) => {
        async {
            let storage = $storage;
            let (jobs, workers): (usize, usize) = ($jobs, $workers);
            let done = Done::new(jobs);
            let (on_error, on_exit) = (done.clone(), done.clone());
            // A worker that fails ends the phase with its error, rather than leaving it to wait
            // for the jobs that worker held (apalis would re-enqueue them only after 5 minutes).
            let monitor = Monitor::new()
                .on_event(move |worker, event| {
                    if let Event::Error(e) = event {
                        on_error.fail(format!("worker {}: {e}", worker.name()));
                    }
                })
                .should_restart(move |worker, error| {
                    on_exit.fail(format!("worker {} stopped: {error}", worker.name()));
                    false
                });
            let monitor = match $shape {
                Shape::Workers => {
                    let done = done.clone();
                    monitor.register_n(workers, move |index, _restarts| {
                        WorkerBuilder::new(format!("worker-{index}"))
                            .backend(storage.clone())
                            .data(done.clone())
                            .build(noop)
                    })
                }
                Shape::OneConcurrent => {
                    let done = done.clone();
                    monitor.register(move |_restarts| {
                        WorkerBuilder::new("worker-0")
                            .backend(storage.clone())
                            .data(done.clone())
                            .concurrency(workers)
                            .build(noop)
                    })
                }
            };
            let started = Instant::now();
            let all_done = done.clone();
            let signal = async move {
                all_done.wait().await;
                Ok(())
            };
            let ran = tokio::time::timeout(PHASE_LIMIT, monitor.run_with_signal(signal))
                .await
                .map_err(|_| format!("apalis did not finish {jobs} jobs in {PHASE_LIMIT:?}"))?;
            if let Some(failure) = done.failure() {
                return Err(failure.into());
            }
            ran?;
            Ok::<_, Error>(jobs as f64 / started.elapsed().as_secs_f64())
        }
    };
}

/// A database of its own on the PostgreSQL server (apalis keeps its tables in a fixed schema,
/// so a scratch schema cannot isolate it); dropped on drop.
struct ScratchDatabase {
    server: String,
    name: String,
    options: PgConnectOptions,
}

impl ScratchDatabase {
    async fn create(server: &str) -> Result<Self, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tsunagi_apalis_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(server).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let options = PgConnectOptions::from_str(server)?.database(&name);
        Ok(Self {
            server: server.to_string(),
            name,
            options,
        })
    }

    async fn pool(&self) -> Result<PgPool, Error> {
        Ok(PgPoolOptions::new()
            .max_connections(PG_CONNECTIONS)
            .connect_with(self.options.clone())
            .await?)
    }

    /// Transactions committed in the database so far, once the server has counted those of
    /// every closed connection (a connection's counts reach the statistics as it exits, a moment
    /// after the client hung up; read until two reads agree).
    async fn commits(&self) -> Result<i64, Error> {
        let mut admin = PgConnection::connect(&self.server).await?;
        let read = async |admin: &mut PgConnection| -> Result<i64, Error> {
            Ok(
                sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                    .bind(&self.name)
                    .fetch_one(admin)
                    .await?,
            )
        };
        let mut last = read(&mut admin).await?;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = read(&mut admin).await?;
            if now == last {
                break;
            }
            last = now;
        }
        Ok(last)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = run_on_server_blocking(&self.server, sql) {
            eprintln!("could not drop database {}: {e}", self.name);
        }
    }
}

fn apalis_pg_config() -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue("noop")
        .batch_size(BATCH)
}

/// One run's figures for one contender.
#[derive(Debug, Clone, Copy)]
struct Figures {
    enqueued: f64,
    processed: f64,
    /// PostgreSQL commits per job while enqueueing and while processing (apalis only).
    commits_per_job: Option<(f64, f64)>,
    /// Completions per completion statement while processing (tsunagi on PostgreSQL only: its
    /// batcher's counts).
    completions_per_statement: Option<f64>,
}

async fn apalis_postgres(shape: Shape, jobs: usize, workers: usize) -> Result<Figures, Error> {
    let db = ScratchDatabase::create(&test_server()).await?;
    let setup = db.pool().await?;
    PostgresStorage::setup(&setup).await?;
    setup.close().await;
    let set_up = db.commits().await?;

    let pool = db.pool().await?;
    let storage = PostgresStorage::<Noop>::new(&pool).with_config(apalis_pg_config());
    let enqueued = apalis_enqueue(storage, jobs, workers).await?;
    pool.close().await;
    let before = db.commits().await?;

    let pool = db.pool().await?;
    let storage = PostgresStorage::<Noop>::new(&pool).with_config(apalis_pg_config());
    let processed = apalis_process!(storage, shape, jobs, workers).await?;
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status = 'Done'")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    if done != jobs as i64 {
        return Err(format!("apalis on PostgreSQL: {done} jobs done of {jobs}").into());
    }
    // The count query above is one more commit.
    let commits = db.commits().await? - before - 1;
    let per_job = |commits: i64| commits as f64 / jobs.max(1) as f64;
    Ok(Figures {
        enqueued,
        processed,
        commits_per_job: Some((per_job(before - set_up), per_job(commits))),
        completions_per_statement: None,
    })
}

/// SQLite connect options matching tsunagi's: WAL, `synchronous = NORMAL`.
fn sqlite_options(path: &std::path::Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
}

async fn apalis_sqlite(shape: Shape, jobs: usize, workers: usize) -> Result<Figures, Error> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("apalis.db");
    let setup = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlite_options(&path))
        .await?;
    SqliteStorage::setup(&setup).await?;
    setup.close().await;

    // One connection, as tsunagi writes: with sqlx's default pool (10 connections) 16 apalis
    // workers fail with "database is locked" within seconds (its transactions begin deferred).
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlite_options(&path))
        .await?;
    let config = apalis_sqlite::Config::default()
        .queue("noop")
        .batch_size(BATCH);
    let storage = SqliteStorage::<Noop>::new(&pool).with_config(config);
    let enqueued = apalis_enqueue(storage.clone(), jobs, workers).await?;
    let processed = apalis_process!(storage, shape, jobs, workers).await?;
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM Jobs WHERE status = 'Done'")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    if done != jobs as i64 {
        return Err(format!("apalis on SQLite: {done} jobs done of {jobs}").into());
    }
    Ok(Figures {
        enqueued,
        processed,
        commits_per_job: None,
        completions_per_statement: None,
    })
}

async fn apalis_redis(shape: Shape, jobs: usize, workers: usize) -> Result<Figures, Error> {
    // Every key apalis makes for queue `<prefix>` starts with `<prefix>:`; the prefix deletes
    // them on drop.
    let prefix = TestPrefix::new();
    let mut conn = apalis_redis::connect(redis_server()).await?;
    let config = apalis_redis::Config::default()
        .queue(prefix.prefix())
        .batch_size(BATCH);
    let storage = RedisStorage::<Noop>::new(conn.clone()).with_config(config.clone());
    let enqueued = apalis_enqueue(storage.clone(), jobs, workers).await?;
    let processed = apalis_process!(storage, shape, jobs, workers).await?;
    let done: u64 = redis::cmd("SCARD")
        .arg(config.done_jobs_set())
        .query_async(&mut conn)
        .await?;
    if done != jobs as u64 {
        return Err(format!("apalis on Redis: {done} jobs done of {jobs}").into());
    }
    Ok(Figures {
        enqueued,
        processed,
        commits_per_job: None,
        completions_per_statement: None,
    })
}

/// tsunagi's queue on Redis Streams, under a key prefix of its own.
async fn tsunagi_redis(jobs: usize, workers: usize, at_once: bool) -> Result<Figures, Error> {
    let prefix = TestPrefix::new();
    let queue: Arc<dyn JobQueue> = Arc::new(RedisJobQueue::new(prefix.open().await));
    let enqueued = enqueue_jobs(queue.clone(), jobs, workers).await?;
    let processed = process_jobs(queue, jobs, workers, at_once).await?;
    Ok(Figures {
        enqueued,
        processed,
        commits_per_job: None,
        completions_per_statement: None,
    })
}

async fn tsunagi(kind: &str, jobs: usize, workers: usize, at_once: bool) -> Result<Figures, Error> {
    let store = fresh(kind).await?;
    let enqueued = enqueue_jobs(store.backend.clone(), jobs, workers).await?;
    let counts = |store: &support::Fresh| store.postgres.as_ref().map(|b| b.completion_stats());
    let before = counts(&store);
    let processed = process_jobs(store.backend.clone(), jobs, workers, at_once).await?;
    let completions_per_statement = before.zip(counts(&store)).map(|(before, after)| {
        (after.completions - before.completions) as f64
            / (after.statements - before.statements).max(1) as f64
    });
    Ok(Figures {
        enqueued,
        processed,
        commits_per_job: None,
        completions_per_statement,
    })
}

/// Who runs the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    /// Each worker completes its lease's jobs one after another.
    Tsunagi,
    /// Each worker completes its lease's jobs all at once.
    TsunagiAtOnce,
    Apalis(Shape),
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Self::Tsunagi => "tsunagi",
            Self::TsunagiAtOnce => "tsunagi-lease",
            Self::Apalis(shape) => shape.label(),
        }
    }
}

async fn measure(
    backend: &str,
    contender: Contender,
    jobs: usize,
    workers: usize,
) -> Result<Figures, Error> {
    match (backend, contender) {
        // As many jobs as apalis-redis can take, for a fair comparison.
        ("redis", Contender::Tsunagi) => {
            tsunagi_redis(jobs.min(REDIS_MAX_JOBS), workers, false).await
        }
        ("redis", Contender::TsunagiAtOnce) => {
            tsunagi_redis(jobs.min(REDIS_MAX_JOBS), workers, true).await
        }
        (kind, Contender::Tsunagi) => tsunagi(kind, jobs, workers, false).await,
        (kind, Contender::TsunagiAtOnce) => tsunagi(kind, jobs, workers, true).await,
        ("sqlite", Contender::Apalis(shape)) => apalis_sqlite(shape, jobs, workers).await,
        ("postgres", Contender::Apalis(shape)) => apalis_postgres(shape, jobs, workers).await,
        ("redis", Contender::Apalis(shape)) => {
            apalis_redis(shape, jobs.min(REDIS_MAX_JOBS), workers).await
        }
        (other, _) => Err(format!("no backend {other}").into()),
    }
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
    let jobs = next(20_000)?;
    let workers = next(16)?.max(1);
    let runs = next(3)?.max(1);
    // A fourth argument picks backends (`redis`, `sqlite,postgres`); default all three.
    let only: Option<Vec<String>> = std::env::args()
        .nth(4)
        .map(|list| list.split(',').map(str::to_string).collect());
    println!(
        "{jobs} no-op jobs, {workers} workers, {runs} runs; apalis 1.0 fetches {BATCH} at a time, \
         tsunagi leases {LEASE_BATCH}; PostgreSQL at {}, Redis at {}",
        redact_url(&test_server()),
        redact_url(&redis_server())
    );

    let ours = [Contender::Tsunagi, Contender::TsunagiAtOnce];
    let apalis = [
        Contender::Apalis(Shape::Workers),
        Contender::Apalis(Shape::OneConcurrent),
    ];
    let plan: [(&str, Vec<Contender>); 3] = [
        // Not apalis-1xN on SQLite: see the top of the file.
        (
            "sqlite",
            vec![
                Contender::Tsunagi,
                Contender::TsunagiAtOnce,
                Contender::Apalis(Shape::Workers),
            ],
        ),
        ("postgres", [&ours[..], &apalis].concat()),
        ("redis", [&ours[..], &apalis].concat()),
    ];
    let plan: Vec<(&str, Vec<Contender>)> = plan
        .into_iter()
        .filter(|(backend, _)| {
            only.as_ref()
                .is_none_or(|only| only.iter().any(|o| o == backend))
        })
        .collect();
    let mut results: BTreeMap<(&str, Contender), Vec<Figures>> = BTreeMap::new();
    for run in 1..=runs {
        for (backend, contenders) in &plan {
            for &contender in contenders {
                let figures = measure(backend, contender, jobs, workers).await?;
                let commits = figures
                    .commits_per_job
                    .map(|(enqueue, process)| {
                        format!(
                            " (PostgreSQL commits per job: {enqueue:.2} enqueueing, {process:.3} processing)"
                        )
                    })
                    .unwrap_or_default();
                let batched = figures
                    .completions_per_statement
                    .map(|n| format!(" ({n:.1} completions per completion statement)"))
                    .unwrap_or_default();
                println!(
                    "run {run} {backend} {}: {:.0} jobs enqueued/s, {:.0} jobs processed/s{commits}{batched}",
                    contender.label(),
                    figures.enqueued,
                    figures.processed,
                );
                results
                    .entry((backend, contender))
                    .or_default()
                    .push(figures);
            }
        }
    }

    let medians = |backend: &str, contender: Contender| -> (f64, f64) {
        let figures = results
            .get(&(backend, contender))
            .cloned()
            .unwrap_or_default();
        (
            median(figures.iter().map(|f| f.enqueued).collect()),
            median(figures.iter().map(|f| f.processed).collect()),
        )
    };
    println!();
    println!("Medians of {runs} runs:");
    println!();
    println!("| backend | queue | jobs enqueued/s | jobs processed/s |");
    println!("| --- | --- | ---: | ---: |");
    for (backend, contenders) in &plan {
        for &contender in contenders {
            let (enqueued, processed) = medians(backend, contender);
            let reference = if *backend == "redis" {
                format!(" ({} jobs)", jobs.min(REDIS_MAX_JOBS))
            } else {
                String::new()
            };
            println!(
                "| {backend} | {}{reference} | {enqueued:.0} | {processed:.0} |",
                contender.label()
            );
        }
    }
    println!();
    println!("tsunagi / apalis (ratio of the medians; above 1 means tsunagi is faster):");
    println!();
    println!("| backend | tsunagi | against | enqueue | process |");
    println!("| --- | --- | --- | ---: | ---: |");
    for (backend, contenders) in &plan {
        for &tsunagi in contenders.iter().filter(|c| ours.contains(c)) {
            let (ours_enqueued, ours_processed) = medians(backend, tsunagi);
            for &contender in contenders.iter().filter(|c| !ours.contains(c)) {
                let (enqueued, processed) = medians(backend, contender);
                println!(
                    "| {backend} | {} | {} | {:.2}× | {:.2}× |",
                    tsunagi.label(),
                    contender.label(),
                    ours_enqueued / enqueued,
                    ours_processed / processed
                );
            }
        }
    }
    Ok(())
}
