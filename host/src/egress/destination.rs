//! A destination the host itself sends to (a webhook sink's URL), through the same guards as
//! a plugin's request: an allowlist (the URL's own scheme, host and port is its one rule), the
//! [`GuardedResolver`] after DNS (an internal address only when the URL spells that address
//! itself or the owner sets `allow_internal`), no proxy, and a redirect policy that checks
//! every hop against the rule — a `307` pointing at an internal address is refused, not
//! followed.
//!
//! Credentials in the configured URL (`https://user:token@hooks.example/…`) are the
//! operator's, not a plugin's: they are taken out of the URL and sent as Basic auth, so what
//! the policy checks and what is printed never carries them.

use super::{EgressPolicy, EgressRefusal, GuardedResolver, PolicyOwner, refusal_in, source_chain};
use crate::config::AllowRule;
use crate::redact;
use std::sync::Arc;
use std::time::Duration;

/// Redirect hops a destination follows (each one checked) before giving up.
const MAX_REDIRECTS: usize = 5;

/// Why a destination could not be set up or reached. Every URL in it is redacted.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("{}{refusal}", redirect_prefix(.redirect))]
    Refused {
        refusal: EgressRefusal,
        /// Refused at a redirect hop (rather than at the first request's DNS answer).
        redirect: bool,
    },
    #[error("{reason}")]
    Transport { reason: String },
    #[error("{url} is not a usable URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client for {url}: {reason}")]
    Client { url: String, reason: String },
}

impl DestinationError {
    /// Whether the host's own policy refused the request.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// One fixed destination and the guarded client that reaches it.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The URL without credentials: the only copy that makes requests.
    url: url::Url,
    /// Redacted, for messages.
    printed: String,
    basic_auth: Option<(String, Option<String>)>,
    client: reqwest::Client,
}

impl Destination {
    /// The destination `url` of `owner`, reached within `timeout` per attempt.
    pub fn new(
        owner: PolicyOwner,
        url: &str,
        allow_internal: bool,
        timeout: Duration,
    ) -> Result<Self, DestinationError> {
        let printed = redact::url(url).into_owned();
        let invalid = |reason: &str| DestinationError::InvalidUrl {
            url: printed.clone(),
            reason: reason.to_string(),
        };
        let mut parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let basic_auth = (!parsed.username().is_empty() || parsed.password().is_some())
            .then(|| (decode(parsed.username()), parsed.password().map(decode)));
        parsed
            .set_username("")
            .and_then(|()| parsed.set_password(None))
            .map_err(|()| invalid("its credentials cannot be taken out"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid("it has no host"))?
            .to_string();
        let rule = AllowRule {
            scheme: Some(parsed.scheme().to_string()),
            host,
            port: parsed.port_or_known_default(),
            allow_internal,
            ..AllowRule::default()
        };
        let policy = Arc::new(EgressPolicy::with_owner(owner, vec![rule]));
        policy
            .check(&parsed)
            .map_err(|refusal| DestinationError::Refused {
                refusal,
                redirect: false,
            })?;
        let hops = policy.clone();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(policy, allow_internal)))
            .timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match hops.check(attempt.url()) {
                    Ok(_) => attempt.follow(),
                    Err(refusal) => attempt.error(refusal),
                }
            }))
            .build()
            .map_err(|e| DestinationError::Client {
                url: printed.clone(),
                reason: redact::text(&e.to_string()).into_owned(),
            })?;
        Ok(Self {
            url: parsed,
            printed,
            basic_auth,
            client,
        })
    }

    /// The URL as it may be printed (credentials hidden).
    pub fn printed_url(&self) -> &str {
        &self.printed
    }

    /// POSTs `body` as JSON; answers the final status (after the redirects the rule allows).
    pub async fn post_json<T: serde::Serialize + ?Sized>(
        &self,
        body: &T,
    ) -> Result<http::StatusCode, DestinationError> {
        let mut request = self.client.post(self.url.clone()).json(body);
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, password.as_ref());
        }
        let response = request.send().await.map_err(|error| {
            if let Some(refusal) = refusal_in(&error) {
                return DestinationError::Refused {
                    refusal: refusal.clone(),
                    redirect: error.is_redirect(),
                };
            }
            let reason = format!("{error}: {}", source_chain(&error));
            DestinationError::Transport {
                reason: redact::text(&reason).into_owned(),
            }
        })?;
        Ok(response.status())
    }
}

impl Destination {
    /// POSTs `form` (`application/x-www-form-urlencoded`), with Basic auth when given, and
    /// reads at most `max_bytes` + 1 bytes of the answer (so a caller can tell an oversized one
    /// apart without the host holding it).
    pub async fn post_form(
        &self,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
        max_bytes: usize,
    ) -> Result<(http::StatusCode, bytes::Bytes), DestinationError> {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(encoded);
        if let Some((user, password)) = basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let transport = |error: reqwest::Error| {
            if let Some(refusal) = refusal_in(&error) {
                return DestinationError::Refused {
                    refusal: refusal.clone(),
                    redirect: error.is_redirect(),
                };
            }
            let reason = format!("{error}: {}", source_chain(&error));
            DestinationError::Transport {
                reason: redact::text(&reason).into_owned(),
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            let room = (max_bytes + 1).saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() > max_bytes {
                break;
            }
        }
        Ok((status, body.freeze()))
    }
}

fn redirect_prefix(redirect: &bool) -> &'static str {
    if *redirect {
        "a redirect was refused: "
    } else {
        ""
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::{Answer, Server};

    fn sink(url: &str, allow_internal: bool) -> Destination {
        Destination::new(
            PolicyOwner::Sink("hook".into()),
            url,
            allow_internal,
            Duration::from_secs(5),
        )
        .expect("a destination")
    }

    #[tokio::test]
    async fn a_redirect_to_another_address_is_refused_and_never_followed() {
        let internal = Server::start(Answer::new(204, &[], b"")).await;
        let landing = internal.url("/landing");
        let redirecting =
            Server::start(Answer::new(307, &[("location", landing.as_str())], b"")).await;
        let error = sink(&redirecting.url("/hook"), false)
            .post_json(&["item"])
            .await
            .expect_err("the hop is refused");
        assert!(error.is_refusal(), "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "a redirect was refused: egress refused by sink 'hook' allowlist: {landing}: \
                 127.0.0.1 is a loopback address (RFC 1122)"
            )),
            "{text}"
        );
        assert_eq!(redirecting.requests().len(), 1);
        assert!(
            internal.requests().is_empty(),
            "nothing reached the redirect's target"
        );
    }

    #[tokio::test]
    async fn a_redirect_within_the_urls_own_origin_is_followed() {
        let server = Server::start(Answer::new(307, &[("location", "/moved")], b"")).await;
        let error = sink(&server.url("/hook"), false)
            .post_json(&["item"])
            .await
            .expect_err("the server redirects forever");
        assert!(
            error.to_string().contains("more than 5 redirects"),
            "{error}"
        );
        let requests = server.requests();
        assert_eq!(
            requests.len(),
            1 + MAX_REDIRECTS,
            "the first request and every hop allowed"
        );
        assert!(
            requests[1].head.starts_with("POST /moved "),
            "{}",
            requests[1].head
        );
        assert_eq!(requests[1].body, br#"["item"]"#, "a 307 keeps the body");
    }

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_needs_allow_internal() {
        let server = Server::start(Answer::new(204, &[], b"")).await;
        let by_name = server.url("/hook").replace("127.0.0.1", "localhost");
        let error = sink(&by_name, false)
            .post_json(&["item"])
            .await
            .expect_err("localhost is internal");
        assert!(error.is_refusal(), "{error}");
        assert!(
            error
                .to_string()
                .contains("set `allow_internal = true` on [sinks.hook]"),
            "{error}"
        );
        assert!(server.requests().is_empty());
        let status = sink(&by_name, true)
            .post_json(&["item"])
            .await
            .expect("opted in");
        assert_eq!(status, 204);
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn credentials_in_the_url_go_as_basic_auth_and_are_never_printed() {
        let server = Server::start(Answer::new(500, &[], b"")).await;
        let url = server
            .url("/hook?token=hunter3")
            .replace("http://", "http://alice:hunter2@");
        let destination = sink(&url, false);
        assert!(
            !destination.printed_url().contains("hunter"),
            "{}",
            destination.printed_url()
        );
        let status = destination.post_json(&["item"]).await.expect("answered");
        assert_eq!(status, 500);
        let head = server.requests()[0].head.to_ascii_lowercase();
        // alice:hunter2 in base64.
        assert!(
            head.contains("authorization: basic ywxpy2u6ahvudgvymg=="),
            "{head}"
        );
        assert!(head.starts_with("post /hook?token=hunter3 "), "{head}");
    }
}
