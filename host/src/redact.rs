//! Redaction of credentials in URLs: the one place that decides what of a URL the host may print.
//! Every log line, error message and status field that shows a URL (or text that may hold one,
//! like a transport error) goes through [`url`] or [`text`]; the unredacted URL is kept only
//! where the request is made.
//!
//! What is hidden: the userinfo (`user:password@`), and the value of every query parameter whose
//! name looks like a credential (`token`, `key`, `access_token`, `api_key`, `sig`, `password`,
//! `oauth_signature`, `X-Amz-Signature`, …). Parameter names, the host and the path stay, so an
//! operator can still tell which target is meant.

use std::borrow::Cow;

/// What replaces a hidden value.
pub const HIDDEN: &str = "REDACTED";

/// Parameter names (lowercased, `-` read as `_`) that always carry a credential.
const SECRET_NAMES: &[&str] = &[
    "key",
    "sig",
    "auth",
    "code",
    "pass",
    "pwd",
    "jwt",
    "otp",
    "appid",
    "app_id",
    "applicationid",
    "application_id",
    "client_id",
    "session",
    "sessionid",
    "session_id",
    "sid",
    "ticket",
    "hash",
];

/// Name parts that mark a credential wherever they appear in a parameter's name.
const SECRET_PARTS: &[&str] = &[
    "token",
    "secret",
    "passw",
    "signature",
    "apikey",
    "api_key",
    "_key",
    "key_",
    "credential",
    "auth",
    "bearer",
];

/// Whether a query parameter of this name carries a credential.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    SECRET_NAMES.contains(&name.as_str()) || SECRET_PARTS.iter().any(|part| name.contains(part))
}

/// `raw` with its userinfo and credential-like query values replaced by [`HIDDEN`]. Text that
/// does not parse as a URL is redacted by the same rules, read loosely (never returned whole
/// when it might hold a secret).
pub fn url(raw: &str) -> Cow<'_, str> {
    // Read by surface syntax rather than parsed and re-serialised: the output keeps the
    // parameters' spelling (a redacted URL stays recognisable), and text that does not parse
    // is redacted by the same rules.
    loose(raw)
}

/// Free text (an error message, a log line) with every URL in it passed through [`url`].
pub fn text(raw: &str) -> Cow<'_, str> {
    if !raw.contains("://") {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    let mut changed = false;
    while let Some(found) = rest.find("://") {
        // The scheme runs back over letters, digits, '+', '-' and '.'.
        let scheme_start = rest[..found]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(found, |(index, _)| index);
        let end = rest[found + 3..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | '}')
            })
            .map_or(rest.len(), |offset| found + 3 + offset);
        out.push_str(&rest[..scheme_start]);
        let candidate = &rest[scheme_start..end];
        let redacted = url(candidate);
        changed |= matches!(redacted, Cow::Owned(_));
        out.push_str(&redacted);
        rest = &rest[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(raw)
    }
}

/// Redacts by the URL's surface syntax: the userinfo of the authority and the value of each
/// secret-named `name=value` pair after `?` (and, for odd inputs, after `#` or `;`).
fn loose(raw: &str) -> Cow<'_, str> {
    // Only userinfo (`@`) or a `name=value` pair can hide a secret. Most URLs have neither, and
    // every poll logs its target: spare them the copy.
    if !raw.contains(['@', '=']) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let (scheme, after_scheme) = match raw.find("://") {
        Some(index) => (&raw[..index + 3], &raw[index + 3..]),
        None => ("", raw),
    };
    out.push_str(scheme);
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, tail) = after_scheme.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) if !scheme.is_empty() => {
            out.push_str(HIDDEN);
            out.push_str(&authority[at..]);
        }
        _ => out.push_str(authority),
    }
    let query_start = tail.find(['?', '#', ';']).unwrap_or(tail.len());
    out.push_str(&tail[..query_start]);
    let mut query = &tail[query_start..];
    while !query.is_empty() {
        // One separator, then one `name=value` pair up to the next separator.
        let separator_len = query.chars().next().map_or(0, char::len_utf8);
        out.push_str(&query[..separator_len]);
        query = &query[separator_len..];
        let pair_end = query.find(['&', ';', '#', '?']).unwrap_or(query.len());
        let pair = &query[..pair_end];
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_param(&decode(name)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(HIDDEN);
            }
            _ => out.push_str(pair),
        }
        query = &query[pair_end..];
    }
    if out == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(out)
    }
}

fn decode(name: &str) -> String {
    percent_encoding::percent_decode_str(&name.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_parameters_are_hidden_and_the_rest_kept() {
        for (raw, expected) in [
            (
                "https://alice:hunter2@feeds.example/a?page=2&token=abc",
                "https://REDACTED@feeds.example/a?page=2&token=REDACTED",
            ),
            (
                "http://example.org/rss?api_key=K1&key=K2&sig=S&access_token=T&format=xml",
                "http://example.org/rss?api_key=REDACTED&key=REDACTED&sig=REDACTED&access_token=REDACTED&format=xml",
            ),
            (
                "https://s3.example/o?X-Amz-Signature=abc&X-Amz-Credential=def&x=1",
                "https://s3.example/o?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&x=1",
            ),
            (
                "https://api.example/s?applicationId=123&keyword=shoes",
                "https://api.example/s?applicationId=REDACTED&keyword=shoes",
            ),
            ("https://user@example.org/", "https://REDACTED@example.org/"),
            (
                "https://example.org/a%3Fb?ACCESS-TOKEN=x#frag",
                "https://example.org/a%3Fb?ACCESS-TOKEN=REDACTED#frag",
            ),
        ] {
            assert_eq!(url(raw), expected, "{raw}");
        }
    }

    #[test]
    fn urls_without_secrets_come_back_unchanged_and_borrowed() {
        for raw in [
            "https://blog.rust-lang.org/feed.xml",
            "http://127.0.0.1:8080/feeds/1?page=2&sort=new",
            "https://example.org/?q=token", // the value "token" is not a secret name
            "not a url at all",
        ] {
            assert!(matches!(url(raw), Cow::Borrowed(_)), "{raw}");
        }
    }

    #[test]
    fn unparseable_urls_are_still_redacted() {
        assert_eq!(
            url("http://us er:pw@exa mple/?token=t"),
            "http://REDACTED@exa mple/?token=REDACTED"
        );
        assert_eq!(
            url("https://[::1/?password=p"),
            "https://[::1/?password=REDACTED"
        );
    }

    #[test]
    fn percent_encoded_parameter_names_are_recognised() {
        assert_eq!(
            url("https://e.example/?%74oken=t&ok=1"),
            "https://e.example/?%74oken=REDACTED&ok=1"
        );
    }

    #[test]
    fn text_redacts_every_url_inside_a_message() {
        let message = "error sending request for url (https://u:p@a.example/x?key=k): connection \
                       refused; then \"http://b.example/?token=t\" and https://c.example/ok";
        let redacted = text(message);
        assert_eq!(
            redacted,
            "error sending request for url (https://REDACTED@a.example/x?key=REDACTED): connection \
             refused; then \"http://b.example/?token=REDACTED\" and https://c.example/ok"
        );
        assert!(!redacted.contains("u:p") && !redacted.contains("key=k"));
        assert!(matches!(text("no urls here"), Cow::Borrowed(_)));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// A marker no redacted output may contain.
        const SECRET: &str = "S3CR3T";

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("token".to_string()),
                Just("access_token".to_string()),
                Just("api_key".to_string()),
                Just("API-KEY".to_string()),
                Just("key".to_string()),
                Just("sig".to_string()),
                Just("X-Amz-Signature".to_string()),
                Just("client_secret".to_string()),
                Just("password".to_string()),
                Just("%74oken".to_string()),
            ]
        }

        fn plain() -> impl Strategy<Value = String> {
            "[a-z]{1,8}".prop_filter("not a secret name", |n| !is_secret_param(n))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn secrets_never_survive(
                scheme in prop_oneof![Just("http"), Just("https")],
                host in "[a-z0-9.-]{1,20}",
                path in "(/[a-zA-Z0-9%._~-]{0,10}){0,4}",
                user in proptest::option::of("[a-z]{0,6}"),
                before in proptest::collection::vec((plain(), "[a-z0-9]{0,6}"), 0..4),
                secret_name in name(),
                after in proptest::collection::vec((plain(), "[a-z0-9]{0,6}"), 0..4),
                separator in prop_oneof![Just("&"), Just(";")],
                fragment in proptest::option::of("[a-z]{0,6}"),
            ) {
                let userinfo = user.map_or(String::new(), |u| format!("{u}:{SECRET}@"));
                let mut pairs: Vec<String> =
                    before.iter().map(|(n, v)| format!("{n}={v}")).collect();
                pairs.push(format!("{secret_name}={SECRET}x"));
                pairs.extend(after.iter().map(|(n, v)| format!("{n}={v}")));
                let fragment = fragment.map_or(String::new(), |f| format!("#{f}"));
                let raw = format!(
                    "{scheme}://{userinfo}{host}{path}?{}{fragment}",
                    pairs.join(separator)
                );
                let redacted = url(&raw);
                prop_assert!(!redacted.contains(SECRET), "{raw} -> {redacted}");
                // Nothing else is lost: every plain pair and the host survive.
                for (n, v) in &before {
                    let pair = format!("{n}={v}");
                    prop_assert!(redacted.contains(&pair), "{raw} -> {redacted}");
                }
                prop_assert!(redacted.contains(&host));
                // Redacting twice changes nothing more.
                prop_assert_eq!(url(&redacted).into_owned(), redacted.clone().into_owned());
                // Inside text, too.
                let message = format!("fetching {raw}: connection refused");
                prop_assert!(!text(&message).contains(SECRET));
            }

            #[test]
            fn urls_without_secrets_are_left_alone(
                scheme in prop_oneof![Just("http"), Just("https")],
                host in "[a-z0-9.-]{1,20}",
                path in "(/[a-zA-Z0-9%._~-]{0,10}){0,4}",
                pairs in proptest::collection::vec((plain(), "[a-z0-9]{0,6}"), 0..5),
            ) {
                let query: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
                let raw = format!("{scheme}://{host}{path}?{}", query.join("&"));
                prop_assert_eq!(url(&raw), raw.as_str());
            }

            #[test]
            fn any_text_is_redacted_once_and_for_all(
                raw in "(.{0,12}(://|@|\\?|=|&|;|#|\\[)){0,10}.{0,12}",
            ) {
                let once = text(&raw).into_owned();
                prop_assert_eq!(text(&once).into_owned(), once.clone(), "{}", raw);
                let _ = url(&raw);
            }
        }
    }
}
