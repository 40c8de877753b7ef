//! Storage and coordination backends for tsunagi.
//!
//! The host talks to storage only through the traits in this crate, one per capability:
//! [`TargetStore`] (what to poll and when, with leased claims), [`ItemStore`] (deduplicated
//! results), [`JobQueue`] (durable jobs with leases, retries and a dead-letter state) and
//! [`StateStore`] (connector key/value state). [`Backend`] bundles them.
//!
//! The embedded backend is SQLite ([`sqlite::SqliteBackend`]); scale-out backends (PostgreSQL,
//! Redis) implement the same traits and pass the same [`conformance`] suite.
//!
//! All times are milliseconds since the Unix epoch, passed in by the caller: the host owns the
//! clock, so tests can state exact times instead of sleeping.

pub mod breaker;
pub mod conformance;
pub mod coordination;
pub mod ratelimit;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
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
    #[error("could not open backend {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("stored data is corrupt ({context}): {reason}")]
    Corrupt {
        context: &'static str,
        reason: String,
    },
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
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub queue: String,
    pub payload: String,
    pub max_attempts: u32,
    pub run_at: Millis,
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
    pub lease_until: Millis,
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

/// A durable job queue: at-least-once delivery with leases. A job whose lease expires (its
/// worker died) is leased again; a completion from a worker that lost its lease is refused,
/// so a finished job is never run again by a rescue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: NewJob) -> Result<i64>;
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
    async fn complete_job(&self, lease: &JobLease, now: Millis) -> Result<bool>;
    /// Records a failed attempt, if `lease` still holds it. With `retry_at` the job waits until
    /// then; without it (or when attempts are used up) the job goes to the dead-letter state.
    async fn fail_job(
        &self,
        lease: &JobLease,
        error: &str,
        retry_at: Option<Millis>,
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

/// Everything the host needs from storage.
pub trait Backend: TargetStore + ItemStore + JobQueue + StateStore {
    /// A short name for logs and `/status` ("sqlite", "postgres", …).
    fn kind(&self) -> &'static str;
}

/// Opens the backend a URL names: `sqlite://PATH` (created if missing) or a plain file path.
pub async fn open(url: &str) -> Result<Arc<dyn Backend>> {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if url.contains("://") && !url.starts_with("sqlite://") {
        return Err(BackendError::Open {
            url: url.to_string(),
            reason: "unsupported scheme (this build supports sqlite://)".to_string(),
        });
    }
    Ok(Arc::new(sqlite::SqliteBackend::open(path).await?))
}
