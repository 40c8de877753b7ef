//! tsunagi Rakuten connector: a `searcher` (WIT world `shop`) over Rakuten Ichiba Item Search
//! `IchibaItem/Search/20220601` with `formatVersion=2`.
//!
//! Config (`[connectors.NAME.config]`): `base_url` (default
//! `https://app.rakuten.co.jp/services/api/IchibaItem/Search/20220601`). The `applicationId`
//! is not here and never in the plugin: the host adds it to the query (an `api-key` credential
//! with `query = "applicationId"` on the allow rule), so the plugin cannot leak it.
//!
//! - `page`: one answer → products, with errors naming the field (pure, unit-tested natively).
//! - this module: the request and the status handling.

pub mod page;

use tsunagi_sdk::http;
use tsunagi_sdk::prelude::*;

/// Where Rakuten serves the search.
pub const DEFAULT_BASE_URL: &str =
    "https://app.rakuten.co.jp/services/api/IchibaItem/Search/20220601";

/// Rakuten's largest page.
pub const MAX_HITS: u32 = 30;
/// Rakuten's last page.
pub const MAX_PAGE: u32 = 100;

/// Rakuten's name for a sort order.
pub fn sort_param(sort: SortOrder) -> &'static str {
    match sort {
        SortOrder::Relevance => "standard",
        SortOrder::PriceAscending => "+itemPrice",
        SortOrder::PriceDescending => "-itemPrice",
        SortOrder::ReviewCount => "-reviewCount",
        SortOrder::ReviewAverage => "-reviewAverage",
    }
}

/// The search request for `query` (without the application id, which the host adds).
pub fn request(base_url: &str, query: &ProductQuery) -> http::Request {
    let hits = query.limit.clamp(1, MAX_HITS);
    let mut request = http::Request::get(base_url)
        .header("accept", "application/json")
        .query("format", "json")
        .query("formatVersion", "2")
        .query("keyword", &query.keywords)
        .query("hits", &hits.to_string())
        .query("page", &query.page.clamp(1, MAX_PAGE).to_string())
        .query("sort", sort_param(query.sort));
    if let Some(min) = query.min_price {
        request = request.query("minPrice", &min.to_string());
    }
    if let Some(max) = query.max_price {
        request = request.query("maxPrice", &max.to_string());
    }
    request
}

struct Rakuten;

impl Shop for Rakuten {
    fn search_products(query: ProductQuery) -> Result<ProductPage> {
        let base_url = config::get("base_url").unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let response = request(&base_url, &query).send()?;
        let status = response.status();
        let content_type = response.header("content-type").unwrap_or_default();
        let body = response.bytes()?;
        page::answer(status, &content_type, &body)
    }
}

tsunagi_sdk::export_shop!(Rakuten);
