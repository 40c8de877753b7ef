//! The HTTP side of a poll, without any I/O: which headers the connector sends, what each status
//! code means for the poll, and where a redirect leads.
//!
//! Everything here is pure so it is unit-tested on the native target; `http.rs` does the actual
//! exchange through `wasi:http`.

use url::Url;

use crate::tsunagi::connector::types::{ConnectorError, ErrorKind};

pub use tsunagi_rss_feed::{ACCEPT, USER_AGENT};

/// Redirects followed before a poll gives up (RFC 9110 suggests detecting loops; browsers allow
/// ~20, feed readers usually 5).
pub const MAX_REDIRECTS: usize = 5;

/// What a response status means for the poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: read and parse the body.
    Success,
    /// 304: nothing changed since the validators we sent.
    NotModified,
    /// Any other 3xx: follow `Location`.
    Redirect,
    /// Everything else: the poll fails with this kind.
    Failure(ErrorKind),
}

/// Classifies an HTTP status code.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        304 => StatusClass::NotModified,
        300..=399 => StatusClass::Redirect,
        429 => StatusClass::Failure(ErrorKind::RateLimited),
        // Request Timeout is the server giving up on a slow client, and a feed that is not
        // found today often is again after a site move: worth more tries (the host
        // dead-letters the target after `retry.max_failures`). 410 Gone and the other 4xx say
        // retrying cannot help: permanent, dead-lettered at once.
        408 | 404 => StatusClass::Failure(ErrorKind::Transient),
        400..=499 => StatusClass::Failure(ErrorKind::Permanent),
        500..=599 => StatusClass::Failure(ErrorKind::Transient),
        // 1xx should never reach us as a final answer; anything else is not HTTP.
        _ => StatusClass::Failure(ErrorKind::BadResponse),
    }
}

/// The error for a status that [`classify`] called a failure.
pub fn status_error(
    kind: ErrorKind,
    status: u16,
    url: &Url,
    retry_after: Option<&str>,
) -> ConnectorError {
    let mut message = format!("upstream answered HTTP {status} for {url}");
    if let Some(retry_after) = retry_after {
        message.push_str(" (retry-after: ");
        message.push_str(retry_after);
        message.push(')');
    }
    ConnectorError { kind, message }
}

/// The request headers for a poll. `etag` and `last_modified` are the validators from the last
/// successful poll; callers drop ones that [`is_valid_header_value`] rejects.
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

/// Whether `value` can be sent as an HTTP field value (RFC 9110 §5.5): no control characters
/// other than horizontal tab, no leading or trailing whitespace, not empty.
pub fn is_valid_header_value(value: &str) -> bool {
    !value.is_empty()
        && value.trim_matches([' ', '\t']).len() == value.len()
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Parses a poll target. Only absolute http(s) URLs can be polled.
pub fn parse_target(target: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(target).map_err(|err| ConnectorError {
        kind: ErrorKind::Permanent,
        message: format!("invalid target URL {target:?}: {err}"),
    })?;
    check_scheme(&url).map_err(|message| ConnectorError {
        kind: ErrorKind::Permanent,
        message,
    })?;
    Ok(url)
}

/// Resolves a `Location` header against the URL that answered with it.
pub fn redirect_target(from: &Url, location: Option<&str>) -> Result<Url, ConnectorError> {
    let bad_response = |message: String| ConnectorError {
        kind: ErrorKind::BadResponse,
        message,
    };
    let location = location
        .ok_or_else(|| bad_response(format!("redirect from {from} without a Location header")))?;
    let next = from.join(location.trim()).map_err(|err| {
        bad_response(format!(
            "redirect from {from} to invalid Location {location:?}: {err}"
        ))
    })?;
    check_scheme(&next)
        .map_err(|message| bad_response(format!("redirect from {from}: {message}")))?;
    Ok(next)
}

/// The error once more than [`MAX_REDIRECTS`] redirects were followed.
pub fn too_many_redirects(target: &str) -> ConnectorError {
    ConnectorError {
        kind: ErrorKind::BadResponse,
        message: format!("more than {MAX_REDIRECTS} redirects starting at {target}"),
    }
}

fn check_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(()),
        "http" | "https" => Err(format!("URL {url} has no host")),
        other => Err(format!("unsupported URL scheme {other:?} in {url}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify(200), StatusClass::Success);
        assert_eq!(classify(203), StatusClass::Success);
        assert_eq!(classify(304), StatusClass::NotModified);
        for status in [300, 301, 302, 303, 307, 308] {
            assert_eq!(classify(status), StatusClass::Redirect, "{status}");
        }
        assert_eq!(classify(429), StatusClass::Failure(ErrorKind::RateLimited));
        assert_eq!(classify(404), StatusClass::Failure(ErrorKind::Transient));
        assert_eq!(classify(410), StatusClass::Failure(ErrorKind::Permanent));
        assert_eq!(classify(401), StatusClass::Failure(ErrorKind::Permanent));
        assert_eq!(classify(408), StatusClass::Failure(ErrorKind::Transient));
        assert_eq!(classify(500), StatusClass::Failure(ErrorKind::Transient));
        assert_eq!(classify(503), StatusClass::Failure(ErrorKind::Transient));
        assert_eq!(classify(101), StatusClass::Failure(ErrorKind::BadResponse));
        assert_eq!(classify(999), StatusClass::Failure(ErrorKind::BadResponse));
    }

    #[test]
    fn status_error_mentions_status_url_and_retry_after() {
        let url = Url::parse("https://example.com/feed").unwrap();
        let err = status_error(ErrorKind::RateLimited, 429, &url, Some("120"));
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(
            err.message,
            "upstream answered HTTP 429 for https://example.com/feed (retry-after: 120)"
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

    #[test]
    fn header_value_validation() {
        assert!(is_valid_header_value("W/\"5e-1a\""));
        assert!(is_valid_header_value("Wed, 01 May 2024 12:00:00 GMT"));
        assert!(!is_valid_header_value(""));
        assert!(!is_valid_header_value(" padded"));
        assert!(!is_valid_header_value("a\r\nX-Injected: 1"));
        assert!(!is_valid_header_value("nul\0"));
    }

    #[test]
    fn targets() {
        assert!(parse_target("https://example.com/feed.xml").is_ok());
        assert!(parse_target("http://127.0.0.1:8080/rss").is_ok());
        for bad in [
            "not a url",
            "/relative",
            "ftp://example.com/feed",
            "file:///etc/passwd",
        ] {
            let err = parse_target(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Permanent, "{bad}");
        }
    }

    #[test]
    fn redirects_resolve_relative_locations() {
        let from = Url::parse("https://example.com/a/feed.xml?x=1").unwrap();
        let next = |loc| redirect_target(&from, Some(loc)).map(|u| u.to_string());
        assert_eq!(next("/b/rss").unwrap(), "https://example.com/b/rss");
        assert_eq!(
            next("other.xml").unwrap(),
            "https://example.com/a/other.xml"
        );
        assert_eq!(
            next("//cdn.example.net/f").unwrap(),
            "https://cdn.example.net/f"
        );
        assert_eq!(
            next("http://elsewhere.test/feed").unwrap(),
            "http://elsewhere.test/feed"
        );
    }

    #[test]
    fn bad_redirects() {
        let from = Url::parse("https://example.com/feed").unwrap();
        assert_eq!(
            redirect_target(&from, None).unwrap_err().kind,
            ErrorKind::BadResponse
        );
        let err = redirect_target(&from, Some("gopher://example.com/")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadResponse);
        assert!(err.message.contains("gopher"), "{}", err.message);
        assert_eq!(
            too_many_redirects("https://example.com/feed").kind,
            ErrorKind::BadResponse
        );
    }
}
