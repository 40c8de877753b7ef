-- Schema version 3 of the embedded SQLite backend: targets parked because the host's own
-- egress policy refused their call. Applied after version 2, inside the same `BEGIN IMMEDIATE`
-- transaction that read the version.

-- When the target was parked; its next_run_at is then the largest integer, so no claim picks
-- it until `release_refused`. The reason is the refusal the plugin was told (URLs redacted).
ALTER TABLE targets ADD COLUMN refused_at INTEGER;
ALTER TABLE targets ADD COLUMN refused_reason TEXT;

PRAGMA user_version = 3;
