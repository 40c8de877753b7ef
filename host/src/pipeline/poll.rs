//! The poll pipeline: turns due targets into plugin calls, with bounded concurrency per
//! connector.
//!
//! A [`PollPipeline`] claims due targets only when it has a free worker slot, so no target sits
//! leased in a local queue behind a slow one: a hanging feed holds one slot until its call times
//! out while every other slot keeps moving. Each claim becomes one call; its outcome is
//! committed with the items, the target's new state and its next run in one transaction.
//!
//! Two outcomes are not the target's failure, judged from the host's own exchange records
//! (never from what the plugin says): a call held back by a budget or an open breaker is
//! *deferred* (put back for when there is room), and a call the host's egress policy refused
//! is *parked* (not claimed again until a reload changes the connector's egress rules). Neither
//! counts an error, backs off or dead-letters.

use super::slots::{Returns, drain, gather_slots, wait_or_stop, wait_or_stop_or_nudge};
use crate::clock::SharedClock;
use crate::egress::ExchangeRecord;
use crate::filter::{Dropped, ItemFilter};
use crate::outage::StoreOutage;
use crate::redact;
use crate::runtime::{
    CallError, CallReport, InstancePool, PollResult, SwappableConnector, TargetCall,
};
use crate::scheduler::{PollPolicy, UpstreamHints, activity};
use crate::stats::ConnectorStats;
use crate::websub::ConnectorWebSub;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tsunagi_backends::{Backend, Delivery, Item, PollCommit, TargetClaim};

/// When a call failed through the host's fault, its target is tried again after this long.
const HOST_FAILURE_RETRY_MS: i64 = 30_000;

/// Items one poll may return; the rest are dropped with a warning (a feed is not a dump).
const MAX_ITEMS_PER_POLL: usize = 10_000;

/// Something that can poll a target: the sandboxed plugin in production, a native stand-in in
/// the benchmark's reference runs.
#[async_trait]
pub trait TargetPoller: Send + Sync {
    async fn poll(
        &self,
        call: TargetCall,
        etag: Option<String>,
        last_modified: Option<String>,
        cursor: Option<String>,
    ) -> CallReport;
}

#[async_trait]
impl TargetPoller for InstancePool {
    async fn poll(
        &self,
        call: TargetCall,
        etag: Option<String>,
        last_modified: Option<String>,
        cursor: Option<String>,
    ) -> CallReport {
        InstancePool::poll(self, call, etag, last_modified, cursor).await
    }
}

#[async_trait]
impl TargetPoller for SwappableConnector {
    async fn poll(
        &self,
        call: TargetCall,
        etag: Option<String>,
        last_modified: Option<String>,
        cursor: Option<String>,
    ) -> CallReport {
        // Held for the whole call: a swap meanwhile does not touch this call's version.
        let pool = self.current();
        pool.poll(call, etag, last_modified, cursor).await
    }
}

/// Whether a pipeline runs until told to stop, or until no target is due (demo, benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Forever,
    UntilIdle,
}

/// Everything one connector's poll loop needs.
pub struct PollPipeline {
    pub connector: String,
    pub backend: Arc<dyn Backend>,
    pub poller: Arc<dyn TargetPoller>,
    pub policy: PollPolicy,
    pub clock: SharedClock,
    pub worker_id: String,
    pub lease: Duration,
    pub claim_batch: u32,
    pub idle_poll: Duration,
    pub concurrency: usize,
    /// Job queues that receive this connector's new items.
    pub deliver_to: Vec<Delivery>,
    pub stats: Arc<ConnectorStats>,
    /// `[connectors.NAME.filters]`, applied to a poll's items before they are stored.
    pub filters: Arc<dyn ItemFilter>,
    /// Problem answers that pause the connector (`pause_on_problem`, `pause_for`).
    pub pause: PausePolicy,
    /// The connector's `origin`, stamped on every item it stores.
    pub origin: Option<String>,
    /// WebSub, when the connector has it on: deliveries to hand to calls, hubs to report.
    pub websub: Option<ConnectorWebSub>,
}

/// Which problem types pause the connector, and for how long (none: until resumed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PausePolicy {
    pub problems: Vec<String>,
    pub pause_for: Option<Duration>,
}

impl PausePolicy {
    /// The first exchange whose problem type pauses the connector: (type, redacted URL).
    fn matches<'a>(&self, exchanges: &'a [ExchangeRecord]) -> Option<(&'a str, &'a str)> {
        exchanges.iter().find_map(|exchange| {
            let kind = exchange.problem_type.as_deref()?;
            self.problems
                .iter()
                .any(|problem| problem == kind)
                .then_some((kind, exchange.url.as_str()))
        })
    }
}

impl PollPipeline {
    /// Claims and runs due targets until `stop` is cancelled (or, in [`RunMode::UntilIdle`],
    /// until nothing is due and nothing is running). After `stop`, in-flight calls get `grace`
    /// to finish; calls still running then are abandoned and their leases expire.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, mode: RunMode, grace: Duration) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // A finished call waits for the store's next group commit without holding its call
        // slot; these bound how many commits may wait, so a slow store still pushes back.
        let commit_slots = Arc::new(Semaphore::new(self.concurrency * 2));
        // One claim per freed slot would cost a write per poll; gather a quarter of the slots
        // (or whatever is free after a few milliseconds) and claim for all of them at once.
        let mut running = JoinSet::new();
        let returns = Arc::new(Returns::default());
        let mut outage = StoreOutage::new(
            format!("connector '{}' claiming due targets", self.connector),
            self.idle_poll,
        );
        loop {
            while running.try_join_next().is_some() {}
            if self.stats.paused(self.clock.now_ms()).is_some() {
                // Paused by a problem answer: no new calls until it is lifted.
                if mode == RunMode::UntilIdle && running.is_empty() {
                    break;
                }
                if wait_or_stop(&stop, self.idle_poll, &mut running).await {
                    break;
                }
                continue;
            }
            let Some(mut free) =
                gather_slots(&slots, self.concurrency, self.claim_batch, &stop).await
            else {
                break;
            };
            if self.stats.paused(self.clock.now_ms()).is_some() {
                // Paused while waiting for the slots (their last call met the problem).
                drop(free);
                continue;
            }
            let claimed = self
                .backend
                .claim_due(
                    &self.connector,
                    &self.worker_id,
                    self.clock.now_ms(),
                    self.lease,
                    u32::try_from(free.num_permits()).unwrap_or(u32::MAX),
                )
                .await;
            let claims = match claimed {
                Ok(claims) => {
                    outage.answered();
                    claims
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
            if claims.is_empty() {
                drop(free);
                if mode == RunMode::UntilIdle && running.is_empty() {
                    break;
                }
                let idle = returns.wait(self.clock.now_ms(), self.idle_poll);
                let nudge = self.websub.as_ref().map(ConnectorWebSub::nudge);
                if wait_or_stop_or_nudge(&stop, idle, &mut running, nudge).await {
                    break;
                }
                continue;
            }
            for claim in claims {
                // The claim asked for at most as many targets as `free` holds permits.
                let Some(slot) = free.split(1) else {
                    let _ = self.backend.release(&claim, claim.target.next_run_at).await;
                    continue;
                };
                // Every line logged during the call says whose call it is.
                let span = tracing::info_span!("poll", connector = %self.connector,
                    target_id = claim.target.id);
                running.spawn(
                    self.clone()
                        .execute(claim, slot, commit_slots.clone(), returns.clone())
                        .instrument(span),
                );
            }
        }
        drain(&self.connector, running, grace).await;
    }

    async fn execute(
        self: Arc<Self>,
        claim: TargetClaim,
        slot: OwnedSemaphorePermit,
        commit_slots: Arc<Semaphore>,
        returns: Arc<Returns>,
    ) {
        let started = std::time::Instant::now();
        self.stats.call_started();
        self.poll_and_commit(&claim, slot, &commit_slots, &returns)
            .await;
        self.stats.call_finished();
        self.stats.record_latency(started.elapsed());
    }

    async fn poll_and_commit(
        &self,
        claim: &TargetClaim,
        slot: OwnedSemaphorePermit,
        commit_slots: &Semaphore,
        returns: &Returns,
    ) {
        let target = &claim.target;
        // The URL as logs may show it; the request itself uses `target.target`.
        let shown = redact::url(&target.target);
        let mut call = TargetCall::new(target.id, &target.target);
        let delivery = match &self.websub {
            Some(websub) => websub.waiting(target.id).await,
            None => None,
        };
        let delivery_id = delivery.as_ref().map(|delivery| delivery.id);
        call.pushed = delivery.map(|delivery| crate::egress::PushedContent {
            content_type: delivery.content_type,
            body: delivery.body.into(),
        });
        let mut outcome = self
            .poller
            .poll(
                call,
                target.etag.clone(),
                target.last_modified.clone(),
                target.cursor.clone(),
            )
            .await;
        super::count_upstream(&self.stats, &outcome.exchanges);
        let mut hints = hints_from(&outcome.exchanges, outcome.result.as_ref().ok());
        let pushed_read = outcome.exchanges.iter().any(|exchange| exchange.pushed);
        if let Some(websub) = &self.websub
            && outcome.result.is_ok()
        {
            let hubs = std::mem::take(&mut outcome.hubs);
            if !hubs.is_empty() {
                websub.discovered(target.id, hubs);
            }
            // Only a success's next run depends on it.
            hints.pushed = websub.subscribed(target.id).await;
        }
        let now = self.clock.now_ms();
        if outcome.result.is_err()
            && let Some(refusal) = outcome.exchanges.iter().find_map(|e| e.refused.as_deref())
        {
            // Our own policy refused it: a configuration problem, which retrying on the
            // upstream-failure schedule would only turn into a dead letter.
            drop(slot);
            tracing::warn!(connector = %self.connector, target = %shown,
                "parked until a reload changes the connector's egress rules: {refusal}");
            match self.backend.park_refused(claim, refusal, now).await {
                // Counted once stored, so whoever reads the counter finds the target parked.
                Ok(true) => self.stats.poll_refused(),
                Ok(false) => tracing::warn!(connector = %self.connector, target = %shown,
                    "lease lost before the refused target was parked"),
                Err(error) => tracing::error!(connector = %self.connector, target = %shown,
                    "cannot park the refused target; it returns when its lease expires: {error}"),
            }
            return;
        }
        if outcome.result.is_err()
            && let Some(until) = outcome
                .exchanges
                .iter()
                .filter_map(ExchangeRecord::deferred_until)
                .max()
        {
            // A budget or an open breaker held the call back: not the target's failure. It
            // comes back when there is room, its error count untouched.
            drop(slot);
            self.stats.poll_deferred();
            tracing::debug!(connector = %self.connector, target = %shown,
                "deferred until {}", crate::clock::rfc3339(until));
            returns.note(until.max(now));
            if let Err(error) = self.backend.release(claim, until.max(now)).await {
                tracing::error!(connector = %self.connector, target = %shown,
                    "cannot put the deferred target back; it returns when its lease expires: {error}");
            }
            return;
        }
        if outcome.result.is_err()
            && let Some((problem, url)) = self.pause.matches(&outcome.exchanges)
        {
            // The upstream says this connector may not call it for now (a usage cap): retrying
            // target by target would only burn calls. Pause the connector (before freeing the
            // slot, so the claim loop sees it); the target goes back as it was, its error count
            // untouched.
            let until = self.pause.pause_for.map(|pause| {
                now.saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX))
            });
            let reason = format!("{problem} from {url}");
            tracing::warn!(connector = %self.connector, target = %shown,
                "pausing the connector: {reason}; resume with POST /v1/connectors/{}/resume{}",
                self.connector,
                until.map(|u| format!(" or wait until {}", crate::clock::rfc3339(u))).unwrap_or_default());
            self.stats.pause(crate::stats::Pause {
                reason,
                since: now,
                until,
            });
            drop(slot);
            if let Err(error) = self
                .backend
                .release(claim, target.next_run_at.max(now))
                .await
            {
                tracing::error!(connector = %self.connector, target = %shown,
                    "cannot put the target back; it returns when its lease expires: {error}");
            }
            return;
        }
        let mut dropped = Dropped::default();
        let (commit, seen, not_modified) = match outcome.result {
            Ok(result) => {
                let next = self
                    .policy
                    .after_success(target, activity(target, &result), hints, now);
                let not_modified = result.not_modified;
                let validators = validators_after(target, &result);
                let items = accept_items(&self.connector, &shown, result.items);
                let (mut items, filtered) = self.filters.apply(items);
                dropped = filtered;
                for item in &mut items {
                    item.origin.clone_from(&self.origin);
                }
                let seen = items.len();
                let commit = PollCommit::Success {
                    items,
                    etag: validators.etag,
                    last_modified: validators.last_modified,
                    cursor: validators.cursor,
                    state_writes: outcome.state_writes.into_iter().collect(),
                    next_run_at: next.at,
                    interval_ms: next.interval_ms,
                    deliver_to: self.deliver_to.clone(),
                };
                (commit, Some(seen), not_modified)
            }
            Err(error @ (CallError::HostService(_) | CallError::Instantiate(_))) => {
                let failure = redact::text(&error.to_string()).into_owned();
                self.stats.host_failure();
                // The store, another host service or instantiation (a full instance pool)
                // failed, not the target: try again soon, without counting it against the
                // target.
                tracing::error!(connector = %self.connector, target = %shown,
                    "host failure during the call; releasing the target: {failure}");
                let retry_at = now.saturating_add(HOST_FAILURE_RETRY_MS);
                if let Err(error) = self.backend.release(claim, retry_at).await {
                    tracing::error!(connector = %self.connector, target = %shown,
                        "cannot release the target; it returns when its lease expires: {error}");
                }
                return;
            }
            Err(error) => {
                let next = self.policy.after_failure(target, &error, hints, now);
                let message = describe_failure(&error, &outcome.exchanges);
                tracing::info!(connector = %self.connector, target = %shown,
                    errors_in_a_row = target.error_count + 1, "poll failed: {message}");
                self.stats.poll_failed(&target.target, &message, now);
                if next.give_up {
                    tracing::warn!(connector = %self.connector, target = %shown,
                        errors_in_a_row = target.error_count + 1,
                        "giving the target up (dead-lettered; see `tsunagi dlq`): {message}");
                }
                let commit = PollCommit::Failure {
                    error: message,
                    next_run_at: next.at,
                    dead: next.give_up,
                };
                (commit, None, false)
            }
        };
        let Ok(_commit_slot) = commit_slots.acquire().await else {
            return;
        };
        drop(slot);
        let committed = self.backend.complete_poll(claim, commit, now).await;
        if let Some(websub) = &self.websub
            && committed.is_ok()
        {
            // Read by the call, whatever it made of it: a delivery the connector cannot read
            // must not come back forever (the failure is the target's, as a bad fetch is).
            let read = delivery_id.filter(|_| pushed_read);
            websub.after_poll(read, target.id, &target.target).await;
        }
        match committed {
            Ok(report) if report.lease_lost => {
                tracing::warn!(connector = %self.connector, target = %shown,
                    "lease lost before the poll was committed; another worker owns the target now");
            }
            Ok(report) => {
                if let Some(seen) = seen {
                    self.stats.items_filtered(dropped);
                    self.stats
                        .poll_succeeded(not_modified, seen, report.new_items);
                }
            }
            Err(error) => {
                tracing::error!(connector = %self.connector, target = %shown,
                    "cannot commit the poll; the target will be retried when its lease expires: {error}");
            }
        }
    }
}

/// Drops items no store could key, and caps how many one poll may bring.
fn accept_items(connector: &str, target: &str, mut items: Vec<Item>) -> Vec<Item> {
    let before = items.len();
    items.retain(|item| !item.id.trim().is_empty());
    if items.len() < before {
        tracing::warn!(%connector, %target, "dropped {} items without an id", before - items.len());
    }
    if items.len() > MAX_ITEMS_PER_POLL {
        tracing::warn!(%connector, %target,
            "poll returned {} items; keeping the first {MAX_ITEMS_PER_POLL}", items.len());
        items.truncate(MAX_ITEMS_PER_POLL);
    }
    items
}

/// The validators and cursor a target keeps after a successful poll.
#[derive(Debug, PartialEq, Eq)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
    cursor: Option<String>,
}

/// A 304 carries no new validators, so the ones that earned it are kept (a plugin need not echo
/// them); a full answer's validators replace the old ones, even by none. The cursor is kept
/// unless the plugin moves it.
fn validators_after(target: &tsunagi_backends::Target, result: &PollResult) -> Validators {
    let kept = |new: &Option<String>, old: &Option<String>| {
        new.clone()
            .or_else(|| result.not_modified.then(|| old.clone()).flatten())
    };
    Validators {
        etag: kept(&result.etag, &target.etag),
        last_modified: kept(&result.last_modified, &target.last_modified),
        cursor: result.cursor.clone().or_else(|| target.cursor.clone()),
    }
}

fn hints_from(exchanges: &[ExchangeRecord], result: Option<&PollResult>) -> UpstreamHints {
    UpstreamHints {
        retry_after: exchanges.iter().filter_map(|e| e.retry_after).max(),
        max_age: exchanges.iter().rev().find_map(|e| e.max_age),
        feed_ttl: result.and_then(|r| r.refresh_after),
        pushed: false,
    }
}

/// The failure as stored and shown: the plugin's account, plus what the host saw if the plugin
/// did not say it (a refused or timed-out exchange).
pub(super) fn describe_failure(error: &CallError, exchanges: &[ExchangeRecord]) -> String {
    let mut message = error.to_string();
    for host_error in exchanges.iter().filter_map(|e| e.error.as_deref()) {
        if !message.contains(host_error) {
            message.push_str(&format!(" [host: {host_error}]"));
        }
    }
    if let Some(status) = exchanges.last().and_then(|e| e.status)
        && !message.contains(&status.to_string())
    {
        message.push_str(&format!(" [HTTP {status}]"));
    }
    // Plugin messages and transport errors may quote a URL whole.
    redact::text(&message).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_backends::Target;

    fn target() -> Target {
        Target {
            id: 1,
            connector: "rss".into(),
            target: "http://127.0.0.1/feed".into(),
            next_run_at: 0,
            etag: Some("\"old\"".into()),
            last_modified: Some("Mon, 01 Dec 2025 00:00:00 GMT".into()),
            cursor: Some("page-3".into()),
            error_count: 0,
            last_error: None,
            last_polled_at: None,
            interval_ms: None,
            dead_at: None,
            history: Vec::new(),
            refused_at: None,
            refused_reason: None,
        }
    }

    #[test]
    fn a_304_keeps_the_validators_that_earned_it() {
        let result = PollResult {
            not_modified: true,
            ..PollResult::default()
        };
        let kept = validators_after(&target(), &result);
        assert_eq!(kept.etag.as_deref(), Some("\"old\""));
        assert_eq!(
            kept.last_modified.as_deref(),
            Some("Mon, 01 Dec 2025 00:00:00 GMT")
        );
        assert_eq!(kept.cursor.as_deref(), Some("page-3"));
    }

    #[test]
    fn a_full_answer_replaces_the_validators_even_by_none() {
        let result = PollResult {
            etag: Some("\"new\"".into()),
            ..PollResult::default()
        };
        let after = validators_after(&target(), &result);
        assert_eq!(after.etag.as_deref(), Some("\"new\""));
        assert_eq!(after.last_modified, None, "the new answer has none");
        assert_eq!(after.cursor.as_deref(), Some("page-3"), "the cursor stays");
        let moved = PollResult {
            cursor: Some("page-4".into()),
            ..PollResult::default()
        };
        assert_eq!(
            validators_after(&target(), &moved).cursor.as_deref(),
            Some("page-4")
        );
    }

    fn item(id: &str) -> Item {
        Item {
            id: id.to_string(),
            ..Item::default()
        }
    }

    #[test]
    fn items_without_an_id_are_dropped_and_a_poll_is_capped() {
        let items = vec![item("a"), item(""), item("  "), item("b")];
        let ids: Vec<String> = accept_items("rss", "t", items)
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let many: Vec<Item> = (0..MAX_ITEMS_PER_POLL + 5)
            .map(|n| item(&n.to_string()))
            .collect();
        let kept = accept_items("rss", "t", many);
        assert_eq!(kept.len(), MAX_ITEMS_PER_POLL);
        assert_eq!(kept[0].id, "0", "the first ones are kept");
    }

    #[test]
    fn hints_take_the_longest_retry_after_and_the_last_max_age() {
        let exchanges = vec![
            ExchangeRecord {
                retry_after: Some(Duration::from_secs(30)),
                max_age: Some(Duration::from_secs(60)),
                ..ExchangeRecord::default()
            },
            ExchangeRecord {
                retry_after: Some(Duration::from_secs(10)),
                max_age: Some(Duration::from_secs(5)),
                ..ExchangeRecord::default()
            },
        ];
        let result = PollResult {
            refresh_after: Some(Duration::from_secs(900)),
            ..PollResult::default()
        };
        let hints = hints_from(&exchanges, Some(&result));
        assert_eq!(hints.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(hints.max_age, Some(Duration::from_secs(5)));
        assert_eq!(hints.feed_ttl, Some(Duration::from_secs(900)));
        assert_eq!(hints_from(&[], None).feed_ttl, None);
    }

    #[test]
    fn a_failure_says_what_the_host_saw_when_the_plugin_did_not() {
        let error = CallError::Connector {
            kind: crate::runtime::FailureKind::Transient,
            message: "feed unavailable".into(),
        };
        let exchanges = vec![ExchangeRecord {
            status: Some(503),
            error: Some("response body larger than the 10-byte limit".into()),
            ..ExchangeRecord::default()
        }];
        assert_eq!(
            describe_failure(&error, &exchanges),
            "transient error: feed unavailable \
             [host: response body larger than the 10-byte limit] [HTTP 503]"
        );
        let said = CallError::Connector {
            kind: crate::runtime::FailureKind::Transient,
            message: "HTTP 503 from the feed".into(),
        };
        let plain = vec![ExchangeRecord {
            status: Some(503),
            ..ExchangeRecord::default()
        }];
        assert_eq!(
            describe_failure(&said, &plain),
            "transient error: HTTP 503 from the feed",
            "nothing repeated"
        );
    }
}
