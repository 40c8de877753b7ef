//! The fixture suite: every feed under `fixtures/bodies` read with its URL and `Content-Type`,
//! and compared field by field with `fixtures/items` (written by hand in
//! `fixtures/generate.py`). An id written `#hash` must be the feed URL scoping a hex hash (the
//! link-and-title id kept from the earlier reader), `#content` a content hash of 32 hex digits
//! (unscoped, as the earlier reader kept it: the feed URL is hashed in). All failures are listed
//! at once.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tsunagi_rss_feed::{FeedItem, parse_response};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn item_json(item: &FeedItem) -> Value {
    json!({
        "id": item.id,
        "title": item.title,
        "link": item.link,
        "published": item.published,
        "updated": item.updated,
        "authors": item.authors,
        "summary": item.summary,
        "content": item.content,
        "categories": item.categories,
        "enclosures": item.enclosures.iter().map(|e| json!({
            "url": e.url, "mime": e.mime, "length": e.length,
        })).collect::<Vec<_>>(),
        "thumbnail": item.thumbnail,
    })
}

fn id_matches(expected: &str, actual: &str, url: &str) -> bool {
    let hex_after = |prefix: &str, lengths: std::ops::RangeInclusive<usize>| {
        actual.strip_prefix(prefix).is_some_and(|hash| {
            lengths.contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit())
        })
    };
    match expected {
        // `{:x}{:x}` of two u64s: 2 to 32 digits.
        "#hash" => hex_after(&format!("{url}#"), 2..=32),
        "#content" => hex_after("", 32..=32),
        _ => expected == actual,
    }
}

fn check(body_path: &Path, expected: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let body = std::fs::read(body_path).expect("fixture body");
    let url = expected["url"].as_str().expect("url");
    let content_type = expected["content_type"].as_str();
    let outcome = parse_response(&body, url, content_type);
    match (&expected["error"], outcome) {
        (Value::String(error), Err(actual)) => {
            if &actual != error {
                problems.push(format!("error {actual:?}, expected {error:?}"));
            }
        }
        (Value::String(error), Ok(parsed)) => problems.push(format!(
            "read {} item(s), expected the error {error:?}",
            parsed.items.len()
        )),
        (_, Err(actual)) => problems.push(format!("failed: {actual}")),
        (_, Ok(parsed)) => {
            let items = expected["items"].as_array().expect("items");
            if items.len() != parsed.items.len() {
                problems.push(format!(
                    "{} item(s), expected {}",
                    parsed.items.len(),
                    items.len()
                ));
            }
            for (index, (want, got)) in items.iter().zip(&parsed.items).enumerate() {
                let mut got_json = item_json(got);
                let want_id = want["id"].as_str().unwrap_or("");
                if !id_matches(want_id, &got.id, url) {
                    problems.push(format!(
                        "items[{index}].id {:?}, expected {want_id:?}",
                        got.id
                    ));
                }
                got_json["id"] = want["id"].clone();
                if let (Value::Object(want), Value::Object(got)) = (want, &got_json) {
                    for (key, value) in want {
                        if got.get(key) != Some(value) {
                            problems.push(format!(
                                "items[{index}].{key} {}, expected {value}",
                                got.get(key).unwrap_or(&Value::Null)
                            ));
                        }
                    }
                }
            }
            let ttl = expected["refresh_after_seconds"].as_u64();
            if parsed.refresh_after_seconds.map(u64::from) != ttl {
                problems.push(format!(
                    "refresh_after_seconds {:?}, expected {ttl:?}",
                    parsed.refresh_after_seconds
                ));
            }
            let hubs: Vec<&str> = expected["hubs"]
                .as_array()
                .map(|h| h.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if parsed.hubs != hubs {
                problems.push(format!("hubs {:?}, expected {hubs:?}", parsed.hubs));
            }
            if parsed.self_link.as_deref() != expected["self_link"].as_str() {
                problems.push(format!(
                    "self_link {:?}, expected {}",
                    parsed.self_link, expected["self_link"]
                ));
            }
            for wanted in expected["warnings_contain"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let wanted = wanted.as_str().unwrap_or("");
                if !parsed.warnings.iter().any(|w| w.contains(wanted)) {
                    problems.push(format!(
                        "no warning containing {wanted:?} in {:?}",
                        parsed.warnings
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_fixture_reads_as_written_down() {
    let root = fixtures();
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut groups: Vec<_> = std::fs::read_dir(root.join("bodies"))
        .expect("fixtures/bodies")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    groups.sort();
    for group in groups {
        let mut bodies: Vec<_> = std::fs::read_dir(&group)
            .expect("group")
            .flatten()
            .map(|entry| entry.path())
            .collect();
        bodies.sort();
        for body in bodies {
            let group_name = group.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let stem = body.file_stem().and_then(|n| n.to_str()).unwrap_or("");
            let expected_path = root
                .join("items")
                .join(group_name)
                .join(format!("{stem}.json"));
            let text = std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|err| panic!("{}: {err}", expected_path.display()));
            let expected: Value = serde_json::from_str(&text).expect("expectation JSON");
            cases += 1;
            for problem in check(&body, &expected) {
                failures.push(format!("{group_name}/{stem}: {problem}"));
            }
        }
    }
    assert!(cases >= 200, "only {cases} fixtures");
    assert!(
        failures.is_empty(),
        "{} problem(s) in {cases} fixtures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
