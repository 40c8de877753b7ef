//! [`JobQueue`] on Redis Streams: durable jobs with leases, retries and a dead-letter state for
//! every host of a cluster, at least once, with the semantics of the PostgreSQL queue
//! ([`crate::postgres`]) and the same conformance suite.
//!
//! A job is a hash `P:job:ID` (ids from `INCR P:jobs:next`) holding its queue, payload, state
//! (`queued`, `leased`, `done`, `dead`), attempts, lease (owner and `until`), history and
//! outcome. Per queue `Q`:
//!
//! - `P:jobs:due:Q`, a sorted set of the queued jobs by `run_at` (members are zero-padded ids,
//!   so a tie is in id order);
//! - `P:jobs:stream:Q`, a stream with the consumer group `workers`: `lease_jobs` moves due jobs
//!   into it (`XADD`) and reads them (`XREADGROUP`) as the leasing worker, so every leased job is
//!   an entry pending for its worker until it is finished, failed or deferred (`XACK` + `XDEL`);
//! - `P:jobs:counts:Q` (a hash of the four counts), `P:jobs:keys:Q` (idempotency key → id),
//!   `P:jobs:dead:Q` (dead ids) and `P:jobs:cursor:Q` (where the last `XAUTOCLAIM` stopped);
//!
//! and for all queues `P:jobs:dead` (dead ids), `P:jobs:done` (done ids by when they finished,
//! for [`RedisJobQueue::purge_done_jobs`]) and `P:jobs:paused` (paused queues).
//!
//! **Stuck jobs are rescued by `XAUTOCLAIM`, on the caller's clock.** The caller owns time (the
//! trait passes `now`), while a stream entry's idle time is on Redis's clock. So each lease sets
//! its entry's delivery time (`XCLAIM … TIME`) to `lease_until - CLAIM_OFFSET`: an entry is then
//! idle for longer than `server_now - now + CLAIM_OFFSET` exactly when its lease expired at
//! `now`, and that is the `XAUTOCLAIM` min-idle-time (less a margin for the server's clock moving
//! within the script). Every claimed entry is checked against its job's hash before anything is
//! handed out — the guard: a job done or dead is never rescued (its stray entry is acknowledged
//! and deleted), a lease still held is given back to its owner with its delivery time restored,
//! and a lease that expired on the last attempt sends the job to the dead-letter state.
//! `XAUTOCLAIM` scans at most ten pending entries per job asked for, from where the last call
//! stopped, so with many live leases an expired one is found within one sweep of the pending
//! list rather than at the very next call.
//!
//! Done jobs keep their outcome (not their payload) until [`RedisJobQueue::purge_done_jobs`]
//! deletes them, which also frees their idempotency keys.
//!
//! Every state change is one Lua script, atomic on the server: completions, failures,
//! heartbeats and deferrals are guarded by (state, worker, lease_until) like PostgreSQL's, so a
//! worker that lost its lease cannot finish a job someone else holds. The scripts name a job's
//! keys themselves (its queue is in its hash), so the queue needs one Redis server, not a
//! cluster, like the rest of this backend. A consumer is deleted once it holds no entry, so
//! workers that come and go (a host's id changes at each start) do not pile up in the group.

use super::{RedisArg, RedisStore};
use crate::sql::{effective_limit, lease_deadline};
use crate::{
    Attempt, BackendError, DeadJob, EarlierOutcome, Enqueued, JobFailure, JobLease, JobOutcome,
    JobQueue, JobRecord, MAX_HISTORY, Millis, NewJob, QueueCounts, Result,
};
use async_trait::async_trait;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// What an entry's delivery time is set below its lease's end: ten years, so the time is never
/// in the future of the server's clock (Redis would clamp it to now) while hosts' clocks are
/// within ten years of it, and never negative while the caller's clock reads after 1980.
pub const CLAIM_OFFSET_MS: Millis = 10 * 365 * 24 * 3600 * 1000;
// 1980-01-01T00:00:00Z is after the offset.
const _: () = assert!(CLAIM_OFFSET_MS < 315_532_800_000);

/// How much earlier than exact the `XAUTOCLAIM` prefilter claims: the script's `TIME` and the
/// time `XAUTOCLAIM` measures idleness by may differ by a few milliseconds; the guard gives
/// back what was claimed early.
const CLAIM_MARGIN_MS: Millis = 1_000;

/// Most jobs one `lease_jobs` call hands out, whatever the caller asks: the script runs
/// atomically and `XAUTOCLAIM` scans up to ten entries per job asked for.
pub const MAX_LEASE_BATCH: u32 = 1_000;

/// The `last_error` of a job that died because its last allowed attempt never reported back.
const LOST_ON_LAST_ATTEMPT: &str = "lease expired on the last attempt (the worker stopped or hung)";

/// Key names, the guard and the bookkeeping every script shares. ARGV[1] is the store's key
/// prefix; each script's own arguments follow.
const PRELUDE: &str = r#"
local P = ARGV[1]
local GROUP = 'workers'
local function job_key(id) return P .. ':job:' .. id end
local function qkey(part, queue) return P .. ':jobs:' .. part .. ':' .. queue end
local function pad(id) return string.rep('0', 20 - #id) .. id end
local function count(queue, state, by) redis.call('HINCRBY', qkey('counts', queue), state, by) end
-- The lease still holds: leased to this worker with this deadline.
local function held(key, worker, lease_until)
  local job = redis.call('HMGET', key, 'state', 'owner', 'until')
  return job[1] == 'leased' and job[2] == worker and job[3] == lease_until
end
-- A consumer exists only while it holds entries.
local function release(stream, consumer)
  if #redis.call('XPENDING', stream, GROUP, '-', '+', 1, consumer) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', stream, GROUP, consumer)
  end
end
local function ack(queue, entry, owner)
  local stream = qkey('stream', queue)
  if entry then
    redis.call('XACK', stream, GROUP, entry)
    redis.call('XDEL', stream, entry)
  end
  if owner then release(stream, owner) end
end
-- Appends a failed attempt, keeping the latest MAX_HISTORY ('at' kept as a string: exact).
local function append_history(key, at, error, max_history)
  local history = cjson.decode(redis.call('HGET', key, 'history') or '[]')
  table.insert(history, {at = at, error = error})
  while #history > max_history do table.remove(history, 1) end
  redis.call('HSET', key, 'history', cjson.encode(history), 'last_error', error)
end
local function mark_dead(key, id, queue, now)
  redis.call('HSET', key, 'state', 'dead', 'died_at', now)
  redis.call('ZADD', qkey('dead', queue), id, id)
  redis.call('ZADD', P .. ':jobs:dead', id, id)
  count(queue, 'dead', 1)
end
"#;

/// ARGV: prefix, queue, payload, max_attempts, run_at, kind, target or '', key or ''.
/// Answers `{'new', id}` or `{'repeat', id}`.
const ENQUEUE: &str = r#"
local queue, idempotency_key = ARGV[2], ARGV[8]
if idempotency_key ~= '' then
  local existing = redis.call('HGET', qkey('keys', queue), idempotency_key)
  if existing then return {'repeat', existing} end
end
local id = string.format('%d', redis.call('INCR', P .. ':jobs:next'))
local key = job_key(id)
redis.call('HSET', key, 'queue', queue, 'payload', ARGV[3], 'state', 'queued', 'attempt', '0',
  'max_attempts', ARGV[4], 'run_at', ARGV[5], 'kind', ARGV[6], 'unknown', '0')
if ARGV[7] ~= '' then redis.call('HSET', key, 'target', ARGV[7]) end
if idempotency_key ~= '' then
  redis.call('HSET', key, 'idempotency_key', idempotency_key)
  redis.call('HSET', qkey('keys', queue), idempotency_key, id)
end
redis.call('ZADD', qkey('due', queue), ARGV[5], pad(id))
count(queue, 'queued', 1)
return {'new', id}
"#;

/// ARGV: prefix, queue, worker, now, lease_until, lease_until - offset, limit, offset, margin,
/// lost-error, max history. Answers `{id, payload, attempt, max_attempts, kind, target or '',
/// unknown, …}`: expired leases taken over first, then due jobs.
const LEASE: &str = r#"
local queue, worker, now = ARGV[2], ARGV[3], ARGV[4]
local lease_until, claim_time, limit = ARGV[5], ARGV[6], tonumber(ARGV[7])
local offset, margin, max_history = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[11])
if redis.call('HEXISTS', P .. ':jobs:paused', queue) == 1 then return {} end
local stream, due, cursor_key = qkey('stream', queue), qkey('due', queue), qkey('cursor', queue)
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
end
local leased, handed = {}, 0
local function hand_out(key, id)
  local job = redis.call('HMGET', key, 'payload', 'attempt', 'max_attempts', 'kind', 'target',
    'unknown')
  for _, value in ipairs({id, job[1] or '', job[2] or '0', job[3] or '0', job[4] or '',
      job[5] or '', job[6] or '0'}) do
    table.insert(leased, value)
  end
  handed = handed + 1
end

-- 1. Expired leases, found by XAUTOCLAIM on the caller's clock (see the module's docs).
local time = redis.call('TIME')
local server_now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local min_idle = server_now - tonumber(now) + offset + 1 - margin
if min_idle < 0 then min_idle = 0 end
min_idle = string.format('%.0f', min_idle)
local function rescue(entries)
  for _, entry in ipairs(entries) do
    local entry_id, fields = entry[1], entry[2]
    local id = fields and fields[2]
    local key = id and job_key(id)
    local job = key and redis.call('HMGET', key, 'state', 'entry', 'owner', 'until', 'attempt',
      'max_attempts') or {}
    if job[1] ~= 'leased' or job[2] ~= entry_id then
      -- Finished (or gone) but never acknowledged: never rescued.
      ack(queue, entry_id, nil)
    elseif tonumber(job[4]) >= tonumber(now) then
      -- Still held (claimed within the margin): back to its owner, its delivery time restored.
      redis.call('XCLAIM', stream, GROUP, job[3], '0', entry_id, 'TIME',
        string.format('%.0f', tonumber(job[4]) - offset), 'JUSTID')
    elseif tonumber(job[5]) >= tonumber(job[6]) then
      -- Lost on its last attempt: dead rather than tried past max_attempts.
      ack(queue, entry_id, job[3])
      redis.call('HDEL', key, 'owner', 'until', 'entry')
      append_history(key, now, ARGV[10], max_history)
      count(queue, 'leased', -1)
      mark_dead(key, id, queue, now)
    else
      -- Taken over: its worker may have acted before it stopped.
      redis.call('HSET', key, 'owner', worker, 'until', lease_until, 'unknown', '1')
      redis.call('HINCRBY', key, 'attempt', 1)
      redis.call('XCLAIM', stream, GROUP, worker, '0', entry_id, 'TIME', claim_time, 'JUSTID')
      if job[3] ~= worker then release(stream, job[3]) end
      hand_out(key, id)
    end
  end
end
local from = redis.call('GET', cursor_key) or '0-0'
for pass = 1, 2 do
  if handed >= limit then break end
  local reply = redis.call('XAUTOCLAIM', stream, GROUP, worker, min_idle, from, 'COUNT',
    limit - handed)
  rescue(reply[2])
  local wrapped = reply[1] == '0-0'
  local started_at_front = from == '0-0'
  from = reply[1]
  -- One more pass from the front when this one began midway and reached the end.
  if not wrapped or started_at_front then break end
end
redis.call('SET', cursor_key, from)

-- 2. Due jobs, moved into the stream and read as this worker, in (run_at, id) order.
local need = limit - handed
if need > 0 then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, need)) do
    redis.call('ZREM', due, member)
    local id = string.gsub(member, '^0+', '')
    local entry = redis.call('XADD', stream, '*', 'job', id)
    redis.call('HSET', job_key(id), 'entry', entry)
  end
  local reply = redis.call('XREADGROUP', 'GROUP', GROUP, worker, 'COUNT', need, 'STREAMS',
    stream, '>')
  for _, entry in ipairs(reply and reply[1][2] or {}) do
    local entry_id, fields = entry[1], entry[2]
    local id = fields and fields[2]
    local key = id and job_key(id)
    local job = key and redis.call('HMGET', key, 'state', 'entry') or {}
    if job[1] ~= 'queued' or job[2] ~= entry_id then
      ack(queue, entry_id, nil)
    else
      redis.call('HSET', key, 'state', 'leased', 'owner', worker, 'until', lease_until)
      redis.call('HINCRBY', key, 'attempt', 1)
      redis.call('XCLAIM', stream, GROUP, worker, '0', entry_id, 'TIME', claim_time, 'JUSTID')
      count(queue, 'queued', -1)
      count(queue, 'leased', 1)
      hand_out(key, id)
    end
  end
end
if handed == 0 then release(stream, worker) end
return leased
"#;

/// ARGV: prefix, id, worker, lease_until, outcome, reference, has reference, detail, has
/// detail, now. Answers 1 when the lease held.
const FINISH: &str = r#"
local id, worker, now = ARGV[2], ARGV[3], ARGV[10]
local key = job_key(id)
if not held(key, worker, ARGV[4]) then return 0 end
local job = redis.call('HMGET', key, 'queue', 'entry')
ack(job[1], job[2], worker)
-- A done job is only counted, never run again: its payload goes.
redis.call('HDEL', key, 'payload', 'owner', 'until', 'entry', 'reference', 'detail')
redis.call('HSET', key, 'state', 'done', 'outcome', ARGV[5], 'finished_at', now, 'unknown', '0')
if ARGV[7] == '1' then redis.call('HSET', key, 'reference', ARGV[6]) end
if ARGV[9] == '1' then redis.call('HSET', key, 'detail', ARGV[8]) end
redis.call('ZADD', P .. ':jobs:done', now, id)
count(job[1], 'leased', -1)
count(job[1], 'done', 1)
return 1
"#;

/// ARGV: prefix, id, worker, lease_until, new lease_until, new lease_until - offset.
const HEARTBEAT: &str = r#"
local key, worker = job_key(ARGV[2]), ARGV[3]
if not held(key, worker, ARGV[4]) then return 0 end
local job = redis.call('HMGET', key, 'queue', 'entry')
redis.call('HSET', key, 'until', ARGV[5])
redis.call('XCLAIM', qkey('stream', job[1]), GROUP, worker, '0', job[2], 'TIME', ARGV[6],
  'JUSTID')
return 1
"#;

/// ARGV: prefix, id, worker, lease_until, run_at.
const DEFER: &str = r#"
local id, worker = ARGV[2], ARGV[3]
local key = job_key(id)
if not held(key, worker, ARGV[4]) then return 0 end
local job = redis.call('HMGET', key, 'queue', 'entry', 'attempt')
ack(job[1], job[2], worker)
local attempt = tonumber(job[3]) - 1
if attempt < 0 then attempt = 0 end
redis.call('HDEL', key, 'owner', 'until', 'entry')
redis.call('HSET', key, 'state', 'queued', 'attempt', string.format('%d', attempt), 'run_at',
  ARGV[5])
redis.call('ZADD', qkey('due', job[1]), ARGV[5], pad(id))
count(job[1], 'leased', -1)
count(job[1], 'queued', 1)
return 1
"#;

/// ARGV: prefix, id, worker, lease_until, retry_at or '', now, error, outcome unknown ('1'),
/// max history. Retries only when asked to and attempts remain; otherwise the job dies.
const FAIL: &str = r#"
local id, worker, retry_at, now = ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local key = job_key(id)
if not held(key, worker, ARGV[4]) then return 0 end
local job = redis.call('HMGET', key, 'queue', 'entry', 'attempt', 'max_attempts')
ack(job[1], job[2], worker)
redis.call('HDEL', key, 'owner', 'until', 'entry')
append_history(key, now, ARGV[7], tonumber(ARGV[9]))
if ARGV[8] == '1' then redis.call('HSET', key, 'unknown', '1') end
count(job[1], 'leased', -1)
if retry_at ~= '' and tonumber(job[3]) < tonumber(job[4]) then
  redis.call('HSET', key, 'state', 'queued', 'run_at', retry_at)
  redis.call('ZADD', qkey('due', job[1]), retry_at, pad(id))
  count(job[1], 'queued', 1)
else
  mark_dead(key, id, job[1], now)
end
return 1
"#;

/// ARGV: prefix, limit, queue or ''. Answers `{id, queue, payload, attempt, last_error or '',
/// has last_error, died_at, history, …}` by id.
const LIST_DEAD: &str = r#"
local index = P .. ':jobs:dead'
if ARGV[3] ~= '' then index = qkey('dead', ARGV[3]) end
local rows = {}
for _, id in ipairs(redis.call('ZRANGE', index, 0, tonumber(ARGV[2]) - 1)) do
  local job = redis.call('HMGET', job_key(id), 'queue', 'payload', 'attempt', 'last_error',
    'died_at', 'history')
  if job[1] then
    for _, value in ipairs({id, job[1], job[2] or '', job[3] or '0', job[4] or '',
        job[4] and '1' or '0', job[5] or '', job[6] or '[]'}) do
      table.insert(rows, value)
    end
  end
end
return rows
"#;

/// ARGV: prefix, id, now. Queues a dead job again with a fresh attempt count.
const RETRY_DEAD: &str = r#"
local id, now = ARGV[2], ARGV[3]
local key = job_key(id)
if redis.call('HGET', key, 'state') ~= 'dead' then return 0 end
local queue = redis.call('HGET', key, 'queue')
redis.call('HDEL', key, 'died_at')
redis.call('HSET', key, 'state', 'queued', 'attempt', '0', 'run_at', now)
redis.call('ZREM', qkey('dead', queue), id)
redis.call('ZREM', P .. ':jobs:dead', id)
redis.call('ZADD', qkey('due', queue), now, pad(id))
count(queue, 'dead', -1)
count(queue, 'queued', 1)
return 1
"#;

/// Deletes a job's hash and its idempotency key (if the key still names it).
const FORGET_LUA: &str = r#"
local function forget(key, id, queue)
  local idempotency_key = redis.call('HGET', key, 'idempotency_key')
  if idempotency_key and redis.call('HGET', qkey('keys', queue), idempotency_key) == id then
    redis.call('HDEL', qkey('keys', queue), idempotency_key)
  end
  redis.call('UNLINK', key)
end
"#;

/// ARGV: prefix, id.
const DROP_DEAD: &str = r#"
local id = ARGV[2]
local key = job_key(id)
if redis.call('HGET', key, 'state') ~= 'dead' then return 0 end
local queue = redis.call('HGET', key, 'queue')
redis.call('ZREM', qkey('dead', queue), id)
redis.call('ZREM', P .. ':jobs:dead', id)
count(queue, 'dead', -1)
forget(key, id, queue)
return 1
"#;

/// ARGV: prefix, done_before, limit. Answers how many done jobs it deleted, oldest first.
const PURGE_DONE: &str = r#"
local index = P .. ':jobs:done'
local purged = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. ARGV[2], 'LIMIT', 0,
    tonumber(ARGV[3]))) do
  redis.call('ZREM', index, id)
  local key = job_key(id)
  local job = redis.call('HMGET', key, 'state', 'queue')
  if job[1] == 'done' then
    count(job[2], 'done', -1)
    forget(key, id, job[2])
    purged = purged + 1
  end
end
return purged
"#;

fn script(parts: &[&str]) -> Script {
    Script::new(&parts.concat())
}

static ENQUEUE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, ENQUEUE]));
static LEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, LEASE]));
static FINISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, FINISH]));
static HEARTBEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, HEARTBEAT]));
static DEFER_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, DEFER]));
static FAIL_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, FAIL]));
static LIST_DEAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, LIST_DEAD]));
static RETRY_DEAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(&[PRELUDE, RETRY_DEAD]));
static DROP_DEAD_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| script(&[PRELUDE, FORGET_LUA, DROP_DEAD]));
static PURGE_DONE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| script(&[PRELUDE, FORGET_LUA, PURGE_DONE]));

/// The job queue in Redis.
#[derive(Debug, Clone)]
pub struct RedisJobQueue {
    store: RedisStore,
}

impl RedisJobQueue {
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    /// Deletes up to `limit` done jobs finished before `done_before`, oldest first (as
    /// [`crate::RetentionStore::purge_done_jobs`] does for the SQL stores); returns how many.
    /// Their idempotency keys are free again.
    pub async fn purge_done_jobs(&self, done_before: Millis, limit: u32) -> Result<u64> {
        let limit = crate::sql::batch_limit(limit);
        let purged: i64 = self
            .run(
                "purging done jobs",
                &PURGE_DONE_SCRIPT,
                &[&done_before, &limit],
            )
            .await?;
        Ok(purged.unsigned_abs())
    }

    /// Runs `script` with the key prefix first, then `args`.
    async fn run<T: redis::FromRedisValue>(
        &self,
        context: &'static str,
        script: &Script,
        args: &[&dyn RedisArg],
    ) -> Result<T> {
        let prefix = self.store.prefix();
        let mut all: Vec<&dyn RedisArg> = Vec::with_capacity(args.len() + 1);
        all.push(&prefix);
        all.extend_from_slice(args);
        self.store.run(context, script, &[], &all).await
    }

    /// A guarded call on a held lease: true when the lease still held.
    async fn on_lease(
        &self,
        context: &'static str,
        script: &Script,
        lease: &JobLease,
        rest: &[&dyn RedisArg],
    ) -> Result<bool> {
        let mut args: Vec<&dyn RedisArg> = vec![&lease.id, &lease.worker, &lease.lease_until];
        args.extend_from_slice(rest);
        let held: i64 = self.run(context, script, &args).await?;
        Ok(held == 1)
    }
}

/// The caller's clock must read after 1980 for an entry's delivery time to stay positive.
fn check_clock(now: Millis) -> Result<()> {
    if now < CLAIM_OFFSET_MS {
        return Err(BackendError::Refused(format!(
            "the clock reads {now} ms since 1970; the Redis queue needs a time after 1980"
        )));
    }
    Ok(())
}

fn corrupt(reason: String) -> BackendError {
    BackendError::Corrupt {
        context: "a job in Redis",
        reason,
    }
}

fn parse_i64(text: &str, what: &str) -> Result<i64> {
    text.parse()
        .map_err(|_| corrupt(format!("{what} {text:?} is not an integer")))
}

fn parse_u32(text: &str, what: &str) -> Result<u32> {
    text.parse()
        .map_err(|_| corrupt(format!("{what} {text:?} is not a count")))
}

/// A history as the scripts keep it: JSON with each time as a string (exact in Lua).
fn parse_history(json: &str) -> Result<Vec<Attempt>> {
    #[derive(serde::Deserialize)]
    struct Stored {
        at: String,
        error: String,
    }
    // An empty Lua table is encoded as an object.
    if json == "{}" {
        return Ok(Vec::new());
    }
    let stored: Vec<Stored> = serde_json::from_str(json)
        .map_err(|error| corrupt(format!("a history is not a JSON list: {error}")))?;
    stored
        .into_iter()
        .map(|attempt| {
            Ok(Attempt {
                at: parse_i64(&attempt.at, "an attempt's time")?,
                error: attempt.error,
            })
        })
        .collect()
}

fn lease_from_row(
    row: &[String],
    queue: &str,
    worker: &str,
    lease_until: Millis,
) -> Result<JobLease> {
    let [id, payload, attempt, max_attempts, kind, target, unknown] = row else {
        return Err(corrupt(format!("a leased job has {} fields", row.len())));
    };
    let attempt = parse_u32(attempt, "an attempt")?;
    Ok(JobLease {
        id: parse_i64(id, "an id")?,
        queue: queue.to_string(),
        payload: payload.clone(),
        attempt,
        max_attempts: parse_u32(max_attempts, "max_attempts")?,
        worker: worker.to_string(),
        lease_until,
        kind: kind.clone(),
        // The store refuses an empty target, so '' is none.
        target: (!target.is_empty()).then(|| target.clone()),
        earlier: if unknown == "1" {
            EarlierOutcome::Unknown
        } else if attempt > 1 {
            EarlierOutcome::Failed
        } else {
            EarlierOutcome::None
        },
    })
}

fn dead_from_row(row: &[String]) -> Result<DeadJob> {
    let [
        id,
        queue,
        payload,
        attempts,
        last_error,
        has_error,
        died_at,
        history,
    ] = row
    else {
        return Err(corrupt(format!("a dead job has {} fields", row.len())));
    };
    Ok(DeadJob {
        id: parse_i64(id, "an id")?,
        queue: queue.clone(),
        payload: payload.clone(),
        attempts: parse_u32(attempts, "an attempt")?,
        last_error: (has_error == "1").then(|| last_error.clone()),
        died_at: parse_i64(died_at, "a time of death")?,
        history: parse_history(history)?,
    })
}

/// Fields `job` reads, in order.
const RECORD_FIELDS: [&str; 10] = [
    "queue",
    "kind",
    "target",
    "state",
    "attempt",
    "unknown",
    "outcome",
    "reference",
    "detail",
    "last_error",
];

fn record_from_fields(id: i64, fields: Vec<Option<String>>) -> Result<Option<JobRecord>> {
    let Ok(
        [
            queue,
            kind,
            target,
            state,
            attempt,
            unknown,
            outcome,
            reference,
            detail,
            last_error,
        ],
    ) = <[Option<String>; 10]>::try_from(fields)
    else {
        return Err(corrupt("a job's fields came back incomplete".to_string()));
    };
    let Some(queue) = queue else {
        return Ok(None);
    };
    let state = state.ok_or_else(|| corrupt(format!("job {id} has no state")))?;
    if !matches!(state.as_str(), "queued" | "leased" | "done" | "dead") {
        return Err(corrupt(format!("job {id} has the unknown state {state:?}")));
    }
    let outcome = match outcome.as_deref() {
        None => None,
        Some("done") => Some(JobOutcome::Done { reference, detail }),
        Some("skipped") => Some(JobOutcome::Skipped {
            reason: detail.unwrap_or_default(),
        }),
        Some(other) => return Err(corrupt(format!("job {id} has the outcome {other:?}"))),
    };
    Ok(Some(JobRecord {
        id,
        queue,
        kind: kind.unwrap_or_default(),
        target,
        state,
        attempt: parse_u32(attempt.as_deref().unwrap_or("0"), "an attempt")?,
        earlier_unknown: unknown.as_deref() == Some("1"),
        outcome,
        last_error,
    }))
}

fn count_field(value: Option<String>) -> Result<u64> {
    // A count drifts below zero only if the data was edited by hand; show it as none.
    value.map_or(Ok(0), |text| {
        parse_i64(&text, "a count").map(|count| u64::try_from(count).unwrap_or(0))
    })
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued> {
        if let Some(problem) = job.problem() {
            return Err(BackendError::Refused(problem));
        }
        let answer: Vec<String> = self
            .run(
                "enqueueing a job",
                &ENQUEUE_SCRIPT,
                &[
                    &job.queue,
                    &job.payload,
                    &i64::from(job.max_attempts),
                    &job.run_at,
                    &job.kind,
                    &job.target.clone().unwrap_or_default(),
                    &job.idempotency_key.clone().unwrap_or_default(),
                ],
            )
            .await?;
        match answer.as_slice() {
            [status, id] if status == "new" => Ok(Enqueued::New(parse_i64(id, "an id")?)),
            [status, id] if status == "repeat" => Ok(Enqueued::Repeat(parse_i64(id, "an id")?)),
            _ => Err(corrupt(format!("an enqueue answered {answer:?}"))),
        }
    }

    async fn lease_jobs(
        &self,
        queue: &str,
        worker: &str,
        now: Millis,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<JobLease>> {
        check_clock(now)?;
        let limit = limit.min(MAX_LEASE_BATCH);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease_until = lease_deadline(now, lease);
        let flat: Vec<String> = self
            .run(
                "leasing jobs",
                &LEASE_SCRIPT,
                &[
                    &queue,
                    &worker,
                    &now,
                    &lease_until,
                    &lease_until.saturating_sub(CLAIM_OFFSET_MS),
                    &i64::from(limit),
                    &CLAIM_OFFSET_MS,
                    &CLAIM_MARGIN_MS,
                    &LOST_ON_LAST_ATTEMPT,
                    &(MAX_HISTORY as i64),
                ],
            )
            .await?;
        let mut leases = flat
            .chunks(7)
            .map(|row| lease_from_row(row, queue, worker, lease_until))
            .collect::<Result<Vec<_>>>()?;
        leases.sort_by_key(|lease| lease.id);
        Ok(leases)
    }

    async fn finish_job(
        &self,
        lease: &JobLease,
        outcome: &JobOutcome,
        now: Millis,
    ) -> Result<bool> {
        // The texts come from plugins: capped like errors.
        let (name, reference, detail) = crate::sql::outcome_columns(outcome);
        let flag = |value: &Option<std::borrow::Cow<'_, str>>| {
            if value.is_some() { "1" } else { "0" }
        };
        self.on_lease(
            "completing a job",
            &FINISH_SCRIPT,
            lease,
            &[
                &name,
                &reference.as_deref().unwrap_or_default(),
                &flag(&reference),
                &detail.as_deref().unwrap_or_default(),
                &flag(&detail),
                &now,
            ],
        )
        .await
    }

    async fn heartbeat_job(
        &self,
        lease: &mut JobLease,
        now: Millis,
        lease_for: Duration,
    ) -> Result<bool> {
        check_clock(now)?;
        let lease_until = lease_deadline(now, lease_for);
        let held = self
            .on_lease(
                "extending a job's lease",
                &HEARTBEAT_SCRIPT,
                lease,
                &[&lease_until, &lease_until.saturating_sub(CLAIM_OFFSET_MS)],
            )
            .await?;
        if held {
            lease.lease_until = lease_until;
        }
        Ok(held)
    }

    async fn defer_job(&self, lease: &JobLease, run_at: Millis, _now: Millis) -> Result<bool> {
        self.on_lease("deferring a job", &DEFER_SCRIPT, lease, &[&run_at])
            .await
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool, now: Millis) -> Result<()> {
        let mut connection = self.store.connection();
        let key = self.store.key("jobs:paused");
        let command = if paused {
            // HSETNX: pausing twice keeps the first time.
            redis::cmd("HSETNX").arg(key).arg(queue).arg(now).clone()
        } else {
            redis::cmd("HDEL").arg(key).arg(queue).clone()
        };
        let _: i64 = command
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("pausing or resuming a queue"))?;
        Ok(())
    }

    async fn queue_paused(&self, queue: &str) -> Result<bool> {
        let mut connection = self.store.connection();
        let paused: bool = redis::cmd("HEXISTS")
            .arg(self.store.key("jobs:paused"))
            .arg(queue)
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("reading whether a queue is paused"))?;
        Ok(paused)
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        let mut connection = self.store.connection();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.store.key(&format!("job:{id}")))
            .arg(&RECORD_FIELDS)
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("reading a job"))?;
        record_from_fields(id, fields)
    }

    async fn record_failure(
        &self,
        lease: &JobLease,
        failure: &JobFailure<'_>,
        now: Millis,
    ) -> Result<bool> {
        // The error text comes from plugins and sinks' upstreams: capped.
        let error = crate::cap_error(failure.error).into_owned();
        let retry_at = failure
            .retry_at
            .map(|at| at.to_string())
            .unwrap_or_default();
        let unknown = if failure.outcome_unknown { "1" } else { "0" };
        self.on_lease(
            "recording a failed job attempt",
            &FAIL_SCRIPT,
            lease,
            &[&retry_at, &now, &error, &unknown, &(MAX_HISTORY as i64)],
        )
        .await
    }

    async fn queue_counts(&self, queue: &str) -> Result<QueueCounts> {
        let mut connection = self.store.connection();
        let [queued, leased, done, dead]: [Option<String>; 4] = redis::cmd("HMGET")
            .arg(self.store.key(&format!("jobs:counts:{queue}")))
            .arg(&["queued", "leased", "done", "dead"])
            .query_async::<Vec<Option<String>>>(&mut connection)
            .await
            .map_err(super::redis_error("counting jobs"))?
            .try_into()
            .map_err(|_| corrupt("a queue's counts came back incomplete".to_string()))?;
        Ok(QueueCounts {
            queued: count_field(queued)?,
            leased: count_field(leased)?,
            done: count_field(done)?,
            dead: count_field(dead)?,
        })
    }

    async fn list_dead(&self, queue: Option<&str>, limit: u32) -> Result<Vec<DeadJob>> {
        let flat: Vec<String> = self
            .run(
                "listing dead jobs",
                &LIST_DEAD_SCRIPT,
                &[&effective_limit(limit), &queue.unwrap_or_default()],
            )
            .await?;
        flat.chunks(8).map(dead_from_row).collect()
    }

    async fn retry_dead_job(&self, id: i64, now: Millis) -> Result<bool> {
        let retried: i64 = self
            .run("retrying a dead job", &RETRY_DEAD_SCRIPT, &[&id, &now])
            .await?;
        Ok(retried == 1)
    }

    async fn drop_dead_job(&self, id: i64) -> Result<bool> {
        let dropped: i64 = self
            .run("dropping a dead job", &DROP_DEAD_SCRIPT, &[&id])
            .await?;
        Ok(dropped == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_keep_exact_times_and_an_empty_lua_table_is_no_history() {
        assert_eq!(parse_history("{}").expect("empty"), []);
        assert_eq!(
            parse_history(r#"[{"at":"1700000000123","error":"a\/b"}]"#).expect("one"),
            [Attempt {
                at: 1_700_000_000_123,
                error: "a/b".to_string()
            }]
        );
        assert!(parse_history(r#"[{"at":1.7e12,"error":"x"}]"#).is_err());
    }

    #[test]
    fn replies_of_the_wrong_shape_are_corrupt_not_a_panic() {
        let short = ["1".to_string(), "p".to_string()];
        assert!(lease_from_row(&short, "q", "w", 0).is_err());
        let bad_attempt: Vec<String> = ["1", "p", "x", "3", "", "", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(lease_from_row(&bad_attempt, "q", "w", 0).is_err());
        assert!(dead_from_row(&short).is_err());
        assert!(record_from_fields(1, vec![None; 3]).is_err());
        assert_eq!(record_from_fields(1, vec![None; 10]).expect("absent"), None);
        let mut odd = vec![Some("q".to_string()); 10];
        odd[3] = Some("lost".to_string());
        assert!(record_from_fields(1, odd).is_err(), "an unknown state");
    }

    #[test]
    fn a_clock_before_the_claim_offset_is_refused() {
        assert!(check_clock(CLAIM_OFFSET_MS - 1).is_err());
        assert!(check_clock(crate::conformance::T0).is_ok());
    }
}
