//! What a connector usually needs, in one `use tsunagi_sdk::prelude::*;`.
//!
//! The logging macros are not in here: a glob import of a macro named `warn` makes the built-in
//! `#[warn(...)]` attribute ambiguous. Call them by path (`tsunagi_sdk::warn!`) or use the
//! functions in [`log`].

pub use crate::{ConnectorError, Error, ErrorKind, IntoOptionalString, Item, Result};
pub use crate::{config, http, json, log, state, websub};

#[cfg(any(feature = "handler", doc))]
pub use crate::{Earlier, Handler, Job, JobOutcome, Outcome};
#[cfg(any(feature = "poller", doc))]
pub use crate::{PollRequest, PollResponse, Poller};
#[cfg(any(feature = "shop", doc))]
pub use crate::{Product, ProductPage, ProductQuery, Shop, SortOrder};
#[cfg(any(feature = "searcher", doc))]
pub use crate::{SearchRequest, SearchResponse, Searcher};
