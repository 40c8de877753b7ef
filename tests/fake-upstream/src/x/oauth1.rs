//! OAuth 1.0a HMAC-SHA1 signature verification (RFC 5849 §3.4), written from the RFC and
//! independently of the host's signer: the fake rebuilds the signature base string from the
//! request as it arrived and checks the signature with the secrets it was given.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The `Authorization: OAuth …` parameters (RFC 5849 §3.5.1), percent-decoded, `realm` left
/// out. `None` when the header is not an OAuth header or does not parse.
pub fn parse_authorization(header: &str) -> Option<BTreeMap<String, String>> {
    let rest = header.trim_start();
    let (scheme, params) = rest.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("OAuth") {
        return None;
    }
    let mut out = BTreeMap::new();
    for part in params.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, value) = part.split_once('=')?;
        let value = value.trim().strip_prefix('"')?.strip_suffix('"')?;
        let name = percent_decode(name.trim())?;
        if name == "realm" {
            continue;
        }
        if out.insert(name, percent_decode(value)?).is_some() {
            // A repeated protocol parameter is a malformed request (§3.5).
            return None;
        }
    }
    Some(out)
}

/// RFC 3986 percent-encoding as RFC 5849 §3.6 wants it: everything but unreserved characters,
/// upper-case hex.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The signature base string (§3.4.1): method, base string URI, and the normalized request
/// parameters — `query` and a form `body` decoded as `application/x-www-form-urlencoded`
/// (`+` is a space), plus the protocol parameters without `oauth_signature`.
pub fn base_string(
    method: &str,
    base_uri: &str,
    query: &str,
    form_body: Option<&[u8]>,
    oauth: &BTreeMap<String, String>,
) -> String {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: &str| params.push((encode(name), encode(value)));
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        add(&name, &value);
    }
    if let Some(body) = form_body {
        for (name, value) in form_urlencoded::parse(body) {
            add(&name, &value);
        }
    }
    for (name, value) in oauth {
        if name != "oauth_signature" {
            add(name, value);
        }
    }
    // §3.4.1.3.2: sort by encoded name, then encoded value.
    params.sort();
    let normalized = params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        encode(&normalized)
    )
}

/// HMAC-SHA1 of `base` keyed with `consumer_secret&token_secret` (§3.4.2), base64.
pub fn sign(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key");
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares in time independent of where the strings differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5849 §3.4.1.1: the base string of the example request.
    #[test]
    fn rfc_5849_base_string_example() {
        let oauth = parse_authorization(
            r#"OAuth realm="Example", oauth_consumer_key="9djdj82h48djs9d2", oauth_token="kkk9d7dh3k39sjv7", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131201", oauth_nonce="7d8f3e4a", oauth_signature="bYT5CMsGcbgUdFHObYMEfcx6bsw%3D""#,
        )
        .unwrap();
        let base = base_string(
            "POST",
            "http://example.com/request",
            "b5=%3D%253D&a3=a&c%40=&a2=r%20b",
            Some(b"c2&a3=2+q"),
            &oauth,
        );
        assert_eq!(
            base,
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
             %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
             key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
             ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
             9d7dh3k39sjv7"
        );
    }

    /// RFC 5849 §1.2: the signed request for the vacation photo.
    #[test]
    fn rfc_5849_signature_example() {
        let oauth = parse_authorization(
            r#"OAuth realm="Photos", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_token="nnch734d00sl2jdk", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131202", oauth_nonce="chapoH", oauth_signature="MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D""#,
        )
        .unwrap();
        let base = base_string(
            "GET",
            "http://photos.example.net/photos",
            "file=vacation.jpg&size=original",
            None,
            &oauth,
        );
        let signature = sign(&base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00");
        assert_eq!(signature, oauth["oauth_signature"]);
        assert_eq!(signature, "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
    }

    /// X's developer documentation, "Creating a signature".
    #[test]
    fn x_creating_a_signature_example() {
        let mut oauth = BTreeMap::new();
        for (name, value) in [
            ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
            ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            (
                "oauth_token",
                "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            ),
            ("oauth_version", "1.0"),
        ] {
            oauth.insert(name.to_owned(), value.to_owned());
        }
        let base = base_string(
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json",
            "include_entities=true",
            Some(b"status=Hello%20Ladies%20%2b%20Gentlemen%2c%20a%20signed%20OAuth%20request%21"),
            &oauth,
        );
        assert!(base.starts_with(
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog"
        ), "{base}");
        assert!(base.ends_with("%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"), "{base}");
        assert_eq!(
            sign(
                &base,
                "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
                "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"
            ),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
    }

    #[test]
    fn malformed_headers_do_not_parse() {
        assert!(parse_authorization("Bearer abc").is_none());
        assert!(parse_authorization(r#"OAuth oauth_token=abc"#).is_none());
        assert!(parse_authorization(r#"OAuth oauth_token="a", oauth_token="b""#).is_none());
        assert!(parse_authorization(r#"OAuth oauth_token="%zz""#).is_none());
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
    }
}
