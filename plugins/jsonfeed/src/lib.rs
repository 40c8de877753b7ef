//! tsunagi JSON Feed connector: a `poller` component that fetches a JSON Feed
//! (<https://jsonfeed.org>, 1.0 and 1.1) with a conditional GET and turns its items into tsunagi
//! items. Built on `tsunagi-sdk`.
//!
//! This is the Rust twin of `plugins/jsonfeed-js`: both answer every poll alike (items, errors
//! and their messages), and one cassette checks both.
//!
//! - `feed`: JSON Feed → items (pure, unit-tested natively).
//! - this module: the request, redirects and status handling around it.

pub mod feed;

use tsunagi_sdk::http::{self, Response};
use tsunagi_sdk::prelude::*;

/// JSON Feed first, any JSON next, anything else last: some servers only send the feed when
/// asked for one.
pub const ACCEPT: &str = "application/feed+json, application/json;q=0.9, */*;q=0.5";

/// Identifies the connector to upstreams.
pub const USER_AGENT: &str = "tsunagi-jsonfeed/0.1";

/// Redirects followed before a poll gives up.
pub const MAX_REDIRECTS: usize = 5;

struct JsonFeedConnector;

impl Poller for JsonFeedConnector {
    fn poll(request: PollRequest) -> Result<PollResponse> {
        let response = http::Request::get(&request.target)
            .header("accept", ACCEPT)
            .header("user-agent", USER_AGENT)
            .header_opt("if-none-match", request.etag.as_deref())
            .header_opt("if-modified-since", request.last_modified.as_deref())
            .follow_redirects(MAX_REDIRECTS)
            .send()?;
        let (polled, skipped) = outcome(request, response)?;
        for _ in 0..skipped {
            tsunagi_sdk::log::warn("skipped an item without id");
        }
        Ok(polled)
    }
}

tsunagi_sdk::export_poller!(JsonFeedConnector);

/// What the final response (redirects already followed) means for the poll, and how many
/// elements of `items` were skipped.
fn outcome(request: PollRequest, response: Response) -> Result<(PollResponse, usize)> {
    if response.status() == 304 {
        // Nothing changed: keep the request's validators unless the response brings new ones.
        let polled = PollResponse::not_modified(
            response.header("etag").or(request.etag),
            response.header("last-modified").or(request.last_modified),
        );
        return Ok((polled, 0));
    }
    let response = response.error_for_status()?;
    let etag = response.header("etag");
    let last_modified = response.header("last-modified");
    let url = response.display_url().to_owned();
    let parsed = feed::parse(&url, &response.bytes()?)?;
    let polled = PollResponse::items(parsed.items)
        .etag(etag)
        .last_modified(last_modified);
    Ok((polled, parsed.skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "https://notes.example.org/feed.json";

    fn request(etag: Option<&str>, last_modified: Option<&str>) -> PollRequest {
        PollRequest {
            target: TARGET.to_owned(),
            etag: etag.map(str::to_owned),
            last_modified: last_modified.map(str::to_owned),
            cursor: Some("ignored".to_owned()),
        }
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response::from_text(status, TARGET, headers, body)
    }

    #[test]
    fn not_modified_keeps_or_replaces_validators() {
        let (polled, skipped) = outcome(
            request(Some("\"v1\""), Some("Wed, 01 May 2024 12:00:00 GMT")),
            response(304, &[("etag", "\"v2\"")], ""),
        )
        .unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(
            polled,
            PollResponse {
                not_modified: true,
                items: vec![],
                etag: Some("\"v2\"".into()),
                last_modified: Some("Wed, 01 May 2024 12:00:00 GMT".into()),
                cursor: None,
                refresh_after_seconds: None,
            }
        );
    }

    #[test]
    fn a_feed_yields_items_and_only_the_response_validators() {
        let body = r#"{"items": [{"id": 1, "title": "One"}, {"no": "id"}]}"#;
        let (polled, skipped) = outcome(
            request(Some("\"v1\""), Some("Wed, 01 May 2024 12:00:00 GMT")),
            response(200, &[("ETag", "\"v2\"")], body),
        )
        .unwrap();
        assert_eq!(skipped, 1);
        assert!(!polled.not_modified);
        assert_eq!(polled.items, vec![Item::new("1").title("One")]);
        assert_eq!(polled.etag.as_deref(), Some("\"v2\""));
        assert_eq!(polled.last_modified, None);
        assert_eq!(polled.cursor, None);
        assert_eq!(polled.refresh_after_seconds, None);
    }

    #[test]
    fn failure_statuses_name_status_and_url() {
        for (status, kind) in [
            (429, ErrorKind::RateLimited),
            (410, ErrorKind::Permanent),
            (404, ErrorKind::Transient),
            (408, ErrorKind::Transient),
            (403, ErrorKind::Permanent),
            (500, ErrorKind::Transient),
            (302, ErrorKind::Transient),
            (101, ErrorKind::Transient),
        ] {
            let err = outcome(
                request(None, None),
                response(status, &[("retry-after", "60")], ""),
            )
            .unwrap_err();
            assert_eq!(err.kind(), kind, "{status}");
            assert_eq!(err.message(), format!("HTTP {status} from {TARGET}"));
        }
    }

    #[test]
    fn a_body_that_is_no_feed_is_a_bad_response() {
        let err = outcome(request(None, None), response(200, &[], "<html></html>")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert_eq!(
            err.message(),
            format!("{TARGET}: not a JSON Feed: expected value at line 1 column 1")
        );
    }
}
