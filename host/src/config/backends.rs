//! `[backends]`: which store serves which concern, when hosts share more than the database
//! (`host.database` holds targets, items, the job queues, state and tokens). Checked here with
//! the rest of the file; opened once when the host starts (see `crate::stores`).
//!
//! ```toml
//! [backends]
//! budgets = "redis://127.0.0.1:6379/0"   # one rate limit for every host
//! rankings = "redis://127.0.0.1:6379/0"  # rankings every host counts into
//! queue = "redis://127.0.0.1:6379/0"     # handler job queues on Redis Streams
//! cluster = "redis://127.0.0.1:6379/0"   # one OAuth refresh per token in the cluster
//! ```

use super::Config;
use super::validate::Checks;
use serde::Deserialize;

/// `[backends]`. An absent field keeps the concern where a single host keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// Rate-limit budgets: `redis://…` shares them across hosts (on Redis's clock); absent,
    /// each host keeps its own in memory.
    pub budgets: Option<String>,
    /// Rankings: `redis://…` (sorted sets); absent, `host.database`.
    pub rankings: Option<String>,
    /// The job queues handler connectors serve: `redis://…` (Streams with a consumer group,
    /// shared by every host); absent, `host.database`. Sink delivery queues (`sink:NAME`) stay
    /// in `host.database` either way: their jobs are enqueued inside the transaction that
    /// commits a poll's items, which a Redis queue cannot join.
    pub queue: Option<String>,
    /// What hosts coordinate through: `redis://…`. The lock that makes one OAuth refresh per
    /// token in the whole cluster, and health probes taken in turns (one host probes an
    /// upstream per interval, every host records the result); absent, each host alone.
    pub cluster: Option<String>,
    /// A secret every host of the cluster holds and Redis does not (at least 32 characters):
    /// with it, the host a plugin push lands on shares the quick code it compiled, signed, and
    /// the others run it without compiling (code from the store is run only when its signature
    /// checks). Absent, every host compiles a pushed plugin itself.
    pub cluster_key: Option<super::SecretSource>,
}

impl BackendSettings {
    /// Each concern set here, with its field name.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("backends.budgets", self.budgets.as_deref()),
            ("backends.rankings", self.rankings.as_deref()),
            ("backends.queue", self.queue.as_deref()),
            ("backends.cluster", self.cluster.as_deref()),
        ]
        .into_iter()
        .filter_map(|(field, url)| url.map(|url| (field, url)))
    }
}

/// Whether `url` names a Redis server.
pub fn is_redis(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// The shortest `backends.cluster_key`.
pub const MIN_CLUSTER_KEY: usize = 32;

pub(super) fn validate(config: &Config, checks: &mut Checks) {
    if config.backends.cluster_key.is_some() && config.backends.cluster.is_none() {
        checks.error(
            "backends.cluster_key",
            "signs code shared through backends.cluster, which is not set".to_string(),
        );
    }
    for (field, url) in config.backends.named() {
        if !is_redis(url) {
            checks.error(
                field,
                format!(
                    "{} is not a Redis URL; this concern lives in Redis \
                     (redis://HOST:PORT/DB, optionally ?prefix=NAME) or, unset, where one host \
                     keeps it",
                    tsunagi_backends::postgres::redact_url(url)
                ),
            );
        }
    }
}
