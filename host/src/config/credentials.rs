//! `[credentials.NAME]`: the credentials the host holds and adds to requests itself (see
//! `crate::credentials`), and their checks. Every secret is a [`SecretSource`] (an environment
//! variable or a file), never the value; `[host] token_key` seals the per-target tokens some
//! kinds keep in the store.

use super::validate::Checks;
use super::{Config, SecretSource};
use serde::Deserialize;
use std::time::Duration;

/// What a request through an allow rule needs of a per-target token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    /// The scope a method needs when the rule does not say: reading for GET, HEAD and
    /// OPTIONS, writing for every other method.
    pub fn for_method(method: &http::Method) -> Self {
        if matches!(
            *method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        ) {
            Self::Read
        } else {
            Self::Write
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[credentials.NAME]`, by `kind`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "kind")]
pub enum CredentialSettings {
    /// OAuth 1.0a, HMAC-SHA1 (RFC 5849). The token and token secret come from the target's
    /// linked tokens, or from `token`/`token_secret` for an app acting as itself.
    #[serde(rename = "oauth1")]
    OAuth1 {
        /// Sent in every request's `Authorization` header; not a secret, but kept out of the
        /// TOML all the same.
        consumer_key: SecretSource,
        /// Signs every request with the token secret (HMAC-SHA1).
        consumer_secret: SecretSource,
        /// An app-level access token (for an app acting as itself, not for linked users).
        #[serde(default)]
        token: Option<SecretSource>,
        /// That token's secret; set with `token`.
        #[serde(default)]
        token_secret: Option<SecretSource>,
    },
    /// OAuth 2.0 app-only bearer token.
    #[serde(rename = "bearer")]
    Bearer {
        /// Sent as `Authorization: Bearer <token>`.
        token: SecretSource,
    },
    /// OAuth 2.0 user tokens (linked per target) that expire and are refreshed by the host.
    #[serde(rename = "oauth2-user")]
    OAuth2User {
        /// The app's client id, sent to the token endpoint with each refresh.
        client_id: String,
        /// When set, the token endpoint is called with Basic auth (client id and secret).
        #[serde(default)]
        client_secret: Option<SecretSource>,
        /// The token endpoint refreshes go to (through egress, SSRF-guarded).
        token_url: String,
        /// Refresh this long before the access token expires.
        #[serde(default = "default_refresh_before", with = "humantime_serde")]
        refresh_before: Duration,
        /// Lets `token_url`'s host resolve to an internal address (loopback, private, …).
        #[serde(default)]
        allow_internal: bool,
    },
    /// An API key, in a header or a query parameter.
    #[serde(rename = "api-key")]
    ApiKey {
        /// The key itself.
        key: SecretSource,
        /// Sent in this request header (one of `header` and `query`).
        #[serde(default)]
        header: Option<String>,
        /// Or added as this query parameter.
        #[serde(default)]
        query: Option<String>,
    },
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(5 * 60)
}

impl CredentialSettings {
    /// The kind's name as the TOML spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OAuth1 { .. } => "oauth1",
            Self::Bearer { .. } => "bearer",
            Self::OAuth2User { .. } => "oauth2-user",
            Self::ApiKey { .. } => "api-key",
        }
    }

    /// Whether requests need a token linked per target (kept in the token store).
    pub fn needs_linked_tokens(&self) -> bool {
        match self {
            Self::OAuth1 { token, .. } => token.is_none(),
            Self::OAuth2User { .. } => true,
            Self::Bearer { .. } | Self::ApiKey { .. } => false,
        }
    }
}

/// The longest `refresh_before`: a day before expiry.
pub const REFRESH_BEFORE: std::ops::RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(24 * 3600);

/// The token key's length (XChaCha20-Poly1305).
pub const TOKEN_KEY_BYTES: usize = 32;

/// Decodes a token key: 64 hex digits or base64 (standard or URL-safe, padded or not) of 32
/// bytes. The error names the length, never the value.
pub fn decode_token_key(text: &str) -> Result<[u8; TOKEN_KEY_BYTES], String> {
    use base64::Engine;
    let text = text.trim();
    let decoded =
        if text.len() == 2 * TOKEN_KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
        };
    match decoded {
        Some(bytes) => <[u8; TOKEN_KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| {
            format!(
                "must be {TOKEN_KEY_BYTES} bytes (64 hex digits or base64), not {} bytes",
                bytes.len()
            )
        }),
        None => Err(format!(
            "must be {TOKEN_KEY_BYTES} bytes written as 64 hex digits or base64; it is neither \
             ({} characters)",
            text.len()
        )),
    }
}

/// Every check of `[credentials.*]`, the allow rules naming them and `host.token_key`.
pub(super) fn validate(config: &Config, checks: &mut Checks) {
    let resolve = |checks: &mut Checks, field: &str, source: &SecretSource| {
        if let Err(error) = source.resolve(&config.base_dir) {
            checks.error(field, error);
        }
    };
    for (name, credential) in &config.credentials {
        let at = |field: &str| format!("credentials.{name}.{field}");
        checks.name(&format!("credentials.{name}"), name, "credential");
        match credential {
            CredentialSettings::OAuth1 {
                consumer_key,
                consumer_secret,
                token,
                token_secret,
            } => {
                resolve(checks, &at("consumer_key"), consumer_key);
                resolve(checks, &at("consumer_secret"), consumer_secret);
                match (token, token_secret) {
                    (Some(token), Some(secret)) => {
                        resolve(checks, &at("token"), token);
                        resolve(checks, &at("token_secret"), secret);
                    }
                    (None, None) => {}
                    (Some(_), None) => checks.error(
                        &at("token"),
                        "an app-level token needs its token_secret too",
                    ),
                    (None, Some(_)) => checks.error(
                        &at("token_secret"),
                        "an app-level token_secret needs its token too",
                    ),
                }
            }
            CredentialSettings::Bearer { token } => resolve(checks, &at("token"), token),
            CredentialSettings::OAuth2User {
                client_id,
                client_secret,
                token_url,
                refresh_before,
                ..
            } => {
                if client_id.is_empty() {
                    checks.error(&at("client_id"), "must not be empty");
                }
                if let Some(secret) = client_secret {
                    resolve(checks, &at("client_secret"), secret);
                }
                match url::Url::parse(token_url) {
                    Err(e) => checks.error(&at("token_url"), e),
                    Ok(url) if url.scheme() != "http" && url.scheme() != "https" => {
                        checks.error(&at("token_url"), "must be an http or https URL");
                    }
                    Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                        checks.error(
                            &at("token_url"),
                            "must not carry credentials (set client_id and client_secret)",
                        );
                    }
                    Ok(_) => {}
                }
                checks.duration(&at("refresh_before"), *refresh_before, REFRESH_BEFORE);
            }
            CredentialSettings::ApiKey { key, header, query } => {
                resolve(checks, &at("key"), key);
                match (header, query) {
                    (Some(header), None) => {
                        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                            checks.error(&at("header"), format!("{header:?} is not a header name"));
                        } else if is_reserved_header(header) {
                            checks.error(
                                &at("header"),
                                format!("{header:?} is a header the HTTP client sets itself"),
                            );
                        }
                    }
                    (None, Some(query)) => {
                        let valid = !query.is_empty()
                            && query.len() <= 64
                            && query
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
                        if valid && !crate::redact::is_secret_param(query) {
                            // The key rides in the URL: every printed URL must hide it.
                            checks.error(
                                &at("query"),
                                format!(
                                    "{query:?} is not a name the URL redactor hides, so the key \
                                     would show in logged URLs; use a name like \"apikey\", \
                                     \"api_key\", \"key\" or \"token\""
                                ),
                            );
                        }
                        if !valid {
                            checks.error(
                                &at("query"),
                                format!(
                                    "{query:?} is not a query parameter name (1 to 64 letters, \
                                     digits, '-', '_', '.', '~')"
                                ),
                            );
                        }
                    }
                    _ => checks.error(
                        &format!("credentials.{name}"),
                        "an api-key takes exactly one of `header = \"X-Api-Key\"` or \
                         `query = \"apikey\"`",
                    ),
                }
            }
        }
    }
    for (connector, settings) in &config.connectors {
        for (index, rule) in settings.egress.allow.iter().enumerate() {
            let Some(credential) = &rule.credential else {
                if rule.scope.is_some() {
                    checks.error(
                        &format!("connectors.{connector}.egress.allow[{index}].scope"),
                        "applies only to a rule that names a credential",
                    );
                }
                continue;
            };
            if !config.credentials.contains_key(credential)
                && !checks.refused(&format!("credentials.{credential}"))
            {
                checks.error(
                    &format!("connectors.{connector}.egress.allow[{index}].credential"),
                    format!("no [credentials.{credential}] is defined"),
                );
            }
        }
    }
    check_token_keys(config, checks);
}

fn is_reserved_header(name: &str) -> bool {
    ["host", "content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
}

fn check_token_keys(config: &Config, checks: &mut Checks) {
    for (field, source) in [
        ("host.token_key", &config.host.token_key),
        ("host.token_key_previous", &config.host.token_key_previous),
    ] {
        let Some(source) = source else { continue };
        match source.resolve(&config.base_dir) {
            Err(error) => checks.error(field, error),
            Ok(secret) => {
                if let Err(problem) = decode_token_key(secret.expose()) {
                    checks.error(field, problem);
                }
            }
        }
    }
    if config.host.token_key.is_none() && !checks.refused("host.token_key") {
        if config.host.token_key_previous.is_some() {
            checks.error(
                "host.token_key_previous",
                "is only read beside a current host.token_key",
            );
        }
        for (name, credential) in &config.credentials {
            if credential.needs_linked_tokens() {
                checks.error(
                    &format!("credentials.{name}"),
                    format!(
                        "a {} credential keeps per-target tokens, sealed with a key the host \
                         must be given: set host.token_key = {{ env = \"TSUNAGI_TOKEN_KEY\" }} \
                         (32 random bytes as 64 hex digits or base64)",
                        credential.kind()
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every error of `text` (a config file in `dir`), one per line.
    fn errors(dir: &Path, text: &str) -> String {
        match Config::parse(text, &dir.join("t.toml")) {
            Ok(_) => String::new(),
            Err(errors) => errors.to_string(),
        }
    }

    fn secrets_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s"), "s3cret-VALUE").expect("secret");
        std::fs::write(dir.path().join("short_key"), "c2hvcnQ=").expect("key");
        std::fs::write(dir.path().join("key"), "00".repeat(32)).expect("key");
        dir
    }

    #[test]
    fn every_kind_is_checked_where_it_is_written_and_no_value_is_echoed() {
        let dir = secrets_dir();
        let text = r#"
[host]
token_key = { file = "short_key" }

[credentials.a]
kind = "oauth1"
consumer_key = { file = "s" }
consumer_secret = { file = "missing" }
token = { file = "s" }

[credentials.b]
kind = "api-key"
key = { file = "s" }
query = "q"

[credentials.c]
kind = "api-key"
key = { file = "s" }
header = "X-Api-Key"
query = "apikey"

[credentials.d]
kind = "oauth2-user"
client_id = "id"
token_url = "ftp://auth.example/token"
refresh_before = "2d"

[credentials.e]
kind = "bearer"
token = "plain-SECRET"

[connectors.x]
plugin = "x.wasm"
role = "poller"
[[connectors.x.egress.allow]]
host = "api.example"
credential = "nope"
[[connectors.x.egress.allow]]
host = "other.example"
scope = "write"
"#;
        let found = errors(dir.path(), text);
        for (line, field, message) in [
            (3, "host.token_key", "must be 32 bytes"),
            (
                8,
                "credentials.a.consumer_secret",
                "cannot read secret file",
            ),
            (9, "credentials.a.token", "needs its token_secret too"),
            (
                14,
                "credentials.b.query",
                "not a name the URL redactor hides",
            ),
            (16, "credentials.c", "exactly one of"),
            (
                25,
                "credentials.d.token_url",
                "must be an http or https URL",
            ),
            (26, "credentials.d.refresh_before", "must be between"),
            // Inside a tagged table the error stands at the table.
            (28, "credentials.e", "never hold the secret itself"),
            (
                37,
                "connectors.x.egress.allow[0].credential",
                "no [credentials.nope]",
            ),
            (
                40,
                "connectors.x.egress.allow[1].scope",
                "only to a rule that names",
            ),
        ] {
            let expected = format!("t.toml:{line}:");
            assert!(
                found
                    .lines()
                    .any(|l| l.contains(&expected) && l.contains(field) && l.contains(message)),
                "{field} at line {line}: {message}\n{found}"
            );
        }
        assert!(
            !found.contains("s3cret") && !found.contains("plain-SECRET"),
            "{found}"
        );
    }

    #[test]
    fn stored_tokens_need_a_token_key_and_keys_decode_from_hex_or_base64() {
        let dir = secrets_dir();
        let text = "[credentials.x]\nkind = \"oauth2-user\"\nclient_id = \"i\"\n\
                    token_url = \"https://auth.example/token\"\n";
        let found = errors(dir.path(), text);
        assert!(
            found.contains("credentials.x: a oauth2-user credential keeps per-target tokens")
                && found.contains("set host.token_key = { env = \"TSUNAGI_TOKEN_KEY\" }"),
            "{found}"
        );
        let keyed = format!("[host]\ntoken_key = {{ file = \"key\" }}\n{text}");
        assert_eq!(errors(dir.path(), &keyed), "");
        assert_eq!(decode_token_key(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert_eq!(
            decode_token_key("qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo=").unwrap(),
            [0xaa; 32]
        );
        let short = decode_token_key("c2hvcnQ=").unwrap_err();
        assert!(short.contains("not 5 bytes"), "{short}");
        assert!(
            decode_token_key("not a key!")
                .unwrap_err()
                .contains("neither")
        );
        assert_eq!(Scope::for_method(&http::Method::GET), Scope::Read);
        assert_eq!(Scope::for_method(&http::Method::POST), Scope::Write);
    }
}
