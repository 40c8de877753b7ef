//! The RSS family: 0.90 and 1.0 (RDF, items beside the channel), 0.91–0.94 and 2.0 (items in the
//! channel), with the namespaced elements feeds use in place of or beside the core ones: Dublin
//! Core and dcterms for titles, descriptions, authors and dates, `content:encoded` and
//! `xhtml:body` for content, Atom links and dates, iTunes and Media RSS for authors, summaries,
//! enclosures and thumbnails.

use super::common::{date, finish_id, first, person, push_unique, text};
use super::media::{self, Media};
use super::xml::{Node, Ns, resolve_url};
use crate::{FeedItem, ParsedFeed};

/// The core vocabulary, whichever version's namespace (or none) it comes in.
fn core(node: &Node) -> bool {
    matches!(node.ns, Ns::None | Ns::Rss10 | Ns::Rss090)
}

pub fn read(root: &Node, source: &str, url: &str) -> ParsedFeed {
    let channel = if root.name.eq_ignore_ascii_case("channel") {
        Some(root)
    } else {
        root.children
            .iter()
            .find(|child| core(child) && child.name.eq_ignore_ascii_case("channel"))
    };
    // 2.0 puts items in the channel, 0.90 and 1.0 beside it; broken feeds do either.
    let mut parents = Vec::with_capacity(2);
    parents.extend(channel);
    if !channel.is_some_and(|channel| std::ptr::eq(channel, root)) {
        parents.push(root);
    }
    let items = parents
        .into_iter()
        .flat_map(|parent| &parent.children)
        .filter(|node| core(node) && node.name.eq_ignore_ascii_case("item"))
        .map(|node| item(node, source, url))
        .collect();
    let mut parsed = ParsedFeed {
        items,
        ..ParsedFeed::default()
    };
    if let Some(channel) = channel {
        parsed.refresh_after_seconds = channel
            .children
            .iter()
            .find(|child| core(child) && child.name == "ttl")
            .and_then(|ttl| ttl.text.trim().parse::<u32>().ok())
            .map(|minutes| minutes.saturating_mul(60));
        super::atom::feed_links(channel, &mut parsed);
    }
    parsed
}

fn item(node: &Node, source: &str, url: &str) -> FeedItem {
    let mut found = Found::default();
    let mut media = Media::default();
    for child in &node.children {
        let name = child.name.as_str();
        match child.ns {
            _ if core(child) => match name {
                "title" => first(&mut found.title, text(child, source)),
                "link" => first(
                    &mut found.link,
                    text(child, source).map(|l| resolve_url(&child.base, &l)),
                ),
                "guid" if found.guid.is_none() => {
                    found.guid = text(child, source);
                    found.guid_is_permalink = child
                        .attr("isPermaLink")
                        .map(|v| v.trim().eq_ignore_ascii_case("true"));
                    found.guid_base = Some(child.base.to_string());
                }
                "description" => first(&mut found.description, text(child, source)),
                "pubDate" | "pubdate" => first(&mut found.published, date(child)),
                "author" => push_unique(
                    &mut found.authors,
                    text(child, source).as_deref().and_then(person),
                ),
                "category" => push_unique(&mut found.categories, text(child, source)),
                "enclosure" => media::enclosure(child, &mut media),
                _ => {}
            },
            Ns::Dc => match name {
                "title" => first(&mut found.dc_title, text(child, source)),
                "description" => first(&mut found.dc_description, text(child, source)),
                "creator" | "author" => {
                    push_unique(
                        &mut found.authors,
                        text(child, source).as_deref().and_then(person),
                    );
                }
                "date" => first(&mut found.dc_date, date(child)),
                "subject" => push_unique(&mut found.categories, text(child, source)),
                _ => {}
            },
            Ns::Dcterms => match name {
                "issued" => first(&mut found.issued, date(child)),
                "created" => first(&mut found.created, date(child)),
                "modified" => first(&mut found.modified, date(child)),
                "date" => first(&mut found.dc_date, date(child)),
                "creator" => push_unique(
                    &mut found.authors,
                    text(child, source).as_deref().and_then(person),
                ),
                "subject" => push_unique(&mut found.categories, text(child, source)),
                _ => {}
            },
            Ns::Content if name == "encoded" => first(&mut found.content, text(child, source)),
            Ns::Xhtml if name == "body" => {
                let inner = source.get(child.inner.clone()).unwrap_or("").trim();
                first(
                    &mut found.content,
                    (!inner.is_empty()).then(|| inner.to_string()),
                );
            }
            Ns::Atom => match name {
                "link" => {
                    let rel = child.attr("rel").unwrap_or("alternate").trim();
                    if let Some(href) = child.attr("href").map(str::trim).filter(|h| !h.is_empty())
                    {
                        let href = resolve_url(&child.base, href);
                        if rel == "alternate" {
                            first(&mut found.atom_link, Some(href));
                        } else if rel == "enclosure" {
                            media.push_enclosure(href, child.attr("type"), child.attr("length"));
                        }
                    }
                }
                "id" => first(&mut found.atom_id, text(child, source)),
                "title" => first(&mut found.atom_title, text(child, source)),
                "published" => first(&mut found.issued, date(child)),
                "updated" => first(&mut found.modified, date(child)),
                "author" => {
                    let name = child
                        .child(Ns::Atom, "name")
                        .or_else(|| child.child(Ns::Atom, "email"))
                        .and_then(|n| text(n, source));
                    push_unique(&mut found.authors, name.or_else(|| text(child, source)));
                }
                "summary" => first(&mut found.itunes_summary, text(child, source)),
                "content" => first(&mut found.content, text(child, source)),
                "category" => push_unique(
                    &mut found.categories,
                    child
                        .attr("term")
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string),
                ),
                _ => {}
            },
            Ns::Itunes => match name {
                "author" => {
                    found.itunes_author = found.itunes_author.take().or_else(|| text(child, source))
                }
                "summary" => first(&mut found.itunes_summary, text(child, source)),
                "subtitle" => first(&mut found.itunes_subtitle, text(child, source)),
                "title" => first(&mut found.itunes_title, text(child, source)),
                "image" => media::itunes_image(child, &mut media),
                _ => {}
            },
            Ns::Media => media::element(child, &mut media),
            _ => {}
        }
    }
    let rdf_about = node
        .attr_ns(Ns::Rdf, "about")
        .map(str::trim)
        .filter(|about| !about.is_empty())
        .map(str::to_string);
    found.finish(rdf_about, media, url)
}

#[derive(Default)]
struct Found {
    title: Option<String>,
    dc_title: Option<String>,
    atom_title: Option<String>,
    itunes_title: Option<String>,
    link: Option<String>,
    atom_link: Option<String>,
    guid: Option<String>,
    guid_is_permalink: Option<bool>,
    guid_base: Option<String>,
    atom_id: Option<String>,
    description: Option<String>,
    dc_description: Option<String>,
    itunes_summary: Option<String>,
    itunes_subtitle: Option<String>,
    content: Option<String>,
    published: Option<String>,
    dc_date: Option<String>,
    issued: Option<String>,
    created: Option<String>,
    modified: Option<String>,
    authors: Vec<String>,
    itunes_author: Option<String>,
    categories: Vec<String>,
}

impl Found {
    fn finish(self, rdf_about: Option<String>, media: Media, url: &str) -> FeedItem {
        // A guid is the item's permalink unless it says otherwise; without the attribute only
        // when it looks like a web address (RSS 2.0 and how readers take it).
        let guid_link = self.guid.as_deref().and_then(|guid| {
            let looks_like_url = guid.starts_with("http://") || guid.starts_with("https://");
            match self.guid_is_permalink {
                Some(true) => Some(resolve_url(self.guid_base.as_deref().unwrap_or(url), guid)),
                None if looks_like_url => Some(guid.to_string()),
                _ => None,
            }
        });
        let mut authors = self.authors;
        if authors.is_empty() {
            push_unique(&mut authors, self.itunes_author.as_deref().and_then(person));
        }
        let published = self
            .published
            .or(self.dc_date.clone())
            .or(self.issued)
            .or(self.created);
        let mut item = FeedItem {
            id: String::new(),
            title: self
                .title
                .or(self.dc_title)
                .or(self.atom_title)
                .or(self.itunes_title),
            link: self.link.or(self.atom_link).or(guid_link),
            published,
            updated: self.modified,
            authors,
            summary: self
                .description
                .or(self.dc_description)
                .or(self.itunes_summary)
                .or(self.itunes_subtitle),
            content: self.content,
            categories: self.categories,
            enclosures: media.enclosures,
            thumbnail: media.thumbnail,
        };
        finish_id(&mut item, self.guid.or(rdf_about).or(self.atom_id), url);
        item
    }
}
