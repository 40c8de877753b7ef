//! The WebSub callback endpoints: `GET /websub/{id}` (verification of intent) and
//! `POST /websub/{id}` (content distribution), over [`crate::websub::callback`]. A delivery's
//! body is read only after its id named a subscription, and only up to that connector's cap.

use super::Shared;
use crate::websub::callback::Answer;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;

fn respond(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        answer.body,
    )
        .into_response();
    if let Some(seconds) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

fn busy() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "too many calls at once\n").into_response()
}

pub(super) async fn verify(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(_slot) = shared.slots.try_acquire() else {
        return busy();
    };
    let query: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    respond(shared.websub.verify(&id, &query).await)
}

pub(super) async fn deliver(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(_slot) = shared.slots.try_acquire() else {
        return busy();
    };
    let subscription = match shared.websub.callback_subscription(&id).await {
        Ok(Some(subscription)) => subscription,
        Ok(None) => return respond(Answer::gone()),
        Err(answer) => return respond(answer),
    };
    let cap = shared.websub.max_body(&subscription.connector);
    let Some(read) = read_capped(body, &headers, cap).await else {
        return (StatusCode::BAD_REQUEST, "the body could not be read\n").into_response();
    };
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let answer = shared
        .websub
        .deliver(
            &subscription,
            text(header::CONTENT_TYPE),
            headers.get("x-hub-signature").and_then(|v| v.to_str().ok()),
            read,
        )
        .await;
    respond(answer)
}

/// The body, or `Err(())` once it is past `cap` (a declared length past it is not read at
/// all); `None` when the connection broke.
async fn read_capped(body: Body, headers: &HeaderMap, cap: usize) -> Option<Result<Vec<u8>, ()>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok());
    if declared.is_some_and(|length| length > cap) {
        return Some(Err(()));
    }
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Some(Ok(collected.to_bytes().to_vec())),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Some(Err(())),
        Err(_) => None,
    }
}
