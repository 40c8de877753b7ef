//! Group commit of poll outcomes, the crawl's hot path.
//!
//! Every `complete_poll` goes to one committer task per backend instance. While a batch is
//! being written, new requests queue up; the next batch takes them all (up to a cap) and writes
//! them in one transaction with a fixed handful of statements whatever its size: one guarded
//! `UPDATE` of all targets, one `INSERT` of all items (plus one query saying which were new,
//! and one refreshing the ids retention forgot that a poll returned again), one `INSERT` of
//! all delivery jobs. Each statement reads its rows from a single JSON array
//! parameter (`jsonb_each`), so the SQL text is fixed, stays prepared, and no batch size hits
//! SQLite's bound-parameter limit.
//!
//! Why: a poll commit is a few small statements, and on SQLite each statement costs a hand-off
//! to the connection's thread and back. Per-poll transactions top out around a thousand commits
//! per second no matter how fast the disk is; batches pay that price once per batch. Under low
//! load a batch holds one request, so latency is that of a plain transaction.
//!
//! Semantics are exactly those of committing the requests one by one, in arrival order: each
//! request is guarded by its own lease, a lost lease writes nothing for that request only, and
//! an item two requests of one batch both return counts as new for the earlier one.
//!
//! Connectors share the writer fairly: while commits of several connectors wait, each puts at
//! most [`MAX_CONNECTOR_BATCH_BYTES`] of items and state in a batch (its first commit always),
//! and the rest of its commits wait, in order, for the next batch. A connector whose commits
//! are large (a plugin returning the most items its limits allow) so makes batches no longer
//! than that, and the others' small commits do not queue behind a run of its large ones.

use super::{append_history, is_locked, state::write_state};
use crate::sql::{NewItem, REFRESH_AFTER_MS, db_error, to_json};
use crate::{BackendError, CommitReport, Item, Millis, PollCommit, Result, TargetClaim};
use serde::Serialize;
use sqlx::SqlitePool;
use std::collections::{HashMap, HashSet, VecDeque};
use tokio::sync::{mpsc, oneshot};

/// Most requests in one transaction: bounds how long one batch holds the write lock.
const MAX_BATCH_REQUESTS: usize = 256;
/// Most items in one transaction, unless a single request alone has more.
const MAX_BATCH_ITEMS: usize = 10_000;
/// Most bytes of items and state one connector puts in a batch while other connectors'
/// commits wait too (its first commit goes in whatever its size).
const MAX_CONNECTOR_BATCH_BYTES: usize = 4 << 20;
const CONTEXT: &str = "committing polls";

/// Guarded update of every target of a batch. A row of `v` belongs to one request; only rows
/// whose lease still matches are updated (`HELD_TARGETS` names them). Success rows (`ok`) store
/// validators and reset the error count; failure rows count an error and keep the validators.
const UPDATE_TARGETS: &str = concat!(
    "WITH v AS (
    SELECT value ->> '$.id' AS id, value ->> '$.worker' AS worker,
           value ->> '$.lease_until' AS lease_until, value ->> '$.ok' AS ok,
           value ->> '$.etag' AS etag, value ->> '$.last_modified' AS last_modified,
           value ->> '$.cursor' AS cursor, value ->> '$.error' AS error,
           value ->> '$.next_run_at' AS next_run_at, value ->> '$.interval_ms' AS interval_ms,
           value ->> '$.now' AS now, value ->> '$.dead' AS dead
    FROM jsonb_each(?1)
)
UPDATE targets SET
    etag = CASE WHEN v.ok THEN v.etag ELSE targets.etag END,
    last_modified = CASE WHEN v.ok THEN v.last_modified ELSE targets.last_modified END,
    cursor = CASE WHEN v.ok THEN v.cursor ELSE targets.cursor END,
    interval_ms = CASE WHEN v.ok THEN v.interval_ms ELSE targets.interval_ms END,
    error_count = CASE WHEN v.ok THEN 0 ELSE targets.error_count + 1 END,
    last_error = CASE WHEN v.ok THEN NULL ELSE v.error END,
    history = CASE WHEN v.ok THEN NULL ELSE ",
    append_history!("targets.history", "v.now", "v.error"),
    " END,
    dead_at = CASE WHEN v.dead THEN v.now ELSE NULL END,
    next_run_at = CASE WHEN v.dead THEN 9223372036854775807 ELSE v.next_run_at END,
    last_polled_at = v.now,
    lease_owner = NULL,
    lease_until = NULL
FROM v
WHERE targets.id = v.id AND targets.lease_owner = v.worker AND targets.lease_until = v.lease_until"
);

/// The targets of a batch whose lease still holds, as one JSON array of ids: exactly the rows
/// `UPDATE_TARGETS` then updates (the write lock is held in between). One row instead of
/// RETURNING's one per target, for the reason given at `ITEMS_AFTER`.
const HELD_TARGETS: &str = "\
SELECT json_group_array(targets.id) FROM jsonb_each(?1) AS v
JOIN targets ON targets.id = v.value ->> '$.id'
WHERE targets.lease_owner = v.value ->> '$.worker'
  AND targets.lease_until = v.value ->> '$.lease_until'";

/// Inserts items in array order, skipping ones stored before and ones retention forgot (one
/// primary-key probe of `forgotten_items` each). (The `WHERE` also resolves SQLite's parsing
/// ambiguity between a join's ON and the upsert's ON.)
pub(super) const INSERT_ITEMS: &str = "\
INSERT INTO items (connector, item_id, target, fetched_at, data)
SELECT value ->> '$.connector', value ->> '$.item.id', value ->> '$.target',
       value ->> '$.fetched_at', value -> '$.item'
FROM jsonb_each(?1) AS v
WHERE NOT EXISTS (SELECT 1 FROM forgotten_items AS f
                  WHERE f.connector = v.value ->> '$.connector'
                    AND f.item_id = v.value ->> '$.item.id')
ON CONFLICT (connector, item_id) DO NOTHING";

/// Marks forgotten ids that a poll of the batch returned again as seen at `?2`, unless they
/// were seen within the last `?3` ms: a feed that keeps listing an item retention deleted
/// keeps its id remembered, at one write a day. The `IN` list probes the primary key.
pub(super) const REFRESH_FORGOTTEN: &str = "\
UPDATE forgotten_items SET seen_at = ?2
WHERE (connector, item_id) IN (
    SELECT value ->> '$.connector', value ->> '$.item.id' FROM jsonb_each(?1)
) AND seen_at < ?2 - ?3";

/// The highest `seq` so far: the rows a following insert adds are exactly those above it
/// (AUTOINCREMENT never goes back, and the write lock keeps other writers out meanwhile).
const LAST_ITEM_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM items";

/// The rows inserted after `?1`, as one JSON array `[[seq, connector, target, item_id], …]`.
/// One row instead of RETURNING's one row per item: sqlx hands each result row across threads
/// separately, which cost more than the inserts themselves.
const ITEMS_AFTER: &str = "\
SELECT json_group_array(json_array(seq, connector, target, item_id)) FROM items WHERE seq > ?1";

/// Delivery jobs, each with its connector and lowest item `seq`: retention keeps the items a
/// waiting delivery holds.
const INSERT_JOBS: &str = "\
INSERT INTO jobs (queue, payload, state, attempt, max_attempts, run_at, updated_at,
                  item_connector, first_item_seq)
SELECT value ->> '$.queue', value ->> '$.payload', 'queued', 0, value ->> '$.max_attempts',
       value ->> '$.now', value ->> '$.now', value ->> '$.item_connector',
       value ->> '$.first_item_seq'
FROM jsonb_each(?1)";

/// One poll outcome to commit.
struct PollWork {
    claim: TargetClaim,
    commit: PollCommit,
    now: Millis,
}

impl PollWork {
    fn item_count(&self) -> usize {
        match &self.commit {
            PollCommit::Success { items, .. } => items.len(),
            PollCommit::Failure { .. } => 0,
        }
    }

    /// Bytes of text this commit writes: its items and state writes (what makes it slow).
    fn size(&self) -> usize {
        match &self.commit {
            PollCommit::Success {
                items,
                state_writes,
                ..
            } => {
                let items: usize = items.iter().map(item_size).sum();
                let state: usize = state_writes
                    .iter()
                    .map(|(key, value)| key.len() + value.as_ref().map_or(0, String::len))
                    .sum();
                items + state
            }
            PollCommit::Failure { error, .. } => error.len(),
        }
    }

    fn connector(&self) -> &str {
        &self.claim.target.connector
    }
}

fn item_size(item: &Item) -> usize {
    let optional = [
        &item.title,
        &item.link,
        &item.published,
        &item.updated,
        &item.summary,
        &item.content,
    ];
    item.id.len()
        + optional
            .iter()
            .map(|text| text.as_ref().map_or(0, String::len))
            .sum::<usize>()
        + item
            .authors
            .iter()
            .chain(&item.categories)
            .map(String::len)
            .sum::<usize>()
}

struct Request {
    work: PollWork,
    reply: oneshot::Sender<Result<CommitReport>>,
}

/// The handle `complete_poll` uses; cheap to clone with the backend.
#[derive(Debug, Clone)]
pub(super) struct PollCommitter {
    requests: mpsc::UnboundedSender<Request>,
}

impl PollCommitter {
    /// Starts the committer task on the current tokio runtime. It ends when the last handle
    /// is dropped.
    pub(super) fn start(writer: SqlitePool) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_committer(writer, receiver));
        Self { requests }
    }

    pub(super) async fn commit(
        &self,
        claim: &TargetClaim,
        commit: PollCommit,
        now: Millis,
    ) -> Result<CommitReport> {
        let (reply, report) = oneshot::channel();
        let work = PollWork {
            claim: claim.clone(),
            commit,
            now,
        };
        self.requests
            .send(Request { work, reply })
            .map_err(|_| committer_stopped())?;
        report.await.map_err(|_| committer_stopped())?
    }
}

fn committer_stopped() -> BackendError {
    BackendError::Database {
        context: "handing a poll to the committer (it stopped: its runtime shut down or it \
                  panicked)",
        source: sqlx::Error::WorkerCrashed,
    }
}

async fn run_committer(writer: SqlitePool, mut receiver: mpsc::UnboundedReceiver<Request>) {
    let mut waiting: VecDeque<Request> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(request) => waiting.push_back(request),
                None => return,
            }
        }
        while let Ok(request) = receiver.try_recv() {
            waiting.push_back(request);
        }
        let batch = take_batch(&mut waiting);
        commit_batch(&writer, batch).await;
    }
}

/// Takes the next batch off the front of `waiting`, in order. A second request for a target
/// already in the batch waits for the next one, so each batch touches a target at most once
/// (its guard result then maps back to exactly one request). While several connectors wait,
/// a connector past its share of the batch waits for the next one with all its later
/// requests, so each connector's commits keep their order.
fn take_batch(waiting: &mut VecDeque<Request>) -> Vec<Request> {
    take_batch_of(waiting, |request| &request.work)
}

fn take_batch_of<R>(waiting: &mut VecDeque<R>, work: impl Fn(&R) -> &PollWork) -> Vec<R> {
    let several_connectors = waiting.front().is_some_and(|first| {
        waiting
            .iter()
            .any(|r| work(r).connector() != work(first).connector())
    });
    let mut batch = Vec::new();
    let mut targets = HashSet::new();
    let mut items = 0;
    let mut bytes_of: HashMap<String, usize> = HashMap::new();
    let mut full: HashSet<String> = HashSet::new();
    let mut later = VecDeque::new();
    while let Some(request) = waiting.pop_front() {
        let this = work(&request);
        if several_connectors {
            let connector = this.connector();
            let used = bytes_of.get(connector).copied().unwrap_or(0);
            if full.contains(connector)
                || (used > 0 && used + this.size() > MAX_CONNECTOR_BATCH_BYTES)
            {
                full.insert(connector.to_string());
                later.push_back(request);
                continue;
            }
        }
        let request_items = this.item_count();
        let fits = batch.is_empty()
            || (batch.len() < MAX_BATCH_REQUESTS && items + request_items <= MAX_BATCH_ITEMS);
        if !fits {
            waiting.push_front(request);
            break;
        }
        if targets.insert(this.claim.target.id) {
            items += request_items;
            *bytes_of.entry(this.connector().to_string()).or_default() += this.size();
            batch.push(request);
        } else {
            later.push_back(request);
        }
    }
    // Deferred requests go back in front, ahead of everything that arrived after them.
    while let Some(request) = later.pop_back() {
        waiting.push_front(request);
    }
    batch
}

async fn commit_batch(writer: &SqlitePool, batch: Vec<Request>) {
    let (works, replies): (Vec<PollWork>, Vec<_>) = batch
        .into_iter()
        .map(|request| (request.work, request.reply))
        .unzip();
    match write_batch(writer, &works).await {
        Ok(reports) => {
            for (reply, report) in replies.into_iter().zip(reports) {
                // A caller that stopped waiting still had its poll committed; nothing to do.
                let _ = reply.send(Ok(report));
            }
        }
        Err(error) if replies.len() > 1 && !is_locked_error(&error) => {
            // Write each request on its own, so an error one request causes stays its own.
            for (work, reply) in works.iter().zip(replies) {
                let outcome = write_batch(writer, std::slice::from_ref(work)).await;
                let _ = reply.send(outcome.map(|mut reports| reports.remove(0)));
            }
        }
        Err(error) => {
            // The database is locked (or there was one request): everyone gets the error.
            let mut replies = replies.into_iter();
            let first = replies.next();
            for reply in replies {
                let _ = reply.send(Err(copy_of(&error)));
            }
            if let Some(reply) = first {
                let _ = reply.send(Err(error));
            }
        }
    }
}

fn is_locked_error(error: &BackendError) -> bool {
    matches!(error, BackendError::Database { source, .. } if is_locked(source))
}

/// sqlx errors cannot be cloned; a copy carries the original's message.
fn copy_of(error: &BackendError) -> BackendError {
    let message = match error {
        BackendError::Database { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    BackendError::Database {
        context: CONTEXT,
        source: sqlx::Error::Io(std::io::Error::other(message)),
    }
}

/// A row of `UPDATE_TARGETS`' `v`.
#[derive(Serialize)]
struct TargetRow<'a> {
    id: i64,
    worker: &'a str,
    lease_until: Millis,
    ok: bool,
    etag: Option<&'a str>,
    last_modified: Option<&'a str>,
    cursor: Option<&'a str>,
    /// Capped: the error text comes from plugins and upstreams.
    error: Option<std::borrow::Cow<'a, str>>,
    next_run_at: Millis,
    interval_ms: Option<i64>,
    now: Millis,
    dead: bool,
}

impl<'a> TargetRow<'a> {
    fn of(work: &'a PollWork) -> Self {
        let claim = &work.claim;
        let mut row = TargetRow {
            id: claim.target.id,
            worker: &claim.worker,
            lease_until: claim.lease_until,
            ok: false,
            etag: None,
            last_modified: None,
            cursor: None,
            error: None,
            next_run_at: 0,
            interval_ms: None,
            now: work.now,
            dead: false,
        };
        match &work.commit {
            PollCommit::Success {
                etag,
                last_modified,
                cursor,
                next_run_at,
                interval_ms,
                ..
            } => {
                row.ok = true;
                row.etag = etag.as_deref();
                row.last_modified = last_modified.as_deref();
                row.cursor = cursor.as_deref();
                row.next_run_at = *next_run_at;
                row.interval_ms = Some(*interval_ms);
            }
            PollCommit::Failure {
                error,
                next_run_at,
                dead,
            } => {
                row.error = Some(crate::cap_error(error));
                row.next_run_at = *next_run_at;
                row.dead = *dead;
            }
        }
        row
    }
}

/// A row of `INSERT_ITEMS`.
#[derive(Serialize)]
struct ItemRow<'a> {
    connector: &'a str,
    target: &'a str,
    fetched_at: Millis,
    item: &'a Item,
}

/// A row of `INSERT_JOBS`.
#[derive(Serialize)]
struct JobRow<'a> {
    queue: &'a str,
    payload: &'a str,
    max_attempts: u32,
    now: Millis,
    item_connector: &'a str,
    first_item_seq: i64,
}

/// Writes `works` in one transaction and reports on each, in order.
async fn write_batch(writer: &SqlitePool, works: &[PollWork]) -> Result<Vec<CommitReport>> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db_error(CONTEXT))?;

    // 1. Targets, guarded by each request's lease.
    const UPDATE: &str = "committing polls: updating targets";
    let rows: Vec<TargetRow<'_>> = works.iter().map(TargetRow::of).collect();
    let rows = to_json(&rows, "encoding target updates")?;
    let held: String = sqlx::query_scalar(HELD_TARGETS)
        .bind(&rows)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error(UPDATE))?;
    let held: HashSet<i64> = serde_json::from_str(&held).map_err(|e| BackendError::Corrupt {
        context: UPDATE,
        reason: e.to_string(),
    })?;
    sqlx::query(UPDATE_TARGETS)
        .bind(&rows)
        .execute(&mut *tx)
        .await
        .map_err(db_error(UPDATE))?;
    let committed = |work: &&PollWork| held.contains(&work.claim.target.id);

    // 2. Items of the successful polls that still held their lease.
    let mut item_rows = Vec::new();
    for work in works.iter().filter(committed) {
        if let PollCommit::Success { items, .. } = &work.commit {
            item_rows.extend(items.iter().map(|item| ItemRow {
                connector: &work.claim.target.connector,
                target: &work.claim.target.target,
                fetched_at: work.now,
                item,
            }));
        }
    }
    let mut new_items: Vec<Vec<NewItem<'_>>> = works.iter().map(|_| Vec::new()).collect();
    if !item_rows.is_empty() {
        const STORE: &str = "committing polls: storing new items";
        let items_json = to_json(&item_rows, "encoding items")?;
        let latest = works.iter().map(|work| work.now).max().unwrap_or_default();
        sqlx::query(REFRESH_FORGOTTEN)
            .bind(&items_json)
            .bind(latest)
            .bind(REFRESH_AFTER_MS)
            .execute(&mut *tx)
            .await
            .map_err(db_error("committing polls: refreshing forgotten ids"))?;
        let last_seq: i64 = sqlx::query_scalar(LAST_ITEM_SEQ)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(STORE))?;
        sqlx::query(INSERT_ITEMS)
            .bind(&items_json)
            .execute(&mut *tx)
            .await
            .map_err(db_error(STORE))?;
        let inserted: String = sqlx::query_scalar(ITEMS_AFTER)
            .bind(last_seq)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(STORE))?;
        let inserted: Vec<(i64, String, String, String)> = serde_json::from_str(&inserted)
            .map_err(|e| BackendError::Corrupt {
                context: "committing polls: reading which items were new",
                reason: e.to_string(),
            })?;
        attribute_new_items(works, &inserted, &mut new_items)?;
    }

    // 3. Target-scoped state writes, in order (later writes of a key win). Rare in practice,
    //    so one statement each.
    for work in works.iter().filter(committed) {
        if let PollCommit::Success { state_writes, .. } = &work.commit {
            for (key, value) in state_writes {
                let target = &work.claim.target;
                write_state(&mut tx, &target.connector, target.id, key, value.as_deref()).await?;
            }
        }
    }

    // 4. One delivery job per queue for each poll that stored something new.
    let mut payloads = Vec::new();
    for (work, new) in works.iter().zip(&new_items) {
        if let PollCommit::Success { deliver_to, .. } = &work.commit
            && let Some(first) = new.first()
            && !deliver_to.is_empty()
        {
            let payload = to_json(new, "encoding a delivery payload")?;
            // `new` is ordered by seq: its first item is the lowest the delivery holds.
            payloads.push((deliver_to, payload, work, first.seq));
        }
    }
    let job_rows: Vec<JobRow<'_>> = payloads
        .iter()
        .flat_map(|(queues, payload, work, first_seq)| {
            queues.iter().map(move |delivery| JobRow {
                queue: &delivery.queue,
                payload,
                max_attempts: delivery.max_attempts,
                now: work.now,
                item_connector: &work.claim.target.connector,
                first_item_seq: *first_seq,
            })
        })
        .collect();
    if !job_rows.is_empty() {
        sqlx::query(INSERT_JOBS)
            .bind(to_json(&job_rows, "encoding delivery jobs")?)
            .execute(&mut *tx)
            .await
            .map_err(db_error("committing polls: enqueueing deliveries"))?;
    }

    tx.commit().await.map_err(db_error(CONTEXT))?;
    Ok(works
        .iter()
        .zip(&new_items)
        .map(|(work, new)| CommitReport {
            new_items: new.len() as u64,
            lease_lost: !held.contains(&work.claim.target.id),
        })
        .collect())
}

/// Files each inserted row under the request (by connector and target, unique in a batch) and
/// the item (the first with that id in the request: SQLite inserted that one, later duplicates
/// hit the conflict), ordered by `seq`.
fn attribute_new_items<'a>(
    works: &'a [PollWork],
    inserted: &[(i64, String, String, String)],
    new_items: &mut [Vec<NewItem<'a>>],
) -> Result<()> {
    let request_of: HashMap<(&str, &str), usize> = works
        .iter()
        .enumerate()
        .map(|(index, work)| {
            let target = &work.claim.target;
            ((target.connector.as_str(), target.target.as_str()), index)
        })
        .collect();
    let mut first_item_of: Vec<Option<HashMap<&str, &Item>>> = works.iter().map(|_| None).collect();

    for (seq, connector, target, item_id) in inserted {
        let seq = *seq;
        let unexpected = || BackendError::Corrupt {
            context: "committing polls: matching new items to polls",
            reason: format!("the database reported inserting {item_id:?} for {target:?}"),
        };
        let index = *request_of
            .get(&(connector.as_str(), target.as_str()))
            .ok_or_else(unexpected)?;
        let work = &works[index];
        let items_by_id = first_item_of[index].get_or_insert_with(|| {
            let mut by_id = HashMap::new();
            if let PollCommit::Success { items, .. } = &work.commit {
                for item in items {
                    by_id.entry(item.id.as_str()).or_insert(item);
                }
            }
            by_id
        });
        let item = *items_by_id.get(item_id.as_str()).ok_or_else(unexpected)?;
        new_items[index].push(NewItem {
            seq,
            connector: &work.claim.target.connector,
            target: &work.claim.target.target,
            fetched_at: work.now,
            item,
        });
    }
    // RETURNING yields rows in no particular order.
    for new in new_items.iter_mut() {
        new.sort_unstable_by_key(|item| item.seq);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    fn work(connector: &str, target_id: i64, item_bytes: usize) -> PollWork {
        let item = Item {
            id: format!("{connector}-{target_id}"),
            title: None,
            link: None,
            published: None,
            updated: None,
            authors: Vec::new(),
            summary: None,
            content: Some("x".repeat(item_bytes)),
            categories: Vec::new(),
            origin: None,
        };
        PollWork {
            claim: TargetClaim {
                target: Target {
                    id: target_id,
                    connector: connector.to_string(),
                    target: format!("t{target_id}"),
                    next_run_at: 0,
                    etag: None,
                    last_modified: None,
                    cursor: None,
                    error_count: 0,
                    last_error: None,
                    last_polled_at: None,
                    interval_ms: None,
                    dead_at: None,
                    refused_at: None,
                    refused_reason: None,
                    history: Vec::new(),
                },
                worker: "w".to_string(),
                lease_until: 0,
            },
            commit: PollCommit::Success {
                items: vec![item],
                etag: None,
                last_modified: None,
                cursor: None,
                state_writes: Vec::new(),
                next_run_at: 0,
                interval_ms: 0,
                deliver_to: Vec::new(),
            },
            now: 0,
        }
    }

    fn ids(works: &[PollWork]) -> Vec<i64> {
        works.iter().map(|w| w.claim.target.id).collect()
    }

    const BIG: usize = 3 << 20;

    #[test]
    fn one_connector_alone_fills_the_batch_as_before() {
        let mut waiting: VecDeque<PollWork> = (1..=3).map(|id| work("big", id, BIG)).collect();
        let batch = take_batch_of(&mut waiting, |w| w);
        assert_eq!(ids(&batch), [1, 2, 3]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_connector_with_large_commits_takes_its_share_and_the_others_go_in_too() {
        // Arrival order: three large commits of one connector around small ones of another.
        let mut waiting: VecDeque<PollWork> = VecDeque::from([
            work("big", 1, BIG),
            work("big", 2, BIG),
            work("small", 10, 100),
            work("big", 3, 100),
            work("small", 11, 100),
        ]);
        let batch = take_batch_of(&mut waiting, |w| w);
        assert_eq!(
            ids(&batch),
            [1, 10, 11],
            "the large connector's first commit, then its share is used up"
        );
        assert_eq!(
            ids(&Vec::from(waiting.clone())),
            [2, 3],
            "its later commits wait in order, even the small one"
        );
        let batch = take_batch_of(&mut waiting, |w| w);
        assert_eq!(ids(&batch), [2, 3], "alone again: no share applies");
    }

    impl Clone for PollWork {
        fn clone(&self) -> Self {
            Self {
                claim: self.claim.clone(),
                commit: self.commit.clone(),
                now: self.now,
            }
        }
    }
}
