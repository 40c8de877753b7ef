//! Renders the fake feeds: one function per format, all writing into a caller-supplied `String`.
//!
//! Content is a pure function of (server base URL, feed id, generation, items per feed, padding):
//! at generation `g` a feed serves items `k = g + n - 1` down to `k = g` (newest first), so one
//! `publish_round` adds item `g + n` and drops item `g`. Item `k` is published at
//! [`BASE_UNIX`] + `k` hours, and the feed's Last-Modified is the newest item's date.
//!
//! Nothing is cached: a feed renders in a few microseconds with one allocation (the body, sized
//! up front), which keeps memory flat at 210,000 feeds. All generated text is ASCII
//! without `<`, `>`, `&`, `"` or `\`, so it needs no escaping except where the format wants
//! escaped HTML, which we write escaped on purpose.

use std::fmt::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use crate::FeedFormat;

/// 2024-01-01T00:00:00Z: item `k` is published `k` hours after this.
pub(crate) const BASE_UNIX: u64 = 1_704_067_200;

/// Everything a renderer needs to know about one response.
pub(crate) struct FeedContext<'a> {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: &'a str,
    pub id: u32,
    pub generation: u64,
    pub items: u32,
    /// Bytes of filler added to each item's main content.
    pub pad: usize,
    pub ttl_minutes: Option<u32>,
    /// Atom 0.3 without `xmlns` (see `FeedServerConfig::atom03_without_namespace`).
    pub atom03_without_namespace: bool,
    /// A WebSub hub the RSS 2.0 and Atom 1.0 feeds name (see `FeedServerConfig::hub`).
    pub hub: Option<&'a str>,
}

impl FeedContext<'_> {
    /// Item numbers served at this generation, newest first.
    fn item_numbers(&self) -> impl Iterator<Item = u64> + use<> {
        (self.generation..self.generation + u64::from(self.items)).rev()
    }
}

/// Unix time at which item `k` was published.
pub(crate) fn published_unix(k: u64) -> u64 {
    BASE_UNIX + k * 3600
}

/// Unix time of the newest item at `generation` (the feed's Last-Modified).
pub(crate) fn last_modified_unix(generation: u64, items: u32) -> u64 {
    published_unix(generation + u64::from(items.max(1)) - 1)
}

/// The stable id written into every format that has an explicit id field.
pub(crate) fn item_urn(id: u32, k: u64) -> String {
    let mut urn = String::new();
    Urn { id, k }.put(&mut urn);
    urn
}

/// The item's link (also its `rdf:about` in RSS 1.0).
pub(crate) fn item_link(base_url: &str, id: u32, k: u64) -> String {
    let mut link = String::new();
    Link { base_url, id, k }.put(&mut link);
    link
}

/// The id tsunagi's reader reports for item `k` of feed `id` served in `format`: the feed's own
/// id — `<guid>` (RSS 2.0, 0.91), `<id>` (Atom), `"id"` (JSON Feed) and `rdf:about` (RSS 1.0,
/// which equals the link).
pub(crate) fn item_id(format: FeedFormat, base_url: &str, id: u32, k: u64) -> String {
    match format {
        FeedFormat::Rss10 => item_link(base_url, id, k),
        _ => item_urn(id, k),
    }
}

/// A rough upper bound on a rendered body, to size the output buffer once.
pub(crate) fn capacity_hint(overhead: usize, pad: usize, items: u32) -> usize {
    overhead + (pad + 64) * items as usize + 256
}

/// `<ELEMENT rel="hub" href="HUB"/>` and a line break, or nothing.
struct HubLink<'a>(Option<&'a str>, &'a str);

impl fmt::Display for HubLink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(hub) => writeln!(f, "<{} rel=\"hub\" href=\"{hub}\"/>", self.1),
            None => Ok(()),
        }
    }
}

/// Renders the feed body for `format` into `out`.
pub(crate) fn render(format: FeedFormat, ctx: &FeedContext<'_>, out: &mut String) {
    // `fmt::Write` for `String` never fails, so the results are safely ignored.
    let _ = match format {
        FeedFormat::Rss20 => rss20(ctx, out),
        FeedFormat::Rss10 => rss10(ctx, out),
        FeedFormat::Rss091 => rss091(ctx, out),
        FeedFormat::Atom10 => atom10(ctx, out),
        FeedFormat::Atom03 => atom03(ctx, out),
        FeedFormat::JsonFeed11 => json_feed(ctx, out, true),
        FeedFormat::JsonFeed10 => json_feed(ctx, out, false),
    };
}

/// Renders a deliberately broken body no reader can take items from: for XML formats the feed is
/// cut before its first item and ends in a mismatched closing tag and an unterminated element;
/// for JSON Feed it is cut in the middle of the document. (A feed cut after some items is read
/// as far as it goes, so it would not be broken enough.)
pub(crate) fn render_malformed(format: FeedFormat, ctx: &FeedContext<'_>) -> String {
    let mut out = String::new();
    render(format, ctx, &mut out);
    match format {
        FeedFormat::JsonFeed10 | FeedFormat::JsonFeed11 => {
            let mut cut = out.len() / 2;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        _ => {
            let marker = match format {
                FeedFormat::Atom10 | FeedFormat::Atom03 => "<entry>",
                _ => "<item",
            };
            // Cut before the first item (or keep everything if there is none), then leave an
            // element closed by the wrong tag and the document unterminated.
            if let Some(pos) = out.find(marker) {
                out.truncate(pos);
            }
            out.push_str("<title>Broken feed, truncated here</item>\n<link>http://");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Text pieces shared by every format.

const PHRASES: [&str; 16] = [
    "Scaling a crawler past two hundred thousand feeds",
    "Why conditional GETs matter",
    "Circuit breakers in practice",
    "Notes on rate limiting with GCRA",
    "A week with WebAssembly components",
    "Parsing every feed format",
    "Backoff schedules that do not stampede",
    "Keeping credentials out of plugins",
    "What the status page told us",
    "Leases, rescues and duplicate work",
    "Measuring instance reuse",
    "Hot swapping without dropping requests",
    "Small crates with clear names",
    "Reading upstream rate limit headers",
    "Settings pushed to every server",
    "Ranking with sorted sets",
];

const AUTHORS: [(&str, &str); 8] = [
    ("Aiko Tanaka", "aiko"),
    ("Ben Okafor", "ben"),
    ("Chen Wei", "chen"),
    ("Dana Novak", "dana"),
    ("Emeka Eze", "emeka"),
    ("Freya Lund", "freya"),
    ("Gabriel Silva", "gabriel"),
    ("Hana Sato", "hana"),
];

const CATEGORIES: [&str; 12] = [
    "rust",
    "wasm",
    "feeds",
    "operations",
    "databases",
    "networking",
    "testing",
    "security",
    "performance",
    "design",
    "release-notes",
    "community",
];

/// Filler prose for padding; plain words so it is safe in CDATA, escaped HTML and JSON alike.
const FILLER: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in \
reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint \
occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum. \
Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque \
laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto \
beatae vitae dicta sunt explicabo. Nemo enim ipsam voluptatem quia voluptas sit aspernatur aut \
odit aut fugit, sed quia consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. ";

fn phrase(id: u32, k: u64) -> &'static str {
    PHRASES[((u64::from(id) * 31 + k) % PHRASES.len() as u64) as usize]
}

fn author(id: u32, k: u64) -> (&'static str, &'static str) {
    AUTHORS[((u64::from(id) + k) % AUTHORS.len() as u64) as usize]
}

fn categories(id: u32, k: u64) -> [&'static str; 2] {
    let n = CATEGORIES.len() as u64;
    let first = k % n;
    let second = (first + 1 + u64::from(id) % (n - 1)) % n;
    [CATEGORIES[first as usize], CATEGORIES[second as usize]]
}

/// Appends itself to a feed body; the per-item hot path uses this instead of `core::fmt`, whose
/// per-argument overhead dominated rendering time.
trait Piece {
    fn put(&self, out: &mut String);
}

/// Appends each piece in turn: `put!(out, "<title>", Title { id, k }, "</title>\n")`.
macro_rules! put {
    ($out:expr, $($piece:expr),+ $(,)?) => {{
        let out: &mut String = $out;
        $( Piece::put(&$piece, out); )+
    }};
}

impl Piece for &str {
    fn put(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Piece for u32 {
    fn put(&self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(*self));
    }
}

impl Piece for u64 {
    fn put(&self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(*self));
    }
}

/// The item title, e.g. `Feed 3 item 17: Why conditional GETs matter`.
struct Title {
    id: u32,
    k: u64,
}

impl Piece for Title {
    fn put(&self, out: &mut String) {
        put!(
            out,
            "Feed ",
            self.id,
            " item ",
            self.k,
            ": ",
            phrase(self.id, self.k)
        );
    }
}

/// The one-sentence summary of an item.
struct Summary {
    id: u32,
    k: u64,
}

impl Piece for Summary {
    fn put(&self, out: &mut String) {
        put!(out, "Item ", self.k, " of fake feed ", self.id, ".");
    }
}

/// `{base_url}/feeds/{id}/items/{k}`
struct Link<'a> {
    base_url: &'a str,
    id: u32,
    k: u64,
}

impl Piece for Link<'_> {
    fn put(&self, out: &mut String) {
        put!(out, self.base_url, "/feeds/", self.id, "/items/", self.k);
    }
}

/// `urn:tsunagi-fake:feed:{id}:item:{k}`
struct Urn {
    id: u32,
    k: u64,
}

impl Piece for Urn {
    fn put(&self, out: &mut String) {
        put!(out, "urn:tsunagi-fake:feed:", self.id, ":item:", self.k);
    }
}

/// `len` bytes of filler text, starting at a word that varies with the item.
fn write_filler(out: &mut String, id: u32, k: u64, mut len: usize) {
    let from = ((u64::from(id) * 131 + k * 17) % 400) as usize;
    let mut start = FILLER[from..].find(' ').map_or(0, |space| from + space + 1);
    while len > 0 {
        let chunk = &FILLER[start..];
        let take = chunk.len().min(len);
        out.push_str(&chunk[..take]);
        len -= take;
        start = 0;
    }
}

/// The item's main HTML content: one paragraph with the summary and the padding, either raw
/// (for CDATA and JSON) or entity-escaped (for XML text content).
fn write_content(out: &mut String, ctx: &FeedContext<'_>, k: u64, escaped: bool) {
    let (open, close) = if escaped {
        ("&lt;p&gt;", "&lt;/p&gt;")
    } else {
        ("<p>", "</p>")
    };
    put!(out, open, Summary { id: ctx.id, k }, " ");
    write_filler(out, ctx.id, k, ctx.pad);
    out.push_str(close);
}

/// RFC 3339 UTC timestamp, e.g. `2024-01-01T05:00:00Z`.
pub(crate) struct Rfc3339(pub u64);

impl Piece for Rfc3339 {
    fn put(&self, out: &mut String) {
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        let mut text = *b"0000-00-00T00:00:00Z";
        for (range, value) in [
            (0..4, y),
            (5..7, m),
            (8..10, d),
            (11..13, secs / 3600),
            (14..16, secs / 60 % 60),
            (17..19, secs % 60),
        ] {
            let mut value = value;
            for slot in text[range].iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        // Only ASCII digits were written, so this always succeeds.
        if let Ok(text) = std::str::from_utf8(&text) {
            out.push_str(text);
        }
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(20);
        self.put(&mut text);
        f.write_str(&text)
    }
}

/// RFC 822 / HTTP date, e.g. `Mon, 01 Jan 2024 05:00:00 GMT`.
pub(crate) struct Rfc822(pub u64);

impl fmt::Display for Rfc822 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_secs(self.0);
        fmt::Display::fmt(&httpdate::HttpDate::from(t), f)
    }
}

impl Piece for Rfc822 {
    fn put(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = write!(out, "{self}");
    }
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------
// Formats. Channel headers use `write!` (once per response); items use `put!`.

/// RSS 2.0 shaped like a WordPress feed: content, dc and atom namespaces, CDATA content.
fn rss20(ctx: &FeedContext<'_>, out: &mut String) -> fmt::Result {
    let FeedContext { base_url, id, .. } = *ctx;
    let updated = Rfc822(last_modified_unix(ctx.generation, ctx.items));
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" \
         xmlns:content=\"http://purl.org/rss/1.0/modules/content/\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
         xmlns:atom=\"http://www.w3.org/2005/Atom\">\n<channel>\n",
    );
    write!(
        out,
        "<title>Fake feed {id}</title>\n\
         <atom:link href=\"{base_url}/feeds/{id}\" rel=\"self\" type=\"application/rss+xml\"/>\n\
         {}<link>{base_url}/feeds/{id}/</link>\n\
         <description>Deterministic RSS 2.0 test feed {id} from tsunagi-fake-upstream</description>\n\
         <language>en-US</language>\n\
         <lastBuildDate>{updated}</lastBuildDate>\n\
         <pubDate>{updated}</pubDate>\n\
         <generator>tsunagi-fake-upstream</generator>\n",
        HubLink(ctx.hub, "atom:link")
    )?;
    if let Some(ttl) = ctx.ttl_minutes {
        writeln!(out, "<ttl>{ttl}</ttl>")?;
    }
    for k in ctx.item_numbers() {
        let (name, _) = author(id, k);
        let [c1, c2] = categories(id, k);
        put!(
            out,
            "<item>\n<title>",
            Title { id, k },
            "</title>\n<link>",
            Link { base_url, id, k },
            "</link>\n<guid isPermaLink=\"false\">",
            Urn { id, k },
            "</guid>\n<pubDate>",
            Rfc822(published_unix(k)),
            "</pubDate>\n<dc:creator><![CDATA[",
            name,
            "]]></dc:creator>\n<category>",
            c1,
            "</category>\n<category>",
            c2,
            "</category>\n<description>&lt;p&gt;",
            Summary { id, k },
            "&lt;/p&gt;</description>\n<content:encoded><![CDATA[",
        );
        write_content(out, ctx, k, false);
        out.push_str("]]></content:encoded>\n</item>\n");
    }
    out.push_str("</channel>\n</rss>\n");
    Ok(())
}

/// RSS 1.0 (RDF) with dc and content modules; items are siblings of the channel.
fn rss10(ctx: &FeedContext<'_>, out: &mut String) -> fmt::Result {
    let FeedContext { base_url, id, .. } = *ctx;
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rdf:RDF \
         xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" \
         xmlns=\"http://purl.org/rss/1.0/\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
         xmlns:content=\"http://purl.org/rss/1.0/modules/content/\">\n",
    );
    write!(
        out,
        "<channel rdf:about=\"{base_url}/feeds/{id}\">\n<title>Fake feed {id}</title>\n\
         <link>{base_url}/feeds/{id}/</link>\n\
         <description>Deterministic RSS 1.0 test feed {id} from tsunagi-fake-upstream</description>\n\
         <dc:language>en</dc:language>\n<dc:date>{}</dc:date>\n<items>\n<rdf:Seq>\n",
        Rfc3339(last_modified_unix(ctx.generation, ctx.items))
    )?;
    for k in ctx.item_numbers() {
        put!(
            out,
            "<rdf:li rdf:resource=\"",
            Link { base_url, id, k },
            "\"/>\n"
        );
    }
    out.push_str("</rdf:Seq>\n</items>\n</channel>\n");
    for k in ctx.item_numbers() {
        let (name, _) = author(id, k);
        let [c1, _] = categories(id, k);
        put!(
            out,
            "<item rdf:about=\"",
            Link { base_url, id, k },
            "\">\n<title>",
            Title { id, k },
            "</title>\n<link>",
            Link { base_url, id, k },
            "</link>\n<description>",
            Summary { id, k },
            "</description>\n<dc:creator>",
            name,
            "</dc:creator>\n<dc:date>",
            Rfc3339(published_unix(k)),
            "</dc:date>\n<dc:subject>",
            c1,
            "</dc:subject>\n<content:encoded><![CDATA[",
        );
        write_content(out, ctx, k, false);
        out.push_str("]]></content:encoded>\n</item>\n");
    }
    out.push_str("</rdf:RDF>\n");
    Ok(())
}

/// RSS 0.91 with the Netscape DOCTYPE; items carry a `<guid>` (not in 0.91, but common and
/// read by parsers) so ids are explicit. Like real 0.91 feeds, items have no dates.
fn rss091(ctx: &FeedContext<'_>, out: &mut String) -> fmt::Result {
    let FeedContext { base_url, id, .. } = *ctx;
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE rss PUBLIC \
         \"-//Netscape Communications//DTD RSS 0.91//EN\" \
         \"http://my.netscape.com/publish/formats/rss-0.91.dtd\">\n<rss version=\"0.91\">\n<channel>\n",
    );
    write!(
        out,
        "<title>Fake feed {id}</title>\n<link>{base_url}/feeds/{id}/</link>\n\
         <description>Deterministic RSS 0.91 test feed {id} from tsunagi-fake-upstream</description>\n\
         <language>en-us</language>\n<lastBuildDate>{}</lastBuildDate>\n",
        Rfc822(last_modified_unix(ctx.generation, ctx.items))
    )?;
    for k in ctx.item_numbers() {
        put!(
            out,
            "<item>\n<title>",
            Title { id, k },
            "</title>\n<link>",
            Link { base_url, id, k },
            "</link>\n<guid>",
            Urn { id, k },
            "</guid>\n<description>",
        );
        write_content(out, ctx, k, true);
        out.push_str("</description>\n</item>\n");
    }
    out.push_str("</channel>\n</rss>\n");
    Ok(())
}

/// Atom 1.0 with alternate and self links, authors, categories, text summary, HTML content.
fn atom10(ctx: &FeedContext<'_>, out: &mut String) -> fmt::Result {
    let FeedContext { base_url, id, .. } = *ctx;
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\">\n",
    );
    write!(
        out,
        "<title type=\"text\">Fake feed {id}</title>\n\
         <subtitle type=\"text\">Deterministic Atom 1.0 test feed {id} from tsunagi-fake-upstream</subtitle>\n\
         <link rel=\"alternate\" type=\"text/html\" href=\"{base_url}/feeds/{id}/\"/>\n\
         <link rel=\"self\" type=\"application/atom+xml\" href=\"{base_url}/feeds/{id}\"/>\n\
         {}<id>urn:tsunagi-fake:feed:{id}</id>\n<updated>{}</updated>\n\
         <generator uri=\"https://example.invalid/tsunagi\" version=\"0.1\">tsunagi-fake-upstream</generator>\n",
        HubLink(ctx.hub, "link"),
        Rfc3339(last_modified_unix(ctx.generation, ctx.items))
    )?;
    for k in ctx.item_numbers() {
        let (name, handle) = author(id, k);
        let [c1, c2] = categories(id, k);
        put!(
            out,
            "<entry>\n<title>",
            Title { id, k },
            "</title>\n<link rel=\"alternate\" type=\"text/html\" href=\"",
            Link { base_url, id, k },
            "\"/>\n<id>",
            Urn { id, k },
            "</id>\n<published>",
            Rfc3339(published_unix(k)),
            "</published>\n<updated>",
            Rfc3339(published_unix(k)),
            "</updated>\n<author><name>",
            name,
            "</name><uri>",
            base_url,
            "/authors/",
            handle,
            "</uri></author>\n<category term=\"",
            c1,
            "\"/>\n<category term=\"",
            c2,
            "\"/>\n<summary type=\"text\">",
            Summary { id, k },
            "</summary>\n<content type=\"html\">",
        );
        write_content(out, ctx, k, true);
        out.push_str("</content>\n</entry>\n");
    }
    out.push_str("</feed>\n");
    Ok(())
}

/// Atom 0.3 (`version="0.3"`, `tagline`, `issued`/`modified`, `mode="escaped"` content).
///
/// In the 0.3 namespace (`http://purl.org/atom/ns#`), as real 0.3 feeds are, unless the
/// server is asked to leave it out.
fn atom03(ctx: &FeedContext<'_>, out: &mut String) -> fmt::Result {
    let FeedContext { base_url, id, .. } = *ctx;
    let namespace = if ctx.atom03_without_namespace {
        ""
    } else {
        " xmlns=\"http://purl.org/atom/ns#\""
    };
    write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed version=\"0.3\"{namespace} xml:lang=\"en\">\n\
         <title>Fake feed {id}</title>\n\
         <link rel=\"alternate\" type=\"text/html\" href=\"{base_url}/feeds/{id}/\"/>\n\
         <tagline>Deterministic Atom 0.3 test feed {id} from tsunagi-fake-upstream</tagline>\n\
         <id>urn:tsunagi-fake:feed:{id}</id>\n<modified>{}</modified>\n\
         <generator url=\"https://example.invalid/tsunagi\" version=\"0.1\">tsunagi-fake-upstream</generator>\n",
        Rfc3339(last_modified_unix(ctx.generation, ctx.items))
    )?;
    for k in ctx.item_numbers() {
        let (name, _) = author(id, k);
        put!(
            out,
            "<entry>\n<title>",
            Title { id, k },
            "</title>\n<link rel=\"alternate\" type=\"text/html\" href=\"",
            Link { base_url, id, k },
            "\"/>\n<id>",
            Urn { id, k },
            "</id>\n<issued>",
            Rfc3339(published_unix(k)),
            "</issued>\n<modified>",
            Rfc3339(published_unix(k)),
            "</modified>\n<created>",
            Rfc3339(published_unix(k)),
            "</created>\n<author><name>",
            name,
            "</name></author>\n<summary>",
            Summary { id, k },
            "</summary>\n<content type=\"text/html\" mode=\"escaped\">",
        );
        write_content(out, ctx, k, true);
        out.push_str("</content>\n</entry>\n");
    }
    out.push_str("</feed>\n");
    Ok(())
}

/// JSON Feed 1.1 (`authors` array, `language`) or 1.0 (single `author` object).
fn json_feed(ctx: &FeedContext<'_>, out: &mut String, v11: bool) -> fmt::Result {
    let FeedContext { base_url, id, .. } = *ctx;
    let version = if v11 { "1.1" } else { "1" };
    write!(
        out,
        "{{\n  \"version\": \"https://jsonfeed.org/version/{version}\",\n  \
         \"title\": \"Fake feed {id}\",\n  \"home_page_url\": \"{base_url}/feeds/{id}/\",\n  \
         \"feed_url\": \"{base_url}/feeds/{id}\",\n  \
         \"description\": \"Deterministic JSON Feed {version} test feed {id} from tsunagi-fake-upstream\",\n"
    )?;
    if v11 {
        out.push_str("  \"language\": \"en-US\",\n");
    }
    out.push_str("  \"items\": [");
    for (i, k) in ctx.item_numbers().enumerate() {
        let (name, handle) = author(id, k);
        let [c1, c2] = categories(id, k);
        if i > 0 {
            out.push(',');
        }
        put!(
            out,
            "\n    {\n      \"id\": \"",
            Urn { id, k },
            "\",\n      \"url\": \"",
            Link { base_url, id, k },
            "\",\n      \"title\": \"",
            Title { id, k },
            "\",\n      \"summary\": \"",
            Summary { id, k },
            "\",\n      \"date_published\": \"",
            Rfc3339(published_unix(k)),
            if v11 {
                "\",\n      \"authors\": [{\"name\": \""
            } else {
                "\",\n      \"author\": {\"name\": \""
            },
            name,
            "\", \"url\": \"",
            base_url,
            "/authors/",
            handle,
            if v11 { "\"}],\n" } else { "\"},\n" },
            "      \"tags\": [\"",
            c1,
            "\", \"",
            c2,
            "\"],\n      \"content_html\": \"",
        );
        write_content(out, ctx, k, false);
        out.push_str("\"\n    }");
    }
    out.push_str("\n  ]\n}\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_rfc822_dates() {
        assert_eq!(Rfc3339(BASE_UNIX).to_string(), "2024-01-01T00:00:00Z");
        assert_eq!(
            Rfc3339(published_unix(24 * 60 + 5)).to_string(),
            "2024-03-01T05:00:00Z"
        );
        assert_eq!(
            Rfc822(BASE_UNIX).to_string(),
            "Mon, 01 Jan 2024 00:00:00 GMT"
        );
    }

    #[test]
    fn generated_text_needs_no_escaping() {
        let bad = |s: &str| s.contains(['<', '>', '&', '"', '\\']) || s.contains("]]>");
        assert!(!PHRASES.iter().any(|s| bad(s)));
        assert!(!CATEGORIES.iter().any(|s| bad(s)));
        assert!(!AUTHORS.iter().any(|(a, b)| bad(a) || bad(b)));
        assert!(!bad(FILLER) && FILLER.is_ascii());
    }

    #[test]
    fn filler_reaches_requested_length() {
        let mut s = String::new();
        write_filler(&mut s, 3, 9, 5_000);
        assert_eq!(s.len(), 5_000);
    }
}
