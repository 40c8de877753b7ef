//! The rankings endpoint of the admin API (in the `actions` router, behind the bearer token):
//!
//! - `GET /v1/rankings/{name}?type=&member=&limit=&k=&period=`: `type` is `top` (default; the
//!   first `limit`, 1–1000, default 10), `me` (`member`'s place), `around` (`k` members either
//!   side of `member`, 0–499, default 5) or `top-and-around` (both, the members already in the
//!   top left out of `around`); `period` is `daily`, `weekly` or `all-time` (default: the
//!   longest the ranking keeps). 200 with `{ranking, period, board, me?, top?, around?}`; a bad
//!   parameter 400 naming it; no such ranking 404.

use super::{SharedState, starting};
use crate::config::Period;
use crate::pipeline::search::{BadQuery, known_once};
use crate::rankings::{RankingError, RankingQuery};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

const PARAMETERS: [&str; 5] = ["type", "member", "limit", "k", "period"];

fn bad(parameter: &str, reason: impl std::fmt::Display) -> BadQuery {
    BadQuery {
        parameter: parameter.to_string(),
        reason: reason.to_string(),
    }
}

fn bad_request(bad: &BadQuery) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": bad.to_string(), "parameter": bad.parameter})),
    )
        .into_response()
}

/// The query as asked, or the parameter that is wrong.
fn read_query(pairs: &[(String, String)]) -> Result<(Option<Period>, RankingQuery), BadQuery> {
    let seen = known_once(pairs, &PARAMETERS)?;
    let number = |name: &str, default: u32, max: u32| -> Result<u32, BadQuery> {
        match seen.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (if name == "k" { 0 } else { 1 }..=max).contains(n))
                .ok_or_else(|| {
                    bad(
                        name,
                        format!(
                            "{:?} is not a whole number from {} to {max}",
                            text.chars().take(32).collect::<String>(),
                            if name == "k" { 0 } else { 1 }
                        ),
                    )
                }),
        }
    };
    let n = number("limit", 10, tsunagi_backends::MAX_RANKING_LIST)?;
    let k = number("k", 5, (tsunagi_backends::MAX_RANKING_LIST - 1) / 2)?;
    let period = match seen.get("period") {
        None => None,
        Some(name) => Some(
            Period::parse(name)
                .ok_or_else(|| bad("period", "not one of daily, weekly, all-time"))?,
        ),
    };
    let member = || -> Result<String, BadQuery> {
        seen.get("member")
            .filter(|member| !member.is_empty())
            .map(|member| (*member).to_string())
            .ok_or_else(|| bad("member", "missing: whose place?"))
    };
    let query = match seen.get("type").copied().unwrap_or("top") {
        "top" => RankingQuery::Top { n },
        "me" => RankingQuery::Me { member: member()? },
        "around" => RankingQuery::Around {
            member: member()?,
            k,
        },
        "top-and-around" => RankingQuery::TopAndAround {
            member: member()?,
            n,
            k,
        },
        _ => return Err(bad("type", "not one of top, me, around, top-and-around")),
    };
    Ok((period, query))
}

pub(super) async fn ranking(
    State(shared): State<SharedState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let pairs = match super::search::query_pairs(query.as_deref()) {
        Ok(pairs) => pairs,
        Err(reason) => return super::search::too_many_pairs(reason),
    };
    let (period, query) = match read_query(&pairs) {
        Ok(asked) => asked,
        Err(bad) => return bad_request(&bad),
    };
    match control.ranking(&name, period, query).await {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(error @ RankingError::Unknown(_)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
        Err(error @ RankingError::PeriodNotKept { .. }) => bad_request(&bad("period", error)),
        Err(RankingError::Refused(reason)) => bad_request(&bad("member", reason)),
        Err(RankingError::Store(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": reason})),
        )
            .into_response(),
    }
}
