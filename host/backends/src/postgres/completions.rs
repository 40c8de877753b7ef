//! Group commit for job completions on PostgreSQL.
//!
//! Completing a job is one short guarded `UPDATE`, and committing it costs far more than running
//! it: with every completion its own autocommit statement, a busy queue spends most of its time
//! on per-statement round trips and commits (~1.13 commits per job; apalis, which writes the acks
//! its worker gathered in one transaction, processed no-op jobs ~4× as fast on the same server).
//! So each backend instance has one batcher task: `finish_job` hands it the completion and waits
//! for the answer; the task takes whatever completions are waiting (up to [`MAX_BATCH`]) and
//! runs them as ONE statement ([`FINISH_MANY`]: the same guard as [`FINISH`], row by row), then
//! answers each caller from the ids it returned. Up to [`IN_FLIGHT`] such statements run at once.
//!
//! There is no timer: a completion that finds a slot free goes at once (alone, through the very
//! statement a completion ran before batching, [`FINISH`]), so an idle queue's latency is
//! unchanged; batches form by themselves while the statements in flight wait for their commits.
//! Every caller still returns only once its row is committed (or refused by the guard), so
//! durability and the lease guard are exactly those of one statement per job: a finished job is
//! never rescued, and a late completion from a lost lease is refused while the others of its
//! batch succeed. Two
//! completions of the same job never share a statement, so each is answered as if it had run
//! alone. Every statement locks its rows in id order, so statements of two hosts naming the same
//! jobs cannot deadlock.
//!
//! A failed statement answers every caller in it with the error. The task ends when the last
//! clone of its backend is dropped (its channel closes); should it be gone earlier (its runtime
//! shut down), completions fall back to running one statement each. The channel is bounded
//! ([`QUEUE_DEPTH`]): past that, callers wait for room rather than pile up.

use super::jobs::{FINISH, FINISH_MANY};
use crate::sql::db_error;
use crate::{BackendError, Millis, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The most completions one statement carries.
const MAX_BATCH: usize = 256;
/// The most completion statements running at once: half the pool's 16 connections, leaving the
/// rest to leases and the host's other work. Each statement waits for its commit's WAL flush,
/// which the server shares between concurrent commits, so several in flight keep a lone worker's
/// completion from queueing behind another's flush (16 workers completing one job at a time:
/// 3,500 jobs/s with 4 in flight, 5,400 with 8).
const IN_FLIGHT: usize = 8;
/// The most completions waiting for the batcher; callers beyond that wait for room.
const QUEUE_DEPTH: usize = 4096;
const CONTEXT: &str = "completing a job";

/// One completion: the lease it names and the columns it stores.
#[derive(Debug, Clone)]
pub(super) struct Finish {
    pub id: i64,
    pub worker: String,
    pub lease_until: Millis,
    pub now: Millis,
    pub outcome: &'static str,
    pub reference: Option<String>,
    pub detail: Option<String>,
}

/// A completion and where its answer goes.
#[derive(Debug)]
struct Request {
    finish: Finish,
    reply: oneshot::Sender<Result<bool>>,
}

/// What a backend's completions have cost so far: how many statements carried how many
/// completions (fewer statements than completions: batches formed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompletionStats {
    /// Completion statements run (one per batch, or per completion run alone).
    pub statements: u64,
    /// Completions those statements carried.
    pub completions: u64,
}

#[derive(Debug, Default)]
struct Counts {
    statements: AtomicU64,
    completions: AtomicU64,
}

impl Counts {
    fn add(&self, completions: usize) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.completions
            .fetch_add(completions as u64, Ordering::Relaxed);
    }
}

/// A backend's handle on its batcher. Cloned with the backend; the batcher ends when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct Completions {
    requests: mpsc::Sender<Request>,
    counts: Arc<Counts>,
}

impl Completions {
    /// Starts a batcher on `pool`, on the current runtime. The handle lets a test wait for it to
    /// end; the backend leaves it detached.
    pub(super) fn start(pool: PgPool) -> (Self, JoinHandle<()>) {
        let (requests, waiting) = mpsc::channel(QUEUE_DEPTH);
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(run(pool, waiting, counts.clone()));
        (Self { requests, counts }, task)
    }

    /// Completes `finish` in the next batch; true if its lease still held the job. Runs it on
    /// its own on `pool` when the batcher is gone.
    pub(super) async fn finish(&self, pool: &PgPool, finish: Finish) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        match self.requests.send(Request { finish, reply }).await {
            // The batcher dropped the reply unanswered only if it stopped mid-statement (its
            // runtime shut down): whether the row was committed is unknown, so this is an
            // error, not a retry that could report a done job as lost.
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(BackendError::Database {
                    context: CONTEXT,
                    source: sqlx::Error::WorkerCrashed,
                })
            }),
            Err(mpsc::error::SendError(request)) => {
                self.counts.add(1);
                finish_one(pool, &request.finish).await
            }
        }
    }

    pub(super) fn stats(&self) -> CompletionStats {
        CompletionStats {
            statements: self.counts.statements.load(Ordering::Relaxed),
            completions: self.counts.completions.load(Ordering::Relaxed),
        }
    }
}

/// The batcher: runs what is waiting as one statement whenever fewer than [`IN_FLIGHT`] are
/// running, so a completion arriving with a slot free goes at once and batches form while all
/// slots are busy; ends once every sender is gone and nothing waits or runs.
async fn run(pool: PgPool, mut requests: mpsc::Receiver<Request>, counts: Arc<Counts>) {
    let mut waiting: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut running = FuturesUnordered::new();
    let mut closed = false;
    loop {
        // Take what has arrived, without waiting for more.
        while waiting.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => waiting.push(request),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        while running.len() < IN_FLIGHT && !waiting.is_empty() {
            let batch = take_distinct(&mut waiting);
            counts.add(batch.len());
            running.push(run_batch(pool.clone(), batch));
        }
        if closed && waiting.is_empty() && running.is_empty() {
            return;
        }
        tokio::select! {
            Some(()) = running.next(), if !running.is_empty() => {}
            received = requests.recv_many(&mut waiting, MAX_BATCH),
                if !closed && waiting.is_empty() && running.len() < IN_FLIGHT =>
            {
                closed = received == 0;
            }
            // Unreachable: with nothing running, whatever waited was started above, so the
            // receiving branch is on unless the channel closed (and then the loop returned).
            else => return,
        }
    }
}

/// The first completion of each job among `waiting`, in order; the later ones of a job stay in
/// `waiting` for another statement (one statement updates a row once, so they could not share
/// it). The row's lock orders them then, as it orders two single-row completions.
fn take_distinct(waiting: &mut Vec<Request>) -> Vec<Request> {
    let mut seen = HashSet::with_capacity(waiting.len());
    let (batch, later): (Vec<_>, Vec<_>) = waiting
        .drain(..)
        .partition(|request| seen.insert(request.finish.id));
    *waiting = later;
    batch
}

/// Runs `batch` (its ids distinct) as one statement and answers each caller. A caller that
/// stopped waiting (its future was dropped) misses its answer; its completion stands or not as
/// the statement decided, as it would have alone.
async fn run_batch(pool: PgPool, mut batch: Vec<Request>) {
    if batch.len() == 1 {
        if let Some(request) = batch.pop() {
            let _ = request.reply.send(finish_one(&pool, &request.finish).await);
        }
        return;
    }
    let finishes: Vec<&Finish> = batch.iter().map(|request| &request.finish).collect();
    match finish_many(&pool, &finishes).await {
        Ok(done) => {
            for request in batch {
                let _ = request.reply.send(Ok(done.contains(&request.finish.id)));
            }
        }
        Err(error) => {
            let failed = |source| {
                Err(BackendError::Database {
                    context: CONTEXT,
                    source,
                })
            };
            // The first caller gets the error itself, the others a copy each.
            let mut requests = batch.into_iter();
            let first = requests.next();
            for request in requests {
                let _ = request.reply.send(failed(copy_of(&error)));
            }
            if let Some(first) = first {
                let _ = first.reply.send(failed(error));
            }
        }
    }
}

/// One completion as one statement: the path of a completion that arrives alone, and of every
/// completion once the batcher is gone.
async fn finish_one(pool: &PgPool, finish: &Finish) -> Result<bool> {
    let updated = sqlx::query(FINISH)
        .bind(finish.now)
        .bind(finish.id)
        .bind(&finish.worker)
        .bind(finish.lease_until)
        .bind(finish.outcome)
        .bind(finish.reference.as_deref())
        .bind(finish.detail.as_deref())
        .execute(pool)
        .await
        .map_err(db_error(CONTEXT))?
        .rows_affected();
    Ok(updated > 0)
}

/// Many completions (distinct ids) as one statement: the ids whose lease still held the job, now
/// done.
async fn finish_many(pool: &PgPool, finishes: &[&Finish]) -> Result<HashSet<i64>, sqlx::Error> {
    let ids: Vec<i64> = finishes.iter().map(|f| f.id).collect();
    let workers: Vec<&str> = finishes.iter().map(|f| f.worker.as_str()).collect();
    let lease_untils: Vec<Millis> = finishes.iter().map(|f| f.lease_until).collect();
    let nows: Vec<Millis> = finishes.iter().map(|f| f.now).collect();
    let outcomes: Vec<&str> = finishes.iter().map(|f| f.outcome).collect();
    let references: Vec<Option<&str>> = finishes.iter().map(|f| f.reference.as_deref()).collect();
    let details: Vec<Option<&str>> = finishes.iter().map(|f| f.detail.as_deref()).collect();
    let done: Vec<i64> = sqlx::query_scalar(FINISH_MANY)
        .bind(ids)
        .bind(workers)
        .bind(lease_untils)
        .bind(nows)
        .bind(outcomes)
        .bind(references)
        .bind(details)
        .fetch_all(pool)
        .await?;
    Ok(done.into_iter().collect())
}

/// `error` again, for each caller of a failed statement (sqlx errors are not `Clone`): the same
/// variant where it carries nothing or an I/O error (its kind kept), otherwise one that shows
/// exactly the original's message (`InvalidArgument` displays its text alone).
fn copy_of(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed => sqlx::Error::WorkerCrashed,
        sqlx::Error::RowNotFound => sqlx::Error::RowNotFound,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::Protocol(message) => sqlx::Error::Protocol(message.clone()),
        other => sqlx::Error::InvalidArgument(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::T0;
    use crate::postgres::testing::TestSchema;
    use crate::{JobLease, JobQueue, NewJob};
    use std::time::Duration;

    fn finish_of(lease: &JobLease) -> Finish {
        Finish {
            id: lease.id,
            worker: lease.worker.clone(),
            lease_until: lease.lease_until,
            now: T0 + 3_000,
            outcome: "done",
            reference: None,
            detail: Some(format!("job {}", lease.id)),
        }
    }

    fn request(finish: Finish) -> (Request, oneshot::Receiver<Result<bool>>) {
        let (reply, answer) = oneshot::channel();
        (Request { finish, reply }, answer)
    }

    async fn enqueue(backend: &super::super::PostgresBackend, jobs: usize) {
        for n in 0..jobs {
            backend
                .enqueue_job(NewJob::new("q", n.to_string(), 3, T0))
                .await
                .expect("enqueue");
        }
    }

    #[test]
    fn later_completions_of_a_job_wait_for_the_next_statement() {
        let lease = |id| Finish {
            id,
            worker: format!("w{id}"),
            lease_until: T0,
            now: T0,
            outcome: "done",
            reference: None,
            detail: None,
        };
        let mut waiting: Vec<Request> = [1, 2, 1, 3, 2, 1]
            .into_iter()
            .map(|id| request(lease(id)).0)
            .collect();
        let ids = |requests: &[Request]| requests.iter().map(|r| r.finish.id).collect::<Vec<_>>();
        let batch = take_distinct(&mut waiting);
        assert_eq!(ids(&batch), [1, 2, 3]);
        assert_eq!(ids(&waiting), [1, 2, 1], "held back, in their order");
        assert_eq!(ids(&take_distinct(&mut waiting)), [1, 2]);
        assert_eq!(ids(&take_distinct(&mut waiting)), [1]);
        assert!(waiting.is_empty());
    }

    /// One statement carries completions of held and of lost leases: the lost ones are refused,
    /// their jobs untouched, and the others finish with their own outcome.
    #[tokio::test]
    async fn one_statement_refuses_the_lost_leases_and_finishes_the_rest() {
        let schema = TestSchema::create().await;
        let backend = schema.open().await;
        enqueue(&backend, 8).await;
        let lost = backend
            .lease_jobs("q", "w1", T0, Duration::from_secs(1), 3)
            .await
            .expect("short leases");
        let held = backend
            .lease_jobs("q", "w1", T0, Duration::from_secs(3600), 8)
            .await
            .expect("long leases");
        let taken = backend
            .lease_jobs("q", "w2", T0 + 2_000, Duration::from_secs(3600), 8)
            .await
            .expect("take over");
        assert_eq!((lost.len(), held.len(), taken.len()), (3, 5, 3));

        let (batch, answers): (Vec<_>, Vec<_>) = lost
            .iter()
            .chain(&held)
            .map(|lease| request(finish_of(lease)))
            .unzip();
        run_batch(backend.pool.clone(), batch).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.expect("answered").expect("no error"));
        }
        assert_eq!(results, [false, false, false, true, true, true, true, true]);

        for lease in &taken {
            let job = backend.job(lease.id).await.expect("read").expect("there");
            assert_eq!(job.state, "leased", "the new holder keeps job {}", lease.id);
        }
        for lease in &held {
            let job = backend.job(lease.id).await.expect("read").expect("there");
            assert_eq!(job.state, "done");
            assert_eq!(
                job.outcome,
                Some(crate::JobOutcome::Done {
                    reference: None,
                    detail: Some(format!("job {}", lease.id)),
                }),
                "each row gets its own outcome"
            );
        }
    }

    #[tokio::test]
    async fn a_failed_statement_answers_every_caller_with_the_error() {
        let schema = TestSchema::create().await;
        let backend = schema.open().await;
        enqueue(&backend, 3).await;
        let leases = backend
            .lease_jobs("q", "w1", T0, Duration::from_secs(60), 3)
            .await
            .expect("lease");
        let (batch, answers): (Vec<_>, Vec<_>) =
            leases.iter().map(|lease| request(finish_of(lease))).unzip();
        backend.close().await;
        run_batch(backend.pool.clone(), batch).await;
        for answer in answers {
            let error = answer
                .await
                .expect("answered")
                .expect_err("the pool is closed");
            let message = error.to_string();
            assert!(
                matches!(error, BackendError::Database { .. })
                    && message.contains("completing a job")
                    && message.contains("closed pool"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn completions_run_alone_once_the_batcher_is_gone() {
        let schema = TestSchema::create().await;
        let backend = schema.open().await;
        enqueue(&backend, 1).await;
        let lease = backend
            .lease_jobs("q", "w1", T0, Duration::from_secs(60), 1)
            .await
            .expect("lease")
            .remove(0);
        let (requests, gone) = mpsc::channel(1);
        drop(gone);
        let orphan = Completions {
            requests,
            counts: Arc::default(),
        };
        let finish = finish_of(&lease);
        assert!(
            orphan
                .finish(&backend.pool, finish.clone())
                .await
                .expect("done")
        );
        assert!(
            !orphan.finish(&backend.pool, finish).await.expect("refused"),
            "a finished job is not finished again"
        );
        assert_eq!(
            orphan.stats(),
            CompletionStats {
                statements: 2,
                completions: 2
            }
        );
    }

    #[tokio::test]
    async fn the_batcher_ends_with_the_last_handle_on_it() {
        let schema = TestSchema::create().await;
        let backend = schema.open().await;
        let (completions, task) = Completions::start(backend.pool.clone());
        let clone = completions.clone();
        drop(completions);
        assert!(!task.is_finished(), "a clone still holds it");
        drop(clone);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the batcher ended")
            .expect("without panicking");
    }
}
