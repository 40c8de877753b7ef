-- Schema of the PostgreSQL backend, version 1: the same tables as the SQLite backend's
-- version 9. Every time is milliseconds since the Unix epoch (BIGINT), every count BIGINT, so
-- the code reads the same Rust types from either store. Applied by sqlx's migrator under its
-- advisory lock, so hosts starting at once apply it once.

-- What to poll and when. A row is leased while `lease_owner` is set and `lease_until >= now`.
-- Identity ids are never reused, so a stale claim can never alias a newer target.
CREATE TABLE targets (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connector      TEXT   NOT NULL,
    target         TEXT   NOT NULL,
    next_run_at    BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until    BIGINT,
    etag           TEXT,
    last_modified  TEXT,
    cursor         TEXT,
    error_count    BIGINT NOT NULL DEFAULT 0,
    last_error     TEXT,
    last_polled_at BIGINT,
    interval_ms    BIGINT,
    -- When the target was given up on; its next_run_at is then the largest BIGINT, so no
    -- claim picks it until it is revived.
    dead_at        BIGINT,
    -- JSON array of the latest consecutive failures, [{"at": ms, "error": "…"}, …], oldest
    -- first.
    history        JSONB,
    -- Parked because the host's own egress policy refused its call (next_run_at is then the
    -- largest BIGINT); the reason is what the plugin was told (URLs redacted).
    refused_at     BIGINT,
    refused_reason TEXT,
    UNIQUE (connector, target)
);
-- Serves claim_due / count_due: due targets of one connector, earliest first. `id` is the
-- claim's tie-break: with it the index yields the claim's order, where (connector,
-- next_run_at) alone made each claim sort every due target (all of an import are due at once).
CREATE INDEX targets_due ON targets (connector, next_run_at, id);
-- Pings name a feed or a site: an exact match or a prefix range. text_pattern_ops so a
-- `LIKE 'prefix%'` range uses it whatever the database's collation.
CREATE INDEX targets_by_url ON targets (target text_pattern_ops);

-- Deduplicated items. Commits that store items take one transaction-scoped advisory lock
-- before inserting, so `seq` follows commit order and is a gap-free paging cursor, as it is on
-- SQLite with its single writer.
CREATE TABLE items (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connector  TEXT   NOT NULL,
    item_id    TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    fetched_at BIGINT NOT NULL,
    data       TEXT   NOT NULL, -- the Item as JSON
    UNIQUE (connector, item_id)
);
CREATE INDEX items_by_target ON items (target, seq);
-- Serves retention by age and by count: a connector's items, oldest first.
CREATE INDEX items_by_age ON items (connector, fetched_at, seq);

-- Ids of items retention deleted, so a feed that still lists one does not bring it back as
-- new. `seen_at`: when it was forgotten, or last returned by a poll since (refreshed at most
-- daily).
CREATE TABLE forgotten_items (
    connector TEXT   NOT NULL,
    item_id   TEXT   NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (connector, item_id)
);
CREATE INDEX forgotten_items_by_seen ON forgotten_items (seen_at);

-- Durable jobs. state: queued | leased | done | dead.
CREATE TABLE jobs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempt         BIGINT  NOT NULL DEFAULT 0,
    max_attempts    BIGINT  NOT NULL,
    run_at          BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    updated_at      BIGINT  NOT NULL,
    died_at         BIGINT,
    history         JSONB,
    -- A delivery job's connector and the lowest `seq` among its items: while the job is
    -- queued or leased, retention keeps that connector's items from there on. NULL for other
    -- jobs.
    item_connector  TEXT,
    first_item_seq  BIGINT,
    -- What the job is and whom it acts for, as its producer named them; '' / NULL for
    -- deliveries.
    kind            TEXT    NOT NULL DEFAULT '',
    target          TEXT,
    -- Unique per queue (index below): the same key again answers with the first job's id.
    idempotency_key TEXT,
    -- Once an attempt may have taken effect without the host knowing (its lease was taken
    -- over after expiry, or the worker reported it unknown); kept until the job completes.
    earlier_unknown BOOLEAN NOT NULL DEFAULT FALSE,
    -- How a done job ended: 'done' (reference, detail) or 'skipped' (detail holds the reason).
    outcome           TEXT,
    outcome_reference TEXT,
    outcome_detail    TEXT
);
-- Serves lease_jobs (queued and due / leased and expired) and queue_counts.
CREATE INDEX jobs_ready ON jobs (queue, state, run_at);
CREATE INDEX jobs_leased ON jobs (queue, state, lease_until);
CREATE INDEX jobs_pending_items ON jobs (item_connector, first_item_seq)
    WHERE state IN ('queued', 'leased');
CREATE INDEX jobs_done ON jobs (updated_at) WHERE state = 'done';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Paused queues lease nothing until resumed; a row per paused queue.
CREATE TABLE paused_queues (
    queue     TEXT   PRIMARY KEY,
    paused_at BIGINT NOT NULL
);

-- Connector key/value state. scope_target_id = 0 is the connector scope; target ids start at 1.
CREATE TABLE state (
    connector       TEXT   NOT NULL,
    scope_target_id BIGINT NOT NULL,
    key             TEXT   NOT NULL,
    value           TEXT   NOT NULL,
    PRIMARY KEY (connector, scope_target_id, key)
);

-- The tokens of credentials the host holds, one per credential and subject. The secret part
-- is sealed by the host (AEAD) before it gets here; scopes (a JSON array), expiry and the
-- relink mark stay in clear so a refusal needs no decryption.
CREATE TABLE tokens (
    credential   TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    scopes       TEXT   NOT NULL,
    expires_at   BIGINT,
    needs_relink TEXT,
    key_id       TEXT   NOT NULL,
    nonce        BYTEA  NOT NULL,
    ciphertext   BYTEA  NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (credential, subject)
);

-- Rankings, sorted sets of (member, score) per board. `rankings_by_score` is the board's
-- order (score descending, member ascending). COLLATE "C": members order by their bytes, as
-- on SQLite, whatever the database's collation.
CREATE TABLE rankings (
    board      TEXT COLLATE "C" NOT NULL,
    member     TEXT COLLATE "C" NOT NULL,
    score      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (board, member)
);
CREATE INDEX rankings_by_score ON rankings (board, score DESC, member);

-- WebSub subscriptions (one per connector and target; `id` is the callback URL's unguessable
-- part) and the deliveries hubs pushed, kept until a poll has read them.
CREATE TABLE websub_subscriptions (
    id          TEXT   PRIMARY KEY,
    connector   TEXT   NOT NULL,
    target_id   BIGINT NOT NULL,
    hub         TEXT   NOT NULL,
    topic       TEXT   NOT NULL,
    secret      TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    lease_until BIGINT,
    renew_at    BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    UNIQUE (connector, target_id)
);
CREATE INDEX websub_subscriptions_by_renewal
    ON websub_subscriptions (renew_at) WHERE state != 'denied';
CREATE TABLE websub_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id TEXT   NOT NULL,
    connector       TEXT   NOT NULL,
    target_id       BIGINT NOT NULL,
    content_type    TEXT,
    body            BYTEA  NOT NULL,
    received_at     BIGINT NOT NULL
);
CREATE INDEX websub_deliveries_by_target
    ON websub_deliveries (connector, target_id, id);
