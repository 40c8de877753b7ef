//! Where an allowed request goes. [`Network`] sends it through the connector's pooled clients
//! under its timeouts and size cap; `tsunagi plugin test` puts a cassette here instead, so a
//! plugin runs through the very same egress path with no network at all.

use super::{
    EgressClients, EgressError, EgressLimits, EgressPolicy, EgressRefusal, build_clients,
    transport_error,
};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use std::sync::Arc;
use wasmtime_wasi_http::Error as HttpError;

/// A request that passed the allowlist, budget and breaker.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: http::Method,
    pub url: url::Url,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The matching allow rule set `allow_internal`.
    pub allow_internal: bool,
}

/// A whole response, its body read under the size cap.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Why an exchange failed: the `wasi:http` error the plugin gets, the reason for the host's log
/// and exchange record, and the response head if it arrived before the failure (a body too
/// large or too slow): a 429's `Retry-After` still counts then.
#[derive(Debug)]
pub struct UpstreamError {
    pub error: HttpError,
    pub reason: String,
    pub head: Option<Box<(http::StatusCode, http::HeaderMap)>>,
    /// The host's own policy refused the exchange (see [`EgressRefusal`]): not the upstream's
    /// failure.
    pub refused: bool,
}

impl UpstreamError {
    pub fn new(error: HttpError, reason: impl Into<String>) -> Self {
        Self {
            error,
            reason: reason.into(),
            head: None,
            refused: false,
        }
    }

    /// The host's policy refused the exchange: the plugin gets the refusal verbatim.
    pub fn refused(refusal: &EgressRefusal) -> Self {
        Self {
            refused: true,
            ..Self::internal(refusal.to_string())
        }
    }

    /// A failure of the host's own making (a refusal, a deferral, a cassette that has no
    /// answer): the plugin gets the reason verbatim.
    pub fn internal(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(HttpError::InternalError(Some(reason.clone())), reason)
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for UpstreamError {}

/// Carries out one exchange.
pub trait Upstream: Send + Sync {
    fn send(
        &self,
        request: OutboundRequest,
        limits: EgressLimits,
    ) -> BoxFuture<'_, Result<UpstreamResponse, UpstreamError>>;
}

/// The real network, through the connector's pooled clients.
pub struct Network {
    clients: EgressClients,
}

impl Network {
    /// The network as `policy`'s connector may reach it: `pool_size` idle connections per
    /// host, names resolved through its guarded resolver.
    pub fn new(
        policy: &Arc<EgressPolicy>,
        limits: &EgressLimits,
        pool_size: usize,
    ) -> Result<Self, EgressError> {
        Ok(Self {
            clients: build_clients(policy, limits, pool_size)?,
        })
    }

    /// The client for requests to public addresses, for tools that measure the network path
    /// without a plugin (the benchmark's native reference).
    pub fn public_client(&self) -> &reqwest::Client {
        &self.clients.strict
    }
}

impl Upstream for Network {
    fn send(
        &self,
        request: OutboundRequest,
        limits: EgressLimits,
    ) -> BoxFuture<'_, Result<UpstreamResponse, UpstreamError>> {
        Box::pin(async move {
            let client = if request.allow_internal {
                &self.clients.opt_in
            } else {
                &self.clients.strict
            };
            let outgoing = client
                .request(request.method, request.url)
                .headers(request.headers)
                .body(request.body);

            let deadline = tokio::time::Instant::now() + limits.request_timeout;
            let first_byte = limits.first_byte_timeout.min(limits.request_timeout);
            let response = match tokio::time::timeout(first_byte, outgoing.send()).await {
                Err(_) => {
                    return Err(UpstreamError::new(
                        HttpError::ConnectionReadTimeout,
                        format!("no response headers within {first_byte:?}"),
                    ));
                }
                Ok(Err(e)) => return Err(transport_error(&e)),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            let mut headers = response.headers().clone();
            for hop_by_hop in ["transfer-encoding", "connection", "keep-alive"] {
                headers.remove(hop_by_hop);
            }
            let read =
                tokio::time::timeout_at(deadline, read_capped(response, limits.max_response_bytes))
                    .await
                    .unwrap_or_else(|_| {
                        Err(UpstreamError::new(
                            HttpError::HttpResponseTimeout,
                            format!(
                                "response body not complete within {:?}",
                                limits.request_timeout
                            ),
                        ))
                    });
            // The head arrived even if the body did not: its status and Retry-After count.
            let body = read.map_err(|failure| UpstreamError {
                head: Some(Box::new((status, headers.clone()))),
                ..failure
            })?;
            Ok(UpstreamResponse {
                status,
                headers,
                body,
            })
        })
    }
}

async fn read_capped(mut response: reqwest::Response, cap: u64) -> Result<Bytes, UpstreamError> {
    if let Some(length) = response.content_length()
        && length > cap
    {
        return Err(too_large(cap));
    }
    let mut body = BytesMut::with_capacity(
        usize::try_from(response.content_length().unwrap_or(16 * 1024).min(cap)).unwrap_or(0),
    );
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(too_large(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The error for a body over the connector's `response_size` (a cassette's too).
pub fn too_large(cap: u64) -> UpstreamError {
    UpstreamError::new(
        HttpError::HttpResponseBodySize(Some(cap)),
        format!("response body larger than the {cap}-byte limit"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::{Answer, Server};
    use std::time::Duration;

    fn limits() -> EgressLimits {
        EgressLimits {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_response_bytes: 1024,
            max_request_bytes: 1024,
            requests_in_flight: 8,
            requests_per_call: 1000,
        }
    }

    async fn send(
        server: &Server,
        limits: EgressLimits,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let policy = Arc::new(EgressPolicy::new("test", Vec::new()));
        let network = Network::new(&policy, &limits, 1).expect("clients build");
        let request = OutboundRequest {
            method: http::Method::GET,
            url: url::Url::parse(&server.url("/feed")).expect("url"),
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            allow_internal: true,
        };
        network.send(request, limits).await
    }

    #[tokio::test]
    async fn a_whole_response_comes_back_without_hop_by_hop_headers() {
        let server = Server::start(Answer::new(200, &[("etag", "\"v1\"")], b"hello")).await;
        let response = send(&server, limits()).await.expect("answered");
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], b"hello");
        assert_eq!(response.headers["etag"], "\"v1\"");
        assert!(response.headers.get("connection").is_none());
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_keeping_the_head() {
        let body = vec![b'x'; 2048];
        let server = Server::start(Answer::new(429, &[("retry-after", "120")], &body)).await;
        let failure = send(&server, limits()).await.expect_err("too large");
        assert!(
            matches!(failure.error, HttpError::HttpResponseBodySize(Some(1024))),
            "{:?}",
            failure.error
        );
        assert_eq!(
            failure.reason,
            "response body larger than the 1024-byte limit"
        );
        let (status, headers) = *failure.head.expect("the head arrived");
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "120");
    }

    #[tokio::test]
    async fn an_undeclared_body_is_cut_off_at_the_cap() {
        let mut answer = Answer::new(200, &[], b"");
        // No content-length: the body runs until the connection closes.
        answer.head = "HTTP/1.1 200 OK\r\nconnection: close\r\n".to_string();
        answer.body = vec![b'y'; 4096];
        let server = Server::start(answer).await;
        let failure = send(&server, limits()).await.expect_err("too large");
        assert!(matches!(
            failure.error,
            HttpError::HttpResponseBodySize(Some(1024))
        ));
        assert!(failure.head.is_some());
    }

    #[tokio::test]
    async fn a_body_slower_than_the_request_timeout_fails_keeping_the_head() {
        let mut answer = Answer::new(503, &[("retry-after", "30")], b"late");
        answer.hold_body = Duration::from_secs(30);
        let server = Server::start(answer).await;
        let mut limits = limits();
        limits.request_timeout = Duration::from_millis(300);
        let failure = send(&server, limits).await.expect_err("too slow");
        assert!(matches!(failure.error, HttpError::HttpResponseTimeout));
        assert!(
            failure.reason.contains("not complete within"),
            "{}",
            failure.reason
        );
        assert_eq!(failure.head.expect("the head arrived").0, 503);
    }

    #[tokio::test]
    async fn no_head_within_the_first_byte_timeout_fails_without_one() {
        let mut answer = Answer::new(200, &[], b"");
        answer.delay = Duration::from_secs(30);
        let server = Server::start(answer).await;
        let mut limits = limits();
        limits.first_byte_timeout = Duration::from_millis(200);
        let failure = send(&server, limits).await.expect_err("no head");
        assert!(matches!(failure.error, HttpError::ConnectionReadTimeout));
        assert!(failure.head.is_none());
    }
}
