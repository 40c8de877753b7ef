-- Schema version 4 of the embedded SQLite backend: retention. Applied after version 3, inside
-- the same `BEGIN IMMEDIATE` transaction that read the version, so concurrent openers apply it
-- once. On a large existing database the new items index is built here, once.

-- Ids of items retention deleted, so a feed that still lists one does not bring it back as
-- new. `seen_at`: when it was forgotten, or last returned by a poll since (refreshed at most
-- daily); a row unseen for `host.keep_forgotten_ids` is dropped.
CREATE TABLE IF NOT EXISTS forgotten_items (
    connector TEXT    NOT NULL,
    item_id   TEXT    NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (connector, item_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forgotten_items_by_seen ON forgotten_items (seen_at);

-- Serves retention by age and by count: a connector's items, oldest first. New items append
-- at its end (fetch times only grow), so commits pay little for it.
CREATE INDEX IF NOT EXISTS items_by_age ON items (connector, fetched_at);

-- A delivery job's connector and the lowest `seq` among its items: while the job is queued or
-- leased, retention keeps that connector's items from there on. NULL for other jobs.
ALTER TABLE jobs ADD COLUMN item_connector TEXT;
ALTER TABLE jobs ADD COLUMN first_item_seq INTEGER;
-- Deliveries already waiting when this version is applied hold their items too.
UPDATE jobs SET item_connector = payload ->> '$[0].connector',
                first_item_seq = payload ->> '$[0].seq'
WHERE state IN ('queued', 'leased') AND json_valid(payload)
  AND json_type(payload, '$[0].seq') = 'integer'
  AND json_type(payload, '$[0].connector') = 'text';
CREATE INDEX IF NOT EXISTS jobs_pending_items ON jobs (item_connector, first_item_seq)
    WHERE state IN ('queued', 'leased');
-- Serves purging done jobs by age without reading the others.
CREATE INDEX IF NOT EXISTS jobs_done ON jobs (updated_at) WHERE state = 'done';

PRAGMA user_version = 4;
