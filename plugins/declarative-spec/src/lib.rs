//! The no-code connector spec: a connector declared entirely in TOML (`[connectors.NAME.declarative]`)
//! — the request template, a record selector (JSON pointer), the mapping of record fields onto
//! the host's product or item schema, pagination bounds and ordered error rules.
//!
//! One crate, two users, so the rules are written once:
//! - the host deserializes the TOML into [`Spec`] and runs [`Spec::check`] at `tsunagi check`
//!   and at reload, reporting each problem at its file:line;
//! - `plugins/declarative` (sandboxed like any plugin) receives the checked spec as JSON and
//!   interprets it: [`Spec::search_request`] / [`Spec::poll_request`] build the request,
//!   [`Spec::read_answer`] turns the upstream's answer into records or a failure of a kind.
//!
//! Nothing here does I/O; everything is unit-tested natively.

mod answer;
mod check;
mod model;
mod pointer;
mod template;

pub use answer::{Answer, Failure, FailureKind, Record, Value as FieldValue};
pub use check::{Problem, Role};
pub use model::{
    ErrorAction, ErrorRule, FieldSource, Paging, RecordSelector, RequestTemplate, Spec, StatusMatch,
};
pub use template::{PreparedRequest, SearchInput};

/// The config key under which the host hands a checked spec (as JSON) to `plugins/declarative`.
pub const SPEC_CONFIG_KEY: &str = "tsunagi.declarative";

/// The product schema's fields, as a searcher's `fields` table names them.
pub const PRODUCT_FIELDS: [&str; 10] = [
    "id",
    "name",
    "price",
    "currency",
    "url",
    "image",
    "seller",
    "review_count",
    "review_average",
    "in_stock",
];
/// The product fields a mapping must give.
pub const REQUIRED_PRODUCT_FIELDS: [&str; 5] = ["id", "name", "price", "currency", "url"];
/// The item schema's fields, as a poller's `fields` table names them.
pub const ITEM_FIELDS: [&str; 9] = [
    "id",
    "title",
    "link",
    "published",
    "updated",
    "summary",
    "content",
    "authors",
    "categories",
];
/// The item fields a mapping must give.
pub const REQUIRED_ITEM_FIELDS: [&str; 1] = ["id"];
/// The host's sort orders, as a searcher's `sort` table names them.
pub const SORT_ORDERS: [&str; 5] = [
    "relevance",
    "price-asc",
    "price-desc",
    "review-count",
    "review-average",
];
/// The most records one answer may hold.
pub const MAX_RECORDS: usize = 1000;
/// The longest text taken from an answer into an error message.
pub const MAX_QUOTED: usize = 120;

#[cfg(test)]
mod tests;
