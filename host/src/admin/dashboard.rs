//! The web dashboard, served by the host itself: one page and its script and styles, embedded
//! in the binary (no build step, nothing fetched from elsewhere). The page reads `/status`
//! every second and `/v1/dlq` every few seconds, and acts through the same `/v1/...` endpoints
//! the CLI uses (reload, rollback, resume, queue pause and resume, dead letters retry and
//! drop), with the admin token the operator types in (kept in the tab's session storage).
//!
//! The assets hold no data, so they need no token; they are sent with a content security
//! policy that allows only this origin's script and styles and no framing (no clickjacking),
//! and the page builds every cell as text, never as markup, since what it shows (errors,
//! targets) comes from upstreams.

use super::SharedState;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLES: &str = include_str!("dashboard/style.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

pub(super) fn routes() -> axum::Router<SharedState> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route(
            "/dashboard",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLES) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
