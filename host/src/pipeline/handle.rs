//! The handler pipeline: turns a handler connector's queued jobs into plugin calls, with
//! bounded concurrency, a lease kept alive by heartbeats, and retries by the error's kind.
//!
//! A [`HandlePipeline`] leases jobs from its queue only for the worker slots it holds (the
//! same slot gathering as the poll pipeline), heartbeats each held job at a third of its
//! lease so a long call is not taken over while this worker lives, and commits each outcome
//! guarded by the lease:
//!
//! - done or skipped (the plugin declined; or the job names a target that is not one of the
//!   connector's, which is skipped as "not linked" without calling the plugin): completed,
//!   outcome kept, payload dropped;
//! - transient, rate limited, timeout, trap, a limit: retried after the connector's
//!   `RetryPolicy` wait (slower and slower; a rate limit waits at least the upstream's hint)
//!   until `max_failures` attempts, then dead-lettered with its history;
//! - permanent or bad response: dead-lettered at once, with the reason;
//! - held back by a budget or an open breaker, or a failure of the host's own: put back
//!   without counting an attempt;
//! - refused by the host's egress policy for lack of a credential scope: skipped (the
//!   target's token does not allow it; retrying cannot help); any other policy refusal is a
//!   configuration problem and dead-letters, so `tsunagi dlq retry` can bring it back once the
//!   rules are fixed.
//!
//! An attempt that failed after sending a request that changes something (not GET, HEAD,
//! OPTIONS) and got no answer to it is reported *outcome unknown*, from the host's own
//! exchange records; the store also marks a job whose lease it took over after expiry. The
//! next attempt's job record then says `earlier = unknown`, so the plugin can check before
//! acting again.

use super::poll::describe_failure;
use super::slots::{drain, gather_slots, wait_or_stop};
use crate::clock::SharedClock;
use crate::egress::ExchangeRecord;
use crate::outage::StoreOutage;
use crate::redact;
use crate::runtime::{
    CallError, CallReport, Earlier, FailureKind, HandleRequest, HandleResult, SwappableConnector,
    TargetCall,
};
use crate::scheduler::RetryPolicy;
use crate::stats::{ConnectorStats, JobEnding};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tsunagi_backends::{
    Backend, EarlierOutcome, JobFailure, JobLease, JobOutcome, JobQueue, Millis, StateScope,
};

/// When a call failed through the host's fault, its job is tried again after this long.
const HOST_FAILURE_RETRY_MS: i64 = 30_000;

/// A held job's lease is extended this many times per lease.
const HEARTBEATS_PER_LEASE: u32 = 3;

/// Something that carries out jobs: the sandboxed plugin in production.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn handle(&self, call: TargetCall, job: HandleRequest) -> CallReport<HandleResult>;
}

#[async_trait]
impl JobHandler for SwappableConnector {
    async fn handle(&self, call: TargetCall, job: HandleRequest) -> CallReport<HandleResult> {
        // Held for the whole call: a swap meanwhile does not touch this call's version.
        let pool = self.current();
        pool.handle(call, job).await
    }
}

/// Everything one handler connector's job loop needs.
pub struct HandlePipeline {
    pub connector: String,
    pub queue: String,
    /// Targets and their state (a job's linked target).
    pub backend: Arc<dyn Backend>,
    /// Where `queue` lives: the database or the Redis queue (`[backends] queue`).
    pub jobs: Arc<dyn JobQueue>,
    pub handler: Arc<dyn JobHandler>,
    pub retry: RetryPolicy,
    pub clock: SharedClock,
    pub worker_id: String,
    pub lease: Duration,
    pub claim_batch: u32,
    pub idle_poll: Duration,
    pub concurrency: usize,
    pub stats: Arc<ConnectorStats>,
}

/// What becomes of a job after one attempt.
#[derive(Debug, Clone, PartialEq)]
enum Disposition {
    Finish(JobOutcome),
    Retry {
        error: String,
        at: Millis,
        unknown: bool,
    },
    Dead {
        error: String,
        unknown: bool,
    },
    /// Put back without counting the attempt.
    Defer {
        until: Millis,
        why: String,
    },
}

impl HandlePipeline {
    /// Leases and runs jobs until `stop` is cancelled (or, in
    /// [`super::RunMode::UntilIdle`], until no job is due and none is running). After `stop`,
    /// in-flight calls get `grace` to finish; calls still running then are abandoned and their
    /// leases expire (the job is taken over, marked outcome unknown).
    pub async fn run(
        self: Arc<Self>,
        stop: CancellationToken,
        mode: super::RunMode,
        grace: Duration,
    ) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut running = JoinSet::new();
        let mut outage = StoreOutage::new(
            format!(
                "connector '{}' leasing jobs of queue '{}'",
                self.connector, self.queue
            ),
            self.idle_poll,
        );
        loop {
            while running.try_join_next().is_some() {}
            let Some(mut free) =
                gather_slots(&slots, self.concurrency, self.claim_batch, &stop).await
            else {
                break;
            };
            let leased = self
                .jobs
                .lease_jobs(
                    &self.queue,
                    &self.worker_id,
                    self.clock.now_ms(),
                    self.lease,
                    u32::try_from(free.num_permits()).unwrap_or(u32::MAX),
                )
                .await;
            let leases = match leased {
                Ok(leases) => {
                    outage.answered();
                    leases
                }
                Err(error) => {
                    let wait = outage.failed(&error);
                    drop(free);
                    if wait_or_stop(&stop, wait, &mut running).await {
                        break;
                    }
                    continue;
                }
            };
            if leases.is_empty() {
                drop(free);
                if mode == super::RunMode::UntilIdle && running.is_empty() {
                    break;
                }
                if wait_or_stop(&stop, self.idle_poll, &mut running).await {
                    break;
                }
                continue;
            }
            for lease in leases {
                // The lease asked for at most as many jobs as `free` holds permits.
                let Some(slot) = free.split(1) else {
                    let now = self.clock.now_ms();
                    let _ = self.jobs.defer_job(&lease, now, now).await;
                    continue;
                };
                // Every line logged during the job says whose job it is.
                let span = tracing::info_span!("job", connector = %self.connector,
                    queue = %lease.queue, job_id = lease.id);
                running.spawn(self.clone().execute(lease, slot).instrument(span));
            }
        }
        drain(&self.connector, running, grace).await;
    }

    async fn execute(self: Arc<Self>, lease: JobLease, slot: OwnedSemaphorePermit) {
        let started = std::time::Instant::now();
        self.stats.call_started();
        self.run_job(lease).await;
        drop(slot);
        self.stats.call_finished();
        self.stats.record_latency(started.elapsed());
    }

    async fn run_job(&self, mut lease: JobLease) {
        let (call, linked) = match self.target_call(&lease).await {
            Ok(Some(call)) => call,
            Ok(None) => {
                let outcome = JobOutcome::Skipped {
                    reason: format!(
                        "not linked: the job's target is not a target of connector '{}'",
                        self.connector
                    ),
                };
                self.settle(&lease, Disposition::Finish(outcome)).await;
                return;
            }
            Err(error) => {
                let until = self.clock.now_ms().saturating_add(HOST_FAILURE_RETRY_MS);
                let why = format!("cannot look the job's target up: {error}");
                self.settle(&lease, Disposition::Defer { until, why }).await;
                return;
            }
        };
        let request = HandleRequest {
            id: lease.id.to_string(),
            kind: lease.kind.clone(),
            payload: lease.payload.clone(),
            attempt: lease.attempt,
            target: lease.target.clone(),
            earlier: match lease.earlier {
                EarlierOutcome::None => Earlier::None,
                EarlierOutcome::Failed => Earlier::Failed,
                EarlierOutcome::Unknown => Earlier::Unknown,
            },
        };
        let Some(report) = self.call_with_heartbeat(&mut lease, call, request).await else {
            return;
        };
        let now = self.clock.now_ms();
        let disposition = decide(&self.retry, &lease, &report, now);
        if let (Disposition::Finish(JobOutcome::Done { .. }), Some(target_id)) =
            (&disposition, linked)
        {
            self.write_state(target_id, &report).await;
        }
        self.settle(&lease, disposition).await;
    }

    /// The call for the job: its linked target's (with that target's state), or a detached
    /// one private to the job when it names none. `None` when the named target is not one of
    /// the connector's.
    async fn target_call(
        &self,
        lease: &JobLease,
    ) -> Result<Option<(TargetCall, Option<i64>)>, tsunagi_backends::BackendError> {
        let Some(target) = &lease.target else {
            let call = TargetCall::with_state(&format!("job:{}", lease.id), HashMap::new());
            return Ok(Some((call, None)));
        };
        Ok(self
            .backend
            .get_target(&self.connector, target)
            .await?
            .map(|stored| (TargetCall::new(stored.id, &stored.target), Some(stored.id))))
    }

    /// Runs the call while extending the job's lease every third of it. `None` when the lease
    /// was lost meanwhile (another worker holds the job now; this outcome is not committed).
    async fn call_with_heartbeat(
        &self,
        lease: &mut JobLease,
        call: TargetCall,
        request: HandleRequest,
    ) -> Option<CallReport<HandleResult>> {
        let every = (self.lease / HEARTBEATS_PER_LEASE).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let handled = self.handler.handle(call, request);
        tokio::pin!(handled);
        loop {
            tokio::select! {
                report = &mut handled => {
                    super::count_upstream(&self.stats, &report.exchanges);
                    return Some(report);
                }
                _ = ticker.tick() => {
                    match self.jobs.heartbeat_job(lease, self.clock.now_ms(), self.lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(connector = %self.connector, job = lease.id,
                                "lease lost during the call; another worker owns the job now");
                            // The call goes on to its end (stopping a plugin mid-request would
                            // not undo it) but its outcome is the new holder's to find out.
                            let report = handled.await;
                            super::count_upstream(&self.stats, &report.exchanges);
                            return None;
                        }
                        Err(error) => tracing::warn!(connector = %self.connector, job = lease.id,
                            "cannot extend the job's lease: {error}"),
                    }
                }
            }
        }
    }

    /// Writes the call's target-scoped state of a linked target after a done job.
    async fn write_state(&self, target_id: i64, report: &CallReport<HandleResult>) {
        for (key, value) in &report.state_writes {
            if let Err(error) = self
                .backend
                .set_state(
                    &self.connector,
                    StateScope::Target(target_id),
                    key,
                    value.as_deref(),
                )
                .await
            {
                tracing::error!(connector = %self.connector, "cannot store the job's target state: {error}");
            }
        }
    }

    /// Commits a disposition, guarded by the lease, and counts it.
    async fn settle(&self, lease: &JobLease, disposition: Disposition) {
        let now = self.clock.now_ms();
        let (written, ending) = match &disposition {
            Disposition::Finish(outcome) => {
                let ending = match outcome {
                    JobOutcome::Done { .. } => JobEnding::Done,
                    JobOutcome::Skipped { reason } => {
                        tracing::info!(connector = %self.connector, job = lease.id,
                            "skipped: {reason}");
                        JobEnding::Skipped
                    }
                };
                (self.jobs.finish_job(lease, outcome, now).await, ending)
            }
            Disposition::Retry { error, at, unknown } => {
                tracing::info!(connector = %self.connector, job = lease.id,
                    attempt = lease.attempt, outcome_unknown = unknown,
                    "job failed; retrying at {}: {error}", crate::clock::rfc3339(*at));
                self.stats
                    .poll_failed(&format!("job {}", lease.id), error, now);
                let failure = JobFailure {
                    error,
                    retry_at: Some(*at),
                    outcome_unknown: *unknown,
                };
                (
                    self.jobs.record_failure(lease, &failure, now).await,
                    JobEnding::Failed,
                )
            }
            Disposition::Dead { error, unknown } => {
                tracing::warn!(connector = %self.connector, job = lease.id,
                    attempt = lease.attempt,
                    "giving the job up (dead-lettered; see `tsunagi dlq`): {error}");
                self.stats
                    .poll_failed(&format!("job {}", lease.id), error, now);
                let failure = JobFailure {
                    error,
                    retry_at: None,
                    outcome_unknown: *unknown,
                };
                (
                    self.jobs.record_failure(lease, &failure, now).await,
                    JobEnding::Dead,
                )
            }
            Disposition::Defer { until, why } => {
                tracing::debug!(connector = %self.connector, job = lease.id,
                    "deferred until {}: {why}", crate::clock::rfc3339(*until));
                (
                    self.jobs.defer_job(lease, *until, now).await,
                    JobEnding::Deferred,
                )
            }
        };
        match written {
            Ok(true) => self.stats.job_ended(ending),
            Ok(false) => tracing::warn!(connector = %self.connector, job = lease.id,
                "lease lost before the job's outcome was committed; another worker owns it now"),
            Err(error) => tracing::error!(connector = %self.connector, job = lease.id,
                "cannot commit the job's outcome; it returns when its lease expires: {error}"),
        }
    }
}

/// What the attempt's report means for the job, judged from the host's own exchange
/// records where it can.
fn decide(
    retry: &RetryPolicy,
    lease: &JobLease,
    report: &CallReport<HandleResult>,
    now: Millis,
) -> Disposition {
    let error = match &report.result {
        Ok(HandleResult::Done { reference, detail }) => {
            return Disposition::Finish(JobOutcome::Done {
                reference: reference.clone(),
                detail: detail.clone(),
            });
        }
        Ok(HandleResult::Skipped { skipped }) => {
            return Disposition::Finish(JobOutcome::Skipped {
                reason: redact::text(skipped).into_owned(),
            });
        }
        Err(error) => error,
    };
    let unknown = report
        .exchanges
        .iter()
        .any(ExchangeRecord::unanswered_change);
    if let Some(refusal) = credential_scope_refusal(&report.exchanges) {
        return Disposition::Finish(JobOutcome::Skipped {
            reason: redact::text(refusal).into_owned(),
        });
    }
    if !unknown
        && let Some(until) = report
            .exchanges
            .iter()
            .filter_map(ExchangeRecord::deferred_until)
            .max()
    {
        return Disposition::Defer {
            until: until.max(now),
            why: "held back by a budget or an open breaker".to_string(),
        };
    }
    if !unknown && matches!(error, CallError::HostService(_) | CallError::Instantiate(_)) {
        return Disposition::Defer {
            until: now.saturating_add(HOST_FAILURE_RETRY_MS),
            why: redact::text(&error.to_string()).into_owned(),
        };
    }
    let message = describe_failure(error, &report.exchanges);
    let permanent = matches!(
        error,
        CallError::Connector {
            kind: FailureKind::Permanent | FailureKind::BadResponse,
            ..
        }
    ) || report.exchanges.iter().any(|e| e.refused.is_some());
    if permanent || retry.gives_up_after(lease.attempt) || lease.attempt >= lease.max_attempts {
        return Disposition::Dead {
            error: message,
            unknown,
        };
    }
    let mut at = now.saturating_add(retry.delay_ms(lease.attempt, lease.id as u64));
    if matches!(
        error,
        CallError::Connector {
            kind: FailureKind::RateLimited,
            ..
        }
    ) {
        // A rate limit waits at least as long as the upstream asked.
        let hinted = report
            .exchanges
            .iter()
            .filter_map(|e| {
                let after = e
                    .retry_after
                    .map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
                after.into_iter().chain(e.rate_limit_reset).max()
            })
            .max();
        if let Some(hinted) = hinted {
            at = at.max(hinted);
        }
    }
    Disposition::Retry {
        error: message,
        at,
        unknown,
    }
}

/// The hook for credential scopes: a refusal of the host's own egress policy that names a
/// scope (a target's token without write scope, say) means the job may not be carried out for
/// that target at all, so it is skipped with the refusal as the reason rather than retried or
/// dead-lettered. Egress marks such refusals with the scope that was missing.
fn credential_scope_refusal(exchanges: &[ExchangeRecord]) -> Option<&str> {
    exchanges
        .iter()
        .filter(|e| e.missing_scope.is_some())
        .find_map(|e| e.refused.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::LogTally;
    use std::collections::BTreeMap;

    fn policy(max_failures: u32) -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.0,
            max_failures,
        }
    }

    fn lease(attempt: u32) -> JobLease {
        JobLease {
            id: 7,
            queue: "c".into(),
            payload: "{}".into(),
            attempt,
            max_attempts: 10,
            worker: "w".into(),
            lease_until: 60_000,
            kind: "post".into(),
            target: None,
            earlier: EarlierOutcome::None,
        }
    }

    fn report(
        result: Result<HandleResult, CallError>,
        exchanges: Vec<ExchangeRecord>,
    ) -> CallReport<HandleResult> {
        CallReport {
            result,
            state_writes: BTreeMap::new(),
            exchanges,
            elapsed: Duration::ZERO,
            log: LogTally::default(),
            hubs: Vec::new(),
        }
    }

    fn failed(kind: FailureKind) -> Result<HandleResult, CallError> {
        Err(CallError::Connector {
            kind,
            message: "m".into(),
        })
    }

    fn post(status: Option<u16>) -> ExchangeRecord {
        ExchangeRecord {
            changes: true,
            sent: true,
            status,
            ..ExchangeRecord::default()
        }
    }

    #[test]
    fn transient_failures_retry_slower_and_slower_then_die() {
        let p = policy(3);
        let first = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![]),
            0,
        );
        let second = decide(
            &p,
            &lease(2),
            &report(failed(FailureKind::Transient), vec![]),
            0,
        );
        assert!(
            matches!(
                first,
                Disposition::Retry {
                    at: 10_000,
                    unknown: false,
                    ..
                }
            ),
            "{first:?}"
        );
        assert!(
            matches!(second, Disposition::Retry { at: 20_000, .. }),
            "{second:?}"
        );
        let last = decide(
            &p,
            &lease(3),
            &report(failed(FailureKind::Transient), vec![]),
            0,
        );
        assert!(matches!(last, Disposition::Dead { .. }), "{last:?}");
    }

    #[test]
    fn permanent_failures_die_at_once_with_the_reason() {
        let p = policy(5);
        let dead = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Permanent), vec![]),
            0,
        );
        assert!(
            matches!(&dead, Disposition::Dead { error, .. } if error.contains("permanent error: m")),
            "{dead:?}"
        );
    }

    #[test]
    fn a_rate_limit_waits_at_least_the_upstreams_hint() {
        let p = policy(5);
        let hinted = ExchangeRecord {
            status: Some(429),
            retry_after: Some(Duration::from_secs(120)),
            ..post(Some(429))
        };
        let retry = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::RateLimited), vec![hinted]),
            0,
        );
        assert!(
            matches!(
                retry,
                Disposition::Retry {
                    at: 120_000,
                    unknown: false,
                    ..
                }
            ),
            "{retry:?}"
        );
    }

    #[test]
    fn a_change_sent_without_an_answer_makes_the_outcome_unknown() {
        let p = policy(5);
        let broke = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![post(None)]),
            0,
        );
        assert!(
            matches!(broke, Disposition::Retry { unknown: true, .. }),
            "{broke:?}"
        );
        let answered = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![post(Some(503))]),
            0,
        );
        assert!(
            matches!(answered, Disposition::Retry { unknown: false, .. }),
            "{answered:?}"
        );
        let read = ExchangeRecord {
            changes: false,
            ..post(None)
        };
        let get = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![read]),
            0,
        );
        assert!(
            matches!(get, Disposition::Retry { unknown: false, .. }),
            "a GET changes nothing"
        );
        let unsent = ExchangeRecord {
            sent: false,
            ..post(None)
        };
        let held = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![unsent]),
            0,
        );
        assert!(
            matches!(held, Disposition::Retry { unknown: false, .. }),
            "never sent"
        );
    }

    #[test]
    fn a_deferral_puts_the_job_back_for_when_there_is_room() {
        let p = policy(5);
        let deferred = ExchangeRecord {
            deferral: Some(crate::resilience::Deferral::RateLimited {
                budget: "b".into(),
                retry_at: 5_000,
            }),
            ..ExchangeRecord::default()
        };
        let back = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![deferred]),
            0,
        );
        assert!(
            matches!(back, Disposition::Defer { until: 5_000, .. }),
            "{back:?}"
        );
        let host = decide(
            &p,
            &lease(1),
            &report(Err(CallError::HostService("store down".into())), vec![]),
            0,
        );
        assert!(
            matches!(
                host,
                Disposition::Defer {
                    until: HOST_FAILURE_RETRY_MS,
                    ..
                }
            ),
            "{host:?}"
        );
    }

    #[test]
    fn a_refusal_naming_a_scope_is_skipped_and_other_refusals_die() {
        let p = policy(5);
        let scope = ExchangeRecord {
            refused: Some(
                "target 'u' has no write scope for POST https://api.x.com/2/tweets".into(),
            ),
            missing_scope: Some(crate::config::Scope::Write),
            ..ExchangeRecord::default()
        };
        let skipped = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![scope]),
            0,
        );
        assert!(
            matches!(&skipped, Disposition::Finish(JobOutcome::Skipped { reason }) if reason.contains("write scope")),
            "{skipped:?}"
        );
        // The word alone is not the mark: a refusal of the allowlist may name anything.
        let allowlist = ExchangeRecord {
            refused: Some("egress refused by connector 'c' allowlist (scope.example)".into()),
            ..ExchangeRecord::default()
        };
        let dead = decide(
            &p,
            &lease(1),
            &report(failed(FailureKind::Transient), vec![allowlist]),
            0,
        );
        assert!(matches!(dead, Disposition::Dead { .. }), "{dead:?}");
    }

    #[test]
    fn done_and_skipped_results_finish_the_job() {
        let p = policy(5);
        let done = decide(
            &p,
            &lease(1),
            &report(
                Ok(HandleResult::Done {
                    reference: Some("r".into()),
                    detail: None,
                }),
                vec![],
            ),
            0,
        );
        assert_eq!(
            done,
            Disposition::Finish(JobOutcome::Done {
                reference: Some("r".into()),
                detail: None
            })
        );
        let skipped = decide(
            &p,
            &lease(1),
            &report(
                Ok(HandleResult::Skipped {
                    skipped: "came from X".into(),
                }),
                vec![],
            ),
            0,
        );
        assert_eq!(
            skipped,
            Disposition::Finish(JobOutcome::Skipped {
                reason: "came from X".into()
            })
        );
    }
}
