//! Positions in a TOML file, taken from the toml parser's own spans: every key the file writes
//! is indexed by its dotted path (`connectors.rss.egress.allow[1].host`), however the TOML
//! spells it (table headers, dotted or quoted keys, inline tables, arrays of tables), so each
//! error names `file:line:column` and the field.
//!
//! [`parse_collecting`] deserializes a document and keeps going after an error: the entry at
//! fault is cut from the parsed tree and the rest deserialized again, so one run reports every
//! error of the file (up to [`MAX_ERRORS`]), each where it is written.

use super::ConfigError;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Errors one file reports at most; past this, the list ends with a note.
pub const MAX_ERRORS: usize = 50;

/// How deeply tables and arrays may nest (dotted keys count a level per dot). The toml parser
/// bounds nested brackets but not dotted keys, and walking or dropping a tree a hundred
/// thousand tables deep overflows the stack; real configs need fewer than ten levels.
pub const MAX_DEPTH: usize = 64;

/// One TOML source and where each of its keys is written.
#[derive(Debug, Clone, Default)]
pub struct SourceLocator {
    file: String,
    text: Arc<str>,
    line_starts: Vec<usize>,
    /// Every key and array element, by dotted path.
    written: BTreeMap<String, Written>,
    /// Tables written in other files (drop-in config files), by their dotted path: errors
    /// about them are located there.
    mounts: Vec<(String, Arc<SourceLocator>)>,
}

/// Where one entry is written: its key (for an array element, the element) and its value (for
/// a table opened by a header, the header).
#[derive(Debug, Clone)]
struct Written {
    key: Range<usize>,
    value: Range<usize>,
}

impl SourceLocator {
    /// Indexes `text`; a file that does not parse is indexed as far as the parser recovers.
    pub fn new(path: &Path, text: &str) -> Self {
        if deepest_nesting(text).is_some() {
            return Self::unindexed(path, text);
        }
        let (root, _errors) = DeTable::parse_recoverable(text);
        Self::indexed(path, text, root.get_ref())
    }

    fn unindexed(path: &Path, text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        Self {
            file: path.display().to_string(),
            text: Arc::from(text),
            line_starts,
            written: BTreeMap::new(),
            mounts: Vec::new(),
        }
    }

    /// Locates `prefix` (`connectors.yahoo`) and everything under it in `other`'s file.
    pub fn mount(&mut self, prefix: String, other: Arc<SourceLocator>) {
        self.mounts.push((prefix, other));
    }

    /// The file `field` is written in, when it is another file's.
    fn mounted(&self, field: &str) -> Option<&SourceLocator> {
        self.mounts.iter().find_map(|(prefix, other)| {
            let under = field == prefix
                || field
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']));
            under.then_some(other.as_ref())
        })
    }

    fn indexed(path: &Path, text: &str, root: &DeTable<'_>) -> Self {
        let mut locator = Self::unindexed(path, text);
        index_table("", root, &mut locator.written);
        locator
    }

    /// The file's name as errors show it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Converts a toml parse or deserialize error, naming the field written at its position.
    pub fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let message = one_line(error.message());
        match error.span() {
            Some(span) => {
                let field = self
                    .field_at(span.start)
                    .unwrap_or_else(|| "(document)".to_string());
                self.error_at_byte(span.start, &field, &message)
            }
            None => self.error_at_byte(0, "(document)", &message),
        }
    }

    /// An error for a dotted field path, at the key that sets it, or else at the nearest
    /// enclosing table that is written (the document's start, for the root table).
    pub fn field_error(&self, field: &str, message: &str) -> ConfigError {
        if let Some(other) = self.mounted(field) {
            return other.field_error(field, message);
        }
        let byte = self.position_of(field).unwrap_or(0);
        self.error_at_byte(byte, field, message)
    }

    /// Where `field`'s key is written, or its nearest written parent's.
    fn position_of(&self, field: &str) -> Option<usize> {
        let mut wanted = field;
        loop {
            if let Some(written) = self.written.get(wanted) {
                // A key's start, or a table header's opening bracket.
                return Some(written.key.start.min(written.value.start));
            }
            let cut = wanted.rfind(['.', '['])?;
            wanted = &wanted[..cut];
        }
    }

    /// The path of the most specific entry written at `byte` (its key or its value).
    fn field_at(&self, byte: usize) -> Option<String> {
        self.written
            .iter()
            .filter_map(|(path, written)| {
                [&written.key, &written.value]
                    .into_iter()
                    .filter(|span| covers(span, byte))
                    .map(|span| span.len())
                    .min()
                    .map(|length| (length, std::cmp::Reverse(path.len()), path))
            })
            .min()
            .map(|(_, _, path)| path.clone())
    }

    fn error_at_byte(&self, byte: usize, field: &str, message: &str) -> ConfigError {
        let (line, column) = self.line_column(byte);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            field: printable(field),
            message: printable(message),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, byte: usize) -> (usize, usize) {
        let byte = byte.min(self.text.len());
        let index = match self.line_starts.binary_search(&byte) {
            Ok(exact) => exact,
            Err(next) => next.saturating_sub(1),
        };
        let start = self.line_starts.get(index).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..byte)
            .map_or(byte - start, |before| before.chars().count());
        (index + 1, column + 1)
    }
}

/// The outcome of [`parse_collecting`].
#[derive(Debug)]
pub struct Parsed<T> {
    /// What deserialized once every entry at fault was cut out; `None` after a syntax error.
    pub value: Option<T>,
    pub locator: SourceLocator,
    /// Every error found, in the order of the file; empty when the file is good.
    pub errors: Vec<ConfigError>,
    /// Fields cut out for an error: checks that read them (a reference to a sink, a limit
    /// compared with another) skip them rather than report a second, made-up error.
    pub refused: BTreeSet<String>,
    /// More than [`MAX_ERRORS`] were found; the rest were not looked for.
    pub truncated: bool,
}

/// Parses `text` (named `path` in errors) and deserializes it as a `T`, collecting every
/// syntax error or, when the syntax is good, every field that does not deserialize.
pub fn parse_collecting<T: DeserializeOwned>(path: &Path, text: &str) -> Parsed<T> {
    if let Some((byte, depth)) = deepest_nesting(text) {
        let locator = SourceLocator::unindexed(path, text);
        let error = locator.error_at_byte(
            byte,
            "(document)",
            &format!("nested {depth} levels deep; at most {MAX_DEPTH} are allowed"),
        );
        return Parsed {
            value: None,
            locator,
            errors: vec![error],
            refused: BTreeSet::new(),
            truncated: false,
        };
    }
    let (root, syntax) = DeTable::parse_recoverable(text);
    let locator = SourceLocator::indexed(path, text, root.get_ref());
    if !syntax.is_empty() {
        let truncated = syntax.len() > MAX_ERRORS;
        let errors = syntax
            .iter()
            .take(MAX_ERRORS)
            .map(|error| locator.toml_error(error))
            .collect();
        return Parsed {
            value: None,
            locator,
            errors,
            refused: BTreeSet::new(),
            truncated,
        };
    }
    let mut tree = root.into_inner();
    let mut errors = Vec::new();
    let mut refused = BTreeSet::new();
    let mut value = None;
    let mut truncated = false;
    loop {
        let document = Spanned::new(0..0, tree.clone());
        let error = match T::deserialize(toml::de::Deserializer::from(document)) {
            Ok(deserialized) => {
                value = Some(deserialized);
                break;
            }
            Err(error) => error,
        };
        if errors.len() == MAX_ERRORS {
            truncated = true;
            break;
        }
        let located = locator.toml_error(&error);
        let cut = error
            .span()
            .and_then(|span| deepest_entry(&tree, span.start));
        let Some(mut cut) = cut else {
            // Nowhere to cut: report it and stop, as there is nothing left to learn.
            errors.push(located);
            break;
        };
        // "missing field `plugin`" for a table whose `plugin` was cut: an echo of that cut.
        let echo = missing_field(&located.message)
            .is_some_and(|missing| refused.contains(&join(&located.field, missing)));
        if !echo {
            errors.push(located.clone());
        }
        if matches!(cut.last(), Some(Step::Index(_))) {
            // An element that must go takes its whole array along: removing just it would
            // shift the indices later checks name the other elements by.
            cut.pop();
            if let Some(array) = located.field.rfind('[').map(|at| &located.field[..at]) {
                refused.insert(array.to_string());
            }
        }
        refused.insert(located.field);
        remove_entry(&mut tree, &cut);
    }
    errors.sort_by_key(|error| (error.line, error.column));
    Parsed {
        value,
        locator,
        errors,
        refused,
        truncated,
    }
}

/// The field a serde "missing field `NAME`" message names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// `text` with control characters escaped, so an error is one line whatever its keys hold.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn one_line(message: &str) -> String {
    message
        .trim()
        .split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a span covers a byte (an empty span covers its own start).
fn covers(span: &Range<usize>, byte: usize) -> bool {
    span.contains(&byte) || (span.is_empty() && span.start == byte)
}

fn join(prefix: &str, key: &str) -> String {
    // An empty key (`"" = 1`) is shown quoted, so no field path is empty.
    let key = if key.is_empty() { "\"\"" } else { key };
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn index_table(prefix: &str, table: &DeTable<'_>, out: &mut BTreeMap<String, Written>) {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        out.insert(
            path.clone(),
            Written {
                key: key.span(),
                value: value.span(),
            },
        );
        index_value(&path, value, out);
    }
}

fn index_value(path: &str, value: &Spanned<DeValue<'_>>, out: &mut BTreeMap<String, Written>) {
    match value.get_ref() {
        DeValue::Table(table) => index_table(path, table, out),
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                let element_path = format!("{path}[{index}]");
                out.insert(
                    element_path.clone(),
                    Written {
                        key: element.span(),
                        value: element.span(),
                    },
                );
                index_value(&element_path, element, out);
            }
        }
        _ => {}
    }
}

/// One step from a table or array down to an entry.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The steps to the most specific entry of the tree written at `byte`, as
/// [`SourceLocator::field_at`] picks it.
fn deepest_entry(table: &DeTable<'_>, byte: usize) -> Option<Vec<Step>> {
    let mut best: Option<(usize, usize, Vec<Step>)> = None;
    let mut steps = Vec::new();
    search_table(table, byte, &mut steps, &mut best);
    best.map(|(_, _, steps)| steps)
}

type Best = Option<(usize, usize, Vec<Step>)>;

fn consider(spans: [Range<usize>; 2], byte: usize, steps: &[Step], best: &mut Best) {
    let Some(length) = spans
        .iter()
        .filter(|span| covers(span, byte))
        .map(|span| span.len())
        .min()
    else {
        return;
    };
    let better = best.as_ref().is_none_or(|(best_length, best_depth, _)| {
        length < *best_length || (length == *best_length && steps.len() > *best_depth)
    });
    if better {
        *best = Some((length, steps.len(), steps.to_vec()));
    }
}

fn search_table(table: &DeTable<'_>, byte: usize, steps: &mut Vec<Step>, best: &mut Best) {
    for (key, value) in table.iter() {
        steps.push(Step::Key(key.get_ref().to_string()));
        consider([key.span(), value.span()], byte, steps, best);
        search_value(value, byte, steps, best);
        steps.pop();
    }
}

fn search_value(value: &Spanned<DeValue<'_>>, byte: usize, steps: &mut Vec<Step>, best: &mut Best) {
    match value.get_ref() {
        DeValue::Table(table) => search_table(table, byte, steps, best),
        DeValue::Array(array) => {
            for (index, element) in array.iter().enumerate() {
                steps.push(Step::Index(index));
                consider([element.span(), element.span()], byte, steps, best);
                search_value(element, byte, steps, best);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// Cuts the entry `steps` lead to out of the tree.
fn remove_entry(table: &mut DeTable<'_>, steps: &[Step]) {
    match steps {
        [Step::Key(key)] => {
            table.remove(key.as_str());
        }
        [Step::Key(key), rest @ ..] => {
            if let Some(value) = table.get_mut(key.as_str()) {
                remove_in_value(value.get_mut(), rest);
            }
        }
        _ => {}
    }
}

fn remove_in_value(value: &mut DeValue<'_>, steps: &[Step]) {
    match (value, steps) {
        (DeValue::Table(table), _) => remove_entry(table, steps),
        (DeValue::Array(array), [Step::Index(index), rest @ ..]) => {
            if let Some(element) = array.get_mut(*index) {
                remove_in_value(element.get_mut(), rest);
            }
        }
        _ => {}
    }
}

/// Where the text nests deeper than [`MAX_DEPTH`], and how deep: brackets and braces open a
/// level each, and each dot of a key adds one. Strings and comments are single tokens, so
/// brackets inside them do not count; a float's one dot may count, which only overestimates.
fn deepest_nesting(text: &str) -> Option<(usize, usize)> {
    use toml_parser::lexer::TokenKind;
    let mut open: usize = 0;
    let mut dots: usize = 0;
    for token in toml_parser::Source::new(text).lex() {
        match token.kind() {
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => {
                open += 1;
                dots = 0;
            }
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                open = open.saturating_sub(1);
                dots = 0;
            }
            TokenKind::Dot => dots += 1,
            TokenKind::Equals | TokenKind::Comma | TokenKind::Newline => dots = 0,
            _ => {}
        }
        let depth = open + dots;
        if depth > MAX_DEPTH {
            return Some((token.span().start(), depth));
        }
    }
    None
}
