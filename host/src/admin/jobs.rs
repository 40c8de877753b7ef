//! The job endpoints of the admin API (all in the `actions` router, behind the bearer token):
//!
//! - `POST /v1/queues/{queue}/jobs` with `{"kind": …, "payload": <any JSON>, "target"?: …,
//!   "idempotency_key"?: …}`: 202 `{"id": …, "queue": …}` for a new job, 200 `{"id": …,
//!   "queue": …, "repeat": true}` when the idempotency key was seen before (nothing stored). The body is read under
//!   [`MAX_BODY_BYTES`] before parsing; bad JSON, a missing, unknown or wrong-typed field (named),
//!   an unknown queue, a payload over the store's cap or a too-long key or target answer 4xx
//!   with `{"error": …}` and nothing is enqueued.
//! - `POST /v1/queues/{queue}/pause` and `/resume`: 200 `{"queue": …, "paused": …}`.
//! - `GET /v1/queues`: every served queue with its connector, counts and paused state.

use super::{SharedState, starting};
use crate::topology::{InboundJob, JobsError};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tsunagi_backends::{Enqueued, MAX_JOB_PAYLOAD_BYTES};

/// The largest request body read: the payload's cap plus room for the other fields and JSON
/// escaping of a payload at the cap.
pub const MAX_BODY_BYTES: usize = MAX_JOB_PAYLOAD_BYTES + 64 * 1024;

/// The fields a job body may have.
const FIELDS: [&str; 4] = ["kind", "payload", "target", "idempotency_key"];

pub(super) fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

pub(super) async fn enqueue(
    State(shared): State<SharedState>,
    Path(queue): Path<String>,
    body: Body,
) -> Response {
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
    let job = match parse_job(&bytes) {
        Ok(job) => job,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    match control.enqueue(&queue, job).await {
        // The queue with the id: ids are per store, and the queue says which (`tsunagi dlq`).
        Ok(Enqueued::New(id)) => (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "queue": queue })),
        )
            .into_response(),
        Ok(Enqueued::Repeat(id)) => (
            StatusCode::OK,
            Json(json!({ "id": id, "queue": queue, "repeat": true })),
        )
            .into_response(),
        Err(failure) => jobs_error(failure),
    }
}

/// A request body of at most `max` bytes, or the 413 saying `too_large`.
pub(super) async fn read_body(
    body: Body,
    max: usize,
    too_large: &str,
) -> Result<bytes::Bytes, Response> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, too_large)),
    }
}

pub(super) fn jobs_error(failure: JobsError) -> Response {
    match failure {
        JobsError::UnknownQueue(_) | JobsError::NoSubscriber(_) => {
            error(StatusCode::NOT_FOUND, failure.to_string())
        }
        JobsError::Refused(reason) if reason.starts_with("payload") => {
            error(StatusCode::PAYLOAD_TOO_LARGE, reason)
        }
        JobsError::Refused(reason) => error(StatusCode::BAD_REQUEST, reason),
        JobsError::Backend(cause) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store did not take the job: {cause}"),
        ),
    }
}

/// The job in a body, or why not, naming the field.
fn parse_job(bytes: &[u8]) -> Result<InboundJob, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err("the body must be a JSON object".to_string());
    };
    if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(format!(
            "unknown field {unknown:?} (a job has {})",
            FIELDS.join(", ")
        ));
    }
    let text =
        |fields: &mut serde_json::Map<String, Value>, name: &str, required: bool| match fields
            .remove(name)
        {
            Some(Value::String(text)) => Ok(Some(text)),
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(format!("missing field \"{name}\"")),
            Some(other) => Err(format!(
                "field \"{name}\" must be a string, not {}",
                json_type(&other)
            )),
        };
    let kind = text(&mut fields, "kind", true)?.unwrap_or_default();
    let target = text(&mut fields, "target", false)?;
    let idempotency_key = text(&mut fields, "idempotency_key", false)?;
    let payload = fields
        .remove("payload")
        .ok_or_else(|| "missing field \"payload\"".to_string())?;
    Ok(InboundJob {
        kind,
        payload: payload.to_string(),
        target,
        idempotency_key,
    })
}

pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) async fn pause(state: State<SharedState>, queue: Path<String>) -> Response {
    set_paused(state, queue, true).await
}

pub(super) async fn resume(state: State<SharedState>, queue: Path<String>) -> Response {
    set_paused(state, queue, false).await
}

async fn set_paused(
    State(shared): State<SharedState>,
    Path(queue): Path<String>,
    paused: bool,
) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    match control.set_queue_paused(&queue, paused).await {
        Ok(()) => Json(json!({ "queue": queue, "paused": paused })).into_response(),
        Err(failure) => jobs_error(failure),
    }
}

pub(super) async fn list(State(shared): State<SharedState>) -> Response {
    let Some(control) = shared.control.get() else {
        return starting();
    };
    match control.queues().await {
        Ok(queues) => Json(json!({ "queues": queues })).into_response(),
        Err(cause) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("queues unavailable: {cause}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_body_names_what_is_wrong() {
        let cases = [
            (&b"{"[..], "the body is not JSON"),
            (b"[1]", "the body must be a JSON object"),
            (br#"{"payload": {}}"#, "missing field \"kind\""),
            (br#"{"kind": "post"}"#, "missing field \"payload\""),
            (
                br#"{"kind": 3, "payload": {}}"#,
                "field \"kind\" must be a string, not a number",
            ),
            (
                br#"{"kind": "post", "payload": 1, "target": []}"#,
                "field \"target\" must be a string, not an array",
            ),
            (
                br#"{"kind": "post", "payload": 1, "extra": 1}"#,
                "unknown field \"extra\"",
            ),
        ];
        for (body, expected) in cases {
            let reason = parse_job(body).unwrap_err();
            assert!(reason.starts_with(expected), "{reason}");
        }
    }

    #[test]
    fn a_payload_is_stored_as_its_json_text() {
        let job = parse_job(
            br#"{"kind": "post", "payload": {"text": "hi", "n": [1, 2]}, "idempotency_key": "k"}"#,
        )
        .unwrap();
        assert_eq!(job.kind, "post");
        assert_eq!(job.payload, r#"{"n":[1,2],"text":"hi"}"#);
        assert_eq!(job.idempotency_key.as_deref(), Some("k"));
        assert_eq!(job.target, None);
        let scalar = parse_job(br#"{"kind": "k", "payload": "just text"}"#).unwrap();
        assert_eq!(scalar.payload, r#""just text""#);
    }
}
