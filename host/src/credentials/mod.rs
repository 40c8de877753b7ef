//! Credentials held by the host: the one place that knows secrets and adds them to requests.
//!
//! TOML names a credential (`[credentials.NAME]`: OAuth 1.0a HMAC-SHA1, OAuth 2.0 app-only
//! bearer, OAuth 2.0 user tokens with refresh, API keys in a header or a query parameter) and
//! where each secret comes from; an allow rule names the credential its requests get. Egress
//! hands each such request to a [`RequestSigner`] (implemented by [`Credentials`]) with the
//! call's target, after the allowlist and before it leaves; the plugin never sees what was
//! added. Per-target tokens (a linked user's) are sealed at rest ([`TokenVault`]) and carry
//! their scopes: a request needing a scope the target's token lacks is refused here, as a
//! policy refusal ([`CredentialError::MissingScope`]).
//!
//! OAuth 2.0 access tokens are refreshed `refresh_before` their expiry, once per credential
//! and target even under concurrent calls (a process-wide single flight, re-reading the store
//! under it), and the rotated pair is stored before it is used. The token endpoint is reached
//! through a [`TokenEndpoint`], which egress implements with its guarded destinations, so this
//! module never imports egress.

pub mod oauth1;
mod oauth2;
mod vault;

pub use oauth2::{
    MAX_TOKEN_RESPONSE, RefreshedToken, TokenEndpoint, TokenEndpointReply, parse_token_response,
};
pub use vault::{LinkedToken, RekeyReport, TokenKeys, TokenSecret, TokenVault};

use crate::clock::SharedClock;
use crate::config::{Config, CredentialSettings, Scope, Secret};
use crate::redact;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tsunagi_backends::TokenStore;
use tsunagi_backends::coordination::ClusterLock;

/// Why a credential could not decorate a request. Names the credential and the target
/// (redacted), never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Least privilege: the target's token does not grant what the request needs. A policy
    /// refusal: nothing left the host.
    #[error(
        "credential '{credential}': the token of target {target} lacks the '{scope}' scope this \
         request needs (it grants: {granted}); refused before sending. Link the user again with \
         \"scopes\" including \"{scope}\", or set `scope` on the allow rule"
    )]
    MissingScope {
        credential: String,
        target: String,
        scope: Scope,
        granted: String,
    },
    #[error(
        "credential '{credential}': target {target} has no linked token; link one with \
         `tsunagi targets add CONNECTOR TARGET --tokens-file FILE` (not sent unsigned)"
    )]
    NotLinked { credential: String, target: String },
    #[error(
        "credential '{credential}': the token of target {target} must be linked again: {reason}"
    )]
    NeedsRelink {
        credential: String,
        target: String,
        reason: String,
    },
    #[error("credential '{0}' is not defined in [credentials]")]
    Unknown(String),
    #[error("credential '{credential}': refreshing the token of target {target} failed: {reason}")]
    Refresh {
        credential: String,
        target: String,
        reason: String,
    },
    #[error(
        "credential '{credential}': the stored token of target {target} cannot be read: {reason}"
    )]
    Unreadable {
        credential: String,
        target: String,
        reason: String,
    },
    #[error("credential '{credential}': {reason}")]
    Setup { credential: String, reason: String },
    #[error("token key {0}")]
    Key(String),
    #[error("sealing a token: {0}")]
    Seal(String),
    #[error("token store: {0}")]
    Store(String),
}

impl CredentialError {
    /// Whether this is a least-privilege refusal (the token lacks the scope): a policy
    /// refusal, not a failure of the upstream or the target. A handler job refused so is
    /// skipped, not retried.
    pub fn is_missing_scope(&self) -> bool {
        matches!(self, Self::MissingScope { .. })
    }
}

/// What egress asks of the credentials: decorate (sign) a request for the call's target, with
/// the credential its allow rule names and the scope it needs. The credential replaces any
/// `Authorization` header (and API key header or parameter) the plugin set.
#[async_trait]
pub trait RequestSigner: Send + Sync {
    async fn decorate(
        &self,
        credential: &str,
        scope: Scope,
        target: &str,
        request: &mut http::Request<Bytes>,
    ) -> Result<(), CredentialError>;
}

/// Where an API key goes.
#[derive(Debug, Clone)]
enum KeyPlace {
    Header(http::HeaderName),
    Query(String),
}

/// OAuth 2.0 user-token settings.
#[derive(Debug, Clone)]
struct OAuth2Settings {
    client_id: String,
    client_secret: Option<Secret>,
    token_url: String,
    refresh_before: Duration,
    allow_internal: bool,
}

/// One credential, its secrets resolved.
#[derive(Debug, Clone)]
enum Kind {
    OAuth1 {
        consumer_key: Secret,
        consumer_secret: Secret,
        app_token: Option<(Secret, Secret)>,
    },
    Bearer(Secret),
    OAuth2User(OAuth2Settings),
    ApiKey {
        key: Secret,
        place: KeyPlace,
    },
}

/// One lock per (credential, subject).
type FlightLocks = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// Locks for refreshes in flight, per (credential, subject).
#[derive(Default)]
struct Flights {
    locks: std::sync::Mutex<FlightLocks>,
}

/// The process's flights, shared by every [`Credentials`]: a hot reload builds new ones while
/// calls on the old version still run.
static PROCESS_FLIGHTS: LazyLock<Arc<Flights>> = LazyLock::new(Default::default);

impl Flights {
    fn lock_map(&self) -> std::sync::MutexGuard<'_, FlightLocks> {
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn flight(&self, credential: &str, subject: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.lock_map()
            .entry((credential.to_string(), subject.to_string()))
            .or_default()
            .clone()
    }

    /// Forgets the lock of a finished flight nobody else holds or waits for (clones are made
    /// under the map's lock, so a count of two is the map's and ours).
    fn land(&self, credential: &str, subject: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut flights = self.lock_map();
        if Arc::strong_count(&lock) == 2 {
            flights.remove(&(credential.to_string(), subject.to_string()));
        }
    }
}

/// How long a host may hold the cluster's lock on one refresh: past it (a host that died
/// mid-refresh) another host refreshes.
const CLUSTER_REFRESH_TTL: Duration = Duration::from_secs(30);
/// Waiting for another host's refresh: first pause, doubling up to the longest.
const CLUSTER_WAIT_FIRST: Duration = Duration::from_millis(20);
const CLUSTER_WAIT_LONGEST: Duration = Duration::from_millis(500);

/// Makes OAuth 1.0a nonces: 32 random letters and digits.
pub fn random_nonce() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The credentials of a config, their secrets resolved, with the token vault (when
/// `host.token_key` is set) and the token endpoint refreshes go through.
pub struct Credentials {
    kinds: BTreeMap<String, Kind>,
    vault: Option<TokenVault>,
    clock: SharedClock,
    endpoint: Option<Arc<dyn TokenEndpoint>>,
    nonce: Box<dyn Fn() -> String + Send + Sync>,
    flights: Arc<Flights>,
    /// Hosts sharing the token store refresh one at a time through it (`[backends] cluster`).
    cluster_lock: Option<Arc<dyn ClusterLock>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("names", &self.kinds.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Resolves every `[credentials.*]` secret and the token keys.
    pub fn from_config(
        config: &Config,
        store: Arc<dyn TokenStore>,
        clock: SharedClock,
    ) -> Result<Self, CredentialError> {
        let mut kinds = BTreeMap::new();
        for (name, settings) in &config.credentials {
            let resolve = |field: &str, source: &crate::config::SecretSource| {
                source
                    .resolve(&config.base_dir)
                    .map_err(|e| CredentialError::Setup {
                        credential: name.clone(),
                        reason: format!("credentials.{name}.{field}: {e}"),
                    })
            };
            let kind = match settings {
                CredentialSettings::OAuth1 {
                    consumer_key,
                    consumer_secret,
                    token,
                    token_secret,
                } => Kind::OAuth1 {
                    consumer_key: resolve("consumer_key", consumer_key)?,
                    consumer_secret: resolve("consumer_secret", consumer_secret)?,
                    app_token: match (token, token_secret) {
                        (Some(token), Some(secret)) => {
                            Some((resolve("token", token)?, resolve("token_secret", secret)?))
                        }
                        _ => None,
                    },
                },
                CredentialSettings::Bearer { token } => Kind::Bearer(resolve("token", token)?),
                CredentialSettings::OAuth2User {
                    client_id,
                    client_secret,
                    token_url,
                    refresh_before,
                    allow_internal,
                } => Kind::OAuth2User(OAuth2Settings {
                    client_id: client_id.clone(),
                    client_secret: client_secret
                        .as_ref()
                        .map(|s| resolve("client_secret", s))
                        .transpose()?,
                    token_url: token_url.clone(),
                    refresh_before: *refresh_before,
                    allow_internal: *allow_internal,
                }),
                CredentialSettings::ApiKey { key, header, query } => {
                    let place = match (header, query) {
                        (Some(header), _) => KeyPlace::Header(
                            http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                                CredentialError::Setup {
                                    credential: name.clone(),
                                    reason: format!("{header:?} is not a header name"),
                                }
                            })?,
                        ),
                        (None, Some(query)) => KeyPlace::Query(query.clone()),
                        (None, None) => {
                            return Err(CredentialError::Setup {
                                credential: name.clone(),
                                reason: "an api-key needs `header` or `query`".to_string(),
                            });
                        }
                    };
                    Kind::ApiKey {
                        key: resolve("key", key)?,
                        place,
                    }
                }
            };
            kinds.insert(name.clone(), kind);
        }
        let vault = TokenKeys::from_config(config)?.map(|keys| TokenVault::new(keys, store));
        Ok(Self {
            kinds,
            vault,
            clock,
            endpoint: None,
            nonce: Box::new(random_nonce),
            flights: PROCESS_FLIGHTS.clone(),
            cluster_lock: None,
        })
    }

    /// Refreshes one at a time across every host taking `lock` (hosts sharing the token
    /// store): two hosts rotating one refresh token at once would leave one of them with a
    /// refresh token the endpoint no longer takes.
    pub fn with_cluster_lock(mut self, lock: Option<Arc<dyn ClusterLock>>) -> Self {
        self.cluster_lock = lock;
        self
    }

    /// Its own flights, as a credentials object of another process has (tests of hosts).
    #[cfg(test)]
    pub(crate) fn in_another_process(mut self) -> Self {
        self.flights = Arc::default();
        self
    }

    /// Where OAuth 2.0 refreshes are sent.
    pub fn with_token_endpoint(mut self, endpoint: Arc<dyn TokenEndpoint>) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Replaces the OAuth 1.0a nonce source (tests state exact signatures).
    pub fn with_nonce(mut self, nonce: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.nonce = Box::new(nonce);
        self
    }

    /// The vault of linked tokens, when `host.token_key` is set.
    pub fn vault(&self) -> Option<&TokenVault> {
        self.vault.as_ref()
    }

    /// Whether `credential` keeps tokens per target (they must be linked).
    pub fn needs_linked_tokens(&self, credential: &str) -> bool {
        matches!(
            self.kinds.get(credential),
            Some(
                Kind::OAuth1 {
                    app_token: None,
                    ..
                } | Kind::OAuth2User(_)
            )
        )
    }

    fn vault_for(&self, credential: &str) -> Result<&TokenVault, CredentialError> {
        self.vault.as_ref().ok_or_else(|| CredentialError::Setup {
            credential: credential.to_string(),
            reason: "keeps per-target tokens, and host.token_key is not set".to_string(),
        })
    }

    /// Parses a linked user's tokens file for `credential` and stores it sealed for
    /// `subject`.
    pub async fn link(
        &self,
        credential: &str,
        subject: &str,
        tokens_file: &[u8],
    ) -> Result<LinkedToken, CredentialError> {
        let kind = self
            .kinds
            .get(credential)
            .ok_or_else(|| CredentialError::Unknown(credential.to_string()))?;
        let now = self.clock.now_ms();
        let token = oauth2::parse_tokens_file(credential, kind_name(kind), tokens_file, now)?;
        self.vault_for(credential)?
            .put(credential, subject, &token, now)
            .await?;
        Ok(token)
    }

    /// The linked token of `target`, checked: linked, not marked for relinking, granting
    /// `scope`.
    async fn linked(
        &self,
        credential: &str,
        scope: Scope,
        target: &str,
    ) -> Result<LinkedToken, CredentialError> {
        let shown = || redact::url(target).into_owned();
        let token = self
            .vault_for(credential)?
            .get(credential, target)
            .await?
            .ok_or_else(|| CredentialError::NotLinked {
                credential: credential.to_string(),
                target: shown(),
            })?;
        if let Some(reason) = &token.needs_relink {
            return Err(CredentialError::NeedsRelink {
                credential: credential.to_string(),
                target: shown(),
                reason: reason.clone(),
            });
        }
        if !token.scopes.contains(&scope) {
            let granted: Vec<&str> = token.scopes.iter().map(|s| s.name()).collect();
            return Err(CredentialError::MissingScope {
                credential: credential.to_string(),
                target: shown(),
                scope,
                granted: if granted.is_empty() {
                    "none".to_string()
                } else {
                    granted.join(", ")
                },
            });
        }
        Ok(token)
    }

    /// The access token to send for `target`, refreshed first when it is within
    /// `refresh_before` of its expiry.
    async fn oauth2_access(
        &self,
        credential: &str,
        settings: &OAuth2Settings,
        scope: Scope,
        target: &str,
    ) -> Result<String, CredentialError> {
        let token = self.linked(credential, scope, target).await?;
        if !self.due_for_refresh(&token, settings) {
            return access_token(credential, target, &token);
        }
        let lock = self.flights.flight(credential, target);
        let outcome = {
            let _held = lock.lock().await;
            self.refresh_once_in_cluster(credential, settings, scope, target)
                .await
        };
        self.flights.land(credential, target, lock);
        access_token(credential, target, &outcome?)
    }

    /// Under this process's flight: refreshes unless whoever held it before already did (the
    /// store has the truth), and with a cluster lock, only while holding it, waiting for
    /// another host's refresh to land in the store instead of making a second one.
    async fn refresh_once_in_cluster(
        &self,
        credential: &str,
        settings: &OAuth2Settings,
        scope: Scope,
        target: &str,
    ) -> Result<LinkedToken, CredentialError> {
        let Some(cluster) = &self.cluster_lock else {
            let token = self.linked(credential, scope, target).await?;
            if !self.due_for_refresh(&token, settings) {
                return Ok(token);
            }
            return self
                .refresh_or_keep(credential, settings, target, token)
                .await;
        };
        let name = format!("oauth2-refresh:{credential}:{target}");
        let holder = format!("{}-{}", std::process::id(), random_nonce());
        let give_up = tokio::time::Instant::now() + CLUSTER_REFRESH_TTL;
        let mut pause = CLUSTER_WAIT_FIRST;
        loop {
            let token = self.linked(credential, scope, target).await?;
            if !self.due_for_refresh(&token, settings) {
                return Ok(token);
            }
            match cluster.try_lock(&name, &holder, CLUSTER_REFRESH_TTL).await {
                Ok(true) => {
                    // The host before may have stored its refresh just now.
                    let token = self.linked(credential, scope, target).await?;
                    let outcome = if self.due_for_refresh(&token, settings) {
                        self.refresh_or_keep(credential, settings, target, token)
                            .await
                    } else {
                        Ok(token)
                    };
                    if let Err(error) = cluster.unlock(&name, &holder).await {
                        tracing::warn!(credential, target = %redact::url(target),
                            "cannot give the cluster's refresh lock back (it expires by itself): {error}");
                    }
                    return outcome;
                }
                Ok(false) if tokio::time::Instant::now() < give_up => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(CLUSTER_WAIT_LONGEST);
                }
                Ok(false) => {
                    // Other hosts kept the lock all this time: a second refresh could rotate
                    // the token under them, so keep the current one while it lasts.
                    if token.expires_at.is_some_and(|at| at > self.clock.now_ms()) {
                        return Ok(token);
                    }
                    return Err(CredentialError::Refresh {
                        credential: credential.to_string(),
                        target: redact::url(target).into_owned(),
                        reason: format!(
                            "another host held the refresh for over {CLUSTER_REFRESH_TTL:?}"
                        ),
                    });
                }
                Err(error) => {
                    tracing::warn!(credential, target = %redact::url(target),
                        "the cluster's refresh lock cannot be reached; refreshing on this host alone: {error}");
                    return self
                        .refresh_or_keep(credential, settings, target, token)
                        .await;
                }
            }
        }
    }

    fn due_for_refresh(&self, token: &LinkedToken, settings: &OAuth2Settings) -> bool {
        let before = i64::try_from(settings.refresh_before.as_millis()).unwrap_or(i64::MAX);
        token
            .expires_at
            .is_some_and(|at| at.saturating_sub(before) <= self.clock.now_ms())
    }

    /// Refreshes; on a failure that is not the token's (the endpoint down), keeps using the
    /// current access token while it has not expired.
    async fn refresh_or_keep(
        &self,
        credential: &str,
        settings: &OAuth2Settings,
        target: &str,
        token: LinkedToken,
    ) -> Result<LinkedToken, CredentialError> {
        match self.refresh(credential, settings, target, &token).await {
            Ok(fresh) => Ok(fresh),
            Err(error @ CredentialError::Refresh { .. })
                if token.expires_at.is_some_and(|at| at > self.clock.now_ms()) =>
            {
                tracing::warn!(credential, target = %redact::url(target),
                    "{error}; the current access token is used until it expires");
                Ok(token)
            }
            Err(error) => Err(error),
        }
    }

    async fn refresh(
        &self,
        credential: &str,
        settings: &OAuth2Settings,
        target: &str,
        token: &LinkedToken,
    ) -> Result<LinkedToken, CredentialError> {
        let shown = redact::url(target).into_owned();
        let failed = |reason: String| CredentialError::Refresh {
            credential: credential.to_string(),
            target: shown.clone(),
            reason,
        };
        let TokenSecret::OAuth2 {
            refresh_token: Some(refresh_token),
            ..
        } = &token.secret
        else {
            return Err(CredentialError::NeedsRelink {
                credential: credential.to_string(),
                target: shown.clone(),
                reason: "the access token expires and no refresh token was linked".to_string(),
            });
        };
        let endpoint = self
            .endpoint
            .as_ref()
            .ok_or_else(|| failed("no token endpoint client is configured".to_string()))?;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let basic = settings
            .client_secret
            .as_ref()
            .map(|secret| (settings.client_id.as_str(), secret.expose()));
        if basic.is_none() {
            form.push(("client_id", settings.client_id.as_str()));
        }
        let reply = endpoint
            .post_form(
                credential,
                &settings.token_url,
                settings.allow_internal,
                basic,
                &form,
            )
            .await
            .map_err(failed)?;
        let now = self.clock.now_ms();
        let refreshed = match reply.status {
            200 => parse_token_response(&reply.body).map_err(|problem| {
                failed(format!(
                    "the token endpoint's answer is not usable: {problem}"
                ))
            })?,
            400 | 401 if oauth2::error_code(&reply.body).as_deref() == Some("invalid_grant") => {
                let reason = format!(
                    "the token endpoint refused its refresh token (HTTP {}, invalid_grant)",
                    reply.status
                );
                self.vault_for(credential)?
                    .mark_relink(credential, target, &reason)
                    .await?;
                tracing::warn!(credential, target = %shown, "{reason}: marked for relinking");
                return Err(CredentialError::NeedsRelink {
                    credential: credential.to_string(),
                    target: shown,
                    reason,
                });
            }
            status => {
                let code = oauth2::error_code(&reply.body)
                    .map(|code| format!(" ({code})"))
                    .unwrap_or_default();
                return Err(failed(format!(
                    "the token endpoint answered HTTP {status}{code}"
                )));
            }
        };
        let fresh = LinkedToken {
            secret: TokenSecret::OAuth2 {
                access_token: refreshed.access_token,
                // Rotated on use; a server that does not rotate keeps the old one valid.
                refresh_token: refreshed
                    .refresh_token
                    .or_else(|| Some(refresh_token.clone())),
            },
            scopes: token.scopes.clone(),
            expires_at: refreshed
                .expires_in
                .map(|seconds| now.saturating_add(seconds.saturating_mul(1000))),
            needs_relink: None,
        };
        // Stored before it is used: a crash after this keeps the rotated refresh token.
        self.vault_for(credential)?
            .put(credential, target, &fresh, now)
            .await?;
        tracing::debug!(credential, target = %shown, "access token refreshed");
        Ok(fresh)
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::OAuth1 { .. } => "oauth1",
        Kind::Bearer(_) => "bearer",
        Kind::OAuth2User(_) => "oauth2-user",
        Kind::ApiKey { .. } => "api-key",
    }
}

fn access_token(
    credential: &str,
    target: &str,
    token: &LinkedToken,
) -> Result<String, CredentialError> {
    match &token.secret {
        TokenSecret::OAuth2 { access_token, .. } => Ok(access_token.clone()),
        TokenSecret::OAuth1 { .. } => Err(CredentialError::Unreadable {
            credential: credential.to_string(),
            target: redact::url(target).into_owned(),
            reason: "it holds an OAuth 1.0a token, not an OAuth 2.0 one".to_string(),
        }),
    }
}

/// A header value that holds a secret: marked sensitive, so the HTTP stack never prints it.
fn secret_header(credential: &str, value: &str) -> Result<http::HeaderValue, CredentialError> {
    let mut header = http::HeaderValue::from_str(value).map_err(|_| CredentialError::Setup {
        credential: credential.to_string(),
        reason: "the secret holds characters a header cannot carry".to_string(),
    })?;
    header.set_sensitive(true);
    Ok(header)
}

fn bearer(credential: &str, token: &str) -> Result<http::HeaderValue, CredentialError> {
    secret_header(credential, &format!("Bearer {token}"))
}

#[async_trait]
impl RequestSigner for Credentials {
    async fn decorate(
        &self,
        credential: &str,
        scope: Scope,
        target: &str,
        request: &mut http::Request<Bytes>,
    ) -> Result<(), CredentialError> {
        let kind = self
            .kinds
            .get(credential)
            .ok_or_else(|| CredentialError::Unknown(credential.to_string()))?;
        // Whatever the plugin put there is replaced, never merged.
        request.headers_mut().remove(http::header::AUTHORIZATION);
        let authorization = match kind {
            Kind::Bearer(token) => Some(bearer(credential, token.expose())?),
            Kind::OAuth2User(settings) => {
                let access = self
                    .oauth2_access(credential, settings, scope, target)
                    .await?;
                Some(bearer(credential, &access)?)
            }
            Kind::ApiKey { key, place } => {
                match place {
                    KeyPlace::Header(name) => {
                        request
                            .headers_mut()
                            .insert(name.clone(), secret_header(credential, key.expose())?);
                    }
                    KeyPlace::Query(name) => set_query_parameter(request, name, key.expose())?,
                }
                None
            }
            Kind::OAuth1 {
                consumer_key,
                consumer_secret,
                app_token,
            } => {
                let linked;
                let token = match app_token {
                    Some((token, secret)) => (token.expose(), secret.expose()),
                    None => {
                        linked = self.linked(credential, scope, target).await?;
                        match &linked.secret {
                            TokenSecret::OAuth1 {
                                token,
                                token_secret,
                            } => (token.as_str(), token_secret.as_str()),
                            TokenSecret::OAuth2 { .. } => {
                                return Err(CredentialError::Unreadable {
                                    credential: credential.to_string(),
                                    target: redact::url(target).into_owned(),
                                    reason: "it holds an OAuth 2.0 token, not an OAuth 1.0a one"
                                        .to_string(),
                                });
                            }
                        }
                    }
                };
                let url = url::Url::parse(&request.uri().to_string()).map_err(|e| {
                    CredentialError::Setup {
                        credential: credential.to_string(),
                        reason: format!("the request URL cannot be signed: {e}"),
                    }
                })?;
                let form =
                    oauth1::is_form_encoded(request.headers()).then(|| request.body().as_ref());
                let nonce = (self.nonce)();
                let timestamp = u64::try_from(self.clock.now_ms() / 1000).unwrap_or(0);
                let header = oauth1::sign(
                    request.method().as_str(),
                    &url,
                    form,
                    &oauth1::SigningKeys {
                        consumer_key: consumer_key.expose(),
                        consumer_secret: consumer_secret.expose(),
                        token: Some(token),
                    },
                    &oauth1::Freshness {
                        nonce: &nonce,
                        timestamp,
                    },
                );
                Some(secret_header(credential, &header)?)
            }
        };
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        Ok(())
    }
}

/// Sets `name=value` in the request's query, dropping any the plugin set under that name.
fn set_query_parameter(
    request: &mut http::Request<Bytes>,
    name: &str,
    value: &str,
) -> Result<(), CredentialError> {
    let mut url =
        url::Url::parse(&request.uri().to_string()).map_err(|e| CredentialError::Setup {
            credential: name.to_string(),
            reason: format!("the request URL cannot take the key: {e}"),
        })?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    *request.uri_mut() = url.as_str().parse().map_err(|_| CredentialError::Setup {
        credential: name.to_string(),
        reason: "the request URL with the key is not a valid URI".to_string(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
