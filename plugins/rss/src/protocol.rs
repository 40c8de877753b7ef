//! The RSS connector's side of the HTTP exchange, without any I/O: which headers it sends, how
//! far it follows redirects and how it words a failed status. Redirect resolution, status
//! classes and header checks are the SDK's (`tsunagi_sdk::http`).

use tsunagi_sdk::http::{is_redirect, status_error_kind};
use tsunagi_sdk::{Error, ErrorKind};

pub use tsunagi_rss_feed::{ACCEPT, USER_AGENT};

/// Redirects followed before a poll gives up (RFC 9110 suggests detecting loops; browsers allow
/// ~20, feed readers usually 5).
pub const MAX_REDIRECTS: usize = 5;

/// The request headers for a poll. `etag` and `last_modified` are the validators from the last
/// successful poll; callers drop ones that `tsunagi_sdk::http::is_valid_header_value` rejects.
pub fn request_headers<'a>(
    etag: Option<&'a str>,
    last_modified: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut headers = Vec::with_capacity(4);
    headers.push(("accept", ACCEPT));
    headers.push(("user-agent", USER_AGENT));
    if let Some(etag) = etag {
        headers.push(("if-none-match", etag));
    }
    if let Some(last_modified) = last_modified {
        headers.push(("if-modified-since", last_modified));
    }
    headers
}

/// The error for a final response that is neither a success nor 304, from `url` (normalised).
///
/// The kinds are the SDK's status classes (404 and 408 transient, 410 and other 4xx permanent,
/// 429 rate-limited, 5xx transient), except that a status outside 200–599 is not HTTP as a feed
/// reader knows it: `bad-response`. A redirect reaching this point had no usable `Location` (the
/// SDK follows the others): `bad-response` too.
pub fn status_error(
    status: u16,
    url: &str,
    location: Option<&str>,
    retry_after: Option<&str>,
) -> Error {
    if is_redirect(status) {
        return Error::bad_response(match location {
            None => format!("redirect from {url} without a Location header"),
            Some(location) => format!("redirect from {url} to invalid Location {location:?}"),
        });
    }
    let kind = match status_error_kind(status) {
        Some(kind) if (200..=599).contains(&status) => kind,
        _ => ErrorKind::BadResponse,
    };
    let mut message = format!("upstream answered HTTP {status} for {url}");
    if let Some(retry_after) = retry_after {
        message.push_str(" (retry-after: ");
        message.push_str(retry_after);
        message.push(')');
    }
    Error::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.com/feed";

    fn kind(status: u16) -> ErrorKind {
        status_error(status, URL, None, None).kind()
    }

    #[test]
    fn status_classes() {
        assert_eq!(kind(429), ErrorKind::RateLimited);
        assert_eq!(kind(404), ErrorKind::Transient);
        assert_eq!(kind(410), ErrorKind::Permanent);
        assert_eq!(kind(401), ErrorKind::Permanent);
        assert_eq!(kind(408), ErrorKind::Transient);
        assert_eq!(kind(500), ErrorKind::Transient);
        assert_eq!(kind(503), ErrorKind::Transient);
        assert_eq!(kind(101), ErrorKind::BadResponse);
        assert_eq!(kind(999), ErrorKind::BadResponse);
    }

    #[test]
    fn status_error_mentions_status_url_and_retry_after() {
        let err = status_error(429, URL, None, Some("120"));
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert_eq!(
            err.message(),
            "upstream answered HTTP 429 for https://example.com/feed (retry-after: 120)"
        );
    }

    #[test]
    fn redirects_without_a_usable_location_are_bad_responses() {
        let err = status_error(302, URL, None, None);
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert_eq!(
            err.message(),
            "redirect from https://example.com/feed without a Location header"
        );
        let err = status_error(301, URL, Some("http://[::1"), None);
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert_eq!(
            err.message(),
            "redirect from https://example.com/feed to invalid Location \"http://[::1\""
        );
    }

    #[test]
    fn unconditional_headers() {
        let headers = request_headers(None, None);
        assert_eq!(
            headers,
            vec![("accept", ACCEPT), ("user-agent", "tsunagi-rss/0.1")]
        );
    }

    #[test]
    fn conditional_headers() {
        let headers = request_headers(Some("\"abc\""), Some("Wed, 01 May 2024 12:00:00 GMT"));
        assert_eq!(headers[2], ("if-none-match", "\"abc\""));
        assert_eq!(
            headers[3],
            ("if-modified-since", "Wed, 01 May 2024 12:00:00 GMT")
        );
        assert_eq!(headers.len(), 4);
    }
}
