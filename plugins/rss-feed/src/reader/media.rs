//! Enclosures and thumbnails, wherever a feed puts them: RSS `<enclosure>`, Atom
//! `<link rel="enclosure">`, Media RSS (`media:content`, `media:thumbnail`, `media:group`),
//! iTunes `<itunes:image>`, JSON Feed `attachments` and `image`.

use super::xml::{Node, Ns, resolve_url};
use crate::Enclosure;

/// The most enclosures kept per item.
pub const MAX_ENCLOSURES: usize = 16;

#[derive(Default)]
pub struct Media {
    pub enclosures: Vec<Enclosure>,
    pub thumbnail: Option<String>,
}

impl Media {
    pub fn push_enclosure(&mut self, url: String, mime: Option<&str>, length: Option<&str>) {
        if url.is_empty()
            || self.enclosures.len() == MAX_ENCLOSURES
            || self.enclosures.iter().any(|known| known.url == url)
        {
            return;
        }
        self.enclosures.push(Enclosure {
            url,
            mime: mime
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            length: length
                .and_then(|l| l.trim().parse().ok())
                .filter(|l| *l > 0),
        });
    }

    pub fn thumbnail(&mut self, url: Option<String>) {
        if self.thumbnail.is_none() {
            self.thumbnail = url.filter(|u| !u.is_empty());
        }
    }
}

fn url_attr(node: &Node, name: &str) -> Option<String> {
    node.attr(name)
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| resolve_url(&node.base, u))
}

/// RSS 2.0's `<enclosure url length type/>`.
pub fn enclosure(node: &Node, media: &mut Media) {
    if let Some(url) = url_attr(node, "url") {
        media.push_enclosure(url, node.attr("type"), node.attr("length"));
    }
}

/// `<itunes:image href/>`.
pub fn itunes_image(node: &Node, media: &mut Media) {
    media.thumbnail(url_attr(node, "href"));
}

/// A Media RSS element: `content` (an image one is a thumbnail too), `thumbnail`, and `group`,
/// which holds the others.
pub fn element(node: &Node, media: &mut Media) {
    match node.name.as_str() {
        "content" => {
            if let Some(url) = url_attr(node, "url") {
                let is_image = node.attr("medium") == Some("image")
                    || node.attr("type").is_some_and(|t| t.starts_with("image/"));
                if is_image {
                    media.thumbnail(Some(url.clone()));
                }
                media.push_enclosure(url, node.attr("type"), node.attr("fileSize"));
            }
            for child in &node.children {
                if child.is(Ns::Media, "thumbnail") {
                    media.thumbnail(url_attr(child, "url"));
                }
            }
        }
        "thumbnail" => media.thumbnail(url_attr(node, "url")),
        "group" => {
            for child in &node.children {
                if child.ns == Ns::Media {
                    element(child, media);
                }
            }
        }
        _ => {}
    }
}
