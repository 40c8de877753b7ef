//! tsunagi's no-code connector interpreter. A connector declared in TOML
//! (`[connectors.NAME.declarative]`) runs this component: the host checks the spec when it
//! loads the config and hands it over as JSON (config key
//! `tsunagi_declarative_spec::SPEC_CONFIG_KEY`); this builds each request from the template,
//! sends it through the host (which adds the credential, spends the budget and keeps the
//! breaker), and maps the answer's records onto products (feature `searcher`) or items
//! (feature `poller`). Interpreting inside the sandbox means a spec, or an upstream answering
//! it, can do no more harm than any plugin.

use tsunagi_declarative_spec::{FailureKind, FieldValue, PreparedRequest, Record, Spec};
use tsunagi_sdk::prelude::*;

/// The checked spec the host handed over.
pub fn spec() -> Result<Spec> {
    let json = config::get(tsunagi_declarative_spec::SPEC_CONFIG_KEY).ok_or_else(|| {
        Error::permanent(
            "no declarative spec in the config: this component runs connectors that have a \
             [connectors.NAME.declarative] table",
        )
    })?;
    json::from_str(&json, "the declarative spec")
}

/// A spec failure as the SDK's error, of the same kind.
pub fn error(failure: tsunagi_declarative_spec::Failure) -> Error {
    let kind = match failure.kind {
        FailureKind::Transient => ErrorKind::Transient,
        FailureKind::Permanent => ErrorKind::Permanent,
        FailureKind::RateLimited => ErrorKind::RateLimited,
        FailureKind::BadResponse => ErrorKind::BadResponse,
    };
    Error::new(kind, failure.message)
}

/// Sends `request`; the status, content type and body of the answer.
pub fn send(request: &PreparedRequest) -> Result<(u16, String, Vec<u8>)> {
    let mut outgoing = http::Request::get(&request.url);
    for (name, value) in &request.headers {
        outgoing = outgoing.header(name, value);
    }
    let response = outgoing.send()?;
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or_default();
    Ok((status, content_type, response.bytes()?))
}

fn text(record: &Record, field: &str) -> Option<String> {
    match record.get(field)? {
        FieldValue::Text(text) => Some(text.clone()),
        _ => None,
    }
}

#[cfg(feature = "searcher")]
mod searcher {
    use super::*;
    use tsunagi_declarative_spec::{Role, SearchInput};

    /// The host's name of a sort order, as the spec's `sort` table keys it.
    fn sort_name(sort: SortOrder) -> &'static str {
        match sort {
            SortOrder::Relevance => "relevance",
            SortOrder::PriceAscending => "price-asc",
            SortOrder::PriceDescending => "price-desc",
            SortOrder::ReviewCount => "review-count",
            SortOrder::ReviewAverage => "review-average",
        }
    }

    /// A record as a product (the spec's check made sure the required fields are mapped,
    /// and the answer's reading that they are there).
    pub fn product(record: &Record) -> Product {
        let whole = |field: &str| match record.get(field) {
            Some(FieldValue::Whole(n)) => *n,
            _ => 0,
        };
        let average = match record.get("review_average") {
            Some(FieldValue::Number(n)) => Some(*n),
            Some(FieldValue::Whole(n)) => Some(*n as f64),
            _ => None,
        };
        let in_stock = !matches!(record.get("in_stock"), Some(FieldValue::Flag(false)));
        Product::new(
            text(record, "id").unwrap_or_default(),
            text(record, "name").unwrap_or_default(),
            whole("price"),
            text(record, "currency").unwrap_or_default(),
            text(record, "url").unwrap_or_default(),
        )
        .image(text(record, "image"))
        .seller(text(record, "seller"))
        .reviews(
            u32::try_from(whole("review_count")).unwrap_or(u32::MAX),
            average,
        )
        .in_stock(in_stock)
    }

    struct Declarative;

    impl Shop for Declarative {
        fn search_products(query: ProductQuery) -> Result<ProductPage> {
            let spec = spec()?;
            let input = SearchInput {
                keywords: query.keywords,
                limit: query.limit,
                page: query.page,
                sort: sort_name(query.sort).to_string(),
                min_price: query.min_price,
                max_price: query.max_price,
            };
            let Some(request) = spec.search_request(&input).map_err(error)? else {
                return Ok(ProductPage::new(Vec::new(), None));
            };
            let (status, content_type, body) = send(&request)?;
            let answer = spec
                .read_answer(Role::Searcher, status, &content_type, &body)
                .map_err(error)?;
            Ok(ProductPage::new(
                answer.records.iter().map(product).collect(),
                answer.total,
            ))
        }
    }

    tsunagi_sdk::export_shop!(Declarative);
}

#[cfg(feature = "poller")]
mod poller {
    use super::*;
    use tsunagi_declarative_spec::Role;

    fn list(record: &Record, field: &str) -> Vec<String> {
        match record.get(field) {
            Some(FieldValue::List(list)) => list.clone(),
            _ => Vec::new(),
        }
    }

    /// A record as an item.
    pub fn item(record: &Record) -> Item {
        Item::new(text(record, "id").unwrap_or_default())
            .title(text(record, "title"))
            .link(text(record, "link"))
            .published(text(record, "published"))
            .updated(text(record, "updated"))
            .summary(text(record, "summary"))
            .content(text(record, "content"))
            .authors(list(record, "authors"))
            .categories(list(record, "categories"))
    }

    struct Declarative;

    impl Poller for Declarative {
        /// Every page up to `paging.max_pages`, following `records.next`; any failed page fails
        /// the poll (nothing half-imported).
        fn poll(request: PollRequest) -> Result<PollResponse> {
            let spec = spec()?;
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..spec.paging.max_pages.max(1) {
                let outgoing = spec
                    .poll_request(&request.target, cursor.as_deref())
                    .map_err(error)?;
                let (status, content_type, body) = send(&outgoing)?;
                let answer = spec
                    .read_answer(Role::Poller, status, &content_type, &body)
                    .map_err(error)?;
                items.extend(answer.records.iter().map(item));
                match answer.next {
                    Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                    _ => break,
                }
            }
            Ok(PollResponse::items(items))
        }
    }

    tsunagi_sdk::export_poller!(Declarative);
}
