//! JSON Feed 1.0 and 1.1 (<https://www.jsonfeed.org/version/1.1/>): 1.0's `author` and 1.1's
//! `authors`, `content_html` over `content_text`, `external_url` when there is no `url`,
//! numeric ids as 1.0 feeds wrote them, `image`/`banner_image` as the thumbnail and
//! `attachments` as enclosures. A JSON document that is not a JSON Feed is said to be one.

use super::common::{finish_id, push_unique};
use super::dates;
use super::media::Media;
use super::xml::resolve_url;
use crate::{FeedItem, ParsedFeed, rfc3339};
use serde_json::{Map, Value};

pub fn read(text: &str, url: &str) -> Result<ParsedFeed, String> {
    let document: Value = serde_json::from_str(text).map_err(|err| {
        format!(
            "malformed feed: invalid JSON at line {} column {}: {err}",
            err.line(),
            err.column()
        )
    })?;
    let Value::Object(feed) = document else {
        return Err("not a feed: a JSON document that is not an object".into());
    };
    let version = feed.get("version").and_then(Value::as_str).unwrap_or("");
    let Some(items) = feed.get("items").and_then(Value::as_array) else {
        let mut keys: Vec<&str> = feed.keys().map(String::as_str).take(8).collect();
        keys.sort_unstable();
        return Err(format!(
            "not a feed: a JSON document without an \"items\" list (keys: {})",
            keys.join(", ")
        ));
    };
    if !version.is_empty() && !version.contains("jsonfeed.org/version/") {
        return Err(format!(
            "not a feed: a JSON document whose version {version:?} is no JSON Feed version"
        ));
    }
    let base = feed
        .get("feed_url")
        .or_else(|| feed.get("home_page_url"))
        .and_then(Value::as_str)
        .map_or_else(|| url.to_string(), |feed_url| resolve_url(url, feed_url));
    let feed_authors = authors(&feed);
    let mut warnings = Vec::new();
    let mut parsed_items = Vec::with_capacity(items.len());
    for (index, value) in items.iter().enumerate() {
        match value {
            Value::Object(entry) => parsed_items.push(item(entry, &base, url, &feed_authors)),
            other => warnings.push(format!(
                "items[{index}] is {} rather than an object; skipped",
                kind(other)
            )),
        }
    }
    let mut hubs = Vec::new();
    for hub in feed
        .get("hubs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(4)
    {
        push_unique(&mut hubs, string(hub.get("url")));
    }
    Ok(ParsedFeed {
        items: parsed_items,
        refresh_after_seconds: None,
        warnings,
        hubs,
        self_link: string(feed.get("feed_url")),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn authors(object: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    let people = object
        .get("authors")
        .and_then(Value::as_array)
        .map(|list| list.iter().collect::<Vec<_>>())
        .unwrap_or_default();
    for person in people.into_iter().chain(object.get("author")) {
        push_unique(
            &mut found,
            string(person.get("name")).or_else(|| string(person.get("url"))),
        );
    }
    found
}

fn item(entry: &Map<String, Value>, base: &str, url: &str, feed_authors: &[String]) -> FeedItem {
    let link = string(entry.get("url"))
        .or_else(|| string(entry.get("external_url")))
        .map(|link| resolve_url(base, &link));
    let mut media = Media::default();
    media.thumbnail(
        string(entry.get("image"))
            .or_else(|| string(entry.get("banner_image")))
            .map(|image| resolve_url(base, &image)),
    );
    for attachment in entry
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(href) = string(attachment.get("url")) {
            let length = attachment.get("size_in_bytes").map(|size| size.to_string());
            media.push_enclosure(
                resolve_url(base, &href),
                attachment.get("mime_type").and_then(Value::as_str),
                length.as_deref(),
            );
        }
    }
    let mut authors = authors(entry);
    if authors.is_empty() {
        authors = feed_authors.to_vec();
    }
    let mut categories = Vec::new();
    for tag in entry
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        push_unique(&mut categories, string(Some(tag)));
    }
    let date = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .and_then(dates::parse)
            .map(rfc3339)
    };
    let mut item = FeedItem {
        id: String::new(),
        title: string(entry.get("title")),
        link,
        published: date("date_published"),
        updated: date("date_modified"),
        authors,
        summary: string(entry.get("summary")),
        content: string(entry.get("content_html")).or_else(|| string(entry.get("content_text"))),
        categories,
        enclosures: media.enclosures,
        thumbnail: media.thumbnail,
    };
    let own_id = match entry.get("id") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => item.link.clone(),
    };
    finish_id(&mut item, own_id, url);
    item
}
