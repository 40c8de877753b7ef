//! `[rankings.NAME]`: the rankings the host keeps (sorted sets per period, see
//! `crate::rankings`): which periods, in which time zone, and how many members a board may
//! hold. Checked here with the rest of the file.

use super::Config;
use super::validate::Checks;
use serde::Deserialize;

/// The most members a board may be allowed.
pub const RANKING_MEMBERS: std::ops::RangeInclusive<u64> = 1..=10_000_000;

/// Which board of a ranking.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// The current day, in the ranking's time zone.
    Daily,
    /// The current ISO week (Monday to Sunday), in the ranking's time zone.
    Weekly,
    AllTime,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Daily, Period::Weekly, Period::AllTime];

    pub fn name(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::AllTime => "all-time",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|period| period.name() == name)
    }
}

/// `[rankings.NAME]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RankingSettings {
    /// The periods kept; every `add` counts on each.
    #[serde(default = "default_periods")]
    pub periods: Vec<Period>,
    /// An IANA time zone (`Asia/Tokyo`) or `UTC`: where a day and a week begin.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Members one board may hold; a new member past it is refused (existing ones still count).
    #[serde(default = "default_max_members")]
    pub max_members: u64,
}

fn default_periods() -> Vec<Period> {
    Period::ALL.to_vec()
}
fn default_time_zone() -> String {
    "UTC".to_string()
}
fn default_max_members() -> u64 {
    100_000
}

impl RankingSettings {
    /// The time zone, if its name is one.
    pub fn zone(&self) -> Option<chrono_tz::Tz> {
        self.time_zone.parse().ok()
    }
}

pub(super) fn validate(config: &Config, checks: &mut Checks) {
    for (name, ranking) in &config.rankings {
        let at = |field: &str| format!("rankings.{name}.{field}");
        checks.name(&format!("rankings.{name}"), name, "ranking");
        if ranking.zone().is_none() {
            checks.error(
                &at("time_zone"),
                format!(
                    "{:?} is not a time zone (an IANA name such as \"Asia/Tokyo\", or \"UTC\")",
                    ranking.time_zone
                ),
            );
        }
        if ranking.periods.is_empty() {
            checks.error(&at("periods"), "keep at least one period");
        }
        checks.count(&at("max_members"), ranking.max_members, RANKING_MEMBERS);
    }
    for (name, connector) in &config.connectors {
        for (index, ranking) in connector.rankings.iter().enumerate() {
            if !config.rankings.contains_key(ranking) {
                checks.error(
                    &format!("connectors.{name}.rankings[{index}]"),
                    format!("no [rankings.{ranking}] is declared"),
                );
            }
        }
    }
    if let Some(ranking) = &config.search.popularity
        && !config.rankings.contains_key(ranking)
    {
        checks.error(
            "search.popularity",
            format!("no [rankings.{ranking}] is declared"),
        );
    }
}
