//! The exchange itself, through `wasi:http/outgoing-handler`: one request out, the response
//! head back, the body read in large chunks on demand.
//!
//! This compiles on every target so the SDK builds and tests natively, but only works inside a
//! component: natively the `wasi` imports panic.

use url::{Position, Url};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method as WasiMethod, OutgoingBody,
    OutgoingRequest, Scheme,
};
use wasi::io::streams::{OutputStream, StreamError};

use super::{Body, Hop, Method, Response};
use crate::{Error, ErrorKind, Result};

/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// Bytes per blocking write of a request body (`blocking-write-and-flush` takes at most 4096).
const WRITE_CHUNK: usize = 4096;

/// A response body still held by the host.
pub(super) struct Incoming(IncomingResponse);

/// Sends one request and waits for the response head.
pub(super) fn send(hop: &Hop) -> Result<Response> {
    let request = build_request(hop)?;
    let outgoing_body =
        match hop.body {
            Some(_) => Some(request.body().map_err(|()| {
                Error::transient(format!("{}: request body unavailable", hop.shown))
            })?),
            None => None,
        };
    let future = outgoing_handler::handle(request, None)
        .map_err(|code| transport_error(&hop.shown, &code))?;
    // The body is written after `handle`, so the host can stream it out as it arrives.
    if let (Some(outgoing_body), Some(bytes)) = (outgoing_body, hop.body.as_deref()) {
        write_body(outgoing_body, bytes, &hop.shown)?;
    }
    let result = loop {
        if let Some(result) = future.get() {
            break result;
        }
        future.subscribe().block();
    };
    let inner = match result {
        Ok(Ok(inner)) => inner,
        Ok(Err(code)) => return Err(transport_error(&hop.shown, &code)),
        Err(()) => {
            return Err(Error::transient(format!(
                "{}: response was already taken",
                hop.shown
            )));
        }
    };
    let headers = inner
        .headers()
        .entries()
        .into_iter()
        .collect::<Vec<(String, Vec<u8>)>>();
    Ok(Response {
        status: inner.status(),
        url: hop.url.to_string(),
        shown: hop.shown.clone(),
        headers,
        body: Body::Incoming(Incoming(inner)),
    })
}

impl Incoming {
    /// Reads the whole body, preallocating `capacity` bytes.
    pub(super) fn read_all(self, capacity: usize, url: &str) -> Result<Vec<u8>> {
        let body = self
            .0
            .consume()
            .map_err(|()| Error::transient(format!("{url}: response body was already consumed")))?;
        let bytes = read_stream(&body, capacity, url)?;
        // Trailers are of no interest; dropping the future discards them.
        drop(IncomingBody::finish(body));
        Ok(bytes)
    }
}

fn build_request(hop: &Hop) -> Result<OutgoingRequest> {
    let url = &hop.url;
    let fields = Fields::new();
    for (name, value) in &hop.headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|err| Error::permanent(format!("cannot send header {name}: {err}")))?;
    }
    if let Some(body) = &hop.body {
        // A known length spares the host a chunked upload, which some APIs refuse.
        if !hop
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            fields
                .append("content-length", body.len().to_string().as_bytes())
                .map_err(|err| Error::permanent(format!("cannot send content-length: {err}")))?;
        }
    }
    let request = OutgoingRequest::new(fields);
    let method = match &hop.method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
        Method::Options => WasiMethod::Options,
        Method::Other(other) => WasiMethod::Other(other.clone()),
    };
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(Error::permanent(format!("URL {url} has no host"))),
    };
    let path_with_query = path_with_query(url);
    let invalid = |part: &str| Error::permanent(format!("cannot request {url}: invalid {part}"));
    request
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(path_with_query))
        .map_err(|()| invalid("path"))?;
    Ok(request)
}

/// The request target: path and query, never the fragment (it stays with the client).
fn path_with_query(url: &Url) -> &str {
    &url[Position::BeforePath..Position::AfterQuery]
}

fn write_body(body: OutgoingBody, bytes: &[u8], url: &str) -> Result<()> {
    let failed = |err: StreamError| match err {
        StreamError::LastOperationFailed(err) => Error::transient(format!(
            "{url}: sending the request body failed: {}",
            err.to_debug_string()
        )),
        StreamError::Closed => {
            Error::transient(format!("{url}: the request body was closed early"))
        }
    };
    {
        let stream: OutputStream = body
            .write()
            .map_err(|()| Error::transient(format!("{url}: request body stream unavailable")))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(failed)?;
        }
        // The stream must be dropped before the body is finished.
    }
    OutgoingBody::finish(body, None).map_err(|code| transport_error(url, &code))
}

/// Reads `body` to its end in large chunks. The first chunk becomes the buffer itself when no
/// capacity hint was given, so a small body is not copied at all.
fn read_stream(body: &IncomingBody, capacity: usize, url: &str) -> Result<Vec<u8>> {
    let stream = body
        .stream()
        .map_err(|()| Error::transient(format!("{url}: response body stream was already taken")))?;
    let mut bytes = Vec::with_capacity(capacity);
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) if bytes.is_empty() && chunk.len() >= bytes.capacity() => bytes = chunk,
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(match wasi::http::types::http_error_code(&err) {
                    Some(code) => transport_error(url, &code),
                    None => Error::transient(format!(
                        "{url}: reading the response body failed: {}",
                        err.to_debug_string()
                    )),
                });
            }
        }
    }
}

/// The error for a request that failed below HTTP (or was refused by the host's egress).
fn transport_error(url: &str, code: &ErrorCode) -> Error {
    let kind = match code {
        // The host's size cap: the same body will be just as large next time.
        ErrorCode::HttpResponseBodySize(_) => ErrorKind::BadResponse,
        _ => ErrorKind::Transient,
    };
    Error::new(kind, format!("{url}: {}", describe_error_code(code)))
}

/// The text of a `wasi:http` error code. The host reports egress refusals as
/// `internal-error(some(reason))`; that reason is passed on verbatim.
fn describe_error_code(code: &ErrorCode) -> String {
    match code {
        ErrorCode::InternalError(Some(reason)) => format!("http request failed: {reason}"),
        ErrorCode::DnsError(payload) => format!(
            "http request failed: DNS error (rcode {}, info {})",
            payload.rcode.as_deref().unwrap_or("none"),
            payload
                .info_code
                .map_or_else(|| "none".to_owned(), |info| info.to_string()),
        ),
        other => {
            let debug = format!("{other:?}");
            let name = debug.strip_prefix("ErrorCode::").unwrap_or(&debug);
            format!("http request failed: {name}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_described_and_classified() {
        let refused = ErrorCode::InternalError(Some("egress refused by connector 'rss'".into()));
        let err = transport_error("https://example.com/feed", &refused);
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(
            err.message(),
            "https://example.com/feed: http request failed: egress refused by connector 'rss'"
        );
        let too_big = transport_error(
            "https://example.com/feed",
            &ErrorCode::HttpResponseBodySize(Some(1)),
        );
        assert_eq!(too_big.kind(), ErrorKind::BadResponse);
        let timeout = transport_error("https://example.com/feed", &ErrorCode::ConnectionTimeout);
        assert_eq!(timeout.kind(), ErrorKind::Transient);
        assert!(
            timeout
                .message()
                .ends_with("http request failed: ConnectionTimeout"),
            "{}",
            timeout.message()
        );
    }

    #[test]
    fn request_targets_keep_the_query_and_drop_the_fragment() {
        let url = Url::parse("https://example.com/a/b?x=1&y=2#frag").unwrap();
        assert_eq!(path_with_query(&url), "/a/b?x=1&y=2");
        let root = Url::parse("http://example.com").unwrap();
        assert_eq!(path_with_query(&root), "/");
    }
}
