-- Schema version 5 of the embedded SQLite backend: jobs for handler connectors. Applied after
-- version 4, inside the same `BEGIN IMMEDIATE` transaction that read the version.

-- What the job is and whom it acts for, as its producer named them; '' / NULL for deliveries.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN target TEXT;
-- Unique per queue (index below): the same key again answers with the first job's id.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
-- 1 once an attempt may have taken effect without the host knowing (its lease was taken over
-- after expiry, or the worker reported it unknown); handed to every later attempt, kept until
-- the job completes.
ALTER TABLE jobs ADD COLUMN earlier_unknown INTEGER NOT NULL DEFAULT 0;
-- How a done job ended: 'done' (reference, detail) or 'skipped' (detail holds the reason).
ALTER TABLE jobs ADD COLUMN outcome TEXT;
ALTER TABLE jobs ADD COLUMN outcome_reference TEXT;
ALTER TABLE jobs ADD COLUMN outcome_detail TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Paused queues lease nothing until resumed; a row per paused queue.
CREATE TABLE IF NOT EXISTS paused_queues (
    queue     TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;

PRAGMA user_version = 5;
