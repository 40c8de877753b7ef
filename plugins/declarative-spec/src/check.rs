//! The checks of a spec, run by the host when it loads the config: every problem with the
//! field it is at (relative to the spec: `records.pointer`, `fields.colour`), so the host
//! reports it at its file:line. What the host alone can judge (that a credential, budget or
//! breaker exists) it checks itself.

use crate::template::{POLL_PLACEHOLDERS, SEARCH_PLACEHOLDERS, placeholders};
use crate::{
    ITEM_FIELDS, PRODUCT_FIELDS, REQUIRED_ITEM_FIELDS, REQUIRED_PRODUCT_FIELDS, SORT_ORDERS, Spec,
    pointer,
};

/// The role a declarative connector plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers product searches (fields map onto the product schema).
    Searcher,
    /// Polls targets (fields map onto the item schema).
    Poller,
}

impl Role {
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Searcher => &PRODUCT_FIELDS,
            Self::Poller => &ITEM_FIELDS,
        }
    }

    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Self::Searcher => &REQUIRED_PRODUCT_FIELDS,
            Self::Poller => &REQUIRED_ITEM_FIELDS,
        }
    }

    fn placeholders(self) -> &'static [&'static str] {
        match self {
            Self::Searcher => &SEARCH_PLACEHOLDERS,
            Self::Poller => &POLL_PLACEHOLDERS,
        }
    }

    fn schema(self) -> &'static str {
        match self {
            Self::Searcher => "product",
            Self::Poller => "item",
        }
    }
}

/// One problem of a spec, at a field relative to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// The longest text a template or rule may hold.
const MAX_TEMPLATE: usize = 2048;

impl Spec {
    /// Every problem of the spec for a connector of `role`; empty when it is good.
    pub fn check(&self, role: Role) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |field: String, message: String| {
            problems.push(Problem { field, message });
        };
        let mut templates = vec![("request.url".to_string(), self.request.url.as_str())];
        templates.extend(
            self.request
                .query
                .iter()
                .map(|(name, value)| (format!("request.query.{name}"), value.as_str())),
        );
        templates.extend(
            self.request
                .headers
                .iter()
                .map(|(name, value)| (format!("request.headers.{name}"), value.as_str())),
        );
        let mut uses_cursor = false;
        for (field, text) in &templates {
            if text.len() > MAX_TEMPLATE {
                problem(
                    field.clone(),
                    format!("{} bytes, more than {MAX_TEMPLATE}", text.len()),
                );
                continue;
            }
            match placeholders(text) {
                Err(message) => problem(field.clone(), message),
                Ok(names) => {
                    for name in names {
                        uses_cursor |= name == "cursor";
                        if !role.placeholders().contains(&name) {
                            problem(
                                field.clone(),
                                format!(
                                    "unknown placeholder {{{name}}}; a {} has {}",
                                    role_name(role),
                                    braced(role.placeholders())
                                ),
                            );
                        }
                    }
                }
            }
        }
        let url = &self.request.url;
        let whole_target = role == Role::Poller && url.starts_with("{target}");
        if !whole_target {
            match url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
            {
                None => problem(
                    "request.url".into(),
                    format!("{url:?} is not an http(s) URL"),
                ),
                Some(rest) => {
                    let authority = rest.split(['/', '?']).next().unwrap_or("");
                    if authority.is_empty() || authority.contains(['{', '}', '@']) {
                        problem(
                            "request.url".into(),
                            "the host of the URL must be written out (no placeholder, no \
                             user:password@): the host allows requests to it alone"
                                .into(),
                        );
                    }
                }
            }
        }
        for (field, value) in [
            ("records.pointer", Some(&self.records.pointer)),
            ("records.total", self.records.total.as_ref()),
            ("records.next", self.records.next.as_ref()),
        ] {
            if let Some(message) = value.and_then(|p| pointer::problem(p)) {
                problem(field.into(), message);
            }
        }
        if self.records.next.is_some() {
            if role != Role::Poller {
                problem(
                    "records.next".into(),
                    "only pollers follow pages; a searcher asks for one page".into(),
                );
            } else if !uses_cursor {
                problem(
                    "records.next".into(),
                    "no request value uses {cursor}, so the next page could not be asked for"
                        .into(),
                );
            }
        }
        for (field, source) in &self.fields {
            let at = format!("fields.{field}");
            if !role.fields().contains(&field.as_str()) {
                problem(
                    at.clone(),
                    format!(
                        "the {} schema has no field {field:?}; its fields are {}",
                        role.schema(),
                        role.fields().join(", ")
                    ),
                );
                continue;
            }
            match (&source.pointer, &source.value) {
                (Some(_), Some(_)) => {
                    problem(at.clone(), "give a pointer or a value, not both".into());
                }
                (None, None) => problem(at.clone(), "give a pointer or a value".into()),
                (Some(p), None) => {
                    if let Some(message) = pointer::problem(p) {
                        problem(at.clone(), message);
                    }
                }
                (None, Some(_)) => {}
            }
        }
        for field in role.required_fields() {
            if !self.fields.contains_key(*field) {
                problem(
                    "fields".into(),
                    format!(
                        "the {} schema needs {field:?}; map it (a pointer, or {{ value = … }})",
                        role.schema()
                    ),
                );
            }
        }
        for name in self.sort.keys() {
            if role != Role::Searcher {
                problem(
                    format!("sort.{name}"),
                    "only searchers are asked for an order".into(),
                );
            } else if !SORT_ORDERS.contains(&name.as_str()) {
                problem(
                    format!("sort.{name}"),
                    format!(
                        "no sort order {name:?}; the orders are {}",
                        SORT_ORDERS.join(", ")
                    ),
                );
            }
        }
        for (field, value, range) in [
            ("paging.max_limit", self.paging.max_limit, 1..=1000),
            ("paging.max_page", self.paging.max_page, 1..=10_000),
            ("paging.max_pages", self.paging.max_pages, 1..=100),
        ] {
            if !range.contains(&value) {
                problem(
                    field.into(),
                    format!(
                        "{value} is not between {} and {}",
                        range.start(),
                        range.end()
                    ),
                );
            }
        }
        for (index, rule) in self.errors.iter().enumerate() {
            let at = format!("errors[{index}]");
            if rule.status.is_none() && rule.body_contains.is_none() {
                problem(
                    at.clone(),
                    "a rule needs a status or body_contains to match; without, it would match \
                     every answer"
                        .into(),
                );
            }
            if let Some(needle) = &rule.body_contains
                && (needle.is_empty() || needle.len() > 256)
            {
                problem(
                    format!("{at}.body_contains"),
                    "must be 1 to 256 bytes".into(),
                );
            }
            if let Some(message) = rule.message.as_ref().and_then(|p| pointer::problem(p)) {
                problem(format!("{at}.message"), message);
            }
        }
        problems
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Searcher => "searcher",
        Role::Poller => "poller",
    }
}

fn braced(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("{{{name}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}
