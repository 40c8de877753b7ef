//! Live counters of the running host, per connector: what `/status`, the demo's progress line
//! and the benchmark read. Counting is lock-free; only the short list of recent errors locks.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tsunagi_backends::Millis;

/// How many recent errors each connector remembers.
const RECENT_ERRORS: usize = 20;

#[derive(Debug, Default)]
pub struct ConnectorStats {
    polls_ok: AtomicU64,
    polls_failed: AtomicU64,
    polls_deferred: AtomicU64,
    not_modified: AtomicU64,
    items_seen: AtomicU64,
    items_new: AtomicU64,
    in_flight: AtomicI64,
    recent_errors: Mutex<VecDeque<RecentError>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecentError {
    pub target: String,
    pub error: String,
    pub at: Millis,
}

/// A consistent-enough copy of the counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub polls_ok: u64,
    pub polls_failed: u64,
    /// Calls a budget or an open breaker held back; their targets were put back, not failed.
    pub polls_deferred: u64,
    pub not_modified: u64,
    pub items_seen: u64,
    pub items_new: u64,
    pub in_flight: i64,
}

impl StatsSnapshot {
    pub fn polls(&self) -> u64 {
        self.polls_ok + self.polls_failed
    }
}

impl ConnectorStats {
    pub fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn call_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn poll_succeeded(&self, not_modified: bool, items_seen: usize, items_new: u64) {
        self.polls_ok.fetch_add(1, Ordering::Relaxed);
        if not_modified {
            self.not_modified.fetch_add(1, Ordering::Relaxed);
        }
        self.items_seen
            .fetch_add(items_seen as u64, Ordering::Relaxed);
        self.items_new.fetch_add(items_new, Ordering::Relaxed);
    }

    pub fn poll_deferred(&self) {
        self.polls_deferred.fetch_add(1, Ordering::Relaxed);
    }

    pub fn poll_failed(&self, target: &str, error: &str, at: Millis) {
        self.polls_failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut recent) = self.recent_errors.lock() {
            if recent.len() == RECENT_ERRORS {
                recent.pop_front();
            }
            recent.push_back(RecentError {
                target: target.to_string(),
                error: error.to_string(),
                at,
            });
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            polls_ok: self.polls_ok.load(Ordering::Relaxed),
            polls_failed: self.polls_failed.load(Ordering::Relaxed),
            polls_deferred: self.polls_deferred.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            items_seen: self.items_seen.load(Ordering::Relaxed),
            items_new: self.items_new.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Newest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors
            .lock()
            .map(|recent| recent.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}
