//! Bytes to text: which encoding a feed is in, and the bytes no XML may hold taken out.
//!
//! The HTTP `charset` wins over the XML declaration, which wins over a byte-order mark, which
//! wins over the UTF-8 default — except that a declaration or charset naming an ASCII-based
//! encoding cannot describe a document whose bytes are evidently UTF-16 (and the reverse): there
//! the bytes' family decides. Labels are WHATWG's (encoding_rs), so `Shift_JIS`, `EUC-JP`,
//! `ISO-2022-JP`, `ISO-8859-x` and `windows-125x` all read; an unknown label is skipped with a
//! warning.

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE};
use std::borrow::Cow;

/// The decoded document and what was noticed on the way (for the log).
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    pub warnings: Vec<String>,
}

/// The `charset` parameter of a `Content-Type` header value.
pub fn charset_of(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(['"', '\'']))
            .filter(|value| !value.is_empty())
    })
}

/// Decodes `body` by the rules above. Malformed sequences become U+FFFD (counted in a warning);
/// characters XML forbids (C0 controls but tab, newline and return; U+FFFE, U+FFFF) are dropped.
pub fn decode<'a>(body: &'a [u8], http_charset: Option<&str>) -> Decoded<'a> {
    let mut warnings = Vec::new();
    let (bom, bom_length) = match Encoding::for_bom(body) {
        Some((encoding, length)) => (Some(encoding), length),
        None => (None, 0),
    };
    let utf16_family = bom
        .filter(|e| is_utf16(e))
        .or_else(|| utf16_by_pattern(body));
    let fits = |encoding: &'static Encoding| is_utf16(encoding) == utf16_family.is_some();

    let mut chosen = None;
    if let Some(label) = http_charset {
        match Encoding::for_label(label.as_bytes()) {
            Some(encoding) if fits(encoding) => chosen = Some(encoding),
            Some(encoding) => warnings.push(format!(
                "the HTTP charset {label:?} cannot describe this document's bytes; read as {}",
                utf16_family.unwrap_or(encoding).name()
            )),
            None => warnings.push(format!("unknown HTTP charset {label:?} skipped")),
        }
    }
    if chosen.is_none()
        && let Some(label) = declared_encoding(&body[bom_length..], utf16_family)
    {
        match Encoding::for_label(label.as_bytes()) {
            Some(encoding) if fits(encoding) => chosen = Some(encoding),
            // `encoding="UTF-16"` read through UTF-16 bytes: the BOM or pattern says which.
            Some(_) => {}
            None => warnings.push(format!("unknown declared encoding {label:?} skipped")),
        }
    }
    let encoding = chosen.or(utf16_family).or(bom).unwrap_or(UTF_8);
    // UTF-16 as a declaration names it means "whichever endianness the bytes are in".
    let encoding = match (utf16_family, is_utf16(encoding)) {
        (Some(family), true) => family,
        _ => encoding,
    };
    let bytes = match bom {
        Some(bom_encoding) if bom_encoding == encoding => &body[bom_length..],
        _ => body,
    };
    let (text, malformed) = encoding.decode_without_bom_handling(bytes);
    if malformed {
        warnings.push(format!(
            "bytes that are not {} were replaced by U+FFFD",
            encoding.name()
        ));
    }
    let text = strip_forbidden(text, &mut warnings);
    Decoded { text, warnings }
}

fn is_utf16(encoding: &'static Encoding) -> bool {
    encoding == UTF_16LE || encoding == UTF_16BE
}

/// `<?` or `<` + letter in UTF-16 without a BOM: `3C 00 3F 00` (LE) or `00 3C 00 3F` (BE).
fn utf16_by_pattern(body: &[u8]) -> Option<&'static Encoding> {
    match body {
        [0x3c, 0, second, 0, ..] if *second != 0 => Some(UTF_16LE),
        [0, 0x3c, 0, second, ..] if *second != 0 => Some(UTF_16BE),
        _ => None,
    }
}

/// The `encoding` pseudo-attribute of an XML declaration at the start of `body`, read in the
/// byte family the document is in.
fn declared_encoding(body: &[u8], utf16: Option<&'static Encoding>) -> Option<String> {
    let head: String = match utf16 {
        Some(encoding) => {
            let end = body.len().min(512);
            encoding
                .decode_without_bom_handling(&body[..end - end % 2])
                .0
                .into_owned()
        }
        None => String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned(),
    };
    let head = head.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let declaration = &head[..head.strip_prefix("<?xml")?.find("?>")? + 5];
    let at = declaration.find("encoding")?;
    let rest = declaration[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].trim().to_string())
}

fn forbidden(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
}

fn strip_forbidden<'a>(text: Cow<'a, str>, warnings: &mut Vec<String>) -> Cow<'a, str> {
    let bytes_forbidden = text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xef);
    if !bytes_forbidden || !text.chars().any(forbidden) {
        return text;
    }
    let count = text.chars().filter(|c| forbidden(*c)).count();
    warnings.push(format!(
        "{count} control character(s) XML does not allow were dropped"
    ));
    Cow::Owned(text.chars().filter(|c| !forbidden(*c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xff, 0xfe] } else { Vec::new() };
        for unit in text.encode_utf16() {
            out.extend_from_slice(&unit.to_le_bytes());
        }
        out
    }

    #[test]
    fn the_http_charset_wins_over_the_declaration_which_wins_over_the_default() {
        let body = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>\xe9</a>";
        assert_eq!(
            decode(body, None).text,
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>é</a>"
        );
        let shift_jis = b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a>\x82\xa0</a>";
        assert!(decode(shift_jis, None).text.ends_with("<a>あ</a>"));
        // The server says windows-1251: the declaration is overruled.
        let decoded = decode(body, Some("windows-1251"));
        assert!(decoded.text.ends_with("<a>й</a>"), "{}", decoded.text);
        assert_eq!(charset_of("text/xml; Charset=\"EUC-JP\""), Some("EUC-JP"));
        assert_eq!(charset_of("application/rss+xml"), None);
    }

    #[test]
    fn utf16_is_found_by_its_bom_or_its_pattern_whatever_the_labels_say() {
        let text = "<?xml version=\"1.0\" encoding=\"utf-8\"?><a>é</a>";
        for body in [utf16le(text, true), utf16le(text, false)] {
            let decoded = decode(&body, Some("utf-8"));
            assert_eq!(decoded.text, text);
            assert_eq!(decoded.warnings.len(), 1, "{:?}", decoded.warnings);
        }
    }

    #[test]
    fn unknown_labels_are_skipped_and_forbidden_characters_dropped() {
        let decoded = decode(
            b"<?xml version='1.0' encoding='x-bogus'?><a>b\x01c\x0bd</a>",
            Some("nope"),
        );
        assert!(decoded.text.ends_with("<a>bcd</a>"));
        assert_eq!(decoded.warnings.len(), 3, "{:?}", decoded.warnings);
        let decoded = decode(b"<a>\xff</a>", None);
        assert_eq!(decoded.text, "<a>\u{fffd}</a>");
    }
}
