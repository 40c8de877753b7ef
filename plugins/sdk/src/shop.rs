//! The `searcher` role in the common product schema (WIT 0.1.2, world `shop`): the host calls
//! [`Shop::search_products`] with a validated [`ProductQuery`] and merges the [`Product`]s of
//! every shop searched into one answer (`GET /v1/search`).
//!
//! Implement [`Shop`] on a unit struct and export it with [`export_shop!`](crate::export_shop).
//! The connector's TOML says `role = "searcher"`.

use crate::__bindings::shop::exports::tsunagi::connector::products as wit;
use crate::Result;

#[doc(inline)]
pub use wit::{Product, ProductPage, ProductQuery, SortOrder};

/// A shop's product search.
pub trait Shop {
    /// Runs one product search: page `query.page` of `query.limit` products.
    fn search_products(query: ProductQuery) -> Result<ProductPage>;
}

impl Product {
    /// A product with the fields every shop has; the rest are set with the builders below.
    ///
    /// ```
    /// let kettle = tsunagi_sdk::Product::new("shop:1", "Kettle", 2980, "JPY", "https://s.example/1")
    ///     .reviews(12, Some(4.5))
    ///     .seller("Shop One");
    /// assert_eq!(kettle.review_count, 12);
    /// assert!(kettle.in_stock, "in stock unless said otherwise");
    /// ```
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        price: u64,
        currency: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            price,
            currency: currency.into(),
            url: url.into(),
            in_stock: true,
            ..Self::default()
        }
    }

    /// Sets the picture.
    #[must_use]
    pub fn image(mut self, image: impl crate::IntoOptionalString) -> Self {
        self.image = image.into_optional_string();
        self
    }

    /// Sets the shop or seller offering it.
    #[must_use]
    pub fn seller(mut self, seller: impl crate::IntoOptionalString) -> Self {
        self.seller = seller.into_optional_string();
        self
    }

    /// Sets the review count and average.
    #[must_use]
    pub fn reviews(mut self, count: u32, average: Option<f64>) -> Self {
        self.review_count = count;
        self.review_average = average;
        self
    }

    /// Sets whether it can be bought now.
    #[must_use]
    pub fn in_stock(mut self, in_stock: bool) -> Self {
        self.in_stock = in_stock;
        self
    }
}

impl ProductPage {
    /// A page of products with the shop's count of all matches.
    pub fn new(products: Vec<Product>, total: Option<u64>) -> Self {
        Self { products, total }
    }
}

/// Exports a [`Shop`] as the component's `tsunagi:connector/products`. Invoke it once, in the
/// connector crate, with the name of the implementing type.
///
/// Outside `wasm32` the macro only checks the implementation and exports nothing, so a
/// connector crate can also be built natively for its tests.
#[macro_export]
macro_rules! export_shop {
    ($ty:ident) => {
        const _: () = {
            impl $crate::__bindings::shop::exports::tsunagi::connector::products::Guest for $ty {
                fn search_products(
                    query: $crate::shop::ProductQuery,
                ) -> ::core::result::Result<$crate::shop::ProductPage, $crate::ConnectorError> {
                    <$ty as $crate::shop::Shop>::search_products(query)
                        .map_err(::core::convert::Into::into)
                }
            }
        };
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::shop::__export_shop!($ty with_types_in $crate::__bindings::shop);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = $crate::__bindings::shop::exports::tsunagi::connector::products::_export_search_products_cabi::<$ty>;
        };
    };
}
