//! A deliberately misbehaving `poller`, for the host's containment tests.
//!
//! A target's URL fragment (`…#trap`) picks the behaviour of its polls; without one, the
//! connector config value `mode` does. Mixing modes in one connector exercises one instance
//! pool across failures.
//!
//! | mode          | behaviour                                                                 |
//! |---------------|---------------------------------------------------------------------------|
//! | `ok` / unset  | one item `hostile-ok-<target>` titled `ok`; target state `calls` += 1     |
//! | `spin`        | loops forever without calling the host (the epoch deadline must stop it)  |
//! | `balloon`     | allocates and touches 1 MiB blocks forever (the memory cap must stop it)  |
//! | `trap`        | panics, which traps (`unreachable`)                                       |
//! | `http`        | GETs the target via `wasi:http`; one item titled with the status code, or a transient error with the `wasi:http` error code |
//! | `sleep`       | blocks in the host on a monotonic-clock pollable for `sleep-ms` (default one hour): epochs do not fire there, the host's wall-clock timeout must |
//! | `fail`        | target state `calls` += 1, then a transient error: the failed call's state must not be committed |
//! | `tagged`      | GETs the target, then returns one new item per poll (`<target>#<n>`, `n` from the cursor) titled with the build's tag |
//! | `post`        | POSTs a body of `body-bytes` (default 2 MiB) to the target, written in 4 KiB chunks after the request is made; one item titled with the status |
//! | `fanout`      | starts `fanout` (default 4) GETs of the target at once and keeps every response until all have come; one item titled with the count |
//! | `sequence`    | makes `requests` (default 10) GETs of the target one after another, carrying on past failures, and keeps every response: with `sequence-keep = "read"` after reading exactly its `content-length` bytes (the body stream stays open, as a garbage-collected runtime leaves it), otherwise unread; fails naming the first failure |
//! | `state`       | writes `state-keys` (default 1) keys of `state-key-bytes` (default: as long as the name) with values of `state-value-bytes` (default 16) in `state-scope` (`target` by default, or `connector`); names carry the target and a per-poll counter kept in the cursor, so each poll adds new keys (with `state-fixed = "true"` they carry no counter: each poll rewrites the same keys) |
//! | `loud`        | logs `log-lines` (default 300) lines of `log-bytes` (default 10,000) bytes, then one item |
//! | `items`       | returns `items` (default 100) items with `item-bytes` (default 100) bytes of content each |
//! | `shout`       | fails with a transient error of `error-bytes` (default 1 MiB) |
//! | `rank`        | adds 1 to `rank-members` (default 1) members `<target>/<i>` of the ranking `ranking` (default `hostile`) through the `rankings` import, then one item titled with the all-time top 3 (`member=score@rank,…`); a refusal is a permanent error with the host's text |
//! | `worst`       | all of the above at once, within whatever limits the config values say: fills `balloon-mib` (default 0) MiB of memory, `fanout` GETs of the target read to the end, one `post` of `body-bytes`, `state`, `loud` and `items` |
//!
//! The numbers come from the connector's config values. Any other mode is a permanent error
//! naming it.
//!
//! The build's tag is `TSUNAGI_HOSTILE_TAG` at compile time (`untagged` without it):
//! `scripts/build-plugins` builds tags `a` and `b` as two different components, so hot-swap
//! tests can tell which version served each poll. The world adds the optional `self-test`
//! export the host runs before swapping a plugin in; the config value `self-test` makes it
//! `trap` or `fail`.

wit_bindgen::generate!({
    inline: r#"
        package tsunagi:hostile;

        world hostile {
            include tsunagi:connector/poller@0.1.3;
            /// Run by the host before this plugin serves; an error or a trap refuses the swap.
            export self-test: func() -> result<_, string>;
        }
    "#,
    path: "../../wit",
    world: "tsunagi:hostile/hostile",
    generate_all,
});

/// Which build this is (see the module docs).
const BUILD_TAG: &str = match option_env!("TSUNAGI_HOSTILE_TAG") {
    Some(tag) => tag,
    None => "untagged",
};

use core::hint::black_box;

use exports::tsunagi::connector::poll::{Guest as PollGuest, PollRequest, PollResponse};
use tsunagi::connector::types::{ConnectorError, ErrorKind, Item};
use tsunagi::connector::{config, log, rankings, state};

struct HostileConnector;

impl PollGuest for HostileConnector {
    fn poll(request: PollRequest) -> Result<PollResponse, ConnectorError> {
        let mode = match request.target.rsplit_once('#') {
            Some((_, fragment)) => Some(fragment.to_owned()),
            None => config::get("mode"),
        };
        match mode.as_deref().unwrap_or("ok") {
            "ok" => ok(&request.target),
            "spin" => spin(),
            "balloon" => balloon(),
            "trap" => panic!("hostile connector: trap mode"),
            "http" => http_status(&request.target),
            "sleep" => sleep(),
            "fail" => fail(),
            "tagged" => tagged(&request),
            "post" => post(&request.target),
            "fanout" => fanout(&request.target, false),
            "sequence" => sequence(&request.target),
            "state" => write_state(&request),
            "loud" => loud(),
            "items" => Ok(response_of(many_items(&request.target))),
            "rank" => rank(&request.target),
            "shout" => Err(error(
                ErrorKind::Transient,
                "s".repeat(setting("error-bytes", 1 << 20)),
            )),
            "worst" => worst(&request),
            other => Err(error(
                ErrorKind::Permanent,
                format!("hostile connector: unknown mode {other:?}"),
            )),
        }
    }
}

impl Guest for HostileConnector {
    fn self_test() -> Result<(), String> {
        match config::get("self-test").as_deref() {
            Some("trap") => panic!("hostile connector: self-test trap"),
            Some("fail") => Err("hostile connector: self-test fails on request".to_owned()),
            _ => Ok(()),
        }
    }
}

/// A number from the connector's config values.
fn setting(key: &str, default: usize) -> usize {
    config::get(key)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// POSTs `body-bytes` to the target.
fn post(target: &str) -> Result<PollResponse, ConnectorError> {
    let status = http::post(target, setting("body-bytes", 2 << 20))
        .map_err(|message| error(ErrorKind::Transient, message))?;
    Ok(response(Item {
        id: format!("hostile-post-{target}"),
        title: Some(status.to_string()),
        ..empty_item()
    }))
}

/// Starts `fanout` GETs of the target at once, keeps every response until all have come (and
/// with `read`, reads each body to the end), and reports how many came.
fn fanout(target: &str, read: bool) -> Result<PollResponse, ConnectorError> {
    let count = setting("fanout", 4);
    let mut started = Vec::with_capacity(count);
    for _ in 0..count {
        started.push(
            http::start(target, http::Verb::Get).map_err(|m| error(ErrorKind::Transient, m))?,
        );
    }
    let mut kept = Vec::with_capacity(count);
    let mut bytes = 0;
    for future in &started {
        let response = http::wait(future).map_err(|m| error(ErrorKind::Transient, m))?;
        if read {
            bytes += http::read_body(&response).map_err(|m| error(ErrorKind::Transient, m))?;
        }
        kept.push(response);
    }
    Ok(response(Item {
        id: format!("hostile-fanout-{target}"),
        title: Some(format!("{} responses", kept.len())),
        summary: Some(format!("{bytes} bytes read")),
        ..empty_item()
    }))
}

/// Makes `requests` GETs one after another and keeps every response (see the module docs).
fn sequence(target: &str) -> Result<PollResponse, ConnectorError> {
    let count = setting("requests", 10);
    let read = config::get("sequence-keep").as_deref() == Some("read");
    let mut kept = Vec::new();
    let mut first_failure = None;
    for _ in 0..count {
        let answered = http::start(target, http::Verb::Get).and_then(|future| http::wait(&future));
        let kept_open = answered.and_then(|response| {
            let open = if read {
                Some(http::read_declared_length(&response)?)
            } else {
                None
            };
            // Dropped in this order at the end: stream, body, response (children first).
            Ok((open, response))
        });
        match kept_open {
            Ok(response) => kept.push(response),
            Err(failure) => {
                first_failure.get_or_insert(failure);
            }
        }
    }
    if let Some(failure) = first_failure {
        return Err(error(
            ErrorKind::Transient,
            format!(
                "{} of {count} requests answered; first failure: {failure}",
                kept.len()
            ),
        ));
    }
    Ok(response(Item {
        id: format!("hostile-sequence-{target}"),
        title: Some(format!("{} responses", kept.len())),
        ..empty_item()
    }))
}

/// Writes the `state` mode's keys; the cursor counts the polls.
fn write_state(request: &PollRequest) -> Result<PollResponse, ConnectorError> {
    let poll = request
        .cursor
        .as_deref()
        .and_then(|cursor| cursor.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let scope = match config::get("state-scope").as_deref() {
        Some("connector") => state::Scope::Connector,
        _ => state::Scope::Target,
    };
    let value = "v".repeat(setting("state-value-bytes", 16));
    let fixed = config::get("state-fixed").as_deref() == Some("true");
    for key in 0..setting("state-keys", 1) {
        let mut name = if fixed {
            format!("{}#{key}", request.target)
        } else {
            format!("{}#{poll}.{key}", request.target)
        };
        let wanted = setting("state-key-bytes", name.len());
        while name.len() < wanted {
            name.push('k');
        }
        state::set(scope, &name, &value);
    }
    let mut response = response(Item {
        id: format!("hostile-state-{}#{poll}", request.target),
        title: Some("state".to_owned()),
        ..empty_item()
    });
    response.cursor = Some(poll.to_string());
    Ok(response)
}

/// Logs `log-lines` lines of `log-bytes` bytes.
fn loud() -> Result<PollResponse, ConnectorError> {
    let line = "l".repeat(setting("log-bytes", 10_000));
    for _ in 0..setting("log-lines", 300) {
        log::log(log::Level::Info, &line);
    }
    Ok(response(Item {
        id: "hostile-loud".to_owned(),
        title: Some("loud".to_owned()),
        ..empty_item()
    }))
}

/// `items` items of `item-bytes` bytes of content each.
fn many_items(target: &str) -> Vec<Item> {
    let content = "c".repeat(setting("item-bytes", 100));
    (0..setting("items", 100))
        .map(|n| Item {
            id: format!("{target}#{n}"),
            content: Some(content.clone()),
            ..empty_item()
        })
        .collect()
}

/// Everything at once, for the host's memory benchmark.
fn worst(request: &PollRequest) -> Result<PollResponse, ConnectorError> {
    const MIB: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    for block in 0..setting("balloon-mib", 0) {
        hoard.push(black_box(vec![(block as u8) | 1; MIB]));
    }
    fanout(&request.target, true)?;
    post(&request.target)?;
    let mut response = write_state(request)?;
    loud()?;
    response.items = many_items(&request.target);
    black_box(&hoard);
    Ok(response)
}

fn response_of(items: Vec<Item>) -> PollResponse {
    PollResponse {
        items,
        ..response(empty_item())
    }
}

/// GETs the target, then returns a new item per poll, titled with the build's tag.
fn tagged(request: &PollRequest) -> Result<PollResponse, ConnectorError> {
    let status = http::get_status(&request.target)
        .map_err(|message| error(ErrorKind::Transient, message))?;
    if status != 200 {
        return Err(error(ErrorKind::Transient, format!("HTTP {status}")));
    }
    let poll = request
        .cursor
        .as_deref()
        .and_then(|cursor| cursor.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut response = response(Item {
        id: format!("{}#{poll}", request.target),
        title: Some(BUILD_TAG.to_owned()),
        ..empty_item()
    });
    response.cursor = Some(poll.to_string());
    Ok(response)
}

/// Counts the call in target state and returns one item.
fn ok(target: &str) -> Result<PollResponse, ConnectorError> {
    let calls = count_call();
    Ok(response(Item {
        id: format!("hostile-ok-{target}"),
        title: Some("ok".to_owned()),
        summary: Some(format!("call {calls}")),
        ..empty_item()
    }))
}

/// Counts members in a ranking, then reads its top 3.
fn rank(target: &str) -> Result<PollResponse, ConnectorError> {
    let ranking = config::get("ranking").unwrap_or_else(|| "hostile".to_owned());
    let members = setting("rank-members", 1);
    let refused = |message: String| error(ErrorKind::Permanent, message);
    for member in 0..members {
        rankings::add(&ranking, &format!("{target}/{member}"), 1).map_err(refused)?;
    }
    let top = rankings::top(&ranking, rankings::Period::AllTime, 3).map_err(refused)?;
    let title = top
        .iter()
        .map(|s| format!("{}={}@{}", s.member, s.score, s.rank))
        .collect::<Vec<_>>()
        .join(",");
    Ok(response(Item {
        id: format!("hostile-rank-{target}"),
        title: Some(title),
        ..empty_item()
    }))
}

/// Counts the call in target state, then fails.
fn fail() -> Result<PollResponse, ConnectorError> {
    let calls = count_call();
    Err(error(
        ErrorKind::Transient,
        format!("hostile connector: fail mode (call {calls})"),
    ))
}

/// Increments the target-scoped `calls` counter; returns the new value.
fn count_call() -> u64 {
    let calls = state::get(state::Scope::Target, "calls")
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    state::set(state::Scope::Target, "calls", &calls.to_string());
    calls
}

/// Never returns and never calls the host.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks, fills each (so every page is really written) and keeps them all,
/// until the allocator fails (which aborts: a trap) or the host stops the call.
fn balloon() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let fill = (hoard.len() as u8) | 1;
        hoard.push(black_box(vec![fill; BLOCK]));
    }
}

/// Blocks inside a host call, where epoch interruption cannot reach the guest.
fn sleep() -> Result<PollResponse, ConnectorError> {
    let millis = config::get("sleep-ms")
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(60 * 60 * 1000);
    wasi::clocks::monotonic_clock::subscribe_duration(millis.saturating_mul(1_000_000)).block();
    Ok(response(Item {
        id: "hostile-sleep".to_owned(),
        title: Some("woke up".to_owned()),
        ..empty_item()
    }))
}

/// GETs `target` and reports the status code as the item title.
fn http_status(target: &str) -> Result<PollResponse, ConnectorError> {
    let status =
        http::get_status(target).map_err(|message| error(ErrorKind::Transient, message))?;
    Ok(response(Item {
        id: format!("hostile-http-{target}"),
        title: Some(status.to_string()),
        ..empty_item()
    }))
}

fn response(item: Item) -> PollResponse {
    PollResponse {
        not_modified: false,
        items: vec![item],
        etag: None,
        last_modified: None,
        cursor: None,
        refresh_after_seconds: None,
    }
}

fn empty_item() -> Item {
    Item {
        id: String::new(),
        title: None,
        link: None,
        published: None,
        updated: None,
        authors: Vec::new(),
        summary: None,
        content: None,
        categories: Vec::new(),
    }
}

fn error(kind: ErrorKind, message: String) -> ConnectorError {
    ConnectorError { kind, message }
}

/// The smallest possible `wasi:http` client: GET or POST, no headers.
mod http {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method,
        OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasi::io::streams::{InputStream, StreamError};

    pub enum Verb {
        Get,
        Post,
    }

    /// GETs `url` (absolute http or https) and returns the response status; errors are the
    /// `wasi:http` error code's text, including the host's reason for a refusal.
    pub fn get_status(url: &str) -> Result<u16, String> {
        let future = start(url, Verb::Get)?;
        Ok(wait(&future)?.status())
    }

    /// Makes the request; its response is still to come.
    pub fn start(url: &str, verb: Verb) -> Result<FutureIncomingResponse, String> {
        let request = build_request(url, verb)?;
        outgoing_handler::handle(request, None).map_err(|code| describe(&code))
    }

    /// Waits for the response.
    pub fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, String> {
        let result = loop {
            if let Some(result) = future.get() {
                break result;
            }
            future.subscribe().block();
        };
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(describe(&code)),
            Err(()) => Err("response was already taken".to_owned()),
        }
    }

    /// Reads the body to its end; returns its length.
    pub fn read_body(response: &IncomingResponse) -> Result<usize, String> {
        let body = response
            .consume()
            .map_err(|()| "body already taken".to_owned())?;
        let mut length = 0;
        {
            let stream = body
                .stream()
                .map_err(|()| "body stream already taken".to_owned())?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => length += chunk.len(),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
                }
            }
        }
        drop(IncomingBody::finish(body));
        Ok(length)
    }

    /// Reads exactly the body's `content-length` bytes and keeps the body and its stream open
    /// (not reading on to the end of the stream).
    pub fn read_declared_length(
        response: &IncomingResponse,
    ) -> Result<(InputStream, IncomingBody), String> {
        let declared = response
            .headers()
            .get("content-length")
            .first()
            .and_then(|value| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
            .ok_or_else(|| "no content-length".to_owned())?;
        let body = response
            .consume()
            .map_err(|()| "body already taken".to_owned())?;
        let stream = body
            .stream()
            .map_err(|()| "body stream already taken".to_owned())?;
        let mut read = 0;
        while read < declared {
            match stream.blocking_read(declared - read) {
                Ok(chunk) => read += chunk.len() as u64,
                Err(StreamError::Closed) => return Err(format!("body ended after {read} bytes")),
                Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
            }
        }
        Ok((stream, body))
    }

    /// POSTs `size` bytes to `url`: the request is made first, then its body is written in
    /// 4 KiB chunks, as a streaming client would. Returns the status.
    pub fn post(url: &str, size: usize) -> Result<u16, String> {
        let request = build_request(url, Verb::Post)?;
        let body = request
            .body()
            .map_err(|()| "body already taken".to_owned())?;
        let future = outgoing_handler::handle(request, None).map_err(|code| describe(&code))?;
        let mut refused = false;
        {
            let stream = body
                .write()
                .map_err(|()| "body stream already taken".to_owned())?;
            let chunk = [b'p'; 4096];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.blocking_write_and_flush(&chunk[..n]).is_err() {
                    // The host stopped reading: its answer says why.
                    refused = true;
                    break;
                }
                left -= n;
            }
        }
        if !refused {
            let _ = OutgoingBody::finish(body, None);
        }
        Ok(wait(&future)?.status())
    }

    fn build_request(url: &str, verb: Verb) -> Result<OutgoingRequest, String> {
        let (scheme, authority, path) = split_url(url)?;
        let request = OutgoingRequest::new(Fields::new());
        let invalid = |part: &str| format!("cannot request {url:?}: invalid {part}");
        let method = match verb {
            Verb::Get => Method::Get,
            Verb::Post => Method::Post,
        };
        request
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| invalid("path"))?;
        Ok(request)
    }

    /// Splits an absolute http(s) URL into scheme, authority and path-with-query (the fragment is
    /// dropped). Deliberately minimal: the tests that use this mode pass plain URLs.
    fn split_url(url: &str) -> Result<(Scheme, &str, String), String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(format!("not an http(s) URL: {url:?}"));
        };
        let rest = rest.split('#').next().unwrap_or(rest);
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(format!("URL without a host: {url:?}"));
        }
        let path = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        Ok((scheme, authority, path))
    }

    fn describe(code: &ErrorCode) -> String {
        match code {
            ErrorCode::InternalError(Some(reason)) => format!("http request failed: {reason}"),
            other => {
                let debug = format!("{other:?}");
                let name = debug.strip_prefix("ErrorCode::").unwrap_or(&debug);
                format!("http request failed: {name}")
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn split(url: &str) -> (bool, String, String) {
            let (scheme, authority, path) = split_url(url).unwrap();
            (matches!(scheme, Scheme::Https), authority.to_owned(), path)
        }

        #[test]
        fn splits_urls() {
            let owned = |https, a: &str, p: &str| (https, a.to_owned(), p.to_owned());
            assert_eq!(
                split("http://127.0.0.1:8080/feed?x=1#top"),
                owned(false, "127.0.0.1:8080", "/feed?x=1")
            );
            assert_eq!(
                split("https://example.com"),
                owned(true, "example.com", "/")
            );
            assert_eq!(
                split("https://example.com?q"),
                owned(true, "example.com", "/?q")
            );
            assert_eq!(split("http://[::1]:9/a/b"), owned(false, "[::1]:9", "/a/b"));
        }

        #[test]
        fn rejects_other_urls() {
            assert!(split_url("ftp://example.com/").is_err());
            assert!(split_url("example.com/feed").is_err());
            assert!(split_url("http:///feed").is_err());
        }
    }
}

export!(HostileConnector);
