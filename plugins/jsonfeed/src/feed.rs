//! JSON Feed (1.0 and 1.1, <https://jsonfeed.org>) → items, without any I/O.
//!
//! The rules are the twin connector's (`plugins/jsonfeed-js`) field for field; both are pinned
//! by the same cassette. In short: an element of `items` needs to be an object with a string or
//! number `id`; every other field is taken only when it has the expected type, and ignored
//! otherwise.

use chrono::{DateTime, SecondsFormat, Utc};
use tsunagi_sdk::json::{Map, Value};
use tsunagi_sdk::{Error, Item, Result};

/// What a feed document yielded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The usable items, in document order.
    pub items: Vec<Item>,
    /// Elements of `items` skipped for lacking an id (or for not being objects).
    pub skipped: usize,
}

/// Parses `body` as a JSON Feed fetched from `url` (named in errors).
///
/// A body that is not UTF-8 or not JSON, or a document that is not an object with an `items`
/// array, is a `bad-response`: `<url>: not a JSON Feed: <reason>`.
pub fn parse(url: &str, body: &[u8]) -> Result<Parsed> {
    let not_a_feed =
        |reason: &str| Error::bad_response(format!("{url}: not a JSON Feed: {reason}"));
    let text = std::str::from_utf8(body).map_err(|_| not_a_feed("the body is not UTF-8"))?;
    let document: Value =
        serde_json::from_str(text).map_err(|err| not_a_feed(&json_reason(&err)))?;
    let Value::Object(document) = document else {
        return Err(not_a_feed("the document is not an object"));
    };
    let Some(Value::Array(elements)) = document.get("items") else {
        return Err(not_a_feed("no `items` array"));
    };
    let mut parsed = Parsed::default();
    for element in elements {
        match map_item(element) {
            Some(item) => parsed.items.push(item),
            None => parsed.skipped += 1,
        }
    }
    Ok(parsed)
}

/// Why serde_json refused a document. Reasons the twin can name the same way lose serde_json's
/// position suffix; syntax errors keep it (the engines word those differently anyway).
fn json_reason(err: &serde_json::Error) -> String {
    let message = err.to_string();
    for same in ["recursion limit exceeded", "number out of range"] {
        if message.starts_with(same) {
            return same.to_owned();
        }
    }
    message
}

/// One element of `items` as an item; `None` when it is not an object or has no usable id.
pub fn map_item(element: &Value) -> Option<Item> {
    let Value::Object(fields) = element else {
        return None;
    };
    let id = id_text(fields.get("id")?)?;
    Some(Item {
        id,
        title: string(fields, "title"),
        link: string(fields, "url").or_else(|| string(fields, "external_url")),
        published: string(fields, "date_published").and_then(|text| utc_timestamp(&text)),
        updated: string(fields, "date_modified").and_then(|text| utc_timestamp(&text)),
        authors: authors(fields),
        summary: string(fields, "summary"),
        content: string(fields, "content_html").or_else(|| string(fields, "content_text")),
        categories: match fields.get("tags") {
            Some(Value::Array(tags)) => tags
                .iter()
                .filter_map(|tag| tag.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
    })
}

/// A string id as it is; a number id as serde_json writes it (`42`, `-7`, `1.5`, `1e+21`);
/// anything else is no id.
fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// Author names from `authors` (JSON Feed 1.1) or, only when that member is absent, from
/// `author` (1.0). An author counts when it is an object with a string `name`.
fn authors(fields: &Map<String, Value>) -> Vec<String> {
    match fields.get("authors") {
        Some(Value::Array(authors)) => authors.iter().filter_map(author_name).collect(),
        // Present but not a list: no authors, and `author` is not consulted.
        Some(_) => Vec::new(),
        None => fields
            .get("author")
            .and_then(author_name)
            .into_iter()
            .collect(),
    }
}

fn author_name(author: &Value) -> Option<String> {
    author.get("name")?.as_str().map(str::to_owned)
}

/// The member `key` if it is a string.
fn string(fields: &Map<String, Value>, key: &str) -> Option<String> {
    fields.get(key)?.as_str().map(str::to_owned)
}

/// An RFC 3339 timestamp converted to UTC and written `YYYY-MM-DDTHH:MM:SSZ` (fractional seconds
/// dropped); `None` when it does not parse.
pub fn utc_timestamp(text: &str) -> Option<String> {
    let at = DateTime::parse_from_rfc3339(text).ok()?;
    Some(
        at.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_sdk::ErrorKind;

    const URL: &str = "https://notes.example.org/feed.json";
    const SAMPLE: &str = include_str!("../tests/data/feed.json");

    fn items(document: &str) -> Vec<Item> {
        parse(URL, document.as_bytes()).unwrap().items
    }

    fn item(fields: &str) -> Option<Item> {
        map_item(&serde_json::from_str(fields).unwrap())
    }

    #[test]
    fn the_sample_feed_maps_field_by_field() {
        let parsed = parse(URL, SAMPLE.as_bytes()).unwrap();
        assert_eq!(parsed.skipped, 2, "the id-less item and the string");
        assert_eq!(
            parsed.items,
            vec![
                Item {
                    id: "https://notes.example.org/2024/05/ferry-timetable".into(),
                    title: Some("Summer ferry timetable published".into()),
                    // `url` wins over `external_url`.
                    link: Some("https://notes.example.org/2024/05/ferry-timetable".into()),
                    // +09:00 → UTC, the fraction dropped.
                    published: Some("2024-05-01T00:30:00Z".into()),
                    updated: Some("2024-05-02T08:00:00Z".into()),
                    // The nameless author is left out; `author` is ignored next to `authors`.
                    authors: vec!["Aiko Tanaka".into(), "Ben Ortiz".into()],
                    summary: Some("Extra sailings on weekends from June.".into()),
                    // `content_html` wins over `content_text`.
                    content: Some("<p>Extra sailings on <em>weekends</em> from June.</p>".into()),
                    // Only the string tags.
                    categories: vec!["ferries".into(), "timetables".into(), "summer".into()],
                },
                Item {
                    // A number id in decimal.
                    id: "1042".into(),
                    title: None,
                    link: Some("https://weather.example.net/storm-warning".into()),
                    // A space instead of `T`, and −05:00 → UTC.
                    published: Some("2024-04-30T23:45:10Z".into()),
                    updated: None,
                    // JSON Feed 1.0's single `author`.
                    authors: vec!["Harbour Master".into()],
                    summary: None,
                    content: Some("Storm warning for the outer harbour tonight.".into()),
                    categories: vec![],
                },
                Item {
                    id: "bridge-reopening".into(),
                    title: Some("Bridge reopens after repairs".into()),
                    // `url` is a number: no link (there is no `external_url`).
                    link: None,
                    // "yesterday at noon" and 30 February do not parse.
                    published: None,
                    updated: None,
                    // `authors` is present but not a list: no authors, `author` not consulted.
                    authors: vec![],
                    summary: None,
                    // `content_html` is null: `content_text`.
                    content: Some("The swing bridge reopened at noon.".into()),
                    // `tags` is not a list.
                    categories: vec![],
                },
                Item {
                    id: "2024-05-03-regatta".into(),
                    title: Some("Regatta results".into()),
                    link: Some("https://notes.example.org/2024/05/regatta".into()),
                    // −02:30 crosses midnight into the next day.
                    published: Some("2024-05-04T02:00:00Z".into()),
                    // Lower-case `t` and `z`, half a second dropped.
                    updated: Some("2024-05-04T01:00:00Z".into()),
                    authors: vec![],
                    summary: None,
                    content: None,
                    categories: vec![],
                },
            ]
        );
    }

    #[test]
    fn a_json_feed_1_0_document() {
        let feed = r#"{
            "version": "https://jsonfeed.org/version/1",
            "title": "My Example Feed",
            "home_page_url": "https://example.org/",
            "feed_url": "https://example.org/feed.json",
            "author": {"name": "Feed-level author, not an item's"},
            "items": [
                {
                    "id": "2",
                    "content_text": "This is a second item.",
                    "url": "https://example.org/second-item",
                    "author": {"name": "Jane", "url": "https://example.org/jane"},
                    "date_published": "2010-02-07T14:04:00-05:00"
                },
                {
                    "id": "1",
                    "content_html": "<p>Hello, world!</p>",
                    "url": "https://example.org/initial-post"
                }
            ]
        }"#;
        let items = items(feed);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].id, "2");
        assert_eq!(items[0].authors, ["Jane"]);
        assert_eq!(items[0].published.as_deref(), Some("2010-02-07T19:04:00Z"));
        assert_eq!(items[0].content.as_deref(), Some("This is a second item."));
        assert_eq!(items[1].authors, Vec::<String>::new());
        assert_eq!(items[1].content.as_deref(), Some("<p>Hello, world!</p>"));
    }

    #[test]
    fn number_ids_are_written_as_serde_json_writes_them() {
        let id = |number: &str| item(&format!(r#"{{"id": {number}}}"#)).map(|item| item.id);
        assert_eq!(id("42").as_deref(), Some("42"));
        assert_eq!(id("-7").as_deref(), Some("-7"));
        assert_eq!(id("0").as_deref(), Some("0"));
        // Integers that fit u64 stay exact.
        assert_eq!(
            id("12345678901234567890").as_deref(),
            Some("12345678901234567890")
        );
        assert_eq!(id("1.5").as_deref(), Some("1.5"));
        assert_eq!(id("1.0").as_deref(), Some("1.0"));
        assert_eq!(id("1e21").as_deref(), Some("1e+21"));
        assert_eq!(id("-0").as_deref(), Some("-0.0"));
    }

    #[test]
    fn elements_without_a_usable_id_are_skipped() {
        for skipped in [
            r#"{"title": "no id"}"#,
            r#"{"id": null}"#,
            r#"{"id": true}"#,
            r#"{"id": ["a"]}"#,
            r#"{"id": {"value": "a"}}"#,
            r#""a string""#,
            r#"7"#,
            r#"["id", "a"]"#,
            r#"null"#,
        ] {
            assert_eq!(item(skipped), None, "{skipped}");
        }
        // An empty string is still a string.
        assert_eq!(
            item(r#"{"id": ""}"#).map(|item| item.id).as_deref(),
            Some("")
        );
        let parsed = parse(URL, br#"{"items": [{"id": "a"}, {}, 3, {"id": "b"}]}"#).unwrap();
        assert_eq!(parsed.skipped, 2);
        assert_eq!(parsed.items.len(), 2);
    }

    #[test]
    fn dates_convert_to_utc_or_are_dropped() {
        assert_eq!(
            utc_timestamp("2024-05-01T12:00:00Z").as_deref(),
            Some("2024-05-01T12:00:00Z")
        );
        assert_eq!(
            utc_timestamp("2024-05-01T12:00:00.999999+14:00").as_deref(),
            Some("2024-04-30T22:00:00Z")
        );
        assert_eq!(
            utc_timestamp("2023-12-31T23:30:00-01:00").as_deref(),
            Some("2024-01-01T00:30:00Z")
        );
        assert_eq!(
            utc_timestamp("2024-02-29T00:00:00+00:00").as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "Wed, 01 May 2024 12:00:00 GMT",
            "2024-05-01T12:00:00+0900",
        ] {
            assert_eq!(utc_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn non_string_fields_are_ignored() {
        let item = item(
            r#"{"id": "a", "title": 1, "url": null, "external_url": "https://x.example/a",
                "summary": {}, "content_html": 5, "content_text": false,
                "date_published": 1714564800, "authors": [{"name": 3}, "Ann", {"name": "Bo"}],
                "tags": [["nested"], "t"]}"#,
        )
        .unwrap();
        assert_eq!(item.title, None);
        assert_eq!(item.link.as_deref(), Some("https://x.example/a"));
        assert_eq!(item.summary, None);
        assert_eq!(item.content, None);
        assert_eq!(item.published, None);
        assert_eq!(item.authors, ["Bo"]);
        assert_eq!(item.categories, ["t"]);
    }

    #[test]
    fn documents_that_are_not_feeds_are_bad_responses() {
        let reason = |body: &[u8]| {
            let err = parse(URL, body).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadResponse);
            let prefix = format!("{URL}: not a JSON Feed: ");
            err.message()
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{err}"))
                .to_owned()
        };
        assert_eq!(reason(b"\xff\xfe{}"), "the body is not UTF-8");
        assert_eq!(reason(b"[]"), "the document is not an object");
        assert_eq!(reason(b"\"items\""), "the document is not an object");
        assert_eq!(reason(b"{}"), "no `items` array");
        assert_eq!(reason(br#"{"items": {}}"#), "no `items` array");
        assert_eq!(reason(br#"{"items": null}"#), "no `items` array");
        assert_eq!(
            reason(b"<!doctype html>"),
            "expected value at line 1 column 1"
        );
        assert_eq!(reason(b""), "EOF while parsing a value at line 1 column 0");
        assert_eq!(reason(&[b'['; 200]), "recursion limit exceeded");
        assert_eq!(reason(br#"{"items": [1e400]}"#), "number out of range");
    }

    #[test]
    fn an_empty_feed_has_no_items() {
        let parsed = parse(
            URL,
            br#"{"version": "https://jsonfeed.org/version/1.1", "items": []}"#,
        )
        .unwrap();
        assert_eq!(parsed, Parsed::default());
    }
}
