//! Host-side bindings generated from `wit/connector.wit`: one module per role world. The
//! interfaces every role imports (types, state, config, log) are generated once, with the
//! poller, and shared by the other roles, so the host implements them once.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "poller",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// The `handler` world (since 0.1.1): exports `jobs`.
pub mod handler {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tsunagi:connector/types": super::tsunagi::connector::types,
            "tsunagi:connector/state": super::tsunagi::connector::state,
            "tsunagi:connector/config": super::tsunagi::connector::config,
            "tsunagi:connector/log": super::tsunagi::connector::log,
        },
    });
}

/// The `legacy-handler` world: a handler built against 0.1.0, which exports `handle`.
pub mod legacy_handler {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "legacy-handler",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tsunagi:connector/types": super::tsunagi::connector::types,
            "tsunagi:connector/state": super::tsunagi::connector::state,
            "tsunagi:connector/config": super::tsunagi::connector::config,
            "tsunagi:connector/log": super::tsunagi::connector::log,
        },
    });
}

/// The `searcher` world: exports `search`.
pub mod searcher {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "searcher",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tsunagi:connector/types": super::tsunagi::connector::types,
            "tsunagi:connector/state": super::tsunagi::connector::state,
            "tsunagi:connector/config": super::tsunagi::connector::config,
            "tsunagi:connector/log": super::tsunagi::connector::log,
        },
    });
}

pub use self::tsunagi::connector::types::{ErrorKind, Item as WitItem};
pub use exports::tsunagi::connector::poll::{PollRequest, PollResponse};
pub use handler::exports::tsunagi::connector::jobs::{EarlierOutcome, Job, JobDone, JobResult};
pub use legacy_handler::exports::tsunagi::connector::handle::{
    Job as LegacyJob, JobOutcome as LegacyJobOutcome,
};
pub use searcher::exports::tsunagi::connector::search::{SearchRequest, SearchResponse};
