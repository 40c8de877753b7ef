//! Pipelines: the loops that turn stored work into plugin calls, one kind per role.
//!
//! - [`poll`]: due targets → leased claims → `poll` calls → one commit per call (items, state,
//!   validators, next run, deliveries).
//!
//! A pipeline runs one connector; the topology starts, restarts and stops them. Handler jobs
//! and search requests get their own module here, beside `poll`, and reuse its slot and
//! deferral rules.

mod poll;

pub use poll::{PausePolicy, PollPipeline, RunMode, TargetPoller};
