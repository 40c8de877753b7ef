//! The request template: placeholders in braces, filled per call. A query parameter or header
//! whose placeholder has no value is left out, so one template serves searches with and
//! without a price filter.

use crate::Spec;
use crate::answer::{Failure, FailureKind};
use std::collections::BTreeMap;

/// A searcher's placeholders.
pub const SEARCH_PLACEHOLDERS: [&str; 8] = [
    "keywords",
    "limit",
    "page",
    "offset",
    "start",
    "sort",
    "min_price",
    "max_price",
];
/// A poller's placeholders.
pub const POLL_PLACEHOLDERS: [&str; 2] = ["target", "cursor"];

/// What a search asks, as the host checked it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchInput {
    pub keywords: String,
    pub limit: u32,
    /// From 1.
    pub page: u32,
    /// The host's name of the order (`price-asc`, …).
    pub sort: String,
    pub min_price: Option<u64>,
    pub max_price: Option<u64>,
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    /// With the query string.
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// The placeholders `text` names, or why it does not parse.
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("{text:?} has a '}}' without a '{{'"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{text:?} has a '{{' without a '}}'"))?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("{text:?} has an empty or nested placeholder"));
        }
        names.push(name);
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// `text` with its placeholders filled; `None` when one has no value.
fn fill(text: &str, values: &BTreeMap<&str, Option<String>>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        out.push_str(values.get(&after[..close])?.as_deref()?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

impl Spec {
    /// The request for one search, or `None` when the page is past what the upstream serves
    /// (then there are no results).
    pub fn search_request(&self, input: &SearchInput) -> Result<Option<PreparedRequest>, Failure> {
        if input.page > self.paging.max_page {
            return Ok(None);
        }
        let limit = input.limit.clamp(1, self.paging.max_limit.max(1));
        let offset = u64::from(input.page.max(1) - 1) * u64::from(limit);
        let values: BTreeMap<&str, Option<String>> = [
            ("keywords", Some(input.keywords.clone())),
            ("limit", Some(limit.to_string())),
            ("page", Some(input.page.max(1).to_string())),
            ("offset", Some(offset.to_string())),
            ("start", Some((offset + 1).to_string())),
            ("sort", self.sort.get(&input.sort).cloned()),
            ("min_price", input.min_price.map(|p| p.to_string())),
            ("max_price", input.max_price.map(|p| p.to_string())),
        ]
        .into_iter()
        .collect();
        self.prepare(&values).map(Some)
    }

    /// The request for one page of a poll of `target`; `cursor` is the last page's `next`.
    pub fn poll_request(
        &self,
        target: &str,
        cursor: Option<&str>,
    ) -> Result<PreparedRequest, Failure> {
        let values: BTreeMap<&str, Option<String>> = [
            ("target", Some(target.to_string())),
            ("cursor", cursor.map(str::to_string)),
        ]
        .into_iter()
        .collect();
        self.prepare(&values)
    }

    fn prepare(&self, values: &BTreeMap<&str, Option<String>>) -> Result<PreparedRequest, Failure> {
        let mut url = fill(&self.request.url, values).ok_or_else(|| Failure {
            kind: FailureKind::Permanent,
            message: format!(
                "request.url {:?} names a placeholder with no value",
                self.request.url
            ),
        })?;
        let query: Vec<(String, String)> = self
            .request
            .query
            .iter()
            .filter_map(|(name, template)| Some((name.clone(), fill(template, values)?)))
            .collect();
        if !query.is_empty() {
            let mut encoded = form_urlencoded::Serializer::new(String::new());
            for (name, value) in &query {
                encoded.append_pair(name, value);
            }
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&encoded.finish());
        }
        let headers = self
            .request
            .headers
            .iter()
            .filter_map(|(name, template)| Some((name.clone(), fill(template, values)?)))
            .collect();
        Ok(PreparedRequest { url, headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_named_and_broken_braces_refused() {
        assert_eq!(placeholders("a{b}c{d}").unwrap(), ["b", "d"]);
        assert_eq!(placeholders("plain").unwrap(), Vec::<&str>::new());
        assert!(placeholders("a{b").unwrap_err().contains("without a '}'"));
        assert!(placeholders("a}b").unwrap_err().contains("without a '{'"));
        assert!(placeholders("a{}b").unwrap_err().contains("empty"));
    }

    #[test]
    fn fill_leaves_out_what_has_no_value() {
        let values: BTreeMap<&str, Option<String>> = [("a", Some("1".to_string())), ("b", None)]
            .into_iter()
            .collect();
        assert_eq!(fill("x{a}y", &values).as_deref(), Some("x1y"));
        assert_eq!(fill("x{b}y", &values), None);
        assert_eq!(fill("x{c}y", &values), None);
    }
}
