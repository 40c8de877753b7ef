//! One HTTP GET through `wasi:http/outgoing-handler`, the connector's only way out: the host
//! intercepts it and applies its allowlist, credentials, rate limits and size/time caps.

use url::{Position, Url};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, Scheme,
};
use wasi::io::streams::StreamError;

use crate::tsunagi::connector::types::{ConnectorError, ErrorKind};

/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// Upper bound on the up-front body allocation taken from `Content-Length`; the host caps the
/// real size.
const MAX_PREALLOCATION: usize = 8 * 1024 * 1024;

/// A response whose status and headers have arrived; the body is read on demand.
pub struct Response {
    inner: IncomingResponse,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.inner.status()
    }

    /// The first value of header `name` (lower case), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        let headers = self.inner.headers();
        let value = headers.get(name).into_iter().next()?;
        String::from_utf8(value).ok()
    }

    /// Reads the whole body.
    pub fn into_body(self) -> Result<Vec<u8>, ConnectorError> {
        let capacity = self
            .header("content-length")
            .and_then(|length| length.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_PREALLOCATION);
        let body = self
            .inner
            .consume()
            .map_err(|()| transient("response body was already consumed".to_owned()))?;
        let bytes = read_stream(&body, capacity)?;
        // Trailers are of no interest; dropping the future discards them.
        drop(IncomingBody::finish(body));
        Ok(bytes)
    }
}

/// Sends `GET url` with `headers` and waits for the response head.
pub fn get(url: &Url, headers: &[(&str, &str)]) -> Result<Response, ConnectorError> {
    let request = build_request(url, headers)?;
    let future = outgoing_handler::handle(request, None).map_err(|code| transport_error(&code))?;
    let result = loop {
        if let Some(result) = future.get() {
            break result;
        }
        future.subscribe().block();
    };
    match result {
        Ok(Ok(inner)) => Ok(Response { inner }),
        Ok(Err(code)) => Err(transport_error(&code)),
        Err(()) => Err(transient("response was already taken".to_owned())),
    }
}

fn build_request(url: &Url, headers: &[(&str, &str)]) -> Result<OutgoingRequest, ConnectorError> {
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|err| permanent(format!("cannot send header {name}: {err}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_owned()),
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(permanent(format!("URL {url} has no host"))),
    };
    let path_with_query = &url[Position::BeforePath..Position::AfterQuery];
    let invalid = |part: &str| permanent(format!("cannot request {url}: invalid {part}"));
    request
        .set_method(&Method::Get)
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

/// Reads `body` to its end in large chunks. The first chunk becomes the buffer itself when no
/// capacity hint was given, so a small feed is not copied at all.
fn read_stream(body: &IncomingBody, capacity: usize) -> Result<Vec<u8>, ConnectorError> {
    let stream = body
        .stream()
        .map_err(|()| transient("response body stream was already taken".to_owned()))?;
    let mut bytes = Vec::with_capacity(capacity);
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) if bytes.is_empty() && chunk.len() >= bytes.capacity() => bytes = chunk,
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(match wasi::http::types::http_error_code(&err) {
                    Some(code) => transport_error(&code),
                    None => transient(format!(
                        "reading the response body failed: {}",
                        err.to_debug_string()
                    )),
                });
            }
        }
    }
}

/// The error for a request that failed below HTTP (or was refused by the host's egress).
fn transport_error(code: &ErrorCode) -> ConnectorError {
    let kind = match code {
        // The host's size cap: the same body will be just as large next time.
        ErrorCode::HttpResponseBodySize(_) => ErrorKind::BadResponse,
        _ => ErrorKind::Transient,
    };
    ConnectorError {
        kind,
        message: describe_error_code(code),
    }
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

fn transient(message: String) -> ConnectorError {
    ConnectorError {
        kind: ErrorKind::Transient,
        message,
    }
}

fn permanent(message: String) -> ConnectorError {
    ConnectorError {
        kind: ErrorKind::Permanent,
        message,
    }
}
