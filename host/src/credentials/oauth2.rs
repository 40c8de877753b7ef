//! OAuth 2.0 pieces that read outside input: the token endpoint's answer to a refresh (untrusted:
//! capped, its JSON shape checked with errors naming the field) and a linked user's tokens file
//! (`tsunagi targets add --tokens-file`). No error echoes a value: a misplaced token must not
//! end up in a message.

use super::CredentialError;
use super::vault::{LinkedToken, TokenSecret};
use crate::config::Scope;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use tsunagi_backends::Millis;

/// The largest token endpoint answer read (a token response is a few hundred bytes).
pub const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// The largest tokens file read.
pub const MAX_TOKENS_FILE: usize = 16 * 1024;
/// The longest token taken (access, refresh or OAuth 1.0a).
const MAX_TOKEN_CHARS: usize = 4096;
/// `expires_in` beyond ten years is not an expiry.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

/// The token endpoint's answer: its status and at most [`MAX_TOKEN_RESPONSE`] + 1 bytes of body
/// (so an oversized one is told apart).
#[derive(Debug, Clone)]
pub struct TokenEndpointReply {
    pub status: u16,
    pub body: Bytes,
}

/// How the host reaches a token endpoint: a form POST, through the same guards as every other
/// request the host sends (egress implements it). The error text must hold no secret.
#[async_trait]
pub trait TokenEndpoint: Send + Sync {
    async fn post_form(
        &self,
        credential: &str,
        url: &str,
        allow_internal: bool,
        basic_auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<TokenEndpointReply, String>;
}

/// A successful refresh, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds.
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for RefreshedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshedToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

fn object(body: &[u8], cap: usize, what: &str) -> Result<Map<String, Value>, String> {
    if body.len() > cap {
        return Err(format!("{what} is larger than {cap} bytes"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("{what} is not a JSON object")),
        Err(e) => Err(format!(
            "{what} is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

/// A token-like string field: present (when required), a string, not empty, not too long.
fn token_field(
    map: &Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<Option<String>, String> {
    match map.get(name) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(format!("`{name}` is missing")),
        Some(Value::String(text)) if text.is_empty() => Err(format!("`{name}` is empty")),
        Some(Value::String(text)) if text.chars().count() > MAX_TOKEN_CHARS => Err(format!(
            "`{name}` is longer than {MAX_TOKEN_CHARS} characters"
        )),
        Some(Value::String(text)) if text.chars().any(|c| c.is_control()) => {
            Err(format!("`{name}` holds control characters"))
        }
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

fn seconds_field(map: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Ok(Some(s)),
            _ => Err(format!(
                "`{name}` must be a whole number of seconds from 1 to {MAX_EXPIRES_IN}"
            )),
        },
        Some(_) => Err(format!("`{name}` is not a number")),
    }
}

/// Checks a token endpoint's 200 answer (RFC 6749 5.1): `access_token` a string, `token_type`
/// (if given) `bearer`, `expires_in` (if given) whole seconds, `refresh_token` (if given) a
/// string.
pub fn parse_token_response(body: &[u8]) -> Result<RefreshedToken, String> {
    let map = object(body, MAX_TOKEN_RESPONSE, "the answer")?;
    let access_token = token_field(&map, "access_token", true)?.unwrap_or_default();
    match map.get("token_type") {
        None => {}
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(_)) => return Err("`token_type` is not \"bearer\"".to_string()),
        Some(_) => return Err("`token_type` is not a string".to_string()),
    }
    Ok(RefreshedToken {
        access_token,
        refresh_token: token_field(&map, "refresh_token", false)?,
        expires_in: seconds_field(&map, "expires_in")?,
    })
}

/// The `error` code of an OAuth 2.0 error answer (RFC 6749 5.2), when it is a plain code.
pub fn error_code(body: &[u8]) -> Option<String> {
    let map = object(body, MAX_TOKEN_RESPONSE, "the answer").ok()?;
    match map.get("error") {
        Some(Value::String(code))
            if code.len() <= 64 && code.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
        {
            Some(code.clone())
        }
        _ => None,
    }
}

/// Reads a tokens file for a credential of `kind`: `{"token", "token_secret", "scopes"}` for
/// `oauth1`, `{"access_token", "refresh_token", "expires_in" | "expires_at", "scopes"}` for
/// `oauth2-user` (`expires_at` in Unix seconds). Unknown fields are refused.
pub(super) fn parse_tokens_file(
    credential: &str,
    kind: &str,
    text: &[u8],
    now: Millis,
) -> Result<LinkedToken, CredentialError> {
    let invalid = |problem: String| CredentialError::Setup {
        credential: credential.to_string(),
        reason: format!("the tokens file: {problem}"),
    };
    let map = object(text, MAX_TOKENS_FILE, "it").map_err(invalid)?;
    let allowed: &[&str] = match kind {
        "oauth1" => &["token", "token_secret", "scopes"],
        "oauth2-user" => &[
            "access_token",
            "refresh_token",
            "expires_in",
            "expires_at",
            "scopes",
        ],
        other => {
            return Err(invalid(format!(
                "a {other} credential keeps no per-target tokens"
            )));
        }
    };
    if let Some(unknown) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(invalid(format!(
            "unknown field `{unknown}` (expected: {})",
            allowed.join(", ")
        )));
    }
    let scopes = match map.get("scopes") {
        None => return Err(invalid("`scopes` is missing (e.g. [\"read\"])".to_string())),
        Some(Value::Array(names)) => {
            let mut scopes = Vec::new();
            for name in names {
                match name.as_str().and_then(Scope::parse) {
                    Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
                    Some(_) => {}
                    None => {
                        return Err(invalid(
                            "`scopes` may hold only \"read\" and \"write\"".to_string(),
                        ));
                    }
                }
            }
            scopes.sort();
            scopes
        }
        Some(_) => return Err(invalid("`scopes` is not a list".to_string())),
    };
    let field = |name: &str, required: bool| token_field(&map, name, required).map_err(invalid);
    let (secret, expires_at) = if kind == "oauth1" {
        let secret = TokenSecret::OAuth1 {
            token: field("token", true)?.unwrap_or_default(),
            token_secret: field("token_secret", true)?.unwrap_or_default(),
        };
        (secret, None)
    } else {
        let expires_at = match (
            seconds_field(&map, "expires_in").map_err(invalid)?,
            map.get("expires_at"),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "takes one of `expires_in` or `expires_at`, not both".to_string(),
                ));
            }
            (Some(seconds), None) => Some(now.saturating_add(seconds.saturating_mul(1000))),
            (None, Some(Value::Number(at))) => match at.as_i64() {
                Some(at) if at > 0 => Some(at.saturating_mul(1000)),
                _ => return Err(invalid("`expires_at` must be Unix seconds".to_string())),
            },
            (None, Some(_)) => return Err(invalid("`expires_at` is not a number".to_string())),
            (None, None) => None,
        };
        let secret = TokenSecret::OAuth2 {
            access_token: field("access_token", true)?.unwrap_or_default(),
            refresh_token: field("refresh_token", false)?,
        };
        (secret, expires_at)
    };
    Ok(LinkedToken {
        secret,
        scopes,
        expires_at,
        needs_relink: None,
    })
}
