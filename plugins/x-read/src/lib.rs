//! tsunagi X read connector: a `poller` whose targets are linked X users (their numeric user
//! ids). Each poll fetches the user's timeline newer than the cursor (the newest post id seen),
//! following pages up to `max_pages`, and returns the posts as items, oldest first.
//!
//! Config (`[connectors.NAME.config]`): `base_url` (required, e.g. `https://api.x.com`),
//! `api = "v2"` (default) or `"v1.1"`, `max_results` (v2: 5–100, default 100; v1.1 `count`:
//! 1–200, default 200), `max_pages` (1–100, default 10). No secrets here: the host signs each
//! request for the target's credential.
//!
//! - `timeline`: one page → posts → items (pure, unit-tested natively).
//! - this module: the requests, paging and status handling, over [`Fetch`] so the whole poll
//!   is unit-tested natively too.
//!
//! A poll is all or nothing: any failed page fails the poll, so the cursor (the host commits it
//! with the items) never passes posts that were not imported.

pub mod timeline;

use tsunagi_sdk::http::{self, Response};
use tsunagi_sdk::prelude::*;

use crate::timeline::{Page, Post};

/// Identifies the connector to X.
pub const USER_AGENT: &str = "tsunagi-x-read/0.1";

/// The v2 fields the items need.
pub const TWEET_FIELDS: &str = "created_at,entities,referenced_tweets";

/// Which API shape to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    V2,
    V11,
}

/// The connector's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub base_url: String,
    pub api: Api,
    pub max_results: u32,
    pub max_pages: u32,
}

impl Settings {
    /// From config values; a bad value is `permanent`, naming the key.
    pub fn from_values(get: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let base_url = get("base_url").ok_or_else(|| {
            Error::permanent("missing config key \"base_url\" in [connectors.NAME.config]")
        })?;
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(Error::permanent(format!(
                "invalid value {base_url:?} for config key \"base_url\": not an http(s) URL"
            )));
        }
        let api = match get("api").as_deref() {
            None | Some("v2") => Api::V2,
            Some("v1.1") => Api::V11,
            Some(other) => {
                return Err(Error::permanent(format!(
                    "invalid value {other:?} for config key \"api\": expected \"v2\" or \"v1.1\""
                )));
            }
        };
        let (range, default) = match api {
            Api::V2 => (5..=100, 100),
            Api::V11 => (1..=200, 200),
        };
        let max_results = ranged(&get, "max_results", range, default)?;
        let max_pages = ranged(&get, "max_pages", 1..=100, 10)?;
        Ok(Settings {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api,
            max_results,
            max_pages,
        })
    }
}

fn ranged(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<u32> {
    let Some(value) = get(key) else {
        return Ok(default);
    };
    match value.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(Error::permanent(format!(
            "invalid value {value:?} for config key {key:?}: expected a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// One GET, with query parameters; the component sends it through the host.
pub trait Fetch {
    fn get(&mut self, url: &str, query: &[(&str, String)]) -> Result<Response>;
}

struct HostFetch;

impl Fetch for HostFetch {
    fn get(&mut self, url: &str, query: &[(&str, String)]) -> Result<Response> {
        let mut request = http::Request::get(url)
            .header("accept", "application/json")
            .header("user-agent", USER_AGENT);
        for (name, value) in query {
            request = request.query(name, value);
        }
        request.send()
    }
}

/// What one poll found: items oldest first, the new cursor, whether `max_pages` cut it short.
#[derive(Debug, PartialEq, Eq)]
pub struct Polled {
    pub items: Vec<Item>,
    pub cursor: Option<String>,
    pub pages: u32,
    pub truncated: bool,
    /// Lines for the host's log (written by the component, so the logic stays testable natively).
    pub notes: Vec<String>,
}

/// Polls user `user` once.
pub fn poll_user(
    fetch: &mut impl Fetch,
    settings: &Settings,
    user: &str,
    cursor: Option<&str>,
) -> Result<Polled> {
    if user.is_empty() || user.len() > 20 || !user.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::permanent(format!(
            "target {user:?} is not an X user id (decimal digits)"
        )));
    }
    let mut notes = Vec::new();
    let since: Option<u64> = match cursor {
        None => None,
        Some(text) => match text.parse() {
            Ok(id) => Some(id),
            Err(_) => {
                // A corrupt cursor must not stop the user's polls for good; the host
                // deduplicates what is fetched again.
                notes.push(format!(
                    "user {user}: stored cursor {text:?} is not a post id; polling from the newest posts"
                ));
                None
            }
        },
    };
    let mut posts: Vec<Post> = Vec::new();
    let mut pages = 0;
    let mut truncated = false;
    let mut next: Option<String> = None;
    // v1.1 pages down with max_id (inclusive): one below the oldest post so far.
    let mut max_id: Option<u64> = None;
    loop {
        let page = fetch_page(fetch, settings, user, since, next.as_deref(), max_id)?;
        pages += 1;
        let full = page.posts.len() as u32 >= settings.max_results;
        let oldest = page.posts.iter().map(|post| post.id).min();
        posts.extend(page.posts);
        let more = match settings.api {
            Api::V2 => page.next_token.is_some(),
            // v1.1 has no token: a full page may have older posts behind it.
            Api::V11 => full && oldest.is_some_and(|id| since.is_none_or(|since| id > since + 1)),
        };
        if !more {
            break;
        }
        if pages >= settings.max_pages {
            truncated = true;
            notes.push(format!(
                "user {user}: stopped after max_pages = {pages} pages; older posts newer than the cursor are not imported"
            ));
            break;
        }
        next = page.next_token;
        max_id = oldest.map(|id| id - 1);
    }
    // Time order, oldest first; ids grow with time on X. A post on two pages counts once.
    posts.sort_by_key(|post| post.id);
    posts.dedup_by_key(|post| post.id);
    if let Some(since) = since {
        posts.retain(|post| post.id > since);
    }
    let newest = posts.last().map(|post| post.id).max(since);
    Ok(Polled {
        cursor: newest.map(|id| id.to_string()),
        items: posts.into_iter().map(|post| post.into_item(user)).collect(),
        pages,
        truncated,
        notes,
    })
}

fn fetch_page(
    fetch: &mut impl Fetch,
    settings: &Settings,
    user: &str,
    since: Option<u64>,
    token: Option<&str>,
    max_id: Option<u64>,
) -> Result<Page> {
    let mut query: Vec<(&str, String)> = Vec::new();
    let url = match settings.api {
        Api::V2 => {
            query.push(("max_results", settings.max_results.to_string()));
            query.push(("tweet.fields", TWEET_FIELDS.to_owned()));
            if let Some(since) = since {
                query.push(("since_id", since.to_string()));
            }
            if let Some(token) = token {
                query.push(("pagination_token", token.to_owned()));
            }
            format!("{}/2/users/{user}/tweets", settings.base_url)
        }
        Api::V11 => {
            query.push(("user_id", user.to_owned()));
            query.push(("count", settings.max_results.to_string()));
            if let Some(since) = since {
                query.push(("since_id", since.to_string()));
            }
            if let Some(max_id) = max_id {
                query.push(("max_id", max_id.to_string()));
            }
            format!("{}/1.1/statuses/user_timeline.json", settings.base_url)
        }
    };
    let response = fetch.get(&url, &query)?;
    let status = response.status();
    if status != 200 {
        return Err(status_error(user, response));
    }
    let content_type = response.header("content-type");
    let body = response.bytes()?;
    match settings.api {
        Api::V2 => timeline::parse_v2(user, content_type.as_deref(), &body),
        Api::V11 => timeline::parse_v11(user, content_type.as_deref(), &body),
    }
}

/// The largest error body read to name the problem (X's problem bodies are a few hundred bytes).
const ERROR_BODY_CAP: usize = 4096;

/// A non-200 answer: 429 → `rate-limited` (the reset and the problem type named; the host
/// reads the headers itself), 401/403 → `permanent` naming the user, 5xx → `transient`, others
/// as the SDK classes them.
fn status_error(user: &str, response: Response) -> Error {
    let status = response.status();
    let url = response.display_url().to_owned();
    let reset = response.header("x-rate-limit-reset");
    let problem = response
        .bytes()
        .ok()
        .filter(|body| body.len() <= ERROR_BODY_CAP)
        .and_then(|body| serde_json::from_slice::<json::Value>(&body).ok())
        .and_then(|body| {
            let kind = body.get("type").and_then(json::Value::as_str);
            let title = body.get("title").and_then(json::Value::as_str);
            let detail = body
                .get("detail")
                .and_then(json::Value::as_str)
                .or_else(|| body.get("errors")?.get(0)?.get("message")?.as_str());
            // `about:blank` says nothing, and X often repeats the title as the detail.
            let kind = kind.filter(|kind| *kind != "about:blank");
            let detail = detail.filter(|detail| Some(*detail) != title);
            let parts: Vec<&str> = [title, detail, kind].into_iter().flatten().collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        });
    let said = problem.map(|text| format!(": {text}")).unwrap_or_default();
    match status {
        429 => {
            let reset = reset
                .map(|r| format!(" (x-rate-limit-reset: {r})"))
                .unwrap_or_default();
            Error::rate_limited(format!("user {user}: HTTP 429 from {url}{reset}{said}"))
        }
        401 | 403 => Error::permanent(format!(
            "user {user}: HTTP {status} from {url}: the user's token was refused or lacks access{said}"
        )),
        500..=599 => Error::transient(format!("user {user}: HTTP {status} from {url}{said}")),
        _ => {
            let kind = http::status_error_kind(status).unwrap_or(ErrorKind::Transient);
            Error::new(kind, format!("user {user}: HTTP {status} from {url}{said}"))
        }
    }
}

struct XRead;

impl Poller for XRead {
    fn poll(request: PollRequest) -> Result<PollResponse> {
        let settings = Settings::from_values(config::get)?;
        let polled = poll_user(
            &mut HostFetch,
            &settings,
            &request.target,
            request.cursor.as_deref(),
        )?;
        for note in &polled.notes {
            tsunagi_sdk::log::info(note);
        }
        tsunagi_sdk::debug!(
            "user {}: {} posts in {} pages",
            request.target,
            polled.items.len(),
            polled.pages
        );
        Ok(PollResponse::items(polled.items).cursor(polled.cursor))
    }
}

tsunagi_sdk::export_poller!(XRead);

#[cfg(test)]
mod tests;
