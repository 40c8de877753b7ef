//! Unit tests of the target-independent parts of the client: status classes, redirect hops,
//! header checks and in-memory responses. (`send` itself needs the host.)

use std::collections::BTreeMap;

use super::*;

#[test]
fn status_classes() {
    for ok in [200, 203, 204, 299, 304] {
        assert_eq!(status_error_kind(ok), None, "{ok}");
    }
    assert_eq!(status_error_kind(429), Some(ErrorKind::RateLimited));
    assert_eq!(status_error_kind(410), Some(ErrorKind::Permanent));
    assert_eq!(status_error_kind(404), Some(ErrorKind::Transient));
    assert_eq!(status_error_kind(408), Some(ErrorKind::Transient));
    assert_eq!(status_error_kind(400), Some(ErrorKind::Permanent));
    assert_eq!(status_error_kind(401), Some(ErrorKind::Permanent));
    assert_eq!(status_error_kind(403), Some(ErrorKind::Permanent));
    assert_eq!(status_error_kind(451), Some(ErrorKind::Permanent));
    assert_eq!(status_error_kind(500), Some(ErrorKind::Transient));
    assert_eq!(status_error_kind(503), Some(ErrorKind::Transient));
    assert_eq!(status_error_kind(599), Some(ErrorKind::Transient));
    // Unexpected: informational, redirects nobody followed, not HTTP at all.
    assert_eq!(status_error_kind(101), Some(ErrorKind::Transient));
    assert_eq!(status_error_kind(302), Some(ErrorKind::Transient));
    assert_eq!(status_error_kind(999), Some(ErrorKind::Transient));
}

#[test]
fn status_errors_name_status_and_url() {
    let err = status_error(429, "https://example.com/feed").unwrap();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.message(), "HTTP 429 from https://example.com/feed");
    assert!(status_error(200, "https://example.com/feed").is_none());
}

#[test]
fn error_for_status_passes_successes_and_not_modified() {
    let response = |status| Response::from_parts(status, "https://example.com/x", vec![], vec![]);
    assert_eq!(response(200).error_for_status().unwrap().status(), 200);
    assert_eq!(response(304).error_for_status().unwrap().status(), 304);
    let err = response(410).error_for_status().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(err.message(), "HTTP 410 from https://example.com/x");
}

#[test]
fn retry_after_is_left_to_the_host() {
    let response = Response::from_parts(
        503,
        "https://example.com/x",
        vec![("retry-after".to_owned(), b"120".to_vec())],
        vec![],
    );
    let err = response.error_for_status().unwrap_err();
    assert_eq!(err.message(), "HTTP 503 from https://example.com/x");
}

#[test]
fn redirect_statuses() {
    for status in [300, 301, 302, 303, 307, 308] {
        assert!(is_redirect(status), "{status}");
    }
    for status in [200, 304, 404] {
        assert!(!is_redirect(status), "{status}");
    }
}

#[test]
fn header_names() {
    assert!(is_valid_header_name("if-none-match"));
    assert!(is_valid_header_name("X-Api-Key"));
    assert!(!is_valid_header_name(""));
    assert!(!is_valid_header_name("bad name"));
    assert!(!is_valid_header_name("colon:"));
    assert!(!is_valid_header_name("ünicode"));
}

#[test]
fn header_values() {
    assert!(is_valid_header_value("W/\"5e-1a\""));
    assert!(is_valid_header_value("Wed, 01 May 2024 12:00:00 GMT"));
    assert!(is_valid_header_value("a\tb"));
    assert!(is_valid_header_value(""));
    assert!(!is_valid_header_value(" padded"));
    assert!(!is_valid_header_value("padded\t"));
    assert!(!is_valid_header_value("a\r\nX-Injected: 1"));
    assert!(!is_valid_header_value("nul\0"));
    assert!(!is_valid_header_value("del\x7f"));
}

#[test]
fn urls() {
    assert!(parse_url("https://example.com/feed.xml").is_ok());
    assert!(parse_url("http://127.0.0.1:8080/rss").is_ok());
    for bad in [
        "not a url",
        "/relative",
        "ftp://example.com/feed",
        "file:///etc/passwd",
        "data:text/plain,hi",
    ] {
        let err = parse_url(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent, "{bad}");
    }
}

#[test]
fn send_reports_builder_problems_before_any_io() {
    let err = Request::get("not a url").send().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message().starts_with("invalid URL \"not a url\": "),
        "{err}"
    );

    let err = Request::get("https://example.com/")
        .header("x-token", "a\r\nb")
        .send()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.message(),
        r#"cannot send header x-token: invalid value "a\r\nb""#
    );

    // Padding is trimmed (as fetch() does), not an error: the request goes on to the
    // transport, which natively panics. The URL check comes after the headers, so a bad URL
    // shows the header passed.
    let err = Request::get("not a url")
        .header("if-none-match", " \"v1\"\t")
        .header("x-empty", "")
        .send()
        .unwrap_err();
    assert!(err.message().starts_with("invalid URL"), "{err}");

    let err = Request::get("https://example.com/")
        .header("bad name", "x")
        .send()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);

    // JSON object keys must be strings.
    let err = Request::post("https://example.com/")
        .json(&BTreeMap::from([((1, 2), 3)]))
        .send()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.message()
            .starts_with("cannot encode the JSON body for https://example.com/: ")
    );
}

#[test]
fn json_bodies_set_the_content_type_once() {
    let request = Request::post("https://example.com/").json(&[1, 2]);
    assert_eq!(request.body.as_deref(), Some(&b"[1,2]"[..]));
    assert_eq!(
        request.header_value("content-type"),
        Some("application/json")
    );

    let request = Request::post("https://example.com/")
        .header("Content-Type", "application/activity+json")
        .json(&[1]);
    assert_eq!(
        request.header_value("content-type"),
        Some("application/activity+json")
    );
    assert_eq!(request.headers.len(), 1);
}

#[test]
fn debug_output_hides_header_values() {
    let request = Request::get("https://example.com/").header("authorization", "Bearer secret");
    let debug = format!("{request:?}");
    assert!(debug.contains("authorization"), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
}

#[test]
fn optional_headers() {
    let request = Request::get("https://example.com/")
        .header_opt("if-none-match", Some("\"v1\""))
        .header_opt("if-modified-since", None);
    assert_eq!(
        request.headers,
        vec![("if-none-match".to_owned(), "\"v1\"".to_owned())]
    );
}

fn hop(method: Method, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Hop {
    Hop {
        method,
        url: Url::parse(url).unwrap(),
        shown: url.to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: body.map(<[u8]>::to_vec),
    }
}

fn resolve(from: &str, location: &str) -> String {
    Url::parse(from)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

#[test]
fn redirects_resolve_relative_locations() {
    let from = "https://example.com/a/feed.xml?x=1";
    assert_eq!(resolve(from, "/b/rss"), "https://example.com/b/rss");
    assert_eq!(
        resolve(from, "other.xml"),
        "https://example.com/a/other.xml"
    );
    assert_eq!(
        resolve(from, "//cdn.example.net/f"),
        "https://cdn.example.net/f"
    );
    assert_eq!(
        resolve(from, "?page=2"),
        "https://example.com/a/feed.xml?page=2"
    );
    assert_eq!(
        resolve(from, "http://elsewhere.test/feed"),
        "http://elsewhere.test/feed"
    );
}

#[test]
fn redirects_to_other_schemes_are_bad_responses() {
    let next = Url::parse("gopher://example.com/").unwrap();
    let err = check_redirect_scheme("https://example.com/feed", &next).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadResponse);
    assert!(err.message().contains("gopher"), "{err}");
}

#[test]
fn too_many_redirects_is_permanent_and_names_the_start() {
    let err = too_many_redirects("https://example.com/feed");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.message(),
        "too many redirects from https://example.com/feed"
    );
}

#[test]
fn redirected_get_keeps_its_headers_on_the_same_origin() {
    let first = hop(
        Method::Get,
        "https://example.com/feed",
        &[
            ("accept", "application/json"),
            ("authorization", "Bearer t"),
        ],
        None,
    );
    let next = first.redirected(301, Url::parse("https://example.com/new-feed").unwrap());
    assert_eq!(next.method, Method::Get);
    assert_eq!(next.shown, "https://example.com/new-feed");
    assert_eq!(next.headers.len(), 2);
}

#[test]
fn cross_origin_redirects_drop_credentials() {
    let first = hop(
        Method::Get,
        "https://example.com/feed",
        &[
            ("accept", "application/json"),
            ("Authorization", "Bearer t"),
            ("cookie", "s=1"),
        ],
        None,
    );
    let next = first.redirected(302, Url::parse("https://cdn.example.net/feed").unwrap());
    assert_eq!(
        next.headers,
        vec![("accept".to_owned(), "application/json".to_owned())]
    );
}

#[test]
fn see_other_turns_into_a_bodiless_get() {
    let first = hop(
        Method::Post,
        "https://example.com/posts",
        &[("content-type", "application/json"), ("accept", "*/*")],
        Some(b"{}"),
    );
    let next = first.redirected(303, Url::parse("https://example.com/posts/1").unwrap());
    assert_eq!(next.method, Method::Get);
    assert_eq!(next.body, None);
    assert_eq!(next.headers, vec![("accept".to_owned(), "*/*".to_owned())]);
}

#[test]
fn temporary_and_permanent_redirects_repeat_method_and_body() {
    for status in [307, 308] {
        let first = hop(Method::Put, "https://example.com/a", &[], Some(b"x"));
        let next = first.redirected(status, Url::parse("https://example.com/b").unwrap());
        assert_eq!(next.method, Method::Put, "{status}");
        assert_eq!(next.body.as_deref(), Some(&b"x"[..]), "{status}");
    }
}

#[test]
fn in_memory_responses() {
    let response = Response::from_parts(
        200,
        "https://example.com/api",
        vec![
            ("Content-Type".to_owned(), b"application/json".to_vec()),
            ("x-binary".to_owned(), vec![0xff, 0xfe]),
        ],
        br#"{"a": 1}"#.to_vec(),
    );
    assert_eq!(response.status(), 200);
    assert_eq!(response.url(), "https://example.com/api");
    assert_eq!(response.display_url(), "https://example.com/api");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(response.header("x-binary"), None);
    assert_eq!(response.header("missing"), None);
    assert_eq!(response.headers().len(), 2);
    let value: json::Value = response.json().unwrap();
    assert_eq!(value["a"], 1);
}

#[test]
fn bodies_that_do_not_decode_are_bad_responses_naming_the_url() {
    let response =
        |body: &[u8]| Response::from_parts(200, "https://example.com/api", vec![], body.to_vec());
    let err = response(b"<html>").json::<json::Value>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadResponse);
    assert!(
        err.message()
            .starts_with("https://example.com/api: expected value"),
        "{err}"
    );

    let err = response(&[0xff]).text().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadResponse);
    assert!(
        err.message()
            .starts_with("https://example.com/api: the body is not UTF-8"),
        "{err}"
    );

    assert_eq!(response(b"hi").text().unwrap(), "hi");
    assert_eq!(response(b"hi").bytes().unwrap(), b"hi");
}

#[test]
fn preallocation_is_capped_and_tolerates_junk() {
    assert_eq!(preallocation(None), 0);
    assert_eq!(preallocation(Some(b"1024")), 1024);
    assert_eq!(preallocation(Some(b" 77 ")), 77);
    assert_eq!(preallocation(Some(b"lots")), 0);
    assert_eq!(preallocation(Some(b"99999999999")), MAX_PREALLOCATION);
}

#[test]
fn query_pairs_are_appended_and_encoded() {
    let request = Request::get("https://shop.example.com/api/search?lang=ja")
        .query("q", "green tea & milk")
        .query("limit", "2");
    assert_eq!(
        request.url,
        "https://shop.example.com/api/search?lang=ja&q=green+tea+%26+milk&limit=2"
    );
    // A URL that does not parse is kept for `send` to report.
    assert_eq!(Request::get("not a url").query("q", "x").url, "not a url");
}
