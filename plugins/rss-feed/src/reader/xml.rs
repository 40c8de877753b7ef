//! A forgiving XML reader (on quick-xml) that turns a feed document into a small element tree:
//! namespaces resolved to the vocabularies feeds use (with the usual prefixes standing in when a
//! feed forgets to declare them), `xml:base` resolved on every element, entities expanded as
//! [`super::entities`] allows, and the byte span of every element's content kept so that XHTML
//! content can be handed on as it was written.
//!
//! What real servers get wrong is read as far as it can be, with a warning: an unescaped `&`, an
//! undefined entity (kept as written), end tags that close the wrong element, a document cut off
//! in the middle. Depth and element count are capped, since the document is the upstream's.

use super::entities::{self, Declared, Resolved};
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use std::ops::Range;
use std::rc::Rc;

/// The most elements kept from one document, and how deep they may nest.
pub const MAX_ELEMENTS: usize = 200_000;
pub const MAX_DEPTH: usize = 128;

/// The vocabularies a feed reader cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// No namespace: RSS 0.91–2.0, or an undeclared prefix nobody knows.
    None,
    Atom,
    Atom03,
    Rss10,
    Rss090,
    Rdf,
    Dc,
    Dcterms,
    Content,
    Itunes,
    Media,
    Xhtml,
    Xml,
    Other,
}

impl Ns {
    fn from_uri(uri: &str) -> Self {
        let uri = uri.trim();
        match uri.trim_end_matches('/') {
            "http://www.w3.org/2005/Atom" => Ns::Atom,
            "http://purl.org/atom/ns#" => Ns::Atom03,
            "http://purl.org/rss/1.0" => Ns::Rss10,
            "http://my.netscape.com/rdf/simple/0.9" => Ns::Rss090,
            "http://www.w3.org/1999/02/22-rdf-syntax-ns#" => Ns::Rdf,
            "http://purl.org/dc/elements/1.1" | "http://purl.org/dc/elements/1.0" => Ns::Dc,
            "http://purl.org/dc/terms" => Ns::Dcterms,
            "http://purl.org/rss/1.0/modules/content" => Ns::Content,
            "http://www.itunes.com/dtds/podcast-1.0.dtd"
            | "http://www.itunes.com/DTDs/Podcast-1.0.dtd" => Ns::Itunes,
            "http://search.yahoo.com/mrss" | "http://video.search.yahoo.com/mrss" => Ns::Media,
            "http://www.w3.org/1999/xhtml" => Ns::Xhtml,
            "http://www.w3.org/XML/1998/namespace" => Ns::Xml,
            // UserLand's namespace for RSS 2.0, which some feeds declare as their default.
            "http://backend.userland.com/rss2" | "http://blogs.law.harvard.edu/tech/rss" => {
                Ns::None
            }
            _ => Ns::Other,
        }
    }

    /// What a feed means by a prefix it never declared.
    fn from_prefix(prefix: &str) -> Self {
        match prefix.to_ascii_lowercase().as_str() {
            "atom" | "atom10" => Ns::Atom,
            "dc" => Ns::Dc,
            "dcterms" => Ns::Dcterms,
            "content" => Ns::Content,
            "itunes" => Ns::Itunes,
            "media" => Ns::Media,
            "rdf" => Ns::Rdf,
            "xhtml" => Ns::Xhtml,
            "xml" => Ns::Xml,
            _ => Ns::Other,
        }
    }

    fn resolve(result: &ResolveResult<'_>) -> Self {
        match result {
            ResolveResult::Unbound => Ns::None,
            ResolveResult::Bound(namespace) => Ns::from_uri(namespace.as_ref()),
            ResolveResult::Unknown(prefix) => Ns::from_prefix(prefix),
        }
    }
}

/// One element.
#[derive(Debug)]
pub struct Node {
    pub ns: Ns,
    pub name: String,
    pub attrs: Vec<Attr>,
    /// The element's own text (character data, CDATA and references, in order), without its
    /// children's.
    pub text: String,
    pub children: Vec<Node>,
    /// The `xml:base` in scope for this element, resolved (shared with the elements inside).
    pub base: Rc<str>,
    /// Where the element's content lies in the decoded document.
    pub inner: Range<usize>,
}

#[derive(Debug)]
pub struct Attr {
    pub ns: Ns,
    pub name: String,
    pub value: String,
}

impl Node {
    pub fn is(&self, ns: Ns, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// An attribute in no namespace.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|attr| attr.ns == Ns::None && attr.name.eq_ignore_ascii_case(name))
            .map(|attr| attr.value.as_str())
    }

    pub fn attr_ns(&self, ns: Ns, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|attr| attr.ns == ns && attr.name == name)
            .map(|attr| attr.value.as_str())
    }

    pub fn child(&self, ns: Ns, name: &str) -> Option<&Node> {
        self.children.iter().find(|child| child.is(ns, name))
    }
}

/// A parsed document: its root element and what was repaired on the way.
pub struct Document {
    pub root: Option<Node>,
    pub warnings: Vec<String>,
    /// The first error the reader could not go past (the tree holds what came before), or the
    /// elements the document ended inside.
    pub stopped: Option<String>,
}

/// Reads `text`, whose relative references resolve against `url`.
pub fn read(text: &str, url: &str) -> Result<Document, String> {
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.allow_dangling_amp = true;
    config.allow_unmatched_ends = true;
    config.check_end_names = false;
    config.expand_empty_elements = false;

    let mut declared = Declared::default();
    let mut warnings = Vec::new();
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    let mut elements = 0usize;
    let mut skipped_depth = 0usize;
    let mut undefined = 0usize;
    let mut stopped = None;

    loop {
        let before = reader.buffer_position() as usize;
        let (resolved, event) = match reader.read_resolved_event() {
            Ok((resolved, event)) => (Ns::resolve(&resolved), event),
            Err(error) => {
                stopped = Some(format!("XML error at byte {before}: {error}"));
                break;
            }
        };
        match event {
            Event::Start(_) | Event::Empty(_) if skipped_depth > 0 || stack.len() >= MAX_DEPTH => {
                if matches!(event, Event::Start(_)) {
                    skipped_depth += 1;
                }
                if stack.len() >= MAX_DEPTH && skipped_depth <= 1 {
                    warnings.push(format!(
                        "elements nested deeper than {MAX_DEPTH} levels skipped"
                    ));
                }
            }
            Event::Start(_) | Event::Empty(_) if elements >= MAX_ELEMENTS => {
                stopped = Some(format!(
                    "the document holds more than {MAX_ELEMENTS} elements"
                ));
                break;
            }
            Event::Start(start) => {
                elements += 1;
                let after = reader.buffer_position() as usize;
                let mut node = open(&reader, resolved, &start, &stack, url, &mut declared)?;
                node.inner = after..after;
                stack.push(node);
            }
            Event::Empty(start) => {
                elements += 1;
                let after = reader.buffer_position() as usize;
                let mut node = open(&reader, resolved, &start, &stack, url, &mut declared)?;
                node.inner = after..after;
                attach(&mut stack, &mut root, node);
            }
            Event::End(end) => {
                if skipped_depth > 0 {
                    skipped_depth -= 1;
                    continue;
                }
                let name = end.local_name();
                let local = name.as_ref();
                // Close up to the element this end tag names; an end tag nothing open matches
                // is ignored.
                match stack.iter().rposition(|open| open.name == local) {
                    Some(index) => {
                        if index + 1 != stack.len() {
                            warnings.push(format!(
                                "</{local}> closed {} element(s) left open inside it",
                                stack.len() - index - 1
                            ));
                        }
                        while stack.len() > index {
                            let mut node = stack.pop().expect("index is within the stack");
                            if node.inner.end == node.inner.start {
                                node.inner.end = before.max(node.inner.start);
                            }
                            attach(&mut stack, &mut root, node);
                        }
                    }
                    None => warnings.push(format!("stray </{local}> ignored")),
                }
            }
            Event::Text(text_event) => {
                if let Some(node) = stack.last_mut()
                    && skipped_depth == 0
                {
                    node.text.push_str(&text_event.xml10_content());
                }
            }
            Event::CData(cdata) => {
                if let Some(node) = stack.last_mut()
                    && skipped_depth == 0
                {
                    node.text.push_str(&cdata.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let name = reference.xml10_content();
                let Some(node) = stack.last_mut().filter(|_| skipped_depth == 0) else {
                    continue;
                };
                match declared.resolve(&name)? {
                    Some(Resolved::Char(c)) => node.text.push(c),
                    Some(Resolved::Text(value)) => node.text.push_str(value),
                    None => {
                        undefined += 1;
                        node.text.push('&');
                        node.text.push_str(&name);
                        node.text.push(';');
                    }
                }
            }
            Event::DocType(doctype) => {
                let content = doctype.xml10_content();
                if content.contains("<!ENTITY") {
                    declared = Declared::from_doctype(&content)?;
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if undefined > 0 {
        warnings.push(format!(
            "{undefined} reference(s) to undefined entities kept as written"
        ));
    }
    if let Some(reason) = &stopped {
        warnings.push(format!("{reason}; read up to there"));
    }
    if !stack.is_empty() {
        let open: Vec<String> = stack
            .iter()
            .map(|node| format!("<{}>", node.name))
            .collect();
        let reason = format!("the document ends inside {}", open.join(" "));
        warnings.push(format!("{reason}; read up to there"));
        stopped.get_or_insert(reason);
        let end = text.len();
        while let Some(mut node) = stack.pop() {
            if node.inner.end == node.inner.start {
                node.inner.end = end.max(node.inner.start);
            }
            attach(&mut stack, &mut root, node);
        }
    }
    Ok(Document {
        root,
        warnings,
        stopped,
    })
}

fn attach(stack: &mut [Node], root: &mut Option<Node>, node: Node) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => {
            if root.is_none() {
                *root = Some(node);
            }
        }
    }
}

fn open(
    reader: &NsReader<&[u8]>,
    ns: Ns,
    start: &BytesStart<'_>,
    stack: &[Node],
    url: &str,
    declared: &mut Declared,
) -> Result<Node, String> {
    let name = start.local_name().as_ref().to_string();
    let mut attrs = Vec::new();
    let mut base: Rc<str> = stack
        .last()
        .map_or_else(|| Rc::from(url), |parent| parent.base.clone());
    for attr in start.attributes().with_checks(false).flatten() {
        let key = attr.key;
        if key.as_ref().starts_with("xmlns") {
            continue;
        }
        let (resolved, local) = reader.resolver().resolve_attribute(key);
        let attr_ns = match resolved {
            ResolveResult::Unbound => Ns::None,
            other => Ns::resolve(&other),
        };
        let raw = &attr.value;
        let value = entities::unescape(raw, declared)?;
        let local = local.as_ref().to_string();
        if attr_ns == Ns::Xml && local == "base" {
            base = Rc::from(resolve_url(&base, value.trim()));
        }
        attrs.push(Attr {
            ns: attr_ns,
            name: local,
            value,
        });
    }
    Ok(Node {
        ns,
        name,
        attrs,
        text: String::new(),
        children: Vec::new(),
        base,
        inner: 0..0,
    })
}

/// `reference` resolved against `base`; kept as written when it is absolute already or when
/// nothing can be made of it.
pub fn resolve_url(base: &str, reference: &str) -> String {
    if reference.is_empty() {
        return base.to_string();
    }
    if url::Url::parse(reference).is_ok() {
        return reference.to_string();
    }
    match url::Url::parse(base).and_then(|base| base.join(reference)) {
        Ok(joined) => joined.to_string(),
        Err(_) => reference.to_string(),
    }
}
