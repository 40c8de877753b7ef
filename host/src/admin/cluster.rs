//! The cluster's push endpoints of the admin API (in the `actions` router, behind the bearer
//! token), what `tsunagi push` and `tsunagi push-config` call on any host of the cluster:
//!
//! - `PUT /v1/cluster/plugins/{connector}` with the plugin's bytes (at most the engine's plugin
//!   cap);
//! - `PUT /v1/cluster/config` with the config's TOML text (at most
//!   [`crate::cluster::MAX_CONFIG_BYTES`]).
//!
//! 200 with the push report when every live host applied it; 422 with the report when a host
//! refused it or did not report in time (each host's outcome is in it), or with this host's
//! check when it was refused before anything was stored; 404 for an unknown connector; 409 on a
//! host that is not in a cluster; 413 over the cap; 503 when the cluster's store does not answer.

use super::jobs::{error, read_body};
use super::{SharedState, starting};
use crate::cluster::{Change, MAX_CONFIG_BYTES, PushError};
use crate::runtime::MAX_PLUGIN_BYTES;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

pub(super) async fn push_plugin(
    State(shared): State<SharedState>,
    Path(connector): Path<String>,
    body: Body,
) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let limit = usize::try_from(MAX_PLUGIN_BYTES).unwrap_or(usize::MAX);
    let too_large = format!("the plugin is larger than {MAX_PLUGIN_BYTES} bytes");
    let bytes = match read_body(body, limit, &too_large).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let change = Change::Plugin {
        connector,
        bytes: bytes.to_vec(),
    };
    answer(control.push(change).await)
}

pub(super) async fn push_config(State(shared): State<SharedState>, body: Body) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let too_large = format!("the config is larger than {MAX_CONFIG_BYTES} bytes");
    let bytes = match read_body(body, MAX_CONFIG_BYTES, &too_large).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the config is not UTF-8 text");
    };
    answer(control.push(Change::Config(text)).await)
}

fn answer(pushed: Result<crate::cluster::PushReport, PushError>) -> Response {
    match pushed {
        Ok(report) => {
            let status = if report.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, Json(report)).into_response()
        }
        Err(PushError::Refused { summary, applied }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "ok": false,
                "error": format!("{summary}; nothing was stored or announced"),
                "checked_here": applied,
            })),
        )
            .into_response(),
        Err(failure @ PushError::UnknownConnector(_)) => {
            error(StatusCode::NOT_FOUND, failure.to_string())
        }
        Err(failure @ PushError::NotInCluster) => error(StatusCode::CONFLICT, failure.to_string()),
        Err(failure @ PushError::TooLarge(_)) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, failure.to_string())
        }
        Err(failure @ (PushError::Sync(_) | PushError::Contended)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string())
        }
    }
}
