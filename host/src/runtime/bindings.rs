//! Host-side bindings generated from `wit/connector.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "poller",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::tsunagi::connector::types::ErrorKind;
pub use exports::tsunagi::connector::poll::{PollRequest, PollResponse};
