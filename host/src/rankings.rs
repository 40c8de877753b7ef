//! Rankings: the host's sorted sets per ranking and period, offered to plugins (the WIT
//! `rankings` import, limited to the rankings a connector's TOML lists) and to the API
//! (`GET /v1/rankings/{name}`), over the backend's [`RankingStore`] — SQLite now, Redis when
//! hosts share one; one interface.
//!
//! A ranking keeps one board per period (`[rankings.NAME] periods`): `NAME:daily:2026-12-02`,
//! `NAME:weekly:2026-W49` (ISO weeks), `NAME:all-time`, the day and week taken in the ranking's
//! time zone from the injected clock, so a test states the moment a period rolls over. An add
//! counts on every board; a query reads the board of the current period. The query shapes are
//! those of the ranking write-up: me, top N, around me (±k), and top N with me around.

use crate::clock::SharedClock;
use crate::config::{Config, Period, RankingSettings};
use chrono::{Datelike, TimeZone};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tsunagi_backends::{
    BackendError, RankingCap, RankingStore, Standing, TopAndAround, top_and_around,
};

/// Why a ranking call did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RankingError {
    #[error("no ranking '{0}' (rankings are declared as [rankings.NAME])")]
    Unknown(String),
    #[error("ranking '{ranking}' keeps no {period} board (it keeps: {kept})")]
    PeriodNotKept {
        ranking: String,
        period: &'static str,
        kept: String,
    },
    /// The store refused: a member too long, a board at its cap.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

impl From<BackendError> for RankingError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Refused(reason) => Self::Refused(reason),
            other => Self::Store(other.to_string()),
        }
    }
}

/// What a ranking query asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankingQuery {
    Me { member: String },
    Top { n: u32 },
    Around { member: String, k: u32 },
    TopAndAround { member: String, n: u32, k: u32 },
}

/// What a ranking query answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RankingAnswer {
    pub ranking: String,
    pub period: Period,
    /// The board read (its period's name).
    pub board: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub me: Option<Standing>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<Standing>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub around: Vec<Standing>,
}

/// The rankings of a host.
pub struct Rankings {
    store: Arc<dyn RankingStore>,
    clock: SharedClock,
    declared: RwLock<BTreeMap<String, RankingSettings>>,
}

impl Rankings {
    pub fn new(store: Arc<dyn RankingStore>, clock: SharedClock, config: &Config) -> Self {
        Self {
            store,
            clock,
            declared: RwLock::new(config.rankings.clone()),
        }
    }

    /// A reloaded config's rankings (boards already written stay in the store).
    pub fn apply(&self, config: &Config) {
        *self.declared.write().unwrap_or_else(|p| p.into_inner()) = config.rankings.clone();
    }

    fn settings(&self, ranking: &str) -> Result<RankingSettings, RankingError> {
        self.declared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ranking)
            .cloned()
            .ok_or_else(|| RankingError::Unknown(ranking.to_string()))
    }

    /// Adds `delta` to `member` on every board of `ranking`; the score on its longest period.
    pub async fn add(&self, ranking: &str, member: &str, delta: i64) -> Result<i64, RankingError> {
        let settings = self.settings(ranking)?;
        let now = self.clock.now_ms();
        let cap = RankingCap {
            max_members: settings.max_members,
        };
        let mut periods = settings.periods.clone();
        periods.sort();
        periods.dedup();
        let mut score = 0;
        // Daily, weekly, then all-time: the last written is the longest kept.
        for period in periods {
            let board = board_name(ranking, &settings, period, now);
            score = self.store.rank_add(&board, member, delta, cap, now).await?;
        }
        Ok(score)
    }

    /// Answers `query` on the current board of `period`.
    pub async fn query(
        &self,
        ranking: &str,
        period: Period,
        query: &RankingQuery,
    ) -> Result<RankingAnswer, RankingError> {
        let board = self.board(ranking, period)?;
        let mut answer = RankingAnswer {
            ranking: ranking.to_string(),
            period,
            board: board.clone(),
            me: None,
            top: Vec::new(),
            around: Vec::new(),
        };
        match query {
            RankingQuery::Me { member } => answer.me = self.store.rank_of(&board, member).await?,
            RankingQuery::Top { n } => answer.top = self.store.rank_top(&board, *n).await?,
            RankingQuery::Around { member, k } => {
                answer.me = self.store.rank_of(&board, member).await?;
                answer.around = self.store.rank_around(&board, member, *k).await?;
            }
            RankingQuery::TopAndAround { member, n, k } => {
                let TopAndAround { top, around, me } =
                    top_and_around(self.store.as_ref(), &board, member, *n, *k).await?;
                answer.top = top;
                answer.around = around;
                answer.me = me;
            }
        }
        Ok(answer)
    }

    /// The period a query reads when it names none: all time if kept, else the first kept.
    pub fn default_period(&self, ranking: &str) -> Result<Period, RankingError> {
        let settings = self.settings(ranking)?;
        Ok(if settings.periods.contains(&Period::AllTime) {
            Period::AllTime
        } else {
            settings.periods.first().copied().unwrap_or(Period::AllTime)
        })
    }

    /// The board `ranking` keeps for `period` now.
    pub fn board(&self, ranking: &str, period: Period) -> Result<String, RankingError> {
        let settings = self.settings(ranking)?;
        if !settings.periods.contains(&period) {
            return Err(RankingError::PeriodNotKept {
                ranking: ranking.to_string(),
                period: period.name(),
                kept: settings
                    .periods
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(board_name(ranking, &settings, period, self.clock.now_ms()))
    }
}

/// The board of `period` at `now` (ms since the epoch), in the ranking's time zone.
pub fn board_name(ranking: &str, settings: &RankingSettings, period: Period, now: i64) -> String {
    let zone = settings.zone().unwrap_or(chrono_tz::UTC);
    let local = zone
        .timestamp_millis_opt(now)
        .single()
        .unwrap_or_else(|| zone.timestamp_millis_opt(0).unwrap());
    match period {
        Period::Daily => format!("{ranking}:daily:{}", local.format("%Y-%m-%d")),
        Period::Weekly => {
            let week = local.iso_week();
            format!("{ranking}:weekly:{}-W{:02}", week.year(), week.week())
        }
        Period::AllTime => format!("{ranking}:all-time"),
    }
}

/// A search query as the popularity ranking counts it: lower-cased, spaces collapsed.
pub fn query_member(keywords: &str) -> String {
    keywords
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn tokyo() -> RankingSettings {
        RankingSettings {
            periods: Period::ALL.to_vec(),
            time_zone: "Asia/Tokyo".into(),
            max_members: 10,
        }
    }

    /// 2026-12-06T23:59:00+09:00 (a Sunday), in ms.
    const SUNDAY_LATE_TOKYO: i64 = 1_796_569_140_000;

    #[test]
    fn boards_are_named_by_the_period_in_the_rankings_time_zone() {
        let settings = tokyo();
        let at = |ms| Period::ALL.map(|period| board_name("q", &settings, period, ms));
        assert_eq!(
            at(SUNDAY_LATE_TOKYO),
            ["q:daily:2026-12-06", "q:weekly:2026-W49", "q:all-time"]
        );
        // Two minutes later it is Monday in Tokyo (still Sunday in UTC): a new day and week.
        assert_eq!(
            at(SUNDAY_LATE_TOKYO + 120_000),
            ["q:daily:2026-12-07", "q:weekly:2026-W50", "q:all-time"]
        );
        let utc = RankingSettings {
            time_zone: "UTC".into(),
            ..tokyo()
        };
        assert_eq!(
            board_name("q", &utc, Period::Daily, SUNDAY_LATE_TOKYO + 120_000),
            "q:daily:2026-12-06"
        );
    }

    #[test]
    fn queries_are_counted_as_people_type_them_alike() {
        assert_eq!(query_member("  Green   TEA "), "green tea");
        assert_eq!(query_member("緑茶"), "緑茶");
    }

    #[tokio::test]
    async fn an_add_counts_on_every_period_and_a_new_day_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = tsunagi_backends::sqlite::SqliteBackend::open(
            dir.path().join("r.db").to_str().unwrap(),
        )
        .await
        .unwrap();
        let clock = ManualClock::starting_at(SUNDAY_LATE_TOKYO);
        let mut config = Config::default();
        config.rankings.insert("q".into(), tokyo());
        let rankings = Rankings::new(Arc::new(store), Arc::new(clock.clone()), &config);
        for _ in 0..3 {
            rankings.add("q", "green tea", 1).await.unwrap();
        }
        rankings.add("q", "matcha", 5).await.unwrap();
        let top = |period| {
            let rankings = &rankings;
            async move {
                rankings
                    .query("q", period, &RankingQuery::Top { n: 10 })
                    .await
                    .unwrap()
                    .top
                    .into_iter()
                    .map(|s| (s.member, s.score, s.rank))
                    .collect::<Vec<_>>()
            }
        };
        let both = vec![
            ("matcha".to_string(), 5, 1),
            ("green tea".to_string(), 3, 2),
        ];
        assert_eq!(top(Period::Daily).await, both);
        assert_eq!(top(Period::Weekly).await, both);
        // Monday in Tokyo: the day and the week roll over, all time does not.
        clock.advance(std::time::Duration::from_secs(120));
        rankings.add("q", "hojicha", 1).await.unwrap();
        assert_eq!(
            top(Period::Daily).await,
            vec![("hojicha".to_string(), 1, 1)]
        );
        assert_eq!(
            top(Period::Weekly).await,
            vec![("hojicha".to_string(), 1, 1)]
        );
        assert_eq!(top(Period::AllTime).await.len(), 3);
        let me = rankings
            .query(
                "q",
                Period::Daily,
                &RankingQuery::Me {
                    member: "matcha".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(me.me, None, "yesterday's member has no place today");
        assert_eq!(
            rankings.add("nope", "x", 1).await,
            Err(RankingError::Unknown("nope".into()))
        );
    }

    #[tokio::test]
    async fn a_period_the_ranking_does_not_keep_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = tsunagi_backends::sqlite::SqliteBackend::open(
            dir.path().join("r.db").to_str().unwrap(),
        )
        .await
        .unwrap();
        let mut config = Config::default();
        config.rankings.insert(
            "sales".into(),
            RankingSettings {
                periods: vec![Period::AllTime],
                ..tokyo()
            },
        );
        let rankings = Rankings::new(
            Arc::new(store),
            Arc::new(ManualClock::starting_at(0)),
            &config,
        );
        let error = rankings
            .query("sales", Period::Daily, &RankingQuery::Top { n: 1 })
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "ranking 'sales' keeps no daily board (it keeps: all-time)"
        );
    }
}
