//! Where an allowed request goes. [`Network`] sends it through the connector's pooled clients
//! under its timeouts and size cap; `tsunagi plugin test` puts a cassette here instead, so a
//! plugin runs through the very same egress path with no network at all.

use super::{EgressClients, EgressLimits, transport_error};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
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
}

impl From<(HttpError, String)> for UpstreamError {
    fn from((error, reason): (HttpError, String)) -> Self {
        Self {
            error,
            reason,
            head: None,
        }
    }
}

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
    pub clients: EgressClients,
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
                    return Err(UpstreamError::from((
                        HttpError::ConnectionReadTimeout,
                        format!("no response headers within {first_byte:?}"),
                    )));
                }
                Ok(Err(e)) => return Err(transport_error(&e).into()),
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
                        Err((
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
                ..UpstreamError::from(failure)
            })?;
            Ok(UpstreamResponse {
                status,
                headers,
                body,
            })
        })
    }
}

async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
) -> Result<Bytes, (HttpError, String)> {
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
pub fn too_large(cap: u64) -> (HttpError, String) {
    (
        HttpError::HttpResponseBodySize(Some(cap)),
        format!("response body larger than the {cap}-byte limit"),
    )
}
