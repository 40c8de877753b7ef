//! What the SQL backends (`sqlite` and `postgres`) share: the Rust on either side of their
//! SQL. Error mapping, limits and counts, the storage encodings both use (JSON histories,
//! token scopes, delivery payloads), and the conversions of result rows into the crate's
//! types.
//!
//! A row is read as a tuple, in the column order the backend's statement lists (each `*Row`
//! type says which), so one conversion serves every database: sqlx implements `FromRow` for
//! tuples on all of them. The SQL itself stays in each backend, as the dialects differ.

use crate::{
    Attempt, BackendError, DeadJob, EarlierOutcome, ForgetReport, Item, ItemQuery, JobLease,
    JobOutcome, JobRecord, MAX_RETENTION_BATCH, Millis, PushDelivery, QueueCounts, Result,
    StateScope, StoredItem, StoredToken, Subscription, SubscriptionCounts, SubscriptionState,
    Target,
};
use serde::Serialize;
use sqlx::{Database, Encode, FromRow, QueryBuilder, Row, Type};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// Maps a sqlx error to [`BackendError::Database`] naming what was being done.
pub(crate) fn db_error(context: &'static str) -> impl Fn(sqlx::Error) -> BackendError + Copy {
    move |source| BackendError::Database { context, source }
}

/// `now + lease`, saturating instead of overflowing on absurd leases.
pub(crate) fn lease_deadline(now: Millis, lease: Duration) -> Millis {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

/// A limit of 0 means "a sensible default"; anything else is capped so one call cannot load an
/// unbounded result set.
pub(crate) fn effective_limit(limit: u32) -> i64 {
    const DEFAULT: u32 = 1000;
    const MAX: u32 = 100_000;
    i64::from(if limit == 0 { DEFAULT } else { limit.min(MAX) })
}

/// A retention batch's size: at least one row, at most [`MAX_RETENTION_BATCH`].
pub(crate) fn batch_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_RETENTION_BATCH))
}

/// Converts a stored integer to the `u32` the API uses, treating impossible values as
/// corruption instead of panicking or wrapping.
pub(crate) fn to_u32(value: i64, context: &'static str) -> Result<u32> {
    u32::try_from(value).map_err(|_| BackendError::Corrupt {
        context,
        reason: format!("{value} is not a valid count"),
    })
}

/// A `COUNT(*)` (never negative) as the API's `u64`.
pub(crate) fn count(value: i64) -> u64 {
    value.unsigned_abs()
}

/// Reads a stored JSON history (PostgreSQL selects its JSONB as text); a missing one is empty.
pub(crate) fn history_from_json(json: Option<&str>) -> Result<Vec<Attempt>> {
    json.map_or(Ok(Vec::new()), |text| {
        serde_json::from_str(text).map_err(|e| BackendError::Corrupt {
            context: "reading an attempt history",
            reason: e.to_string(),
        })
    })
}

/// Encodes what the backend stores as JSON; a failure is reported as corruption.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, context: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| BackendError::Corrupt {
        context,
        reason: e.to_string(),
    })
}

/// See [`crate::FORGOTTEN_SEEN_REFRESH`].
pub(crate) const REFRESH_AFTER_MS: i64 = crate::FORGOTTEN_SEEN_REFRESH.as_millis() as i64;

/// An item that was new, serialised exactly like [`crate::StoredItem`] (which a delivery
/// payload is an array of) without copying the item.
#[derive(Serialize)]
pub(crate) struct NewItem<'a> {
    pub(crate) seq: i64,
    pub(crate) connector: &'a str,
    pub(crate) target: &'a str,
    pub(crate) fetched_at: Millis,
    #[serde(flatten)]
    pub(crate) item: &'a Item,
}

/// The `scope_target_id` that stands for [`StateScope::Connector`] (target ids start at 1).
const CONNECTOR_SCOPE: i64 = 0;

/// The `scope_target_id` a state scope is stored under.
pub(crate) fn scope_id(scope: StateScope) -> i64 {
    match scope {
        StateScope::Connector => CONNECTOR_SCOPE,
        StateScope::Target(id) => id,
    }
}

/// A target: `id, connector, target, next_run_at, etag, last_modified, cursor, error_count,
/// last_error, last_polled_at, interval_ms, dead_at, history` (JSON text), `refused_at,
/// refused_reason`.
pub(crate) type TargetRow<'r> = (
    i64,
    String,
    String,
    Millis,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<Millis>,
    Option<i64>,
    Option<Millis>,
    Option<&'r str>,
    Option<Millis>,
    Option<String>,
);

pub(crate) fn target_from_row<'r, R: Row>(row: &'r R) -> Result<Target>
where
    TargetRow<'r>: FromRow<'r, R>,
{
    let (
        id,
        connector,
        target,
        next_run_at,
        etag,
        last_modified,
        cursor,
        error_count,
        last_error,
        last_polled_at,
        interval_ms,
        dead_at,
        history,
        refused_at,
        refused_reason,
    ) = TargetRow::from_row(row).map_err(db_error("reading a target row"))?;
    Ok(Target {
        id,
        connector,
        target,
        next_run_at,
        etag,
        last_modified,
        cursor,
        error_count: to_u32(error_count, "reading a target's error count")?,
        last_error,
        last_polled_at,
        interval_ms,
        dead_at,
        history: history_from_json(history)?,
        refused_at,
        refused_reason,
    })
}

/// The columns of a subscription, in [`SubscriptionRow`] order (a macro, so the SQL stays a
/// literal).
macro_rules! subscription_columns {
    () => {
        "id, connector, target_id, hub, topic, secret, state, lease_until, renew_at, attempts, \
         last_error"
    };
}
pub(crate) use subscription_columns;

/// A subscription, as [`subscription_columns!`] lists it.
pub(crate) type SubscriptionRow<'r> = (
    String,
    String,
    i64,
    String,
    String,
    String,
    &'r str,
    Option<Millis>,
    Millis,
    i64,
    Option<String>,
);

pub(crate) fn subscription_from_row<'r, R: Row>(row: &'r R) -> Result<Subscription>
where
    SubscriptionRow<'r>: FromRow<'r, R>,
{
    let (
        id,
        connector,
        target_id,
        hub,
        topic,
        secret,
        state,
        lease_until,
        renew_at,
        attempts,
        last_error,
    ) = SubscriptionRow::from_row(row).map_err(db_error("reading a subscription"))?;
    Ok(Subscription {
        id,
        connector,
        target_id,
        hub,
        topic,
        secret,
        state: SubscriptionState::parse(state).ok_or_else(|| BackendError::Corrupt {
            context: "reading a subscription's state",
            reason: format!("unknown state {state:?}"),
        })?,
        lease_until,
        renew_at,
        attempts: to_u32(attempts, "a subscription's attempts")?,
        last_error,
    })
}

/// A delivery: `id, subscription_id, connector, target_id, content_type, body, received_at`.
pub(crate) type DeliveryRow = (i64, String, String, i64, Option<String>, Vec<u8>, Millis);

pub(crate) fn delivery_from_row<'r, R: Row>(row: &'r R) -> Result<PushDelivery>
where
    DeliveryRow: FromRow<'r, R>,
{
    let (id, subscription_id, connector, target_id, content_type, body, received_at) =
        DeliveryRow::from_row(row).map_err(db_error("reading a delivery"))?;
    Ok(PushDelivery {
        id,
        subscription_id,
        connector,
        target_id,
        content_type,
        body,
        received_at,
    })
}

/// The counts of subscriptions requested, active and denied, and of deliveries waiting.
pub(crate) fn subscription_counts<'r, R: Row>(row: &'r R) -> Result<SubscriptionCounts>
where
    (i64, i64, i64, i64): FromRow<'r, R>,
{
    let (requested, active, denied, deliveries_waiting) =
        <(i64, i64, i64, i64)>::from_row(row).map_err(db_error("counting subscriptions"))?;
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    Ok(SubscriptionCounts {
        requested: count(requested),
        active: count(active),
        denied: count(denied),
        deliveries_waiting: count(deliveries_waiting),
    })
}

/// The columns of a token, in [`TokenRow`] order (a macro, so the SQL stays a literal).
macro_rules! token_columns {
    () => {
        "credential, subject, scopes, expires_at, needs_relink, key_id, nonce, ciphertext, \
         updated_at"
    };
}
pub(crate) use token_columns;

/// A token, as [`token_columns!`] lists it; the scopes as a JSON array.
pub(crate) type TokenRow = (
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    String,
    Vec<u8>,
    Vec<u8>,
    i64,
);

pub(crate) fn token_from_row(row: TokenRow) -> Result<StoredToken> {
    let (credential, subject, scopes, expires_at, needs_relink, key_id, nonce, ciphertext, at) =
        row;
    let scopes: Vec<String> = serde_json::from_str(&scopes).map_err(|e| BackendError::Corrupt {
        context: "reading a token's scopes",
        reason: e.to_string(),
    })?;
    Ok(StoredToken {
        credential,
        subject,
        scopes,
        expires_at,
        needs_relink,
        key_id,
        nonce,
        ciphertext,
        updated_at: at,
    })
}

/// A token's scopes as stored: a JSON array.
pub(crate) fn scopes_to_json(scopes: &[String]) -> Result<String> {
    serde_json::to_string(scopes)
        .map_err(|e| BackendError::Refused(format!("the token's scopes cannot be stored: {e}")))
}

/// The statement of [`crate::ItemStore::list_items`], selecting a [`StoredItemRow`] per item.
/// Only the filters in use go into the SQL, so the database can pick the matching index (seq
/// for paging, (target, seq) for one feed); there are at most 8 statement shapes.
pub(crate) fn list_items_query<DB>(query: &ItemQuery) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new(
        "SELECT seq, connector, target, fetched_at, data FROM items WHERE seq > ",
    );
    sql.push_bind(query.after_seq);
    if let Some(connector) = &query.connector {
        sql.push(" AND connector = ").push_bind(connector.as_str());
    }
    if let Some(target) = &query.target {
        sql.push(" AND target = ").push_bind(target.as_str());
    }
    if let Some(since) = query.fetched_since {
        sql.push(" AND fetched_at >= ").push_bind(since);
    }
    sql.push(" ORDER BY seq LIMIT ")
        .push_bind(effective_limit(query.limit));
    sql
}

/// A stored item: `seq, connector, target, fetched_at, data` (the item as JSON).
pub(crate) type StoredItemRow<'r> = (i64, String, String, Millis, &'r str);

pub(crate) fn stored_item_from_row<'r, R: Row>(row: &'r R) -> Result<StoredItem>
where
    StoredItemRow<'r>: FromRow<'r, R>,
{
    let (seq, connector, target, fetched_at, data) =
        StoredItemRow::from_row(row).map_err(db_error("reading an item row"))?;
    let item = serde_json::from_str(data).map_err(|e| BackendError::Corrupt {
        context: "decoding a stored item",
        reason: format!("item seq {seq}: {e}"),
    })?;
    Ok(StoredItem {
        seq,
        connector,
        target,
        fetched_at,
        item,
    })
}

/// A job just leased: `id, queue, payload, attempt, max_attempts, kind, target,
/// earlier_unknown`.
pub(crate) type LeasedJobRow = (i64, String, String, i64, i64, String, Option<String>, bool);

/// A lease of the job in `row`, held by `worker` until `lease_until`.
pub(crate) fn job_lease_from_row<'r, R: Row>(
    row: &'r R,
    worker: &str,
    lease_until: Millis,
) -> Result<JobLease>
where
    LeasedJobRow: FromRow<'r, R>,
{
    let (id, queue, payload, attempt, max_attempts, kind, target, unknown) =
        LeasedJobRow::from_row(row).map_err(db_error("reading a leased job"))?;
    let attempt = to_u32(attempt, "reading a job")?;
    Ok(JobLease {
        id,
        queue,
        payload,
        attempt,
        kind,
        target,
        earlier: if unknown {
            EarlierOutcome::Unknown
        } else if attempt > 1 {
            EarlierOutcome::Failed
        } else {
            EarlierOutcome::None
        },
        max_attempts: to_u32(max_attempts, "reading a job")?,
        worker: worker.to_string(),
        lease_until,
    })
}

/// The `outcome`, `outcome_reference` and `outcome_detail` a finished job stores; the texts
/// come from plugins, so they are capped like errors.
pub(crate) fn outcome_columns(
    outcome: &JobOutcome,
) -> (&'static str, Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
    let (name, reference, detail) = match outcome {
        JobOutcome::Done { reference, detail } => ("done", reference.as_deref(), detail.as_deref()),
        JobOutcome::Skipped { reason } => ("skipped", None, Some(reason.as_str())),
    };
    (
        name,
        reference.map(crate::cap_error),
        detail.map(crate::cap_error),
    )
}

/// A job as `JobQueue::job` reads it: `id, queue, kind, target, state, attempt,
/// earlier_unknown, outcome, outcome_reference, outcome_detail, last_error`.
pub(crate) type JobRecordRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    i64,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) fn job_record_from_row<'r, R: Row>(row: &'r R) -> Result<JobRecord>
where
    JobRecordRow: FromRow<'r, R>,
{
    let (
        id,
        queue,
        kind,
        target,
        state,
        attempt,
        earlier_unknown,
        outcome,
        reference,
        detail,
        last_error,
    ) = JobRecordRow::from_row(row).map_err(db_error("reading a job"))?;
    let outcome = match outcome.as_deref() {
        None => None,
        Some("done") => Some(JobOutcome::Done { reference, detail }),
        Some("skipped") => Some(JobOutcome::Skipped {
            reason: detail.unwrap_or_default(),
        }),
        Some(other) => {
            return Err(BackendError::Corrupt {
                context: "reading a job",
                reason: format!("unknown job outcome {other:?}"),
            });
        }
    };
    Ok(JobRecord {
        id,
        queue,
        kind,
        target,
        state,
        attempt: to_u32(attempt, "reading a job")?,
        earlier_unknown,
        outcome,
        last_error,
    })
}

/// A dead job: `id, queue, payload, attempt, last_error, died_at, history` (JSON text).
pub(crate) type DeadJobRow<'r> = (
    i64,
    String,
    String,
    i64,
    Option<String>,
    Option<Millis>,
    Option<&'r str>,
);

pub(crate) fn dead_job_from_row<'r, R: Row>(row: &'r R) -> Result<DeadJob>
where
    DeadJobRow<'r>: FromRow<'r, R>,
{
    let (id, queue, payload, attempts, last_error, died_at, history) =
        DeadJobRow::from_row(row).map_err(db_error("reading a dead job"))?;
    Ok(DeadJob {
        id,
        queue,
        payload,
        attempts: to_u32(attempts, "reading a dead job")?,
        last_error,
        died_at: died_at.ok_or_else(|| BackendError::Corrupt {
            context: "reading a dead job",
            reason: "a dead job has no time of death".to_string(),
        })?,
        history: history_from_json(history)?,
    })
}

/// A queue's counts from its rows of (state, count).
pub(crate) fn queue_counts(rows: Vec<(String, i64)>) -> Result<QueueCounts> {
    let mut counts = QueueCounts::default();
    for (state, rows) in rows {
        let rows = count(rows);
        match state.as_str() {
            "queued" => counts.queued = rows,
            "leased" => counts.leased = rows,
            "done" => counts.done = rows,
            "dead" => counts.dead = rows,
            other => {
                return Err(BackendError::Corrupt {
                    context: "counting jobs",
                    reason: format!("unknown job state {other:?}"),
                });
            }
        }
    }
    Ok(counts)
}

/// Of a retention batch's `oldest` items (`seq`s), those no waiting delivery holds: a delivery
/// holds every item of its connector from `held_from` on.
pub(crate) fn unheld(oldest: &[i64], held_from: Option<i64>) -> Vec<i64> {
    oldest
        .iter()
        .copied()
        .filter(|seq| held_from.is_none_or(|held| *seq < held))
        .collect()
}

/// What a retention batch did: it looked at `oldest` and deleted `doomed`.
pub(crate) fn forget_report(oldest: &[i64], doomed: &[i64]) -> ForgetReport {
    let examined = oldest.len() as u64;
    let forgotten = doomed.len() as u64;
    ForgetReport {
        examined,
        forgotten,
        held: examined - forgotten,
    }
}

/// The tables `/status` reports rows of, in the order the backends' `COUNT_ROWS` count them.
pub(crate) const COUNTED_TABLES: [&str; 5] =
    ["targets", "items", "forgotten_items", "jobs", "state"];

/// The rows per table of [`crate::StorageStats`], from the counts of [`COUNTED_TABLES`].
pub(crate) fn rows_per_table(counts: (i64, i64, i64, i64, i64)) -> BTreeMap<String, u64> {
    let (targets, items, forgotten, jobs, state) = counts;
    COUNTED_TABLES
        .into_iter()
        .zip([targets, items, forgotten, jobs, state])
        .map(|(table, rows)| (table.to_string(), count(rows)))
        .collect()
}
