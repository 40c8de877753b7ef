//! Per-target tokens sealed at rest: the secret part of each token is encrypted with
//! XChaCha20-Poly1305 under the host's token key before it reaches the [`TokenStore`], with
//! associated data binding the credential and subject, so a row copied to another user (or
//! another credential) does not decrypt. Each row records the id of the key that sealed it;
//! `token_key_previous` is still accepted for reading after a rotation, and [`TokenVault::rekey`]
//! re-seals every row with the current key.

use super::CredentialError;
use crate::config::{Config, Scope, TOKEN_KEY_BYTES, decode_token_key};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tsunagi_backends::{Millis, StoredToken, TokenStore};

/// The secret part of a linked token: what is sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TokenSecret {
    OAuth1 {
        token: String,
        token_secret: String,
    },
    OAuth2 {
        access_token: String,
        #[serde(default)]
        refresh_token: Option<String>,
    },
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OAuth1 { .. } => f.write_str("TokenSecret::OAuth1(…)"),
            Self::OAuth2 { .. } => f.write_str("TokenSecret::OAuth2(…)"),
        }
    }
}

/// A linked token, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedToken {
    pub secret: TokenSecret,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<Millis>,
    /// Why the token must be linked again, if it must.
    pub needs_relink: Option<String>,
}

/// A 32-byte key and its id (a digest of it, never the key).
#[derive(Clone)]
struct TokenKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl TokenKey {
    fn new(bytes: &[u8; TOKEN_KEY_BYTES]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"tsunagi token key id\0")
            .chain_update(bytes)
            .finalize();
        Self {
            id: hex::encode(&digest[..8]),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The current key (seals and opens) and the previous one (opens only).
#[derive(Clone)]
pub struct TokenKeys {
    current: TokenKey,
    previous: Option<TokenKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|key| &key.id))
            .finish()
    }
}

impl TokenKeys {
    pub fn new(current: &[u8; TOKEN_KEY_BYTES], previous: Option<&[u8; TOKEN_KEY_BYTES]>) -> Self {
        Self {
            current: TokenKey::new(current),
            previous: previous.map(TokenKey::new),
        }
    }

    /// The keys `host.token_key` and `host.token_key_previous` name; none when no key is set.
    pub fn from_config(config: &Config) -> Result<Option<Self>, CredentialError> {
        let read = |field: &str, source: &Option<crate::config::SecretSource>| {
            source
                .as_ref()
                .map(|source| {
                    let secret = source
                        .resolve(&config.base_dir)
                        .map_err(|e| CredentialError::Key(format!("{field}: {e}")))?;
                    decode_token_key(secret.expose())
                        .map_err(|problem| CredentialError::Key(format!("{field}: {problem}")))
                })
                .transpose()
        };
        let Some(current) = read("host.token_key", &config.host.token_key)? else {
            return Ok(None);
        };
        let previous = read("host.token_key_previous", &config.host.token_key_previous)?;
        Ok(Some(Self::new(&current, previous.as_ref())))
    }

    /// The id of the key new tokens are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn find(&self, id: &str) -> Option<&TokenKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|key| key.id == id)
    }
}

/// What binds a sealed token to its row.
fn associated_data(credential: &str, subject: &str) -> Vec<u8> {
    let mut data = b"tsunagi token v1\0".to_vec();
    data.extend_from_slice(credential.as_bytes());
    data.push(0);
    data.extend_from_slice(subject.as_bytes());
    data
}

/// Seals and opens tokens, and stores them.
#[derive(Clone)]
pub struct TokenVault {
    keys: TokenKeys,
    store: Arc<dyn TokenStore>,
}

/// What a re-key pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RekeyReport {
    pub resealed: u64,
    pub already_current: u64,
}

impl TokenVault {
    pub fn new(keys: TokenKeys, store: Arc<dyn TokenStore>) -> Self {
        Self { keys, store }
    }

    fn seal(
        &self,
        credential: &str,
        subject: &str,
        token: &LinkedToken,
        now: Millis,
    ) -> Result<StoredToken, CredentialError> {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&token.secret)
                .map_err(|e| CredentialError::Seal(format!("encoding the token: {e}")))?,
        );
        let nonce: [u8; 24] = rand::random();
        let ciphertext = self
            .keys
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &associated_data(credential, subject),
                },
            )
            .map_err(|_| CredentialError::Seal("encryption failed".to_string()))?;
        Ok(StoredToken {
            credential: credential.to_string(),
            subject: subject.to_string(),
            scopes: token.scopes.iter().map(|s| s.name().to_string()).collect(),
            expires_at: token.expires_at,
            needs_relink: token.needs_relink.clone(),
            key_id: self.keys.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
            updated_at: now,
        })
    }

    fn open(&self, stored: &StoredToken) -> Result<LinkedToken, CredentialError> {
        let target = crate::redact::url(&stored.subject).into_owned();
        let unreadable = |why: String| CredentialError::Unreadable {
            credential: stored.credential.clone(),
            target: target.clone(),
            reason: why,
        };
        let key = self.keys.find(&stored.key_id).ok_or_else(|| {
            unreadable(format!(
                "it was sealed with key {}, which is neither host.token_key nor \
                 host.token_key_previous",
                stored.key_id
            ))
        })?;
        let Ok(nonce) = <[u8; 24]>::try_from(stored.nonce.as_slice()) else {
            return Err(unreadable("its nonce is not 24 bytes".to_string()));
        };
        let plain = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &stored.ciphertext,
                    aad: &associated_data(&stored.credential, &stored.subject),
                },
            )
            .map(zeroize::Zeroizing::new)
            .map_err(|_| {
                unreadable(
                    "it does not decrypt for this credential and target (altered, or copied \
                     from another row)"
                        .to_string(),
                )
            })?;
        let secret: TokenSecret = serde_json::from_slice(&plain)
            .map_err(|_| unreadable("its content is not a token".to_string()))?;
        let scopes = stored
            .scopes
            .iter()
            .filter_map(|name| Scope::parse(name))
            .collect();
        Ok(LinkedToken {
            secret,
            scopes,
            expires_at: stored.expires_at,
            needs_relink: stored.needs_relink.clone(),
        })
    }

    /// Seals and stores the token, durably before it answers.
    pub async fn put(
        &self,
        credential: &str,
        subject: &str,
        token: &LinkedToken,
        now: Millis,
    ) -> Result<(), CredentialError> {
        let sealed = self.seal(credential, subject, token, now)?;
        self.store.put_token(&sealed).await.map_err(store_error)
    }

    pub async fn get(
        &self,
        credential: &str,
        subject: &str,
    ) -> Result<Option<LinkedToken>, CredentialError> {
        let stored = self
            .store
            .get_token(credential, subject)
            .await
            .map_err(store_error)?;
        stored.map(|stored| self.open(&stored)).transpose()
    }

    pub async fn delete(&self, credential: &str, subject: &str) -> Result<bool, CredentialError> {
        self.store
            .delete_token(credential, subject)
            .await
            .map_err(store_error)
    }

    pub async fn mark_relink(
        &self,
        credential: &str,
        subject: &str,
        reason: &str,
    ) -> Result<bool, CredentialError> {
        self.store
            .mark_token_relink(credential, subject, reason)
            .await
            .map_err(store_error)
    }

    /// Re-seals every token not sealed with the current key (reading it with the previous
    /// one), in pages. A token neither key opens stops the pass with an error naming it.
    pub async fn rekey(&self, now: Millis) -> Result<RekeyReport, CredentialError> {
        const PAGE: u32 = 200;
        let mut report = RekeyReport::default();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .store
                .list_tokens(after.as_ref().map(|(c, s)| (c.as_str(), s.as_str())), PAGE)
                .await
                .map_err(store_error)?;
            let Some(last) = page.last() else { break };
            after = Some((last.credential.clone(), last.subject.clone()));
            for stored in &page {
                if stored.key_id == self.keys.current.id {
                    report.already_current += 1;
                    continue;
                }
                let token = self.open(stored)?;
                self.put(&stored.credential, &stored.subject, &token, now)
                    .await?;
                report.resealed += 1;
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        Ok(report)
    }
}

fn store_error(error: tsunagi_backends::BackendError) -> CredentialError {
    CredentialError::Store(error.to_string())
}
