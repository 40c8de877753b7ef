//! The dead-letter endpoints of the admin API (in the `actions` router, behind the bearer
//! token: the entries name targets and errors), what the dashboard and `tsunagi dlq` use on a
//! running host:
//!
//! - `GET /v1/dlq?connector=…&sink=…&queue=…&limit=…`: the entries with their attempt
//!   history (targets first), at most `limit` (default [`DEFAULT_LIMIT`], at most
//!   [`MAX_LIMIT`]) of each kind, and how many of each kind were listed.
//! - `POST /v1/dlq/retry` and `POST /v1/dlq/drop` with `{"entries": ["target:12", …]}` or
//!   `{"all": true, "connector"?: …, "sink"?: …, "queue"?: …}`: 200 `{"done": n, "missing":
//!   [names not in the dead-letter state]}`; a malformed name is 400 and nothing is done.

use super::jobs::{error, read_body};
use super::{SharedState, starting};
use crate::deadletters::{Action, DeadLetterError, Entry, Filter};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;

/// Entries listed per kind unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 1000;
/// The most entries of each kind one answer lists.
pub const MAX_LIMIT: u32 = 10_000;
/// The largest action body read: room for [`MAX_LIMIT`] names and more.
const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    connector: Option<String>,
    sink: Option<String>,
    queue: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(shared): State<SharedState>,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let filter = Filter {
        connector: query.connector,
        sink: query.sink,
        queue: query.queue,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    match control.dead_letters(&filter, limit).await {
        Ok(listing) => Json(listing).into_response(),
        Err(failure) => failed(failure),
    }
}

/// An action's body: the entries by name, or all that the filter selects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    entries: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    connector: Option<String>,
    #[serde(default)]
    sink: Option<String>,
    #[serde(default)]
    queue: Option<String>,
}

pub(super) async fn retry(State(shared): State<SharedState>, body: Body) -> Response {
    act(shared, Action::Retry, body).await
}

pub(super) async fn drop(State(shared): State<SharedState>, body: Body) -> Response {
    act(shared, Action::Drop, body).await
}

async fn act(shared: SharedState, action: Action, body: Body) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let bytes = match read_body(
        body,
        MAX_BODY_BYTES,
        &format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(too_large) => return too_large,
    };
    let request: ActionBody = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(reason) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"entries\": [...]}} or {{\"all\": true}}: {reason}"),
            );
        }
    };
    let entries = match (request.all, request.entries.is_empty()) {
        (true, true) => None,
        (false, false) => match request
            .entries
            .iter()
            .map(|name| Entry::parse(name))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(entries) => Some(entries),
            Err(reason) => return error(StatusCode::BAD_REQUEST, reason.to_string()),
        },
        (true, false) => {
            return error(
                StatusCode::BAD_REQUEST,
                "name entries or ask for all, not both",
            );
        }
        (false, true) => {
            return error(
                StatusCode::BAD_REQUEST,
                "name the entries, or ask for \"all\": true",
            );
        }
    };
    let filter = Filter {
        connector: request.connector,
        sink: request.sink,
        queue: request.queue,
    };
    match control.act_on_dead(action, entries, &filter).await {
        Ok(acted) => Json(acted).into_response(),
        Err(failure) => failed(failure),
    }
}

fn failed(failure: DeadLetterError) -> Response {
    let status = match &failure {
        DeadLetterError::NotAnEntry(_) => StatusCode::BAD_REQUEST,
        DeadLetterError::NoRedisQueue(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeadLetterError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(
        status,
        crate::redact::text(&failure.to_string()).into_owned(),
    )
}
