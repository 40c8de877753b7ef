//! tsunagi: a host runtime for connectors to outside services, each a sandboxed WebAssembly
//! component.
//!
//! The modules form a one-way stack that follows the data path of a crawl (see
//! `docs/ARCHITECTURE.md`); each uses only the ones listed after it:
//!
//! [`admin`] → [`topology`] → [`cluster`] → [`inbound`] → [`pipeline`] → [`websub`] → [`sinks`] → [`retention`] → [`scheduler`] →
//! [`cassette`] →
//! [`runtime`] → [`rankings`] → [`egress`] → [`credentials`] → [`resilience`] → [`membership`] →
//! [`stores`] → [`config`] → [`stats`] → [`filter`] → [`redact`] → [`listen`] → [`outage`] →
//! [`clock`] → backends
//! (and, for unit tests only, `loopback`, a scriptable HTTP server).
//!
//! `host/tests/all/layers.rs` holds the code to this order.
//!
//! The command line is the `tsunagi` binary's own (`src/bin/tsunagi`), not part of this
//! library.

pub mod admin;
pub mod cassette;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod deadletters;
pub mod egress;
pub mod filter;
pub mod inbound;
pub mod listen;
pub mod membership;
pub mod outage;
pub mod pipeline;
pub mod rankings;
pub mod redact;
pub mod resilience;
pub mod retention;
pub mod runtime;
pub mod scheduler;
pub mod sinks;
pub mod stats;
pub mod stores;
pub mod topology;
pub mod websub;

pub use tsunagi_backends as backends;

#[cfg(test)]
mod loopback;
