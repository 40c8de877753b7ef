-- Schema of the embedded SQLite backend, version 1. Executed at open inside one
-- `BEGIN IMMEDIATE` transaction; every statement is idempotent, so processes opening the same
-- file at the same time cannot trip over each other.

-- What to poll and when. A row is leased while `lease_owner` is set and `lease_until >= now`.
-- AUTOINCREMENT: ids are never reused, so a stale claim can never alias a newer target.
CREATE TABLE IF NOT EXISTS targets (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    connector      TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    next_run_at    INTEGER NOT NULL,
    lease_owner    TEXT,
    lease_until    INTEGER,
    etag           TEXT,
    last_modified  TEXT,
    cursor         TEXT,
    error_count    INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    last_polled_at INTEGER,
    interval_ms    INTEGER,
    UNIQUE (connector, target)
);
-- Serves claim_due / count_due: due targets of one connector, earliest first.
CREATE INDEX IF NOT EXISTS targets_due ON targets (connector, next_run_at);

-- Deduplicated items. `seq` only grows (AUTOINCREMENT) and, with one writer at a time, follows
-- commit order, so it is a gap-free paging cursor.
CREATE TABLE IF NOT EXISTS items (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    connector  TEXT    NOT NULL,
    item_id    TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    fetched_at INTEGER NOT NULL,
    data       TEXT    NOT NULL, -- the Item as JSON
    UNIQUE (connector, item_id)
);
CREATE INDEX IF NOT EXISTS items_by_target ON items (target, seq);

-- Durable jobs. state: queued | leased | done | dead.
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    updated_at   INTEGER NOT NULL,
    died_at      INTEGER
);
-- Serves lease_jobs (queued and due / leased and expired) and queue_counts.
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, state, run_at);
CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (queue, state, lease_until);

-- Connector key/value state. scope_target_id = 0 is the connector scope; target ids start at 1.
CREATE TABLE IF NOT EXISTS state (
    connector       TEXT    NOT NULL,
    scope_target_id INTEGER NOT NULL,
    key             TEXT    NOT NULL,
    value           TEXT    NOT NULL,
    PRIMARY KEY (connector, scope_target_id, key)
) WITHOUT ROWID;

PRAGMA user_version = 1;
