//! Storage and coordination backends for tsunagi.
//!
//! The host talks to storage only through the traits in this crate, one per capability:
//! [`TargetStore`] (what to poll and when, with leased claims), [`ItemStore`] (deduplicated
//! results), [`JobQueue`] (durable jobs with leases, retries and a dead-letter state),
//! [`StateStore`] (connector key/value state) and [`RetentionStore`] (forgetting old items and
//! finished jobs in small batches, and measuring the store), [`TokenStore`] (sealed credential
//! tokens), [`RankingStore`] (sorted sets of scores per board) and [`SubscriptionStore`] (WebSub
//! subscriptions and their deliveries). [`Backend`] bundles them.
//!
//! The embedded backend is SQLite ([`sqlite::SqliteBackend`]); the scale-out one is PostgreSQL
//! ([`postgres::PostgresBackend`]), shared by many hosts. Both implement the same traits and
//! pass the same [`conformance`] suite. Redis ([`redis`]) serves what hosts share beside it —
//! rate-limit budgets ([`coordination::RateLimitStore`]), rankings, a job queue on Streams
//! ([`JobQueue`]) and the cluster's lock, bus, membership and pushed revisions — and passes the
//! suite's parts for the traits it offers.
//!
//! All times are milliseconds since the Unix epoch, passed in by the caller: the host owns the
//! clock, so tests can state exact times instead of sleeping.

pub mod breaker;
pub mod conformance;
pub mod coordination;
pub mod postgres;
pub mod ratelimit;
pub mod redis;
pub mod sqlite;
// What the SQL backends share (crate-private).
mod sql;
// Credentials: per-target tokens, sealed by the host.
pub mod tokens;
pub use tokens::{MAX_TOKEN_CIPHERTEXT, StoredToken, TokenStore};
// Rankings: sorted sets of (member, score) per board.
pub mod rankings;
// WebSub: subscriptions and the updates hubs delivered.
pub mod subscriptions;
pub use rankings::{
    BoardSummary, MAX_BOARD_NAME_BYTES, MAX_MEMBER_BYTES, MAX_RANKING_LIST, RankingCap,
    RankingStore, Standing, TopAndAround, top_and_around,
};
pub use subscriptions::{
    DeliveryRefusal, PushDelivery, Subscription, SubscriptionCounts, SubscriptionState,
    SubscriptionStore,
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Errors from a backend. Messages never contain secrets: backends store none.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("database error while {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("Redis error while {context}: {source}")]
    Redis {
        context: &'static str,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("could not open backend {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("stored data is corrupt ({context}): {reason}")]
    Corrupt {
        context: &'static str,
        reason: String,
    },
    /// Input the store does not take (nothing of the call was written).
    #[error("refused: {0}")]
    Refused(String),
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// One normalised item, as a connector returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Item {
    pub id: String,
    pub title: Option<String>,
    pub link: Option<String>,
    /// RFC 3339, UTC.
    pub published: Option<String>,
    /// RFC 3339, UTC.
    pub updated: Option<String>,
    pub authors: Vec<String>,
    pub summary: Option<String>,
    pub content: Option<String>,
    pub categories: Vec<String>,
    /// Where the item comes from, as its connector's TOML says (`origin = "x"`): stamped by the
    /// host, never by the plugin, so a downstream can tell a post imported from X and refuse
    /// to mirror it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// An item as stored: which connector and target produced it, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredItem {
    /// Insertion order, increasing; usable as a paging cursor.
    pub seq: i64,
    pub connector: String,
    pub target: String,
    pub fetched_at: Millis,
    #[serde(flatten)]
    pub item: Item,
}

/// A target of a connector (for RSS, a feed URL) and its polling state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub id: i64,
    pub connector: String,
    pub target: String,
    pub next_run_at: Millis,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub cursor: Option<String>,
    /// Consecutive failed polls; reset by a success.
    pub error_count: u32,
    pub last_error: Option<String>,
    pub last_polled_at: Option<Millis>,
    /// The adaptive polling interval the scheduler chose last time.
    pub interval_ms: Option<i64>,
    /// Set when the target was given up on (dead-lettered): it is never claimed until revived.
    pub dead_at: Option<Millis>,
    /// Set when the host's own egress policy refused the target's call (a configuration
    /// problem, not a failure): it is *parked*, never claimed, its error count untouched,
    /// until [`TargetStore::release_refused`] (a reload that changes the connector's egress
    /// rules, or a restart).
    #[serde(default)]
    pub refused_at: Option<Millis>,
    /// Why it was refused, as the plugin was told (URLs redacted).
    #[serde(default)]
    pub refused_reason: Option<String>,
    /// The latest consecutive failed attempts, oldest first (at most [`MAX_HISTORY`]); cleared
    /// by a success.
    pub history: Vec<Attempt>,
}

/// One failed attempt, as kept in a target's or a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Millis,
    pub error: String,
}

/// Failed attempts a target or job remembers.
pub const MAX_HISTORY: usize = 10;

/// The longest target the store takes, in bytes. It is the sitemap protocol's limit for a URL,
/// and a quarter of the 8 KiB request line most servers accept: a longer "URL" is a mistake or
/// an attack, and every target is printed in logs, `/status` and error messages.
pub const MAX_TARGET_BYTES: usize = 2048;

/// The longest error message stored (a target's or job's last error, each attempt of a
/// history) or shown in `/status`; longer ones are cut by [`cap_error`].
pub const MAX_ERROR_BYTES: usize = 2048;

/// Why `target` cannot be stored: empty, or longer than [`MAX_TARGET_BYTES`]. The message
/// gives the length, never the target itself.
pub fn target_problem(target: &str) -> Option<String> {
    if target.is_empty() {
        Some("is empty".to_string())
    } else if target.len() > MAX_TARGET_BYTES {
        Some(format!(
            "is {} bytes long; a target is at most {MAX_TARGET_BYTES} bytes",
            target.len()
        ))
    } else {
        None
    }
}

/// Checks a batch of targets before anything of it is stored.
pub fn check_targets(targets: &[String]) -> Result<()> {
    for (index, target) in targets.iter().enumerate() {
        if let Some(problem) = target_problem(target) {
            return Err(BackendError::Refused(format!(
                "target {} of {} {problem}",
                index + 1,
                targets.len()
            )));
        }
    }
    Ok(())
}

/// `message` cut to at most [`MAX_ERROR_BYTES`] at a character boundary, ending in a marker
/// that says how long it was, so a plugin or upstream returning megabytes of error text cannot
/// make the host store or show them.
pub fn cap_error(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_ERROR_BYTES {
        return std::borrow::Cow::Borrowed(message);
    }
    let marker = format!(" … [cut; {} bytes in all]", message.len());
    let mut keep = MAX_ERROR_BYTES.saturating_sub(marker.len());
    while !message.is_char_boundary(keep) {
        keep -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{marker}", &message[..keep]))
}

/// A target claimed by one worker until `lease_until`. Only the holder of the lease may
/// complete it; once the lease expires, another worker may claim the target again. A lease (of
/// a target or a job) holds while `now <= lease_until` and has expired once `now > lease_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetClaim {
    pub target: Target,
    pub worker: String,
    pub lease_until: Millis,
}

/// What `add_targets` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddReport {
    pub added: u64,
    pub already_present: u64,
}

/// The outcome of one poll, committed atomically: new items, target state, next run, and the
/// sink deliveries for the items that were new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollCommit {
    Success {
        items: Vec<Item>,
        etag: Option<String>,
        last_modified: Option<String>,
        cursor: Option<String>,
        /// Target-scoped state writes the call made (`None` deletes the key).
        state_writes: Vec<(String, Option<String>)>,
        next_run_at: Millis,
        interval_ms: i64,
        /// For each delivery here, one job is enqueued whose payload is the JSON array of the
        /// [`StoredItem`]s that were new (none when no item was new).
        deliver_to: Vec<Delivery>,
    },
    Failure {
        error: String,
        next_run_at: Millis,
        /// Give the target up: it moves to the dead-letter state and is not claimed again
        /// until revived ([`TargetStore::revive_target`]).
        dead: bool,
    },
}

/// A queue that receives a poll's new items as one job, and how often that job may be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub queue: String,
    pub max_attempts: u32,
}

/// What committing a poll did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitReport {
    /// Items stored for the first time by this commit.
    pub new_items: u64,
    /// The claim's lease had been lost (expired and taken by another worker); nothing was
    /// written.
    pub lease_lost: bool,
}

/// Targets and their schedule. Claims are leases: two workers, in one process or many sharing
/// the store, never hold the same target at once.
#[async_trait]
pub trait TargetStore: Send + Sync {
    /// Adds targets (idempotent): existing (connector, target) pairs are left as they are.
    async fn add_targets(
        &self,
        connector: &str,
        targets: &[String],
        first_run_at: Millis,
    ) -> Result<AddReport>;
    /// Removes a target and its target-scoped state; its stored items stay.
    async fn remove_target(&self, connector: &str, target: &str) -> Result<bool>;
    async fn get_target(&self, connector: &str, target: &str) -> Result<Option<Target>>;
    /// Targets ordered by id, after `after_id`, at most `limit`.
    async fn list_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>>;
    /// Claims up to `limit` targets of `connector` whose `next_run_at <= now` and that no live
    /// lease holds, earliest first, leasing them to `worker` until `now + lease`.
    async fn claim_due(
        &self,
        connector: &str,
        worker: &str,
        now: Millis,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<TargetClaim>>;
    /// Commits a poll's outcome and releases the lease, only if `claim` still holds it.
    /// An item whose id retention forgot ([`RetentionStore::forget_items`]) is not new: it is
    /// neither stored again nor delivered, and the poll refreshes when its id was last seen.
    async fn complete_poll(
        &self,
        claim: &TargetClaim,
        commit: PollCommit,
        now: Millis,
    ) -> Result<CommitReport>;
    /// Releases a claim without polling (shutdown): the target is due again at `next_run_at`.
    async fn release(&self, claim: &TargetClaim, next_run_at: Millis) -> Result<bool>;
    /// Targets of `connector` due at `now` and not leased.
    async fn count_due(&self, connector: &str, now: Millis) -> Result<u64>;
    async fn count_targets(&self, connector: &str) -> Result<u64>;
    /// Dead-lettered targets (of `connector`, or all), by id after `after_id`.
    async fn list_dead_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>>;
    /// Brings a dead target back: due at `now`, error count reset (its history stays until a
    /// success). False when no dead target has that id.
    async fn revive_target(&self, id: i64, now: Millis) -> Result<bool>;
    /// Deletes a dead target and its state. False when no dead target has that id.
    async fn drop_dead_target(&self, id: i64) -> Result<bool>;
    /// Parks a claimed target whose call the host's own policy refused, with the reason: it is
    /// not claimed again until [`Self::release_refused`]; its error count and history stay as
    /// they were. Only if `claim` still holds the lease (false otherwise).
    async fn park_refused(&self, claim: &TargetClaim, reason: &str, now: Millis) -> Result<bool>;
    /// Makes every parked target of `connector` due at `now`; answers how many there were.
    async fn release_refused(&self, connector: &str, now: Millis) -> Result<u64>;
    /// Parked targets (of `connector`, or all), by id after `after_id`.
    async fn list_refused_targets(
        &self,
        connector: Option<&str>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Target>>;
    async fn count_refused(&self, connector: &str) -> Result<u64>;
    /// Makes every live target (of any connector; not dead, not parked) whose target is
    /// exactly `target` due at `now`, or leaves it earlier if it already is: a ping saying the
    /// feed changed. Answers how many matched.
    async fn wake_target(&self, target: &str, now: Millis) -> Result<u64>;
    /// The same for live targets starting with `prefix` (a site's URL ending in `/`), at most
    /// `limit` of them, by id.
    async fn wake_targets_under(&self, prefix: &str, now: Millis, limit: u32) -> Result<u64>;
}

/// Filter for listing stored items.
#[derive(Debug, Clone, Default)]
pub struct ItemQuery {
    pub connector: Option<String>,
    pub target: Option<String>,
    /// Only items fetched at or after this time.
    pub fetched_since: Option<Millis>,
    /// Only items with `seq > after_seq`.
    pub after_seq: i64,
    pub limit: u32,
}

/// Deduplicated items; written by [`TargetStore::complete_poll`].
#[async_trait]
pub trait ItemStore: Send + Sync {
    async fn list_items(&self, query: &ItemQuery) -> Result<Vec<StoredItem>>;
    async fn count_items(&self, connector: Option<&str>) -> Result<u64>;
    /// Deletes every stored item of one target (a user unlinked with
    /// `purge_items_on_unlink`); answers how many.
    async fn purge_target_items(&self, connector: &str, target: &str) -> Result<u64>;
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub queue: String,
    pub payload: String,
    pub max_attempts: u32,
    pub run_at: Millis,
    /// What the job is, as its producer named it (`post`, `delete`); empty for deliveries.
    pub kind: String,
    /// The linked target the job acts for, if any.
    pub target: Option<String>,
    /// Unique per queue: enqueueing the same key again stores nothing and answers with the
    /// first job's id ([`Enqueued::Repeat`]).
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// A job of no particular kind, for no target, without an idempotency key.
    pub fn new(
        queue: impl Into<String>,
        payload: impl Into<String>,
        max_attempts: u32,
        run_at: Millis,
    ) -> Self {
        Self {
            queue: queue.into(),
            payload: payload.into(),
            max_attempts,
            run_at,
            kind: String::new(),
            target: None,
            idempotency_key: None,
        }
    }

    /// Why the store would refuse this job, naming the field and the cap (never echoing the
    /// value): a payload over [`MAX_JOB_PAYLOAD_BYTES`], a kind over [`MAX_JOB_KIND_BYTES`], a
    /// target that [`target_problem`] refuses, an empty key or one over
    /// [`MAX_IDEMPOTENCY_KEY_BYTES`].
    pub fn problem(&self) -> Option<String> {
        if self.payload.len() > MAX_JOB_PAYLOAD_BYTES {
            return Some(format!(
                "payload is {} bytes; a job's payload is at most {MAX_JOB_PAYLOAD_BYTES} bytes",
                self.payload.len()
            ));
        }
        if self.kind.len() > MAX_JOB_KIND_BYTES {
            return Some(format!(
                "kind is {} bytes; a job's kind is at most {MAX_JOB_KIND_BYTES} bytes",
                self.kind.len()
            ));
        }
        if let Some(problem) = self.target.as_deref().and_then(target_problem) {
            return Some(format!("target {problem}"));
        }
        match self.idempotency_key.as_deref() {
            Some("") => Some("idempotency_key is empty".to_string()),
            Some(key) if key.len() > MAX_IDEMPOTENCY_KEY_BYTES => Some(format!(
                "idempotency_key is {} bytes; a key is at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes",
                key.len()
            )),
            _ => None,
        }
    }
}

/// The largest job payload the store takes (1 MiB): a job is one post or message, and every
/// payload is held in memory while its job runs.
pub const MAX_JOB_PAYLOAD_BYTES: usize = 1 << 20;
/// The longest job kind.
pub const MAX_JOB_KIND_BYTES: usize = 64;
/// The longest idempotency key (a UUID is 36, a SHA-256 in hex 64).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// What [`JobQueue::enqueue_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored as a new job with this id.
    New(i64),
    /// A job with the same idempotency key is in the queue: nothing was stored; its id.
    Repeat(i64),
}

impl Enqueued {
    pub fn id(self) -> i64 {
        match self {
            Self::New(id) | Self::Repeat(id) => id,
        }
    }
}

/// What the queue knows of a job's earlier attempts, handed to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EarlierOutcome {
    /// The first attempt.
    #[default]
    None,
    /// Earlier attempts failed without taking effect.
    Failed,
    /// An earlier attempt may have taken effect: its lease was taken over after it expired
    /// (the worker died or hung mid-call), or it was reported as unknown. Sticks until the job
    /// completes.
    Unknown,
}

/// A job leased to one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    pub id: i64,
    pub queue: String,
    pub payload: String,
    /// Attempts including this one.
    pub attempt: u32,
    pub max_attempts: u32,
    pub worker: String,
    /// Moved on by [`JobQueue::heartbeat_job`].
    pub lease_until: Millis,
    pub kind: String,
    pub target: Option<String>,
    pub earlier: EarlierOutcome,
}

/// How a job ended well; kept (without the payload) once it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "outcome")]
pub enum JobOutcome {
    Done {
        reference: Option<String>,
        detail: Option<String>,
    },
    /// Deliberately not carried out, and why.
    Skipped { reason: String },
}

/// A failed attempt, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure<'a> {
    pub error: &'a str,
    /// When to try again; `None` (or no attempts left) dead-letters the job.
    pub retry_at: Option<Millis>,
    /// The attempt may have taken effect (it sent a request that changes something and got no
    /// answer): the next attempt is told [`EarlierOutcome::Unknown`].
    pub outcome_unknown: bool,
}

/// A job as it is now, for `tsunagi` and the tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub target: Option<String>,
    /// queued, leased, done or dead.
    pub state: String,
    pub attempt: u32,
    pub earlier_unknown: bool,
    pub outcome: Option<JobOutcome>,
    pub last_error: Option<String>,
}

/// A job in the dead-letter state, with why it died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadJob {
    pub id: i64,
    pub queue: String,
    pub payload: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub died_at: Millis,
    /// The latest failed attempts, oldest first.
    pub history: Vec<Attempt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QueueCounts {
    /// Waiting, including ones scheduled for a later retry.
    pub queued: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
}

/// A queue's counts and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSummary {
    pub queue: String,
    pub paused: bool,
    #[serde(flatten)]
    pub counts: QueueCounts,
}

/// A durable job queue: at-least-once delivery with leases. A job whose lease expires (its
/// worker died) is leased again; a completion from a worker that lost its lease is refused,
/// so a finished job is never run again by a rescue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues `job`; the id of the new job, or of the first job with its idempotency key.
    async fn enqueue(&self, job: NewJob) -> Result<i64> {
        self.enqueue_job(job).await.map(Enqueued::id)
    }
    /// Enqueues `job`, saying whether it was new or a repeat of its idempotency key. A job
    /// [`NewJob::problem`] refuses is [`BackendError::Refused`], nothing stored.
    async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued>;
    /// Leases up to `limit` jobs of `queue` that are due (`run_at <= now`) or whose lease
    /// expired, counting an attempt for each. A job whose lease expired on its last allowed
    /// attempt goes to the dead-letter state instead of being leased again.
    async fn lease_jobs(
        &self,
        queue: &str,
        worker: &str,
        now: Millis,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>>;
    /// Marks the job done, if `lease` still holds it. A done job keeps no payload.
    async fn complete_job(&self, lease: &JobLease, now: Millis) -> Result<bool> {
        let done = JobOutcome::Done {
            reference: None,
            detail: None,
        };
        self.finish_job(lease, &done, now).await
    }
    /// Marks the job done (or skipped) with its outcome, if `lease` still holds it. The payload
    /// is dropped; the outcome is kept.
    async fn finish_job(&self, lease: &JobLease, outcome: &JobOutcome, now: Millis)
    -> Result<bool>;
    /// Extends a held lease to `now + lease_for` (and moves `lease.lease_until` on), so a long
    /// job is not taken over while its worker lives. False when `lease` no longer holds it.
    async fn heartbeat_job(
        &self,
        lease: &mut JobLease,
        now: Millis,
        lease_for: Duration,
    ) -> Result<bool>;
    /// Puts a held job back, due at `run_at`, without counting its attempt (the host's own
    /// budget or breaker held the call back). False when `lease` no longer holds it.
    async fn defer_job(&self, lease: &JobLease, run_at: Millis, now: Millis) -> Result<bool>;
    /// Pauses (`true`) or resumes a queue, durably: a paused queue leases nothing; enqueueing
    /// still works.
    async fn set_queue_paused(&self, queue: &str, paused: bool, now: Millis) -> Result<()>;
    async fn queue_paused(&self, queue: &str) -> Result<bool>;
    /// One job as it is now; `None` when no job has that id.
    async fn job(&self, id: i64) -> Result<Option<JobRecord>>;
    /// Records a failed attempt, if `lease` still holds it. With `retry_at` the job waits until
    /// then; without it (or when attempts are used up) the job goes to the dead-letter state.
    async fn fail_job(
        &self,
        lease: &JobLease,
        error: &str,
        retry_at: Option<Millis>,
        now: Millis,
    ) -> Result<bool> {
        let failure = JobFailure {
            error,
            retry_at,
            outcome_unknown: false,
        };
        self.record_failure(lease, &failure, now).await
    }
    /// [`JobQueue::fail_job`] that may also mark the job's outcome unknown.
    async fn record_failure(
        &self,
        lease: &JobLease,
        failure: &JobFailure<'_>,
        now: Millis,
    ) -> Result<bool>;
    async fn queue_counts(&self, queue: &str) -> Result<QueueCounts>;
    async fn list_dead(&self, queue: Option<&str>, limit: u32) -> Result<Vec<DeadJob>>;
    /// Queues a dead job again, due at `now` with a fresh attempt count. False when no dead
    /// job has that id.
    async fn retry_dead_job(&self, id: i64, now: Millis) -> Result<bool>;
    /// Deletes a dead job. False when no dead job has that id.
    async fn drop_dead_job(&self, id: i64) -> Result<bool>;
}

/// Where a key of connector state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateScope {
    Connector,
    Target(i64),
}

/// What [`StateStore::put_state_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePut {
    Stored,
    /// Not stored: the scope would have held `total` bytes (keys plus values), over the cap.
    OverLimit {
        total: u64,
    },
}

impl StatePut {
    /// The refusal of a capped put of `key` = `value` into a scope whose other keys and values
    /// hold `others` bytes, when the scope would then hold more than `max_total` bytes; `None`
    /// when the put fits.
    pub(crate) fn over_limit(others: i64, key: &str, value: &str, max_total: u64) -> Option<Self> {
        let max_total = i64::try_from(max_total).unwrap_or(i64::MAX);
        let total =
            others.saturating_add(i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX));
        (total > max_total).then(|| Self::OverLimit {
            total: u64::try_from(total).unwrap_or(u64::MAX),
        })
    }
}

/// Durable key/value state of connectors.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Stores `value` under `key` unless the scope's keys plus values (in bytes, the key's old
    /// value replaced) would then exceed `max_total`. Checked and written atomically against
    /// what is stored, so concurrent writers cannot together pass the cap.
    async fn put_state_within(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
        value: &str,
        max_total: u64,
    ) -> Result<StatePut>;
    async fn get_state(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
    ) -> Result<Option<String>>;
    async fn set_state(
        &self,
        connector: &str,
        scope: StateScope,
        key: &str,
        value: Option<&str>,
    ) -> Result<()>;
    /// All target-scoped keys of one target, loaded before a call.
    async fn target_state(&self, connector: &str, target_id: i64) -> Result<Vec<(String, String)>>;
}

/// Where an item stands in its connector's storage order: by fetch time, then by `seq`.
/// Retention forgets items from the front of this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ItemPosition {
    pub fetched_at: Millis,
    pub seq: i64,
}

impl ItemPosition {
    /// The position just before every item fetched at `at` or later.
    pub fn fetched_at(at: Millis) -> Self {
        Self {
            fetched_at: at,
            seq: i64::MIN,
        }
    }
}

/// What one [`RetentionStore::forget_items`] batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ForgetReport {
    /// Items at the front of the connector's order that the batch looked at (at most its
    /// limit). Fewer than the limit: nothing before the position is left.
    pub examined: u64,
    /// Of those, the items deleted (their ids are remembered as forgotten).
    pub forgotten: u64,
    /// Of those, the items kept because a queued or leased delivery job holds them.
    pub held: u64,
}

/// The size of a store, for `/status`: measured by the retention runner after each pass, so
/// serving `/status` never counts a large table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StorageStats {
    /// Size of the database proper (for SQLite, pages × page size, free pages included).
    pub database_bytes: u64,
    /// Of that, space freed by deletions and reused by later writes (the file does not shrink).
    pub free_bytes: u64,
    /// Write-ahead log not yet checkpointed into the database (SQLite's `-wal` file).
    pub wal_bytes: u64,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
}

/// A forgotten id's last-seen time is refreshed by a poll that returns it only when the
/// recorded time is older than this, so an id a feed keeps listing costs one write a day, not
/// one per poll. Retention horizons for forgotten ids must be longer.
pub const FORGOTTEN_SEEN_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// Most rows one retention batch touches, whatever the caller asks: a batch is one write
/// transaction, and it bounds how long claims and commits wait behind it.
pub const MAX_RETENTION_BATCH: u32 = 10_000;

/// Retention: each call is one short batch (one write transaction of at most `limit` rows,
/// capped at [`MAX_RETENTION_BATCH`]), so the caller decides the pace and other writers run
/// between batches. Nothing here touches queued, leased or dead jobs.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes up to `limit` jobs that are done and were finished before `done_before`,
    /// oldest first; returns how many. Dead jobs stay (they are for `tsunagi dlq`).
    async fn purge_done_jobs(&self, done_before: Millis, limit: u32) -> Result<u64>;
    /// The position of `connector`'s `keep`-th newest item: the oldest one a rule "keep the
    /// newest `keep`" keeps. `None` when it has `keep` items or fewer (or `keep` is 0).
    /// Reads only; call it once per pass, not per batch.
    async fn newest_items_start(&self, connector: &str, keep: u64) -> Result<Option<ItemPosition>>;
    /// Looks at up to `limit` of `connector`'s oldest items that stand before `before` and
    /// deletes those no queued or leased delivery job holds (a delivery holds every item of
    /// its connector from its first one on), remembering each deleted id as forgotten at
    /// `now`, so a poll that returns it again does not store it as new.
    async fn forget_items(
        &self,
        connector: &str,
        before: ItemPosition,
        now: Millis,
        limit: u32,
    ) -> Result<ForgetReport>;
    /// Deletes up to `limit` forgotten ids that no poll has returned since `seen_before`
    /// (their last-seen time is refreshed at most every [`FORGOTTEN_SEEN_REFRESH`]); a poll
    /// that returns one later stores it as new. Returns how many.
    async fn purge_forgotten_ids(&self, seen_before: Millis, limit: u32) -> Result<u64>;
    /// How many forgotten ids are remembered, over every connector (a cap's measure). Reads
    /// only.
    async fn count_forgotten_ids(&self) -> Result<u64>;
    /// The store's size and rows per table. Counts every table: call it once per pass.
    async fn storage_stats(&self) -> Result<StorageStats>;
}

/// Everything the host needs from storage.
pub trait Backend:
    TargetStore
    + ItemStore
    + JobQueue
    + StateStore
    + RetentionStore
    + TokenStore
    + RankingStore
    + SubscriptionStore
{
    /// A short name for logs and `/status` ("sqlite", "postgres", …).
    fn kind(&self) -> &'static str;
}

/// Opens the backend a URL names: `postgres://…` (or `postgresql://…`), `sqlite://PATH`
/// (created if missing) or a plain file path (SQLite).
pub async fn open(url: &str) -> Result<Arc<dyn Backend>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PostgresBackend::open(url).await?));
    }
    if url.contains("://") && !url.starts_with("sqlite://") {
        return Err(BackendError::Open {
            url: postgres::redact_url(url),
            reason: "unsupported scheme (use sqlite://PATH or postgres://…)".to_string(),
        });
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    Ok(Arc::new(sqlite::SqliteBackend::open(path).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_at_the_cap_are_kept_and_longer_ones_cut_at_a_char_boundary() {
        let at_cap = "a".repeat(MAX_ERROR_BYTES);
        assert!(matches!(cap_error(&at_cap), std::borrow::Cow::Borrowed(_)));
        for filler in ["b", "é", "日", "🦀"] {
            let long = filler.repeat(MAX_ERROR_BYTES + 1);
            let capped = cap_error(&long);
            assert!(
                capped.len() <= MAX_ERROR_BYTES,
                "{filler}: {}",
                capped.len()
            );
            assert!(
                capped.ends_with(&format!(" … [cut; {} bytes in all]", long.len())),
                "{capped}"
            );
            let kept = capped.split(" … [cut").next().unwrap();
            assert!(kept.chars().all(|c| c.to_string() == filler), "{filler}");
            assert!(
                kept.len() > MAX_ERROR_BYTES - 64,
                "{filler}: {}",
                kept.len()
            );
        }
    }

    #[test]
    fn target_problems_give_the_length_not_the_target() {
        assert_eq!(target_problem("https://a.example/"), None);
        assert_eq!(target_problem("").as_deref(), Some("is empty"));
        let long = "z".repeat(MAX_TARGET_BYTES + 1);
        let problem = target_problem(&long).unwrap();
        assert_eq!(
            problem,
            "is 2049 bytes long; a target is at most 2048 bytes"
        );
    }
}
