-- Schema version 8: targets by their URL, for pings (`weblogUpdates.ping`, WebSub) that name
-- a feed or a site rather than a connector: an exact match or a prefix range on one index.
-- Applied after version 7, inside the same `BEGIN IMMEDIATE` transaction that read the
-- version.
CREATE INDEX IF NOT EXISTS targets_by_url ON targets (target);
