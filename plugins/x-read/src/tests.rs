//! The whole poll natively, over canned answers: paging, the cursor, time order, and what each
//! failure means.

use std::collections::VecDeque;

use super::*;

const USER: &str = "2244994945";
const BASE: &str = "https://api.x.test";

/// Answers in order and records every request.
#[derive(Default)]
struct Canned {
    answers: VecDeque<Response>,
    requests: Vec<(String, Vec<(String, String)>)>,
}

impl Canned {
    fn answer(mut self, status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        self.answers.push_back(Response::from_text(
            status,
            "https://api.x.test/",
            headers,
            body,
        ));
        self
    }
}

impl Fetch for Canned {
    fn get(&mut self, url: &str, query: &[(&str, String)]) -> Result<Response> {
        self.requests.push((
            url.to_owned(),
            query
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        ));
        self.answers
            .pop_front()
            .ok_or_else(|| Error::transient("no more canned answers"))
    }
}

fn settings(api: Api, max_results: u32, max_pages: u32) -> Settings {
    Settings {
        base_url: BASE.to_owned(),
        api,
        max_results,
        max_pages,
    }
}

fn v2_page(ids: &[u64], next: Option<&str>) -> String {
    let data: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"id": "{id}", "text": "post {id}", "created_at": "2024-01-01T00:00:{:02}.000Z"}}"#,
                id % 60
            )
        })
        .collect();
    let next = next
        .map(|n| format!(r#", "next_token": "{n}""#))
        .unwrap_or_default();
    if ids.is_empty() {
        return r#"{"meta": {"result_count": 0}}"#.to_owned();
    }
    format!(
        r#"{{"data": [{}], "meta": {{"result_count": {}{next}}}}}"#,
        data.join(","),
        ids.len()
    )
}

fn query_of<'a>(request: &'a (String, Vec<(String, String)>), name: &str) -> Option<&'a str> {
    request
        .1
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn pages_are_followed_back_to_the_cursor_and_items_come_oldest_first() {
    let mut fetch = Canned::default()
        .answer(200, &[], &v2_page(&[109, 108, 107], Some("t1")))
        .answer(200, &[], &v2_page(&[106, 105, 104], Some("t2")))
        .answer(200, &[], &v2_page(&[103], None));
    let polled = poll_user(&mut fetch, &settings(Api::V2, 5, 10), USER, Some("102")).unwrap();
    let ids: Vec<&str> = polled.items.iter().map(|item| item.id.as_str()).collect();
    assert_eq!(ids, ["103", "104", "105", "106", "107", "108", "109"]);
    assert_eq!(polled.cursor.as_deref(), Some("109"));
    assert_eq!((polled.pages, polled.truncated), (3, false));
    assert_eq!(fetch.requests[0].0, format!("{BASE}/2/users/{USER}/tweets"));
    assert_eq!(query_of(&fetch.requests[0], "since_id"), Some("102"));
    assert_eq!(
        query_of(&fetch.requests[0], "tweet.fields"),
        Some(TWEET_FIELDS)
    );
    assert_eq!(query_of(&fetch.requests[0], "max_results"), Some("5"));
    assert_eq!(query_of(&fetch.requests[0], "pagination_token"), None);
    assert_eq!(query_of(&fetch.requests[1], "pagination_token"), Some("t1"));
    assert_eq!(query_of(&fetch.requests[2], "pagination_token"), Some("t2"));
}

#[test]
fn max_pages_bounds_a_poll_and_says_so() {
    let mut fetch = Canned::default()
        .answer(200, &[], &v2_page(&[109, 108], Some("t1")))
        .answer(200, &[], &v2_page(&[107, 106], Some("t2")));
    let polled = poll_user(&mut fetch, &settings(Api::V2, 5, 2), USER, None).unwrap();
    assert_eq!(fetch.requests.len(), 2);
    assert!(polled.truncated);
    assert_eq!(polled.cursor.as_deref(), Some("109"));
    assert!(
        polled.notes[0].contains("max_pages = 2"),
        "{:?}",
        polled.notes
    );
}

#[test]
fn nothing_new_keeps_the_cursor() {
    let mut fetch = Canned::default().answer(200, &[], &v2_page(&[], None));
    let polled = poll_user(&mut fetch, &settings(Api::V2, 100, 10), USER, Some("500")).unwrap();
    assert!(polled.items.is_empty());
    assert_eq!(polled.cursor.as_deref(), Some("500"));
}

#[test]
fn a_failed_page_fails_the_whole_poll() {
    let mut fetch = Canned::default()
        .answer(200, &[], &v2_page(&[109, 108], Some("t1")))
        .answer(503, &[], "<html>over capacity</html>");
    let err = poll_user(&mut fetch, &settings(Api::V2, 5, 10), USER, Some("100")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        err.message()
            .starts_with(&format!("user {USER}: HTTP 503 from ")),
        "{err}"
    );

    let mut fetch = Canned::default()
        .answer(200, &[], &v2_page(&[109, 108], Some("t1")))
        .answer(200, &[("content-type", "text/html")], "<!DOCTYPE html>");
    let err = poll_user(&mut fetch, &settings(Api::V2, 5, 10), USER, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadResponse);
}

#[test]
fn statuses_map_to_error_kinds() {
    let kind_of = |status: u16, body: &str| {
        let mut fetch = Canned::default().answer(
            status,
            &[
                ("x-rate-limit-reset", "1800000900"),
                ("content-type", "application/problem+json"),
            ],
            body,
        );
        poll_user(&mut fetch, &settings(Api::V2, 100, 10), USER, None).unwrap_err()
    };
    let err = kind_of(
        429,
        r#"{"title": "Too Many Requests", "type": "about:blank", "status": 429}"#,
    );
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(
        err.message().contains("x-rate-limit-reset: 1800000900"),
        "{err}"
    );
    let err = kind_of(
        429,
        r#"{"title": "UsageCapExceeded", "type": "https://api.twitter.com/2/problems/usage-capped"}"#,
    );
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(err.message().contains("usage-capped"), "{err}");
    for status in [401, 403] {
        let err = kind_of(
            status,
            r#"{"title": "Unauthorized", "detail": "Unauthorized"}"#,
        );
        assert_eq!(err.kind(), ErrorKind::Permanent, "{status}");
        assert!(
            err.message()
                .starts_with(&format!("user {USER}: HTTP {status}")),
            "{err}"
        );
    }
    assert_eq!(kind_of(500, "").kind(), ErrorKind::Transient);
    assert_eq!(kind_of(400, "{}").kind(), ErrorKind::Permanent);
}

#[test]
fn targets_must_be_user_ids() {
    let mut fetch = Canned::default();
    for target in ["", "@jack", "https://x.com/jack", "123456789012345678901"] {
        let err = poll_user(&mut fetch, &settings(Api::V2, 100, 10), target, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent, "{target}");
    }
    assert!(fetch.requests.is_empty());
}

#[test]
fn a_corrupt_cursor_polls_from_the_newest_and_says_so() {
    let mut fetch = Canned::default().answer(200, &[], &v2_page(&[7], None));
    let polled = poll_user(&mut fetch, &settings(Api::V2, 100, 10), USER, Some("abc")).unwrap();
    assert_eq!(query_of(&fetch.requests[0], "since_id"), None);
    assert_eq!(polled.cursor.as_deref(), Some("7"));
    assert_eq!(polled.notes.len(), 1);
}

fn v11_page(ids: &[u64]) -> String {
    let statuses: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"id_str": "{id}", "text": "p{id}", "created_at": "Mon Jan 01 00:00:00 +0000 2024"}}"#))
        .collect();
    format!("[{}]", statuses.join(","))
}

#[test]
fn v1_1_pages_down_with_max_id() {
    let mut fetch = Canned::default()
        .answer(200, &[], &v11_page(&[20, 19]))
        .answer(200, &[], &v11_page(&[18, 17]))
        .answer(200, &[], &v11_page(&[16]));
    let polled = poll_user(&mut fetch, &settings(Api::V11, 2, 10), USER, Some("15")).unwrap();
    let ids: Vec<&str> = polled.items.iter().map(|item| item.id.as_str()).collect();
    assert_eq!(ids, ["16", "17", "18", "19", "20"]);
    assert_eq!(polled.cursor.as_deref(), Some("20"));
    let request = &fetch.requests[0];
    assert_eq!(request.0, format!("{BASE}/1.1/statuses/user_timeline.json"));
    assert_eq!(query_of(request, "user_id"), Some(USER));
    assert_eq!(query_of(request, "count"), Some("2"));
    assert_eq!(query_of(request, "max_id"), None);
    assert_eq!(query_of(&fetch.requests[1], "max_id"), Some("18"));
    assert_eq!(query_of(&fetch.requests[2], "max_id"), Some("16"));
}

#[test]
fn settings_are_checked() {
    let values = |pairs: &'static [(&'static str, &'static str)]| {
        move |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let ok = Settings::from_values(values(&[("base_url", "https://api.x.com/")])).unwrap();
    assert_eq!(ok, settings_with("https://api.x.com", Api::V2, 100, 10));
    let v11 = Settings::from_values(values(&[
        ("base_url", "http://127.0.0.1:1"),
        ("api", "v1.1"),
    ]))
    .unwrap();
    assert_eq!((v11.api, v11.max_results), (Api::V11, 200));
    for (pairs, key) in [
        (&[][..], "base_url"),
        (&[("base_url", "ftp://x")][..], "base_url"),
        (&[("base_url", "https://a"), ("api", "v3")][..], "api"),
        (
            &[("base_url", "https://a"), ("max_results", "4")][..],
            "max_results",
        ),
        (
            &[("base_url", "https://a"), ("max_results", "101")][..],
            "max_results",
        ),
        (
            &[("base_url", "https://a"), ("max_pages", "0")][..],
            "max_pages",
        ),
    ] {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let err = Settings::from_values(|key: &str| {
            owned.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains(&format!("\"{key}\"")), "{err}");
    }
}

fn settings_with(base: &str, api: Api, max_results: u32, max_pages: u32) -> Settings {
    Settings {
        base_url: base.to_owned(),
        api,
        max_results,
        max_pages,
    }
}
