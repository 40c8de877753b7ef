//! Where egress meets [`crate::credentials`]: a request whose allow rule names a credential is
//! handed to the policy's [`RequestSigner`] with the call's target, after its body is read and
//! just before it is sent. What the signer adds never goes back to the plugin: the exchange
//! record keeps the plugin's own URL (redacted), and a refusal says which credential and scope,
//! never a secret. A token endpoint is reached through a [`Destination`], with the same
//! allowlist, resolver and redirect checks as a webhook sink.

use super::{Destination, EgressPolicy, ExchangeRecord, PolicyOwner, UpstreamError};
use crate::config::{AllowRule, Scope};
use crate::credentials::{
    CredentialError, MAX_TOKEN_RESPONSE, RequestSigner, TokenEndpoint, TokenEndpointReply,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The policy's signer, if its rules name credentials.
#[derive(Clone, Default)]
pub(super) struct Signer(pub(super) Option<Arc<dyn RequestSigner>>);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Signer(…)"
        } else {
            "Signer(none)"
        })
    }
}

impl EgressPolicy {
    /// Signs (decorates) the requests of rules that name a credential.
    pub fn with_signer(mut self, signer: Arc<dyn RequestSigner>) -> Self {
        self.signer = Signer(Some(signer));
        self
    }
}

/// The credential a request through `rule` gets, and the scope it needs.
pub(super) fn credential_of<'a>(
    rule: &'a AllowRule,
    method: &http::Method,
) -> Option<(&'a str, Scope)> {
    let name = rule.credential.as_deref()?;
    Some((
        name,
        rule.scope.unwrap_or_else(|| Scope::for_method(method)),
    ))
}

/// A request on its way out, as the signer sees it.
pub(super) struct Unsigned {
    pub method: http::Method,
    pub url: url::Url,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Decorates the request for `target`. A missing scope is a policy refusal (recorded as such,
/// with the scope); every other failure is the host's own error. Nothing is sent either way.
pub(super) async fn decorate(
    policy: &EgressPolicy,
    (credential, scope): (&str, Scope),
    target: &str,
    unsigned: Unsigned,
    record: &mut ExchangeRecord,
) -> Result<Unsigned, UpstreamError> {
    let connector = policy.connector();
    let Some(signer) = &policy.signer.0 else {
        return Err(UpstreamError::internal(format!(
            "connector '{connector}': its rule names credential '{credential}', but the host \
             holds no credentials for it (not sent unsigned)"
        )));
    };
    let mut request = http::Request::new(unsigned.body);
    *request.method_mut() = unsigned.method;
    *request.headers_mut() = unsigned.headers;
    *request.uri_mut() = unsigned.url.as_str().parse().map_err(|_| {
        UpstreamError::internal(format!(
            "connector '{connector}': the URL is not a valid URI"
        ))
    })?;
    match signer
        .decorate(credential, scope, target, &mut request)
        .await
    {
        Ok(()) => {}
        Err(error) => {
            let reason = format!("connector '{connector}': {error}");
            tracing::warn!(connector, url = %record.url, "{reason}");
            if let CredentialError::MissingScope { scope, .. } = &error {
                record.missing_scope = Some(*scope);
                return Err(UpstreamError {
                    refused: true,
                    ..UpstreamError::internal(reason)
                });
            }
            return Err(UpstreamError::internal(reason));
        }
    }
    let (parts, body) = request.into_parts();
    // The signer may have set a query parameter: the URL sent is the decorated one (never
    // printed: the record keeps the plugin's).
    let url = url::Url::parse(&parts.uri.to_string()).map_err(|e| {
        UpstreamError::internal(format!("connector '{connector}': decorated URL: {e}"))
    })?;
    Ok(Unsigned {
        method: parts.method,
        url,
        headers: parts.headers,
        body,
    })
}

/// Token endpoints reached through guarded [`Destination`]s, one per URL.
pub struct GuardedTokenEndpoint {
    timeout: Duration,
    destinations: Mutex<HashMap<(String, bool), Destination>>,
}

impl GuardedTokenEndpoint {
    /// Each request within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            destinations: Mutex::default(),
        }
    }
}

#[async_trait]
impl TokenEndpoint for GuardedTokenEndpoint {
    async fn post_form(
        &self,
        credential: &str,
        url: &str,
        allow_internal: bool,
        basic_auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<TokenEndpointReply, String> {
        let key = (url.to_string(), allow_internal);
        // `credential` only names the owner in refusals; the URL decides the destination.
        let known = self
            .destinations
            .lock()
            .ok()
            .and_then(|known| known.get(&key).cloned());
        let destination = match known {
            Some(destination) => destination,
            None => {
                let destination = Destination::new(
                    PolicyOwner::Credential(credential.to_string()),
                    url,
                    allow_internal,
                    self.timeout,
                )
                .map_err(|e| e.to_string())?;
                if let Ok(mut known) = self.destinations.lock() {
                    known.insert(key, destination.clone());
                }
                destination
            }
        };
        let (status, body) = destination
            .post_form(form, basic_auth, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| e.to_string())?;
        Ok(TokenEndpointReply {
            status: status.as_u16(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::{Answer, Server};

    #[tokio::test]
    async fn a_token_endpoint_is_guarded_and_its_answer_read_only_up_to_the_cap() {
        let big = vec![b'x'; MAX_TOKEN_RESPONSE * 2];
        let server = Server::start(Answer::new(200, &[], &big)).await;
        let endpoint = GuardedTokenEndpoint::new(Duration::from_secs(5));
        let url = server.url("/token");
        let reply = endpoint
            .post_form(
                "users",
                &url,
                false,
                Some(("client", "client-SECRET")),
                &[("grant_type", "refresh_token"), ("refresh_token", "r&1")],
            )
            .await
            .expect("answered");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body.len(),
            MAX_TOKEN_RESPONSE + 1,
            "read up to the cap, no more"
        );
        let sent = &server.requests()[0];
        assert_eq!(sent.body, b"grant_type=refresh_token&refresh_token=r%261");
        let head = sent.head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/x-www-form-urlencoded"),
            "{head}"
        );
        // "client:client-SECRET" in base64.
        assert!(
            sent.head.contains("Y2xpZW50OmNsaWVudC1TRUNSRVQ="),
            "{}",
            sent.head
        );

        // A server of its own: the first one may still be writing the body the host stopped
        // reading.
        let small = Server::start(Answer::new(200, &[], b"{}")).await;
        let by_name = small.url("/token").replace("127.0.0.1", "localhost");
        let refused = endpoint
            .post_form("users", &by_name, false, None, &[("grant_type", "x")])
            .await
            .expect_err("localhost is internal");
        assert!(
            refused.contains("credential 'users'")
                && refused.contains("set `allow_internal = true` on [credentials.users]"),
            "{refused}"
        );
        assert!(
            small.requests().is_empty(),
            "the refused request never left"
        );
        let opted_in = endpoint
            .post_form("users", &by_name, true, None, &[("grant_type", "x")])
            .await
            .expect("opted in");
        assert_eq!(opted_in.status, 200);
    }
}
