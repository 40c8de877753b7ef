//! tsunagi RSS connector: a `poller` component that fetches a feed with a conditional GET and
//! turns its entries into items.
//!
//! - `protocol`: request headers, status classes, redirect targets (pure).
//! - `tsunagi-rss-feed` (a crate of its own, shared with the host's benchmark): RSS / Atom /
//!   JSON Feed → items via feed-rs (pure).
//! - `http`: the GET itself, through `wasi:http/outgoing-handler`.
//!
//! The pure modules are unit-tested on the native target (`cargo test -p tsunagi-plugin-rss`);
//! the component is built for `wasm32-wasip2` by `scripts/build-plugins`.

mod http;
mod protocol;

wit_bindgen::generate!({
    path: "../../wit",
    world: "poller",
    additional_derives: [PartialEq],
});

use exports::tsunagi::connector::poll::{Guest, PollRequest, PollResponse};
use protocol::StatusClass;
use tsunagi::connector::log::{self, Level};
use tsunagi::connector::types::{ConnectorError, ErrorKind, Item};
use tsunagi_rss_feed::FeedItem;

struct RssConnector;

impl Guest for RssConnector {
    fn poll(request: PollRequest) -> Result<PollResponse, ConnectorError> {
        let mut url = protocol::parse_target(&request.target)?;
        let etag = sendable_validator("ETag", request.etag.as_deref());
        let last_modified = sendable_validator("Last-Modified", request.last_modified.as_deref());
        let headers = protocol::request_headers(etag, last_modified);

        for _ in 0..=protocol::MAX_REDIRECTS {
            let response = http::get(&url, &headers)?;
            let status = response.status();
            match protocol::classify(status) {
                StatusClass::NotModified => return Ok(not_modified(request, &response)),
                StatusClass::Success => return fetched(&url, response),
                StatusClass::Redirect => {
                    let next =
                        protocol::redirect_target(&url, response.header("location").as_deref())?;
                    if matches!(status, 301 | 308) {
                        log::log(
                            Level::Warn,
                            &format!(
                                "{url} moved permanently to {next}; consider updating the target"
                            ),
                        );
                    }
                    url = next;
                }
                StatusClass::Failure(kind) => {
                    let retry_after = response.header("retry-after");
                    return Err(protocol::status_error(
                        kind,
                        status,
                        &url,
                        retry_after.as_deref(),
                    ));
                }
            }
        }
        Err(protocol::too_many_redirects(&request.target))
    }
}

/// A stored validator, if it can be sent as a header; a corrupt one is dropped (the poll becomes
/// unconditional) rather than failing every poll of the target from now on.
fn sendable_validator<'a>(name: &str, value: Option<&'a str>) -> Option<&'a str> {
    let value = value?;
    if protocol::is_valid_header_value(value) {
        Some(value)
    } else {
        log::log(
            Level::Warn,
            &format!(
                "stored {name} {value:?} is not a valid header value; polling unconditionally"
            ),
        );
        None
    }
}

/// 304: keep the request's validators unless the response brings new ones. No body is read.
fn not_modified(request: PollRequest, response: &http::Response) -> PollResponse {
    PollResponse {
        not_modified: true,
        items: Vec::new(),
        etag: response.header("etag").or(request.etag),
        last_modified: response.header("last-modified").or(request.last_modified),
        cursor: None,
        refresh_after_seconds: None,
    }
}

/// 2xx: read and parse the body; the validators are the response's own.
fn fetched(url: &url::Url, response: http::Response) -> Result<PollResponse, ConnectorError> {
    let etag = response.header("etag");
    let last_modified = response.header("last-modified");
    let body = response.into_body()?;
    let parsed =
        tsunagi_rss_feed::parse(&body, url.as_str()).map_err(|message| ConnectorError {
            kind: ErrorKind::BadResponse,
            message,
        })?;
    Ok(PollResponse {
        not_modified: false,
        items: parsed.items.into_iter().map(wit_item).collect(),
        etag,
        last_modified,
        cursor: None,
        refresh_after_seconds: parsed.refresh_after_seconds,
    })
}

fn wit_item(item: FeedItem) -> Item {
    Item {
        id: item.id,
        title: item.title,
        link: item.link,
        published: item.published,
        updated: item.updated,
        authors: item.authors,
        summary: item.summary,
        content: item.content,
        categories: item.categories,
    }
}

export!(RssConnector);
