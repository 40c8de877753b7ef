//! [`TokenStore`]: the per-target tokens of credentials the host holds (a linked user's OAuth
//! tokens), one row per credential and subject (the target the token acts for).
//!
//! The store never sees a secret in the clear: the host encrypts the secret part before it
//! gets here (`ciphertext`, with the `nonce` and the id of the key that sealed it), so a copy
//! of the database file holds no usable token. What the host must read without decrypting —
//! the scopes the token grants, when it expires, whether it needs relinking — is kept in clear
//! columns.

use crate::{BackendError, Millis, Result};
use async_trait::async_trait;

/// One stored token, its secret part sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The `[credentials.NAME]` the token belongs to.
    pub credential: String,
    /// Whom it acts for: the target it was linked for.
    pub subject: String,
    /// What the token may do (`read`, `write`), in clear so a refusal needs no decryption.
    pub scopes: Vec<String>,
    /// When the access token expires, if it does.
    pub expires_at: Option<Millis>,
    /// Set when the upstream refused the token for good (a refresh answered `invalid_grant`):
    /// calls are refused until the user is linked again. The reason, never a secret.
    pub needs_relink: Option<String>,
    /// Which key sealed the secret part (so a rotated key can still be told apart).
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub updated_at: Millis,
}

/// The largest sealed secret a row takes (tokens are short; this bounds what a bad token file
/// or token endpoint can make the store hold).
pub const MAX_TOKEN_CIPHERTEXT: usize = 16 * 1024;

/// Refuses a token whose sealed secret is over [`MAX_TOKEN_CIPHERTEXT`].
pub(crate) fn check_token(token: &StoredToken) -> Result<()> {
    if token.ciphertext.len() > MAX_TOKEN_CIPHERTEXT {
        return Err(BackendError::Refused(format!(
            "a sealed token of {} bytes is over the {MAX_TOKEN_CIPHERTEXT}-byte cap",
            token.ciphertext.len()
        )));
    }
    Ok(())
}

/// Per-credential, per-subject tokens, their secret part sealed by the host.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores (or replaces) the token of `token.credential` for `token.subject`, durably
    /// before it answers. Refuses a ciphertext over [`MAX_TOKEN_CIPHERTEXT`].
    async fn put_token(&self, token: &StoredToken) -> Result<()>;
    async fn get_token(&self, credential: &str, subject: &str) -> Result<Option<StoredToken>>;
    /// False when there was none.
    async fn delete_token(&self, credential: &str, subject: &str) -> Result<bool>;
    /// The subjects holding a token of `credential`, in order, after `after`, at most `limit`.
    async fn list_token_subjects(
        &self,
        credential: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>>;
    /// Every stored token, ordered by (credential, subject) after `after`, at most `limit`: for
    /// re-encrypting with a new key.
    async fn list_tokens(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<StoredToken>>;
    /// Marks the token as needing relinking, with the reason; false when there is none.
    async fn mark_token_relink(
        &self,
        credential: &str,
        subject: &str,
        reason: &str,
    ) -> Result<bool>;
}
