//! Retention: what a long-running host forgets, so its store stops growing once it has
//! reached its working size. A [`Retention`] runner makes a pass at start and then every
//! `host.retention_interval`:
//!
//! 1. done jobs finished more than `host.keep_done_jobs` ago are deleted (dead ones stay, for
//!    `tsunagi dlq`), in the database and, when `[backends] queue` puts handler jobs there, on
//!    the Redis queue;
//! 2. each connector's items older than its `keep_items`, or beyond its newest
//!    `keep_items_count`, are forgotten oldest first: deleted, their ids remembered so a feed
//!    that still lists one does not bring it back as new. Items a queued or leased delivery
//!    holds are kept until it is done (or dead);
//! 3. forgotten ids no poll has returned for `host.keep_forgotten_ids` are dropped, and beyond
//!    `host.max_forgotten_ids` the least recently seen go too;
//! 4. the store is measured (bytes, rows per table) for `/status`, so `/status` itself never
//!    counts a large table.
//!
//! Every step is a series of batches of at most [`BATCH_ROWS`] rows, each its own short write
//! transaction on the backend's writer, and the runner lets go of the writer between them:
//! a claim or poll commit that arrives during a pass waits for at most the one batch running
//! when it arrived (see `docs/BENCHMARKS.md` for what that costs in milliseconds).

use crate::clock::{SharedClock, rfc3339};
use crate::config::Config;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::redis::queue::RedisJobQueue;
use tsunagi_backends::{Backend, BackendError, ForgetReport, ItemPosition, Millis, StorageStats};

/// Rows one batch deletes at most.
pub const BATCH_ROWS: u32 = 500;

/// What to keep, from the config (`[host]` and each `[connectors.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRules {
    pub keep_done_jobs: Duration,
    pub interval: Duration,
    pub keep_forgotten_ids: Duration,
    pub max_forgotten_ids: u64,
    /// Connectors with an item rule; the others keep every item.
    pub items: BTreeMap<String, ItemRule>,
}

/// A connector's item rule: an item goes when it is older than `keep_for` or not among the
/// newest `keep_count` (either alone, or both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemRule {
    pub keep_for: Option<Duration>,
    pub keep_count: Option<u64>,
}

impl RetentionRules {
    pub fn from_config(config: &Config) -> Self {
        let host = &config.host;
        Self {
            keep_done_jobs: host.keep_done_jobs,
            interval: host.retention_interval,
            keep_forgotten_ids: host.keep_forgotten_ids,
            max_forgotten_ids: host.max_forgotten_ids,
            items: config
                .connectors
                .iter()
                .filter(|(_, c)| c.keep_items.is_some() || c.keep_items_count.is_some())
                .map(|(name, c)| {
                    let rule = ItemRule {
                        keep_for: c.keep_items,
                        keep_count: c.keep_items_count,
                    };
                    (name.clone(), rule)
                })
                .collect(),
        }
    }
}

/// One batch of a pass, as handed to [`Retention::pass_with`]'s observer after it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    DoneJobs {
        purged: u64,
    },
    Items {
        connector: String,
        report: ForgetReport,
    },
    ForgottenIds {
        purged: u64,
    },
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// When the pass started (RFC 3339).
    pub started_at: String,
    pub took_ms: u64,
    /// Write transactions the pass made.
    pub batches: u64,
    pub done_jobs_purged: u64,
    /// Per connector with an item rule.
    pub items_forgotten: BTreeMap<String, u64>,
    /// Items the rule would have forgotten but a waiting delivery held (at the last batch);
    /// retried next pass.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub items_held_for_delivery: BTreeMap<String, u64>,
    pub forgotten_ids_purged: u64,
    /// Of those, the ones dropped (least recently seen first) to stay within
    /// `host.max_forgotten_ids`.
    #[serde(skip_serializing_if = "is_zero")]
    pub forgotten_ids_over_cap: u64,
    /// The host stopped during the pass; the rest waits for the next start.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `storage` section of `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageStatus {
    /// When the figures below were measured (RFC 3339), at the end of the last pass.
    pub measured_at: String,
    #[serde(flatten)]
    pub stats: StorageStats,
    pub last_pass: Option<PassReport>,
}

/// The retention runner of one host.
pub struct Retention {
    backend: Arc<dyn Backend>,
    /// The handler job queue when it is on Redis (`[backends] queue`): its done jobs go too.
    redis_queue: Option<RedisJobQueue>,
    clock: SharedClock,
    rules: RwLock<RetentionRules>,
    batch_rows: u32,
    storage: Mutex<Option<(Millis, StorageStats)>>,
    last_pass: Mutex<Option<PassReport>>,
    /// Passes finished so far.
    passes: watch::Sender<u64>,
}

impl Retention {
    pub fn new(backend: Arc<dyn Backend>, clock: SharedClock, rules: RetentionRules) -> Self {
        Self::with_batch_rows(backend, clock, rules, BATCH_ROWS)
    }

    /// A runner with smaller (or larger) batches than [`BATCH_ROWS`], for tests and benchmarks.
    pub fn with_batch_rows(
        backend: Arc<dyn Backend>,
        clock: SharedClock,
        rules: RetentionRules,
        batch_rows: u32,
    ) -> Self {
        Self {
            backend,
            redis_queue: None,
            clock,
            rules: RwLock::new(rules),
            batch_rows: batch_rows.max(1),
            storage: Mutex::new(None),
            last_pass: Mutex::new(None),
            passes: watch::channel(0).0,
        }
    }

    /// Purges done jobs on `queue` as well (the host's handler jobs live there).
    pub fn with_redis_queue(mut self, queue: Option<RedisJobQueue>) -> Self {
        self.redis_queue = queue;
        self
    }

    /// Takes the rules of a config the host reloaded; the next pass (and the next wait) uses
    /// them.
    pub fn apply(&self, config: &Config) {
        let rules = RetentionRules::from_config(config);
        let mut current = self
            .rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != rules {
            tracing::info!(?rules, "retention rules changed");
            *current = rules;
        }
    }

    pub fn rules(&self) -> RetentionRules {
        self.rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The latest measurement and pass, for `/status`; `None` until the first pass ends.
    pub fn status(&self) -> Option<StorageStatus> {
        let (measured_at, stats) = lock(&self.storage).clone()?;
        Some(StorageStatus {
            measured_at: rfc3339(measured_at),
            stats,
            last_pass: lock(&self.last_pass).clone(),
        })
    }

    /// Counts finished passes: a test (or a tool) awaits the next one instead of sleeping.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Makes a pass at once and then every `interval`, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            self.pass(&stop).await;
            let interval = self.rules().interval;
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One pass (see the module documentation); a backend error ends it early and is in the
    /// report.
    pub async fn pass(&self, stop: &CancellationToken) -> PassReport {
        self.pass_with(stop, async |_: &Batch| {}).await
    }

    /// One pass, calling `between` after each batch has committed, while the pass holds no
    /// transaction.
    pub async fn pass_with(
        &self,
        stop: &CancellationToken,
        mut between: impl AsyncFnMut(&Batch),
    ) -> PassReport {
        let started = Instant::now();
        let now = self.clock.now_ms();
        let mut report = PassReport {
            started_at: rfc3339(now),
            ..PassReport::default()
        };
        let outcome = self.batches(now, stop, &mut report, &mut between).await;
        match outcome {
            Ok(()) if !report.stopped_early => match self.backend.storage_stats().await {
                Ok(stats) => *lock(&self.storage) = Some((self.clock.now_ms(), stats)),
                Err(error) => report.error = Some(error.to_string()),
            },
            Ok(()) => {}
            Err(error) => report.error = Some(error.to_string()),
        }
        report.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &report.error {
            Some(error) => tracing::error!(report = ?report, "retention pass failed: {error}"),
            None => tracing::info!(report = ?report, "retention pass done"),
        }
        *lock(&self.last_pass) = Some(report.clone());
        self.passes.send_modify(|passes| *passes += 1);
        report
    }

    async fn batches(
        &self,
        now: Millis,
        stop: &CancellationToken,
        report: &mut PassReport,
        between: &mut impl AsyncFnMut(&Batch),
    ) -> Result<(), BackendError> {
        let rules = self.rules();
        let limit = self.batch_rows;
        let full = u64::from(limit);

        let done_before = now.saturating_sub(millis(rules.keep_done_jobs));
        loop {
            if stopped(stop, report) {
                return Ok(());
            }
            let purged = self.backend.purge_done_jobs(done_before, limit).await?;
            report.done_jobs_purged += purged;
            self.after_batch(report, between, &Batch::DoneJobs { purged })
                .await;
            if purged < full {
                break;
            }
        }
        if let Some(queue) = &self.redis_queue {
            loop {
                if stopped(stop, report) {
                    return Ok(());
                }
                let purged = queue.purge_done_jobs(done_before, limit).await?;
                report.done_jobs_purged += purged;
                self.after_batch(report, between, &Batch::DoneJobs { purged })
                    .await;
                if purged < full {
                    break;
                }
            }
        }

        for (connector, rule) in &rules.items {
            let Some(before) = self.forget_before(connector, rule, now).await? else {
                continue;
            };
            report.items_forgotten.entry(connector.clone()).or_default();
            loop {
                if stopped(stop, report) {
                    return Ok(());
                }
                let counts = self
                    .backend
                    .forget_items(connector, before, now, limit)
                    .await?;
                *report.items_forgotten.entry(connector.clone()).or_default() += counts.forgotten;
                if counts.held > 0 {
                    report
                        .items_held_for_delivery
                        .insert(connector.clone(), counts.held);
                }
                let batch = Batch::Items {
                    connector: connector.clone(),
                    report: counts,
                };
                self.after_batch(report, between, &batch).await;
                // Items leave oldest first: once the front is held, the rest waits too.
                if counts.examined < full || counts.held > 0 {
                    break;
                }
            }
        }

        let seen_before = now.saturating_sub(millis(rules.keep_forgotten_ids));
        loop {
            if stopped(stop, report) {
                return Ok(());
            }
            let purged = self.backend.purge_forgotten_ids(seen_before, limit).await?;
            report.forgotten_ids_purged += purged;
            self.after_batch(report, between, &Batch::ForgottenIds { purged })
                .await;
            if purged < full {
                break;
            }
        }
        let mut over_cap = self
            .backend
            .count_forgotten_ids()
            .await?
            .saturating_sub(rules.max_forgotten_ids);
        while over_cap > 0 {
            if stopped(stop, report) {
                return Ok(());
            }
            let take = u32::try_from(over_cap.min(full)).unwrap_or(limit);
            let purged = self.backend.purge_forgotten_ids(Millis::MAX, take).await?;
            report.forgotten_ids_purged += purged;
            report.forgotten_ids_over_cap += purged;
            self.after_batch(report, between, &Batch::ForgottenIds { purged })
                .await;
            if purged == 0 {
                break;
            }
            over_cap = over_cap.saturating_sub(purged);
        }
        stopped(stop, report);
        Ok(())
    }

    /// The position before which `rule` forgets `connector`'s items: the later of its age and
    /// count cutoffs. `None` when neither applies yet.
    async fn forget_before(
        &self,
        connector: &str,
        rule: &ItemRule,
        now: Millis,
    ) -> Result<Option<ItemPosition>, BackendError> {
        let by_age = rule
            .keep_for
            .map(|keep| ItemPosition::fetched_at(now.saturating_sub(millis(keep))));
        let by_count = match rule.keep_count {
            Some(keep) => self.backend.newest_items_start(connector, keep).await?,
            None => None,
        };
        Ok(by_age.max(by_count))
    }

    async fn after_batch(
        &self,
        report: &mut PassReport,
        between: &mut impl AsyncFnMut(&Batch),
        batch: &Batch,
    ) {
        report.batches += 1;
        // Lets the tasks waiting on this thread run before the next batch is asked for.
        tokio::task::yield_now().await;
        between(batch).await;
    }
}

fn stopped(stop: &CancellationToken, report: &mut PassReport) -> bool {
    if stop.is_cancelled() {
        report.stopped_early = true;
    }
    report.stopped_early
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tsunagi_backends::{Item, PollCommit, TargetClaim};

    const DAY: Duration = Duration::from_secs(24 * 3600);
    const LEASE: Duration = Duration::from_secs(60);
    /// Long enough for a claim on a loaded machine, short enough that a writer held across
    /// batches fails the test instead of hanging it.
    const BOUND: Duration = Duration::from_secs(20);

    struct Store {
        backend: Arc<dyn Backend>,
        clock: ManualClock,
        _dir: tempfile::TempDir,
    }

    async fn store() -> Store {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("retention.db").display());
        Store {
            backend: tsunagi_backends::open(&url).await.expect("backend"),
            clock: ManualClock::starting_at(1_700_000_000_000),
            _dir: dir,
        }
    }

    fn commit(ids: impl IntoIterator<Item = String>, next_run_at: Millis) -> PollCommit {
        PollCommit::Success {
            items: ids
                .into_iter()
                .map(|id| Item {
                    id,
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

    /// Stores `feeds × per_feed` items of `connector`, fetched at `at`.
    async fn fill(
        backend: &dyn Backend,
        connector: &str,
        feeds: usize,
        per_feed: usize,
        at: Millis,
    ) {
        let targets: Vec<String> = (0..feeds).map(|f| format!("old-{f}")).collect();
        backend
            .add_targets(connector, &targets, at)
            .await
            .expect("add");
        let claims = backend
            .claim_due(connector, "filler", at, LEASE, feeds as u32)
            .await
            .expect("claim");
        assert_eq!(claims.len(), feeds);
        for claim in claims {
            let ids = (0..per_feed).map(|n| format!("{}#{n}", claim.target.target));
            let report = backend
                .complete_poll(&claim, commit(ids, Millis::MAX / 2), at)
                .await
                .expect("commit");
            assert_eq!(report.new_items, per_feed as u64);
        }
    }

    /// One unit of crawl work: claims a due target and commits one new item for it.
    async fn claim_and_commit(backend: &dyn Backend, connector: &str, now: Millis, n: u64) {
        let claims: Vec<TargetClaim> = backend
            .claim_due(connector, "crawler", now, LEASE, 1)
            .await
            .expect("claim");
        let claim = claims.first().expect("a live target is due");
        let report = backend
            .complete_poll(claim, commit([format!("live-{n}")], now), now)
            .await
            .expect("commit");
        assert_eq!((report.new_items, report.lease_lost), (1, false));
    }

    fn rules(items: &[(&str, ItemRule)]) -> RetentionRules {
        RetentionRules {
            keep_done_jobs: 7 * DAY,
            interval: Duration::from_secs(3600),
            keep_forgotten_ids: 365 * DAY,
            max_forgotten_ids: 10_000_000,
            items: items
                .iter()
                .map(|(name, rule)| (name.to_string(), *rule))
                .collect(),
        }
    }

    const AGE_90D: ItemRule = ItemRule {
        keep_for: Some(Duration::from_secs(90 * 24 * 3600)),
        keep_count: None,
    };

    /// The stated bound, made structural: each batch is its own transaction of at most
    /// `batch_rows` rows and the writer is free between batches, so a claim and a poll commit
    /// complete in every gap of a pass over a large table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_and_poll_commits_complete_between_the_batches_of_a_pass() {
        let Store {
            backend,
            clock,
            _dir,
        } = store().await;
        let now = clock.now_ms();
        fill(&*backend, "rss", 40, 100, now - millis(100 * DAY)).await;
        let live: Vec<String> = (0..100).map(|n| format!("live-{n}")).collect();
        backend.add_targets("rss", &live, now).await.expect("add");
        let retention = Retention::with_batch_rows(
            backend.clone(),
            Arc::new(clock.clone()),
            rules(&[("rss", AGE_90D)]),
            100,
        );

        let mut batches = Vec::new();
        let mut gaps = 0;
        let report = retention
            .pass_with(&CancellationToken::new(), async |batch: &Batch| {
                batches.push(batch.clone());
                let work = claim_and_commit(&*backend, "rss", now, gaps);
                tokio::time::timeout(BOUND, work)
                    .await
                    .expect("a claim and a poll commit finish between two batches");
                gaps += 1;
            })
            .await;

        assert_eq!(report.error, None);
        assert_eq!(report.items_forgotten["rss"], 4000);
        let item_batches: Vec<ForgetReport> = batches
            .iter()
            .filter_map(|batch| match batch {
                Batch::Items { report, .. } => Some(*report),
                _ => None,
            })
            .collect();
        assert_eq!(
            item_batches.len(),
            41,
            "40 full batches, then one that finds the rest young"
        );
        assert!(
            item_batches
                .iter()
                .all(|b| b.examined <= 100 && b.held == 0)
        );
        assert_eq!(report.batches, batches.len() as u64);
        assert_eq!(gaps, report.batches, "work ran in every gap");
        assert_eq!(
            backend.count_items(Some("rss")).await.expect("count"),
            gaps,
            "the crawl's new items stay; every old one went"
        );
    }

    /// A crawl beside the pass (not driven by it) keeps committing while the pass runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crawl_beside_a_pass_keeps_committing_while_it_runs() {
        let Store {
            backend,
            clock,
            _dir,
        } = store().await;
        let now = clock.now_ms();
        fill(&*backend, "rss", 40, 100, now - millis(100 * DAY)).await;
        let live: Vec<String> = (0..64).map(|n| format!("live-{n}")).collect();
        backend.add_targets("rss", &live, now).await.expect("add");
        let retention = Retention::with_batch_rows(
            backend.clone(),
            Arc::new(clock.clone()),
            rules(&[("rss", AGE_90D)]),
            100,
        );
        let committed = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let crawler = tokio::spawn({
            let (backend, committed, stop) = (backend.clone(), committed.clone(), stop.clone());
            async move {
                while !stop.is_cancelled() {
                    let n = committed.load(Ordering::SeqCst);
                    claim_and_commit(&*backend, "rss", now, n).await;
                    committed.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let mut seen = Vec::new();
        let report = retention
            .pass_with(&CancellationToken::new(), async |_: &Batch| {
                seen.push(committed.load(Ordering::SeqCst));
            })
            .await;
        stop.cancel();
        tokio::time::timeout(BOUND, crawler)
            .await
            .expect("the crawler stops")
            .expect("the crawler did not panic");

        assert_eq!(report.items_forgotten["rss"], 4000);
        let during = seen.last().copied().unwrap_or(0) - seen.first().copied().unwrap_or(0);
        eprintln!(
            "{} batches; commits seen at the gaps: {seen:?}",
            report.batches
        );
        // Each unit of crawl work is two writes (claim, commit), each waiting for at most the
        // batch running when it arrived: about one unit per two batches (as printed). An
        // eighth of that leaves room for a loaded machine; a pass holding the writer
        // throughout would show none.
        assert!(
            during * 8 >= report.batches,
            "{during} commits completed during {} batches: {seen:?}",
            report.batches
        );
        let total = committed.load(Ordering::SeqCst);
        assert_eq!(
            backend.count_items(Some("rss")).await.expect("count"),
            total
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn age_and_count_rules_take_the_later_cutoff_and_the_store_is_measured() {
        let Store {
            backend,
            clock,
            _dir,
        } = store().await;
        let now = clock.now_ms();
        for connector in ["both", "age"] {
            fill(&*backend, connector, 2, 5, now - millis(100 * DAY)).await;
        }
        // Ten young items each, stored after the old ones.
        for connector in ["both", "age"] {
            let young: Vec<String> = (0..10).map(|n| format!("young-{n}")).collect();
            backend
                .add_targets(connector, &young, now)
                .await
                .expect("add");
            for n in 0..10 {
                claim_and_commit(&*backend, connector, now, n).await;
            }
        }
        let retention = Retention::with_batch_rows(
            backend.clone(),
            Arc::new(clock.clone()),
            rules(&[
                (
                    "both",
                    ItemRule {
                        keep_count: Some(4),
                        ..AGE_90D
                    },
                ),
                ("age", AGE_90D),
            ]),
            3,
        );
        assert_eq!(
            retention.status(),
            None,
            "nothing measured before the first pass"
        );
        let mut passes = retention.subscribe();
        let report = retention.pass(&CancellationToken::new()).await;
        assert_eq!(report.error, None);
        assert_eq!(
            report.items_forgotten,
            BTreeMap::from([("age".to_string(), 10), ("both".to_string(), 16)])
        );
        assert_eq!(backend.count_items(Some("both")).await.expect("count"), 4);
        assert_eq!(backend.count_items(Some("age")).await.expect("count"), 10);
        assert!(
            passes.has_changed().expect("sender alive"),
            "a pass is counted"
        );
        assert_eq!(*passes.borrow_and_update(), 1);

        let status = retention.status().expect("measured by the pass");
        assert_eq!(status.stats.rows["items"], 14);
        assert_eq!(status.stats.rows["forgotten_items"], 26);
        assert_eq!(status.stats.rows["targets"], 24);
        assert!(status.stats.database_bytes > 0);
        assert_eq!(status.measured_at, rfc3339(now));
        assert_eq!(status.last_pass, Some(report));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_stops_between_batches_and_the_runner_ends_on_stop() {
        let Store {
            backend,
            clock,
            _dir,
        } = store().await;
        let now = clock.now_ms();
        fill(&*backend, "rss", 10, 100, now - millis(100 * DAY)).await;
        let retention = Arc::new(Retention::with_batch_rows(
            backend.clone(),
            Arc::new(clock.clone()),
            rules(&[("rss", AGE_90D)]),
            100,
        ));
        let stop = CancellationToken::new();
        let report = retention
            .pass_with(&stop, async |batch: &Batch| {
                if matches!(batch, Batch::Items { .. }) {
                    stop.cancel();
                }
            })
            .await;
        assert!(report.stopped_early);
        assert_eq!(
            report.items_forgotten["rss"], 100,
            "one batch, then it stopped"
        );
        assert_eq!(backend.count_items(Some("rss")).await.expect("count"), 900);
        assert_eq!(retention.status(), None, "a stopped pass measures nothing");

        // The runner passes at once, then waits for its interval (an hour) or the stop.
        let stop = CancellationToken::new();
        let mut passes = retention.subscribe();
        passes.mark_unchanged();
        let runner = tokio::spawn(retention.clone().run(stop.clone()));
        tokio::time::timeout(BOUND, passes.changed())
            .await
            .expect("the first pass runs at start")
            .expect("sender alive");
        assert_eq!(backend.count_items(Some("rss")).await.expect("count"), 0);
        stop.cancel();
        tokio::time::timeout(BOUND, runner)
            .await
            .expect("the runner ends on stop")
            .expect("the runner did not panic");
    }

    /// Commits `ids` as a poll of a fresh target of `connector`; returns how many were new.
    async fn poll_back(
        backend: &dyn Backend,
        connector: &str,
        ids: Vec<String>,
        now: Millis,
    ) -> u64 {
        let target = format!("check-{}", ids.len());
        backend
            .add_targets(connector, &[target], now)
            .await
            .expect("add");
        let claims = backend
            .claim_due(connector, "checker", now, LEASE, 1)
            .await
            .expect("claim");
        let claim = claims.first().expect("the check target is due");
        let report = backend
            .complete_poll(claim, commit(ids, Millis::MAX / 2), now)
            .await
            .expect("commit");
        report.new_items
    }

    fn old_ids(feeds: usize, per_feed: usize) -> Vec<String> {
        (0..feeds)
            .flat_map(|f| (0..per_feed).map(move |n| format!("old-{f}#{n}")))
            .collect()
    }

    /// A feed inventing ids on every poll cannot grow the forgotten ids without bound: beyond
    /// the cap the least recently seen go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forgotten_ids_beyond_the_cap_go_least_recently_seen_first() {
        let Store {
            backend,
            clock,
            _dir,
        } = store().await;
        let mut rules = rules(&[("a", AGE_90D), ("b", AGE_90D)]);
        rules.max_forgotten_ids = 60;
        let retention =
            Retention::with_batch_rows(backend.clone(), Arc::new(clock.clone()), rules, 100);
        let old = |clock: &ManualClock| clock.now_ms() - millis(100 * DAY);

        fill(&*backend, "a", 5, 10, old(&clock)).await;
        let first = retention.pass(&CancellationToken::new()).await;
        assert_eq!(first.items_forgotten["a"], 50);
        assert_eq!(first.forgotten_ids_over_cap, 0, "50 is within the cap");

        clock.advance(DAY);
        fill(&*backend, "b", 5, 10, old(&clock)).await;
        let second = retention.pass(&CancellationToken::new()).await;
        assert_eq!(second.error, None);
        assert_eq!(second.items_forgotten["b"], 50);
        assert_eq!(second.forgotten_ids_over_cap, 40, "{second:?}");
        assert_eq!(backend.count_forgotten_ids().await.expect("count"), 60);

        let now = clock.now_ms();
        assert_eq!(
            poll_back(&*backend, "b", old_ids(5, 10), now).await,
            0,
            "b's ids, seen a day later, are all remembered"
        );
        assert_eq!(
            poll_back(&*backend, "a", old_ids(5, 10), now).await,
            40,
            "40 of a's went to make room"
        );
    }

    #[test]
    fn rules_come_from_the_config() {
        let text = "[host]\nkeep_done_jobs = \"3d\"\n\
            [connectors.a]\nplugin = \"a.wasm\"\nrole = \"poller\"\nkeep_items = \"30d\"\n\
            [connectors.b]\nplugin = \"b.wasm\"\nrole = \"poller\"\nkeep_items_count = 10\n\
            [connectors.c]\nplugin = \"c.wasm\"\nrole = \"poller\"\n";
        let config = Config::parse(text, std::path::Path::new("t.toml")).expect("valid");
        let rules = RetentionRules::from_config(&config);
        assert_eq!(rules.keep_done_jobs, 3 * DAY);
        assert_eq!(
            rules.items,
            BTreeMap::from([
                (
                    "a".to_string(),
                    ItemRule {
                        keep_for: Some(30 * DAY),
                        keep_count: None
                    }
                ),
                (
                    "b".to_string(),
                    ItemRule {
                        keep_for: None,
                        keep_count: Some(10)
                    }
                ),
            ]),
            "c keeps every item"
        );
    }
}
