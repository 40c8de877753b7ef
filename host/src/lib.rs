//! tsunagi: a host runtime for connectors to outside services, each a sandboxed WebAssembly
//! component.
//!
//! The modules follow the data path of a crawl (see `docs/ARCHITECTURE.md`):
//! [`config`] → [`scheduler`] → [`workers`] → [`runtime`] → [`egress`] → upstream, then back
//! through [`workers`] into the backends and [`sinks`]; [`admin`] reports on all of it.

pub mod admin;
pub mod cassette;
pub mod clock;
pub mod commands;
pub mod config;
pub mod egress;
pub mod host;
pub mod reload;
pub mod resilience;
pub mod runtime;
pub mod scheduler;
pub mod sinks;
pub mod stats;
pub mod workers;

pub use tsunagi_backends as backends;
