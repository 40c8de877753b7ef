//! The common product schema in host types: what a searcher is asked (`ProductQuery`) and what
//! it answers (`ProductPage`), whichever WIT version it was built against. A 0.1.2 searcher
//! exports `products` and answers in this schema; a 0.1.1 searcher exports `search` and answers
//! generic items, which are mapped here (name from the title, url from the link, the rest from
//! a JSON object in the item's content when it holds one).

use super::bindings::{
    SearchRequest, SearchResponse, WitItem, WitProduct, WitProductQuery, WitSortOrder,
};
use super::limits::CallLimits;
use serde::Serialize;

/// The order a search's products are asked for and merged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SortOrder {
    #[default]
    Relevance,
    PriceAscending,
    PriceDescending,
    ReviewCount,
    ReviewAverage,
}

impl SortOrder {
    /// Every order, with its name in the API (`sort=`).
    pub const ALL: [(&'static str, Self); 5] = [
        ("relevance", Self::Relevance),
        ("price-asc", Self::PriceAscending),
        ("price-desc", Self::PriceDescending),
        ("review-count", Self::ReviewCount),
        ("review-average", Self::ReviewAverage),
    ];

    /// The order named `name` in the API.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, order)| *order)
    }

    /// Its name in the API.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, order)| *order == self)
            .map_or("relevance", |(name, _)| name)
    }
}

/// One product search, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProductQuery {
    pub keywords: String,
    pub limit: u32,
    /// From 1.
    pub page: u32,
    pub sort: SortOrder,
    pub min_price: Option<u64>,
    pub max_price: Option<u64>,
}

/// One product in the common schema.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Product {
    /// The connector (shop) it came from; set by the host.
    pub shop: String,
    pub id: String,
    pub name: String,
    pub price: u64,
    pub currency: String,
    pub url: String,
    pub image: Option<String>,
    pub seller: Option<String>,
    pub review_count: u32,
    pub review_average: Option<f64>,
    pub in_stock: bool,
}

/// One page of one shop's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProductPage {
    pub products: Vec<Product>,
    pub total: Option<u64>,
}

impl From<&ProductQuery> for WitProductQuery {
    fn from(query: &ProductQuery) -> Self {
        Self {
            keywords: query.keywords.clone(),
            limit: query.limit,
            page: query.page,
            sort: match query.sort {
                SortOrder::Relevance => WitSortOrder::Relevance,
                SortOrder::PriceAscending => WitSortOrder::PriceAscending,
                SortOrder::PriceDescending => WitSortOrder::PriceDescending,
                SortOrder::ReviewCount => WitSortOrder::ReviewCount,
                SortOrder::ReviewAverage => WitSortOrder::ReviewAverage,
            },
            min_price: query.min_price,
            max_price: query.max_price,
        }
    }
}

/// The 0.1.1 request for a product query: keywords, limit, the page as cursor, the rest as
/// named parameters.
impl From<&ProductQuery> for SearchRequest {
    fn from(query: &ProductQuery) -> Self {
        let mut params = vec![("sort".to_string(), query.sort.name().to_string())];
        params.extend(
            query
                .min_price
                .map(|p| ("min_price".to_string(), p.to_string())),
        );
        params.extend(
            query
                .max_price
                .map(|p| ("max_price".to_string(), p.to_string())),
        );
        Self {
            query: query.keywords.clone(),
            limit: query.limit,
            cursor: (query.page > 1).then(|| query.page.to_string()),
            params,
        }
    }
}

/// The other way (a cassette asks a 0.1.2 searcher in 0.1.1 terms): the cursor is the page,
/// `sort`, `min_price` and `max_price` come from the parameters (unknown or unreadable ones
/// are left at their defaults).
impl From<&SearchRequest> for ProductQuery {
    fn from(request: &SearchRequest) -> Self {
        let param = |name: &str| {
            request
                .params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        Self {
            keywords: request.query.clone(),
            limit: request.limit,
            page: request
                .cursor
                .as_deref()
                .and_then(|cursor| cursor.parse().ok())
                .unwrap_or(1),
            sort: param("sort").and_then(SortOrder::parse).unwrap_or_default(),
            min_price: param("min_price").and_then(|p| p.parse().ok()),
            max_price: param("max_price").and_then(|p| p.parse().ok()),
        }
    }
}

pub(super) fn from_wit(product: WitProduct) -> Product {
    Product {
        shop: String::new(),
        id: product.id,
        name: product.name,
        price: product.price,
        currency: product.currency,
        url: product.url,
        image: product.image,
        seller: product.seller,
        review_count: product.review_count,
        // NaN or out of range from a plugin is not an average.
        review_average: product
            .review_average
            .filter(|average| (0.0..=5.0).contains(average)),
        in_stock: product.in_stock,
    }
}

/// A 0.1.1 searcher's page as products.
pub(super) fn from_items(response: SearchResponse) -> ProductPage {
    ProductPage {
        products: response.items.into_iter().map(item_product).collect(),
        total: response.total,
    }
}

fn item_product(item: WitItem) -> Product {
    let fields = item
        .content
        .as_deref()
        .and_then(|content| serde_json::from_str::<serde_json::Value>(content).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_default();
    let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let number = |key: &str| fields.get(key).and_then(serde_json::Value::as_u64);
    Product {
        shop: String::new(),
        name: item.title.unwrap_or_else(|| item.id.clone()),
        id: item.id,
        price: number("price").unwrap_or(0),
        currency: text("currency").unwrap_or_default(),
        url: item.link.unwrap_or_default(),
        image: text("image"),
        seller: text("seller"),
        review_count: number("review_count")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        review_average: fields
            .get("review_average")
            .and_then(serde_json::Value::as_f64)
            .filter(|average| (0.0..=5.0).contains(average)),
        in_stock: fields
            .get("in_stock")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true),
    }
}

/// A 0.1.2 page as 0.1.1 items (for `tsunagi plugin test` cassettes, which speak items): the
/// product's fields as JSON in the content.
pub(super) fn to_response(page: &[WitProduct], total: Option<u64>) -> SearchResponse {
    SearchResponse {
        items: page
            .iter()
            .map(|product| WitItem {
                id: product.id.clone(),
                title: Some(product.name.clone()),
                link: Some(product.url.clone()),
                published: None,
                updated: None,
                authors: product.seller.iter().cloned().collect(),
                summary: None,
                content: Some(
                    serde_json::json!({
                        "price": product.price,
                        "currency": product.currency,
                        "image": product.image,
                        "seller": product.seller,
                        "review_count": product.review_count,
                        "review_average": product.review_average,
                        "in_stock": product.in_stock,
                    })
                    .to_string(),
                ),
                categories: Vec::new(),
            })
            .collect(),
        next_cursor: None,
        total,
    }
}

/// Bytes of text one product makes the host hold, for `items_size`.
pub(super) fn product_size(product: &WitProduct) -> usize {
    size_of::<WitProduct>()
        + product.id.len()
        + product.name.len()
        + product.currency.len()
        + product.url.len()
        + product.image.as_ref().map_or(0, String::len)
        + product.seller.as_ref().map_or(0, String::len)
}

/// `items_per_call` and `items_size` over a page of products.
pub(super) fn check_products(
    connector: &str,
    limits: &CallLimits,
    products: &[WitProduct],
) -> Result<(), super::LimitExceeded> {
    super::limits::check_counted(
        connector,
        limits,
        products.len(),
        products.iter().map(product_size).sum(),
        "products",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(content: Option<&str>) -> WitItem {
        WitItem {
            id: "sku-1".into(),
            title: Some("Kettle".into()),
            link: Some("https://shop.example/sku-1".into()),
            published: None,
            updated: None,
            authors: Vec::new(),
            summary: None,
            content: content.map(str::to_string),
            categories: Vec::new(),
        }
    }

    #[test]
    fn an_item_searchers_items_become_products_with_what_their_content_says() {
        let page = from_items(SearchResponse {
            items: vec![
                item(Some(
                    r#"{"price": 2980, "currency": "JPY", "seller": "One", "review_count": 3,
                        "review_average": 4.5, "in_stock": false, "image": "https://i/1.jpg"}"#,
                )),
                item(Some("<p>not JSON</p>")),
                item(Some(r#"{"price": "cheap", "review_average": 9.5}"#)),
            ],
            next_cursor: None,
            total: Some(3),
        });
        assert_eq!(page.total, Some(3));
        let [full, plain, odd] = &page.products[..] else {
            panic!("three products: {page:?}")
        };
        assert_eq!(
            (full.name.as_str(), full.price, full.currency.as_str()),
            ("Kettle", 2980, "JPY")
        );
        assert_eq!(full.url, "https://shop.example/sku-1");
        assert_eq!(full.seller.as_deref(), Some("One"));
        assert_eq!(
            (full.review_count, full.review_average, full.in_stock),
            (3, Some(4.5), false)
        );
        assert_eq!(
            (plain.price, plain.in_stock, plain.review_average),
            (0, true, None)
        );
        assert_eq!(
            (odd.price, odd.review_average),
            (0, None),
            "a string price and an average past 5 are not taken"
        );
    }

    #[test]
    fn a_product_query_reaches_an_item_searcher_as_parameters() {
        let request = SearchRequest::from(&ProductQuery {
            keywords: "tea".into(),
            limit: 5,
            page: 2,
            sort: SortOrder::PriceDescending,
            min_price: Some(100),
            max_price: None,
        });
        assert_eq!(request.query, "tea");
        assert_eq!(request.cursor.as_deref(), Some("2"));
        assert_eq!(
            request.params,
            vec![
                ("sort".to_string(), "price-desc".to_string()),
                ("min_price".to_string(), "100".to_string())
            ]
        );
        for (name, order) in SortOrder::ALL {
            assert_eq!(SortOrder::parse(name), Some(order));
            assert_eq!(order.name(), name);
        }
    }
}
