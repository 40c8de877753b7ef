//! Records a cassette: requests go to the real upstream (only where the cassette's `[[allow]]`
//! rules permit) and each exchange is kept, to be written as `interactions.toml` and `bodies/`.
//!
//! Credentials must never land in a cassette. Request headers other than the conditional
//! validators are not written; a URL with a user name, password or credential-like query
//! parameter is refused (nothing is written); response headers that carry session or
//! authentication data are dropped. Response bodies are written as received.

use super::{
    BODIES_DIR, HeaderValues, INTERACTIONS_FILE, Interaction, InteractionFile, RecordedResponse,
    RequestRule,
};
use crate::egress::{EgressLimits, OutboundRequest, Upstream, UpstreamError, UpstreamResponse};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Request headers a recorded rule keeps: they decide which answer a conditional request gets.
const RULE_HEADERS: [&str; 2] = ["if-none-match", "if-modified-since"];

/// Response headers never written: session and authentication data, and what changes on every
/// response without meaning anything to a plugin.
const DROPPED_RESPONSE_HEADERS: [&str; 9] = [
    "set-cookie",
    "set-cookie2",
    "www-authenticate",
    "proxy-authenticate",
    "authentication-info",
    "proxy-authentication-info",
    "date",
    "connection",
    "keep-alive",
];

/// Query parameter names (or parts of names) that carry credentials.
const CREDENTIAL_PARAMETERS: [&str; 10] = [
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "sig",
    "auth",
    "session",
];

/// Why a recording was not written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "{method} {url}: {what}; a cassette must not hold credentials, so nothing was written \
         (let the host add credentials to requests instead of the URL)"
    )]
    Credential {
        method: String,
        url: String,
        what: String,
    },
    #[error("writing the cassette: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the cassette: {0}; nothing was written")]
    Outside(String),
}

/// Why `url` must not be written to a cassette, if it must not. The URL shown has the secret
/// part cut out.
fn credential_in(url: &url::Url) -> Option<(String, String)> {
    let mut shown = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Some((
            shown.to_string(),
            "the URL carries a user name or password".into(),
        ));
    }
    let parameter = url.query_pairs().find_map(|(name, _)| {
        let lower = name.to_ascii_lowercase();
        let suspicious = CREDENTIAL_PARAMETERS.iter().any(|word| {
            lower == *word
                || lower
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|part| part == *word)
                || (word.len() > 4 && lower.contains(word))
        });
        suspicious.then(|| name.into_owned())
    })?;
    shown.set_query(None);
    Some((
        format!("{shown}?…"),
        format!("query parameter `{parameter}` looks like a credential"),
    ))
}

/// One exchange seen while recording.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub request: OutboundRequest,
    pub response: UpstreamResponse,
}

/// Sends through `inner` and keeps every answered exchange.
pub struct Recorder {
    inner: Arc<dyn Upstream>,
    seen: Mutex<Vec<Recorded>>,
}

impl Recorder {
    pub fn new(inner: Arc<dyn Upstream>) -> Self {
        Self {
            inner,
            seen: Mutex::new(Vec::new()),
        }
    }

    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Upstream for Recorder {
    fn send(
        &self,
        request: OutboundRequest,
        limits: EgressLimits,
    ) -> BoxFuture<'_, Result<UpstreamResponse, UpstreamError>> {
        Box::pin(async move {
            let response = self.inner.send(request.clone(), limits).await?;
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Recorded {
                    request,
                    response: response.clone(),
                });
            Ok(response)
        })
    }
}

/// Writes `recorded` as the cassette's `interactions.toml` and `bodies/`, replacing what was
/// there. Bodies are numbered in the order they were received. Nothing is written if any
/// request carries a credential in its URL.
pub fn write_interactions(dir: &Path, recorded: &[Recorded]) -> Result<(), RecordError> {
    for exchange in recorded {
        if let Some((url, what)) = credential_in(&exchange.request.url) {
            return Err(RecordError::Credential {
                method: exchange.request.method.to_string(),
                url,
                what,
            });
        }
    }
    // Neither the interactions nor the bodies may be written through a symlink out of the
    // cassette (nor may recording empty a directory elsewhere).
    let interactions =
        super::path_inside(dir, Path::new(INTERACTIONS_FILE)).map_err(RecordError::Outside)?;
    let bodies = super::path_inside(dir, Path::new(BODIES_DIR)).map_err(RecordError::Outside)?;
    if bodies
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        // A symlink inside the cassette: replace the link, not what it points to.
        std::fs::remove_file(&bodies)?;
    } else if bodies.is_dir() {
        std::fs::remove_dir_all(&bodies)?;
    }
    let mut file = InteractionFile::default();
    for (index, exchange) in recorded.iter().enumerate() {
        let response = &exchange.response;
        let body_file = if response.body.is_empty() {
            None
        } else {
            std::fs::create_dir_all(&bodies)?;
            let name = format!("{:03}.{}", index + 1, extension(&response.headers));
            std::fs::write(bodies.join(&name), &response.body)?;
            Some(Path::new(BODIES_DIR).join(name))
        };
        let mut headers: BTreeMap<String, HeaderValues> = BTreeMap::new();
        for name in response.headers.keys() {
            if DROPPED_RESPONSE_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let values: Vec<String> = response
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            let values = match <[String; 1]>::try_from(values) {
                Ok([one]) => HeaderValues::One(one),
                Err(many) => HeaderValues::Many(many),
            };
            headers.insert(name.as_str().to_string(), values);
        }
        file.interactions.push(Interaction {
            request: RequestRule {
                method: exchange.request.method.to_string(),
                url: exchange.request.url.to_string(),
                headers: RULE_HEADERS
                    .iter()
                    .filter_map(|name| {
                        let value = exchange.request.headers.get(*name)?.to_str().ok()?;
                        Some((name.to_string(), value.to_string()))
                    })
                    .collect(),
                body_contains: None,
            },
            response: RecordedResponse {
                status: response.status.as_u16(),
                headers,
                body: None,
                body_file,
            },
        });
    }
    let text = toml::to_string_pretty(&file).map_err(std::io::Error::other)?;
    std::fs::write(
        interactions,
        format!("# Recorded by `tsunagi plugin test --record`; matched in order.\n\n{text}"),
    )?;
    Ok(())
}

fn extension(headers: &http::HeaderMap) -> &'static str {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("json") {
        "json"
    } else if content_type.contains("xml") {
        "xml"
    } else if content_type.contains("html") {
        "html"
    } else if content_type.starts_with("text/") {
        "txt"
    } else {
        "bin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::Cassette;
    use bytes::Bytes;

    #[test]
    fn credentials_in_urls_are_refused_and_not_shown() {
        let check = |url: &str| credential_in(&url::Url::parse(url).unwrap());
        for url in [
            "https://api.example.com/v1?api_key=abc123",
            "https://api.example.com/v1?q=x&access_token=abc123",
            "https://api.example.com/v1?apiKey=abc123",
            "https://api.example.com/v1?sig=abc123",
            "https://user:abc123@api.example.com/v1",
        ] {
            let (shown, what) = check(url).unwrap_or_else(|| panic!("{url} passed"));
            assert!(!shown.contains("abc123"), "{shown}");
            assert!(!what.contains("abc123"), "{what}");
        }
        for url in [
            "https://api.example.com/v1?q=green+tea&limit=2",
            "https://api.example.com/v1?page=2&sort=price&monkey=1",
            "https://api.example.com/feed.xml",
        ] {
            assert_eq!(check(url), None, "{url}");
        }
    }

    #[test]
    fn written_interactions_load_back_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(super::super::CASES_FILE),
            "[[case]]\nname = \"one\"\ntarget = \"http://x.test/feed\"\n",
        )
        .unwrap();
        let mut request_headers = http::HeaderMap::new();
        request_headers.insert("authorization", "Bearer s3cret".parse().unwrap());
        request_headers.insert("if-none-match", "\"v1\"".parse().unwrap());
        let mut response_headers = http::HeaderMap::new();
        response_headers.insert("content-type", "application/json".parse().unwrap());
        response_headers.insert("set-cookie", "session=abc".parse().unwrap());
        response_headers.insert("www-authenticate", "Bearer realm=\"x\"".parse().unwrap());
        response_headers.append("link", "<a>".parse().unwrap());
        response_headers.append("link", "<b>".parse().unwrap());
        let recorded = vec![Recorded {
            request: OutboundRequest {
                method: http::Method::GET,
                url: url::Url::parse("http://x.test/feed").unwrap(),
                headers: request_headers,
                body: Bytes::new(),
                allow_internal: false,
            },
            response: UpstreamResponse {
                status: http::StatusCode::OK,
                headers: response_headers,
                body: Bytes::from_static(b"{\"items\":[]}"),
            },
        }];
        write_interactions(dir.path(), &recorded).unwrap();
        let text = std::fs::read_to_string(dir.path().join(INTERACTIONS_FILE)).unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("session=abc"),
            "{text}"
        );

        let cassette = Cassette::load(dir.path()).unwrap();
        let interaction = &cassette.interactions.interactions[0];
        assert_eq!(interaction.request.headers["if-none-match"], "\"v1\"");
        assert_eq!(
            interaction.response.headers["link"],
            HeaderValues::Many(vec!["<a>".to_string(), "<b>".to_string()])
        );
        let body_file = interaction.response.body_file.as_ref().unwrap();
        assert_eq!(body_file, Path::new("bodies/001.json"));
        assert_eq!(
            std::fs::read(dir.path().join(body_file)).unwrap(),
            b"{\"items\":[]}"
        );
    }
    #[test]
    fn recording_never_writes_through_a_symlink_out_of_the_cassette() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim.toml"), "kept").unwrap();
        std::fs::write(outside.path().join("keep.txt"), "kept").unwrap();
        let recorded = vec![Recorded {
            request: OutboundRequest {
                method: http::Method::GET,
                url: url::Url::parse("http://x.test/feed").unwrap(),
                headers: http::HeaderMap::new(),
                body: Bytes::new(),
                allow_internal: false,
            },
            response: UpstreamResponse {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: Bytes::from_static(b"<rss/>"),
            },
        }];

        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("victim.toml"),
            dir.path().join(INTERACTIONS_FILE),
        )
        .unwrap();
        let error = write_interactions(dir.path(), &recorded).unwrap_err();
        assert!(matches!(error, RecordError::Outside(_)), "{error}");
        assert_eq!(
            std::fs::read_to_string(outside.path().join("victim.toml")).unwrap(),
            "kept"
        );

        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(BODIES_DIR)).unwrap();
        let error = write_interactions(dir.path(), &recorded).unwrap_err();
        assert!(
            error.to_string().contains("bodies leads outside"),
            "{error}"
        );
        assert!(
            outside.path().join("keep.txt").exists(),
            "the directory the symlink names is not emptied"
        );
    }
}
