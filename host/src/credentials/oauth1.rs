//! OAuth 1.0a request signing, HMAC-SHA1 (RFC 5849 section 3): percent-encoding (3.6), the
//! parameters collected from the query, a form-encoded body and the `oauth_*` protocol
//! parameters, normalised (3.4.1.3.2), the signature base string (3.4.1), the HMAC-SHA1
//! signature (3.4.2) and the `Authorization` header (3.5.1). The nonce and timestamp are
//! passed in, so the worked examples are reproduced byte for byte by the tests.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

/// Everything but the unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`) is encoded,
/// with upper-case hex digits (RFC 5849 3.6).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 5849 3.6 percent-encoding.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, ENCODE).to_string()
}

/// The secrets and identifiers one signature needs.
pub struct SigningKeys<'a> {
    pub consumer_key: &'a str,
    pub consumer_secret: &'a str,
    /// The token and its secret; none for a request signed by the client alone.
    pub token: Option<(&'a str, &'a str)>,
}

/// What makes one signature unique: injected so tests are exact.
pub struct Freshness<'a> {
    pub nonce: &'a str,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
}

/// The protocol parameters of a request signed with HMAC-SHA1, without the signature, in the
/// order they are written. `oauth_version` is optional in RFC 5849; X requires it, so it is
/// always sent.
pub fn protocol_parameters(keys: &SigningKeys<'_>, fresh: &Freshness<'_>) -> Vec<(String, String)> {
    let mut parameters = vec![
        (
            "oauth_consumer_key".to_string(),
            keys.consumer_key.to_string(),
        ),
        ("oauth_nonce".to_string(), fresh.nonce.to_string()),
        (
            "oauth_signature_method".to_string(),
            "HMAC-SHA1".to_string(),
        ),
        ("oauth_timestamp".to_string(), fresh.timestamp.to_string()),
    ];
    if let Some((token, _)) = keys.token {
        parameters.push(("oauth_token".to_string(), token.to_string()));
    }
    parameters.push(("oauth_version".to_string(), "1.0".to_string()));
    parameters
}

/// The base string URI (3.4.1.2): scheme and host in lower case, the port only when it is not
/// the scheme's default, the path; no query, no fragment. `url` is already normalised by the
/// `url` crate (lower-case scheme and host, default port dropped).
fn base_string_uri(url: &url::Url) -> String {
    let mut uri = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        uri.push_str(&format!(":{port}"));
    }
    uri.push_str(url.path());
    uri
}

/// The signature base string (3.4.1.1) of a request: its method, URL, form-encoded body
/// (only when its content type is `application/x-www-form-urlencoded`; pass `None` otherwise)
/// and protocol parameters (without `oauth_signature` and `realm`).
pub fn signature_base_string(
    method: &str,
    url: &url::Url,
    form_body: Option<&[u8]>,
    protocol: &[(String, String)],
) -> String {
    // 3.4.1.3.1: query and body decoded as application/x-www-form-urlencoded ('+' is a space).
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .chain(form_body.into_iter().flat_map(url::form_urlencoded::parse))
        .map(|(name, value)| (encode(&name), encode(&value)))
        .chain(
            protocol
                .iter()
                .filter(|(name, _)| name != "oauth_signature" && name != "realm")
                .map(|(name, value)| (encode(name), encode(value))),
        )
        .collect();
    // 3.4.1.3.2: sorted by encoded name, then encoded value (byte order).
    pairs.sort();
    let normalized = pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        encode(&method.to_ascii_uppercase()),
        encode(&base_string_uri(url)),
        encode(&normalized)
    )
}

/// HMAC-SHA1 of the base string (3.4.2), base64: the key is the encoded consumer secret and
/// the encoded token secret joined by `&` (the `&` stays when there is no token).
pub fn hmac_sha1_signature(base_string: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key.as_bytes()) else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization: OAuth …` header value (3.5.1): every protocol parameter (signature
/// included) encoded and quoted, comma-separated.
pub fn authorization_header(protocol: &[(String, String)]) -> String {
    let fields: Vec<String> = protocol
        .iter()
        .map(|(name, value)| format!("{}=\"{}\"", encode(name), encode(value)))
        .collect();
    format!("OAuth {}", fields.join(", "))
}

/// Signs a request: answers the `Authorization` header value.
pub fn sign(
    method: &str,
    url: &url::Url,
    form_body: Option<&[u8]>,
    keys: &SigningKeys<'_>,
    fresh: &Freshness<'_>,
) -> String {
    let mut protocol = protocol_parameters(keys, fresh);
    let base = signature_base_string(method, url, form_body, &protocol);
    let token_secret = keys.token.map_or("", |(_, secret)| secret);
    let signature = hmac_sha1_signature(&base, keys.consumer_secret, token_secret);
    // Written in the header in sorted order, signature among them, as X's example does.
    protocol.push(("oauth_signature".to_string(), signature));
    protocol.sort();
    authorization_header(&protocol)
}

/// Whether a request's body is form-encoded, so its parameters are signed too (3.4.1.3.1).
pub fn is_form_encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn percent_encoding_keeps_only_the_unreserved_characters() {
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("An encoded string!"), "An%20encoded%20string%21");
        assert_eq!(encode("Dogs, Cats & Mice"), "Dogs%2C%20Cats%20%26%20Mice");
        assert_eq!(encode("☃"), "%E2%98%83");
        assert_eq!(encode("-._~azAZ09"), "-._~azAZ09");
    }

    /// RFC 5849 section 3.4.1.1: the signature base string of the example request, whose
    /// query, form body and protocol parameters exercise decoding, repeated names, empty
    /// values and sorting (this example sends no `oauth_version`).
    #[test]
    fn rfc5849_3_4_1_1_signature_base_string() {
        let url =
            url::Url::parse("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b").unwrap();
        let protocol = owned(&[
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
            ("oauth_signature", "bYT5CMsGcbgUdFHObYMEfcx6bsw%3D"),
            ("realm", "Example"),
        ]);
        let base = signature_base_string("POST", &url, Some(b"c2&a3=2+q"), &protocol);
        assert_eq!(
            base,
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
             %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
             key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
             ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
             9d7dh3k39sjv7"
        );
    }

    /// X's developer documentation, "Creating a signature": the whole chain, from the request
    /// to the signature, with the documented keys, nonce and timestamp.
    #[test]
    fn x_creating_a_signature_example() {
        let url = url::Url::parse(
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
        )
        .unwrap();
        let body = b"status=Hello%20Ladies%20%2b%20Gentlemen%2c%20a%20signed%20OAuth%20request%21";
        let keys = SigningKeys {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog",
            consumer_secret: "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
            token: Some((
                "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
                "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
            )),
        };
        let fresh = Freshness {
            nonce: "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
            timestamp: 1318622958,
        };
        let protocol = protocol_parameters(&keys, &fresh);
        let base = signature_base_string("POST", &url, Some(body), &protocol);
        assert_eq!(
            base,
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities\
             %3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFa\
             bxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestam\
             p%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%2\
             6oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a\
             %2520signed%2520OAuth%2520request%2521"
        );
        assert_eq!(
            hmac_sha1_signature(
                &base,
                keys.consumer_secret,
                "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"
            ),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
        let header = sign("POST", &url, Some(body), &keys, &fresh);
        assert_eq!(
            header,
            "OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", \
             oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\", \
             oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\", \
             oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"1318622958\", \
             oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\", \
             oauth_version=\"1.0\""
        );
    }

    /// The `photos.example.net` request of RFC 5849 1.2 / 3.1, with the values of the OAuth
    /// Core 1.0 worked example (Appendix A.5), whose published signature is not under the
    /// RFC's errata: `GET http://photos.example.net/photos?file=vacation.jpg&size=original`.
    #[test]
    fn photos_example_net_example() {
        let url =
            url::Url::parse("http://photos.example.net/photos?file=vacation.jpg&size=original")
                .unwrap();
        let keys = SigningKeys {
            consumer_key: "dpf43f3p2l4k3l03",
            consumer_secret: "kd94hf93k423kf44",
            token: Some(("nnch734d00sl2jdk", "pfkkdhi9sl3r4s00")),
        };
        let fresh = Freshness {
            nonce: "kllo9940pd9333jh",
            timestamp: 1191242096,
        };
        let base = signature_base_string("GET", &url, None, &protocol_parameters(&keys, &fresh));
        assert_eq!(
            base,
            "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_k\
             ey%3Ddpf43f3p2l4k3l03%26oauth_nonce%3Dkllo9940pd9333jh%26oauth_signature_method%3DH\
             MAC-SHA1%26oauth_timestamp%3D1191242096%26oauth_token%3Dnnch734d00sl2jdk%26oauth_ve\
             rsion%3D1.0%26size%3Doriginal"
        );
        assert_eq!(
            hmac_sha1_signature(&base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00"),
            "tR3+Ty81lMeYAr/Fid0kMTYa/WM="
        );
    }

    #[test]
    fn the_port_is_kept_unless_default_and_a_body_of_another_type_is_not_signed() {
        let url = url::Url::parse("HTTP://Example.COM:8080/a%20b?x=1").unwrap();
        let base = signature_base_string("get", &url, None, &[]);
        assert_eq!(base, "GET&http%3A%2F%2Fexample.com%3A8080%2Fa%2520b&x%3D1");
        let default_port = url::Url::parse("https://example.com:443/").unwrap();
        assert_eq!(
            signature_base_string("GET", &default_port, None, &[]),
            "GET&https%3A%2F%2Fexample.com%2F&"
        );
        let mut headers = http::HeaderMap::new();
        assert!(!is_form_encoded(&headers));
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert!(is_form_encoded(&headers));
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        assert!(!is_form_encoded(&headers));
    }
}
