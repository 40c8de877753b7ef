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
//!
//! Any other mode is a permanent error naming it.
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
            include tsunagi:connector/poller@0.1.0;
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
use tsunagi::connector::{config, state};

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

/// The smallest possible `wasi:http` GET: no headers, the body is not read.
mod http {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{ErrorCode, Fields, Method, OutgoingRequest, Scheme};

    /// GETs `url` (absolute http or https) and returns the response status; errors are the
    /// `wasi:http` error code's text, including the host's reason for a refusal.
    pub fn get_status(url: &str) -> Result<u16, String> {
        let request = build_request(url)?;
        let future = outgoing_handler::handle(request, None).map_err(|code| describe(&code))?;
        let result = loop {
            if let Some(result) = future.get() {
                break result;
            }
            future.subscribe().block();
        };
        match result {
            Ok(Ok(response)) => Ok(response.status()),
            Ok(Err(code)) => Err(describe(&code)),
            Err(()) => Err("response was already taken".to_owned()),
        }
    }

    fn build_request(url: &str) -> Result<OutgoingRequest, String> {
        let (scheme, authority, path) = split_url(url)?;
        let request = OutgoingRequest::new(Fields::new());
        let invalid = |part: &str| format!("cannot request {url:?}: invalid {part}");
        request
            .set_method(&Method::Get)
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
