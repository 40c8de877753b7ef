//! The spec's shape, as TOML (the host) and JSON (the plugin) both deserialize it. Unknown keys
//! are refused everywhere, so a misspelt key is an error at its line, not a silent default.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `[connectors.NAME.declarative]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub request: RequestTemplate,
    pub records: RecordSelector,
    /// Schema field → where it comes from in a record.
    pub fields: BTreeMap<String, FieldSource>,
    /// The host's sort order → the upstream's value for `{sort}` (searchers).
    #[serde(default)]
    pub sort: BTreeMap<String, String>,
    #[serde(default)]
    pub paging: Paging,
    /// Tried in order on every answer; the first that matches decides.
    #[serde(default)]
    pub errors: Vec<ErrorRule>,
    /// The `[credentials.X]` the host adds to the request (never seen by the plugin).
    #[serde(default)]
    pub credential: Option<String>,
    /// The `[budgets.X]` the request spends.
    #[serde(default)]
    pub budget: Option<String>,
    /// The `[breakers.X]` the request goes through.
    #[serde(default)]
    pub breaker: Option<String>,
}

/// `[…declarative.request]`: what to send. Values may hold placeholders in braces: a searcher's
/// `{keywords}`, `{limit}`, `{page}`, `{offset}` (0-based), `{start}` (1-based), `{sort}`,
/// `{min_price}`, `{max_price}`; a poller's `{target}` and `{cursor}`. A query parameter whose
/// placeholder has no value (no price filter, no cursor) is left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    pub url: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[…declarative.records]`: where the records are in an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSelector {
    /// JSON pointer to the array of records (`""` for an answer that is the array).
    pub pointer: String,
    /// JSON pointer to the upstream's count of all matches.
    #[serde(default)]
    pub total: Option<String>,
    /// Pollers: JSON pointer to the next page's cursor (`{cursor}`), followed up to
    /// `paging.max_pages`.
    #[serde(default)]
    pub next: Option<String>,
}

/// `[…declarative.paging]`: what the upstream can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// The largest page the upstream serves; `{limit}` is cut to it.
    #[serde(default = "default_max_limit")]
    pub max_limit: u32,
    /// The last page it serves; a search past it has no results.
    #[serde(default = "default_max_page")]
    pub max_page: u32,
    /// Pollers: pages one poll follows.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

impl Default for Paging {
    fn default() -> Self {
        Self {
            max_limit: default_max_limit(),
            max_page: default_max_page(),
            max_pages: default_max_pages(),
        }
    }
}

fn default_max_limit() -> u32 {
    100
}
fn default_max_page() -> u32 {
    100
}
fn default_max_pages() -> u32 {
    1
}

/// Where a schema field comes from: a JSON pointer into the record (`"/price"`), or a table
/// `{ pointer = "/review/count", default = 0 }` / `{ value = "JPY" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct FieldSource {
    pub pointer: Option<String>,
    /// A fixed value (no pointer).
    pub value: Option<serde_json::Value>,
    /// What a missing or null field becomes (otherwise a required field that is missing fails
    /// the answer, naming it).
    pub default: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldTable {
    #[serde(default)]
    pointer: Option<String>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    default: Option<serde_json::Value>,
}

impl<'de> Deserialize<'de> for FieldSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Source;
        impl<'de> Visitor<'de> for Source {
            type Value = FieldSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON pointer string, or a table with pointer, value or default")
            }
            fn visit_str<E: de::Error>(self, pointer: &str) -> Result<FieldSource, E> {
                Ok(FieldSource {
                    pointer: Some(pointer.to_string()),
                    ..FieldSource::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSource, A::Error> {
                let table = FieldTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FieldSource {
                    pointer: table.pointer,
                    value: table.value,
                    default: table.default,
                })
            }
        }
        deserializer.deserialize_any(Source)
    }
}

/// One error rule: when an answer matches every condition given, `action` decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    /// `503`, `[500, 502]` or `"5xx"`.
    #[serde(default)]
    pub status: Option<StatusMatch>,
    /// Text the body contains (an HTML maintenance page, an error code).
    #[serde(default)]
    pub body_contains: Option<String>,
    pub action: ErrorAction,
    /// JSON pointer to the upstream's own message in the body, quoted in the error.
    #[serde(default)]
    pub message: Option<String>,
}

/// What an error rule makes of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorAction {
    /// Transient: worth asking again later (counts against the breaker).
    Retry,
    /// Permanent: asking again will not help.
    Fail,
    /// The upstream said to slow down.
    RateLimited,
    /// Not an error: no records (a 404 for "nothing found").
    Ignore,
}

/// Which statuses a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatusMatch {
    One(u16),
    Any(Vec<u16>),
    /// `"4xx"`, `"5xx"`: the hundreds digit.
    Class(String),
}

impl StatusMatch {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            Self::One(one) => *one == status,
            Self::Any(any) => any.contains(&status),
            Self::Class(class) => class
                .chars()
                .next()
                .and_then(|digit| digit.to_digit(10))
                .is_some_and(|hundreds| u32::from(status) / 100 == hundreds),
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Status;
        fn status<E: de::Error>(value: i64) -> Result<u16, E> {
            u16::try_from(value)
                .ok()
                .filter(|status| (100..=599).contains(status))
                .ok_or_else(|| E::custom(format!("{value} is not an HTTP status (100–599)")))
        }
        impl<'de> Visitor<'de> for Status {
            type Value = StatusMatch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status (503), a list of statuses, or a class (\"5xx\")")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<StatusMatch, E> {
                status(value).map(StatusMatch::One)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<StatusMatch, E> {
                status(i64::try_from(value).unwrap_or(i64::MAX)).map(StatusMatch::One)
            }
            fn visit_str<E: de::Error>(self, class: &str) -> Result<StatusMatch, E> {
                let bytes = class.as_bytes();
                if bytes.len() == 3 && (b'1'..=b'5').contains(&bytes[0]) && &bytes[1..] == b"xx" {
                    Ok(StatusMatch::Class(class.to_string()))
                } else {
                    Err(E::custom(format!(
                        "{class:?} is not a status class (1xx to 5xx)"
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusMatch, A::Error> {
                let mut statuses = Vec::new();
                while let Some(value) = seq.next_element::<i64>()? {
                    statuses.push(status(value)?);
                }
                Ok(StatusMatch::Any(statuses))
            }
        }
        deserializer.deserialize_any(Status)
    }
}
