//! A corpus of malformed and edge-case feed documents, and a server that serves it.
//!
//! [`malformed_corpus`] derives documents from seed feeds (the reader's fixture files) by
//! deterministic mutations — cuts, flipped and inserted bytes, deleted and repeated ranges,
//! swapped halves, deep nesting, entity bombs, floods of empty items, wrong charset labels,
//! JSON of the wrong shape — so that the same seeds always give the same corpus and a failure
//! names a document that can be regenerated. [`CorpusServer`] answers `GET /corpus/{n}` with
//! document `n` and the `Content-Type` it was given (a mislabelled charset is one of the
//! mutations).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::task::JoinHandle;

/// One served document.
#[derive(Debug, Clone)]
pub struct CorpusDocument {
    /// What it was made from and how: `seed-name/mutation#n`.
    pub origin: String,
    /// The index of its seed.
    pub seed: usize,
    pub mutation: &'static str,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A seed: a feed file's name (for [`CorpusDocument::origin`]) and bytes.
#[derive(Debug, Clone)]
pub struct Seed {
    pub name: String,
    pub body: Vec<u8>,
}

/// The mutations, in the order [`malformed_corpus`] applies them to each seed.
pub const MUTATIONS: [&str; 14] = [
    "cut",
    "flipped-bytes",
    "inserted-bytes",
    "deleted-range",
    "repeated-range",
    "swapped-halves",
    "deep-nesting",
    "entity-bomb",
    "item-flood",
    "wrong-charset",
    "markup-noise",
    "long-text",
    "cut-and-noise",
    "json-shape",
];

/// No document grows beyond this: big enough to hit the reader's caps, small enough that a
/// corpus of thousands stays in memory.
const MAX_DOCUMENT: usize = 256 * 1024;

/// `count` documents from `seeds`: seed `i % seeds.len()` under mutation
/// `(i / seeds.len()) % MUTATIONS.len()`, each with its own deterministic randomness.
pub fn malformed_corpus(seeds: &[Seed], count: usize) -> Vec<CorpusDocument> {
    if seeds.is_empty() {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            let seed_index = i % seeds.len();
            let seed = &seeds[seed_index];
            let mutation = (i / seeds.len()) % MUTATIONS.len();
            let mut random = Random::new(i as u64);
            let (content_type, mut body) = mutate(mutation, seed, &mut random);
            body.truncate(MAX_DOCUMENT);
            CorpusDocument {
                origin: format!("{}/{}#{i}", seed.name, MUTATIONS[mutation]),
                seed: seed_index,
                mutation: MUTATIONS[mutation],
                content_type,
                body,
            }
        })
        .collect()
}

/// Every file under `dir` (recursively), in path order, named by its path below `dir`.
pub fn seeds_from_dir(dir: &std::path::Path) -> std::io::Result<Vec<Seed>> {
    fn walk(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, into)?;
            } else {
                into.push(path);
            }
        }
        Ok(())
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            Ok(Seed {
                name,
                body: std::fs::read(&path)?,
            })
        })
        .collect()
}

/// The content type a seed's file name suggests.
fn content_type_of(name: &str) -> &'static str {
    if name.ends_with(".json") {
        "application/feed+json"
    } else if name.ends_with(".atom") {
        "application/atom+xml"
    } else if name.ends_with(".html") {
        "text/html"
    } else {
        "application/rss+xml"
    }
}

fn mutate(mutation: usize, seed: &Seed, random: &mut Random) -> (Option<String>, Vec<u8>) {
    let mut body = seed.body.clone();
    let mut content_type = Some(content_type_of(&seed.name).to_string());
    let len = body.len().max(1);
    match MUTATIONS[mutation] {
        "cut" => body.truncate(random.below(len)),
        "flipped-bytes" => {
            for _ in 0..1 + random.below(8) {
                if !body.is_empty() {
                    let at = random.below(body.len());
                    body[at] ^= 1 << random.below(8);
                }
            }
        }
        "inserted-bytes" => {
            const NASTY: &[&[u8]] = &[
                b"\0",
                b"\xff\xfe",
                b"&",
                b"<",
                b"]]>",
                b"\x1b",
                b"&#0;",
                b"&#xD800;",
                b"&bogus;",
                b"<!--",
                b"<![CDATA[",
                b"\xc3",
                b"\xe2\x80",
                b"\"",
                b"<?xml version='1.0'?>",
            ];
            insert_pieces(&mut body, NASTY, 1 + random.below(6), random);
        }
        "deleted-range" => {
            let start = random.below(len);
            let end = (start + 1 + random.below(len / 4 + 1)).min(body.len());
            if start < end {
                body.drain(start..end);
            }
        }
        "repeated-range" => {
            let start = random.below(len);
            let end = (start + 1 + random.below(256)).min(body.len());
            if start < end {
                let range = body[start..end].to_vec();
                let times = 1 + random.below(MAX_DOCUMENT / range.len().max(1)).min(2_000);
                let repeated: Vec<u8> = range
                    .iter()
                    .copied()
                    .cycle()
                    .take(range.len() * times)
                    .collect();
                body.splice(end..end, repeated);
            }
        }
        "swapped-halves" => {
            let at = random.below(len).min(body.len());
            body.rotate_left(at);
        }
        "deep-nesting" => {
            let depth = 100 + random.below(20_000);
            let at = after_first_tag(&body, random);
            let open: Vec<u8> = b"<div>".repeat(depth);
            let close: Vec<u8> = if random.below(2) == 0 {
                b"</div>".repeat(depth)
            } else {
                Vec::new()
            };
            body.splice(at..at, open.into_iter().chain(close));
        }
        "entity-bomb" => {
            let doctype: &[u8] = match random.below(4) {
                0 => b"<!DOCTYPE rss [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">]>",
                1 => b"<!DOCTYPE rss [<!ENTITY x \"&y;\"><!ENTITY y \"&x;\">]>",
                2 => b"<!DOCTYPE rss SYSTEM \"http://127.0.0.1:9/evil.dtd\" [<!ENTITY ext SYSTEM \"file:///etc/passwd\"><!ENTITY % p SYSTEM \"http://127.0.0.1:9/p\"> %p;]>",
                _ => b"<!DOCTYPE rss [<!ENTITY",
            };
            let at = after_declaration(&body);
            body.splice(at..at, doctype.iter().copied());
            let uses: &[u8] = b"&f;&x;&ext;&e;";
            let at = after_first_tag(&body, random);
            body.splice(at..at, uses.iter().copied());
        }
        "item-flood" => {
            let items = 1_000 + random.below(40_000);
            let at = after_first_tag(&body, random);
            let flood: &[u8] = if random.below(2) == 0 {
                b"<item/>"
            } else {
                b"<entry></entry>"
            };
            body.splice(at..at, flood.repeat(items));
        }
        "wrong-charset" => {
            const LABELS: &[&str] = &[
                "utf-16",
                "utf-16be",
                "shift_jis",
                "euc-jp",
                "iso-2022-jp",
                "windows-1252",
                "x-unknown-charset",
                "utf-7",
                "replacement",
                "gb18030",
                "",
            ];
            let label = LABELS[random.below(LABELS.len())];
            content_type = Some(format!("application/xml; charset={label}"));
            if random.below(2) == 0 {
                // An odd length as well, for the UTF-16 decoders.
                let cut = 1 + random.below(2);
                body.truncate(body.len().saturating_sub(cut));
            }
        }
        "markup-noise" => {
            const NOISE: &[&[u8]] = &[
                b"</channel>",
                b"</rss>",
                b"<item>",
                b"</item>",
                b"<entry>",
                b"</feed>",
                b"<link>",
                b"<guid isPermaLink=\"true\">",
                b"<a b=\"c",
                b"<",
                b">",
                b"</",
                b"<x:y xmlns:x=\"\">",
                b"xml:base=\"::::\"",
                b"<content type=\"xhtml\">",
            ];
            insert_pieces(&mut body, NOISE, 1 + random.below(24), random);
        }
        "long-text" => {
            let at = after_first_tag(&body, random);
            let text = match random.below(3) {
                0 => b"<title>"
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(b'x', 200_000))
                    .collect::<Vec<u8>>(),
                1 => b"<item a=\""
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(b'y', 200_000))
                    .collect(),
                _ => b"&amp;".repeat(40_000),
            };
            body.splice(at..at, text);
        }
        "cut-and-noise" => {
            body.truncate(random.below(len));
            for _ in 0..random.below(64) {
                body.push(random.below(256) as u8);
            }
        }
        _ => {
            // JSON of the wrong shape: a feed's keys with values of the wrong type, or a
            // document that is JSON but no feed.
            const SHAPES: &[&str] = &[
                r#"{"version":"https://jsonfeed.org/version/1.1","items":{"id":1}}"#,
                r#"{"version":"https://jsonfeed.org/version/1.1","items":[1,"two",null,[],{"id":{}}]}"#,
                r#"{"version":"https://jsonfeed.org/version/1","items":[{"id":"a","url":7,"title":["x"],"date_published":"never","authors":"me","tags":{"a":1}}]}"#,
                r#"{"error":"rate limited","code":429}"#,
                r#"[]"#,
                r#"{"items":[{"id":"x","content_html":"#,
                r#"{"version":"https://jsonfeed.org/version/1.1","items":[{"id":"1e400","attachments":[{"url":{}}],"_ext":1}]}"#,
            ];
            let shape = SHAPES[random.below(SHAPES.len())];
            if random.below(3) == 0 {
                // Deeply nested arrays.
                let depth = 1 + random.below(100_000);
                body = b"[".repeat(depth);
            } else {
                body = shape.as_bytes().to_vec();
            }
            content_type = Some("application/feed+json".into());
        }
    }
    (content_type, body)
}

/// Inserts `count` pieces, each picked from `pieces`, at random places.
fn insert_pieces(body: &mut Vec<u8>, pieces: &[&[u8]], count: usize, random: &mut Random) {
    for _ in 0..count {
        let at = random.below(body.len() + 1);
        let piece = pieces[random.below(pieces.len())];
        body.splice(at..at, piece.iter().copied());
    }
}

/// Where the XML declaration ends (0 if there is none).
fn after_declaration(body: &[u8]) -> usize {
    if body.starts_with(b"<?xml") {
        body.windows(2)
            .position(|w| w == b"?>")
            .map_or(0, |at| at + 2)
    } else {
        0
    }
}

/// Just after the root element's start tag, or anywhere if there is none to be found.
fn after_first_tag(body: &[u8], random: &mut Random) -> usize {
    let from = after_declaration(body);
    let tag = body[from..]
        .iter()
        .position(|b| *b == b'<')
        .and_then(|start| {
            body[from + start..]
                .iter()
                .position(|b| *b == b'>')
                .map(|end| from + start + end + 1)
        });
    tag.unwrap_or_else(|| random.below(body.len() + 1))
}

/// xorshift64*, seeded per document: the corpus depends only on the seeds and the count.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d | 1)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        if bound == 0 {
            0
        } else {
            (value % bound as u64) as usize
        }
    }
}

/// Serves a corpus on 127.0.0.1: `GET /corpus/{n}` answers document `n`, 404 otherwise.
pub struct CorpusServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

struct Shared {
    documents: Vec<CorpusDocument>,
    requests: AtomicU64,
}

impl CorpusServer {
    pub async fn start(documents: Vec<CorpusDocument>) -> anyhow::Result<CorpusServer> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            documents,
            requests: AtomicU64::new(0),
        });
        let answering = Arc::clone(&shared);
        let task = tokio::spawn(crate::accept::serve_each(listener, move |request| {
            let shared = Arc::clone(&answering);
            async move { answer(&shared, &request) }
        }));
        Ok(CorpusServer { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of document `n`.
    pub fn url(&self, n: usize) -> String {
        format!("http://{}/corpus/{n}", self.addr)
    }

    pub fn documents(&self) -> &[CorpusDocument] {
        &self.shared.documents
    }

    /// Requests answered so far (any path).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    pub fn shutdown(self) {
        self.task.abort();
    }
}

fn answer(shared: &Shared, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let document = request
        .uri()
        .path()
        .strip_prefix("/corpus/")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| shared.documents.get(n));
    let Some(document) = document else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let mut response = Response::new(Full::new(Bytes::from(document.body.clone())));
    if let Some(value) = document
        .content_type
        .as_deref()
        .and_then(|value| HeaderValue::from_str(value).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
