//! The search endpoint of the admin API (in the `actions` router, behind the bearer token):
//!
//! - `GET /v1/search?q=&shops=&limit=&sort=&min_price=&max_price=&page=`: 200 with the merged
//!   products and each shop's status (`ok`, `breaker-open`, `rate-limited`, `timeout`, `error`
//!   with a reason) — a failed shop never fails the search — and `cached` when the answer was
//!   shared with an identical search. A bad parameter answers 400 naming it; no searcher
//!   running, 404; too many different searches at once, 503 with `Retry-After`.

use super::{SharedState, starting};
use crate::pipeline::SearchError;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

/// The most `name=value` pairs a query string may carry (the known parameters, with room for a
/// repeated one to be named as such).
const MAX_PAIRS: usize = 32;

/// A query string's `name=value` pairs, at most [`MAX_PAIRS`].
pub(super) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .take(MAX_PAIRS + 1)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    if pairs.len() > MAX_PAIRS {
        return Err(format!("more than {MAX_PAIRS} query parameters"));
    }
    Ok(pairs)
}

/// The 400 for a query string past [`MAX_PAIRS`].
pub(super) fn too_many_pairs(reason: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": reason }))).into_response()
}

pub(super) async fn search(
    State(shared): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let pairs = match query_pairs(query.as_deref()) {
        Ok(pairs) => pairs,
        Err(reason) => return too_many_pairs(reason),
    };
    match control.search(pairs).await {
        Ok(answered) => {
            let mut body = serde_json::to_value(&*answered.answer).unwrap_or_default();
            body["cached"] = json!(answered.cached);
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(SearchError::BadQuery(bad)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": bad.to_string(), "parameter": bad.parameter})),
        )
            .into_response(),
        Err(error @ SearchError::NoShops) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
        Err(error @ SearchError::Busy) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}
