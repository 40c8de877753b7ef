-- Schema version 2 of the embedded SQLite backend: dead-lettered targets and attempt
-- histories. Applied after version 1, inside the same `BEGIN IMMEDIATE` transaction that read
-- the version, so concurrent openers apply it once.

-- When the target was given up on; its next_run_at is then the largest integer, so no claim
-- ever picks it until `revive_target`.
ALTER TABLE targets ADD COLUMN dead_at INTEGER;
-- JSON array of the latest consecutive failures, [{"at": ms, "error": "…"}, …], oldest first.
ALTER TABLE targets ADD COLUMN history TEXT;
ALTER TABLE jobs ADD COLUMN history TEXT;

PRAGMA user_version = 2;
