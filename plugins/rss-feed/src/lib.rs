//! The RSS connector's feed logic, without I/O or bindings: a response body (RSS 0.9x/1.0/2.0,
//! Atom 0.3/1.0, JSON Feed 1.0/1.1) becomes items, via feed-rs.
//!
//! The component (`plugins/rss`) and the benchmark's native-parse reference in the host both use
//! this crate, so the benchmark compares the same parsing with and without the sandbox.

use chrono::{DateTime, SecondsFormat, Utc};
use feed_rs::model::{Entry, Feed, Link, Person, Text};
use siphasher::sip128::{Hasher128, SipHasher};
use std::hash::Hasher;

/// Feed formats first, generic JSON/XML as fallbacks, anything else last: some servers only send
/// a feed when asked for one.
pub const ACCEPT: &str = "application/rss+xml, application/atom+xml, application/feed+json, \
                          application/json;q=0.9, application/xml;q=0.8, */*;q=0.5";

pub const USER_AGENT: &str = "tsunagi-rss/0.1";

/// One feed entry, normalised (the fields of the WIT `item`).
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
}

/// The useful part of a parsed feed.
#[derive(Debug)]
pub struct ParsedFeed {
    pub items: Vec<FeedItem>,
    /// The feed's own refresh hint in seconds (RSS `ttl` is in minutes).
    pub refresh_after_seconds: Option<u32>,
}

/// Parses `body`, fetched from `url` (used to resolve relative links and to derive ids for
/// entries that have none). The error says why the feed is malformed. A document that holds
/// `<item>` or `<entry>` elements but yields no item is an error too, never an empty success:
/// a whole feed's posts must not be lost without a word.
pub fn parse(body: &[u8], url: &str) -> Result<ParsedFeed, String> {
    let feed = feed_rs::parser::Builder::new()
        .base_uri(Some(url))
        .id_generator(derived_id)
        .sanitize_content(false)
        .build()
        .parse(body)
        .map_err(|err| format!("malformed feed: {err}"))?;
    let parsed = map_feed(feed, url);
    if parsed.items.is_empty() {
        let elements = entry_elements(body);
        if elements > 0 {
            return Err(format!(
                "unread feed: the document holds {elements} <item>/<entry> element(s) but none \
                 could be read (a format or namespace the reader does not know)"
            ));
        }
    }
    Ok(parsed)
}

/// How many `<item>` / `<entry>` start tags (any namespace prefix) `body` holds, at most 1,000:
/// enough to tell "no entries" from "entries not read".
fn entry_elements(body: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = body;
    while let Some(open) = rest.iter().position(|&b| b == b'<') {
        rest = &rest[open + 1..];
        let name_end = rest
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        if (local.eq_ignore_ascii_case(b"item") || local.eq_ignore_ascii_case(b"entry"))
            && name_end < rest.len()
        {
            count += 1;
            if count == 1000 {
                break;
            }
        }
    }
    count
}

/// Maps a parsed feed to items and the refresh hint.
pub fn map_feed(feed: Feed, url: &str) -> ParsedFeed {
    let refresh_after_seconds = feed.ttl.map(|minutes| minutes.saturating_mul(60));
    let items = feed
        .entries
        .into_iter()
        .map(|entry| map_entry(entry, url))
        .collect();
    ParsedFeed {
        items,
        refresh_after_seconds,
    }
}

/// Maps one entry. Text fields keep their markup: HTML stays HTML.
pub fn map_entry(entry: Entry, url: &str) -> FeedItem {
    let id = if entry.id.is_empty() {
        content_id(&entry, url)
    } else {
        scoped_id(&entry.id, url)
    };
    FeedItem {
        link: primary_link(&entry.links).map(|link| link.href.clone()),
        published: entry.published.map(rfc3339),
        updated: entry.updated.map(rfc3339),
        authors: entry.authors.into_iter().filter_map(author_name).collect(),
        summary: entry.summary.map(text),
        content: entry.content.and_then(|content| content.body),
        categories: entry
            .categories
            .into_iter()
            .map(|category| category.term)
            .filter(|term| !term.is_empty())
            .collect(),
        title: entry.title.map(text),
        id,
    }
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

/// The entry's page: its first `alternate` (or rel-less) link, else its first link of any kind
/// (Atom entries may list `self`, `edit` or `enclosure` links before the page itself).
fn primary_link(links: &[Link]) -> Option<&Link> {
    links
        .iter()
        .find(|link| matches!(link.rel.as_deref(), None | Some("alternate")))
        .or_else(|| links.first())
}

/// A person's name, or their email address when the feed gives no name.
/// A person's name as a reader shows it. RSS writes `editor@example.com (Example editor)`, of
/// which feed-rs keeps `(Example editor)` as the name: the parentheses go.
fn author_name(person: Person) -> Option<String> {
    let name = person
        .name
        .map(|name| {
            let trimmed = name.trim();
            trimmed
                .strip_prefix('(')
                .and_then(|inner| inner.strip_suffix(')'))
                .map_or_else(|| trimmed.to_string(), |inner| inner.trim().to_string())
        })
        .filter(|name| !name.is_empty());
    name.or(person.email)
        .filter(|value| !value.trim().is_empty())
}

fn text(text: Text) -> String {
    text.content
}

/// feed-rs's id generator for entries without an id, minus its last resort: feed-rs falls back
/// to a random UUID, which would make the host see a "new" item on every poll. Returning an
/// empty id leaves the entry to [`content_id`], which is stable.
fn derived_id(links: &[Link], title: &Option<Text>, uri: Option<&str>) -> String {
    if links.is_empty() && (title.is_none() || uri.is_none()) {
        return String::new();
    }
    feed_rs::parser::generate_id(links, title, uri)
}

/// A stable id for an entry with no id, link or title: a hash of the feed URL and the entry's
/// content.
fn content_id(entry: &Entry, url: &str) -> String {
    const KEY0: u64 = 0x7473_756e_6167_6972; // "tsunagir"
    const KEY1: u64 = 0x7373_2d69_7465_6d73; // "ss-items"
    let mut hasher = SipHasher::new_with_keys(KEY0, KEY1);
    let mut field = |value: &str| {
        hasher.write(value.as_bytes());
        hasher.write_u8(0xff); // a separator no UTF-8 text contains
    };
    field(url);
    field(
        entry
            .summary
            .as_ref()
            .map_or("", |summary| summary.content.as_str()),
    );
    field(
        entry
            .content
            .as_ref()
            .and_then(|content| content.body.as_deref())
            .unwrap_or(""),
    );
    field(&entry.published.map(rfc3339).unwrap_or_default());
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
            "<html><body>Not a feed</body></html>",
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

#[cfg(test)]
mod unread {
    //! Feeds whose entries the reader does not know yet must fail loudly, never as an empty
    //! success (issue 14's examples).
    use super::*;

    const URL: &str = "https://example.com/feed";

    fn outcome(body: &str) -> Result<usize, String> {
        parse(body.as_bytes(), URL).map(|parsed| parsed.items.len())
    }

    #[test]
    fn a_feed_with_entries_the_reader_cannot_read_is_an_error_naming_them() {
        let atom_03 = r#"<?xml version="1.0"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#">
  <title>Old Atom</title>
  <entry><title>One</title><id>tag:example.com,2004:1</id><link rel="alternate" href="https://example.com/1"/></entry>
  <entry><title>Two</title><id>tag:example.com,2004:2</id><link rel="alternate" href="https://example.com/2"/></entry>
</feed>"#;
        let rss_090 = r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://my.netscape.com/rdf/simple/0.9/">
  <channel><title>Netscape</title><link>https://example.com/</link><description>d</description></channel>
  <item><title>One</title><link>https://example.com/1</link></item>
</rdf:RDF>"#;
        let rdf_untitled = r#"<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">
  <channel rdf:about="https://example.com/"><link>https://example.com/</link></channel>
  <item rdf:about="https://example.com/1"><title>One</title><link>https://example.com/1</link></item>
</rdf:RDF>"#;
        let unread = |entries: usize| {
            Err(format!(
                "unread feed: the document holds {entries} <item>/<entry> element(s) but none \
                 could be read (a format or namespace the reader does not know)"
            ))
        };
        // Until the reader knows Atom 0.3's namespace and RSS 0.90, they fail naming their
        // entries; the RDF feed without a channel title is read.
        assert_eq!(outcome(atom_03), unread(2), "atom 0.3");
        assert_eq!(outcome(rss_090), unread(1), "rss 0.90");
        assert_eq!(outcome(rdf_untitled), Ok(1), "rdf without a channel title");
    }

    #[test]
    fn a_feed_without_entries_is_still_an_empty_success() {
        let empty = r#"<rss version="2.0"><channel><title>t</title><link>https://e.x/</link><description>d</description></channel></rss>"#;
        assert_eq!(outcome(empty), Ok(0));
        assert_eq!(
            entry_elements(b"<items><entryway/><rss:item>x</rss:item><ITEM/></items>"),
            2
        );
    }
}

#[cfg(test)]
mod authors {
    use super::*;

    #[test]
    fn both_rss_author_forms_give_the_name() {
        let body = r#"<?xml version="1.0"?>
<rss version="2.0"><channel><title>t</title><link>https://e.x/</link><description>d</description>
<item><guid>https://e.x/p/1</guid><title>a</title><author>editor@example.com (Example editor)</author></item>
<item><guid>https://e.x/p/2</guid><title>b</title><author>Example editor &lt;editor@example.com&gt;</author></item>
<item><guid>https://e.x/p/3</guid><title>c</title><author>editor@example.com</author></item>
</channel></rss>"#;
        let parsed = parse(body.as_bytes(), "https://e.x/feed").expect("parses");
        let authors: Vec<Vec<String>> = parsed.items.into_iter().map(|i| i.authors).collect();
        assert_eq!(
            authors,
            vec![
                vec!["Example editor".to_string()],
                vec!["Example editor".to_string()],
                vec!["editor@example.com".to_string()],
            ]
        );
    }
}
