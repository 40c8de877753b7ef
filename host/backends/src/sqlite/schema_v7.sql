-- Schema version 7: rankings, sorted sets of (member, score) per board. Applied after version
-- 6, inside the same `BEGIN IMMEDIATE` transaction that read the version.
--
-- WITHOUT ROWID: the primary key is the table, so a board's rows are contiguous and listing
-- boards reads `updated_at` without a second lookup. `rankings_by_score` is the board's order
-- (score descending, member ascending); it holds every column a rank query reads, so ranks,
-- the top N and the members around one are read from it alone.
CREATE TABLE IF NOT EXISTS rankings (
    board      TEXT    NOT NULL,
    member     TEXT    NOT NULL,
    score      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (board, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rankings_by_score ON rankings (board, score DESC, member);

PRAGMA user_version = 7;
