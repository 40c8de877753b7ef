//! Pipelines: the loops that turn stored work into plugin calls, one kind per role.
//!
//! - [`poll`]: due targets → leased claims → `poll` calls → one commit per call (items, state,
//!   validators, next run, deliveries).
//! - [`handle`]: queued jobs → leased jobs (heartbeats keep them) → `handle` calls → one
//!   guarded commit per attempt (done / skipped, retry, dead letter, deferral).
//!
//! A pipeline runs one connector; the topology starts, restarts and stops them. Both share the
//! worker-slot gathering in `slots`; search requests get their own module here too.

mod handle;
mod poll;
mod slots;

pub use handle::{HandlePipeline, JobHandler};
pub use poll::{PausePolicy, PollPipeline, RunMode, TargetPoller};
