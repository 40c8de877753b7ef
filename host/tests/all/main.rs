//! The end-to-end tests, as one test binary (as wasmtime's own `tests/all`): each file is a
//! module, so wasmtime and cranelift are linked once rather than once per file.
//!
//! They run the real host — SQLite, the wasm sandbox, egress over loopback HTTP, the `tsunagi`
//! binary for the process tests — against the stand-in upstreams in `tests/fake-upstream`.

mod common;

mod cluster;
mod config_reference;
mod containment;
mod crawl;
mod credentials;
mod dashboard;
mod dead_letters;
mod egress_policy;
mod handler_worlds;
mod hot_swap;
mod jobs;
mod layers;
mod no_code;
mod operator;
mod packaging;
mod plugin_kit;
mod processes;
mod push;
mod rankings;
mod resilience;
mod retention;
mod search;
mod status_and_sinks;
mod stores;
mod tiers;
mod walkthrough;
mod x_read;
mod x_write;
