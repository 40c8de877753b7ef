//! The conformance suite every backend must pass (SQLite and PostgreSQL whole; Redis the parts
//! it offers: the job queue, rankings, budgets).
//!
//! Each case is a plain async function holding real assertions; [`conformance_tests!`] turns
//! them into one `#[tokio::test]` per case for a backend, given a factory that returns a fresh,
//! empty [`TestStore`]:
//!
//! ```ignore
//! async fn sqlite_store() -> TestStore { /* open a temp file, see tests/sqlite.rs */ }
//! tsunagi_backends::conformance_tests!(sqlite_store);
//! ```
//!
//! No case sleeps: every time is an explicit [`Millis`] argument, starting at [`T0`]. The
//! calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dependency.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use crate::coordination::{BudgetFill, RateLimitStore};
use crate::ratelimit::{Quota, Reservation};
use crate::{
    AddReport, Attempt, Backend, BackendError, Delivery, ForgetReport, Item, ItemPosition,
    ItemQuery, JobLease, JobQueue, MAX_ERROR_BYTES, MAX_HISTORY, MAX_TARGET_BYTES, Millis, NewJob,
    PollCommit, QueueCounts, StatePut, StateScope, StoredItem, StoredToken, TargetClaim,
};
use crate::{BoardSummary, RankingCap, RankingStore, Standing, TopAndAround, top_and_around};
use crate::{
    EarlierOutcome, Enqueued, JobFailure, JobOutcome, MAX_IDEMPOTENCY_KEY_BYTES,
    MAX_JOB_PAYLOAD_BYTES,
};
use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The clock's starting point in every case.
pub const T0: Millis = 1_700_000_000_000;
/// The lease the cases take unless they test leases.
pub const LEASE: Duration = Duration::from_secs(60);
const LEASE_MS: Millis = 60_000;

/// A future that opens a store instance.
pub type StoreFuture<S> = Pin<Box<dyn Future<Output = Arc<S>> + Send>>;
/// A future that opens a backend instance.
pub type BackendFuture = StoreFuture<dyn Backend>;

/// A fresh, empty store for one case: a backend instance, a way to open a second, independent
/// instance on the same store (as another process would), and whatever must stay alive while
/// the case runs (a temporary directory, a container handle, …).
///
/// `S` is what is under test: a whole [`Backend`] by default, or one trait of it for a store
/// that offers only some ([`JobQueue`], [`RankingStore`] and [`RateLimitStore`] in Redis).
pub struct TestStore<S: ?Sized = dyn Backend> {
    pub backend: Arc<S>,
    reopen: Box<dyn Fn() -> StoreFuture<S> + Send + Sync>,
    /// Dropped last (fields drop in declaration order), after every backend handle above.
    keep_alive: Vec<Box<dyn Any + Send + Sync>>,
}

impl<S: ?Sized + Send + Sync + 'static> TestStore<S> {
    /// `reopen` must open a new instance with its own connections on the same store; for
    /// SQLite that is `SqliteBackend::open` on the same file again.
    pub fn new(
        backend: Arc<S>,
        reopen: impl Fn() -> StoreFuture<S> + Send + Sync + 'static,
    ) -> Self {
        Self {
            backend,
            reopen: Box::new(reopen),
            keep_alive: Vec::new(),
        }
    }

    /// Keeps `guard` alive as long as this store.
    pub fn keep_alive(mut self, guard: impl Any + Send + Sync) -> Self {
        self.keep_alive.push(Box::new(guard));
        self
    }

    /// A second, independent instance on the same store.
    pub async fn reopen(&self) -> Arc<S> {
        (self.reopen)().await
    }
}

impl TestStore {
    /// The same store seen as its [`JobQueue`] only.
    pub fn jobs(self) -> TestStore<dyn JobQueue> {
        let reopen = self.reopen;
        TestStore {
            backend: self.backend,
            reopen: Box::new(move || -> StoreFuture<dyn JobQueue> {
                let opening = reopen();
                Box::pin(async move { opening.await as Arc<dyn JobQueue> })
            }),
            keep_alive: self.keep_alive,
        }
    }

    /// The same store seen as its [`RankingStore`] only.
    pub fn rankings(self) -> TestStore<dyn RankingStore> {
        let reopen = self.reopen;
        TestStore {
            backend: self.backend,
            reopen: Box::new(move || -> StoreFuture<dyn RankingStore> {
                let opening = reopen();
                Box::pin(async move { opening.await as Arc<dyn RankingStore> })
            }),
            keep_alive: self.keep_alive,
        }
    }
}

/// Expands to one `#[tokio::test]` per conformance case. `$factory` is an async fn (or a
/// closure returning a future) producing a fresh, empty [`TestStore`](crate::conformance::TestStore).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@backend $factory;
            add_targets_counts_new_and_already_present,
            list_targets_pages_by_id_and_filters_by_connector,
            remove_target_deletes_its_state_but_keeps_its_items,
            claim_due_takes_only_due_targets_earliest_first,
            claim_due_respects_limit_and_connector,
            leased_target_is_not_claimed_again_until_its_lease_expires,
            count_due_excludes_leased_and_future_targets,
            complete_poll_success_stores_items_and_updates_the_target,
            complete_poll_dedupes_items_across_polls,
            complete_poll_failure_counts_errors_and_keeps_items,
            complete_poll_with_a_lost_lease_writes_nothing,
            complete_poll_applies_state_writes,
            state_scopes_are_separate_namespaces,
            state_put_within_a_cap_counts_bytes_of_what_is_stored,
            delivery_enqueues_one_job_per_queue_with_only_new_items,
            delivery_enqueues_nothing_when_no_item_is_new,
            dead_targets_are_never_claimed_and_can_be_revived_or_dropped,
            pinged_targets_are_due_now_and_dead_or_parked_ones_stay_put,
            target_history_keeps_the_latest_failures_and_a_success_clears_it,
            list_items_filters_and_pages,
            release_clears_the_lease_and_reschedules,
            refused_targets_are_parked_until_released,
            add_targets_refuses_a_batch_with_a_target_over_the_cap,
            stored_errors_are_capped_at_a_char_boundary,
            done_jobs_older_than_the_cutoff_are_purged_in_batches_and_dead_jobs_stay,
            items_before_a_position_are_forgotten_oldest_first_in_batches,
            a_forgotten_item_is_neither_stored_nor_delivered_again,
            items_a_waiting_delivery_holds_are_kept,
            the_count_rule_keeps_the_newest_items,
            forgotten_ids_are_purged_once_unseen_for_the_horizon,
            storage_stats_count_rows_per_table,
        );
        // WebSub: subscriptions and their deliveries.
        $crate::conformance_tests!(@backend $factory;
            subscriptions_are_one_per_target_and_renewed_when_due,
            deliveries_wait_in_order_within_their_caps_and_wake_their_target,
        );
        // Credentials: the token store.
        $crate::conformance_tests!(@backend $factory;
            tokens_are_stored_replaced_listed_and_deleted_per_credential_and_subject,
            a_token_marked_for_relinking_keeps_its_reason_and_an_oversized_one_is_refused,
        );
        // The job queue.
        $crate::job_conformance_tests!(|| async { ($factory)().await.jobs() });
        // Rankings: sorted sets per board.
        $crate::ranking_conformance_tests!(|| async { ($factory)().await.rankings() });
        $crate::conformance_tests!(@store $factory;
            concurrent_claims_in_one_instance_never_overlap,
            concurrent_claims_from_two_instances_never_overlap,
            concurrent_commits_store_each_new_item_once,
            concurrent_commits_of_one_claim_succeed_once,
            concurrent_capped_state_puts_from_two_instances_never_pass_the_cap,
        );
    };
    (@backend $factory:expr; $($case:ident),+ $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let store: $crate::conformance::TestStore = ($factory)().await;
            $crate::conformance::$case(&*store.backend).await;
        }
    )+};
    (@store $factory:expr; $($case:ident),+ $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let store: $crate::conformance::TestStore = ($factory)().await;
            $crate::conformance::$case(&store).await;
        }
    )+};
}

/// Expands to one `#[tokio::test]` per case of the [`JobQueue`] part of the suite, for a store
/// that offers the queue (every [`Backend`]; Redis on its own). `$factory` produces a fresh,
/// empty `TestStore<dyn JobQueue>`.
#[macro_export]
macro_rules! job_conformance_tests {
    ($factory:expr) => {
        $crate::job_conformance_tests!(@one $factory; |store| &*store.backend;
            jobs_are_enqueued_leased_and_completed,
            expired_job_lease_goes_to_another_worker_and_late_completion_is_refused,
            failed_job_with_retry_at_waits_until_then,
            job_with_attempts_exhausted_goes_dead,
            failed_job_without_retry_goes_dead_at_once,
            job_lost_on_its_last_attempt_goes_dead,
            dead_jobs_keep_their_history_and_can_be_retried_or_dropped,
            queue_counts_count_each_state,
            stored_job_errors_are_capped_at_a_char_boundary,
            job_history_keeps_the_latest_failures,
            jobs_carry_kind_target_and_the_earlier_outcome,
            an_idempotency_key_enqueues_once_per_queue,
            dropping_a_dead_job_frees_its_idempotency_key,
            enqueue_refuses_what_is_over_a_cap_and_stores_nothing,
            a_heartbeat_keeps_a_job_from_being_taken_over,
            a_taken_over_or_unknown_attempt_is_handed_on_as_unknown_until_done,
            done_jobs_keep_their_outcome_but_not_their_payload,
            a_deferred_job_comes_back_without_counting_an_attempt,
            a_paused_queue_leases_nothing_until_resumed,
        );
        $crate::job_conformance_tests!(@one $factory; |store| &store;
            concurrent_job_leases_from_two_instances_never_overlap,
        );
    };
    (@one $factory:expr; |$store:ident| $arg:expr; $($case:ident),+ $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let $store: $crate::conformance::TestStore<dyn $crate::JobQueue> =
                ($factory)().await;
            $crate::conformance::$case($arg).await;
        }
    )+};
}

/// Expands to one `#[tokio::test]` per case of the [`RankingStore`] part of the suite, for a
/// store that offers rankings (every [`Backend`]; Redis on its own). `$factory` produces a
/// fresh, empty `TestStore<dyn RankingStore>`.
#[macro_export]
macro_rules! ranking_conformance_tests {
    ($factory:expr) => {
        $crate::ranking_conformance_tests!(@one $factory; |store| &*store.backend;
            ranks_are_shared_in_a_tie_and_the_tie_is_in_member_order,
            around_me_takes_k_either_side_by_position_splitting_ties,
            around_me_at_rank_1_has_nothing_before_and_a_huge_k_is_clamped,
            an_absent_member_has_no_rank_and_nothing_around,
            top_and_around_leaves_out_members_already_in_the_top,
            rank_add_creates_increments_and_saturates,
            a_full_board_refuses_new_members_but_updates_existing_ones,
            names_and_members_over_their_caps_are_refused_and_not_echoed,
            rank_remove_takes_one_member_out_and_ranks_close_up,
            boards_are_listed_by_prefix_and_dropped_whole,
        );
        $crate::ranking_conformance_tests!(@one $factory; |store| &store;
            concurrent_rank_adds_on_one_member_sum_exactly,
            concurrent_new_members_from_two_instances_never_pass_the_cap,
        );
    };
    (@one $factory:expr; |$store:ident| $arg:expr; $($case:ident),+ $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let $store: $crate::conformance::TestStore<dyn $crate::RankingStore> =
                ($factory)().await;
            $crate::conformance::$case($arg).await;
        }
    )+};
}

/// Expands to one `#[tokio::test]` per case of the [`RateLimitStore`] part of the suite (the
/// in-process budgets, Redis). `$factory` produces a fresh, empty
/// `TestStore<dyn RateLimitStore>` whose instances share one clock: the caller's.
#[macro_export]
macro_rules! budget_conformance_tests {
    ($factory:expr) => {
        $crate::budget_conformance_tests!(@one $factory; |store| &*store.backend;
            budgets_are_kept_per_key_and_deny_without_booking,
            reservations_queue_one_emission_interval_apart,
            a_push_back_drains_the_budget_until_then_and_never_pulls_it_earlier,
            the_fill_shows_the_burst_left_and_the_next_free_slot,
        );
        $crate::budget_conformance_tests!(@one $factory; |store| &store;
            concurrent_reservations_from_two_instances_never_pass_the_quota,
        );
    };
    (@one $factory:expr; |$store:ident| $arg:expr; $($case:ident),+ $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let $store: $crate::conformance::TestStore<dyn $crate::coordination::RateLimitStore> =
                ($factory)().await;
            $crate::conformance::$case($arg).await;
        }
    )+};
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn names(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// Deliveries to `queues`, each allowed as many attempts as its name is long (so each job's
/// `max_attempts` can be checked against its own queue).
fn deliveries(queues: &[&str]) -> Vec<Delivery> {
    queues
        .iter()
        .map(|queue| Delivery {
            queue: queue.to_string(),
            max_attempts: queue.len() as u32,
        })
        .collect()
}

/// An item with every field set, so storage round trips are checked field by field.
fn item(id: &str) -> Item {
    Item {
        id: id.to_string(),
        title: Some(format!("Title of {id}")),
        link: Some(format!("https://example.test/{id}")),
        published: Some("2024-01-02T03:04:05Z".to_string()),
        updated: Some("2024-01-03T03:04:05Z".to_string()),
        authors: vec!["Ada".to_string(), "Grace".to_string()],
        summary: Some("A summary with \"quotes\" and ünïcode ✓".to_string()),
        content: Some("<p>content</p>".to_string()),
        categories: vec!["news".to_string()],
        origin: None,
    }
}

fn items(ids: &[&str]) -> Vec<Item> {
    ids.iter().map(|id| item(id)).collect()
}

/// A successful poll returning `items`, due again at `next_run_at`, with nothing else.
fn success(items: Vec<Item>, next_run_at: Millis) -> PollCommit {
    PollCommit::Success {
        items,
        etag: None,
        last_modified: None,
        cursor: None,
        state_writes: Vec::new(),
        next_run_at,
        interval_ms: 3_600_000,
        deliver_to: Vec::new(),
    }
}

fn success_delivering(items: Vec<Item>, next_run_at: Millis, queues: &[&str]) -> PollCommit {
    let mut commit = success(items, next_run_at);
    if let PollCommit::Success { deliver_to, .. } = &mut commit {
        *deliver_to = deliveries(queues);
    }
    commit
}

/// Adds one target and claims it as `worker` at `now`.
async fn add_and_claim(
    b: &dyn Backend,
    connector: &str,
    target: &str,
    worker: &str,
    now: Millis,
) -> TargetClaim {
    b.add_targets(connector, &[target.to_string()], now)
        .await
        .expect("add_targets");
    let mut claims = b
        .claim_due(connector, worker, now, LEASE, 100)
        .await
        .expect("claim_due");
    let index = claims
        .iter()
        .position(|claim| claim.target.target == target)
        .unwrap_or_else(|| panic!("{target} should be claimable at {now}"));
    claims.swap_remove(index)
}

/// Claims the single target of `connector` that is due at `now`.
async fn claim_only(b: &dyn Backend, connector: &str, worker: &str, now: Millis) -> TargetClaim {
    let mut claims = b
        .claim_due(connector, worker, now, LEASE, 10)
        .await
        .expect("claim_due");
    assert_eq!(claims.len(), 1, "exactly one target should be due at {now}");
    claims.remove(0)
}

async fn all_items(b: &dyn Backend, connector: &str) -> Vec<StoredItem> {
    b.list_items(&ItemQuery {
        connector: Some(connector.to_string()),
        limit: 10_000,
        ..ItemQuery::default()
    })
    .await
    .expect("list_items")
}

fn item_ids(items: &[StoredItem]) -> Vec<&str> {
    items.iter().map(|stored| stored.item.id.as_str()).collect()
}

async fn lease_all(b: &dyn JobQueue, queue: &str, worker: &str, now: Millis) -> Vec<JobLease> {
    b.lease_jobs(queue, worker, now, LEASE, 100)
        .await
        .expect("lease_jobs")
}

fn job(queue: &str, payload: &str, max_attempts: u32, run_at: Millis) -> NewJob {
    NewJob::new(queue, payload, max_attempts, run_at)
}

fn delivered(lease: &JobLease) -> Vec<StoredItem> {
    serde_json::from_str(&lease.payload).expect("a delivery payload is a JSON array of items")
}

// ---------------------------------------------------------------------------------------------
// Targets

pub async fn add_targets_counts_new_and_already_present(b: &dyn Backend) {
    let report = b
        .add_targets("rss", &names(&["a", "b", "c"]), T0)
        .await
        .expect("add_targets");
    assert_eq!(
        report,
        AddReport {
            added: 3,
            already_present: 0
        }
    );

    let report = b
        .add_targets("rss", &names(&["b", "c", "d", "d"]), T0 + 5_000)
        .await
        .expect("add_targets");
    assert_eq!(
        report,
        AddReport {
            added: 1,
            already_present: 3
        },
        "b and c exist; the second d repeats the first"
    );

    // The same name under another connector is another target.
    let report = b
        .add_targets("other", &names(&["a"]), T0)
        .await
        .expect("add_targets");
    assert_eq!(report.added, 1);
    assert_eq!(b.count_targets("rss").await.expect("count"), 4);
    assert_eq!(b.count_targets("other").await.expect("count"), 1);
    assert_eq!(b.count_targets("nobody").await.expect("count"), 0);

    // Re-adding leaves an existing target's schedule alone.
    let b_target = b
        .get_target("rss", "b")
        .await
        .expect("get")
        .expect("b exists");
    assert_eq!(b_target.next_run_at, T0);
    let d_target = b
        .get_target("rss", "d")
        .await
        .expect("get")
        .expect("d exists");
    assert_eq!(d_target.next_run_at, T0 + 5_000);
    assert_eq!(d_target.connector, "rss");
    assert_eq!(d_target.target, "d");
    assert_eq!(d_target.error_count, 0);
    assert_eq!(d_target.etag, None);
    assert_eq!(d_target.last_modified, None);
    assert_eq!(d_target.cursor, None);
    assert_eq!(d_target.last_error, None);
    assert_eq!(d_target.last_polled_at, None);
    assert_eq!(d_target.interval_ms, None);

    let empty = b.add_targets("rss", &[], T0).await.expect("add nothing");
    assert_eq!(empty, AddReport::default());
}

pub async fn add_targets_refuses_a_batch_with_a_target_over_the_cap(b: &dyn Backend) {
    let longest = format!("https://a.example/{}", "x".repeat(MAX_TARGET_BYTES - 18));
    assert_eq!(longest.len(), MAX_TARGET_BYTES);
    let too_long = format!("{longest}y");
    let batch = vec!["https://a.example/ok".to_string(), too_long.clone()];
    let error = b
        .add_targets("rss", &batch, T0)
        .await
        .expect_err("a target over the cap is refused");
    let message = error.to_string();
    assert!(
        matches!(error, BackendError::Refused(_))
            && message.contains("target 2 of 2")
            && message.contains(&format!("{} bytes", MAX_TARGET_BYTES + 1)),
        "{message}"
    );
    assert!(
        !message.contains("xxxx"),
        "the target is not echoed: {message}"
    );
    assert_eq!(
        b.count_targets("rss").await.expect("count"),
        0,
        "nothing of a refused batch is stored"
    );
    let empty = b.add_targets("rss", &[String::new()], T0).await;
    assert!(matches!(empty, Err(BackendError::Refused(_))), "{empty:?}");

    let report = b
        .add_targets("rss", std::slice::from_ref(&longest), T0)
        .await
        .expect("a target at the cap is stored");
    assert_eq!(report.added, 1);
    assert!(b.get_target("rss", &longest).await.expect("get").is_some());
}

/// Error texts come from plugins and upstreams; a megabyte of one is cut to the cap, at a
/// character boundary (the text is multi-byte throughout), with a marker.
/// The job queue's part is [`stored_job_errors_are_capped_at_a_char_boundary`].
pub async fn stored_errors_are_capped_at_a_char_boundary(b: &dyn Backend) {
    let huge = "é".repeat(1 << 19);
    let check = |stored: &str, context: &str| check_capped(stored, &huge, context);

    let claim = add_and_claim(b, "rss", "t", "w1", T0).await;
    let commit = PollCommit::Failure {
        error: huge.clone(),
        next_run_at: T0 + 1_000,
        dead: true,
    };
    b.complete_poll(&claim, commit, T0).await.expect("commit");
    let target = b.get_target("rss", "t").await.expect("get").expect("kept");
    check(
        target.last_error.as_deref().expect("last_error"),
        "target last_error",
    );
    check(&target.history[0].error, "target history");
}

/// `stored` is `huge` (a run of `é`) cut at the cap, with the marker saying how long it was.
fn check_capped(stored: &str, huge: &str, context: &str) {
    assert!(
        stored.len() <= MAX_ERROR_BYTES,
        "{context}: {} bytes",
        stored.len()
    );
    assert!(
        stored.starts_with("éé")
            && stored.ends_with(&format!("[cut; {} bytes in all]", huge.len())),
        "{context}: {stored:?}"
    );
}

pub async fn stored_job_errors_are_capped_at_a_char_boundary(b: &dyn JobQueue) {
    let huge = "é".repeat(1 << 19);
    b.enqueue(job("q", "payload", 1, T0))
        .await
        .expect("enqueue");
    let lease = lease_all(b, "q", "w1", T0).await.remove(0);
    assert!(b.fail_job(&lease, &huge, None, T0).await.expect("fail"));
    let dead = b.list_dead(Some("q"), 10).await.expect("list_dead");
    check_capped(
        dead[0].last_error.as_deref().expect("last_error"),
        &huge,
        "job last_error",
    );
    check_capped(&dead[0].history[0].error, &huge, "job history");
    let record = b.job(lease.id).await.expect("job").expect("stored");
    check_capped(
        record.last_error.as_deref().expect("last_error"),
        &huge,
        "job record",
    );
}

pub async fn list_targets_pages_by_id_and_filters_by_connector(b: &dyn Backend) {
    b.add_targets("rss", &names(&["a", "b", "c", "d", "e"]), T0)
        .await
        .expect("add_targets");
    b.add_targets("other", &names(&["x"]), T0)
        .await
        .expect("add_targets");
    assert_eq!(b.get_target("rss", "zzz").await.expect("get"), None);

    let first = b.list_targets(Some("rss"), 0, 2).await.expect("list");
    assert_eq!(first.len(), 2);
    let last_id = first[1].id;
    let second = b.list_targets(Some("rss"), last_id, 2).await.expect("list");
    let third = b
        .list_targets(Some("rss"), second[1].id, 2)
        .await
        .expect("list");
    let paged: Vec<&str> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|t| t.target.as_str())
        .collect();
    assert_eq!(
        paged,
        ["a", "b", "c", "d", "e"],
        "ordered by id = insertion"
    );
    assert!(
        first
            .iter()
            .chain(&second)
            .chain(&third)
            .all(|t| t.connector == "rss"),
        "the connector filter holds"
    );
    let ids: Vec<i64> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|t| t.id)
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids increase");
    assert!(
        b.list_targets(Some("rss"), ids[4], 2)
            .await
            .expect("list")
            .is_empty()
    );

    let everything = b.list_targets(None, 0, 100).await.expect("list");
    assert_eq!(everything.len(), 6);
    let other = b.list_targets(Some("other"), 0, 100).await.expect("list");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].target, "x");
    let fetched = b.get_target("other", "x").await.expect("get").expect("x");
    assert_eq!(fetched, other[0]);
}

pub async fn remove_target_deletes_its_state_but_keeps_its_items(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    let commit = PollCommit::Success {
        items: items(&["i1"]),
        etag: None,
        last_modified: None,
        cursor: None,
        state_writes: vec![("k".to_string(), Some("v".to_string()))],
        next_run_at: T0 + 1_000,
        interval_ms: 1_000,
        deliver_to: Vec::new(),
    };
    b.complete_poll(&claim, commit, T0).await.expect("commit");
    b.set_state("rss", StateScope::Connector, "k", Some("connector value"))
        .await
        .expect("set_state");
    let id = claim.target.id;
    assert_eq!(
        b.target_state("rss", id).await.expect("target_state").len(),
        1
    );

    assert!(b.remove_target("rss", "feed").await.expect("remove"));
    assert_eq!(b.get_target("rss", "feed").await.expect("get"), None);
    assert_eq!(b.count_targets("rss").await.expect("count"), 0);
    assert!(
        b.target_state("rss", id)
            .await
            .expect("target_state")
            .is_empty()
    );
    assert_eq!(
        b.get_state("rss", StateScope::Target(id), "k")
            .await
            .expect("get_state"),
        None
    );
    assert_eq!(
        b.get_state("rss", StateScope::Connector, "k")
            .await
            .expect("get_state")
            .as_deref(),
        Some("connector value"),
        "connector-scoped state is not the target's"
    );
    assert_eq!(b.count_items(Some("rss")).await.expect("count_items"), 1);
    assert!(
        !b.remove_target("rss", "feed").await.expect("remove again"),
        "a second removal finds nothing"
    );
    assert!(
        b.claim_due("rss", "w2", T0 + 10_000, LEASE, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

pub async fn claim_due_takes_only_due_targets_earliest_first(b: &dyn Backend) {
    // Added out of order, so ids and due times disagree.
    b.add_targets("rss", &names(&["third"]), T0 + 300)
        .await
        .expect("add");
    b.add_targets("rss", &names(&["first"]), T0 + 100)
        .await
        .expect("add");
    b.add_targets("rss", &names(&["later"]), T0 + 10_000)
        .await
        .expect("add");
    b.add_targets("rss", &names(&["second"]), T0 + 200)
        .await
        .expect("add");

    let now = T0 + 1_000;
    let claims = b
        .claim_due("rss", "w1", now, LEASE, 10)
        .await
        .expect("claim_due");
    let claimed: Vec<&str> = claims.iter().map(|c| c.target.target.as_str()).collect();
    assert_eq!(claimed, ["first", "second", "third"]);
    for claim in &claims {
        assert_eq!(claim.worker, "w1");
        assert_eq!(claim.lease_until, now + LEASE_MS);
        assert_eq!(claim.target.connector, "rss");
    }
    assert_eq!(claims[0].target.next_run_at, T0 + 100);

    // With one earlier target already held, a limit-1 claim takes the earliest free one.
    let later = b
        .claim_due("rss", "w2", T0 + 10_000, LEASE, 1)
        .await
        .expect("claim_due");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].target.target, "later");
}

pub async fn claim_due_respects_limit_and_connector(b: &dyn Backend) {
    b.add_targets("rss", &names(&["a", "b", "c", "d", "e"]), T0)
        .await
        .expect("add");
    b.add_targets("other", &names(&["x", "y"]), T0)
        .await
        .expect("add");

    let first = b.claim_due("rss", "w1", T0, LEASE, 2).await.expect("claim");
    assert_eq!(first.len(), 2);
    let rest = b
        .claim_due("rss", "w1", T0, LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(rest.len(), 3);
    assert!(
        b.claim_due("rss", "w1", T0, LEASE, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let claimed: HashSet<&str> = first
        .iter()
        .chain(&rest)
        .map(|c| c.target.target.as_str())
        .collect();
    assert_eq!(claimed, HashSet::from(["a", "b", "c", "d", "e"]));

    let other = b
        .claim_due("other", "w1", T0, LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(
        other.len(),
        2,
        "claims of one connector leave another's alone"
    );
    assert!(other.iter().all(|c| c.target.connector == "other"));
    assert!(
        b.claim_due("rss", "w1", T0, LEASE, 0)
            .await
            .expect("claim")
            .is_empty(),
        "limit 0 claims nothing"
    );
}

pub async fn leased_target_is_not_claimed_again_until_its_lease_expires(b: &dyn Backend) {
    let first = add_and_claim(b, "rss", "feed", "w1", T0).await;
    assert_eq!(first.lease_until, T0 + LEASE_MS);

    for now in [T0, T0 + 1, first.lease_until] {
        assert!(
            b.claim_due("rss", "w2", now, LEASE, 10)
                .await
                .expect("claim")
                .is_empty(),
            "the lease still holds at {now}"
        );
    }
    let rescue_time = first.lease_until + 1;
    let second = claim_only(b, "rss", "w2", rescue_time).await;
    assert_eq!(second.target.id, first.target.id);
    assert_eq!(second.worker, "w2");
    assert_eq!(second.lease_until, rescue_time + LEASE_MS);
    assert!(
        b.claim_due("rss", "w3", rescue_time, LEASE, 10)
            .await
            .expect("claim")
            .is_empty(),
        "the new lease holds"
    );
}

pub async fn count_due_excludes_leased_and_future_targets(b: &dyn Backend) {
    b.add_targets("rss", &names(&["a", "b", "c"]), T0)
        .await
        .expect("add");
    b.add_targets("rss", &names(&["future"]), T0 + 50_000)
        .await
        .expect("add");
    b.add_targets("other", &names(&["x"]), T0)
        .await
        .expect("add");
    assert_eq!(b.count_due("rss", T0).await.expect("count_due"), 3);
    assert_eq!(b.count_due("rss", T0 - 1).await.expect("count_due"), 0);

    b.claim_due("rss", "w1", T0, LEASE, 2).await.expect("claim");
    assert_eq!(b.count_due("rss", T0).await.expect("count_due"), 1);
    assert_eq!(
        b.count_due("rss", T0 + LEASE_MS + 1)
            .await
            .expect("count_due"),
        4,
        "the leases expired by then and the future target is due"
    );
    assert_eq!(b.count_due("other", T0).await.expect("count_due"), 1);
}

/// Many tasks on one instance claim until nothing is due: each target is claimed exactly once.
pub async fn concurrent_claims_in_one_instance_never_overlap(store: &TestStore) {
    let backend = store.backend.clone();
    let expected = seed_targets(&*backend, 300).await;
    let workers = (0..8).map(|n| (backend.clone(), format!("worker-{n}")));
    let claimed = claim_until_empty(workers.collect()).await;
    assert_claimed_exactly_once(claimed, expected);
}

/// Two independent instances on the same store (like two processes) claim concurrently: each
/// target is claimed exactly once.
pub async fn concurrent_claims_from_two_instances_never_overlap(store: &TestStore) {
    let first = store.backend.clone();
    let second = store.reopen().await;
    let expected = seed_targets(&*first, 300).await;
    assert_eq!(
        second.count_due("rss", T0).await.expect("count_due"),
        300,
        "the second instance sees the same store"
    );
    let workers = (0..8).map(|n| {
        let backend = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        (backend, format!("worker-{n}"))
    });
    let claimed = claim_until_empty(workers.collect()).await;
    assert_claimed_exactly_once(claimed, expected);
}

async fn seed_targets(b: &dyn Backend, count: usize) -> HashSet<i64> {
    let targets: Vec<String> = (0..count)
        .map(|n| format!("https://feed-{n}.test/"))
        .collect();
    let report = b.add_targets("rss", &targets, T0).await.expect("add");
    assert_eq!(report.added, count as u64);
    let listed = b
        .list_targets(Some("rss"), 0, count as u32)
        .await
        .expect("list");
    listed.iter().map(|t| t.id).collect()
}

async fn claim_until_empty(workers: Vec<(Arc<dyn Backend>, String)>) -> Vec<i64> {
    let mut tasks = tokio::task::JoinSet::new();
    for (backend, worker) in workers {
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = backend
                    .claim_due("rss", &worker, T0, LEASE, 7)
                    .await
                    .expect("claim_due under contention");
                if claims.is_empty() {
                    return mine;
                }
                assert!(claims.iter().all(|c| c.worker == worker));
                mine.extend(claims.into_iter().map(|c| c.target.id));
                tokio::task::yield_now().await;
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        claimed.extend(joined.expect("claiming task"));
    }
    claimed
}

fn assert_claimed_exactly_once(claimed: Vec<i64>, expected: HashSet<i64>) {
    let total = claimed.len();
    let distinct: HashSet<i64> = claimed.into_iter().collect();
    assert_eq!(total, distinct.len(), "no target was claimed twice");
    assert_eq!(distinct, expected, "every due target was claimed");
}

// ---------------------------------------------------------------------------------------------
// Poll commits

pub async fn complete_poll_success_stores_items_and_updates_the_target(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    let polled_at = T0 + 10;
    let next_run = T0 + 3_600_000;
    let report = b
        .complete_poll(
            &claim,
            PollCommit::Success {
                items: items(&["a", "b"]),
                etag: Some("\"e1\"".to_string()),
                last_modified: Some("Tue, 02 Jan 2024 03:04:05 GMT".to_string()),
                cursor: Some("cursor-1".to_string()),
                state_writes: Vec::new(),
                next_run_at: next_run,
                interval_ms: 3_600_000,
                deliver_to: Vec::new(),
            },
            polled_at,
        )
        .await
        .expect("complete_poll");
    assert_eq!(report.new_items, 2);
    assert!(!report.lease_lost);

    let target = b
        .get_target("rss", "feed")
        .await
        .expect("get")
        .expect("feed");
    assert_eq!(target.etag.as_deref(), Some("\"e1\""));
    assert_eq!(
        target.last_modified.as_deref(),
        Some("Tue, 02 Jan 2024 03:04:05 GMT")
    );
    assert_eq!(target.cursor.as_deref(), Some("cursor-1"));
    assert_eq!(target.next_run_at, next_run);
    assert_eq!(target.interval_ms, Some(3_600_000));
    assert_eq!(target.last_polled_at, Some(polled_at));
    assert_eq!(target.error_count, 0);
    assert_eq!(target.last_error, None);

    let stored = all_items(b, "rss").await;
    assert_eq!(item_ids(&stored), ["a", "b"]);
    assert!(stored[0].seq < stored[1].seq);
    for (stored, expected) in stored.iter().zip(items(&["a", "b"])) {
        assert_eq!(stored.item, expected, "every field survives storage");
        assert_eq!(stored.connector, "rss");
        assert_eq!(stored.target, "feed");
        assert_eq!(stored.fetched_at, polled_at);
    }
    assert_eq!(b.count_items(Some("rss")).await.expect("count"), 2);
    assert_eq!(b.count_items(None).await.expect("count"), 2);

    // The lease is released: not claimable before next_run_at, claimable from then on.
    assert!(
        b.claim_due("rss", "w2", next_run - 1, LEASE, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = claim_only(b, "rss", "w2", next_run).await;
    assert_eq!(again.target, target);
}

pub async fn complete_poll_dedupes_items_across_polls(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    let first = b
        .complete_poll(&claim, success(items(&["a", "b"]), T0 + 100), T0)
        .await
        .expect("commit");
    assert_eq!(first.new_items, 2);

    // b is known and c repeats within the poll: only one c is new.
    let claim = claim_only(b, "rss", "w1", T0 + 100).await;
    let mut changed_b = item("b");
    changed_b.title = Some("A changed title".to_string());
    let mut poll = items(&["c"]);
    poll.insert(0, changed_b);
    poll.push(item("c"));
    let second = b
        .complete_poll(&claim, success(poll, T0 + 200), T0 + 100)
        .await
        .expect("commit");
    assert_eq!(second.new_items, 1);

    let claim = claim_only(b, "rss", "w1", T0 + 200).await;
    let third = b
        .complete_poll(&claim, success(items(&["a", "b", "c"]), T0 + 300), T0 + 200)
        .await
        .expect("commit");
    assert_eq!(third.new_items, 0, "nothing new the third time");

    let stored = all_items(b, "rss").await;
    assert_eq!(item_ids(&stored), ["a", "b", "c"]);
    assert_eq!(
        stored[1].item.title,
        item("b").title,
        "the first stored version of an item is kept"
    );
    assert_eq!(stored[2].fetched_at, T0 + 100);

    // Deduplication is per connector: another connector may store the same id.
    let other = add_and_claim(b, "other", "feed", "w1", T0).await;
    let report = b
        .complete_poll(&other, success(items(&["a"]), T0 + 100), T0)
        .await
        .expect("commit");
    assert_eq!(report.new_items, 1);
    assert_eq!(b.count_items(None).await.expect("count"), 4);
}

pub async fn complete_poll_failure_counts_errors_and_keeps_items(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    let commit = PollCommit::Success {
        items: items(&["a"]),
        etag: Some("e1".to_string()),
        last_modified: None,
        cursor: Some("c1".to_string()),
        state_writes: Vec::new(),
        next_run_at: T0 + 100,
        interval_ms: 100,
        deliver_to: Vec::new(),
    };
    b.complete_poll(&claim, commit, T0).await.expect("commit");

    for (attempt, now) in [(1, T0 + 100), (2, T0 + 200)] {
        let claim = claim_only(b, "rss", "w1", now).await;
        let report = b
            .complete_poll(
                &claim,
                PollCommit::Failure {
                    error: format!("HTTP 503 #{attempt}"),
                    next_run_at: now + 100,
                    dead: false,
                },
                now,
            )
            .await
            .expect("commit failure");
        assert_eq!(report.new_items, 0);
        assert!(!report.lease_lost);
        let target = b
            .get_target("rss", "feed")
            .await
            .expect("get")
            .expect("feed");
        assert_eq!(target.error_count, attempt);
        assert_eq!(target.last_error, Some(format!("HTTP 503 #{attempt}")));
        assert_eq!(target.history.len(), attempt as usize);
        assert_eq!(
            target.history.last(),
            Some(&Attempt {
                at: now,
                error: format!("HTTP 503 #{attempt}")
            })
        );
        assert_eq!(target.next_run_at, now + 100);
        assert_eq!(target.last_polled_at, Some(now));
        assert_eq!(
            target.etag.as_deref(),
            Some("e1"),
            "validators survive a failure"
        );
        assert_eq!(target.cursor.as_deref(), Some("c1"));
        assert_eq!(target.interval_ms, Some(100));
    }
    assert_eq!(item_ids(&all_items(b, "rss").await), ["a"]);

    // A success resets the error count.
    let claim = claim_only(b, "rss", "w1", T0 + 300).await;
    b.complete_poll(&claim, success(Vec::new(), T0 + 400), T0 + 300)
        .await
        .expect("commit");
    let target = b
        .get_target("rss", "feed")
        .await
        .expect("get")
        .expect("feed");
    assert_eq!(target.error_count, 0);
    assert_eq!(target.last_error, None);
}

pub async fn complete_poll_with_a_lost_lease_writes_nothing(b: &dyn Backend) {
    let stale = add_and_claim(b, "rss", "feed", "w1", T0).await;
    let rescue_time = stale.lease_until + 1;
    let current = claim_only(b, "rss", "w2", rescue_time).await;

    let late = PollCommit::Success {
        items: items(&["a"]),
        etag: Some("stale".to_string()),
        last_modified: None,
        cursor: Some("stale".to_string()),
        state_writes: vec![("k".to_string(), Some("stale".to_string()))],
        next_run_at: T0 + 999_999,
        interval_ms: 1,
        deliver_to: deliveries(&["sink"]),
    };
    let report = b
        .complete_poll(&stale, late, rescue_time + 1)
        .await
        .expect("late commit");
    assert!(report.lease_lost);
    assert_eq!(report.new_items, 0);
    let failure = PollCommit::Failure {
        error: "stale".to_string(),
        next_run_at: T0 + 999_999,
        dead: false,
    };
    let report = b
        .complete_poll(&stale, failure, rescue_time + 1)
        .await
        .expect("late failure");
    assert!(report.lease_lost);
    assert!(
        !b.release(&stale, T0).await.expect("late release"),
        "a lost lease cannot be released"
    );

    assert_eq!(b.count_items(None).await.expect("count"), 0);
    let target = b
        .get_target("rss", "feed")
        .await
        .expect("get")
        .expect("feed");
    assert_eq!(target.etag, None);
    assert_eq!(target.cursor, None);
    assert_eq!(target.error_count, 0);
    assert_eq!(target.last_polled_at, None);
    assert_eq!(target.next_run_at, T0);
    assert!(
        b.target_state("rss", target.id)
            .await
            .expect("target_state")
            .is_empty()
    );
    assert_eq!(
        b.queue_counts("sink").await.expect("counts"),
        QueueCounts::default()
    );
    assert!(
        b.claim_due("rss", "w3", rescue_time + 1, LEASE, 10)
            .await
            .expect("claim")
            .is_empty(),
        "the current holder keeps its lease"
    );

    let report = b
        .complete_poll(
            &current,
            success(items(&["a"]), T0 + 999_999),
            rescue_time + 2,
        )
        .await
        .expect("commit by the current holder");
    assert!(!report.lease_lost);
    assert_eq!(report.new_items, 1);
}

pub async fn complete_poll_applies_state_writes(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    let id = claim.target.id;
    let commit = PollCommit::Success {
        items: Vec::new(),
        etag: None,
        last_modified: None,
        cursor: None,
        state_writes: vec![
            ("seen".to_string(), Some("1".to_string())),
            ("token".to_string(), Some("abc".to_string())),
            ("seen".to_string(), Some("2".to_string())),
        ],
        next_run_at: T0 + 100,
        interval_ms: 100,
        deliver_to: Vec::new(),
    };
    b.complete_poll(&claim, commit, T0).await.expect("commit");
    let mut state = b.target_state("rss", id).await.expect("target_state");
    state.sort();
    assert_eq!(
        state,
        [
            ("seen".to_string(), "2".to_string()),
            ("token".to_string(), "abc".to_string())
        ],
        "writes apply in order; the last write of a key wins"
    );
    assert_eq!(
        b.get_state("rss", StateScope::Target(id), "token")
            .await
            .expect("get_state")
            .as_deref(),
        Some("abc")
    );
    assert_eq!(
        b.get_state("rss", StateScope::Connector, "token")
            .await
            .expect("get_state"),
        None,
        "poll writes are target-scoped"
    );

    let claim = claim_only(b, "rss", "w1", T0 + 100).await;
    let commit = PollCommit::Success {
        items: Vec::new(),
        etag: None,
        last_modified: None,
        cursor: None,
        state_writes: vec![
            ("token".to_string(), None),
            ("seen".to_string(), Some("3".to_string())),
        ],
        next_run_at: T0 + 200,
        interval_ms: 100,
        deliver_to: Vec::new(),
    };
    b.complete_poll(&claim, commit, T0 + 100)
        .await
        .expect("commit");
    assert_eq!(
        b.target_state("rss", id).await.expect("target_state"),
        [("seen".to_string(), "3".to_string())],
        "None deletes a key"
    );
}

pub async fn state_put_within_a_cap_counts_bytes_of_what_is_stored(b: &dyn Backend) {
    let put = |connector: &'static str, key: &'static str, value: &'static str| async move {
        b.put_state_within(connector, StateScope::Connector, key, value, 20)
            .await
            .expect("put_state_within")
    };
    assert_eq!(put("rss", "a", "12345").await, StatePut::Stored, "6 bytes");
    assert_eq!(put("rss", "b", "1234567890").await, StatePut::Stored, "17");
    assert_eq!(
        put("rss", "c", "1234").await,
        StatePut::OverLimit { total: 22 },
        "22 would pass the cap of 20"
    );
    assert_eq!(
        b.get_state("rss", StateScope::Connector, "c")
            .await
            .expect("get_state"),
        None,
        "a refused put stores nothing"
    );
    assert_eq!(
        put("rss", "b", "1").await,
        StatePut::Stored,
        "a key's old value is replaced, not counted twice: 8"
    );
    assert_eq!(
        put("rss", "d", "ééééé").await,
        StatePut::Stored,
        "8 + 1 + 10 bytes (not 5 characters) = 19"
    );
    assert_eq!(
        put("rss", "e", "x").await,
        StatePut::OverLimit { total: 21 },
        "counted in bytes: 19 + 2 = 21"
    );
    assert_eq!(
        put("other", "a", "1234567890123456789").await,
        StatePut::Stored,
        "another connector has its own total"
    );
    b.add_targets("rss", &names(&["one"]), T0)
        .await
        .expect("add");
    let one = b
        .get_target("rss", "one")
        .await
        .expect("get")
        .expect("one")
        .id;
    assert_eq!(
        b.put_state_within(
            "rss",
            StateScope::Target(one),
            "a",
            "1234567890123456789",
            20
        )
        .await
        .expect("put_state_within"),
        StatePut::Stored,
        "a target's scope is not the connector's"
    );
}

pub async fn concurrent_capped_state_puts_from_two_instances_never_pass_the_cap(store: &TestStore) {
    let first = store.backend.clone();
    let second = store.reopen().await;
    // Forty puts of 10 bytes each against a cap of 55: exactly five fit, however they race.
    let puts = (0..40).map(|n| {
        let backend = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move {
            backend
                .put_state_within(
                    "rss",
                    StateScope::Connector,
                    &format!("k{n:02}"),
                    "1234567",
                    55,
                )
                .await
                .expect("put_state_within")
        })
    });
    let mut stored = 0;
    for put in puts.collect::<Vec<_>>() {
        if put.await.expect("put task") == StatePut::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 5);
    let mut present = 0;
    for n in 0..40 {
        let value = first
            .get_state("rss", StateScope::Connector, &format!("k{n:02}"))
            .await
            .expect("get_state");
        present += usize::from(value.is_some());
    }
    assert_eq!(present, 5, "what was stored is what was reported");
}

pub async fn state_scopes_are_separate_namespaces(b: &dyn Backend) {
    b.add_targets("rss", &names(&["one", "two"]), T0)
        .await
        .expect("add");
    let one = b
        .get_target("rss", "one")
        .await
        .expect("get")
        .expect("one")
        .id;
    let two = b
        .get_target("rss", "two")
        .await
        .expect("get")
        .expect("two")
        .id;
    let set = |connector: &'static str, scope, value: Option<&'static str>| async move {
        b.set_state(connector, scope, "k", value)
            .await
            .expect("set_state");
    };
    set("rss", StateScope::Connector, Some("connector")).await;
    set("rss", StateScope::Target(one), Some("one")).await;
    set("rss", StateScope::Target(two), Some("two")).await;
    set("other", StateScope::Connector, Some("other connector")).await;

    let get = |connector: &'static str, scope| async move {
        b.get_state(connector, scope, "k").await.expect("get_state")
    };
    assert_eq!(
        get("rss", StateScope::Connector).await.as_deref(),
        Some("connector")
    );
    assert_eq!(
        get("rss", StateScope::Target(one)).await.as_deref(),
        Some("one")
    );
    assert_eq!(
        get("rss", StateScope::Target(two)).await.as_deref(),
        Some("two")
    );
    assert_eq!(
        get("other", StateScope::Connector).await.as_deref(),
        Some("other connector")
    );
    assert_eq!(get("other", StateScope::Target(one)).await, None);
    assert_eq!(
        b.get_state("rss", StateScope::Connector, "missing")
            .await
            .expect("get_state"),
        None
    );

    set("rss", StateScope::Target(one), Some("one again")).await;
    assert_eq!(
        get("rss", StateScope::Target(one)).await.as_deref(),
        Some("one again"),
        "set overwrites"
    );
    set("rss", StateScope::Connector, None).await;
    assert_eq!(
        get("rss", StateScope::Connector).await,
        None,
        "None deletes"
    );
    assert_eq!(
        get("rss", StateScope::Target(one)).await.as_deref(),
        Some("one again"),
        "deleting in one scope leaves the others"
    );
    set("rss", StateScope::Connector, None).await; // deleting a missing key is fine

    assert_eq!(
        b.target_state("rss", one).await.expect("target_state"),
        [("k".to_string(), "one again".to_string())]
    );
    assert!(
        b.target_state("other", one)
            .await
            .expect("target_state")
            .is_empty()
    );
}

/// Many polls commit at once (backends may batch them): items shared between feeds are new
/// for exactly one poll, each delivery carries exactly that poll's new items, and stale claims
/// in the crowd write nothing.
pub async fn concurrent_commits_store_each_new_item_once(store: &TestStore) {
    let backend = store.backend.clone();
    let feeds: Vec<String> = (0..60).map(|n| format!("feed-{n}")).collect();
    backend.add_targets("rss", &feeds, T0).await.expect("add");
    // The first ten are claimed, lost (expired and re-claimed) and so go stale.
    let stale = backend
        .claim_due("rss", "early", T0, LEASE, 10)
        .await
        .expect("claim");
    let now = T0 + LEASE_MS + 1;
    let claims = backend
        .claim_due("rss", "late", now, LEASE, 100)
        .await
        .expect("claim");
    assert_eq!(claims.len(), 60);

    let mut tasks = tokio::task::JoinSet::new();
    for claim in stale.into_iter().chain(claims) {
        let backend = backend.clone();
        tasks.spawn(async move {
            let feed = claim.target.target.clone();
            let n: usize = feed["feed-".len()..].parse().expect("feed number");
            // Own items, plus items shared with the neighbouring feed.
            let ids = [
                format!("{feed}/own"),
                format!("shared-{}", n / 2),
                format!("{feed}/own"),
            ];
            let polled = items(&ids.iter().map(String::as_str).collect::<Vec<_>>());
            let commit = success_delivering(polled, now + 1_000, &["sink"]);
            let report = backend
                .complete_poll(&claim, commit, now)
                .await
                .expect("concurrent commit");
            (claim.worker, feed, report)
        });
    }
    let mut new_total = 0;
    let mut new_by_feed = std::collections::HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (worker, feed, report) = joined.expect("commit task");
        if worker == "early" {
            assert!(report.lease_lost, "{feed}: a stale claim loses");
            assert_eq!(report.new_items, 0);
        } else {
            assert!(!report.lease_lost, "{feed}: the current claim commits");
            assert!(
                report.new_items == 1 || report.new_items == 2,
                "{feed}: {report:?}"
            );
            new_total += report.new_items;
            new_by_feed.insert(feed, report.new_items);
        }
    }
    // 60 own items and 30 shared ones.
    assert_eq!(new_total, 90);
    assert_eq!(backend.count_items(Some("rss")).await.expect("count"), 90);

    let jobs = lease_all(&*backend, "sink", "deliverer", now).await;
    assert_eq!(jobs.len(), 60, "one delivery per poll with something new");
    let mut delivered_ids = HashSet::new();
    for job in &jobs {
        let payload = delivered(job);
        let feed = &payload[0].target;
        assert!(payload.iter().all(|stored| &stored.target == feed));
        assert_eq!(payload.len() as u64, new_by_feed[feed], "{feed}");
        assert!(payload.windows(2).all(|w| w[0].seq < w[1].seq));
        for stored in payload {
            assert!(
                delivered_ids.insert(stored.item.id.clone()),
                "{} delivered twice",
                stored.item.id
            );
        }
    }
    assert_eq!(delivered_ids.len(), 90);
}

/// The same claim committed twice at once (a caller bug or a retry): one commit wins, the
/// other reports a lost lease and writes nothing.
pub async fn concurrent_commits_of_one_claim_succeed_once(store: &TestStore) {
    let backend = store.backend.clone();
    let claim = add_and_claim(&*backend, "rss", "feed", "w1", T0).await;
    let mut tasks = tokio::task::JoinSet::new();
    for attempt in 0..8 {
        let backend = backend.clone();
        let claim = claim.clone();
        tasks.spawn(async move {
            let id = format!("item-{attempt}");
            let commit = success(items(&[id.as_str()]), T0 + 1_000);
            backend
                .complete_poll(&claim, commit, T0 + 1)
                .await
                .expect("commit")
        });
    }
    let mut winners = 0;
    while let Some(joined) = tasks.join_next().await {
        let report = joined.expect("commit task");
        if !report.lease_lost {
            winners += 1;
            assert_eq!(report.new_items, 1);
        } else {
            assert_eq!(report.new_items, 0);
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(backend.count_items(None).await.expect("count"), 1);
}

// ---------------------------------------------------------------------------------------------
// Delivery

pub async fn delivery_enqueues_one_job_per_queue_with_only_new_items(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    let report = b
        .complete_poll(
            &claim,
            success_delivering(items(&["a", "b"]), T0 + 100, &["sink-a", "sink-b"]),
            T0,
        )
        .await
        .expect("commit");
    assert_eq!(report.new_items, 2);
    let stored = all_items(b, "rss").await;

    for queue in ["sink-a", "sink-b"] {
        let jobs = lease_all(b, queue, "deliverer", T0).await;
        assert_eq!(jobs.len(), 1, "one job per queue");
        assert_eq!(jobs[0].queue, queue);
        assert_eq!(
            jobs[0].max_attempts,
            queue.len() as u32,
            "the delivery's own max_attempts"
        );
        assert_eq!(jobs[0].attempt, 1);
        assert_eq!(
            delivered(&jobs[0]),
            stored,
            "the payload is the stored items"
        );
        assert!(b.complete_job(&jobs[0], T0).await.expect("complete"));
    }

    let claim = claim_only(b, "rss", "w1", T0 + 100).await;
    let report = b
        .complete_poll(
            &claim,
            success_delivering(items(&["b", "c"]), T0 + 200, &["sink-a", "sink-b"]),
            T0 + 100,
        )
        .await
        .expect("commit");
    assert_eq!(report.new_items, 1);
    let stored_c = all_items(b, "rss").await.split_off(2);
    assert_eq!(item_ids(&stored_c), ["c"]);
    for queue in ["sink-a", "sink-b"] {
        let jobs = lease_all(b, queue, "deliverer", T0 + 100).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            delivered(&jobs[0]),
            stored_c,
            "only the new item is delivered"
        );
    }
    assert_eq!(
        b.queue_counts("sink-c").await.expect("counts"),
        QueueCounts::default()
    );
}

pub async fn delivery_enqueues_nothing_when_no_item_is_new(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    b.complete_poll(
        &claim,
        success_delivering(items(&["a"]), T0 + 100, &["sink"]),
        T0,
    )
    .await
    .expect("commit");
    assert_eq!(b.queue_counts("sink").await.expect("counts").queued, 1);

    let claim = claim_only(b, "rss", "w1", T0 + 100).await;
    let report = b
        .complete_poll(
            &claim,
            success_delivering(items(&["a"]), T0 + 200, &["sink"]),
            T0 + 100,
        )
        .await
        .expect("commit");
    assert_eq!(report.new_items, 0);
    let claim = claim_only(b, "rss", "w1", T0 + 200).await;
    b.complete_poll(
        &claim,
        success_delivering(Vec::new(), T0 + 300, &["sink"]),
        T0 + 200,
    )
    .await
    .expect("commit");
    assert_eq!(
        b.queue_counts("sink").await.expect("counts"),
        QueueCounts {
            queued: 1,
            ..QueueCounts::default()
        },
        "no job for polls without new items"
    );
}

// ---------------------------------------------------------------------------------------------
// Job queue

pub async fn jobs_are_enqueued_leased_and_completed(b: &dyn JobQueue) {
    let first = b.enqueue(job("q", "one", 3, T0)).await.expect("enqueue");
    let second = b.enqueue(job("q", "two", 3, T0)).await.expect("enqueue");
    let future = b
        .enqueue(job("q", "later", 3, T0 + 10_000))
        .await
        .expect("enqueue");
    b.enqueue(job("elsewhere", "x", 3, T0))
        .await
        .expect("enqueue");
    assert_ne!(first, second);

    let leased = b
        .lease_jobs("q", "w1", T0, LEASE, 1)
        .await
        .expect("lease_jobs");
    assert_eq!(leased.len(), 1, "the limit holds");
    let lease = &leased[0];
    assert_eq!(lease.id, first, "oldest first");
    assert_eq!(lease.queue, "q");
    assert_eq!(lease.payload, "one");
    assert_eq!(lease.attempt, 1);
    assert_eq!(lease.max_attempts, 3);
    assert_eq!(lease.worker, "w1");
    assert_eq!(lease.lease_until, T0 + LEASE_MS);

    let rest = lease_all(b, "q", "w1", T0).await;
    assert_eq!(
        rest.iter().map(|l| l.id).collect::<Vec<_>>(),
        [second],
        "a leased job and a job not yet due are not handed out"
    );
    assert!(lease_all(b, "q", "w2", T0).await.is_empty());

    assert!(b.complete_job(lease, T0 + 1).await.expect("complete"));
    assert!(
        !b.complete_job(lease, T0 + 2).await.expect("complete again"),
        "a job completes once"
    );
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            queued: 1,
            leased: 1,
            done: 1,
            dead: 0
        }
    );

    let due_later = lease_all(b, "q", "w1", T0 + 10_000).await;
    assert_eq!(due_later.iter().map(|l| l.id).collect::<Vec<_>>(), [future]);
    assert_eq!(
        lease_all(b, "elsewhere", "w1", T0).await.len(),
        1,
        "queues are separate"
    );
}

pub async fn expired_job_lease_goes_to_another_worker_and_late_completion_is_refused(
    b: &dyn JobQueue,
) {
    b.enqueue(job("q", "payload", 5, T0))
        .await
        .expect("enqueue");
    let stale = lease_all(b, "q", "w1", T0).await.remove(0);
    assert!(
        lease_all(b, "q", "w2", stale.lease_until).await.is_empty(),
        "the lease holds through lease_until"
    );
    let rescue_time = stale.lease_until + 1;
    let current = lease_all(b, "q", "w2", rescue_time).await.remove(0);
    assert_eq!(current.id, stale.id);
    assert_eq!(current.attempt, 2, "the lost attempt counts");
    assert_eq!(current.worker, "w2");

    assert!(
        !b.complete_job(&stale, rescue_time)
            .await
            .expect("late complete")
    );
    assert!(
        !b.fail_job(&stale, "late", Some(T0), rescue_time)
            .await
            .expect("late fail")
    );
    assert!(
        b.complete_job(&current, rescue_time)
            .await
            .expect("complete")
    );
    assert!(
        lease_all(b, "q", "w3", current.lease_until + 1_000_000)
            .await
            .is_empty(),
        "a finished job is never rescued"
    );
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            done: 1,
            ..QueueCounts::default()
        }
    );
}

pub async fn failed_job_with_retry_at_waits_until_then(b: &dyn JobQueue) {
    b.enqueue(job("q", "payload", 5, T0))
        .await
        .expect("enqueue");
    let lease = lease_all(b, "q", "w1", T0).await.remove(0);
    let retry_at = T0 + 10_000;
    assert!(
        b.fail_job(&lease, "upstream 500", Some(retry_at), T0 + 1)
            .await
            .expect("fail_job")
    );
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            queued: 1,
            ..QueueCounts::default()
        }
    );
    assert!(lease_all(b, "q", "w1", retry_at - 1).await.is_empty());
    let retry = lease_all(b, "q", "w1", retry_at).await.remove(0);
    assert_eq!(retry.id, lease.id);
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.payload, "payload");
    assert!(
        !b.fail_job(&lease, "again", Some(retry_at), retry_at)
            .await
            .expect("stale fail"),
        "the old lease cannot fail the job twice"
    );
}

pub async fn job_with_attempts_exhausted_goes_dead(b: &dyn JobQueue) {
    let id = b
        .enqueue(job("q", "payload", 2, T0))
        .await
        .expect("enqueue");
    let first = lease_all(b, "q", "w1", T0).await.remove(0);
    assert!(
        b.fail_job(&first, "boom 1", Some(T0 + 100), T0)
            .await
            .expect("fail")
    );
    let second = lease_all(b, "q", "w1", T0 + 100).await.remove(0);
    assert_eq!(second.attempt, 2);
    assert!(
        b.fail_job(&second, "boom 2", Some(T0 + 200), T0 + 150)
            .await
            .expect("fail")
    );
    assert!(
        lease_all(b, "q", "w1", T0 + 10_000).await.is_empty(),
        "a dead job is not retried"
    );
    let dead = b.list_dead(Some("q"), 10).await.expect("list_dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].queue, "q");
    assert_eq!(dead[0].payload, "payload");
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].last_error.as_deref(), Some("boom 2"));
    assert_eq!(dead[0].died_at, T0 + 150);
    assert_eq!(b.queue_counts("q").await.expect("counts").dead, 1);
}

pub async fn dead_jobs_keep_their_history_and_can_be_retried_or_dropped(b: &dyn JobQueue) {
    let kept = b.enqueue(job("q", "kept", 2, T0)).await.expect("enqueue");
    let dropped = b
        .enqueue(job("q", "dropped", 1, T0))
        .await
        .expect("enqueue");
    for (now, error) in [(T0, "boom 1"), (T0 + 100, "boom 2")] {
        for lease in lease_all(b, "q", "w1", now).await {
            assert!(
                b.fail_job(&lease, error, Some(now + 100), now)
                    .await
                    .expect("fail")
            );
        }
    }
    let dead = b.list_dead(Some("q"), 10).await.expect("list_dead");
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        [kept, dropped]
    );
    assert_eq!(
        dead[0].history,
        [
            Attempt {
                at: T0,
                error: "boom 1".to_string()
            },
            Attempt {
                at: T0 + 100,
                error: "boom 2".to_string()
            }
        ]
    );
    assert!(b.retry_dead_job(kept, T0 + 500).await.expect("retry"));
    assert!(
        !b.retry_dead_job(kept, T0 + 500).await.expect("retry twice"),
        "no longer dead"
    );
    assert!(b.drop_dead_job(dropped).await.expect("drop"));
    assert!(
        !b.drop_dead_job(kept).await.expect("drop live"),
        "only dead jobs are dropped"
    );
    let again = lease_all(b, "q", "w1", T0 + 500).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id, again[0].attempt),
        (kept, 1),
        "a fresh attempt count"
    );
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            leased: 1,
            ..QueueCounts::default()
        }
    );
}

pub async fn dead_targets_are_never_claimed_and_can_be_revived_or_dropped(b: &dyn Backend) {
    b.add_targets("rss", &["gone".to_string(), "kept".to_string()], T0)
        .await
        .expect("add");
    let claims = b
        .claim_due("rss", "w1", T0, LEASE, 10)
        .await
        .expect("claim");
    for claim in &claims {
        let commit = PollCommit::Failure {
            error: "HTTP 410 Gone".to_string(),
            next_run_at: T0 + 100,
            dead: true,
        };
        b.complete_poll(claim, commit, T0 + 1)
            .await
            .expect("commit");
    }
    let far = T0 + 10 * 365 * 24 * 3600 * 1000;
    assert!(
        b.claim_due("rss", "w1", far, LEASE, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(b.count_due("rss", far).await.expect("count_due"), 0);
    let dead = b.list_dead_targets(Some("rss"), 0, 10).await.expect("list");
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|t| t.dead_at == Some(T0 + 1)), "{dead:?}");
    assert_eq!(dead[0].history.len(), 1);
    assert!(
        b.list_dead_targets(Some("other"), 0, 10)
            .await
            .expect("list")
            .is_empty()
    );

    let (gone, kept) = (dead[0].id, dead[1].id);
    assert!(b.drop_dead_target(gone).await.expect("drop"));
    assert!(b.get_target("rss", "gone").await.expect("get").is_none());
    assert!(b.revive_target(kept, T0 + 500).await.expect("revive"));
    assert!(!b.revive_target(kept, T0 + 500).await.expect("revive twice"));
    assert!(
        !b.drop_dead_target(kept).await.expect("drop live"),
        "only dead targets are dropped"
    );
    let revived = b
        .get_target("rss", "kept")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((revived.dead_at, revived.error_count), (None, 0));
    assert_eq!(revived.next_run_at, T0 + 500);
    let claims = b
        .claim_due("rss", "w1", T0 + 500, LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1, "a revived target is claimed again");
}

async fn due(b: &dyn Backend, connector: &str, now: Millis) -> u64 {
    b.count_due(connector, now).await.expect("count_due")
}

fn subscription(id: &str, target_id: i64, renew_at: Millis) -> crate::Subscription {
    crate::Subscription {
        id: id.to_string(),
        connector: "rss".into(),
        target_id,
        hub: "https://hub.example/".into(),
        topic: format!("https://blog.example/{target_id}/feed"),
        secret: format!("secret-of-{id}"),
        state: crate::SubscriptionState::Requested,
        lease_until: None,
        renew_at,
        attempts: 1,
        last_error: None,
    }
}

async fn subscriptions_due(b: &dyn Backend, now: Millis) -> Vec<String> {
    let due = b.subscriptions_due(now, 10).await.expect("due");
    due.into_iter().map(|s| s.id).collect()
}

pub async fn subscriptions_are_one_per_target_and_renewed_when_due(b: &dyn Backend) {
    use crate::SubscriptionState::{Active, Denied};
    b.put_subscription(&subscription("a", 1, T0 + 10))
        .await
        .expect("put");
    b.put_subscription(&subscription("b", 2, T0 + 20))
        .await
        .expect("put");
    let a = b.subscription("a").await.expect("get").expect("a");
    assert_eq!(a, subscription("a", 1, T0 + 10), "read back whole");
    assert_eq!(
        b.subscription_of("rss", 2).await.expect("of").map(|s| s.id),
        Some("b".to_string())
    );
    assert_eq!(b.subscription_of("other", 2).await.expect("of"), None);
    // Verified: active until its lease, renewed before.
    let mut active = a.clone();
    active.state = Active;
    active.lease_until = Some(T0 + 1_000);
    active.renew_at = T0 + 900;
    active.attempts = 0;
    b.put_subscription(&active).await.expect("update");
    let due = subscriptions_due(b, T0 + 20).await;
    assert_eq!(due, ["b"], "a renews later");
    let due = subscriptions_due(b, T0 + 900).await;
    assert_eq!(due, ["b", "a"], "earliest first");
    assert_eq!(
        b.subscriptions_due(T0 + 900, 1).await.expect("due").len(),
        1
    );
    // A new subscription of the same target replaces the old one, id and all.
    b.put_subscription(&subscription("c", 2, T0 + 5))
        .await
        .expect("replace");
    assert_eq!(b.subscription("b").await.expect("get"), None);
    // Denied ones are never due.
    let mut denied = subscription("c", 2, T0);
    denied.state = Denied;
    denied.last_error = Some("x".repeat(crate::MAX_ERROR_BYTES * 2));
    b.put_subscription(&denied).await.expect("deny");
    let stored = b.subscription("c").await.expect("get").expect("c");
    assert!(stored.last_error.expect("why").len() <= crate::MAX_ERROR_BYTES);
    let due = subscriptions_due(b, T0 + 900).await;
    assert_eq!(due, ["a"]);
    let counts = b.count_subscriptions().await.expect("count");
    assert_eq!((counts.requested, counts.active, counts.denied), (0, 1, 1));
    assert!(b.delete_subscription("a").await.expect("delete"));
    assert!(!b.delete_subscription("a").await.expect("delete again"));
}

pub async fn deliveries_wait_in_order_within_their_caps_and_wake_their_target(b: &dyn Backend) {
    use crate::DeliveryRefusal::{StoreFull, TargetFull, TargetGone};
    let later = T0 + 3_600_000;
    let feeds = vec!["https://blog.example/1/feed".to_string()];
    b.add_targets("rss", &feeds, later).await.expect("add");
    let target = b
        .get_target("rss", &feeds[0])
        .await
        .expect("get")
        .expect("target");
    b.put_subscription(&subscription("s", target.id, later))
        .await
        .expect("put");
    let delivery = |body: &str, at: Millis| crate::PushDelivery {
        id: 0,
        subscription_id: "s".into(),
        connector: "rss".into(),
        target_id: target.id,
        content_type: Some("application/atom+xml".into()),
        body: body.as_bytes().to_vec(),
        received_at: at,
    };
    assert_eq!(due(b, "rss", T0).await, 0);
    let first = b
        .add_delivery(&delivery("one", T0), 2, 1_000)
        .await
        .expect("add")
        .expect("stored");
    assert_eq!(
        due(b, "rss", T0).await,
        1,
        "the delivery makes its target due"
    );
    b.add_delivery(&delivery("two", T0 + 1), 2, 1_000)
        .await
        .expect("add")
        .expect("stored");
    assert_eq!(
        b.add_delivery(&delivery("three", T0 + 2), 2, 1_000)
            .await
            .expect("add"),
        Err(TargetFull)
    );
    let next = b
        .next_delivery("rss", target.id)
        .await
        .expect("next")
        .expect("one");
    assert_eq!((next.id, next.body.as_slice()), (first, &b"one"[..]));
    assert_eq!(next.content_type.as_deref(), Some("application/atom+xml"));
    assert!(b.delete_delivery(first).await.expect("delete"));
    assert!(!b.delete_delivery(first).await.expect("delete again"));
    let next = b.next_delivery("rss", target.id).await.expect("next");
    assert_eq!(next.map(|d| d.body), Some(b"two".to_vec()));
    assert_eq!(
        b.add_delivery(&delivery(&"x".repeat(998), T0), 5, 1_000)
            .await
            .expect("add"),
        Err(StoreFull),
        "3 bytes wait already"
    );
    assert_eq!(
        b.count_subscriptions()
            .await
            .expect("count")
            .deliveries_waiting,
        1
    );
    // Removing the target removes its subscription and deliveries; a late one is refused.
    assert!(b.remove_target("rss", &feeds[0]).await.expect("remove"));
    assert_eq!(b.subscription("s").await.expect("get"), None);
    assert_eq!(b.next_delivery("rss", target.id).await.expect("next"), None);
    assert_eq!(
        b.add_delivery(&delivery("late", T0), 5, 1_000)
            .await
            .expect("add"),
        Err(TargetGone)
    );
}

pub async fn pinged_targets_are_due_now_and_dead_or_parked_ones_stay_put(b: &dyn Backend) {
    let later = T0 + 3_600_000;
    let site = "https://blog.example/alice/";
    let targets: Vec<String> = [
        "https://blog.example/alice/feed.xml",
        "https://blog.example/alice/comments/feed",
        "https://blog.example/alice-and-bob/feed",
        "https://blog.example/bob/feed",
        "https://blog.example/alice/dead",
    ]
    .map(String::from)
    .to_vec();
    b.add_targets("rss", &targets, later).await.expect("add");
    b.add_targets("other", &targets[..1], later)
        .await
        .expect("add");
    // The last one goes dead.
    let dead = b
        .claim_due("rss", "w1", later, LEASE, 10)
        .await
        .expect("claim");
    for claim in dead {
        let commit = if claim.target.target.ends_with("/dead") {
            PollCommit::Failure {
                error: "HTTP 410 Gone".into(),
                next_run_at: later,
                dead: true,
            }
        } else {
            PollCommit::Failure {
                error: "HTTP 500".into(),
                next_run_at: later,
                dead: false,
            }
        };
        b.complete_poll(&claim, commit, T0).await.expect("commit");
    }
    assert_eq!(due(b, "rss", T0).await, 0);

    // The feed itself, in both connectors that hold it.
    assert_eq!(b.wake_target(&targets[0], T0).await.expect("wake"), 2);
    assert_eq!((due(b, "rss", T0).await, due(b, "other", T0).await), (1, 1));
    // A target already due earlier stays due from then.
    assert_eq!(b.wake_target(&targets[0], T0 + 5).await.expect("wake"), 2);
    let feed = b
        .get_target("rss", &targets[0])
        .await
        .expect("get")
        .expect("feed");
    assert_eq!(feed.next_run_at, T0);
    // Unknown and dead targets wake nothing.
    assert_eq!(
        b.wake_target("https://blog.example/nobody", T0)
            .await
            .expect("wake"),
        0
    );
    assert_eq!(b.wake_target(&targets[4], T0).await.expect("wake"), 0);

    // A site: only the targets under its path (in both connectors), never a neighbour sharing
    // the prefix's text.
    assert_eq!(
        b.wake_targets_under(site, T0, 10).await.expect("wake site"),
        3
    );
    assert_eq!(due(b, "rss", T0).await, 2);
    let bob = b
        .get_target("rss", &targets[3])
        .await
        .expect("get")
        .expect("bob");
    let neighbour = b
        .get_target("rss", &targets[2])
        .await
        .expect("get")
        .expect("neighbour");
    assert_eq!((bob.next_run_at, neighbour.next_run_at), (later, later));
    // At most `limit` of them.
    assert_eq!(
        b.wake_targets_under("https://blog.example/", T0, 3)
            .await
            .expect("wake host"),
        3
    );
}

pub async fn target_history_keeps_the_latest_failures_and_a_success_clears_it(b: &dyn Backend) {
    b.add_targets("rss", &["feed".to_string()], T0)
        .await
        .expect("add");
    let failures = MAX_HISTORY as i64 + 3;
    for n in 0..failures {
        let now = T0 + n * 10;
        let claim = claim_only(b, "rss", "w1", now).await;
        let commit = PollCommit::Failure {
            error: format!("fail {n}"),
            next_run_at: now + 10,
            dead: false,
        };
        b.complete_poll(&claim, commit, now).await.expect("commit");
    }
    let target = b
        .get_target("rss", "feed")
        .await
        .expect("get")
        .expect("feed");
    assert_eq!(target.history.len(), MAX_HISTORY);
    assert_eq!(target.history[0].error, "fail 3", "the oldest fell out");
    assert_eq!(
        target.history[MAX_HISTORY - 1].error,
        format!("fail {}", failures - 1)
    );
    let now = T0 + failures * 10;
    let claim = claim_only(b, "rss", "w1", now).await;
    b.complete_poll(&claim, success(Vec::new(), now + 10), now)
        .await
        .expect("commit");
    let target = b
        .get_target("rss", "feed")
        .await
        .expect("get")
        .expect("feed");
    assert!(target.history.is_empty());
    assert_eq!(target.error_count, 0);
}

pub async fn failed_job_without_retry_goes_dead_at_once(b: &dyn JobQueue) {
    b.enqueue(job("q", "p1", 10, T0)).await.expect("enqueue");
    b.enqueue(job("other", "p2", 10, T0))
        .await
        .expect("enqueue");
    b.enqueue(job("other", "p3", 10, T0))
        .await
        .expect("enqueue");
    let lease = lease_all(b, "q", "w1", T0).await.remove(0);
    assert!(
        b.fail_job(&lease, "permanent: 400", None, T0 + 5)
            .await
            .expect("fail")
    );
    for lease in lease_all(b, "other", "w1", T0).await {
        assert!(b.fail_job(&lease, "bad", None, T0 + 6).await.expect("fail"));
    }

    let dead = b.list_dead(Some("q"), 10).await.expect("list_dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("permanent: 400"));
    assert_eq!(dead[0].died_at, T0 + 5);
    assert_eq!(b.list_dead(None, 10).await.expect("list_dead").len(), 3);
    assert_eq!(
        b.list_dead(None, 2).await.expect("list_dead").len(),
        2,
        "the limit holds"
    );
    assert_eq!(b.list_dead(Some("other"), 10).await.expect("list").len(), 2);
    assert!(
        b.list_dead(Some("none"), 10)
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn job_lost_on_its_last_attempt_goes_dead(b: &dyn JobQueue) {
    b.enqueue(job("q", "poison", 2, T0)).await.expect("enqueue");
    let first = lease_all(b, "q", "w1", T0).await.remove(0);
    let second = lease_all(b, "q", "w2", first.lease_until + 1)
        .await
        .remove(0);
    assert_eq!(second.attempt, 2);
    let after_second = second.lease_until + 1;
    assert!(
        lease_all(b, "q", "w3", after_second).await.is_empty(),
        "no attempt beyond max_attempts"
    );
    let dead = b.list_dead(Some("q"), 10).await.expect("list_dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert!(dead[0].last_error.is_some(), "the death has a reason");
    assert_eq!(dead[0].died_at, after_second);
    assert!(!b.complete_job(&second, after_second).await.expect("late"));
}

pub async fn queue_counts_count_each_state(b: &dyn JobQueue) {
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts::default()
    );
    for n in 0..4 {
        b.enqueue(job("q", &format!("p{n}"), 3, T0))
            .await
            .expect("enqueue");
    }
    b.enqueue(job("q", "later", 3, T0 + 60_000))
        .await
        .expect("enqueue");
    b.enqueue(job("other", "x", 3, T0)).await.expect("enqueue");
    let leases = b.lease_jobs("q", "w1", T0, LEASE, 3).await.expect("lease");
    assert_eq!(leases.len(), 3);
    assert!(b.complete_job(&leases[0], T0).await.expect("complete"));
    assert!(
        b.fail_job(&leases[1], "dead", None, T0)
            .await
            .expect("fail")
    );
    assert!(
        b.fail_job(&leases[2], "retry", Some(T0 + 1_000), T0)
            .await
            .expect("fail")
    );
    let held = b.lease_jobs("q", "w1", T0, LEASE, 1).await.expect("lease");
    assert_eq!(held.len(), 1);
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            queued: 2, // the retry and the one scheduled later
            leased: 1,
            done: 1,
            dead: 1
        }
    );
    assert_eq!(
        b.queue_counts("other").await.expect("counts"),
        QueueCounts {
            queued: 1,
            ..QueueCounts::default()
        }
    );
}

/// Workers on two instances lease one queue concurrently: every job is leased exactly once.
pub async fn concurrent_job_leases_from_two_instances_never_overlap(
    store: &TestStore<dyn JobQueue>,
) {
    let first = store.backend.clone();
    let second = store.reopen().await;
    let mut expected = HashSet::new();
    for n in 0..200 {
        let id = first
            .enqueue(job("q", &format!("job {n}"), 3, T0))
            .await
            .expect("enqueue");
        expected.insert(id);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let backend = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.spawn(async move {
            let worker = format!("worker-{n}");
            let mut mine = Vec::new();
            loop {
                let leases = backend
                    .lease_jobs("q", &worker, T0, LEASE, 5)
                    .await
                    .expect("lease_jobs under contention");
                if leases.is_empty() {
                    return mine;
                }
                for lease in leases {
                    assert!(backend.complete_job(&lease, T0).await.expect("complete"));
                    mine.push(lease.id);
                }
            }
        });
    }
    let mut leased = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        leased.extend(joined.expect("leasing task"));
    }
    assert_claimed_exactly_once(leased, expected);
    assert_eq!(
        second.queue_counts("q").await.expect("counts"),
        QueueCounts {
            done: 200,
            ..QueueCounts::default()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Items and release

pub async fn list_items_filters_and_pages(b: &dyn Backend) {
    let one = add_and_claim(b, "rss", "feed-1", "w1", T0).await;
    b.complete_poll(&one, success(items(&["a1", "a2"]), T0 + 1_000), T0 + 100)
        .await
        .expect("commit");
    let two = add_and_claim(b, "rss", "feed-2", "w1", T0).await;
    b.complete_poll(
        &two,
        success(items(&["b1", "b2", "b3"]), T0 + 1_000),
        T0 + 200,
    )
    .await
    .expect("commit");
    let other = add_and_claim(b, "other", "feed-x", "w1", T0).await;
    b.complete_poll(&other, success(items(&["c1"]), T0 + 1_000), T0 + 300)
        .await
        .expect("commit");

    let query = |connector: Option<&str>, target: Option<&str>, since, after_seq, limit| {
        let query = ItemQuery {
            connector: connector.map(str::to_string),
            target: target.map(str::to_string),
            fetched_since: since,
            after_seq,
            limit,
        };
        async move { b.list_items(&query).await.expect("list_items") }
    };

    let everything = query(None, None, None, 0, 0).await;
    assert_eq!(
        item_ids(&everything),
        ["a1", "a2", "b1", "b2", "b3", "c1"],
        "limit 0 means a default, ordered by seq"
    );
    assert!(everything.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        item_ids(&query(Some("rss"), None, None, 0, 100).await),
        ["a1", "a2", "b1", "b2", "b3"]
    );
    assert_eq!(
        item_ids(&query(None, Some("feed-2"), None, 0, 100).await),
        ["b1", "b2", "b3"]
    );
    assert_eq!(
        item_ids(&query(Some("other"), None, None, 0, 100).await),
        ["c1"]
    );
    assert!(
        query(Some("rss"), Some("feed-x"), None, 0, 100)
            .await
            .is_empty(),
        "filters combine"
    );
    assert_eq!(
        item_ids(&query(None, None, Some(T0 + 200), 0, 100).await),
        ["b1", "b2", "b3", "c1"],
        "fetched_since is inclusive"
    );

    // Paging by seq.
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = query(None, None, None, after, 4).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = page.last().map(|item| item.seq).unwrap_or(after);
        pages.push(item_ids(&page).join(","));
    }
    assert_eq!(pages, ["a1,a2,b1,b2", "b3,c1"]);
    assert_eq!(
        item_ids(&query(Some("rss"), None, None, everything[2].seq, 2).await),
        ["b2", "b3"]
    );
}

pub async fn refused_targets_are_parked_until_released(b: &dyn Backend) {
    const REASON: &str = "egress refused by connector 'rss' allowlist: http://127.0.0.1/: …";
    let claim = add_and_claim(b, "rss", "internal", "w1", T0).await;
    b.add_targets("rss", &["other".to_string()], T0)
        .await
        .expect("add");
    b.add_targets("x", &["internal".to_string()], T0)
        .await
        .expect("add");
    assert!(b.park_refused(&claim, REASON, T0 + 1).await.expect("park"));
    let parked = b
        .get_target("rss", "internal")
        .await
        .expect("get")
        .expect("internal");
    assert_eq!(
        (
            parked.refused_at,
            parked.refused_reason.as_deref(),
            parked.error_count,
            parked.dead_at,
            parked.last_polled_at,
        ),
        (Some(T0 + 1), Some(REASON), 0, None, Some(T0 + 1))
    );
    assert!(
        parked.history.is_empty(),
        "a refusal is not a failed attempt"
    );
    let far = T0 + 10 * 365 * 24 * 3600 * 1000;
    assert_eq!(
        b.count_due("rss", far).await.expect("count_due"),
        1,
        "only the other target is ever due"
    );
    assert_eq!(b.count_refused("rss").await.expect("count"), 1);
    assert_eq!(b.count_refused("x").await.expect("count"), 0);
    let listed = b
        .list_refused_targets(Some("rss"), 0, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].refused_reason.as_deref(), Some(REASON));
    assert_eq!(
        b.list_refused_targets(None, 0, 10)
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        b.list_refused_targets(Some("x"), 0, 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        b.list_dead_targets(Some("rss"), 0, 10)
            .await
            .expect("dead")
            .is_empty(),
        "parked is not dead"
    );
    assert!(
        !b.park_refused(&claim, REASON, T0 + 2).await.expect("park"),
        "a claim that no longer holds the lease parks nothing"
    );

    assert_eq!(b.release_refused("x", T0 + 5).await.expect("release"), 0);
    assert_eq!(b.release_refused("rss", T0 + 5).await.expect("release"), 1);
    let released = b
        .get_target("rss", "internal")
        .await
        .expect("get")
        .expect("internal");
    assert_eq!(
        (
            released.refused_at,
            released.refused_reason,
            released.next_run_at,
            released.error_count
        ),
        (None, None, T0 + 5, 0)
    );
    let due = b
        .claim_due("rss", "w2", T0 + 5, LEASE, 10)
        .await
        .expect("claim");
    assert!(
        due.iter().any(|claim| claim.target.target == "internal"),
        "released targets are claimed again"
    );
    assert_eq!(b.release_refused("rss", T0 + 6).await.expect("release"), 0);
}

pub async fn release_clears_the_lease_and_reschedules(b: &dyn Backend) {
    let claim = add_and_claim(b, "rss", "feed", "w1", T0).await;
    assert!(b.release(&claim, T0 + 5_000).await.expect("release"));
    let target = b
        .get_target("rss", "feed")
        .await
        .expect("get")
        .expect("feed");
    assert_eq!(target.next_run_at, T0 + 5_000);
    assert_eq!(target.last_polled_at, None, "a release is not a poll");
    assert_eq!(target.error_count, 0);
    assert!(
        b.claim_due("rss", "w2", T0 + 4_999, LEASE, 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due before the new next_run_at"
    );
    assert_eq!(b.count_due("rss", T0 + 5_000).await.expect("count_due"), 1);
    let again = claim_only(b, "rss", "w2", T0 + 5_000).await;
    assert_eq!(again.worker, "w2");
    assert!(
        !b.release(&claim, T0).await.expect("stale release"),
        "the old claim no longer holds the target"
    );
    assert!(
        b.claim_due("rss", "w3", T0 + 5_000, LEASE, 10)
            .await
            .expect("claim")
            .is_empty(),
        "the stale release did not free w2's lease"
    );
}

// ---------------------------------------------------------------------------------------------
// Retention

const DAY_MS: Millis = 86_400_000;

/// Claims `target` of `connector` (adding it if new) and commits `ids` as its poll at `now`,
/// delivering to `queues`; returns how many items were new.
async fn poll_returns(
    b: &dyn Backend,
    connector: &str,
    target: &str,
    ids: &[&str],
    queues: &[&str],
    now: Millis,
) -> u64 {
    b.add_targets(connector, &[target.to_string()], now)
        .await
        .expect("add_targets");
    let claims = b
        .claim_due(connector, "w1", now, LEASE, 100)
        .await
        .expect("claim_due");
    let claim = claims
        .into_iter()
        .find(|claim| claim.target.target == target)
        .unwrap_or_else(|| panic!("{connector}/{target} should be due at {now}"));
    let report = b
        .complete_poll(&claim, success_delivering(items(ids), now, queues), now)
        .await
        .expect("commit");
    assert!(!report.lease_lost);
    report.new_items
}

/// Runs `forget_items` batches of `limit` until one examines fewer than `limit` items or
/// holds one back; returns every batch's report.
async fn forget_until_done(
    b: &dyn Backend,
    connector: &str,
    before: ItemPosition,
    now: Millis,
    limit: u32,
) -> Vec<ForgetReport> {
    let mut reports = Vec::new();
    loop {
        let report = b
            .forget_items(connector, before, now, limit)
            .await
            .expect("forget_items");
        reports.push(report);
        if report.examined < u64::from(limit) || report.held > 0 {
            return reports;
        }
        assert!(reports.len() < 1000, "forget_items never finishes");
    }
}

/// Far enough ahead that every item stands before it.
fn before_everything() -> ItemPosition {
    ItemPosition::fetched_at(Millis::MAX)
}

pub async fn done_jobs_older_than_the_cutoff_are_purged_in_batches_and_dead_jobs_stay(
    b: &dyn Backend,
) {
    for n in 0..7 {
        b.enqueue(job("q", &format!("p{n}"), 1, T0))
            .await
            .expect("enqueue");
    }
    let leases = b.lease_jobs("q", "w1", T0, LEASE, 6).await.expect("lease");
    assert_eq!(leases.len(), 6);
    for (n, lease) in leases.iter().take(4).enumerate() {
        assert!(
            b.complete_job(lease, T0 + n as Millis)
                .await
                .expect("complete")
        );
    }
    assert!(
        b.fail_job(&leases[4], "gone", None, T0)
            .await
            .expect("fail")
    );
    // leases[5] stays leased; the seventh job stays queued.

    // Done before T0 + 2: the jobs finished at T0 and T0 + 1, one per batch of 1.
    assert_eq!(b.purge_done_jobs(T0 + 2, 1).await.expect("purge"), 1);
    assert_eq!(b.purge_done_jobs(T0 + 2, 1).await.expect("purge"), 1);
    assert_eq!(
        b.purge_done_jobs(T0 + 2, 1).await.expect("purge"),
        0,
        "the cutoff is exclusive"
    );
    assert_eq!(b.queue_counts("q").await.expect("counts").done, 2);
    assert_eq!(b.purge_done_jobs(T0 + DAY_MS, 100).await.expect("purge"), 2);
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            queued: 1,
            leased: 1,
            done: 0,
            dead: 1
        },
        "queued, leased and dead jobs are never purged"
    );
    assert_eq!(b.list_dead(Some("q"), 10).await.expect("dead").len(), 1);
    assert!(
        b.complete_job(&leases[5], T0).await.expect("complete"),
        "a leased job is still completable after purges"
    );
}

pub async fn items_before_a_position_are_forgotten_oldest_first_in_batches(b: &dyn Backend) {
    poll_returns(b, "rss", "feed-1", &["a", "b", "c"], &[], T0).await;
    poll_returns(b, "rss", "feed-2", &["d", "e"], &[], T0 + 10).await;
    poll_returns(b, "rss", "feed-3", &["f"], &[], T0 + 20).await;
    poll_returns(b, "other", "feed-1", &["a"], &[], T0).await;

    let before = ItemPosition::fetched_at(T0 + 20);
    let reports = forget_until_done(b, "rss", before, T0 + DAY_MS, 2).await;
    let forgotten: Vec<u64> = reports.iter().map(|r| r.forgotten).collect();
    assert_eq!(forgotten, [2, 2, 1], "batches of at most 2, oldest first");
    assert!(
        reports
            .iter()
            .all(|r| r.held == 0 && r.examined == r.forgotten)
    );
    assert_eq!(item_ids(&all_items(b, "rss").await), ["f"]);
    assert_eq!(
        item_ids(&all_items(b, "other").await),
        ["a"],
        "another connector's items are not touched"
    );
    let again = b
        .forget_items("rss", before, T0 + DAY_MS, 10)
        .await
        .expect("forget");
    assert_eq!(again, ForgetReport::default(), "nothing is left before it");

    // A limit of 0 still makes progress one item at a time rather than meaning "everything".
    let one = b
        .forget_items("rss", before_everything(), T0 + DAY_MS, 0)
        .await
        .expect("forget");
    assert_eq!((one.examined, one.forgotten), (1, 1));
    assert_eq!(b.count_items(Some("rss")).await.expect("count"), 0);
}

pub async fn a_forgotten_item_is_neither_stored_nor_delivered_again(b: &dyn Backend) {
    assert_eq!(
        poll_returns(b, "rss", "feed", &["x", "y"], &["sink"], T0).await,
        2
    );
    for lease in lease_all(b, "sink", "deliverer", T0).await {
        assert!(b.complete_job(&lease, T0).await.expect("complete"));
    }
    let reports = forget_until_done(b, "rss", before_everything(), T0 + 1, 100).await;
    assert_eq!(reports.iter().map(|r| r.forgotten).sum::<u64>(), 2);

    // The feed still lists x and y, plus a new z.
    let now = T0 + 3_600_000;
    assert_eq!(
        poll_returns(b, "rss", "feed", &["x", "y", "z"], &["sink"], now).await,
        1,
        "only z is new"
    );
    assert_eq!(item_ids(&all_items(b, "rss").await), ["z"]);
    let jobs = lease_all(b, "sink", "deliverer", now).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        item_ids(&delivered(&jobs[0])),
        ["z"],
        "x and y are not delivered again"
    );

    // Forgotten ids are per connector.
    assert_eq!(
        poll_returns(b, "other", "feed", &["x"], &[], now).await,
        1,
        "another connector's x is its own"
    );
}

pub async fn items_a_waiting_delivery_holds_are_kept(b: &dyn Backend) {
    poll_returns(b, "rss", "feed-1", &["a", "b"], &["sink"], T0).await;
    let first = lease_all(b, "sink", "deliverer", T0).await;
    assert!(b.complete_job(&first[0], T0).await.expect("complete"));
    poll_returns(b, "rss", "feed-2", &["c", "d"], &["sink"], T0 + 1).await;
    poll_returns(b, "rss", "feed-3", &["e"], &["sink"], T0 + 2).await;
    // Another connector's waiting delivery holds nothing of rss's.
    poll_returns(b, "other", "feed-1", &["o"], &["sink-other"], T0).await;

    let now = T0 + DAY_MS;
    let report = b
        .forget_items("rss", before_everything(), now, 100)
        .await
        .expect("forget");
    assert_eq!(
        report,
        ForgetReport {
            examined: 5,
            forgotten: 2,
            held: 3
        },
        "a and b were delivered; c, d (queued delivery) and e (queued delivery) are held"
    );
    assert_eq!(item_ids(&all_items(b, "rss").await), ["c", "d", "e"]);

    // A leased delivery holds its items as a queued one does.
    let waiting = lease_all(b, "sink", "deliverer", now).await;
    assert_eq!(waiting.len(), 2);
    let report = b
        .forget_items("rss", before_everything(), now, 100)
        .await
        .expect("forget");
    assert_eq!((report.forgotten, report.held), (0, 3));

    // Once c and d are delivered only e's delivery holds; once that one is dead, nothing does.
    assert!(b.complete_job(&waiting[0], now).await.expect("complete"));
    let report = b
        .forget_items("rss", before_everything(), now, 100)
        .await
        .expect("forget");
    assert_eq!((report.forgotten, report.held), (2, 1));
    assert_eq!(item_ids(&all_items(b, "rss").await), ["e"]);
    assert!(
        b.fail_job(&waiting[1], "gone", None, now)
            .await
            .expect("fail")
    );
    let report = b
        .forget_items("rss", before_everything(), now, 100)
        .await
        .expect("forget");
    assert_eq!((report.forgotten, report.held), (1, 0));
    assert_eq!(b.count_items(Some("rss")).await.expect("count"), 0);
    let dead = b.list_dead(Some("sink"), 10).await.expect("dead");
    assert_eq!(
        item_ids(&delivered_dead(&dead[0].payload)),
        ["e"],
        "a dead delivery keeps its own copy of the items"
    );
    assert_eq!(item_ids(&all_items(b, "other").await), ["o"]);
}

fn delivered_dead(payload: &str) -> Vec<StoredItem> {
    serde_json::from_str(payload).expect("a delivery payload is a JSON array of items")
}

pub async fn the_count_rule_keeps_the_newest_items(b: &dyn Backend) {
    poll_returns(b, "rss", "feed-1", &["a", "b"], &[], T0).await;
    poll_returns(b, "rss", "feed-2", &["c"], &[], T0 + 10).await;
    poll_returns(b, "rss", "feed-3", &["d", "e"], &[], T0 + 20).await;
    let stored = all_items(b, "rss").await;
    let position = |index: usize| ItemPosition {
        fetched_at: stored[index].fetched_at,
        seq: stored[index].seq,
    };

    assert_eq!(b.newest_items_start("rss", 0).await.expect("start"), None);
    assert_eq!(b.newest_items_start("rss", 6).await.expect("start"), None);
    assert_eq!(
        b.newest_items_start("rss", 5).await.expect("start"),
        Some(position(0)),
        "keeping as many as there are keeps the oldest"
    );
    assert_eq!(
        b.newest_items_start("nobody", 1).await.expect("start"),
        None
    );
    // Items fetched at the same time are ordered by seq: keeping 4 drops only a.
    assert_eq!(
        b.newest_items_start("rss", 4).await.expect("start"),
        Some(position(1))
    );
    let start = b
        .newest_items_start("rss", 2)
        .await
        .expect("start")
        .expect("more than 2 items");
    assert_eq!(start, position(3));
    forget_until_done(b, "rss", start, T0 + DAY_MS, 100).await;
    assert_eq!(item_ids(&all_items(b, "rss").await), ["d", "e"]);
}

pub async fn forgotten_ids_are_purged_once_unseen_for_the_horizon(b: &dyn Backend) {
    poll_returns(b, "rss", "feed", &["x", "y"], &[], T0).await;
    forget_until_done(b, "rss", before_everything(), T0, 100).await;

    // Within a day of being forgotten, seeing x again does not rewrite it; two days on,
    // seeing y does.
    assert_eq!(
        poll_returns(b, "rss", "feed", &["x"], &[], T0 + 3_600_000).await,
        0
    );
    assert_eq!(
        poll_returns(b, "rss", "feed", &["y"], &[], T0 + 2 * DAY_MS).await,
        0
    );
    assert_eq!(
        b.purge_forgotten_ids(T0 + DAY_MS, 100)
            .await
            .expect("purge"),
        1,
        "x was last seen at T0; y at T0 + 2 days"
    );
    assert_eq!(
        b.purge_forgotten_ids(T0 + DAY_MS, 100)
            .await
            .expect("purge"),
        0
    );

    // x is remembered no more: a poll that returns it stores it as new; y is still forgotten.
    assert_eq!(
        poll_returns(b, "rss", "feed", &["x", "y"], &[], T0 + 2 * DAY_MS + 1).await,
        1
    );
    assert_eq!(item_ids(&all_items(b, "rss").await), ["x"]);
    assert_eq!(b.count_forgotten_ids().await.expect("count"), 1, "y");
    assert_eq!(
        b.purge_forgotten_ids(T0 + 3 * DAY_MS, 100)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(b.count_forgotten_ids().await.expect("count"), 0);

    // With no time limit, a purge takes the least recently seen first (how a cap trims).
    let day = |n: Millis| T0 + n * DAY_MS;
    poll_returns(b, "rss", "feed", &["p"], &[], day(3)).await;
    forget_until_done(b, "rss", before_everything(), day(3), 100).await;
    poll_returns(b, "rss", "feed", &["q"], &[], day(4)).await;
    forget_until_done(b, "rss", before_everything(), day(4), 100).await;
    assert_eq!(b.count_forgotten_ids().await.expect("count"), 3, "x, p, q");
    assert_eq!(
        b.purge_forgotten_ids(Millis::MAX, 2).await.expect("purge"),
        2
    );
    assert_eq!(
        poll_returns(b, "rss", "feed", &["x", "p", "q"], &[], day(5)).await,
        2,
        "x and p (forgotten on day 3) went; q (day 4) is still remembered"
    );
}

pub async fn storage_stats_count_rows_per_table(b: &dyn Backend) {
    let empty = b.storage_stats().await.expect("stats");
    assert!(empty.database_bytes > 0, "{empty:?}");
    assert!(empty.free_bytes <= empty.database_bytes);
    let tables: Vec<&str> = empty.rows.keys().map(String::as_str).collect();
    assert_eq!(
        tables,
        ["forgotten_items", "items", "jobs", "state", "targets"]
    );
    assert!(empty.rows.values().all(|rows| *rows == 0), "{empty:?}");

    b.add_targets("rss", &names(&["other-feed"]), T0)
        .await
        .expect("add");
    poll_returns(b, "rss", "feed", &["a", "b", "c"], &["sink"], T0).await;
    b.set_state("rss", StateScope::Connector, "k", Some("v"))
        .await
        .expect("set_state");
    let delivered = lease_all(b, "sink", "deliverer", T0).await;
    assert!(b.complete_job(&delivered[0], T0).await.expect("complete"));
    b.forget_items("rss", before_everything(), T0, 1)
        .await
        .expect("forget");

    let stats = b.storage_stats().await.expect("stats");
    let rows = |table: &str| stats.rows.get(table).copied();
    assert_eq!(rows("targets"), Some(2));
    assert_eq!(rows("items"), Some(2));
    assert_eq!(rows("forgotten_items"), Some(1));
    assert_eq!(rows("jobs"), Some(1));
    assert_eq!(rows("state"), Some(1));
    assert!(stats.database_bytes >= empty.database_bytes);
}

// ---------------------------------------------------------------------------------------------
// Credentials: the token store.

fn sealed_token(credential: &str, subject: &str, ciphertext: &[u8], at: Millis) -> StoredToken {
    StoredToken {
        credential: credential.to_string(),
        subject: subject.to_string(),
        scopes: names(&["read"]),
        expires_at: Some(at + 3_600_000),
        needs_relink: None,
        key_id: "k1".to_string(),
        nonce: vec![7; 24],
        ciphertext: ciphertext.to_vec(),
        updated_at: at,
    }
}

pub async fn tokens_are_stored_replaced_listed_and_deleted_per_credential_and_subject(
    b: &dyn Backend,
) {
    assert_eq!(b.get_token("x-app", "alice").await.expect("get"), None);
    let alice = sealed_token("x-app", "alice", b"sealed-a", 1_000);
    b.put_token(&alice).await.expect("put");
    b.put_token(&sealed_token("x-app", "bob", b"sealed-b", 1_000))
        .await
        .expect("put");
    b.put_token(&sealed_token("other", "alice", b"sealed-o", 1_000))
        .await
        .expect("put");
    assert_eq!(
        b.get_token("x-app", "alice").await.expect("get"),
        Some(alice.clone())
    );
    // A replacement takes every column, scopes and key id included.
    let replaced = StoredToken {
        scopes: names(&["read", "write"]),
        expires_at: None,
        key_id: "k2".to_string(),
        nonce: vec![9; 24],
        ciphertext: b"sealed-a2".to_vec(),
        updated_at: 2_000,
        ..alice
    };
    b.put_token(&replaced).await.expect("replace");
    assert_eq!(
        b.get_token("x-app", "alice").await.expect("get"),
        Some(replaced.clone())
    );
    assert_eq!(
        b.list_token_subjects("x-app", "", 0).await.expect("list"),
        names(&["alice", "bob"])
    );
    assert_eq!(
        b.list_token_subjects("x-app", "alice", 0)
            .await
            .expect("list"),
        names(&["bob"])
    );
    let all = b.list_tokens(None, 2).await.expect("list all");
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|t| (t.credential.as_str(), t.subject.as_str()))
        .collect();
    assert_eq!(keys, [("other", "alice"), ("x-app", "alice")]);
    let rest = b
        .list_tokens(Some(("x-app", "alice")), 10)
        .await
        .expect("list rest");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].subject, "bob");
    assert!(b.delete_token("x-app", "alice").await.expect("delete"));
    assert!(
        !b.delete_token("x-app", "alice")
            .await
            .expect("delete again")
    );
    assert_eq!(b.get_token("x-app", "alice").await.expect("get"), None);
    assert!(
        b.get_token("other", "alice").await.expect("get").is_some(),
        "another credential's token for the same subject stays"
    );
}

pub async fn a_token_marked_for_relinking_keeps_its_reason_and_an_oversized_one_is_refused(
    b: &dyn Backend,
) {
    assert!(
        !b.mark_token_relink("x-app", "nobody", "invalid_grant")
            .await
            .expect("mark")
    );
    b.put_token(&sealed_token("x-app", "carol", b"sealed", 1_000))
        .await
        .expect("put");
    assert!(
        b.mark_token_relink(
            "x-app",
            "carol",
            "the token endpoint answered invalid_grant"
        )
        .await
        .expect("mark")
    );
    let stored = b
        .get_token("x-app", "carol")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        stored.needs_relink.as_deref(),
        Some("the token endpoint answered invalid_grant")
    );
    assert_eq!(stored.ciphertext, b"sealed", "the token itself is kept");
    let huge = sealed_token(
        "x-app",
        "dave",
        &vec![0; crate::MAX_TOKEN_CIPHERTEXT + 1],
        1_000,
    );
    let refused = b.put_token(&huge).await.expect_err("over the cap");
    assert!(matches!(refused, BackendError::Refused(_)), "{refused}");
    assert_eq!(b.get_token("x-app", "dave").await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// Handler jobs: kind, target, idempotency, heartbeat, earlier outcome, outcome, defer, pause

fn handler_job(queue: &str, kind: &str, target: Option<&str>, key: Option<&str>) -> NewJob {
    NewJob {
        kind: kind.to_string(),
        target: target.map(str::to_string),
        idempotency_key: key.map(str::to_string),
        ..NewJob::new(queue, r#"{"text":"hi"}"#, 5, T0)
    }
}

pub async fn jobs_carry_kind_target_and_the_earlier_outcome(b: &dyn JobQueue) {
    let id = b
        .enqueue(handler_job("posts", "post", Some("user-1"), None))
        .await
        .expect("enqueue");
    let first = lease_all(b, "posts", "w1", T0).await.remove(0);
    assert_eq!(first.id, id);
    assert_eq!(first.kind, "post");
    assert_eq!(first.target.as_deref(), Some("user-1"));
    assert_eq!(first.payload, r#"{"text":"hi"}"#);
    assert_eq!(first.earlier, EarlierOutcome::None);
    assert!(
        b.fail_job(&first, "503", Some(T0 + 10), T0)
            .await
            .expect("fail")
    );
    let second = lease_all(b, "posts", "w1", T0 + 10).await.remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        second.earlier,
        EarlierOutcome::Failed,
        "a reported failure is known not to have taken effect"
    );
}

pub async fn an_idempotency_key_enqueues_once_per_queue(b: &dyn JobQueue) {
    let first = b
        .enqueue_job(handler_job("posts", "post", None, Some("k-1")))
        .await
        .expect("enqueue");
    let Enqueued::New(id) = first else {
        panic!("the first job with a key is new: {first:?}");
    };
    let again = b
        .enqueue_job(NewJob {
            payload: "another payload".into(),
            ..handler_job("posts", "other", None, Some("k-1"))
        })
        .await
        .expect("enqueue again");
    assert_eq!(
        again,
        Enqueued::Repeat(id),
        "the same key answers the first id"
    );
    let elsewhere = b
        .enqueue_job(handler_job("other-queue", "post", None, Some("k-1")))
        .await
        .expect("enqueue elsewhere");
    assert!(
        matches!(elsewhere, Enqueued::New(other) if other != id),
        "keys are per queue: {elsewhere:?}"
    );
    let leased = lease_all(b, "posts", "w", T0).await;
    assert_eq!(leased.len(), 1, "nothing new was stored for the repeat");
    assert_eq!(leased[0].kind, "post", "the first job's fields stay");
    // A repeat after the job is done still names the first job.
    assert!(b.complete_job(&leased[0], T0).await.expect("complete"));
    assert_eq!(
        b.enqueue_job(handler_job("posts", "post", None, Some("k-1")))
            .await
            .expect("enqueue after done"),
        Enqueued::Repeat(id)
    );
}

pub async fn enqueue_refuses_what_is_over_a_cap_and_stores_nothing(b: &dyn JobQueue) {
    let cases = [
        (
            NewJob::new("q", "x".repeat(MAX_JOB_PAYLOAD_BYTES + 1), 5, T0),
            "payload",
        ),
        (
            handler_job("q", "post", Some(&"t".repeat(MAX_TARGET_BYTES + 1)), None),
            "target",
        ),
        (
            handler_job(
                "q",
                "post",
                None,
                Some(&"k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1)),
            ),
            "idempotency_key",
        ),
        (handler_job("q", "post", None, Some("")), "idempotency_key"),
        (handler_job("q", &"k".repeat(65), None, None), "kind"),
    ];
    for (job, field) in cases {
        match b.enqueue_job(job).await {
            Err(BackendError::Refused(reason)) => {
                assert!(reason.starts_with(field), "{field}: {reason}");
                assert!(reason.len() < 200, "the reason never echoes the value");
            }
            other => panic!("{field}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts::default()
    );
    // At the caps exactly, it is taken.
    b.enqueue_job(NewJob::new("q", "x".repeat(MAX_JOB_PAYLOAD_BYTES), 5, T0))
        .await
        .expect("a payload at the cap");
}

pub async fn a_heartbeat_keeps_a_job_from_being_taken_over(b: &dyn JobQueue) {
    b.enqueue(job("q", "p", 5, T0)).await.expect("enqueue");
    let mut held = lease_all(b, "q", "w1", T0).await.remove(0);
    let first_until = held.lease_until;
    assert!(
        b.heartbeat_job(&mut held, T0 + LEASE_MS / 2, LEASE)
            .await
            .expect("heartbeat")
    );
    assert_eq!(held.lease_until, T0 + LEASE_MS / 2 + LEASE_MS);
    assert!(
        lease_all(b, "q", "w2", first_until + 1).await.is_empty(),
        "the extended lease holds past the first deadline"
    );
    let mut stale = JobLease {
        lease_until: first_until,
        ..held.clone()
    };
    assert!(
        !b.heartbeat_job(&mut stale, T0 + 1, LEASE)
            .await
            .expect("stale heartbeat"),
        "a heartbeat of a lease no longer held is refused"
    );
    let mut thief = JobLease {
        worker: "w2".into(),
        ..held.clone()
    };
    assert!(
        !b.heartbeat_job(&mut thief, T0 + 1, LEASE)
            .await
            .expect("other worker")
    );
    assert!(
        b.complete_job(&held, T0 + LEASE_MS)
            .await
            .expect("complete"),
        "completion is guarded by the moved-on lease"
    );
}

pub async fn a_taken_over_or_unknown_attempt_is_handed_on_as_unknown_until_done(b: &dyn JobQueue) {
    b.enqueue(job("q", "p", 10, T0)).await.expect("enqueue");
    let lost = lease_all(b, "q", "w1", T0).await.remove(0);
    let taken = lease_all(b, "q", "w2", lost.lease_until + 1)
        .await
        .remove(0);
    assert_eq!(
        taken.earlier,
        EarlierOutcome::Unknown,
        "its worker may have acted"
    );
    // It sticks through a later, known failure.
    assert!(
        b.fail_job(&taken, "503", Some(taken.lease_until), taken.lease_until)
            .await
            .expect("fail")
    );
    let third = lease_all(b, "q", "w2", taken.lease_until).await.remove(0);
    assert_eq!(third.earlier, EarlierOutcome::Unknown);
    assert!(
        b.complete_job(&third, third.lease_until)
            .await
            .expect("done")
    );
    let record = b.job(third.id).await.expect("job").expect("stored");
    assert!(!record.earlier_unknown, "done clears the mark");

    // A failure the worker reports as unknown marks it too.
    b.enqueue(job("q2", "p", 10, T0)).await.expect("enqueue");
    let sent = lease_all(b, "q2", "w1", T0).await.remove(0);
    let failure = JobFailure {
        error: "connection reset after the request was sent",
        retry_at: Some(T0),
        outcome_unknown: true,
    };
    assert!(b.record_failure(&sent, &failure, T0).await.expect("fail"));
    let next = lease_all(b, "q2", "w1", T0).await.remove(0);
    assert_eq!(next.earlier, EarlierOutcome::Unknown);
}

pub async fn done_jobs_keep_their_outcome_but_not_their_payload(b: &dyn JobQueue) {
    let done_id = b
        .enqueue(job("q", "secret-free payload", 5, T0))
        .await
        .expect("enqueue");
    let skipped_id = b.enqueue(job("q", "p2", 5, T0)).await.expect("enqueue");
    let leases = lease_all(b, "q", "w", T0).await;
    let done = JobOutcome::Done {
        reference: Some("post-1".into()),
        detail: Some("posted".into()),
    };
    let skipped = JobOutcome::Skipped {
        reason: "came from X".into(),
    };
    assert!(b.finish_job(&leases[0], &done, T0).await.expect("finish"));
    assert!(
        b.finish_job(&leases[1], &skipped, T0)
            .await
            .expect("finish")
    );
    assert!(
        !b.finish_job(&leases[1], &done, T0).await.expect("again"),
        "a finished job is not finished twice"
    );
    let record = b.job(done_id).await.expect("job").expect("stored");
    assert_eq!(record.state, "done");
    assert_eq!(record.outcome, Some(done));
    let record = b.job(skipped_id).await.expect("job").expect("stored");
    assert_eq!(record.outcome, Some(skipped));
    assert!(b.job(done_id + 1000).await.expect("job").is_none());
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            done: 2,
            ..QueueCounts::default()
        }
    );
}

pub async fn a_deferred_job_comes_back_without_counting_an_attempt(b: &dyn JobQueue) {
    b.enqueue(job("q", "p", 2, T0)).await.expect("enqueue");
    let first = lease_all(b, "q", "w", T0).await.remove(0);
    assert!(b.defer_job(&first, T0 + 500, T0).await.expect("defer"));
    assert!(
        lease_all(b, "q", "w", T0 + 499).await.is_empty(),
        "due later"
    );
    let again = lease_all(b, "q", "w", T0 + 500).await.remove(0);
    assert_eq!(again.attempt, 1, "the deferral counted no attempt");
    assert_eq!(again.earlier, EarlierOutcome::None);
    assert!(!b.defer_job(&first, T0, T0).await.expect("stale defer"));
    // Deferring many times never uses up its attempts.
    let mut lease = again;
    for round in 1..=5 {
        assert!(
            b.defer_job(&lease, T0 + 500 + round, T0)
                .await
                .expect("defer")
        );
        lease = lease_all(b, "q", "w", T0 + 500 + round).await.remove(0);
    }
    assert_eq!(lease.attempt, 1);
}

pub async fn a_paused_queue_leases_nothing_until_resumed(b: &dyn JobQueue) {
    b.enqueue(job("q", "p", 5, T0)).await.expect("enqueue");
    b.set_queue_paused("q", true, T0).await.expect("pause");
    b.set_queue_paused("q", true, T0)
        .await
        .expect("pausing twice is fine");
    assert!(b.queue_paused("q").await.expect("paused"));
    assert!(!b.queue_paused("other").await.expect("paused"));
    b.enqueue(job("q", "p2", 5, T0))
        .await
        .expect("enqueue while paused");
    b.enqueue(job("other", "p", 5, T0)).await.expect("enqueue");
    assert!(lease_all(b, "q", "w", T0).await.is_empty(), "paused");
    assert_eq!(lease_all(b, "other", "w", T0).await.len(), 1, "others run");
    assert_eq!(
        b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            queued: 2,
            ..QueueCounts::default()
        }
    );
    b.set_queue_paused("q", false, T0).await.expect("resume");
    assert!(!b.queue_paused("q").await.expect("paused"));
    assert_eq!(lease_all(b, "q", "w", T0).await.len(), 2);
}

pub async fn job_history_keeps_the_latest_failures(b: &dyn JobQueue) {
    let failures = MAX_HISTORY + 3;
    let id = b
        .enqueue(job("q", "p", failures as u32, T0))
        .await
        .expect("enqueue");
    for n in 0..failures {
        let now = T0 + n as Millis;
        let lease = lease_all(b, "q", "w", now).await.remove(0);
        let retry_at = (n + 1 < failures).then_some(now + 1);
        assert!(
            b.fail_job(&lease, &format!("boom {n}"), retry_at, now)
                .await
                .expect("fail")
        );
    }
    let dead = b.list_dead(Some("q"), 10).await.expect("list_dead");
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].attempts as usize, failures);
    let kept: Vec<_> = (failures - MAX_HISTORY..failures)
        .map(|n| Attempt {
            at: T0 + n as Millis,
            error: format!("boom {n}"),
        })
        .collect();
    assert_eq!(
        dead[0].history, kept,
        "the latest MAX_HISTORY, oldest first"
    );
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some(format!("boom {}", failures - 1).as_str())
    );
}

pub async fn dropping_a_dead_job_frees_its_idempotency_key(b: &dyn JobQueue) {
    let keyed = handler_job("posts", "post", None, Some("k-1"));
    let Enqueued::New(first) = b.enqueue_job(keyed.clone()).await.expect("enqueue") else {
        panic!("the first job with a key is new");
    };
    let lease = lease_all(b, "posts", "w", T0).await.remove(0);
    assert!(b.fail_job(&lease, "bad", None, T0).await.expect("fail"));
    assert_eq!(
        b.enqueue_job(keyed.clone()).await.expect("enqueue"),
        Enqueued::Repeat(first),
        "a dead job still holds its key"
    );
    assert!(b.drop_dead_job(first).await.expect("drop"));
    assert!(b.job(first).await.expect("job").is_none(), "gone");
    let again = b.enqueue_job(keyed).await.expect("enqueue after drop");
    assert!(
        matches!(again, Enqueued::New(id) if id != first),
        "the key is free once its job is dropped: {again:?}"
    );
    assert_eq!(
        b.queue_counts("posts").await.expect("counts"),
        QueueCounts {
            queued: 1,
            ..QueueCounts::default()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Rankings: sorted sets of (member, score) per board.

/// A cap no case reaches unless it tests caps.
const ROOMY: RankingCap = RankingCap {
    max_members: 10_000,
};

fn standings(rows: &[(&str, i64, u64)]) -> Vec<Standing> {
    rows.iter()
        .map(|&(member, score, rank)| Standing {
            member: member.to_string(),
            score,
            rank,
        })
        .collect()
}

fn members_of(standings: &[Standing]) -> Vec<&str> {
    standings.iter().map(|s| s.member.as_str()).collect()
}

/// Sets each (member, score), in the order given, at `T0 + index`.
async fn seed_board(b: &dyn RankingStore, board: &str, scores: &[(&str, i64)]) {
    for (at, &(member, score)) in (T0..).zip(scores) {
        b.rank_set(board, member, score, ROOMY, at)
            .await
            .expect("rank_set");
    }
}

/// Ann 30; a four-way tie at 20 (bytewise: "Zoe" sorts before "bob"); eve 10; fay 0. Seeded
/// out of order, so order comes from the store.
async fn seed_tied_board(b: &dyn RankingStore, board: &str) {
    seed_board(
        b,
        board,
        &[
            ("dan", 20),
            ("fay", 0),
            ("bob", 20),
            ("ann", 30),
            ("eve", 10),
            ("cat", 20),
            ("Zoe", 20),
        ],
    )
    .await;
}

fn assert_refused(result: Result<impl std::fmt::Debug, BackendError>, needles: &[&str]) -> String {
    match result {
        Err(BackendError::Refused(message)) => {
            for needle in needles {
                assert!(message.contains(needle), "{needle:?} not in {message:?}");
            }
            message
        }
        other => panic!("expected a refusal naming {needles:?}, got {other:?}"),
    }
}

pub async fn ranks_are_shared_in_a_tie_and_the_tie_is_in_member_order(b: &dyn RankingStore) {
    seed_tied_board(b, "q").await;
    assert_eq!(
        b.rank_top("q", 10).await.expect("top"),
        standings(&[
            ("ann", 30, 1),
            ("Zoe", 20, 2),
            ("bob", 20, 2),
            ("cat", 20, 2),
            ("dan", 20, 2),
            ("eve", 10, 6),
            ("fay", 0, 7),
        ]),
        "fewer members than asked: all of them"
    );
    assert_eq!(
        b.rank_top("q", 3).await.expect("top"),
        standings(&[("ann", 30, 1), ("Zoe", 20, 2), ("bob", 20, 2)])
    );
    assert_eq!(b.rank_top("q", 0).await.expect("top"), standings(&[]));
    assert_eq!(
        b.rank_of("q", "cat").await.expect("rank_of"),
        Some(standings(&[("cat", 20, 2)]).remove(0))
    );
    assert_eq!(
        b.rank_of("q", "eve").await.expect("rank_of"),
        Some(standings(&[("eve", 10, 6)]).remove(0))
    );
    assert_eq!(
        b.rank_of("q", "ann").await.expect("rank_of"),
        Some(standings(&[("ann", 30, 1)]).remove(0))
    );
    assert_eq!(b.rank_count("q").await.expect("count"), 7);
    assert_eq!(b.rank_count("empty").await.expect("count"), 0);
    assert_eq!(b.rank_top("empty", 5).await.expect("top"), standings(&[]));
    // Negative scores rank below zero.
    b.rank_set("q", "gus", -5, ROOMY, T0).await.expect("set");
    assert_eq!(
        b.rank_of("q", "gus").await.expect("rank_of"),
        Some(standings(&[("gus", -5, 8)]).remove(0))
    );
}

pub async fn around_me_takes_k_either_side_by_position_splitting_ties(b: &dyn RankingStore) {
    seed_tied_board(b, "q").await;
    assert_eq!(
        b.rank_around("q", "cat", 1).await.expect("around"),
        standings(&[("bob", 20, 2), ("cat", 20, 2), ("dan", 20, 2)]),
        "a tie is split at the member, by member order"
    );
    assert_eq!(
        b.rank_around("q", "cat", 2).await.expect("around"),
        standings(&[
            ("Zoe", 20, 2),
            ("bob", 20, 2),
            ("cat", 20, 2),
            ("dan", 20, 2),
            ("eve", 10, 6),
        ])
    );
    assert_eq!(
        b.rank_around("q", "dan", 1).await.expect("around"),
        standings(&[("cat", 20, 2), ("dan", 20, 2), ("eve", 10, 6)]),
        "a window starting inside a tie ranks what follows by position"
    );
    assert_eq!(
        b.rank_around("q", "eve", 2).await.expect("around"),
        standings(&[
            ("cat", 20, 2),
            ("dan", 20, 2),
            ("eve", 10, 6),
            ("fay", 0, 7),
        ]),
        "k reaches past the end: fewer after"
    );
    assert_eq!(
        b.rank_around("q", "bob", 3).await.expect("around"),
        standings(&[
            ("ann", 30, 1),
            ("Zoe", 20, 2),
            ("bob", 20, 2),
            ("cat", 20, 2),
            ("dan", 20, 2),
            ("eve", 10, 6),
        ]),
        "k reaches past the start: fewer before"
    );
    assert_eq!(
        b.rank_around("q", "eve", 0).await.expect("around"),
        standings(&[("eve", 10, 6)])
    );
}

pub async fn around_me_at_rank_1_has_nothing_before_and_a_huge_k_is_clamped(b: &dyn RankingStore) {
    seed_tied_board(b, "q").await;
    assert_eq!(
        b.rank_around("q", "ann", 2).await.expect("around"),
        standings(&[("ann", 30, 1), ("Zoe", 20, 2), ("bob", 20, 2)])
    );
    assert_eq!(
        members_of(&b.rank_around("q", "fay", u32::MAX).await.expect("around")),
        ["ann", "Zoe", "bob", "cat", "dan", "eve", "fay"],
        "k past both ends: the whole board"
    );

    // A board longer than the list cap: n and 2k + 1 are clamped to it.
    let cap = crate::MAX_RANKING_LIST;
    let scores: Vec<(String, i64)> = (0..i64::from(cap) + 10)
        .map(|n| (format!("m{n:05}"), 0))
        .collect();
    let scores: Vec<(&str, i64)> = scores.iter().map(|(m, s)| (m.as_str(), *s)).collect();
    seed_board(b, "big", &scores).await;
    let top = b.rank_top("big", u32::MAX).await.expect("top");
    assert_eq!(top.len(), cap as usize);
    assert!(top.iter().all(|s| s.rank == 1), "all tied at 0");
    assert_eq!(top.last().map(|s| s.member.as_str()), Some("m00999"));
    let around = b
        .rank_around("big", "m00500", u32::MAX)
        .await
        .expect("around");
    assert!(around.len() <= cap as usize, "{}", around.len());
    assert_eq!(around.len(), 2 * ((cap as usize - 1) / 2) + 1);
    assert_eq!(around.first().map(|s| s.member.as_str()), Some("m00001"));
    assert_eq!(around.last().map(|s| s.member.as_str()), Some("m00999"));
}

pub async fn an_absent_member_has_no_rank_and_nothing_around(b: &dyn RankingStore) {
    seed_tied_board(b, "q").await;
    assert_eq!(b.rank_of("q", "zed").await.expect("rank_of"), None);
    assert_eq!(
        b.rank_around("q", "zed", 3).await.expect("around"),
        standings(&[])
    );
    assert_eq!(b.rank_of("nowhere", "ann").await.expect("rank_of"), None);
    assert_eq!(
        b.rank_around("nowhere", "ann", 3).await.expect("around"),
        standings(&[])
    );
    let page = top_and_around(b, "q", "zed", 2, 3)
        .await
        .expect("top_and_around");
    assert_eq!(
        page,
        TopAndAround {
            top: standings(&[("ann", 30, 1), ("Zoe", 20, 2)]),
            around: Vec::new(),
            me: None,
        }
    );
    assert!(
        !b.rank_remove("q", "zed").await.expect("remove"),
        "nothing to remove"
    );
}

pub async fn top_and_around_leaves_out_members_already_in_the_top(b: &dyn RankingStore) {
    let scores: Vec<(String, i64)> = (0..10).map(|n| (format!("m{n}"), 100 - n * 10)).collect();
    let scores: Vec<(&str, i64)> = scores.iter().map(|(m, s)| (m.as_str(), *s)).collect();
    seed_board(b, "q", &scores).await;
    let page = top_and_around(b, "q", "m5", 3, 2)
        .await
        .expect("top_and_around");
    assert_eq!(
        page,
        TopAndAround {
            top: standings(&[("m0", 100, 1), ("m1", 90, 2), ("m2", 80, 3)]),
            around: standings(&[
                ("m3", 70, 4),
                ("m4", 60, 5),
                ("m5", 50, 6),
                ("m6", 40, 7),
                ("m7", 30, 8),
            ]),
            me: Some(standings(&[("m5", 50, 6)]).remove(0)),
        }
    );
    // Overlapping the top: only what the top does not show.
    let page = top_and_around(b, "q", "m3", 3, 2)
        .await
        .expect("top_and_around");
    assert_eq!(members_of(&page.around), ["m3", "m4", "m5"]);
    assert_eq!(page.me, Some(standings(&[("m3", 70, 4)]).remove(0)));
    // Inside the top: me is found, around holds only those after the top.
    let page = top_and_around(b, "q", "m1", 3, 2)
        .await
        .expect("top_and_around");
    assert_eq!(members_of(&page.top), ["m0", "m1", "m2"]);
    assert_eq!(page.around, standings(&[("m3", 70, 4)]));
    assert_eq!(page.me, Some(standings(&[("m1", 90, 2)]).remove(0)));
    // At rank 1 with a small k: everything around is in the top.
    let page = top_and_around(b, "q", "m0", 3, 1)
        .await
        .expect("top_and_around");
    assert_eq!(page.around, standings(&[]));
    assert_eq!(page.me, Some(standings(&[("m0", 100, 1)]).remove(0)));
}

pub async fn rank_add_creates_increments_and_saturates(b: &dyn RankingStore) {
    assert_eq!(b.rank_add("q", "a", 5, ROOMY, T0).await.expect("add"), 5);
    assert_eq!(b.rank_add("q", "a", 3, ROOMY, T0).await.expect("add"), 8);
    assert_eq!(b.rank_add("q", "a", -10, ROOMY, T0).await.expect("add"), -2);
    assert_eq!(b.rank_add("q", "z", 0, ROOMY, T0).await.expect("add"), 0);
    assert_eq!(
        b.rank_top("q", 10).await.expect("top"),
        standings(&[("z", 0, 1), ("a", -2, 2)])
    );
    assert_eq!(
        b.rank_add("q", "a", i64::MAX, ROOMY, T0)
            .await
            .expect("add"),
        i64::MAX - 2
    );
    assert_eq!(
        b.rank_add("q", "a", i64::MAX, ROOMY, T0)
            .await
            .expect("add"),
        i64::MAX,
        "saturates up"
    );
    assert_eq!(
        b.rank_add("q", "b", i64::MIN, ROOMY, T0)
            .await
            .expect("add"),
        i64::MIN
    );
    assert_eq!(
        b.rank_add("q", "b", -1, ROOMY, T0).await.expect("add"),
        i64::MIN,
        "saturates down"
    );
    assert_eq!(
        b.rank_of("q", "b").await.expect("rank_of"),
        Some(standings(&[("b", i64::MIN, 3)]).remove(0))
    );
    b.rank_set("q", "a", 7, ROOMY, T0).await.expect("set");
    assert_eq!(b.rank_add("q", "a", 1, ROOMY, T0).await.expect("add"), 8);
    assert_eq!(
        b.rank_add("other", "a", 1, ROOMY, T0).await.expect("add"),
        1,
        "boards are separate"
    );
}

pub async fn a_full_board_refuses_new_members_but_updates_existing_ones(b: &dyn RankingStore) {
    let cap = RankingCap { max_members: 3 };
    for member in ["a", "b", "c"] {
        b.rank_add("search-queries:daily:2026-12-02", member, 1, cap, T0)
            .await
            .expect("within the cap");
    }
    let board = "search-queries:daily:2026-12-02";
    let message = assert_refused(b.rank_add(board, "d", 1, cap, T0).await, &[board, "3"]);
    assert!(message.contains("full"), "{message}");
    assert_refused(b.rank_set(board, "d", 1, cap, T0).await, &[board, "3"]);
    assert_eq!(b.rank_count(board).await.expect("count"), 3);
    assert_eq!(b.rank_of(board, "d").await.expect("rank_of"), None);
    assert_eq!(b.rank_add(board, "a", 5, cap, T0).await.expect("add"), 6);
    b.rank_set(board, "b", 9, cap, T0).await.expect("set");
    // A cap lowered below what the board holds still lets its members move.
    let lower = RankingCap { max_members: 1 };
    assert_eq!(b.rank_add(board, "c", 1, lower, T0).await.expect("add"), 2);
    assert_eq!(
        b.rank_top(board, 10).await.expect("top"),
        standings(&[("b", 9, 1), ("a", 6, 2), ("c", 2, 3)])
    );
    // Other boards have their own count; a removal makes room.
    b.rank_add("other", "d", 1, cap, T0)
        .await
        .expect("another board");
    assert!(b.rank_remove(board, "c").await.expect("remove"));
    assert_eq!(b.rank_add(board, "d", 4, cap, T0).await.expect("room"), 4);
    assert_refused(
        b.rank_add(board, "e", 1, RankingCap { max_members: 0 }, T0)
            .await,
        &[board, "0"],
    );
    assert_eq!(b.rank_count(board).await.expect("count"), 3);
}

pub async fn names_and_members_over_their_caps_are_refused_and_not_echoed(b: &dyn RankingStore) {
    let long_board = "B".repeat(crate::MAX_BOARD_NAME_BYTES + 1);
    let long_member = "M".repeat(crate::MAX_MEMBER_BYTES + 1);
    let board_needles = ["201", "200"];
    let member_needles = ["257", "256"];
    for message in [
        assert_refused(
            b.rank_add(&long_board, "m", 1, ROOMY, T0).await,
            &board_needles,
        ),
        assert_refused(
            b.rank_set(&long_board, "m", 1, ROOMY, T0).await,
            &board_needles,
        ),
        assert_refused(b.rank_top(&long_board, 1).await, &board_needles),
        assert_refused(b.rank_count(&long_board).await, &board_needles),
        assert_refused(b.rank_drop(&long_board).await, &board_needles),
        assert_refused(b.rank_of(&long_board, "m").await, &board_needles),
        assert_refused(b.rank_boards(&long_board).await, &board_needles),
        assert_refused(
            b.rank_add("q", &long_member, 1, ROOMY, T0).await,
            &member_needles,
        ),
        assert_refused(
            b.rank_set("q", &long_member, 1, ROOMY, T0).await,
            &member_needles,
        ),
        assert_refused(b.rank_of("q", &long_member).await, &member_needles),
        assert_refused(b.rank_around("q", &long_member, 1).await, &member_needles),
        assert_refused(b.rank_remove("q", &long_member).await, &member_needles),
    ] {
        assert!(
            !message.contains("BBBB") && !message.contains("MMMM"),
            "{message}"
        );
    }
    assert_refused(b.rank_add("", "m", 1, ROOMY, T0).await, &["empty"]);
    assert_refused(b.rank_add("q", "", 1, ROOMY, T0).await, &["empty"]);
    assert_refused(b.rank_of("q", "").await, &["empty"]);
    assert_eq!(
        b.rank_boards("").await.expect("boards"),
        Vec::<BoardSummary>::new(),
        "nothing was stored"
    );
    // At the limits exactly: taken, and read back whole (multi-byte characters count bytes).
    let board = "é".repeat(crate::MAX_BOARD_NAME_BYTES / 2);
    let member = format!("{}a", "日".repeat(crate::MAX_MEMBER_BYTES / 3));
    assert_eq!(member.len(), crate::MAX_MEMBER_BYTES);
    assert_eq!(
        b.rank_add(&board, &member, 2, ROOMY, T0)
            .await
            .expect("add"),
        2
    );
    assert_eq!(
        b.rank_top(&board, 1).await.expect("top"),
        vec![Standing {
            member: member.clone(),
            score: 2,
            rank: 1
        }]
    );
    let over = format!("{}日", "日".repeat(crate::MAX_MEMBER_BYTES / 3));
    assert_refused(
        b.rank_add(&board, &over, 1, ROOMY, T0).await,
        &["258", "256"],
    );
    assert_refused(
        b.rank_add(&format!("{board}a"), "m", 1, ROOMY, T0).await,
        &["201", "200"],
    );
}

pub async fn rank_remove_takes_one_member_out_and_ranks_close_up(b: &dyn RankingStore) {
    seed_tied_board(b, "q").await;
    seed_tied_board(b, "other").await;
    assert!(b.rank_remove("q", "ann").await.expect("remove"));
    assert!(!b.rank_remove("q", "ann").await.expect("remove again"));
    assert!(b.rank_remove("q", "cat").await.expect("remove"));
    assert_eq!(
        b.rank_top("q", 10).await.expect("top"),
        standings(&[
            ("Zoe", 20, 1),
            ("bob", 20, 1),
            ("dan", 20, 1),
            ("eve", 10, 4),
            ("fay", 0, 5),
        ])
    );
    assert_eq!(b.rank_of("q", "ann").await.expect("rank_of"), None);
    assert_eq!(b.rank_count("q").await.expect("count"), 5);
    assert_eq!(
        b.rank_of("other", "ann").await.expect("rank_of"),
        Some(standings(&[("ann", 30, 1)]).remove(0)),
        "the same member on another board stays"
    );
}

pub async fn boards_are_listed_by_prefix_and_dropped_whole(b: &dyn RankingStore) {
    b.rank_add("q:daily:2026-12-01", "a", 1, ROOMY, T0 + 1)
        .await
        .expect("add");
    b.rank_add("q:daily:2026-12-01", "b", 1, ROOMY, T0 + 5)
        .await
        .expect("add");
    b.rank_add("q:daily:2026-12-01", "a", 1, ROOMY, T0 + 3)
        .await
        .expect("add");
    b.rank_add("q:daily:2026-12-02", "a", 1, ROOMY, T0 + 7)
        .await
        .expect("add");
    b.rank_add("q:weekly:2026-W49", "a", 1, ROOMY, T0 + 8)
        .await
        .expect("add");
    // LIKE's wildcards are plain characters in a prefix.
    b.rank_add("q_x", "a", 1, ROOMY, T0 + 9).await.expect("add");
    b.rank_add("qq", "a", 1, ROOMY, T0 + 9).await.expect("add");
    let summary = |board: &str, members: u64, updated_at: Millis| BoardSummary {
        board: board.to_string(),
        members,
        updated_at,
    };
    assert_eq!(
        b.rank_boards("q:daily:").await.expect("boards"),
        [
            summary("q:daily:2026-12-01", 2, T0 + 5),
            summary("q:daily:2026-12-02", 1, T0 + 7),
        ]
    );
    assert_eq!(
        b.rank_boards("q:daily:2026-12-01").await.expect("boards"),
        [summary("q:daily:2026-12-01", 2, T0 + 5)],
        "a whole name is its own prefix"
    );
    assert_eq!(
        b.rank_boards("q_").await.expect("boards"),
        [summary("q_x", 1, T0 + 9)]
    );
    let all: Vec<String> = b
        .rank_boards("")
        .await
        .expect("boards")
        .into_iter()
        .map(|s| s.board)
        .collect();
    assert_eq!(
        all,
        names(&[
            "q:daily:2026-12-01",
            "q:daily:2026-12-02",
            "q:weekly:2026-W49",
            "q_x",
            "qq",
        ])
    );
    assert_eq!(
        b.rank_boards("r").await.expect("boards"),
        Vec::<BoardSummary>::new()
    );

    assert_eq!(b.rank_drop("q:daily:2026-12-01").await.expect("drop"), 2);
    assert_eq!(b.rank_drop("q:daily:2026-12-01").await.expect("drop"), 0);
    assert_eq!(b.rank_count("q:daily:2026-12-01").await.expect("count"), 0);
    assert_eq!(
        b.rank_top("q:daily:2026-12-01", 10).await.expect("top"),
        standings(&[])
    );
    assert_eq!(
        b.rank_boards("q:daily:").await.expect("boards"),
        [summary("q:daily:2026-12-02", 1, T0 + 7)]
    );
    assert_eq!(b.rank_count("q:weekly:2026-W49").await.expect("count"), 1);
}

pub async fn concurrent_rank_adds_on_one_member_sum_exactly(store: &TestStore<dyn RankingStore>) {
    let first = store.backend.clone();
    let second = store.reopen().await;
    // 8 tasks, half on each instance, each adding its own delta 50 times, under a cap of one
    // member: whoever creates it, every other add is an update and counts.
    let cap = RankingCap { max_members: 1 };
    let tasks = (1..=8i64).map(|delta| {
        let backend = if delta % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move {
            for round in 0..50 {
                backend
                    .rank_add("q", "hot", delta, cap, T0 + round)
                    .await
                    .expect("rank_add");
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.expect("add task");
    }
    assert_eq!(
        first.rank_of("q", "hot").await.expect("rank_of"),
        Some(standings(&[("hot", 50 * 36, 1)]).remove(0))
    );
    assert_eq!(first.rank_count("q").await.expect("count"), 1);
}

pub async fn concurrent_new_members_from_two_instances_never_pass_the_cap(
    store: &TestStore<dyn RankingStore>,
) {
    let first = store.backend.clone();
    let second = store.reopen().await;
    let cap = RankingCap { max_members: 5 };
    let adds = (0..40).map(|n| {
        let backend = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move { backend.rank_add("q", &format!("m{n:02}"), 1, cap, T0).await })
    });
    let mut added = 0;
    for add in adds.collect::<Vec<_>>() {
        match add.await.expect("add task") {
            Ok(1) => added += 1,
            Err(BackendError::Refused(message)) => assert!(message.contains("5"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 5);
    assert_eq!(first.rank_count("q").await.expect("count"), 5);
    assert_eq!(first.rank_top("q", 100).await.expect("top").len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Rate-limit budgets: GCRA wherever its state lives.

fn quota(rate: &str, burst: u32) -> Quota {
    Quota::parse(rate, Some(burst)).expect("a valid quota")
}

pub async fn budgets_are_kept_per_key_and_deny_without_booking(b: &dyn RateLimitStore) {
    let one_per_second = quota("1/s", 1);
    assert_eq!(
        b.reserve("shop", &one_per_second, T0, 0)
            .await
            .expect("reserve"),
        Reservation::Granted {
            at: T0,
            waited_ms: 0
        }
    );
    // Denied, and nothing booked: asking again at the same instant says the same.
    for _ in 0..3 {
        assert_eq!(
            b.reserve("shop", &one_per_second, T0 + 10, 0)
                .await
                .expect("reserve"),
            Reservation::Denied {
                retry_at: T0 + 1000
            }
        );
    }
    assert!(
        b.reserve("shop:target-2", &one_per_second, T0 + 10, 0)
            .await
            .expect("reserve")
            .is_granted(),
        "another key has its own budget"
    );
    assert!(
        b.reserve("shop", &one_per_second, T0 + 1000, 0)
            .await
            .expect("reserve")
            .is_granted(),
        "one emission interval later the slot is free"
    );
}

pub async fn reservations_queue_one_emission_interval_apart(b: &dyn RateLimitStore) {
    // 3/s: T = 333 334 µs, rounded up to whole milliseconds for the caller.
    let three_per_second = quota("3/s", 1);
    let mut slots = Vec::new();
    for _ in 0..4 {
        match b
            .reserve("api", &three_per_second, T0, 2_000)
            .await
            .expect("reserve")
        {
            Reservation::Granted { at, waited_ms } => {
                assert_eq!(waited_ms, at - T0);
                slots.push(at - T0);
            }
            denied => panic!("within the accepted wait: {denied:?}"),
        }
    }
    assert_eq!(slots, [0, 334, 667, 1001]);
    // The next slot (1 333 ms away) is past a 1 s wait: denied, nothing booked.
    assert_eq!(
        b.reserve("api", &three_per_second, T0, 1_000)
            .await
            .expect("reserve"),
        Reservation::Denied {
            retry_at: T0 + 1334
        }
    );
}

pub async fn a_push_back_drains_the_budget_until_then_and_never_pulls_it_earlier(
    b: &dyn RateLimitStore,
) {
    let ten_per_second = quota("10/s", 5);
    b.push_back("x", &ten_per_second, T0, T0 + 5_000)
        .await
        .expect("push back");
    assert_eq!(
        b.reserve("x", &ten_per_second, T0 + 10, 0)
            .await
            .expect("reserve"),
        Reservation::Denied {
            retry_at: T0 + 5_000
        }
    );
    // A shorter Retry-After later does not undo the longer one.
    b.push_back("x", &ten_per_second, T0 + 20, T0 + 1_000)
        .await
        .expect("push back");
    let fill = b.fill("x", &ten_per_second, T0 + 20).await.expect("fill");
    assert_eq!((fill.available, fill.next_free_at), (0, T0 + 5_000));
    // At `until` exactly one request passes; the burst refills at the steady rate after it.
    assert!(
        b.reserve("x", &ten_per_second, T0 + 5_000, 0)
            .await
            .expect("reserve")
            .is_granted()
    );
    assert!(
        !b.reserve("x", &ten_per_second, T0 + 5_000, 0)
            .await
            .expect("reserve")
            .is_granted()
    );
}

pub async fn the_fill_shows_the_burst_left_and_the_next_free_slot(b: &dyn RateLimitStore) {
    let five_per_second = quota("5/s", 3);
    assert_eq!(
        b.fill("idle", &five_per_second, T0).await.expect("fill"),
        BudgetFill {
            available: 3,
            burst: 3,
            next_free_at: T0
        },
        "an unused budget is full"
    );
    for _ in 0..3 {
        assert!(
            b.reserve("idle", &five_per_second, T0, 0)
                .await
                .expect("reserve")
                .is_granted()
        );
    }
    assert_eq!(
        b.fill("idle", &five_per_second, T0).await.expect("fill"),
        BudgetFill {
            available: 0,
            burst: 3,
            next_free_at: T0 + 200
        }
    );
    assert_eq!(
        b.fill("idle", &five_per_second, T0 + 400)
            .await
            .expect("fill")
            .available,
        2,
        "two emission intervals refill two requests"
    );
}

pub async fn concurrent_reservations_from_two_instances_never_pass_the_quota(
    store: &TestStore<dyn RateLimitStore>,
) {
    let first = store.backend.clone();
    let second = store.reopen().await;
    // 10/s with a burst of 4, 64 callers at one instant on two instances: exactly the burst
    // passes at once, and the queue of those willing to wait 1 s holds 10 more.
    let budget = quota("10/s", 4);
    let calls = (0..64).map(|n| {
        let limiter = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move {
            let max_wait = if n < 32 { 0 } else { 1_000 };
            limiter.reserve("shared", &budget, T0, max_wait).await
        })
    });
    let mut slots = Vec::new();
    for call in calls {
        if let Reservation::Granted { at, .. } = call.await.expect("task").expect("reserve") {
            slots.push(at - T0);
        }
    }
    slots.sort_unstable();
    // Whoever came first, the burst passes at once and every later slot is its own, one
    // T = 100 ms after the other, up to the 1 s the waiting callers accept.
    assert_eq!(
        slots,
        [
            0, 0, 0, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000
        ]
    );
}
