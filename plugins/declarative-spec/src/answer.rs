//! An upstream's answer → records in the host's schema, or a failure of a kind. The error
//! rules are tried first, in order; then a failure status is judged by its class; then the
//! body must be JSON whose records and fields have the shapes the mapping expects. Every
//! failure names where: the status and the upstream's message, or the record and field
//! (`/hits/3/price (fields.price): expected a whole number, found "1,980円"`).

use crate::check::Role;
use crate::model::ErrorAction;
use crate::{MAX_QUOTED, MAX_RECORDS, Spec};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// How the host should treat a failure (the WIT `error-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Transient,
    Permanent,
    RateLimited,
    BadResponse,
}

/// A failed answer: its kind and a message naming the status or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// One field's value, typed by the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Whole(u64),
    Number(f64),
    Flag(bool),
    List(Vec<String>),
}

/// One record: schema field → value (fields that were absent and optional are left out).
pub type Record = BTreeMap<String, Value>;

/// What an answer held.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub records: Vec<Record>,
    pub total: Option<u64>,
    /// Pollers: the next page's cursor.
    pub next: Option<String>,
}

/// The type a schema field takes.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Whole,
    Number,
    Flag,
    List,
}

fn kind_of(field: &str) -> Kind {
    match field {
        "price" | "review_count" => Kind::Whole,
        "review_average" => Kind::Number,
        "in_stock" => Kind::Flag,
        "authors" | "categories" => Kind::List,
        _ => Kind::Text,
    }
}

/// A JSON value as an error quotes it: its JSON text, clipped.
fn quoted(value: &Json) -> String {
    clip(&value.to_string())
}

fn bad(message: String) -> Failure {
    Failure {
        kind: FailureKind::BadResponse,
        message,
    }
}

impl Spec {
    /// Judges one answer (`status`, its `Content-Type`, its body) for a connector of `role`.
    pub fn read_answer(
        &self,
        role: Role,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<Answer, Failure> {
        let text = String::from_utf8_lossy(body);
        let document = serde_json::from_slice::<Json>(body).ok();
        for rule in &self.errors {
            let status_ok = rule.status.as_ref().is_none_or(|s| s.matches(status));
            let body_ok = rule
                .body_contains
                .as_ref()
                .is_none_or(|needle| text.contains(needle.as_str()));
            if !(status_ok && body_ok) {
                continue;
            }
            let said = rule
                .message
                .as_ref()
                .and_then(|pointer| document.as_ref()?.pointer(pointer))
                .map(|message| match message {
                    Json::String(text) => format!(": {}", clip(text)),
                    other => format!(": {}", quoted(other)),
                })
                .unwrap_or_default();
            let message = format!("the upstream answered {status}{said}");
            return match rule.action {
                ErrorAction::Ignore => Ok(Answer::default()),
                ErrorAction::Retry => Err(Failure {
                    kind: FailureKind::Transient,
                    message,
                }),
                ErrorAction::Fail => Err(Failure {
                    kind: FailureKind::Permanent,
                    message,
                }),
                ErrorAction::RateLimited => Err(Failure {
                    kind: FailureKind::RateLimited,
                    message,
                }),
            };
        }
        if !(200..300).contains(&status) {
            let kind = match status {
                429 => FailureKind::RateLimited,
                408 | 500..=599 => FailureKind::Transient,
                _ => FailureKind::Permanent,
            };
            return Err(Failure {
                kind,
                message: format!("the upstream answered {status}"),
            });
        }
        if !content_type.to_ascii_lowercase().contains("json") {
            return Err(bad(format!(
                "the upstream answered {status} with {}, not JSON (a maintenance or error page?)",
                if content_type.is_empty() {
                    "no content type"
                } else {
                    content_type
                }
            )));
        }
        let document = match document {
            Some(document) => document,
            None => {
                let error = serde_json::from_slice::<Json>(body)
                    .err()
                    .map_or_else(String::new, |e| e.to_string());
                return Err(bad(format!("the answer is not JSON: {error}")));
            }
        };
        self.records(role, &document)
    }

    fn records(&self, role: Role, document: &Json) -> Result<Answer, Failure> {
        let at = &self.records.pointer;
        let array = document
            .pointer(at)
            .ok_or_else(|| bad(format!("{at:?} (records.pointer): missing")))?
            .as_array()
            .ok_or_else(|| bad(format!("{at:?} (records.pointer): not an array")))?;
        if array.len() > MAX_RECORDS {
            return Err(bad(format!(
                "{at:?} (records.pointer): {} records, more than {MAX_RECORDS}",
                array.len()
            )));
        }
        let total = match &self.records.total {
            None => None,
            Some(pointer) => match document.pointer(pointer) {
                None | Some(Json::Null) => None,
                Some(value) => Some(whole(value).ok_or_else(|| {
                    bad(format!(
                        "{pointer:?} (records.total): expected a whole number, found {}",
                        quoted(value)
                    ))
                })?),
            },
        };
        let next = match &self.records.next {
            None => None,
            Some(pointer) => match document.pointer(pointer) {
                None | Some(Json::Null) => None,
                Some(Json::String(cursor)) if cursor.is_empty() => None,
                Some(Json::String(cursor)) => Some(cursor.clone()),
                Some(Json::Number(number)) => Some(number.to_string()),
                Some(other) => {
                    return Err(bad(format!(
                        "{pointer:?} (records.next): expected text, found {}",
                        quoted(other)
                    )));
                }
            },
        };
        let required = role.required_fields();
        let records = array
            .iter()
            .enumerate()
            .map(|(index, record)| self.record(required, &format!("{at}/{index}"), record))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Answer {
            records,
            total,
            next,
        })
    }

    fn record(&self, required: &[&str], at: &str, record: &Json) -> Result<Record, Failure> {
        let mut fields = Record::new();
        for (field, source) in &self.fields {
            let found = match (&source.value, &source.pointer) {
                (Some(value), _) => Some(value),
                (None, Some(pointer)) => record.pointer(pointer).filter(|v| !v.is_null()),
                (None, None) => None,
            };
            let Some(value) = found.or(source.default.as_ref()) else {
                if required.contains(&field.as_str()) {
                    return Err(bad(format!(
                        "{at}{} (fields.{field}): missing",
                        source.pointer.as_deref().unwrap_or("")
                    )));
                }
                continue;
            };
            let place = || {
                format!(
                    "{at}{} (fields.{field})",
                    source.pointer.as_deref().unwrap_or("")
                )
            };
            let typed = match kind_of(field) {
                Kind::Text => match value {
                    Json::String(text) => Some(Value::Text(text.clone())),
                    Json::Number(number) => Some(Value::Text(number.to_string())),
                    _ => None,
                }
                .ok_or_else(|| {
                    bad(format!(
                        "{}: expected text, found {}",
                        place(),
                        quoted(value)
                    ))
                })?,
                Kind::Whole => whole(value).map(Value::Whole).ok_or_else(|| {
                    bad(format!(
                        "{}: expected a whole number, found {}",
                        place(),
                        quoted(value)
                    ))
                })?,
                Kind::Number => value
                    .as_f64()
                    .filter(|n| n.is_finite())
                    .map(Value::Number)
                    .ok_or_else(|| {
                        bad(format!(
                            "{}: expected a number, found {}",
                            place(),
                            quoted(value)
                        ))
                    })?,
                Kind::Flag => match value {
                    Json::Bool(flag) => Some(Value::Flag(*flag)),
                    Json::Number(n) if n.as_u64() == Some(0) => Some(Value::Flag(false)),
                    Json::Number(n) if n.as_u64() == Some(1) => Some(Value::Flag(true)),
                    _ => None,
                }
                .ok_or_else(|| {
                    bad(format!(
                        "{}: expected true or false, found {}",
                        place(),
                        quoted(value)
                    ))
                })?,
                Kind::List => match value {
                    Json::String(one) => Some(Value::List(vec![one.clone()])),
                    Json::Array(many) => many
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .map(Value::List),
                    _ => None,
                }
                .ok_or_else(|| {
                    bad(format!(
                        "{}: expected text or a list of text, found {}",
                        place(),
                        quoted(value)
                    ))
                })?,
            };
            fields.insert(field.clone(), typed);
        }
        Ok(fields)
    }
}

/// A whole number: a JSON integer, or a float without a fraction.
fn whole(value: &Json) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
            .map(|f| f as u64)
    })
}

/// `text` cut to [`MAX_QUOTED`] bytes (on a character boundary), with a marker when cut.
fn clip(text: &str) -> String {
    if text.len() <= MAX_QUOTED {
        return text.to_string();
    }
    let mut end = MAX_QUOTED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
