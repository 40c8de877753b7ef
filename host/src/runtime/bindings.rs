//! Host-side bindings generated from `wit/connector.wit`: one module per role world. The
//! interfaces every role imports (types, state, config, log) are generated once, with the
//! poller, and shared by the other roles, so the host implements them once.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "poller",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// A role world's bindings, with the shared interfaces mapped onto the poller's.
macro_rules! role_world {
    ($(#[$doc:meta])* $module:ident, $world:literal) => {
        $(#[$doc])*
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../wit",
                world: $world,
                imports: { default: async | trappable },
                exports: { default: async },
                with: {
                    "tsunagi:connector/types": super::tsunagi::connector::types,
                    "tsunagi:connector/state": super::tsunagi::connector::state,
                    "tsunagi:connector/config": super::tsunagi::connector::config,
                    "tsunagi:connector/log": super::tsunagi::connector::log,
                    "tsunagi:connector/rankings": super::tsunagi::connector::rankings,
                    "tsunagi:connector/websub": super::tsunagi::connector::websub,
                },
            });
        }
    };
}

role_world!(
    /// The `handler` world (since 0.1.1): exports `jobs`.
    handler,
    "handler"
);
role_world!(
    /// The `legacy-handler` world: a handler built against 0.1.0, which exports `handle`.
    legacy_handler,
    "legacy-handler"
);
role_world!(
    /// The `searcher` world (0.1.1): exports `search`, answered as items.
    searcher,
    "searcher"
);
role_world!(
    /// The `shop` world (since 0.1.2): exports `products`.
    shop,
    "shop"
);

pub use self::tsunagi::connector::types::{ErrorKind, Item as WitItem};
pub use exports::tsunagi::connector::poll::{PollRequest, PollResponse};
pub use handler::exports::tsunagi::connector::jobs::{EarlierOutcome, Job, JobDone, JobResult};
pub use legacy_handler::exports::tsunagi::connector::handle::{
    Job as LegacyJob, JobOutcome as LegacyJobOutcome,
};
pub use searcher::exports::tsunagi::connector::search::{SearchRequest, SearchResponse};
pub use shop::exports::tsunagi::connector::products::{
    Product as WitProduct, ProductPage, ProductQuery as WitProductQuery, SortOrder as WitSortOrder,
};
