//! The `searcher` role: request/response. The host calls [`Searcher::search`] to answer a
//! search (a shop's product search) from an upstream API.
//!
//! Implement [`Searcher`] on a unit struct and export it with
//! [`export_searcher!`](crate::export_searcher).

use crate::__bindings::searcher::exports::tsunagi::connector::search as wit;
use crate::item::IntoOptionalString;
use crate::{Item, Result};

#[doc(inline)]
pub use wit::{SearchRequest, SearchResponse};

/// A connector that answers searches.
pub trait Searcher {
    /// Runs one search.
    fn search(request: SearchRequest) -> Result<SearchResponse>;
}

impl SearchRequest {
    /// The first value of the named extra parameter, if the caller passed it.
    ///
    /// ```
    /// let request = tsunagi_sdk::SearchRequest {
    ///     query: "kettle".into(),
    ///     params: vec![("sort".into(), "price".into())],
    ///     ..Default::default()
    /// };
    /// assert_eq!(request.param("sort"), Some("price"));
    /// assert_eq!(request.param("lang"), None);
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Constructors and builder-style setters:
///
/// ```
/// use tsunagi_sdk::{Item, SearchResponse};
///
/// let page = SearchResponse::items(vec![Item::new("sku-1")]).next_cursor("2").total(41);
/// assert_eq!(page.total, Some(41));
/// ```
impl SearchResponse {
    /// A page of results, best first.
    pub fn items(items: Vec<Item>) -> Self {
        Self {
            items,
            ..Self::default()
        }
    }

    /// Sets the cursor of the next page (there are more results).
    #[must_use]
    pub fn next_cursor(mut self, cursor: impl IntoOptionalString) -> Self {
        self.next_cursor = cursor.into_optional_string();
        self
    }

    /// Sets the upstream's count of all matches.
    #[must_use]
    pub fn total(mut self, total: impl Into<Option<u64>>) -> Self {
        self.total = total.into();
        self
    }
}

/// Exports a [`Searcher`] as the component's `tsunagi:connector/search`. Invoke it once, in the
/// connector crate, with the name of the implementing type.
///
/// Outside `wasm32` the macro only checks the implementation and exports nothing, so a
/// connector crate can also be built natively (`crate-type = ["cdylib", "rlib"]`) for its tests.
///
#[cfg_attr(feature = "searcher", doc = "```")]
#[cfg_attr(not(feature = "searcher"), doc = "```ignore")]
/// use tsunagi_sdk::prelude::*;
///
/// struct Catalogue;
///
/// impl Searcher for Catalogue {
///     fn search(request: SearchRequest) -> Result<SearchResponse> {
///         let items = ["kettle", "teapot", "toaster"]
///             .into_iter()
///             .filter(|name| name.contains(request.query.as_str()))
///             .take(request.limit as usize)
///             .map(|name| Item::new(name).title(name))
///             .collect();
///         Ok(SearchResponse::items(items))
///     }
/// }
///
/// tsunagi_sdk::export_searcher!(Catalogue);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_searcher {
    ($ty:ident) => {
        const _: () = {
            impl $crate::__bindings::searcher::exports::tsunagi::connector::search::Guest for $ty {
                fn search(
                    request: $crate::search::SearchRequest,
                ) -> ::core::result::Result<$crate::search::SearchResponse, $crate::ConnectorError>
                {
                    <$ty as $crate::search::Searcher>::search(request)
                        .map_err(::core::convert::Into::into)
                }
            }
        };
        // The component exports exist only in wasm: natively their names (`tsunagi:connector/…`)
        // are not linkable symbols, and nothing could call them anyway.
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::searcher::__export_searcher!($ty with_types_in $crate::__bindings::searcher);
        // Natively, referencing the glue keeps the implementation as used as it is in wasm (no
        // dead-code warnings in native test builds).
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = $crate::__bindings::searcher::exports::tsunagi::connector::search::_export_search_cabi::<$ty>;
        };
    };
}
