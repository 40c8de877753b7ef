//! The feed reader: bytes and their `Content-Type` in, items out, for every format the
//! connector claims — RSS 0.90/0.91/0.92/0.93/0.94/1.0/2.0, Atom 0.3/1.0, JSON Feed 1.0/1.1 —
//! with the fallbacks a mature parser applies (Dublin Core and dcterms, `content:encoded`,
//! iTunes, Media RSS, element aliases across versions, broken dates, author forms, id and link
//! rules).
//!
//! - `decode`: which encoding, and bytes XML forbids dropped;
//! - `xml`: a forgiving XML reader producing an element tree (namespaces, `xml:base`, entities
//!   via `entities`);
//! - `rss`, `atom`, `json`: each family's elements to [`FeedItem`]s;
//! - `dates`: RFC 822 and W3CDTF with their real-world variants.

mod atom;
mod dates;
mod decode;
mod entities;
mod html_entities;
mod json;
mod media;
mod rss;
mod xml;

use crate::ParsedFeed;
use xml::{Node, Ns};

pub use decode::charset_of;
pub use entities::MAX_EXPANSION;

/// At most this many warnings are kept per document: enough to say what went wrong.
const MAX_WARNINGS: usize = 16;
/// Items kept per document; a feed is a window of recent entries, and one holding more is an
/// archive dump or an attack.
pub const MAX_ITEMS: usize = 5_000;
/// A warning or error quotes the document; this many bytes of it are enough to recognise it.
const MAX_MESSAGE: usize = 512;

/// Reads one fetched document. `url` is the final URL (relative links resolve against it; id-less
/// entries are scoped by it), `content_type` the response's header if it had one.
pub fn read(body: &[u8], url: &str, content_type: Option<&str>) -> Result<ParsedFeed, String> {
    let mut parsed = read_unclipped(body, url, content_type).map_err(clip)?;
    keep_distinct_items(&mut parsed);
    parsed.warnings = std::mem::take(&mut parsed.warnings)
        .into_iter()
        .map(clip)
        .collect();
    Ok(parsed)
}

/// The first item of each id, at most [`MAX_ITEMS`] of them; what was dropped is a warning.
fn keep_distinct_items(parsed: &mut ParsedFeed) {
    let mut seen = std::collections::HashSet::new();
    let before = parsed.items.len();
    parsed.items.retain(|item| seen.insert(item.id.clone()));
    let mut dropped = Vec::new();
    let repeated = before - parsed.items.len();
    if repeated > 0 {
        dropped.push(format!(
            "{repeated} entries repeating an earlier entry's id skipped"
        ));
    }
    if parsed.items.len() > MAX_ITEMS {
        dropped.push(format!(
            "{} entries beyond the first {MAX_ITEMS} ignored",
            parsed.items.len() - MAX_ITEMS
        ));
        parsed.items.truncate(MAX_ITEMS);
    }
    // These say what was lost, so they stay even when the document's own warnings are many.
    parsed
        .warnings
        .truncate(MAX_WARNINGS.saturating_sub(dropped.len()));
    parsed.warnings.append(&mut dropped);
}

/// `message`, cut to [`MAX_MESSAGE`] bytes on a character boundary, marked when cut.
fn clip(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

fn read_unclipped(
    body: &[u8],
    url: &str,
    content_type: Option<&str>,
) -> Result<ParsedFeed, String> {
    let decoded = decode::decode(body, content_type.and_then(charset_of));
    let mut warnings = decoded.warnings;
    let text = decoded.text.as_ref();
    let start = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if start.is_empty() {
        return Err("malformed feed: the document is empty".into());
    }
    let mut parsed = if start.starts_with(['{', '[']) {
        json::read(start, url)?
    } else {
        read_xml(text, url, &mut warnings)?
    };
    warnings.append(&mut parsed.warnings);
    warnings.truncate(MAX_WARNINGS);
    parsed.warnings = warnings;
    Ok(parsed)
}

fn read_xml(text: &str, url: &str, warnings: &mut Vec<String>) -> Result<ParsedFeed, String> {
    // Junk a server put before the document (a PHP notice, a blank line's worth of spaces, a
    // stray byte) is skipped up to the first markup.
    let Some(first_markup) = text.find('<') else {
        return Err(not_a_feed(text));
    };
    let junk = text[..first_markup].trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if !junk.is_empty() {
        warnings.push(format!(
            "{} character(s) before the document's first markup skipped",
            junk.chars().count()
        ));
    }
    let source = &text[first_markup..];
    let document = xml::read(source, url).map_err(|reason| format!("malformed feed: {reason}"))?;
    warnings.extend(document.warnings);
    let Some(root) = document.root else {
        return Err(match document.stopped {
            Some(reason) => format!("malformed feed: {reason}"),
            None => not_a_feed(source),
        });
    };
    let lower = root.name.to_ascii_lowercase();
    let parsed = match (root.ns, lower.as_str()) {
        (_, "html") | (Ns::Xhtml, _) => {
            return Err("not a feed: an HTML page (root element <html>)".into());
        }
        (Ns::Atom | Ns::Atom03 | Ns::None, "feed") => atom::read(&root, source, url),
        (_, "rss" | "channel") | (Ns::Rdf, "rdf") => rss::read(&root, source, url),
        _ if count_entries(&root) > 0 => rss::read(&root, source, url),
        _ => {
            return Err(format!(
                "not a feed: the root element is <{}>, which is no RSS, Atom or RDF document",
                root.name
            ));
        }
    };
    if parsed.items.is_empty() {
        let entries = count_entries(&root);
        if entries > 0 {
            return Err(format!(
                "unread feed: the document holds {entries} <item>/<entry> element(s) but none \
                 could be read"
            ));
        }
        if let Some(reason) = document.stopped {
            return Err(format!("malformed feed: {reason}"));
        }
    }
    Ok(parsed)
}

/// A short account of what a document that is no feed looks like.
fn not_a_feed(text: &str) -> String {
    let start = text.trim_start();
    let lower: String = start
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        "not a feed: an HTML page".into()
    } else {
        let shown: String = start.chars().take(40).collect();
        format!("not a feed: the document starts {shown:?}")
    }
}

/// `item` and `entry` elements anywhere in the tree.
fn count_entries(node: &Node) -> usize {
    let own = usize::from(node.name.eq_ignore_ascii_case("item") || node.name == "entry");
    own + node.children.iter().map(count_entries).sum::<usize>()
}

/// What the family readers share: text of elements, person names, ids, dedupe.
pub(crate) mod common {
    use super::dates;
    use super::xml::Node;
    use crate::{FeedItem, legacy_id, rfc3339, scoped_id};

    /// Keeps the first value an element gave: the first of several is the one feeds mean.
    pub fn first(slot: &mut Option<String>, value: Option<String>) {
        if slot.is_none() {
            *slot = value;
        }
    }

    /// An element's text as a date, RFC 3339 in UTC.
    pub fn date(node: &Node) -> Option<String> {
        dates::parse(&node.text).map(rfc3339)
    }

    /// An element's text, trimmed; when it holds elements (HTML a feed forgot to escape), its
    /// content as written.
    pub fn text(node: &Node, source: &str) -> Option<String> {
        let value = if node.children.is_empty() {
            node.text.trim()
        } else {
            source.get(node.inner.clone()).unwrap_or("").trim()
        };
        (!value.is_empty()).then(|| value.to_string())
    }

    /// A person as feeds write one: `editor@example.com (Example Editor)`,
    /// `Example Editor <editor@example.com>`, `Example Editor`, or an address alone.
    pub fn person(text: &str) -> Option<String> {
        let text = text.trim();
        let text = text.strip_prefix("mailto:").unwrap_or(text);
        if let (Some(open), true) = (text.find('('), text.ends_with(')')) {
            let inner = text[open + 1..text.len() - 1].trim();
            let outer = text[..open].trim();
            let outer_is_address = outer.contains('@') && !outer.contains(' ');
            let chosen = if outer.is_empty() || (outer_is_address && !inner.is_empty()) {
                inner
            } else {
                outer
            };
            return (!chosen.is_empty()).then(|| chosen.to_string());
        }
        if let (Some(open), true) = (text.find('<'), text.ends_with('>')) {
            let outer = text[..open].trim().trim_matches('"');
            let inner = text[open + 1..text.len() - 1].trim();
            let chosen = if outer.is_empty() { inner } else { outer };
            return (!chosen.is_empty()).then(|| chosen.to_string());
        }
        (!text.is_empty()).then(|| text.to_string())
    }

    pub fn push_unique(list: &mut Vec<String>, value: Option<String>) {
        if let Some(value) = value
            && !list.contains(&value)
        {
            list.push(value);
        }
    }

    /// The item's id: the feed's own where it has one (scoped by the feed when it is not a URI
    /// of its own), else the id the earlier reader derived from link and title (so items stored
    /// before stay the same items), else a hash of the item's content.
    pub fn finish_id(item: &mut FeedItem, own: Option<String>, url: &str) {
        item.id = match own
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
        {
            Some(id) => scoped_id(&id, url),
            None => match legacy_id(item.link.as_deref(), item.title.as_deref(), url) {
                Some(id) => scoped_id(&id, url),
                None => crate::content_id(item, url),
            },
        };
    }
}

#[cfg(test)]
mod tests;
