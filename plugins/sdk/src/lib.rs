//! The tsunagi plugin author kit: everything a connector written in Rust needs to become a
//! `wasm32-wasip2` component the tsunagi host can run.
//!
//! A connector plays one **role**, one world of `wit/connector.wit`:
//!
//! | role     | Cargo feature | trait        | export macro          | host calls it            |
//! |----------|---------------|--------------|-----------------------|--------------------------|
//! | poller   | `poller`      | [`Poller`]   | [`export_poller!`]    | once per due target      |
//! | handler  | `handler`     | [`Handler`]  | [`export_handler!`]   | once per queued job      |
//! | searcher | `shop`        | [`Shop`]     | [`export_shop!`]      | once per product search  |
//! | searcher | `searcher`    | [`Searcher`] | [`export_searcher!`]  | once per search request  |
//!
//! Both searcher features make a TOML `role = "searcher"`: `shop` (since 0.1.2) answers in the
//! host's common product schema ([`Product`]), which the search API merges across shops;
//! `searcher` answers generic [`Item`]s.
//!
//! Besides the role glue the SDK wraps the host's services and the connector's way out:
//!
//! - [`Error`] / [`Result`]: a failure and how the host should treat it ([`ErrorKind`]);
//! - [`http`]: a small blocking HTTP client over `wasi:http/outgoing-handler` (the host applies
//!   its allowlist, rate limits, breakers and caps to every request);
//! - [`state`], [`config`], [`log`] (plus the [`info!`]-style macros), [`rankings`], [`websub`]:
//!   the host's services;
//! - [`json`]: serde_json with errors that say which upstream sent the bad document;
//! - [`Item`]: what pollers and item searchers produce; [`Product`]: what shops produce;
//! - [`prelude`]: the usual imports in one `use`.
//!
//! # One role per component crate
//!
//! Enable exactly one role feature in a connector's `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! # cdylib is the component; rlib lets native `cargo test` build integration and doc tests too.
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! tsunagi-sdk = { path = "../sdk", features = ["poller"] }
//! ```
//!
//! Each feature generates the bindings of its world only. Two roles in one build fail with a
//! `compile_error!`: Cargo unifies features across a build, so crates of different roles must
//! be built by separate `cargo build` invocations.
//!
//! # A whole poller
//!
//! Build it with `cargo build --profile plugin --target wasm32-wasip2 -p <crate>`; the
//! output `target/wasm32-wasip2/plugin/<crate>.wasm` is the component.
//!
#![cfg_attr(feature = "poller", doc = "```")]
#![cfg_attr(not(feature = "poller"), doc = "```ignore")]
//! use tsunagi_sdk::prelude::*;
//!
//! /// Polls a JSON API that lists posts as `[{"id": …, "title": …, "url": …}]`.
//! struct Posts;
//!
//! impl Poller for Posts {
//!     fn poll(request: PollRequest) -> Result<PollResponse> {
//!         let limit = config::parse::<usize>("limit")?.unwrap_or(50);
//!         let response = http::Request::get(&request.target)
//!             .header("accept", "application/json")
//!             .header_opt("if-none-match", request.etag.as_deref())
//!             .follow_redirects(5)
//!             .send()?;
//!         if response.status() == 304 {
//!             let etag = response.header("etag").or(request.etag);
//!             return Ok(PollResponse::not_modified(etag, None));
//!         }
//!         let response = response.error_for_status()?;
//!         let etag = response.header("etag");
//!         let posts: json::Value = response.json()?;
//!         let items: Vec<Item> = posts
//!             .as_array()
//!             .map(Vec::as_slice)
//!             .unwrap_or_default()
//!             .iter()
//!             .filter_map(|post| {
//!                 let id = post.get("id")?.as_str()?;
//!                 let title = post.get("title").and_then(json::Value::as_str);
//!                 let link = post.get("url").and_then(json::Value::as_str);
//!                 Some(Item::new(id).title(title).link(link))
//!             })
//!             .take(limit)
//!             .collect();
//!         tsunagi_sdk::debug!("{} posts from {}", items.len(), request.target);
//!         Ok(PollResponse::items(items).etag(etag))
//!     }
//! }
//!
//! tsunagi_sdk::export_poller!(Posts);
//! # fn main() {}
//! ```
#![warn(missing_docs)]

#[cfg(all(
    not(doc),
    any(
        all(feature = "poller", feature = "handler"),
        all(feature = "poller", feature = "searcher"),
        all(feature = "handler", feature = "searcher"),
        all(
            feature = "shop",
            any(feature = "poller", feature = "handler", feature = "searcher")
        ),
    )
))]
compile_error!(
    "tsunagi-sdk: more than one role feature (`poller`, `handler`, `searcher`, `shop`) is enabled. \
     One role per component crate: each connector crate enables exactly one, and crates of \
     different roles are built in separate cargo invocations (Cargo unifies features within \
     one build, so building a poller and a handler together enables both roles in both)."
);

pub mod config;
mod error;
pub mod http;
mod item;
pub mod json;
pub mod log;
pub mod prelude;
pub mod rankings;
pub mod state;
pub mod websub;

#[cfg(any(feature = "handler", doc))]
pub mod handle;
#[cfg(any(feature = "poller", doc))]
pub mod poll;
#[cfg(any(feature = "searcher", doc))]
pub mod search;
#[cfg(any(feature = "shop", doc))]
pub mod shop;

pub use error::{ConnectorError, Error, ErrorKind, Result};
pub use item::{IntoOptionalString, Item};

#[cfg(any(feature = "handler", doc))]
pub use handle::{Earlier, Handler, Job, JobOutcome, Outcome};
#[cfg(any(feature = "poller", doc))]
pub use poll::{PollRequest, PollResponse, Poller};
#[cfg(any(feature = "searcher", doc))]
pub use search::{SearchRequest, SearchResponse, Searcher};
#[cfg(any(feature = "shop", doc))]
pub use shop::{Product, ProductPage, ProductQuery, Shop, SortOrder};

/// The raw `wit-bindgen` output. Connectors use the curated API above; the export macros reach
/// in here.
///
/// `base` holds the imports every role shares (types, state, config, log). Each role module is
/// generated for its own world with those imports mapped onto `base` (`with:`), so `Item`,
/// `ConnectorError` and the service types are one set of types whichever role is built.
///
/// The role modules use `pub_export_macro`: their `#[used]` type sections describe imports only,
/// and the section naming the export is emitted where the connector invokes the export macro.
/// (So a role module that is compiled but unused adds no export: a poller built with all three
/// role modules still exports only `tsunagi:connector/poll`.) The role features keep each
/// build to the world it implements all the same: one set of traits, macros and docs per crate.
#[doc(hidden)]
pub mod __bindings {
    /// Shared imports: `tsunagi:connector/{types,state,config,log}`.
    pub mod base {
        wit_bindgen::generate!({
            // `host-services` does not name `types` (only the role interfaces `use` it), so the
            // base world adds it to make `Item` and the error types exist independently of any
            // role.
            inline: r#"
                package tsunagi:sdk;
                world base {
                    include tsunagi:connector/host-services@0.1.3;
                    import tsunagi:connector/types@0.1.3;
                }
            "#,
            path: "../../wit",
            world: "tsunagi:sdk/base",
            // The interfaces live in another package than the inline world: generate them all.
            generate_all,
            additional_derives: [PartialEq, Eq],
            additional_type_attributes: {
                "tsunagi:connector/types@0.1.3/item": [
                    #[derive(Default, ::serde::Serialize, ::serde::Deserialize)]
                    #[serde(default)]
                ],
                "tsunagi:connector/types@0.1.3/error-kind": [
                    #[derive(Hash, ::serde::Serialize, ::serde::Deserialize)]
                    #[serde(rename_all = "kebab-case")]
                ],
                "tsunagi:connector/types@0.1.3/connector-error": [
                    #[derive(::serde::Serialize, ::serde::Deserialize)]
                ],
                "tsunagi:connector/log@0.1.3/level": [#[derive(Hash)]],
                "tsunagi:connector/state@0.1.3/scope": [#[derive(Hash)]],
                "tsunagi:connector/rankings@0.1.3/period": [#[derive(Hash)]],
            },
        });
    }

    /// World `poller`: exports `tsunagi:connector/poll`.
    #[cfg(any(feature = "poller", doc))]
    pub mod poller {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "tsunagi:connector/poller",
            with: {
                "tsunagi:connector/types@0.1.3": crate::__bindings::base::tsunagi::connector::types,
                "tsunagi:connector/state@0.1.3": crate::__bindings::base::tsunagi::connector::state,
                "tsunagi:connector/config@0.1.3": crate::__bindings::base::tsunagi::connector::config,
                "tsunagi:connector/log@0.1.3": crate::__bindings::base::tsunagi::connector::log,
                "tsunagi:connector/rankings@0.1.3": crate::__bindings::base::tsunagi::connector::rankings,
                "tsunagi:connector/websub@0.1.3": crate::__bindings::base::tsunagi::connector::websub,
            },
            additional_derives: [PartialEq, Eq],
            additional_type_attributes: {
                "tsunagi:connector/poll@0.1.3/poll-request": [#[derive(Default)]],
                "tsunagi:connector/poll@0.1.3/poll-response": [#[derive(Default)]],
            },
            pub_export_macro: true,
            export_macro_name: "__export_poller",
            default_bindings_module: "$crate::__bindings::poller",
        });
    }

    /// World `handler`: exports `tsunagi:connector/jobs` (since 0.1.1).
    #[cfg(any(feature = "handler", doc))]
    pub mod handler {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "tsunagi:connector/handler",
            with: {
                "tsunagi:connector/types@0.1.3": crate::__bindings::base::tsunagi::connector::types,
                "tsunagi:connector/state@0.1.3": crate::__bindings::base::tsunagi::connector::state,
                "tsunagi:connector/config@0.1.3": crate::__bindings::base::tsunagi::connector::config,
                "tsunagi:connector/log@0.1.3": crate::__bindings::base::tsunagi::connector::log,
                "tsunagi:connector/rankings@0.1.3": crate::__bindings::base::tsunagi::connector::rankings,
                "tsunagi:connector/websub@0.1.3": crate::__bindings::base::tsunagi::connector::websub,
            },
            additional_derives: [PartialEq, Eq],
            additional_type_attributes: {
                "tsunagi:connector/jobs@0.1.3/job-done": [#[derive(Default)]],
            },
            pub_export_macro: true,
            export_macro_name: "__export_handler",
            default_bindings_module: "$crate::__bindings::handler",
        });
    }

    /// World `searcher`: exports `tsunagi:connector/search`.
    #[cfg(any(feature = "searcher", doc))]
    pub mod searcher {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "tsunagi:connector/searcher",
            with: {
                "tsunagi:connector/types@0.1.3": crate::__bindings::base::tsunagi::connector::types,
                "tsunagi:connector/state@0.1.3": crate::__bindings::base::tsunagi::connector::state,
                "tsunagi:connector/config@0.1.3": crate::__bindings::base::tsunagi::connector::config,
                "tsunagi:connector/log@0.1.3": crate::__bindings::base::tsunagi::connector::log,
                "tsunagi:connector/rankings@0.1.3": crate::__bindings::base::tsunagi::connector::rankings,
                "tsunagi:connector/websub@0.1.3": crate::__bindings::base::tsunagi::connector::websub,
            },
            additional_derives: [PartialEq, Eq],
            additional_type_attributes: {
                "tsunagi:connector/search@0.1.3/search-request": [#[derive(Default)]],
                "tsunagi:connector/search@0.1.3/search-response": [#[derive(Default)]],
            },
            pub_export_macro: true,
            export_macro_name: "__export_searcher",
            default_bindings_module: "$crate::__bindings::searcher",
        });
    }

    /// World `shop`: exports `tsunagi:connector/products` (since 0.1.2).
    #[cfg(any(feature = "shop", doc))]
    pub mod shop {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "tsunagi:connector/shop",
            with: {
                "tsunagi:connector/types@0.1.3": crate::__bindings::base::tsunagi::connector::types,
                "tsunagi:connector/state@0.1.3": crate::__bindings::base::tsunagi::connector::state,
                "tsunagi:connector/config@0.1.3": crate::__bindings::base::tsunagi::connector::config,
                "tsunagi:connector/log@0.1.3": crate::__bindings::base::tsunagi::connector::log,
                "tsunagi:connector/rankings@0.1.3": crate::__bindings::base::tsunagi::connector::rankings,
                "tsunagi:connector/websub@0.1.3": crate::__bindings::base::tsunagi::connector::websub,
            },
            additional_derives: [PartialEq],
            additional_type_attributes: {
                "tsunagi:connector/products@0.1.3/product": [#[derive(Default)]],
                "tsunagi:connector/products@0.1.3/product-page": [#[derive(Default)]],
            },
            pub_export_macro: true,
            export_macro_name: "__export_shop",
            default_bindings_module: "$crate::__bindings::shop",
        });
    }
}
