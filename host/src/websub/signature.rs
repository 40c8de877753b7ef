//! A content distribution's signature: `X-Hub-Signature: METHOD=HEX`, the HMAC of the body
//! under the subscription's secret (WebSub §8). sha1 (the recommendation's minimum), sha256,
//! sha384 and sha512 are taken; the comparison is constant-time.

use hmac::{Hmac, Mac};

/// Why a delivery's signature was not accepted (what the log says; never the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature header, though the subscription has a secret")]
    Missing,
    #[error("X-Hub-Signature is not METHOD=HEX")]
    Malformed,
    #[error("X-Hub-Signature uses {0:?}, not sha1, sha256, sha384 or sha512")]
    UnknownMethod(String),
    #[error("X-Hub-Signature does not match the body")]
    Mismatch,
}

/// Checks `header` (the `X-Hub-Signature` value, if any) against `body` under `secret`.
pub fn verify(header: Option<&str>, secret: &[u8], body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (method, hex_digest) = header
        .trim()
        .split_once('=')
        .ok_or(SignatureError::Malformed)?;
    let digest = hex::decode(hex_digest.trim()).map_err(|_| SignatureError::Malformed)?;
    let checked = match method.trim().to_ascii_lowercase().as_str() {
        "sha1" => check::<Hmac<sha1::Sha1>>(secret, body, &digest),
        "sha256" => check::<Hmac<sha2::Sha256>>(secret, body, &digest),
        "sha384" => check::<Hmac<sha2::Sha384>>(secret, body, &digest),
        "sha512" => check::<Hmac<sha2::Sha512>>(secret, body, &digest),
        other => {
            let shown: String = other.chars().take(16).collect();
            return Err(SignatureError::UnknownMethod(shown));
        }
    };
    if checked {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn check<M: Mac + hmac::digest::KeyInit>(secret: &[u8], body: &[u8], digest: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(digest).is_ok()
}

/// `sha256=HEX` of `body` under `secret`: how a hub signs (the fake hub and tests use it).
pub fn sign_sha256(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(secret)
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_is_checked_and_anything_else_refused() {
        let body = b"<feed/>";
        let secret = b"s3cret";
        let signed = sign_sha256(secret, body);
        assert_eq!(verify(Some(&signed), secret, body), Ok(()));
        assert_eq!(
            verify(
                Some(&signed.to_uppercase().replace("SHA256", "sha256")),
                secret,
                body
            ),
            Ok(()),
            "hex in either case"
        );
        let mut sha1 = <Hmac<sha1::Sha1> as hmac::digest::KeyInit>::new_from_slice(secret).unwrap();
        sha1.update(body);
        let sha1 = format!("sha1={}", hex::encode(sha1.finalize().into_bytes()));
        assert_eq!(verify(Some(&sha1), secret, body), Ok(()));
        assert_eq!(
            verify(Some(&signed), b"other", body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&signed), secret, b"<feed>changed</feed>"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(None, secret, body), Err(SignatureError::Missing));
        assert_eq!(
            verify(Some("sha256"), secret, body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("sha256=zz"), secret, body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("md5=00"), secret, body),
            Err(SignatureError::UnknownMethod("md5".into()))
        );
    }
}
