//! Tools that use the library but are not part of the product: the demo crawl and the
//! benchmarks, with the stand-in upstreams and the native-parse reference they need. Built only
//! with the `tools` feature (the scripts turn it on), so the product's dependency graph holds
//! neither the fake upstreams nor a second feed parser.

pub mod bench;
mod cluster_bench;
pub mod demo;
mod hosts_bench;
mod jobs_bench;
mod memory_bench;
mod peak_rss;
mod retention_bench;
mod round_progress;
mod search_bench;
mod server_thread;
mod swap_bench;
mod websub_bench;
mod x_read_bench;
