-- Schema version 9: WebSub subscriptions (one per connector and target; `id` is the callback
-- URL's unguessable part) and the deliveries hubs pushed, kept until a poll has read them.
-- Applied after version 8, inside the same `BEGIN IMMEDIATE` transaction that read the
-- version.
CREATE TABLE IF NOT EXISTS websub_subscriptions (
    id          TEXT PRIMARY KEY,
    connector   TEXT NOT NULL,
    target_id   INTEGER NOT NULL,
    hub         TEXT NOT NULL,
    topic       TEXT NOT NULL,
    secret      TEXT NOT NULL,
    state       TEXT NOT NULL,
    lease_until INTEGER,
    renew_at    INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    UNIQUE (connector, target_id)
);
CREATE INDEX IF NOT EXISTS websub_subscriptions_by_renewal
    ON websub_subscriptions (renew_at) WHERE state != 'denied';
CREATE TABLE IF NOT EXISTS websub_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    connector       TEXT NOT NULL,
    target_id       INTEGER NOT NULL,
    content_type    TEXT,
    body            BLOB NOT NULL,
    received_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS websub_deliveries_by_target
    ON websub_deliveries (connector, target_id, id);
