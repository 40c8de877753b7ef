//! The inbound event endpoint of the admin API (in the `actions` router, behind the bearer
//! token):
//!
//! - `POST /v1/events/{topic}` with a thin event — a JSON object of ids (`{"id": "o-1",
//!   "order": "o-1"}`), at most [`MAX_EVENT_BYTES`]: one job per handler subscribed to the
//!   topic (`[connectors.NAME.jobs] events`), of kind = the topic, payload = the event; the
//!   connector fetches what it needs itself. The event's `id` (string or number) makes a resent
//!   event a repeat (nothing enqueued); a string `target` names the linked target the jobs act
//!   for. 202 `{"topic", "jobs": [{"connector", "queue", "id", "repeat"}]}`; bad JSON 400, over
//!   the cap 413, nobody subscribed 404, nothing enqueued.

use super::jobs::{error, jobs_error, json_type, read_body};
use super::{SharedState, starting};
use crate::topology::InboundEvent;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};

/// The largest event: ids, not documents.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;
/// The longest event id.
const MAX_EVENT_ID: usize = 200;

pub(super) async fn publish(
    State(shared): State<SharedState>,
    Path(topic): Path<String>,
    body: Body,
) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    let too_large = format!(
        "the event is larger than {MAX_EVENT_BYTES} bytes; send ids, and let the connector \
         fetch the rest"
    );
    let bytes = match read_body(body, MAX_EVENT_BYTES, &too_large).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let event = match read_event(&bytes) {
        Ok(event) => event,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    match control.publish(&topic, event).await {
        Ok(jobs) => (
            StatusCode::ACCEPTED,
            Json(json!({"topic": topic, "jobs": jobs})),
        )
            .into_response(),
        Err(failure) => jobs_error(failure),
    }
}

/// The event in a body, or why not, naming the field.
fn read_event(bytes: &[u8]) -> Result<InboundEvent, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the event is not JSON: {e}"))?;
    let Value::Object(fields) = &value else {
        return Err(format!(
            "the event must be a JSON object, not {}",
            json_type(&value)
        ));
    };
    let id = match fields.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(id)) => Some(id.to_string()),
        Some(other) => {
            return Err(format!(
                "field \"id\" must be a string or a number, not {}",
                json_type(other)
            ));
        }
    };
    if id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > MAX_EVENT_ID)
    {
        return Err(format!("field \"id\" must be 1 to {MAX_EVENT_ID} bytes"));
    }
    let target = match fields.get("target") {
        None | Some(Value::Null) => None,
        Some(Value::String(target)) => Some(target.clone()),
        Some(other) => {
            return Err(format!(
                "field \"target\" must be a string, not {}",
                json_type(other)
            ));
        }
    };
    Ok(InboundEvent {
        payload: value.to_string(),
        id,
        target,
    })
}
