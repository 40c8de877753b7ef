//! Retry policy: how long to wait after each consecutive failure, and when to give up.
//!
//! One policy for everything the host retries — a target that keeps failing, a delivery job
//! that keeps failing — so that both back off the same way: exponentially from `first_delay`
//! up to `max_delay`, each wait spread by a deterministic jitter (a function of the seed and
//! the attempt, so tests state exact times and things that failed together come back apart),
//! and after `max_failures` in a row the work goes to the dead-letter state.

use super::jitter_1024;
use crate::config::RetrySettings;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    /// Fraction of each wait that is spread: a wait `w` becomes one in `w·(1−j/2) ..= w·(1+j/2)`.
    pub jitter: f64,
    /// Consecutive failures after which the work is dead-lettered.
    pub max_failures: u32,
}

impl From<&RetrySettings> for RetryPolicy {
    fn from(settings: &RetrySettings) -> Self {
        Self {
            first_delay: settings.first_delay,
            max_delay: settings.max_delay,
            multiplier: settings.multiplier,
            jitter: settings.jitter,
            max_failures: settings.max_failures,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th consecutive failure (1 for the first), in milliseconds.
    pub fn delay_ms(&self, failures: u32, seed: u64) -> i64 {
        let first = self.first_delay.as_millis() as f64;
        let max = self.max_delay.as_millis() as f64;
        let exponent = i32::try_from(failures.saturating_sub(1).min(64)).unwrap_or(64);
        let base = (first * self.multiplier.max(1.0).powi(exponent)).min(max);
        let unit = f64::from(jitter_1024(seed ^ u64::from(failures).rotate_left(32))) / 1023.0;
        let spread = base * self.jitter.clamp(0.0, 1.0) * (unit - 0.5);
        (base + spread).round().clamp(0.0, i64::MAX as f64) as i64
    }

    /// Whether `failures` consecutive failures are enough to give up.
    pub fn gives_up_after(&self, failures: u32) -> bool {
        failures >= self.max_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(300),
            multiplier: 2.0,
            jitter,
            max_failures: 5,
        }
    }

    #[test]
    fn without_jitter_waits_double_up_to_the_cap() {
        let delays: Vec<i64> = (1..=7).map(|n| policy(0.0).delay_ms(n, 42)).collect();
        assert_eq!(
            delays,
            vec![10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]
        );
    }

    #[test]
    fn jitter_stays_within_its_band_and_spreads_targets() {
        let p = policy(0.2);
        for failures in 1..=8 {
            let base = policy(0.0).delay_ms(failures, 0) as f64;
            for seed in 0..200 {
                let delay = p.delay_ms(failures, seed) as f64;
                assert!(
                    delay >= base * 0.9 - 1.0 && delay <= base * 1.1 + 1.0,
                    "{failures} failures, seed {seed}: {delay} vs {base}"
                );
            }
        }
        let spread: std::collections::HashSet<i64> =
            (0..100).map(|seed| p.delay_ms(3, seed)).collect();
        assert!(spread.len() > 50, "work failing together comes back apart");
        assert_eq!(p.delay_ms(3, 7), p.delay_ms(3, 7), "deterministic");
    }

    #[test]
    fn gives_up_after_max_failures() {
        let p = policy(0.0);
        assert!(!p.gives_up_after(4));
        assert!(p.gives_up_after(5));
    }
}
