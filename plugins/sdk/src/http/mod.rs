//! A small blocking HTTP client over `wasi:http/outgoing-handler`, a connector's only way out.
//! The host intercepts every request and applies its allowlist, rate limits,
//! timeouts and size caps; a request it refuses fails like a network error.
//!
//! ```no_run
//! use tsunagi_sdk::http::Request;
//!
//! # fn main() -> tsunagi_sdk::Result<()> {
//! let response = Request::get("https://example.com/api/posts")
//!     .header("accept", "application/json")
//!     .follow_redirects(5)
//!     .send()?
//!     .error_for_status()?;
//! let posts: tsunagi_sdk::json::Value = response.json()?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors carry the [`ErrorKind`] the host should act on:
//!
//! | failure                                             | kind           |
//! |-----------------------------------------------------|----------------|
//! | a URL that does not parse, or is not `http(s)`      | `permanent`    |
//! | a header the connector built that cannot be sent    | `permanent`    |
//! | more redirects than [`Request::follow_redirects`] allows | `permanent` |
//! | a redirect to a URL that is not `http(s)`           | `bad-response` |
//! | DNS, connection, TLS, timeout, refused by the host  | `transient`    |
//! | a body larger than the host's cap                   | `bad-response` |
//! | a status, via [`Response::error_for_status`]        | see [`status_error_kind`] |

mod transport;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::{Error, ErrorKind, Result, json};

/// The request methods. `Other` carries any extension method verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// Any other method token, e.g. `PROPFIND`.
    Other(String),
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other(method) => method.as_str(),
        })
    }
}

/// A request being built. Nothing is checked or sent until [`send`](Request::send), which
/// reports the first problem as an [`Error`].
///
/// Its `Debug` output shows header names but not their values, which may be credentials.
#[derive(Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    max_redirects: usize,
    /// A builder step that failed (`json`); reported by `send` so the builder chains.
    deferred: Option<Error>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("body", &self.body.as_ref().map(Vec::len))
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request with `method` for `url` (absolute `http` or `https`).
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            max_redirects: 0,
            deferred: None,
        }
    }

    /// A `GET` request for `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request for `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// Adds header `name: value` (appended; a name may repeat). Leading and trailing spaces and
    /// tabs are trimmed from the value, as `fetch()` does; a name or value that still cannot be
    /// sent (see [`is_valid_header_name`], [`is_valid_header_value`]) fails `send` with a
    /// `permanent` error.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds header `name: value` if there is a value: for conditional headers built from
    /// stored validators, optional tokens and the like.
    pub fn header_opt(self, name: impl Into<String>, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.header(name, value),
            None => self,
        }
    }

    /// Appends `name=value` to the URL's query, percent-encoded (`q=green+tea`). A URL that
    /// does not parse is left as it is, for `send` to report.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        if let Ok(mut url) = url::Url::parse(&self.url) {
            url.query_pairs_mut().append_pair(name, value);
            self.url = url.into();
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets `value` serialized as JSON as the body, and `content-type: application/json` unless
    /// a content type was set already.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                if self.header_value("content-type").is_none() {
                    self.headers
                        .push(("content-type".to_owned(), "application/json".to_owned()));
                }
                self.body = Some(body);
            }
            Err(err) => {
                self.deferred = Some(Error::permanent(format!(
                    "cannot encode the JSON body for {}: {err}",
                    self.url
                )));
            }
        }
        self
    }

    /// Follows up to `max` redirects (off, `0`, by default). A 3xx other than 304 with a
    /// `Location` that resolves (relative to the URL that answered) is followed; one without a
    /// usable `Location` is returned as it is ([`Response::error_for_status`] calls it
    /// `transient`). 301 and 308 are logged at warn level, since the target should be updated.
    /// More than `max` redirects fail with a `permanent` error `too many redirects from <url>`.
    ///
    /// 303, and 301/302 answering a `POST`, continue as a `GET` without a body (as browsers
    /// do); 307 and 308 repeat the method and body. `authorization`, `cookie` and
    /// `proxy-authorization` are dropped when a redirect leaves the original origin.
    pub fn follow_redirects(mut self, max: usize) -> Self {
        self.max_redirects = max;
        self
    }

    /// Sends the request (following redirects if enabled) and waits for the response head; the
    /// body is read by [`Response::bytes`], [`Response::text`] or [`Response::json`].
    ///
    /// Any status is a successful `send`: use [`Response::error_for_status`] to turn failure
    /// statuses into errors.
    pub fn send(self) -> Result<Response> {
        if let Some(err) = self.deferred {
            return Err(err);
        }
        let headers = self
            .headers
            .into_iter()
            .map(|(name, value)| {
                let value = value.trim_matches([' ', '\t']).to_owned();
                check_header(&name, &value)?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>>>()?;
        let first = parse_url(&self.url)?;
        let mut hop = Hop {
            method: self.method,
            url: first,
            shown: self.url.clone(),
            headers,
            body: self.body,
        };
        let mut redirects = 0;
        loop {
            let response = transport::send(&hop)?;
            let status = response.status();
            if self.max_redirects == 0 || !is_redirect(status) {
                return Ok(response);
            }
            let Some(location) = response.header("location") else {
                return Ok(response);
            };
            let Ok(next) = hop.url.join(location.trim()) else {
                return Ok(response);
            };
            if redirects == self.max_redirects {
                return Err(too_many_redirects(&self.url));
            }
            check_redirect_scheme(&hop.shown, &next)?;
            if matches!(status, 301 | 308) {
                crate::log::warn(&format!(
                    "{} moved permanently to {next}; consider updating the target",
                    hop.shown
                ));
            }
            // The response's body is never read: dropping it discards it.
            drop(response);
            redirects += 1;
            hop = hop.redirected(status, next);
        }
    }

    fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One request on the way to the final response.
struct Hop {
    method: Method,
    url: Url,
    /// The URL as messages show it: the caller's own text for the first request, the resolved
    /// URL after a redirect.
    shown: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Hop {
    /// The request that follows a `status` redirect to `next`.
    fn redirected(self, status: u16, next: Url) -> Self {
        let (method, mut headers, body) =
            if status == 303 || (matches!(status, 301 | 302) && self.method == Method::Post) {
                let headers = self
                    .headers
                    .into_iter()
                    .filter(|(name, _)| !is_body_header(name))
                    .collect();
                let method = if self.method == Method::Head {
                    Method::Head
                } else {
                    Method::Get
                };
                (method, headers, None)
            } else {
                (self.method, self.headers, self.body)
            };
        if next.origin() != self.url.origin() {
            headers.retain(|(name, _)| !is_credential_header(name));
        }
        Self {
            method,
            shown: next.to_string(),
            url: next,
            headers,
            body,
        }
    }
}

/// A response whose status and headers have arrived; the body is read on demand.
pub struct Response {
    status: u16,
    /// The final URL, normalised.
    url: String,
    /// The final URL as messages show it (see `Hop::shown`).
    shown: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
}

enum Body {
    /// Still in the host, read when asked for.
    Incoming(transport::Incoming),
    /// Already in memory ([`Response::from_parts`]).
    Buffered(Vec<u8>),
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &self.url)
            .field("shown", &self.shown)
            .field("headers", &self.headers.len())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// A response made up in memory, for unit-testing connector code on the native target.
    ///
    /// ```
    /// use tsunagi_sdk::http::Response;
    ///
    /// let response = Response::from_parts(
    ///     200,
    ///     "https://example.com/feed.json",
    ///     vec![("ETag".to_owned(), b"\"v1\"".to_vec())],
    ///     br#"{"items": []}"#.to_vec(),
    /// );
    /// assert_eq!(response.header("etag").as_deref(), Some("\"v1\""));
    /// let value: tsunagi_sdk::json::Value = response.json()?;
    /// # Ok::<(), tsunagi_sdk::Error>(())
    /// ```
    pub fn from_parts(
        status: u16,
        url: impl Into<String>,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    ) -> Self {
        let url = url.into();
        Self {
            status,
            shown: url.clone(),
            url,
            headers,
            body: Body::Buffered(body),
        }
    }

    /// [`Response::from_parts`] from text: the usual shape of a connector's unit tests.
    ///
    /// ```
    /// let response = tsunagi_sdk::http::Response::from_text(
    ///     304,
    ///     "https://example.com/feed.json",
    ///     &[("etag", "\"v2\"")],
    ///     "",
    /// );
    /// assert_eq!(response.header("etag").as_deref(), Some("\"v2\""));
    /// ```
    pub fn from_text(status: u16, url: &str, headers: &[(&str, &str)], body: &str) -> Self {
        Self::from_parts(
            status,
            url,
            headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body.as_bytes().to_vec(),
        )
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The URL that answered, normalised (`https://example.com` becomes
    /// `https://example.com/`): the request's own after no redirect, the last `Location`
    /// (resolved) after redirects.
    ///
    /// Error messages name [`display_url`](Response::display_url) instead.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL that answered as the SDK's error messages name it: the request's URL exactly as
    /// the caller wrote it when no redirect was followed (an operator recognises their own
    /// target), the resolved `Location` after redirects.
    pub fn display_url(&self) -> &str {
        &self.shown
    }

    /// The first value of header `name` (any case), if it is present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| String::from_utf8(value.clone()).ok())
    }

    /// Every header, in the order received; names as the host passed them (lower case).
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// `Ok(self)` for 2xx and 304; otherwise the error the status stands for (see
    /// [`status_error_kind`]), with the message `HTTP <status> from <url>`. The host reads
    /// `Retry-After` itself, so the message does not repeat it.
    pub fn error_for_status(self) -> Result<Self> {
        match status_error(self.status, &self.shown) {
            Some(err) => Err(err),
            None => Ok(self),
        }
    }

    /// Reads the whole body.
    pub fn bytes(self) -> Result<Vec<u8>> {
        match self.body {
            Body::Buffered(bytes) => Ok(bytes),
            Body::Incoming(incoming) => {
                let capacity = preallocation(
                    self.headers
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
                        .map(|(_, value)| value.as_slice()),
                );
                incoming.read_all(capacity, &self.shown)
            }
        }
    }

    /// Reads the whole body as UTF-8 text; a body that is not UTF-8 is a `bad-response`.
    pub fn text(self) -> Result<String> {
        let url = self.shown.clone();
        String::from_utf8(self.bytes()?)
            .map_err(|err| Error::bad_response(format!("{url}: the body is not UTF-8: {err}")))
    }

    /// Reads the whole body and deserializes it as JSON; a body that does not deserialize is a
    /// `bad-response` naming the URL.
    pub fn json<T: DeserializeOwned>(self) -> Result<T> {
        let url = self.shown.clone();
        json::from_slice(&self.bytes()?, url)
    }
}

/// What a failure status means, or `None` for a success (2xx) and for 304 Not Modified.
///
/// | status                            | kind           | why                                        |
/// |-----------------------------------|----------------|--------------------------------------------|
/// | 429                               | `rate-limited` | the upstream asked us to slow down         |
/// | 410                               | `permanent`    | gone for good                              |
/// | 404, 408                          | `transient`    | often back after a site move; a slow client|
/// | other 4xx                         | `permanent`    | retrying the same request cannot help      |
/// | 5xx                               | `transient`    | the upstream's trouble                     |
/// | anything else (1xx, 3xx not followed) | `transient` | unexpected; worth another try            |
pub fn status_error_kind(status: u16) -> Option<ErrorKind> {
    match status {
        200..=299 | 304 => None,
        429 => Some(ErrorKind::RateLimited),
        410 => Some(ErrorKind::Permanent),
        404 | 408 => Some(ErrorKind::Transient),
        400..=499 => Some(ErrorKind::Permanent),
        _ => Some(ErrorKind::Transient),
    }
}

/// The error for `status` from `url` (`HTTP <status> from <url>`), or `None` when the status is
/// not a failure. [`Response::error_for_status`] uses it.
pub fn status_error(status: u16, url: &str) -> Option<Error> {
    status_error_kind(status).map(|kind| Error::new(kind, format!("HTTP {status} from {url}")))
}

/// Whether `status` asks to follow `Location`: every 3xx except 304 Not Modified.
pub fn is_redirect(status: u16) -> bool {
    (300..=399).contains(&status) && status != 304
}

/// Whether `name` is an HTTP field name (RFC 9110 §5.1: a non-empty token).
pub fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `value` can be sent as an HTTP field value as it is (RFC 9110 §5.5): no control
/// characters other than horizontal tab, no leading or trailing whitespace. Empty is allowed.
/// Use it to vet stored values (validators, tokens) before relying on them.
pub fn is_valid_header_value(value: &str) -> bool {
    value.trim_matches([' ', '\t']).len() == value.len()
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn check_header(name: &str, value: &str) -> Result<()> {
    if !is_valid_header_name(name) {
        return Err(Error::permanent(format!(
            "cannot send header {name:?}: invalid name"
        )));
    }
    if !is_valid_header_value(value) {
        return Err(Error::permanent(format!(
            "cannot send header {name}: invalid value {value:?}"
        )));
    }
    Ok(())
}

/// Parses a request URL: only absolute `http(s)` URLs with a host can be requested.
fn parse_url(text: &str) -> Result<Url> {
    let url =
        Url::parse(text).map_err(|err| Error::permanent(format!("invalid URL {text:?}: {err}")))?;
    check_scheme(&url).map_err(Error::permanent)?;
    Ok(url)
}

/// A redirect may only lead to another `http(s)` URL; anything else is the upstream's fault.
fn check_redirect_scheme(from: &str, next: &Url) -> Result<()> {
    check_scheme(next)
        .map_err(|message| Error::bad_response(format!("redirect from {from}: {message}")))
}

fn check_scheme(url: &Url) -> std::result::Result<(), String> {
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(()),
        "http" | "https" => Err(format!("URL {url} has no host")),
        other => Err(format!("unsupported URL scheme {other:?} in {url}")),
    }
}

/// The error once a request was redirected more often than allowed.
fn too_many_redirects(url: &str) -> Error {
    Error::permanent(format!("too many redirects from {url}"))
}

/// Headers that describe the body, dropped when a redirect turns the request into a `GET`.
fn is_body_header(name: &str) -> bool {
    [
        "content-type",
        "content-length",
        "content-encoding",
        "content-language",
        "content-location",
    ]
    .iter()
    .any(|header| name.eq_ignore_ascii_case(header))
}

/// Headers that carry credentials, dropped when a redirect leaves the original origin.
fn is_credential_header(name: &str) -> bool {
    ["authorization", "cookie", "proxy-authorization"]
        .iter()
        .any(|header| name.eq_ignore_ascii_case(header))
}

/// Upper bound on the up-front body allocation taken from `Content-Length`; the host caps the
/// real size.
const MAX_PREALLOCATION: usize = 8 * 1024 * 1024;

/// How much to allocate for a body before reading it, from its `Content-Length`.
fn preallocation(content_length: Option<&[u8]>) -> usize {
    content_length
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_PREALLOCATION)
}

#[cfg(test)]
mod tests;
