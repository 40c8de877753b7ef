//! tsunagi RSS connector: a `poller` component that fetches a feed with a conditional GET and
//! turns its entries into items.
//!
//! - `tsunagi-sdk`: bindings, the HTTP client over `wasi:http` (redirects, status classes),
//!   logging.
//! - `protocol`: the headers this connector sends and its redirect budget (pure).
//! - `tsunagi-rss-feed` (a crate of its own, shared with the host's benchmark): RSS / Atom /
//!   JSON Feed → items, with the encoding from the response's `Content-Type` (pure).
//!
//! The pure parts are unit-tested on the native target (`cargo test -p tsunagi-plugin-rss`);
//! the component is built for `wasm32-wasip2` by `scripts/build-plugins`.

mod protocol;

use tsunagi_rss_feed::FeedItem;
use tsunagi_sdk::http::{self, Response};
use tsunagi_sdk::prelude::*;

struct RssConnector;

impl Poller for RssConnector {
    fn poll(request: PollRequest) -> Result<PollResponse> {
        let etag = sendable_validator("ETag", request.etag.as_deref());
        let last_modified = sendable_validator("Last-Modified", request.last_modified.as_deref());
        let mut get = http::Request::get(&request.target).follow_redirects(protocol::MAX_REDIRECTS);
        for (name, value) in protocol::request_headers(etag, last_modified) {
            get = get.header(name, value);
        }
        let response = get.send()?;
        let (polled, push) = outcome(request, response)?;
        if let Some(topic) = &push.topic {
            for hub in &push.hubs {
                websub::discovered(hub, topic);
            }
        }
        Ok(polled)
    }
}

tsunagi_sdk::export_poller!(RssConnector);

/// A stored validator, if it can be sent as a header; a corrupt (or empty) one is dropped (the
/// poll becomes unconditional) rather than failing every poll of the target from now on.
fn sendable_validator<'a>(name: &str, value: Option<&'a str>) -> Option<&'a str> {
    let value = value?;
    if !value.is_empty() && http::is_valid_header_value(value) {
        Some(value)
    } else {
        tsunagi_sdk::warn!(
            "stored {name} {value:?} is not a valid header value; polling unconditionally"
        );
        None
    }
}

/// What the final response (redirects already followed) means for the poll, and the WebSub
/// links it names.
fn outcome(request: PollRequest, response: Response) -> Result<(PollResponse, websub::Links)> {
    match response.status() {
        304 => Ok((not_modified(request, &response), websub::Links::default())),
        200..=299 => fetched(response),
        status => Err(protocol::status_error(
            status,
            response.url(),
            response.header("location").as_deref(),
            response.header("retry-after").as_deref(),
        )),
    }
}

/// 304: keep the request's validators unless the response brings new ones. No body is read.
fn not_modified(request: PollRequest, response: &Response) -> PollResponse {
    PollResponse::not_modified(
        response.header("etag").or(request.etag),
        response.header("last-modified").or(request.last_modified),
    )
}

/// 2xx: read and parse the body; the validators are the response's own. WebSub links come from
/// the `Link` header first, then the feed (as the recommendation orders them); the topic is the
/// feed's `rel="self"`, else the URL it came from.
fn fetched(response: Response) -> Result<(PollResponse, websub::Links)> {
    let etag = response.header("etag");
    let last_modified = response.header("last-modified");
    // The final URL, normalised: relative links resolve against it and id-less entries are
    // scoped by it, so it must not change with how the target was spelled.
    let url = response.url().to_owned();
    let content_type = response.header("content-type");
    let mut push = websub::links_from_header(&response.header("link").unwrap_or_default());
    let body = response.bytes()?;
    let parsed = tsunagi_rss_feed::parse_response(&body, &url, content_type.as_deref())
        .map_err(Error::bad_response)?;
    // What the reader repaired (an unescaped `&`, a cut-off document): the items are kept, the
    // operator told. The host caps log lines per call.
    for warning in &parsed.warnings {
        tsunagi_sdk::warn!("{url}: {warning}");
    }
    for hub in parsed.hubs {
        if push.hubs.len() < websub::MAX_HUBS && !push.hubs.contains(&hub) {
            push.hubs.push(hub);
        }
    }
    push.topic = push
        .topic
        .or(parsed.self_link)
        .or_else(|| (!push.hubs.is_empty()).then(|| url.clone()));
    let polled = PollResponse::items(parsed.items.into_iter().map(wit_item).collect())
        .etag(etag)
        .last_modified(last_modified)
        .refresh_after(parsed.refresh_after_seconds);
    Ok((polled, push))
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

#[cfg(test)]
mod tests {
    use super::*;

    const FEED_URL: &str = "https://example.com/feed.xml";

    const RSS: &str = r#"<?xml version="1.0"?>
<rss version="2.0"><channel><title>News</title><link>https://example.com/</link><ttl>30</ttl>
<item><title>First</title><link>https://example.com/1</link><guid>post-1</guid></item>
<item><title>Second</title><link>/2</link><guid>https://example.com/2</guid></item>
</channel></rss>"#;

    fn request(etag: Option<&str>, last_modified: Option<&str>) -> PollRequest {
        PollRequest {
            target: FEED_URL.to_owned(),
            etag: etag.map(str::to_owned),
            last_modified: last_modified.map(str::to_owned),
            cursor: None,
        }
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response::from_text(status, FEED_URL, headers, body)
    }

    #[test]
    fn not_modified_keeps_the_request_validators() {
        let request = request(Some("\"v1\""), Some("Wed, 01 May 2024 12:00:00 GMT"));
        let (polled, _) = outcome(request, response(304, &[], "")).unwrap();
        assert_eq!(
            polled,
            PollResponse {
                not_modified: true,
                etag: Some("\"v1\"".into()),
                last_modified: Some("Wed, 01 May 2024 12:00:00 GMT".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn not_modified_takes_new_validators_from_the_response() {
        let request = request(Some("\"v1\""), Some("Wed, 01 May 2024 12:00:00 GMT"));
        let (polled, _) = outcome(request, response(304, &[("etag", "\"v2\"")], "")).unwrap();
        assert_eq!(polled.etag.as_deref(), Some("\"v2\""));
        assert_eq!(
            polled.last_modified.as_deref(),
            Some("Wed, 01 May 2024 12:00:00 GMT")
        );
        assert!(polled.items.is_empty());
    }

    #[test]
    fn a_feed_becomes_items_with_the_response_validators() {
        let (polled, push) = outcome(
            request(Some("\"old\""), None),
            response(200, &[("ETag", "\"v3\"")], RSS),
        )
        .unwrap();
        assert_eq!(push, websub::Links::default(), "no hub, no topic");
        assert!(!polled.not_modified);
        assert_eq!(polled.etag.as_deref(), Some("\"v3\""));
        // The response had no Last-Modified: none, even though it is a fresh answer.
        assert_eq!(polled.last_modified, None);
        assert_eq!(polled.refresh_after_seconds, Some(1800));
        let ids: Vec<&str> = polled.items.iter().map(|item| item.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "https://example.com/feed.xml#post-1",
                "https://example.com/2"
            ]
        );
        assert_eq!(
            polled.items[1].link.as_deref(),
            Some("https://example.com/2")
        );
    }

    #[test]
    fn websub_links_come_from_the_link_header_then_the_feed() {
        let atom = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
<link rel="hub" href="https://hub.example/"/><link rel="self" href="https://example.com/atom"/>
<entry><id>urn:1</id><title>one</title></entry></feed>"#;
        let (_, push) = outcome(request(None, None), response(200, &[], atom)).unwrap();
        assert_eq!(push.hubs, ["https://hub.example/"]);
        assert_eq!(push.topic.as_deref(), Some("https://example.com/atom"));
        let header = [("link", "<https://first.example/hub>; rel=\"hub\"")];
        let (_, push) = outcome(request(None, None), response(200, &header, RSS)).unwrap();
        assert_eq!(push.hubs, ["https://first.example/hub"]);
        assert_eq!(
            push.topic.as_deref(),
            Some(FEED_URL),
            "no self link: the URL fetched"
        );
    }

    #[test]
    fn a_page_that_is_no_feed_is_a_bad_response() {
        let err = outcome(request(None, None), response(200, &[], "<html>hi</html>")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert_eq!(
            err.message(),
            "not a feed: an HTML page (root element <html>)"
        );
    }

    #[test]
    fn failure_statuses_become_errors() {
        let err = outcome(
            request(None, None),
            response(429, &[("retry-after", "120")], ""),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert_eq!(
            err.message(),
            "upstream answered HTTP 429 for https://example.com/feed.xml (retry-after: 120)"
        );
        let err = outcome(request(None, None), response(410, &[], "")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
    }
}
