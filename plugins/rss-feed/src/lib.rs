//! The RSS connector's feed logic, without I/O or bindings: a response body (RSS 0.90–2.0,
//! Atom 0.3/1.0, JSON Feed 1.0/1.1) and its `Content-Type` become items, via the reader in
//! [`reader`] (quick-xml underneath).
//!
//! The component (`plugins/rss`) and the benchmark's native-parse reference in the host both use
//! this crate, so the benchmark compares the same parsing with and without the sandbox.

pub mod reader;

use chrono::{DateTime, SecondsFormat, Utc};
use siphasher::sip128::{Hasher128, SipHasher};
use std::hash::Hasher;

/// Feed formats first, generic JSON/XML as fallbacks, anything else last: some servers only send
/// a feed when asked for one.
pub const ACCEPT: &str = "application/rss+xml, application/atom+xml, application/feed+json, \
                          application/json;q=0.9, application/xml;q=0.8, */*;q=0.5";

pub const USER_AGENT: &str = "tsunagi-rss/0.1";

/// One feed entry, normalised (the fields of the WIT `item`, and the media the WIT item has no
/// field for yet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedItem {
    pub id: String,
    pub title: Option<String>,
    pub link: Option<String>,
    /// RFC 3339, UTC.
    pub published: Option<String>,
    /// RFC 3339, UTC.
    pub updated: Option<String>,
    pub authors: Vec<String>,
    pub summary: Option<String>,
    pub content: Option<String>,
    pub categories: Vec<String>,
    /// Podcast episodes, attached files, Media RSS content.
    pub enclosures: Vec<Enclosure>,
    /// An image standing for the item (Media RSS, iTunes, JSON Feed).
    pub thumbnail: Option<String>,
}

/// A file attached to an item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enclosure {
    pub url: String,
    pub mime: Option<String>,
    /// Bytes, as the feed states it.
    pub length: Option<u64>,
}

/// The useful part of a parsed feed.
#[derive(Debug, Default)]
pub struct ParsedFeed {
    pub items: Vec<FeedItem>,
    /// The feed's own refresh hint in seconds (RSS `ttl` is in minutes).
    pub refresh_after_seconds: Option<u32>,
    /// What the reader repaired or skipped (an unescaped `&`, a document cut off), for the log.
    pub warnings: Vec<String>,
    /// WebSub hubs the feed names (`<link rel="hub">`), at most 4.
    pub hubs: Vec<String>,
    /// The feed's own URL as it states it (`<link rel="self">`).
    pub self_link: Option<String>,
}

/// Parses `body`, fetched from `url` (used to resolve relative links and to derive ids for
/// entries that have none), with no `Content-Type` to go by. See [`parse_response`].
pub fn parse(body: &[u8], url: &str) -> Result<ParsedFeed, String> {
    reader::read(body, url, None)
}

/// Parses a fetched response body. The error says why: `malformed feed: …` (nothing could be
/// read), `not a feed: …` (an HTML page, a JSON error), `unread feed: …` (entries the reader could
/// not read — never an empty success), `refused: …` (an entity-expansion attack).
pub fn parse_response(
    body: &[u8],
    url: &str,
    content_type: Option<&str>,
) -> Result<ParsedFeed, String> {
    reader::read(body, url, content_type)
}

/// Item ids are unique per connector, but a guid like `42` or `post-1` is only unique within its
/// feed: such ids are scoped by the feed URL. Ids that are absolute URIs (`https://…`,
/// `urn:…`, `tag:…`) are globally unique already and kept as they are.
pub fn scoped_id(id: &str, feed_url: &str) -> String {
    let has_scheme = id.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if has_scheme {
        id.to_string()
    } else {
        format!("{feed_url}#{id}")
    }
}

/// RFC 3339 in UTC with whole seconds, e.g. `2024-05-01T12:00:00Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The id the reader before this one (feed-rs) gave an entry without an id of its own: a hash
/// of its link and title, or of the feed URL and title. Kept so that items stored before the
/// reader changed are not delivered again as new ones.
pub fn legacy_id(link: Option<&str>, title: Option<&str>, url: &str) -> Option<String> {
    const KEY0: u64 = 0x5d78_4074_2887_2d60;
    const KEY1: u64 = 0x90ee_ca4c_90a5_e228;
    let mut hasher = SipHasher::new_with_keys(KEY0, KEY1);
    match (link, title) {
        (Some(link), title) => {
            hasher.write(link.as_bytes());
            if let Some(title) = title {
                hasher.write(title.as_bytes());
            }
        }
        (None, Some(title)) => {
            hasher.write(url.as_bytes());
            hasher.write(title.as_bytes());
        }
        (None, None) => return None,
    }
    let hash = hasher.finish128();
    Some(format!("{:x}{:x}", hash.h1, hash.h2))
}

/// A stable id for an entry with no id, link or title: a hash of the feed URL and the entry's
/// content.
pub(crate) fn content_id(item: &FeedItem, url: &str) -> String {
    const KEY0: u64 = 0x7473_756e_6167_6972; // "tsunagir"
    const KEY1: u64 = 0x7373_2d69_7465_6d73; // "ss-items"
    let mut hasher = SipHasher::new_with_keys(KEY0, KEY1);
    let mut field = |value: &str| {
        hasher.write(value.as_bytes());
        hasher.write_u8(0xff); // a separator no UTF-8 text contains
    };
    field(url);
    field(item.summary.as_deref().unwrap_or(""));
    field(item.content.as_deref().unwrap_or(""));
    field(item.published.as_deref().unwrap_or(""));
    let hash = hasher.finish128();
    format!("{:016x}{:016x}", hash.h1, hash.h2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.com/feed";

    fn parse_ok(body: &str) -> ParsedFeed {
        parse(body.as_bytes(), URL).unwrap_or_else(|err| panic!("{err:?}"))
    }

    const RSS2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>Example</title>
    <link>https://example.com/</link>
    <description>An example feed</description>
    <ttl>30</ttl>
    <item>
      <title>First &amp; foremost</title>
      <link>https://example.com/posts/1</link>
      <guid isPermaLink="false">post-1</guid>
      <pubDate>Wed, 01 May 2024 21:00:00 +0900</pubDate>
      <author>jane@example.com (Jane Doe)</author>
      <dc:creator>Kenji</dc:creator>
      <category>news</category>
      <category>rust</category>
      <description>A &lt;b&gt;short&lt;/b&gt; summary</description>
      <content:encoded><![CDATA[<p>The whole <em>story</em>.</p>]]></content:encoded>
    </item>
    <item>
      <title>No guid here</title>
      <link>https://example.com/posts/2</link>
    </item>
    <item>
      <description>Neither guid, link nor title</description>
    </item>
  </channel>
</rss>"#;

    #[test]
    fn rss2() {
        let feed = parse_ok(RSS2);
        assert_eq!(feed.refresh_after_seconds, Some(30 * 60));
        assert_eq!(feed.items.len(), 3);

        let item = &feed.items[0];
        assert_eq!(
            item.id, "https://example.com/feed#post-1",
            "a bare guid is scoped by the feed"
        );
        assert_eq!(item.title.as_deref(), Some("First & foremost"));
        assert_eq!(item.link.as_deref(), Some("https://example.com/posts/1"));
        assert_eq!(item.published.as_deref(), Some("2024-05-01T12:00:00Z"));
        assert_eq!(item.authors.len(), 2);
        assert_eq!(
            item.authors[0], "Jane Doe",
            "the name, without its parentheses"
        );
        assert_eq!(item.authors[1], "Kenji");
        assert_eq!(item.categories, ["news", "rust"]);
        assert_eq!(item.summary.as_deref(), Some("A <b>short</b> summary"));
        assert_eq!(
            item.content.as_deref(),
            Some("<p>The whole <em>story</em>.</p>")
        );
    }

    #[test]
    fn rss2_ids_are_stable_without_guid() {
        let first = parse_ok(RSS2);
        let second = parse_ok(RSS2);
        for index in [1, 2] {
            assert!(!first.items[index].id.is_empty());
            assert_eq!(first.items[index].id, second.items[index].id);
        }
        assert_ne!(first.items[1].id, first.items[2].id);
        // The content-derived id depends on the feed URL too.
        let elsewhere = parse(RSS2.as_bytes(), "https://example.org/feed").unwrap();
        assert_ne!(first.items[2].id, elsewhere.items[2].id);
    }

    #[test]
    fn rss1() {
        let body = r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://example.com/rss1">
    <title>RSS 1 example</title>
    <link>https://example.com/</link>
    <description>RDF Site Summary</description>
    <items><rdf:Seq><rdf:li resource="https://example.com/r/1"/></rdf:Seq></items>
  </channel>
  <item rdf:about="https://example.com/r/1">
    <title>RDF item</title>
    <link>https://example.com/r/1</link>
    <description>RDF summary</description>
    <dc:date>2024-05-01T12:00:00+00:00</dc:date>
    <dc:creator>Alice</dc:creator>
    <dc:subject>semantic</dc:subject>
  </item>
</rdf:RDF>"#;
        let feed = parse_ok(body);
        assert_eq!(feed.refresh_after_seconds, None);
        assert_eq!(feed.items.len(), 1);
        let item = &feed.items[0];
        assert!(!item.id.is_empty());
        assert_eq!(item.title.as_deref(), Some("RDF item"));
        assert_eq!(item.link.as_deref(), Some("https://example.com/r/1"));
        assert_eq!(item.summary.as_deref(), Some("RDF summary"));
        assert_eq!(item.published.as_deref(), Some("2024-05-01T12:00:00Z"));
        assert_eq!(item.authors, ["Alice"]);
    }

    #[test]
    fn atom1() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Atom example</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93c-0003939e0af6</id>
  <updated>2024-05-02T08:30:00Z</updated>
  <entry>
    <title type="html">Atom &lt;i&gt;entry&lt;/i&gt;</title>
    <id>tag:example.com,2024:entry-1</id>
    <link rel="edit" href="https://example.com/api/entries/1"/>
    <link rel="alternate" type="text/html" href="/entries/1"/>
    <published>2024-05-01T12:00:00+02:00</published>
    <updated>2024-05-02T08:30:00.250Z</updated>
    <author><name>Bob</name><email>bob@example.com</email></author>
    <author><email>anon@example.com</email></author>
    <category term="atom" label="Atom"/>
    <summary>Atom summary</summary>
    <content type="html">&lt;p&gt;Atom body&lt;/p&gt;</content>
  </entry>
</feed>"#;
        let feed = parse_ok(body);
        assert_eq!(feed.refresh_after_seconds, None);
        let item = &feed.items[0];
        assert_eq!(item.id, "tag:example.com,2024:entry-1");
        assert_eq!(item.title.as_deref(), Some("Atom <i>entry</i>"));
        // The alternate link wins over the edit link, resolved against the feed URL.
        assert_eq!(item.link.as_deref(), Some("https://example.com/entries/1"));
        assert_eq!(item.published.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(item.updated.as_deref(), Some("2024-05-02T08:30:00Z"));
        assert_eq!(item.authors, ["Bob", "anon@example.com"]);
        assert_eq!(item.categories, ["atom"]);
        assert_eq!(item.summary.as_deref(), Some("Atom summary"));
        assert_eq!(item.content.as_deref(), Some("<p>Atom body</p>"));
    }

    #[test]
    fn json_feed_1_1() {
        let body = r#"{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "JSON example",
  "home_page_url": "https://example.com/",
  "feed_url": "https://example.com/feed.json",
  "items": [
    {
      "id": "json-1",
      "url": "https://example.com/j/1",
      "title": "JSON item",
      "summary": "JSON summary",
      "content_html": "<p>JSON body</p>",
      "date_published": "2024-05-01T12:00:00Z",
      "date_modified": "2024-05-03T00:00:00-05:00",
      "authors": [{"name": "Carol"}],
      "tags": ["json", "feeds"]
    },
    {
      "id": "json-2",
      "content_text": "Plain text only"
    }
  ]
}"#;
        let feed = parse_ok(body);
        assert_eq!(feed.items.len(), 2);
        let item = &feed.items[0];
        assert_eq!(item.id, "https://example.com/feed#json-1");
        assert_eq!(item.title.as_deref(), Some("JSON item"));
        assert_eq!(item.link.as_deref(), Some("https://example.com/j/1"));
        assert_eq!(item.published.as_deref(), Some("2024-05-01T12:00:00Z"));
        assert_eq!(item.updated.as_deref(), Some("2024-05-03T05:00:00Z"));
        assert_eq!(item.authors, ["Carol"]);
        assert_eq!(item.categories, ["json", "feeds"]);
        assert_eq!(item.summary.as_deref(), Some("JSON summary"));
        assert_eq!(item.content.as_deref(), Some("<p>JSON body</p>"));

        let plain = &feed.items[1];
        assert_eq!(plain.id, "https://example.com/feed#json-2");
        assert_eq!(plain.title, None);
        assert_eq!(plain.link, None);
        assert_eq!(plain.content.as_deref(), Some("Plain text only"));
    }

    #[test]
    fn malformed_feeds_are_errors_that_say_so() {
        for body in [
            "<rss version=\"2.0\"><channel><title>cut off",
            "{\"version\": \"https://jsonfeed.org/version/1.1\", \"items\": [",
            "",
        ] {
            let err = parse(body.as_bytes(), URL).unwrap_err();
            assert!(err.starts_with("malformed feed: "), "{body:?}: {err}");
        }
    }

    #[test]
    fn ttl_saturates() {
        let body =
            "<rss version=\"2.0\"><channel><title>t</title><ttl>4294967295</ttl></channel></rss>";
        assert_eq!(parse_ok(body).refresh_after_seconds, Some(u32::MAX));
    }
}
