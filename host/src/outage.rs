//! The store stopped answering: how long a loop that asks it for work waits before asking
//! again, and one log line when an outage starts and one when it ends, not one per try.
//!
//! A shared PostgreSQL restarting, or a network partition between a host and it, must pause a
//! pipeline rather than fail its targets or jobs: nothing was claimed, so nothing is lost, and
//! the pipeline resumes on the first answer. The wait doubles from the loop's idle interval to
//! [`MAX_OUTAGE_WAIT`], so a host of hundreds of pipelines does not hammer a store that is
//! coming back up.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// The longest wait between two tries while the store does not answer.
pub const MAX_OUTAGE_WAIT: Duration = Duration::from_secs(30);
/// The shortest, whatever the loop's idle interval: a failing store is never asked in a spin.
pub const MIN_OUTAGE_WAIT: Duration = Duration::from_millis(50);

/// One loop's view of the store's availability.
#[derive(Debug)]
pub struct StoreOutage {
    /// Who is asking and for what, for the log lines ("connector 'rss' claiming targets").
    asking: String,
    first_wait: Duration,
    failures: u32,
    since: Option<Instant>,
}

impl StoreOutage {
    /// `first_wait` is the loop's ordinary idle interval.
    pub fn new(asking: impl Into<String>, first_wait: Duration) -> Self {
        Self {
            asking: asking.into(),
            first_wait,
            failures: 0,
            since: None,
        }
    }

    /// The store failed a request: logs the outage's start (later failures only at debug) and
    /// answers how long to wait before the next try.
    pub fn failed(&mut self, error: &dyn Display) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::error!(asking = %self.asking,
                "the store does not answer; pausing and trying again with backoff: {error}");
        } else {
            tracing::debug!(asking = %self.asking, failures = self.failures,
                "the store still does not answer: {error}");
        }
        self.wait()
    }

    /// The store answered: logs the outage's end if there was one.
    pub fn answered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(asking = %self.asking, failures = self.failures,
                "the store answers again after {:.1?}; resuming", since.elapsed());
        }
        self.failures = 0;
    }

    /// Whether the last request failed.
    pub fn is_out(&self) -> bool {
        self.since.is_some()
    }

    fn wait(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        self.first_wait
            .max(MIN_OUTAGE_WAIT)
            .saturating_mul(1 << doublings)
            .min(MAX_OUTAGE_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_idle_interval_up_to_the_cap_and_reset_on_an_answer() {
        let mut outage = StoreOutage::new("test", Duration::from_millis(100));
        assert!(!outage.is_out());
        let waits: Vec<Duration> = (0..12).map(|_| outage.failed(&"refused")).collect();
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(waits[2], Duration::from_millis(400));
        assert_eq!(waits[8], Duration::from_millis(25_600));
        assert_eq!(waits[9], MAX_OUTAGE_WAIT);
        assert_eq!(waits[11], MAX_OUTAGE_WAIT);
        assert!(outage.is_out());

        outage.answered();
        assert!(!outage.is_out());
        assert_eq!(outage.failed(&"refused"), Duration::from_millis(100));
    }

    #[test]
    fn a_zero_or_huge_idle_interval_still_gives_a_bounded_wait() {
        let mut zero = StoreOutage::new("test", Duration::ZERO);
        assert_eq!(zero.failed(&"x"), MIN_OUTAGE_WAIT);
        assert_eq!(zero.failed(&"x"), MIN_OUTAGE_WAIT * 2);
        let mut huge = StoreOutage::new("test", Duration::from_secs(3600));
        assert_eq!(huge.failed(&"x"), MAX_OUTAGE_WAIT);
        for _ in 0..40 {
            assert_eq!(huge.failed(&"x"), MAX_OUTAGE_WAIT);
        }
    }
}
