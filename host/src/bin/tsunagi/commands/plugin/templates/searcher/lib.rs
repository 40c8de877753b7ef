//! {{name}}: a tsunagi searcher. The host calls `search` with a query; this one asks the
//! `endpoint` in its config (`GET endpoint?q=…&limit=…`) and returns the products it lists as
//! items, the price kept as JSON in `content`.

use serde::Deserialize;
use tsunagi_sdk::prelude::*;

struct Connector;

/// The upstream's answer.
#[derive(Deserialize)]
struct Results {
    products: Vec<Product>,
    total: Option<u64>,
    next: Option<String>,
}

/// One product in the answer.
#[derive(Deserialize)]
struct Product {
    sku: String,
    name: String,
    url: Option<String>,
    price: Option<json::Value>,
}

impl Searcher for Connector {
    fn search(request: SearchRequest) -> Result<SearchResponse> {
        let endpoint = config::require("endpoint")?;
        let mut call = http::Request::get(&endpoint)
            .query("q", &request.query)
            .query("limit", &request.limit.to_string());
        if let Some(cursor) = &request.cursor {
            call = call.query("page", cursor);
        }
        let results: Results = call
            .header("accept", "application/json")
            .send()?
            .error_for_status()?
            .json()?;
        let items = results
            .products
            .into_iter()
            .map(|product| {
                Item::new(product.sku)
                    .title(product.name)
                    .link(product.url)
                    .content(product.price.map(|price| price.to_string()))
            })
            .collect();
        Ok(SearchResponse::items(items)
            .total(results.total)
            .next_cursor(results.next))
    }
}

tsunagi_sdk::export_searcher!(Connector);
