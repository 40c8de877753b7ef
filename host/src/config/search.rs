//! `[search]`: how the host answers product searches across its `searcher` connectors (the
//! search API and `tsunagi search`): the deadline every shop answers within, the answer cache,
//! the default shops and the bounds of a query. Checked here with the rest of the file.

use super::validate::Checks;
use super::{Config, Role};
use serde::Deserialize;
use std::time::Duration;

/// The search deadline's bounds.
pub const SEARCH_DEADLINE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(50)..=Duration::from_secs(60);
/// How long an answer may be cached.
pub const SEARCH_CACHE_TTL: std::ops::RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(86_400);
/// How many answers may be cached.
pub const SEARCH_CACHE_ENTRIES: std::ops::RangeInclusive<usize> = 0..=1_000_000;
/// The most products one search may ask for.
pub const SEARCH_LIMIT: std::ops::RangeInclusive<u32> = 1..=100;

/// `[search]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    /// Every shop of a search answers within this, or is reported as `timeout`; a shop whose
    /// budget has no slot within it is reported `rate-limited`.
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// Identical searches within this share one answer (0 s: no cache; concurrent identical
    /// searches still share one upstream call). Only answers every shop gave fully are kept.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// The most answers kept; the oldest go first.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Products per search when the query does not say (`limit=`).
    #[serde(default = "default_limit")]
    pub default_limit: u32,
    /// The shops a search asks when it names none (`shops=`); all `searcher` connectors when
    /// absent.
    #[serde(default)]
    pub shops: Option<Vec<String>>,
    /// A `[rankings.NAME]` that counts every search's query (lower-cased, spaces collapsed):
    /// the popular queries, `GET /v1/rankings/NAME`.
    #[serde(default)]
    pub popularity: Option<String>,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            deadline: default_deadline(),
            cache_ttl: default_cache_ttl(),
            cache_entries: default_cache_entries(),
            default_limit: default_limit(),
            shops: None,
            popularity: None,
        }
    }
}

fn default_deadline() -> Duration {
    Duration::from_secs(3)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_cache_entries() -> usize {
    10_000
}
fn default_limit() -> u32 {
    20
}

pub(super) fn validate(config: &Config, checks: &mut Checks) {
    let search = &config.search;
    checks.duration("search.deadline", search.deadline, SEARCH_DEADLINE);
    checks.duration("search.cache_ttl", search.cache_ttl, SEARCH_CACHE_TTL);
    checks.count(
        "search.cache_entries",
        search.cache_entries,
        SEARCH_CACHE_ENTRIES,
    );
    checks.count("search.default_limit", search.default_limit, SEARCH_LIMIT);
    for shop in search.shops.iter().flatten() {
        match config.connectors.get(shop) {
            Some(connector) if connector.role == Role::Searcher => {}
            Some(connector) => checks.error(
                "search.shops",
                format!("'{shop}' is a {}, not a searcher connector", connector.role),
            ),
            None => checks.error(
                "search.shops",
                format!(
                    "no connector '{shop}' (a shop is a [connectors.NAME] with role = \"searcher\")"
                ),
            ),
        }
    }
}
