//! Entity references as feeds use them: XML's five, numeric character references, HTML 4's named
//! ones (feeds write `&nbsp;` and `&eacute;` as if XML had them), and entities the document
//! declares in its DOCTYPE's internal subset.
//!
//! Declared entities are expanded with a bound: the full expansion of each one is measured before
//! any is used, so a billion-laughs document is refused with a reason instead of being expanded.
//! External entities and DTDs (`SYSTEM`, `PUBLIC`) are never fetched: a reference to one stays
//! undefined.

use super::html_entities::HTML_ENTITIES;
use std::collections::HashMap;

/// The most characters one declared entity may expand to, and all references of a document
/// together. Real feeds declare a prefix or a name; a document past this is an attack.
pub const MAX_EXPANSION: usize = 64 * 1024;
/// The most entities a DOCTYPE may declare.
pub const MAX_DECLARED: usize = 256;

/// Entities declared by one document, with what each expands to (already fully expanded).
#[derive(Debug, Default)]
pub struct Declared {
    values: HashMap<String, String>,
    /// Characters expanded so far in this document, against [`MAX_EXPANSION`].
    spent: usize,
}

/// What a reference stands for.
pub enum Resolved<'a> {
    Char(char),
    Text(&'a str),
}

impl Declared {
    /// Reads the `<!ENTITY name "value">` declarations of a DOCTYPE's content (the text between
    /// `<!DOCTYPE` and its closing `>`), and expands each one up front.
    pub fn from_doctype(doctype: &str) -> Result<Self, String> {
        let (order, raw) = declarations(doctype)?;
        let mut values = HashMap::with_capacity(raw.len());
        // In document order, so that what is reported does not depend on hashing.
        for name in &order {
            let mut stack = Vec::new();
            expand(name, &raw, &mut stack, &mut values)?;
        }
        Ok(Self { values, spent: 0 })
    }

    /// Resolves `name` (the text between `&` and `;`). `None`: not an entity anybody defined.
    /// An `Err` when the document's references together pass [`MAX_EXPANSION`].
    pub fn resolve(&mut self, name: &str) -> Result<Option<Resolved<'_>>, String> {
        if let Some(c) = predefined(name) {
            return Ok(Some(Resolved::Char(c)));
        }
        if let Some(value) = self.values.get(name) {
            self.spent = self.spent.saturating_add(value.len());
            if self.spent > MAX_EXPANSION {
                return Err(format!(
                    "refused: references to entities declared in the DOCTYPE expand to more than \
                     {MAX_EXPANSION} characters"
                ));
            }
            return Ok(Some(Resolved::Text(value)));
        }
        Ok(None)
    }
}

/// XML's five, numeric references and HTML 4's names.
pub fn predefined(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => numeric(name).or_else(|| html(name)),
    }
}

fn numeric(name: &str) -> Option<char> {
    let digits = name.strip_prefix('#')?;
    let code = match digits.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u32>().ok()?,
    };
    // Windows-1252's C1 range, which feeds written on Windows send as &#150; and the like: the
    // characters they meant (what browsers do too).
    let code = match code {
        0x80..=0x9f => windows_1252_c1(code),
        _ => code,
    };
    char::from_u32(code).filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

fn windows_1252_c1(code: u32) -> u32 {
    const TABLE: [u32; 32] = [
        0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039,
        0x152, 0x8d, 0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
        0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
    ];
    TABLE[(code - 0x80) as usize]
}

fn html(name: &str) -> Option<char> {
    HTML_ENTITIES
        .binary_search_by(|(candidate, _)| candidate.cmp(&name))
        .ok()
        .map(|index| HTML_ENTITIES[index].1)
}

/// The internal subset's general entity declarations, in document order and as name → literal
/// value (unexpanded). Parameter entities and external entities are skipped: nothing outside the
/// document is read.
#[allow(clippy::type_complexity)]
fn declarations(doctype: &str) -> Result<(Vec<String>, HashMap<String, String>), String> {
    let mut found = HashMap::new();
    let mut order = Vec::new();
    let mut rest = doctype;
    while let Some(at) = rest.find("<!ENTITY") {
        rest = rest[at + "<!ENTITY".len()..].trim_start();
        let parameter = rest.starts_with('%');
        if parameter {
            rest = rest[1..].trim_start();
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
            // SYSTEM / PUBLIC: an external entity, never fetched.
            continue;
        };
        let Some(close) = rest[1..].find(quote) else {
            return Err(format!(
                "the DOCTYPE's entity {name:?} has an unclosed value"
            ));
        };
        let value = &rest[1..1 + close];
        rest = &rest[1 + close + 1..];
        if parameter || name.is_empty() {
            continue;
        }
        if found.len() == MAX_DECLARED {
            return Err(format!(
                "refused: the DOCTYPE declares more than {MAX_DECLARED} entities"
            ));
        }
        // The first declaration is binding (XML 1.0 §4.2).
        if !found.contains_key(name) {
            order.push(name.to_string());
            found.insert(name.to_string(), value.to_string());
        }
    }
    Ok((order, found))
}

/// `name`'s full expansion, refusing cycles and results longer than
/// [`MAX_EXPANSION`] as soon as they are seen. Each entity is expanded once (`done`), so entities
/// that each refer to the next many times cost their length, not the product of their counts.
fn expand(
    name: &str,
    raw: &HashMap<String, String>,
    stack: &mut Vec<String>,
    done: &mut HashMap<String, String>,
) -> Result<String, String> {
    if let Some(value) = done.get(name) {
        return Ok(value.clone());
    }
    if stack.iter().any(|open| open == name) {
        return Err(format!(
            "refused: the DOCTYPE's entity {name:?} refers to itself"
        ));
    }
    let Some(value) = raw.get(name) else {
        return Ok(format!("&{name};"));
    };
    stack.push(name.to_string());
    let mut out = String::with_capacity(value.len());
    let mut rest = value.as_str();
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match after.find(';') {
            Some(end) if is_name(&after[..end]) => {
                let reference = &after[..end];
                match predefined(reference) {
                    Some(c) => out.push(c),
                    None => out.push_str(&expand(reference, raw, stack, done)?),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
        if out.len() > MAX_EXPANSION {
            return Err(too_long(&stack[0]));
        }
    }
    out.push_str(rest);
    stack.pop();
    if out.len() > MAX_EXPANSION {
        return Err(too_long(name));
    }
    if raw.contains_key(name) {
        done.insert(name.to_string(), out.clone());
    }
    Ok(out)
}

fn too_long(name: &str) -> String {
    format!(
        "refused: the DOCTYPE's entity {name:?} expands to more than {MAX_EXPANSION} characters \
         (an entity-expansion attack)"
    )
}

/// Whether `text` can be an entity reference's name (or a numeric reference).
pub fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '#' | '_' | '-' | '.' | ':'))
}

/// Unescapes `raw` (an attribute value or a text run): references resolved as in
/// [`Declared::resolve`]; an `&` that starts no known reference stays as it is.
pub fn unescape(raw: &str, declared: &mut Declared) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let reference = after.find(';').map(|end| &after[..end]);
        match reference.filter(|name| is_name(name)) {
            Some(name) => match declared.resolve(name)? {
                Some(Resolved::Char(c)) => out.push(c),
                Some(Resolved::Text(text)) => out.push_str(text),
                None => {
                    out.push('&');
                    out.push_str(name);
                    out.push(';');
                }
            },
            None => {
                out.push('&');
                rest = after;
                continue;
            }
        }
        rest = &after[reference.map_or(0, str::len) + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_numeric_and_html_entities() {
        for (name, expected) in [
            ("amp", '&'),
            ("lt", '<'),
            ("apos", '\''),
            ("#233", 'é'),
            ("#xE9", 'é'),
            ("#X3042", 'あ'),
            ("eacute", 'é'),
            ("nbsp", '\u{a0}'),
            ("hellip", '…'),
            ("mdash", '—'),
            ("#150", '–'),
        ] {
            assert_eq!(predefined(name), Some(expected), "{name}");
        }
        for unknown in ["#0", "#xD800", "#1114112", "bogus", "#", "#x", "#1"] {
            assert_eq!(predefined(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn declared_entities_expand_including_nested_ones() {
        let mut declared = Declared::from_doctype(
            r#"rss [ <!ENTITY base "tag:example.com,"> <!ENTITY id '&base;2024:&amp;1'>
                     <!ENTITY % param "ignored"> <!ENTITY ext SYSTEM "http://evil.example/x"> ]"#,
        )
        .unwrap();
        assert_eq!(
            unescape("&id; &ext; &param; & x", &mut declared).unwrap(),
            "tag:example.com,2024:&1 &ext; &param; & x"
        );
    }

    #[test]
    fn a_billion_laughs_is_refused_before_anything_expands() {
        let mut doctype = String::from("lolz [ <!ENTITY lol \"lol\">");
        for level in 1..=9 {
            let previous = if level == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", level - 1)
            };
            doctype.push_str(&format!(
                "<!ENTITY lol{level} \"{}\">",
                format!("&{previous};").repeat(10)
            ));
        }
        doctype.push(']');
        let err = Declared::from_doctype(&doctype).unwrap_err();
        assert!(err.starts_with("refused: "), "{err}");
        assert!(err.contains("expands to more than 65536"), "{err}");
    }

    #[test]
    fn cycles_and_many_references_are_refused_and_chains_cost_their_length() {
        let err = Declared::from_doctype(r#"x [<!ENTITY a "&b;"><!ENTITY b "&a;">]"#).unwrap_err();
        assert!(err.contains("refers to itself"), "{err}");
        let mut chain = String::from("x [<!ENTITY e0 \"x\">");
        for level in 1..=10 {
            chain.push_str(&format!("<!ENTITY e{level} \"&e{};\">", level - 1));
        }
        chain.push(']');
        let mut declared = Declared::from_doctype(&chain).unwrap();
        assert_eq!(unescape("&e10;", &mut declared).unwrap(), "x");
        // Eight levels of ten references each to an empty entity: 10^8 references if expanded
        // naively, eight expansions here.
        let mut wide = String::from("x [<!ENTITY w0 \"\">");
        for level in 1..=8 {
            wide.push_str(&format!(
                "<!ENTITY w{level} \"{}\">",
                format!("&w{};", level - 1).repeat(10)
            ));
        }
        wide.push(']');
        let mut declared = Declared::from_doctype(&wide).unwrap();
        assert_eq!(unescape("[&w8;]", &mut declared).unwrap(), "[]");
        // Each reference is small; together they pass the document's bound.
        let mut declared =
            Declared::from_doctype(&format!("x [<!ENTITY k \"{}\">]", "k".repeat(1000))).unwrap();
        let text = "&k;".repeat(100);
        let err = unescape(&text, &mut declared).unwrap_err();
        assert!(err.contains("more than 65536"), "{err}");
        let many: String = (0..=MAX_DECLARED)
            .map(|n| format!("<!ENTITY n{n} \"v\">"))
            .collect();
        let err = Declared::from_doctype(&many).unwrap_err();
        assert!(err.contains("more than 256 entities"), "{err}");
    }
}
