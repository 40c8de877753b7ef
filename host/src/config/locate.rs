//! Maps between positions in a TOML file and dotted field paths, so every config error can
//! name `file:line:column` and the field.

use super::ConfigError;
use std::path::Path;

/// One TOML source, indexed by line, with the table each line belongs to.
pub struct SourceLocator {
    file: String,
    /// (dotted path of the key or table header on that line, column of its first character)
    lines: Vec<Option<(String, usize)>>,
    line_starts: Vec<usize>,
}

impl SourceLocator {
    pub fn new(path: &Path, text: &str) -> Self {
        let mut lines = Vec::new();
        let mut line_starts = Vec::new();
        let mut table = String::new();
        // `[[a.b]]` opens element 0, 1, … of array `a.b`; paths name it `a.b[i]`.
        let mut array_lengths: std::collections::HashMap<String, usize> = Default::default();
        let mut offset = 0;
        for raw in text.split_inclusive('\n') {
            line_starts.push(offset);
            offset += raw.len();
            let indent = raw.len() - raw.trim_start().len();
            let line = raw.trim();
            if let Some(header) = table_header(line) {
                table = if line.starts_with("[[") {
                    let length = array_lengths.entry(header.clone()).or_default();
                    *length += 1;
                    format!("{header}[{}]", *length - 1)
                } else {
                    header
                };
                lines.push(Some((table.clone(), indent + 1)));
            } else if let Some(key) = key_of(line) {
                let full = if table.is_empty() {
                    key
                } else {
                    format!("{table}.{key}")
                };
                lines.push(Some((full, indent + 1)));
            } else {
                lines.push(None);
            }
        }
        Self {
            file: path.display().to_string(),
            lines,
            line_starts,
        }
    }

    /// Converts a TOML parse/deserialize error, naming the field at the error's position.
    pub fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let (line, column) = match error.span() {
            Some(span) => self.position(span.start),
            None => (0, 0),
        };
        let field = line
            .checked_sub(1)
            .and_then(|index| self.lines.get(index))
            .and_then(|entry| entry.as_ref().map(|(path, _)| path.clone()))
            .unwrap_or_else(|| "(document)".to_string());
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            field,
            message: error.message().trim().to_string(),
        }
    }

    /// An error for a dotted field path, located at the key that sets it, or else at the
    /// nearest enclosing table header.
    pub fn field_error(&self, field: &str, message: &str) -> ConfigError {
        let wanted = field;
        let mut best: Option<(usize, usize, usize)> = None; // (matched length, line, column)
        for (index, entry) in self.lines.iter().enumerate() {
            let Some((path, column)) = entry else {
                continue;
            };
            let matches = wanted == path
                || wanted
                    .strip_prefix(path.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
            if matches && best.is_none_or(|(len, _, _)| path.len() > len) {
                best = Some((path.len(), index + 1, *column));
            }
        }
        let (line, column) = best.map_or((0, 0), |(_, line, column)| (line, column));
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    fn position(&self, byte: usize) -> (usize, usize) {
        let index = match self.line_starts.binary_search(&byte) {
            Ok(exact) => exact,
            Err(next) => next.saturating_sub(1),
        };
        let start = self.line_starts.get(index).copied().unwrap_or(0);
        (index + 1, byte - start + 1)
    }
}

fn table_header(line: &str) -> Option<String> {
    let inner = line
        .strip_prefix("[[")
        .and_then(|rest| rest.split("]]").next())
        .or_else(|| {
            line.strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
        })?;
    Some(normalise_key(inner))
}

fn key_of(line: &str) -> Option<String> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    let key = normalise_key(key);
    (!key.is_empty()).then_some(key)
}

fn normalise_key(key: &str) -> String {
    key.split('.')
        .map(|part| part.trim().trim_matches('"').trim_matches('\''))
        .collect::<Vec<_>>()
        .join(".")
}
