//! Scheduler: when each target runs next.
//!
//! [`PollPolicy`] is a pure function of a poll's outcome and the clock. The interval adapts to
//! the target's activity — halved when the poll brought something newer than the last poll,
//! stretched by half when it did not — within the connector's `min_interval`/`max_interval`.
//! Upstream hints (`Retry-After`, `Cache-Control: max-age`, the feed's own TTL) set a floor.
//! Failures back off by the connector's [`RetryPolicy`] and, after too many in a row (or one
//! the plugin calls permanent), give the target up to the dead-letter state. A per-target
//! offset derived from the target id spreads targets that became due together, without making
//! tests random.
//!
//! The claim loop that turns due targets into work is the poll pipeline's; it asks these
//! policies when to run each target next.

use crate::clock::parse_rfc3339;
mod retry;

pub use retry::RetryPolicy;

use crate::config::ConnectorSettings;
use crate::runtime::{CallError, FailureKind, PollResult};
use std::time::Duration;
use tsunagi_backends::{Millis, Target};

/// Schedule rules of one connector.
#[derive(Debug, Clone)]
pub struct PollPolicy {
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub retry: RetryPolicy,
}

/// The upstream's hints about when to come back, as seen by the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamHints {
    pub retry_after: Option<Duration>,
    pub max_age: Option<Duration>,
    pub feed_ttl: Option<Duration>,
    /// A hub pushes the target's updates (an active WebSub subscription): polled only at
    /// `max_interval`, as a safety net.
    pub pushed: bool,
}

/// When a target runs next, and the interval that led there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRun {
    pub at: Millis,
    pub interval_ms: i64,
    /// After a failure: give the target up (dead-letter it) instead of running it at `at`.
    pub give_up: bool,
}

/// Whether a poll showed the target to be active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Something newer than the previous poll.
    Active,
    /// Nothing newer (or 304 Not Modified).
    Quiet,
    /// Cannot tell (items carry no dates); keep the pace.
    Unknown,
}

impl From<&ConnectorSettings> for PollPolicy {
    fn from(settings: &ConnectorSettings) -> Self {
        Self {
            min_interval: settings.schedule.min_interval,
            max_interval: settings.schedule.max_interval,
            retry: RetryPolicy::from(&settings.retry),
        }
    }
}

impl PollPolicy {
    /// The next run after a successful poll.
    pub fn after_success(
        &self,
        target: &Target,
        activity: Activity,
        hints: UpstreamHints,
        now: Millis,
    ) -> NextRun {
        let min = ms(self.min_interval);
        let max = ms(self.max_interval).max(min);
        let previous = target.interval_ms.unwrap_or(min).clamp(min, max);
        let adapted = match activity {
            Activity::Active => previous / 2,
            Activity::Quiet => previous.saturating_add(previous / 2),
            Activity::Unknown => previous,
        }
        .clamp(min, max);
        let floor = if hints.pushed {
            max
        } else {
            [hints.retry_after, hints.max_age, hints.feed_ttl]
                .into_iter()
                .flatten()
                .map(ms)
                .max()
                .unwrap_or(0)
                .min(max)
        };
        let wait = adapted.max(floor);
        NextRun {
            at: now
                .saturating_add(wait)
                .saturating_add(spread(target.id, wait)),
            interval_ms: adapted,
            give_up: false,
        }
    }

    /// The next run after a failed poll; `target.error_count` is the count before this failure.
    /// A permanent error, or the retry policy's last allowed failure, gives the target up.
    pub fn after_failure(
        &self,
        target: &Target,
        error: &CallError,
        hints: UpstreamHints,
        now: Millis,
    ) -> NextRun {
        let failures = target.error_count.saturating_add(1);
        let permanent = matches!(
            error,
            CallError::Connector {
                kind: FailureKind::Permanent,
                ..
            }
        );
        // The upstream's Retry-After counts, but never beyond the longest wait we would choose.
        let retry_after = hints
            .retry_after
            .map(ms)
            .unwrap_or(0)
            .min(ms(self.retry.max_delay));
        let wait = self
            .retry
            .delay_ms(failures, target.id as u64)
            .max(retry_after);
        // Being throttled says nothing about the target itself: it is never given up for that.
        let rate_limited = matches!(
            error,
            CallError::Connector {
                kind: FailureKind::RateLimited,
                ..
            }
        );
        NextRun {
            at: now.saturating_add(wait),
            interval_ms: target.interval_ms.unwrap_or(ms(self.min_interval)),
            give_up: permanent || (!rate_limited && self.retry.gives_up_after(failures)),
        }
    }
}

/// Judges activity from the items' dates against the previous poll.
pub fn activity(target: &Target, result: &PollResult) -> Activity {
    if result.not_modified {
        return Activity::Quiet;
    }
    let Some(last_polled) = target.last_polled_at else {
        // First poll: everything is new, but that says nothing about the pace.
        return Activity::Unknown;
    };
    let mut dated = false;
    for item in &result.items {
        let newest = [item.updated.as_deref(), item.published.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(parse_rfc3339)
            .max();
        if let Some(when) = newest {
            dated = true;
            if when > last_polled {
                return Activity::Active;
            }
        }
    }
    if dated || result.items.is_empty() {
        Activity::Quiet
    } else {
        Activity::Unknown
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Up to 10% of `wait`, fixed per target, so targets added together drift apart.
fn spread(target_id: i64, wait: i64) -> i64 {
    wait / 10 * i64::from(jitter_1024(target_id as u64)) / 1024
}

/// A number in `0..1024` fixed by `seed` and spread evenly over seeds (Fibonacci hashing):
/// jitter that is deterministic, so tests state exact times, yet pulls neighbours apart.
pub fn jitter_1024(seed: u64) -> u16 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as u16
}

#[cfg(test)]
mod tests;
