//! Replays a cassette: each request gets the response of the first interaction whose rules it
//! meets and that is not used up yet; when every match is used, the last one answers again.
//! Nothing reaches the network. A request no rule matches fails with a message naming it, and
//! is kept so the test can report it.

use super::{Interaction, InteractionFile};
use crate::config::files::{FileError, read_regular};
use crate::egress::{
    EgressLimits, OutboundRequest, Upstream, UpstreamError, UpstreamResponse, too_large,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The cassette's interactions, with how often each has answered.
pub struct Replay {
    dir: PathBuf,
    interactions: Vec<Interaction>,
    used: Mutex<Vec<u32>>,
    unmatched: Mutex<Vec<String>>,
}

impl Replay {
    pub fn new(dir: &Path, file: &InteractionFile) -> Self {
        Self {
            dir: dir.to_path_buf(),
            used: Mutex::new(vec![0; file.interactions.len()]),
            interactions: file.interactions.clone(),
            unmatched: Mutex::new(Vec::new()),
        }
    }

    /// Requests no interaction matched since the last call, described for the test report.
    pub fn take_unmatched(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.unmatched))
    }

    /// Interactions that never answered (a hint that a cassette has gone stale).
    pub fn unused(&self) -> Vec<String> {
        let used = lock(&self.used);
        self.interactions
            .iter()
            .zip(used.iter())
            .filter(|(_, count)| **count == 0)
            .map(|(interaction, _)| {
                format!("{} {}", interaction.request.method, interaction.request.url)
            })
            .collect()
    }

    fn answer(&self, request: &OutboundRequest) -> Option<&Interaction> {
        let mut used = lock(&self.used);
        let matching: Vec<usize> = self
            .interactions
            .iter()
            .enumerate()
            .filter(|(_, interaction)| matches(interaction, request))
            .map(|(index, _)| index)
            .collect();
        let chosen = matching
            .iter()
            .copied()
            .find(|&index| used[index] == 0)
            .or_else(|| matching.last().copied())?;
        used[chosen] += 1;
        self.interactions.get(chosen)
    }

    fn response(
        &self,
        interaction: &Interaction,
        limits: EgressLimits,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let recorded = &interaction.response;
        // A body over the response cap is refused as the network's would be, after the head.
        let mut over_cap = false;
        let body = match (&recorded.body, &recorded.body_file) {
            (_, Some(file)) => {
                // Checked again here: the cassette may have changed since it was loaded.
                let path = super::path_inside(&self.dir, file)
                    .map_err(|why| UpstreamError::internal(format!("cassette body {why}")))?;
                match read_regular(&path, limits.max_response_bytes, "response size") {
                    Ok(bytes) => Bytes::from(bytes),
                    Err(FileError::TooLarge { .. }) => {
                        over_cap = true;
                        Bytes::new()
                    }
                    Err(e) => return Err(UpstreamError::internal(format!("cassette body {e}"))),
                }
            }
            (Some(text), None) => Bytes::from(text.clone()),
            (None, None) => Bytes::new(),
        };
        let status = http::StatusCode::from_u16(recorded.status).map_err(|e| {
            let message = format!("cassette status {}: {e}", recorded.status);
            UpstreamError::internal(message)
        })?;
        let mut headers = http::HeaderMap::new();
        for (name, values) in &recorded.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                let message = format!("cassette header {name:?}: {e}");
                UpstreamError::internal(message)
            })?;
            for value in values.values() {
                let value = http::HeaderValue::from_str(value).map_err(|e| {
                    let message = format!("cassette header {name}: {e}");
                    UpstreamError::internal(message)
                })?;
                headers.append(name.clone(), value);
            }
        }
        if over_cap || body.len() as u64 > limits.max_response_bytes {
            return Err(UpstreamError {
                head: Some(Box::new((status, headers))),
                ..too_large(limits.max_response_bytes)
            });
        }
        Ok(UpstreamResponse {
            status,
            headers,
            body,
        })
    }
}

impl Upstream for Replay {
    fn send(
        &self,
        request: OutboundRequest,
        limits: EgressLimits,
    ) -> BoxFuture<'_, Result<UpstreamResponse, UpstreamError>> {
        Box::pin(async move {
            match self.answer(&request) {
                Some(interaction) => self.response(interaction, limits),
                None => {
                    let described = describe(&request);
                    lock(&self.unmatched).push(described.clone());
                    let message = format!("no cassette interaction matches {described}");
                    Err(UpstreamError::internal(message))
                }
            }
        })
    }
}

/// Method and URL, and the request headers a rule could have asked for.
fn describe(request: &OutboundRequest) -> String {
    let mut text = format!("{} {}", request.method, request.url);
    for name in ["if-none-match", "if-modified-since", "content-type"] {
        if let Some(value) = request.headers.get(name).and_then(|v| v.to_str().ok()) {
            text.push_str(&format!(" [{name}: {value}]"));
        }
    }
    text
}

fn matches(interaction: &Interaction, request: &OutboundRequest) -> bool {
    let rule = &interaction.request;
    if !rule.method.eq_ignore_ascii_case(request.method.as_str()) {
        return false;
    }
    if url::Url::parse(&rule.url).ok().as_ref() != Some(&request.url) {
        return false;
    }
    let headers_match = rule.headers.iter().all(|(name, value)| {
        request
            .headers
            .get_all(name.as_str())
            .iter()
            .any(|sent| sent.to_str().is_ok_and(|sent| sent == value))
    });
    let body_matches = rule
        .body_contains
        .as_ref()
        .is_none_or(|needle| String::from_utf8_lossy(&request.body).contains(needle.as_str()));
    headers_match && body_matches
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::{HeaderValues, RecordedResponse, RequestRule};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn interaction(url: &str, headers: &[(&str, &str)], status: u16) -> Interaction {
        Interaction {
            request: RequestRule {
                method: "GET".to_string(),
                url: url.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body_contains: None,
            },
            response: RecordedResponse {
                status,
                headers: BTreeMap::from([(
                    "etag".to_string(),
                    HeaderValues::One(format!("\"{status}\"")),
                )]),
                body: Some(format!("answer {status}")),
                body_file: None,
            },
        }
    }

    fn get(url: &str, headers: &[(&str, &str)]) -> OutboundRequest {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        OutboundRequest {
            method: http::Method::GET,
            url: url::Url::parse(url).unwrap(),
            headers: map,
            body: Bytes::new(),
            allow_internal: false,
        }
    }

    fn limits(max: u64) -> EgressLimits {
        EgressLimits {
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_response_bytes: max,
            max_request_bytes: 1024,
            requests_in_flight: 8,
            requests_per_call: 1000,
        }
    }

    #[tokio::test]
    async fn rules_pick_the_interaction_and_used_ones_give_way_to_the_next() {
        let file = InteractionFile {
            interactions: vec![
                interaction("http://a.test/feed", &[("if-none-match", "\"200\"")], 304),
                interaction("http://a.test/feed", &[], 200),
                interaction("http://a.test/feed", &[], 500),
            ],
        };
        let replay = Replay::new(Path::new("."), &file);
        let status = |r: Result<UpstreamResponse, UpstreamError>| r.map(|r| r.status.as_u16());
        // Unconditional: the first unused plain match, then the next, then the last repeats.
        for expected in [200, 500, 500] {
            let answer = replay.send(get("http://a.test/feed", &[]), limits(1024));
            assert_eq!(status(answer.await).unwrap(), expected);
        }
        let conditional = get("http://a.test/feed", &[("if-none-match", "\"200\"")]);
        let answer = replay.send(conditional, limits(1024)).await.unwrap();
        assert_eq!(answer.status.as_u16(), 304);
        assert_eq!(answer.headers["etag"], "\"304\"");
        assert!(replay.unused().is_empty());

        let error = replay
            .send(get("http://a.test/other", &[]), limits(1024))
            .await
            .unwrap_err();
        assert!(
            error.reason.contains("GET http://a.test/other"),
            "{}",
            error.reason
        );
        assert_eq!(replay.take_unmatched(), vec!["GET http://a.test/other"]);
        assert!(replay.take_unmatched().is_empty());
    }

    #[tokio::test]
    async fn a_recorded_body_over_the_limit_fails_as_it_would_live() {
        let file = InteractionFile {
            interactions: vec![interaction("http://a.test/big", &[], 200)],
        };
        let replay = Replay::new(Path::new("."), &file);
        let error = replay
            .send(get("http://a.test/big", &[]), limits(4))
            .await
            .unwrap_err();
        assert!(error.reason.contains("4-byte limit"), "{}", error.reason);
        // The head arrived: a 429's Retry-After would still count.
        let (status, headers) = *error.head.expect("the head is kept");
        assert_eq!(status.as_u16(), 200);
        assert_eq!(headers["etag"], "\"200\"");
    }
}
