//! Pipelines: the loops that turn stored work into plugin calls, one kind per role.
//!
//! - [`poll`]: due targets → leased claims → `poll` calls → one commit per call (items, state,
//!   validators, next run, deliveries).
//! - [`handle`]: queued jobs → leased jobs (heartbeats keep them) → `handle` calls → one
//!   guarded commit per attempt (done / skipped, retry, dead letter, deferral).
//!
//! - [`search`]: one product search → every chosen shop's `search-products` at once under one
//!   deadline → merged, sorted, per-shop statuses; identical searches share a flight and a
//!   cache.
//!
//! A poll or handle pipeline runs one connector; the topology starts, restarts and stops them,
//! and they share the worker-slot gathering in `slots`. The search pipeline serves every
//! searcher connector; the topology adds and removes its shops.

mod handle;
mod poll;
pub mod search;
mod slots;

pub use handle::{HandlePipeline, JobHandler};
pub use poll::{PausePolicy, PollPipeline, RunMode, TargetPoller};
pub use search::{SearchAnswer, SearchError, SearchPipeline};

use crate::egress::ExchangeRecord;
use crate::stats::ConnectorStats;

/// Counts every request of a call that went out, for `/status` and `/metrics`.
fn count_upstream(stats: &ConnectorStats, exchanges: &[ExchangeRecord]) {
    for exchange in exchanges.iter().filter(|exchange| exchange.sent) {
        stats.upstream_answered(exchange.status, exchange.elapsed.unwrap_or_default());
    }
}
