//! Live counters of the running host, per connector: what `/status`, the demo's progress line
//! and the benchmark read. Counting is lock-free; only the short list of recent errors locks.
//! Also the connector's pause (`pause_on_problem`): set by its pipeline, shown in `/status`,
//! lifted by time, by an operator's resume or by a restart (it is not stored).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tsunagi_backends::Millis;

/// How many recent errors each connector remembers.
const RECENT_ERRORS: usize = 20;

#[derive(Debug, Default)]
pub struct ConnectorStats {
    polls_ok: AtomicU64,
    polls_failed: AtomicU64,
    polls_deferred: AtomicU64,
    host_failures: AtomicU64,
    polls_refused: AtomicU64,
    not_modified: AtomicU64,
    items_seen: AtomicU64,
    items_new: AtomicU64,
    filtered_by_category: AtomicU64,
    filtered_by_hashtag: AtomicU64,
    filtered_by_matching: AtomicU64,
    in_flight: AtomicI64,
    // Handler jobs (`pipeline::HandlePipeline`).
    jobs_done: AtomicU64,
    jobs_skipped: AtomicU64,
    jobs_failed: AtomicU64,
    jobs_dead: AtomicU64,
    jobs_deferred: AtomicU64,
    recent_errors: Mutex<VecDeque<RecentError>>,
    /// Job latency (claim handed to a worker → outcome committed), in microseconds.
    latency: Mutex<Option<Histogram<u64>>>,
    /// Each request that went out: send to answer, in microseconds.
    request_latency: Mutex<Option<Histogram<u64>>>,
    /// Upstream answers by status code (at most 900 codes: `http` keeps them in 100..=999),
    /// and requests sent that got none (timeout, reset, too large).
    upstream: Mutex<UpstreamCounts>,
    /// A shop's part in product searches, by how it ended (`ShopStatus`).
    shop_outcomes: Mutex<BTreeMap<&'static str, u64>>,
    pause: Mutex<Option<Pause>>,
}

/// The upstream's answers to a connector's requests since the host started.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// By HTTP status code.
    pub responses: BTreeMap<u16, u64>,
    /// Requests sent that got no answer (timed out, reset, refused to connect, too large).
    pub unanswered: u64,
}

/// Latencies bucketed for Prometheus, in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    pub count: u64,
    pub sum_seconds: f64,
    /// (upper bound in seconds, observations above the bound before it and at or below this
    /// one), ascending; what lies past the last bound is `count` minus their sum.
    pub buckets: Vec<(f64, u64)>,
}

/// The upper bounds of latency buckets, in seconds: 5 ms to a minute.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Why and since when a connector makes no calls, and until when (none: until resumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// The problem type that paused it, and where it came from (redacted).
    pub reason: String,
    pub since: Millis,
    pub until: Option<Millis>,
}

/// How one attempt of a handler job ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnding {
    Done,
    Skipped,
    Failed,
    Dead,
    Deferred,
}

/// Job latency quantiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySnapshot {
    pub jobs: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
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
    /// Calls that failed on the host's side (the store, no free instance slot): not the
    /// target's failure; the target was put back and retried soon.
    pub host_failures: u64,
    /// Calls the host's egress policy refused; their targets were parked, not failed.
    pub polls_refused: u64,
    pub not_modified: u64,
    pub items_seen: u64,
    pub items_new: u64,
    /// Items the connector's `[filters]` dropped before storing, per filter.
    pub items_filtered: FilteredCounts,
    pub in_flight: i64,
}

/// A handler connector's job counters since the host started.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct JobStatsSnapshot {
    /// Jobs carried out.
    pub done: u64,
    /// Jobs completed without being carried out (the plugin declined, or not linked).
    pub skipped: u64,
    /// Failed attempts that will be retried.
    pub failed: u64,
    /// Jobs given up on (dead-lettered).
    pub dead: u64,
    /// Attempts a budget, an open breaker or a host failure held back (put back without
    /// counting an attempt).
    pub deferred: u64,
}

/// Items dropped by each filter of `[connectors.NAME.filters]`, counted per committed poll (an
/// item a feed repeats is counted each time it is dropped).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct FilteredCounts {
    pub drop_categories: u64,
    pub drop_hashtags: u64,
    pub drop_matching: u64,
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

    /// Counts what the filters dropped from a committed poll.
    pub fn items_filtered(&self, dropped: crate::filter::Dropped) {
        self.filtered_by_category
            .fetch_add(dropped.by_category, Ordering::Relaxed);
        self.filtered_by_hashtag
            .fetch_add(dropped.by_hashtag, Ordering::Relaxed);
        self.filtered_by_matching
            .fetch_add(dropped.by_matching, Ordering::Relaxed);
    }

    pub fn poll_deferred(&self) {
        self.polls_deferred.fetch_add(1, Ordering::Relaxed);
    }

    pub fn host_failure(&self) {
        self.host_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn poll_refused(&self) {
        self.polls_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed poll and keeps it among the recent errors, redacted (they are shown in
    /// `/status`).
    pub fn poll_failed(&self, target: &str, error: &str, at: Millis) {
        self.polls_failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut recent) = self.recent_errors.lock() {
            if recent.len() == RECENT_ERRORS {
                recent.pop_front();
            }
            // Shown in `/status`: capped like the stored copy.
            recent.push_back(RecentError {
                target: tsunagi_backends::cap_error(&crate::redact::url(target)).into_owned(),
                error: tsunagi_backends::cap_error(&crate::redact::text(error)).into_owned(),
                at,
            });
        }
    }

    /// How a handler job ended this attempt.
    pub fn job_ended(&self, ending: JobEnding) {
        let counter = match ending {
            JobEnding::Done => &self.jobs_done,
            JobEnding::Skipped => &self.jobs_skipped,
            JobEnding::Failed => &self.jobs_failed,
            JobEnding::Dead => &self.jobs_dead,
            JobEnding::Deferred => &self.jobs_deferred,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            polls_ok: self.polls_ok.load(Ordering::Relaxed),
            polls_failed: self.polls_failed.load(Ordering::Relaxed),
            polls_deferred: self.polls_deferred.load(Ordering::Relaxed),
            host_failures: self.host_failures.load(Ordering::Relaxed),
            polls_refused: self.polls_refused.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            items_seen: self.items_seen.load(Ordering::Relaxed),
            items_new: self.items_new.load(Ordering::Relaxed),
            items_filtered: FilteredCounts {
                drop_categories: self.filtered_by_category.load(Ordering::Relaxed),
                drop_hashtags: self.filtered_by_hashtag.load(Ordering::Relaxed),
                drop_matching: self.filtered_by_matching.load(Ordering::Relaxed),
            },
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    pub fn job_snapshot(&self) -> JobStatsSnapshot {
        JobStatsSnapshot {
            done: self.jobs_done.load(Ordering::Relaxed),
            skipped: self.jobs_skipped.load(Ordering::Relaxed),
            failed: self.jobs_failed.load(Ordering::Relaxed),
            dead: self.jobs_dead.load(Ordering::Relaxed),
            deferred: self.jobs_deferred.load(Ordering::Relaxed),
        }
    }

    /// Records one job's latency.
    pub fn record_latency(&self, latency: Duration) {
        record(&self.latency, latency);
    }

    pub fn latency(&self) -> LatencySnapshot {
        quantiles(&self.latency)
    }

    /// Job latency in Prometheus buckets.
    pub fn latency_distribution(&self) -> Distribution {
        distribution(&self.latency)
    }

    /// Counts a request that went out: its status, or none if no answer came, after `elapsed`.
    pub fn upstream_answered(&self, status: Option<u16>, elapsed: Duration) {
        record(&self.request_latency, elapsed);
        if let Ok(mut counts) = self.upstream.lock() {
            match status {
                Some(status) => *counts.responses.entry(status.min(999)).or_default() += 1,
                None => counts.unanswered += 1,
            }
        }
    }

    pub fn upstream(&self) -> UpstreamCounts {
        self.upstream
            .lock()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }

    /// Request latency (send to answer) quantiles.
    pub fn request_latency(&self) -> LatencySnapshot {
        quantiles(&self.request_latency)
    }

    /// Request latency in Prometheus buckets.
    pub fn request_distribution(&self) -> Distribution {
        distribution(&self.request_latency)
    }

    /// Counts how a shop's part of a product search ended (a `ShopStatus`, as named in
    /// answers).
    pub fn shop_answered(&self, status: &'static str) {
        if let Ok(mut outcomes) = self.shop_outcomes.lock() {
            *outcomes.entry(status).or_default() += 1;
        }
    }

    /// How this shop's parts of product searches ended, by status.
    pub fn shop_outcomes(&self) -> BTreeMap<&'static str, u64> {
        self.shop_outcomes
            .lock()
            .map(|outcomes| outcomes.clone())
            .unwrap_or_default()
    }

    /// Pauses the connector (a later pause replaces an earlier one).
    pub fn pause(&self, pause: Pause) {
        if let Ok(mut current) = self.pause.lock() {
            *current = Some(pause);
        }
    }

    /// Lifts the pause; whether there was one.
    pub fn resume(&self) -> bool {
        self.pause
            .lock()
            .map(|mut current| current.take().is_some())
            .unwrap_or(false)
    }

    /// The pause in force at `now`, if any; one whose time has passed is lifted.
    pub fn paused(&self, now: Millis) -> Option<Pause> {
        let mut current = self.pause.lock().ok()?;
        if current
            .as_ref()
            .and_then(|pause| pause.until)
            .is_some_and(|until| until <= now)
        {
            *current = None;
        }
        current.clone()
    }

    /// Newest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors
            .lock()
            .map(|recent| recent.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

fn record(histogram: &Mutex<Option<Histogram<u64>>>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    if let Ok(mut histogram) = histogram.lock() {
        if histogram.is_none() {
            // 1 µs to 1 h at two significant digits: 1% resolution, a few KiB.
            *histogram = Histogram::new_with_bounds(1, 3_600_000_000, 2).ok();
        }
        if let Some(histogram) = histogram.as_mut() {
            histogram.saturating_record(micros);
        }
    }
}

fn quantiles(histogram: &Mutex<Option<Histogram<u64>>>) -> LatencySnapshot {
    let Ok(histogram) = histogram.lock() else {
        return LatencySnapshot::default();
    };
    let Some(histogram) = histogram.as_ref() else {
        return LatencySnapshot::default();
    };
    let ms = |micros: u64| micros as f64 / 1000.0;
    LatencySnapshot {
        jobs: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        max_ms: ms(histogram.max()),
    }
}

fn distribution(histogram: &Mutex<Option<Histogram<u64>>>) -> Distribution {
    let Ok(histogram) = histogram.lock() else {
        return Distribution::default();
    };
    let Some(histogram) = histogram.as_ref() else {
        return Distribution {
            buckets: LATENCY_BUCKETS.iter().map(|&bound| (bound, 0)).collect(),
            ..Distribution::default()
        };
    };
    let mut below = 0;
    Distribution {
        count: histogram.len(),
        sum_seconds: histogram.mean() * histogram.len() as f64 / 1e6,
        buckets: LATENCY_BUCKETS
            .iter()
            .map(|&bound| {
                let up_to = histogram.count_between(0, (bound * 1e6) as u64);
                let within = up_to.saturating_sub(below);
                below = up_to;
                (bound, within)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_lasts_until_its_time_or_a_resume() {
        let stats = ConnectorStats::default();
        assert_eq!(stats.paused(0), None);
        let pause = Pause {
            reason: "usage capped".into(),
            since: 10,
            until: Some(100),
        };
        stats.pause(pause.clone());
        assert_eq!(stats.paused(99), Some(pause));
        assert_eq!(stats.paused(100), None, "lifted when its time has passed");
        assert!(!stats.resume());
        stats.pause(Pause {
            reason: "r".into(),
            since: 0,
            until: None,
        });
        assert!(stats.paused(i64::MAX).is_some(), "no end: until resumed");
        assert!(stats.resume());
        assert_eq!(stats.paused(0), None);
    }

    #[test]
    fn latency_quantiles_come_from_what_was_recorded() {
        let stats = ConnectorStats::default();
        assert_eq!(stats.latency().jobs, 0);
        for ms in 1..=100 {
            stats.record_latency(Duration::from_millis(ms));
        }
        let latency = stats.latency();
        assert_eq!(latency.jobs, 100);
        assert!((49.0..=51.0).contains(&latency.p50_ms), "{latency:?}");
        assert!((98.0..=100.5).contains(&latency.p99_ms), "{latency:?}");
        assert!((99.0..=101.0).contains(&latency.max_ms), "{latency:?}");
        let distribution = stats.latency_distribution();
        assert_eq!(distribution.count, 100);
        assert!(
            (5.0..5.2).contains(&distribution.sum_seconds),
            "{distribution:?}"
        );
        // At or below each bound, summed as Prometheus does.
        let up_to = |bound: f64| -> u64 {
            distribution
                .buckets
                .iter()
                .filter(|(b, _)| *b <= bound)
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!(distribution.buckets[0], (0.005, 5));
        assert_eq!(distribution.buckets[1], (0.01, 5));
        assert_eq!(up_to(0.05), 50);
        assert_eq!(up_to(0.1), 100);
        assert_eq!(up_to(60.0), 100);
    }

    #[test]
    fn upstream_answers_are_counted_by_status_and_unanswered_apart() {
        let stats = ConnectorStats::default();
        stats.upstream_answered(Some(200), Duration::from_millis(3));
        stats.upstream_answered(Some(200), Duration::from_millis(4));
        stats.upstream_answered(Some(503), Duration::from_millis(5));
        stats.upstream_answered(None, Duration::from_secs(2));
        let counts = stats.upstream();
        assert_eq!(counts.responses, BTreeMap::from([(200, 2), (503, 1)]));
        assert_eq!(counts.unanswered, 1);
        assert_eq!(stats.request_distribution().count, 4);
        assert_eq!(stats.request_distribution().buckets[0], (0.005, 3));
    }
}
