//! Atom 1.0 (RFC 4287) and its predecessor 0.3 (`http://purl.org/atom/ns#`: `issued`,
//! `modified`, `created`, `mode="escaped|xml|base64"`), and an Atom document that forgot its
//! namespace. Text constructs keep HTML as HTML and hand XHTML on as written (without the
//! wrapping `div`); links resolve against `xml:base`; an entry without authors takes its
//! source's, then the feed's (RFC 4287 §4.2.1).

use super::common::{date, finish_id, first, push_unique, text};
use super::media::{self, Media};
use super::xml::{Node, Ns, resolve_url};
use crate::{FeedItem, ParsedFeed};
use base64::Engine;

pub fn read(root: &Node, source: &str, url: &str) -> ParsedFeed {
    let atom = root.ns;
    let feed_authors = authors(root, atom, source);
    let items = root
        .children
        .iter()
        .filter(|child| child.is(atom, "entry"))
        .map(|entry| self::entry(entry, atom, source, url, &feed_authors))
        .collect();
    let mut parsed = ParsedFeed {
        items,
        ..ParsedFeed::default()
    };
    feed_links(root, &mut parsed);
    parsed
}

/// WebSub's discovery links (`rel="hub"`, `rel="self"`), in Atom or in an RSS channel's
/// `atom:link`s.
pub fn feed_links(feed: &Node, parsed: &mut ParsedFeed) {
    for link in &feed.children {
        let atomish = matches!(link.ns, Ns::Atom | Ns::Atom03)
            || (link.ns == Ns::None && feed.ns == Ns::None && link.attr("href").is_some());
        if !atomish || link.name != "link" {
            continue;
        }
        let Some(href) = link.attr("href").map(str::trim).filter(|h| !h.is_empty()) else {
            continue;
        };
        let href = resolve_url(&link.base, href);
        match link.attr("rel").map(str::trim) {
            Some("hub") if parsed.hubs.len() < 4 => push_unique(&mut parsed.hubs, Some(href)),
            Some("self") if parsed.self_link.is_none() => parsed.self_link = Some(href),
            _ => {}
        }
    }
}

fn authors(node: &Node, atom: Ns, source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for author in node.children.iter().filter(|c| c.is(atom, "author")) {
        let name = author
            .child(atom, "name")
            .and_then(|n| text(n, source))
            .or_else(|| author.child(atom, "email").and_then(|n| text(n, source)))
            .or_else(|| text(author, source).filter(|_| author.children.is_empty()));
        push_unique(&mut found, name);
    }
    found
}

fn entry(node: &Node, atom: Ns, source: &str, url: &str, feed_authors: &[String]) -> FeedItem {
    let mut media = Media::default();
    let mut id = None;
    let mut title = None;
    let mut alternates: Vec<(Option<&str>, String)> = Vec::new();
    let mut other_links = Vec::new();
    let (mut published, mut issued, mut created) = (None, None, None);
    let (mut updated, mut modified) = (None, None);
    let mut summary = None;
    let mut content = None;
    let mut categories = Vec::new();
    let mut dc_creators = Vec::new();
    for child in &node.children {
        let name = child.name.as_str();
        if child.ns == atom {
            match name {
                "id" if id.is_none() => id = text(child, source),
                "title" if title.is_none() => title = text_construct(child, source),
                "link" => {
                    let Some(href) = child.attr("href").map(str::trim).filter(|h| !h.is_empty())
                    else {
                        continue;
                    };
                    let href = resolve_url(&child.base, href);
                    match child.attr("rel").map(str::trim).unwrap_or("alternate") {
                        "alternate" => alternates.push((child.attr("type"), href)),
                        "enclosure" => {
                            media.push_enclosure(href, child.attr("type"), child.attr("length"))
                        }
                        _ => other_links.push(href),
                    }
                }
                "published" => first(&mut published, date(child)),
                "issued" => first(&mut issued, date(child)),
                "created" => first(&mut created, date(child)),
                "updated" => first(&mut updated, date(child)),
                "modified" => first(&mut modified, date(child)),
                "summary" if summary.is_none() => summary = text_construct(child, source),
                "content"
                    if content.is_none()
                    // Out-of-line content (`src`) is not the entry's to carry.
                    && child.attr("src").is_none() =>
                {
                    content = text_construct(child, source);
                }
                "category" => push_unique(
                    &mut categories,
                    child
                        .attr("term")
                        .or_else(|| child.attr("label"))
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .or_else(|| text(child, source)),
                ),
                _ => {}
            }
            continue;
        }
        match (child.ns, name) {
            (Ns::Dc, "subject") => push_unique(&mut categories, text(child, source)),
            (Ns::Dc, "creator") => push_unique(&mut dc_creators, text(child, source)),
            (Ns::Dc, "date") => first(&mut issued, date(child)),
            (Ns::Dcterms, "issued" | "created") => first(&mut issued, date(child)),
            (Ns::Dcterms, "modified") => first(&mut modified, date(child)),
            (Ns::Media, _) => media::element(child, &mut media),
            (Ns::Itunes, "image") => media::itunes_image(child, &mut media),
            _ => {}
        }
    }
    let mut authors = authors(node, atom, source);
    if authors.is_empty() {
        authors = dc_creators;
    }
    if authors.is_empty()
        && let Some(source_element) = node.child(atom, "source")
    {
        authors = self::authors(source_element, atom, source);
    }
    if authors.is_empty() {
        authors = feed_authors.to_vec();
    }
    // The HTML alternate first (an entry may offer its page in several types), then any
    // alternate, then whatever link the entry has.
    let link = alternates
        .iter()
        .find(|(kind, _)| kind.is_none_or(|kind| kind.contains("html")))
        .or(alternates.first())
        .map(|(_, href)| href.clone())
        .or_else(|| other_links.into_iter().next());
    let mut item = FeedItem {
        id: String::new(),
        title,
        link,
        published: published.or(issued).or(created),
        updated: updated.or(modified),
        authors,
        summary,
        content,
        categories,
        enclosures: media.enclosures,
        thumbnail: media.thumbnail,
    };
    finish_id(&mut item, id, url);
    item
}

/// An Atom text construct: `text` and `html` as their text, `xhtml` (and 0.3's `mode="xml"`)
/// as the markup inside, without the wrapping `div`; 0.3's `mode="base64"` decoded.
fn text_construct(node: &Node, source: &str) -> Option<String> {
    let kind = node.attr("type").map(str::trim).unwrap_or("text");
    let mode = node.attr("mode").map(str::trim);
    if mode == Some("base64") {
        let compact: String = node.text.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .ok()?;
        let decoded = String::from_utf8_lossy(&bytes).trim().to_string();
        return (!decoded.is_empty()).then_some(decoded);
    }
    let markup = kind == "xhtml" || kind.ends_with("+xml") || mode == Some("xml");
    if markup && !node.children.is_empty() {
        let wrapper = match node.children.as_slice() {
            [div] if div.name == "div" && matches!(div.ns, Ns::Xhtml | Ns::None) => div,
            _ => node,
        };
        let inner = source.get(wrapper.inner.clone()).unwrap_or("").trim();
        return (!inner.is_empty()).then(|| inner.to_string());
    }
    text(node, source)
}
