//! The `poller` role: scheduled pulls. The host calls [`Poller::poll`] once per due target, with
//! what it remembers of that target's last successful poll.
//!
//! Implement [`Poller`] on a unit struct and export it with [`export_poller!`](crate::export_poller)
//! (see the [crate docs](crate) for a whole poller).

use crate::__bindings::poller::exports::tsunagi::connector::poll as wit;
use crate::item::IntoOptionalString;
use crate::{Item, Result};

#[doc(inline)]
pub use wit::{PollRequest, PollResponse};

/// A connector that polls targets. The host calls [`poll`](Poller::poll) once per due target,
/// one call at a time per component instance.
pub trait Poller {
    /// Polls `request.target` once. An error's [`ErrorKind`](crate::ErrorKind) tells the host
    /// whether to retry, back off or give the target up.
    fn poll(request: PollRequest) -> Result<PollResponse>;
}

/// Constructors and builder-style setters:
///
/// ```
/// use tsunagi_sdk::{Item, PollResponse};
///
/// let fresh = PollResponse::items(vec![Item::new("a")])
///     .etag(Some("\"v2\"".to_owned()))
///     .cursor("page-2")
///     .refresh_after(3600);
/// assert!(!fresh.not_modified);
///
/// let same = PollResponse::not_modified(Some("\"v2\"".to_owned()), None);
/// assert!(same.not_modified && same.items.is_empty());
/// ```
impl PollResponse {
    /// A poll that found `items` (possibly none); set validators and hints with the setters.
    pub fn items(items: Vec<Item>) -> Self {
        Self {
            items,
            ..Self::default()
        }
    }

    /// The upstream said nothing changed (HTTP 304): no items, and the validators to send next
    /// time (usually the response's own, else the request's).
    pub fn not_modified(etag: Option<String>, last_modified: Option<String>) -> Self {
        Self {
            not_modified: true,
            etag,
            last_modified,
            ..Self::default()
        }
    }

    /// Sets the `ETag` to send as `If-None-Match` next time.
    #[must_use]
    pub fn etag(mut self, etag: impl IntoOptionalString) -> Self {
        self.etag = etag.into_optional_string();
        self
    }

    /// Sets the `Last-Modified` to send as `If-Modified-Since` next time.
    #[must_use]
    pub fn last_modified(mut self, last_modified: impl IntoOptionalString) -> Self {
        self.last_modified = last_modified.into_optional_string();
        self
    }

    /// Sets the opaque position handed back in the next request's `cursor`.
    #[must_use]
    pub fn cursor(mut self, cursor: impl IntoOptionalString) -> Self {
        self.cursor = cursor.into_optional_string();
        self
    }

    /// Sets the upstream's own refresh hint (RSS `ttl`, say), in seconds; the host will not
    /// poll the target sooner.
    #[must_use]
    pub fn refresh_after(mut self, seconds: impl Into<Option<u32>>) -> Self {
        self.refresh_after_seconds = seconds.into();
        self
    }
}

/// Exports a [`Poller`] as the component's `tsunagi:connector/poll`. Invoke it once, in the
/// connector crate, with the name of the implementing type (a plain identifier in scope).
///
/// Outside `wasm32` the macro only checks the implementation and exports nothing, so a
/// connector crate can also be built natively (`crate-type = ["cdylib", "rlib"]`) for its tests.
///
#[cfg_attr(feature = "poller", doc = "```")]
#[cfg_attr(not(feature = "poller"), doc = "```ignore")]
/// use tsunagi_sdk::prelude::*;
///
/// struct Clock;
///
/// impl Poller for Clock {
///     fn poll(request: PollRequest) -> Result<PollResponse> {
///         let tick = request.cursor.as_deref().unwrap_or("0").parse::<u64>().unwrap_or(0) + 1;
///         let item = Item::new(format!("{}#{tick}", request.target)).title(format!("tick {tick}"));
///         Ok(PollResponse::items(vec![item]).cursor(tick.to_string()))
///     }
/// }
///
/// tsunagi_sdk::export_poller!(Clock);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_poller {
    ($ty:ident) => {
        const _: () = {
            impl $crate::__bindings::poller::exports::tsunagi::connector::poll::Guest for $ty {
                fn poll(
                    request: $crate::poll::PollRequest,
                ) -> ::core::result::Result<$crate::poll::PollResponse, $crate::ConnectorError>
                {
                    <$ty as $crate::poll::Poller>::poll(request)
                        .map_err(::core::convert::Into::into)
                }
            }
        };
        // The component exports exist only in wasm: natively their names (`tsunagi:connector/…`)
        // are not linkable symbols, and nothing could call them anyway.
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::poller::__export_poller!($ty with_types_in $crate::__bindings::poller);
        // Natively, referencing the glue keeps the implementation as used as it is in wasm (no
        // dead-code warnings in native test builds).
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = $crate::__bindings::poller::exports::tsunagi::connector::poll::_export_poll_cabi::<$ty>;
        };
    };
}
