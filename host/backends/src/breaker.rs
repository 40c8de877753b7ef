//! Circuit breaker: stop calling an upstream that keeps failing, and find out safely when it
//! has recovered.
//!
//! The model is resilience4j's: a breaker is **closed** (calls flow, outcomes are recorded in a
//! sliding window), **open** (calls are rejected at once, sparing the upstream and our workers)
//! or **half-open** (a few trial calls decide whether to close again). On top of that, an
//! upstream with a declared health probe leaves the open state only through probe results, so
//! users' calls never test a broken upstream.
//!
//! Like the rest of this crate the breaker is a pure state machine: it never reads a clock and
//! every method that depends on time takes `now` from the caller. Time-based transitions
//! (half-open deadline, old outcomes leaving a time window) happen lazily, on the next call
//! that passes a `now`.
//!
//! Transition rules, precisely:
//!
//! * **Closed.** Every call is permitted. After each recorded outcome, if the window holds at
//!   least `minimum_calls` outcomes and the failure rate or the slow-call rate is at or above
//!   its threshold, the breaker opens (and the window is cleared; what it held is kept as the
//!   [`Trip`] the status page shows, so anyone can see why it opened).
//! * **Open.** Every call is rejected. Without a probe, the first [`Breaker::try_acquire`] at
//!   or after `open_wait_ms` moves it to half-open and permits that call as the first trial.
//!   With a probe ([`Breaker::set_probing`]), time alone never ends the open state:
//!   `probe_successes_to_close` consecutive successful probes close it (with a fresh window),
//!   and a failed probe restarts the count.
//! * **Half-open.** Exactly `half_open_calls` trial calls are permitted; more are rejected.
//!   Once all trials have reported, the breaker closes if both the failure rate and the
//!   slow-call rate of the trials are below their thresholds, and opens again otherwise. If the
//!   trials have not all reported within `half_open_max_wait_ms` of entering half-open (strictly
//!   after that deadline), it opens again, as of the deadline; so it can never stay half-open.
//!
//! Every state change starts a new *generation*. A [`CallPermit`] remembers the generation it
//! was issued in, and an outcome reported with a permit from an older generation (for example a
//! slow call issued while closed that returns after the breaker opened) is counted in the
//! totals but does not influence transitions.

use crate::Millis;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// Which outcomes the closed state judges the upstream by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last N outcomes.
    Count(u32),
    /// The outcomes recorded in the last `ms` milliseconds, kept in buckets (see
    /// [`Window::bucket_ms`]).
    Time { ms: i64 },
}

impl Window {
    /// For a time window, the bucket width in milliseconds: 1 s for typical windows, a tenth of
    /// the window (at least 1 ms) for windows under 10 s so that they still have about ten
    /// buckets, and wider buckets for very long windows so that there are at most 600.
    ///
    /// An outcome stops counting once its bucket has left the window. With
    /// `buckets = ceil(ms / bucket_ms)`, that is more than `(buckets - 1) * bucket_ms` and at
    /// most `buckets * bucket_ms` after it was recorded; for the usual windows, which are a
    /// whole number of buckets, between `ms - bucket_ms` and `ms`.
    pub fn bucket_ms(&self) -> Option<i64> {
        match *self {
            Window::Count(_) => None,
            Window::Time { ms } => {
                let ms = ms.max(1);
                let preferred = (ms / 10).clamp(1, 1_000);
                let bounded = ceil_div(ms, MAX_TIME_BUCKETS);
                Some(preferred.max(bounded))
            }
        }
    }
}

/// `ceil(numerator / denominator)` for a positive numerator and denominator (the signed
/// `div_ceil` is not stable yet).
fn ceil_div(numerator: i64, denominator: i64) -> i64 {
    numerator / denominator + i64::from(numerator % denominator != 0)
}

/// Upper bound on the buckets of a time window, to keep memory per breaker small.
const MAX_TIME_BUCKETS: i64 = 600;

/// How a breaker judges and recovers. Check with [`BreakerPolicy::validate`] before use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Which recent outcomes the closed state looks at.
    pub window: Window,
    /// Open when this percentage of the window's calls failed (0 < x ≤ 100).
    pub failure_rate_percent: f64,
    /// Open when this percentage of the window's calls were slow (0 < x ≤ 100).
    pub slow_call_rate_percent: f64,
    /// A call taking at least this long is slow.
    pub slow_call_ms: i64,
    /// No opening before the window holds this many outcomes, so two early failures out of
    /// two calls do not count as a 100 % failure rate.
    pub minimum_calls: u32,
    /// How long the breaker stays open before a trial call may go (when there is no probe).
    pub open_wait_ms: i64,
    /// How many trial calls half-open permits.
    pub half_open_calls: u32,
    /// How long half-open waits for all trials to report before opening again.
    pub half_open_max_wait_ms: i64,
    /// Consecutive successful probes that close an open breaker (when probing).
    pub probe_successes_to_close: u32,
}

impl Default for BreakerPolicy {
    /// Opens when at least half of the last 20 calls failed (once 10 are in), or when every
    /// call in the window took 30 s or more; waits a minute, then tries 3 calls, which must all
    /// report within 5 minutes; with a probe, two good probes in a row close it.
    fn default() -> Self {
        BreakerPolicy {
            window: Window::Count(20),
            failure_rate_percent: 50.0,
            slow_call_rate_percent: 100.0,
            slow_call_ms: 30_000,
            minimum_calls: 10,
            open_wait_ms: 60_000,
            half_open_calls: 3,
            half_open_max_wait_ms: 300_000,
            probe_successes_to_close: 2,
        }
    }
}

/// Why a [`BreakerPolicy`] cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "{field} must be a percentage above 0 and at most 100, got {value} (0 would open the breaker without any failure)"
    )]
    Percent { field: &'static str, value: f64 },
    #[error("a count window must hold at least 1 call, for example window = 20 calls")]
    EmptyCountWindow,
    #[error("a time window must span more than 0 ms, got {ms}, for example 60000 ms")]
    EmptyTimeWindow { ms: i64 },
    #[error("{field} must be more than 0 ms, got {value}")]
    NotPositive { field: &'static str, value: i64 },
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error(
        "minimum_calls ({minimum_calls}) is larger than the count window ({window} calls), so the breaker could never open"
    )]
    MinimumCallsAboveWindow { minimum_calls: u32, window: u32 },
}

impl BreakerPolicy {
    /// Rejects settings under which the breaker could not work as configured.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (field, value) in [
            ("failure_rate_percent", self.failure_rate_percent),
            ("slow_call_rate_percent", self.slow_call_rate_percent),
        ] {
            // Written so that NaN fails too.
            if !(value > 0.0 && value <= 100.0) {
                return Err(SettingsError::Percent { field, value });
            }
        }
        match self.window {
            Window::Count(0) => return Err(SettingsError::EmptyCountWindow),
            Window::Count(size) if self.minimum_calls > size => {
                return Err(SettingsError::MinimumCallsAboveWindow {
                    minimum_calls: self.minimum_calls,
                    window: size,
                });
            }
            Window::Time { ms } if ms <= 0 => return Err(SettingsError::EmptyTimeWindow { ms }),
            _ => {}
        }
        for (field, value) in [
            ("slow_call_ms", self.slow_call_ms),
            ("open_wait_ms", self.open_wait_ms),
            ("half_open_max_wait_ms", self.half_open_max_wait_ms),
        ] {
            if value <= 0 {
                return Err(SettingsError::NotPositive { field, value });
            }
        }
        for (field, value) in [
            ("minimum_calls", self.minimum_calls),
            ("half_open_calls", self.half_open_calls),
            ("probe_successes_to_close", self.probe_successes_to_close),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero { field });
            }
        }
        Ok(())
    }

    /// The settings with out-of-range values pulled to the nearest workable one, so that a
    /// breaker built from unvalidated settings still behaves sanely.
    fn sanitised(mut self) -> Self {
        self.window = match self.window {
            Window::Count(size) => Window::Count(size.max(1)),
            Window::Time { ms } => Window::Time { ms: ms.max(1) },
        };
        self.slow_call_ms = self.slow_call_ms.max(1);
        self.open_wait_ms = self.open_wait_ms.max(0);
        self.half_open_max_wait_ms = self.half_open_max_wait_ms.max(0);
        self.minimum_calls = self.minimum_calls.max(1);
        self.half_open_calls = self.half_open_calls.max(1);
        self.probe_successes_to_close = self.probe_successes_to_close.max(1);
        self
    }
}

/// The three states of a breaker. Serialises as `"closed"`, `"open"`, `"half_open"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Permission to make one call, from [`Breaker::try_acquire`]. Hand it back with the outcome to
/// [`Breaker::record`], once.
///
/// It remembers the state generation it was issued in, so that a late outcome from an earlier
/// generation cannot drive transitions of the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallPermit {
    generation: u64,
    state: BreakerState,
}

impl CallPermit {
    /// The state the breaker was in when it permitted the call (closed, or half-open for a
    /// trial call).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The state generation the permit belongs to; it increases with every transition.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// How a permitted call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallOutcome {
    pub failed: bool,
    pub duration_ms: i64,
}

impl CallOutcome {
    /// A call that succeeded after `duration_ms`.
    pub fn success(duration_ms: i64) -> Self {
        CallOutcome {
            failed: false,
            duration_ms,
        }
    }

    /// A call that failed after `duration_ms`.
    pub fn failure(duration_ms: i64) -> Self {
        CallOutcome {
            failed: true,
            duration_ms,
        }
    }
}

/// A call the breaker refused to let through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rejected {
    /// The breaker's name, usually the upstream it guards.
    pub breaker: String,
    /// Open, or half-open with all trial calls taken.
    pub state: BreakerState,
    /// When a call may next be permitted, if that is known: the end of the open wait. `None`
    /// while a probe decides or while half-open trials are out.
    pub retry_at: Option<Millis>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker {:?} is {}", self.breaker, self.state)?;
        if self.state == BreakerState::HalfOpen {
            f.write_str(" and all its trial calls are taken")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// A breaker's state and counters for a status page. Rates are percentages (0 when there are no
/// calls). The window figures are the closed state's window, or the trial calls that have
/// reported while half-open; the window is empty while open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerSnapshot {
    pub name: String,
    pub state: BreakerState,
    /// When the current state began (for the initial closed state: the first time the breaker
    /// was used).
    pub since: Millis,
    /// When a rejected call could next be permitted, as in [`Rejected::retry_at`]; `None`
    /// unless open without a probe.
    pub retry_at: Option<Millis>,
    /// Whether a health probe decides when the open state ends.
    pub probing: bool,
    pub window_calls: u64,
    pub window_failures: u64,
    pub window_slow: u64,
    pub failure_rate: f64,
    pub slow_rate: f64,
    pub permitted_total: u64,
    pub rejected_total: u64,
    /// Every failed outcome recorded, including late ones from earlier generations.
    pub failed_total: u64,
    /// Every slow outcome recorded, including late ones from earlier generations.
    pub slow_total: u64,
    /// State changes since the breaker was created.
    pub transitions: u64,
    pub last_probe: Option<(Millis, bool)>,
    /// Why it last opened: the calls that tripped it (kept after it closes again).
    pub last_trip: Option<Trip>,
    /// When the probe that may close it is next due; set by the host running the probe.
    pub next_probe_at: Option<Millis>,
}

/// What opened a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripCause {
    /// The closed window's failure rate reached its threshold.
    FailureRate,
    /// The closed window's slow-call rate reached its threshold.
    SlowCallRate,
    /// The half-open trial calls failed or were slow too often.
    TrialCalls,
    /// The half-open trial calls had not all reported by `half_open_max_wait_ms`.
    TrialDeadline,
}

/// The calls that opened a breaker, as they stood at that moment. Rates are percentages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    pub at: Millis,
    pub cause: TripCause,
    pub calls: u64,
    pub failures: u64,
    pub slow: u64,
    pub failure_rate: f64,
    pub slow_rate: f64,
    /// The thresholds in force then.
    pub failure_rate_threshold: f64,
    pub slow_rate_threshold: f64,
}

/// Outcome counts of a set of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Tally {
    calls: u64,
    failures: u64,
    slow: u64,
}

impl Tally {
    fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += u64::from(failed);
        self.slow += u64::from(slow);
    }

    fn remove(&mut self, failed: bool, slow: bool) {
        self.calls -= 1;
        self.failures -= u64::from(failed);
        self.slow -= u64::from(slow);
    }

    fn merge(&mut self, other: &Tally) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }

    fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    fn slow_rate(&self) -> f64 {
        percent(self.slow, self.calls)
    }

    fn breaches(&self, settings: &BreakerPolicy) -> bool {
        self.failure_rate() >= settings.failure_rate_percent
            || self.slow_rate() >= settings.slow_call_rate_percent
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// One time bucket: the outcomes recorded while `now / bucket_ms == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    index: i64,
    tally: Tally,
}

/// An empty bucket slot; no real bucket index is this small.
const UNUSED_BUCKET: Bucket = Bucket {
    index: i64::MIN,
    tally: Tally {
        calls: 0,
        failures: 0,
        slow: 0,
    },
};

/// The closed state's sliding window.
#[derive(Debug, Clone)]
enum OutcomeWindow {
    /// The last `capacity` outcomes as (failed, slow), with their running tally.
    LastCalls {
        capacity: usize,
        outcomes: VecDeque<(bool, bool)>,
        tally: Tally,
    },
    /// A ring of buckets; slot `index mod len` holds bucket `index` if it is recent.
    RecentTime {
        bucket_ms: i64,
        buckets: Vec<Bucket>,
    },
}

impl OutcomeWindow {
    fn new(window: Window) -> Self {
        match window {
            Window::Count(size) => OutcomeWindow::LastCalls {
                capacity: usize::try_from(size.max(1)).unwrap_or(usize::MAX),
                outcomes: VecDeque::new(),
                tally: Tally::default(),
            },
            Window::Time { ms } => {
                let ms = ms.max(1);
                let bucket_ms = window.bucket_ms().unwrap_or(1);
                let count = usize::try_from(ceil_div(ms, bucket_ms)).unwrap_or(1).max(1);
                OutcomeWindow::RecentTime {
                    bucket_ms,
                    buckets: vec![UNUSED_BUCKET; count],
                }
            }
        }
    }

    fn add(&mut self, now: Millis, failed: bool, slow: bool) {
        match self {
            OutcomeWindow::LastCalls {
                capacity,
                outcomes,
                tally,
            } => {
                if outcomes.len() == *capacity
                    && let Some((old_failed, old_slow)) = outcomes.pop_front()
                {
                    tally.remove(old_failed, old_slow);
                }
                outcomes.push_back((failed, slow));
                tally.add(failed, slow);
            }
            OutcomeWindow::RecentTime { bucket_ms, buckets } => {
                let index = now.div_euclid(*bucket_ms);
                let slot = slot_of(index, buckets.len());
                let bucket = &mut buckets[slot];
                if bucket.index != index {
                    *bucket = Bucket {
                        index,
                        tally: Tally::default(),
                    };
                }
                bucket.tally.add(failed, slow);
            }
        }
    }

    fn tally(&self, now: Millis) -> Tally {
        match self {
            OutcomeWindow::LastCalls { tally, .. } => *tally,
            OutcomeWindow::RecentTime { bucket_ms, buckets } => {
                let current = now.div_euclid(*bucket_ms);
                let oldest = current - (buckets.len() as i64 - 1);
                let mut total = Tally::default();
                for bucket in buckets {
                    // Buckets "from the future" (a clock that stepped back) do not count.
                    if (oldest..=current).contains(&bucket.index) {
                        total.merge(&bucket.tally);
                    }
                }
                total
            }
        }
    }

    fn clear(&mut self) {
        match self {
            OutcomeWindow::LastCalls {
                outcomes, tally, ..
            } => {
                outcomes.clear();
                *tally = Tally::default();
            }
            OutcomeWindow::RecentTime { buckets, .. } => buckets.fill(UNUSED_BUCKET),
        }
    }
}

fn slot_of(index: i64, slots: usize) -> usize {
    // `rem_euclid` of a positive divisor is in 0..slots, so the conversion cannot fail.
    usize::try_from(index.rem_euclid(slots as i64)).unwrap_or(0)
}

/// A circuit breaker for one upstream. See the [module documentation](self) for the rules.
#[derive(Debug, Clone)]
pub struct Breaker {
    name: String,
    settings: BreakerPolicy,
    state: BreakerState,
    /// When the current state began; `None` until the first call that passes a time.
    since: Option<Millis>,
    generation: u64,
    window: OutcomeWindow,
    probing: bool,
    /// Consecutive successful probes since the breaker last opened.
    probe_streak: u32,
    last_probe: Option<(Millis, bool)>,
    trials_permitted: u32,
    /// Outcomes of the current half-open state's trial calls.
    trials: Tally,
    permitted_total: u64,
    rejected_total: u64,
    failed_total: u64,
    slow_total: u64,
    transitions: u64,
    last_trip: Option<Trip>,
}

impl Breaker {
    /// A closed breaker called `name` (shown in rejections and on the status page).
    ///
    /// Settings should be checked with [`BreakerPolicy::validate`] first; values it would
    /// reject are pulled to the nearest workable one (a zero count becomes 1, a negative wait
    /// becomes 0) rather than causing a panic.
    pub fn new(name: String, settings: BreakerPolicy) -> Self {
        let settings = settings.sanitised();
        Breaker {
            name,
            settings,
            state: BreakerState::Closed,
            since: None,
            generation: 0,
            window: OutcomeWindow::new(settings.window),
            probing: false,
            probe_streak: 0,
            last_probe: None,
            trials_permitted: 0,
            trials: Tally::default(),
            permitted_total: 0,
            rejected_total: 0,
            failed_total: 0,
            slow_total: 0,
            transitions: 0,
            last_trip: None,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings in force (after sanitising, see [`Breaker::new`]).
    pub fn settings(&self) -> &BreakerPolicy {
        &self.settings
    }

    /// Whether a health probe decides when the open state ends. The host turns this on when the
    /// upstream declares a probe. It only changes how the open state ends: trial calls already
    /// permitted in half-open still decide that state, and turning probing off lets the open
    /// wait (counted from when the breaker opened) apply again.
    pub fn set_probing(&mut self, probing: bool) {
        self.probing = probing;
    }

    /// Asks to make one call at `now`. In the open state without a probe, the first request at
    /// or after the open wait moves the breaker to half-open and becomes its first trial call.
    pub fn try_acquire(&mut self, now: Millis) -> Result<CallPermit, Rejected> {
        self.apply_deadlines(now);
        if self.state == BreakerState::Open
            && !self.probing
            && now
                >= self
                    .since_or(now)
                    .saturating_add(self.settings.open_wait_ms)
        {
            self.enter(BreakerState::HalfOpen, now);
        }

        let permitted = match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => self.trials_permitted < self.settings.half_open_calls,
        };
        if !permitted {
            self.rejected_total += 1;
            return Err(Rejected {
                breaker: self.name.clone(),
                state: self.state,
                retry_at: self.retry_at(now),
            });
        }
        if self.state == BreakerState::HalfOpen {
            self.trials_permitted += 1;
        }
        self.permitted_total += 1;
        Ok(CallPermit {
            generation: self.generation,
            state: self.state,
        })
    }

    /// Reports how a permitted call went, at `now` (when it finished). A call is slow if it took
    /// at least `slow_call_ms`; a slow failure counts as both. Outcomes of permits from an
    /// earlier generation are only added to the totals.
    pub fn record(&mut self, permit: CallPermit, now: Millis, outcome: CallOutcome) {
        self.apply_deadlines(now);
        let slow = outcome.duration_ms >= self.settings.slow_call_ms;
        self.failed_total += u64::from(outcome.failed);
        self.slow_total += u64::from(slow);
        if permit.generation != self.generation {
            return;
        }

        match self.state {
            BreakerState::Closed => {
                self.window.add(now, outcome.failed, slow);
                let tally = self.window.tally(now);
                if tally.calls >= u64::from(self.settings.minimum_calls)
                    && tally.breaches(&self.settings)
                {
                    let cause = if tally.failure_rate() >= self.settings.failure_rate_percent {
                        TripCause::FailureRate
                    } else {
                        TripCause::SlowCallRate
                    };
                    self.trip(cause, tally, now);
                }
            }
            BreakerState::HalfOpen => {
                self.trials.add(outcome.failed, slow);
                if self.trials.calls >= u64::from(self.settings.half_open_calls) {
                    if self.trials.breaches(&self.settings) {
                        self.trip(TripCause::TrialCalls, self.trials, now);
                    } else {
                        self.enter(BreakerState::Closed, now);
                    }
                }
            }
            // No permit is issued while open, so none can match its generation.
            BreakerState::Open => {}
        }
    }

    /// Hands back a permit whose call never reached the upstream (the host's own policy refused
    /// it after the permit was issued). No outcome is recorded; a half-open trial slot it held
    /// is free again, so a refusal cannot use up the trials that decide the upstream's fate.
    pub fn release(&mut self, permit: CallPermit) {
        if permit.generation == self.generation
            && permit.state == BreakerState::HalfOpen
            && self.state == BreakerState::HalfOpen
        {
            self.trials_permitted = self.trials_permitted.saturating_sub(1);
        }
        self.permitted_total = self.permitted_total.saturating_sub(1);
    }

    /// Reports a health probe's result at `now`. While open, probes decide: after
    /// `probe_successes_to_close` consecutive successes the breaker closes with a fresh window;
    /// a failure restarts the count. In other states the result is only kept for the status
    /// page.
    pub fn record_probe(&mut self, now: Millis, ok: bool) {
        self.apply_deadlines(now);
        self.last_probe = Some((now, ok));
        if self.state != BreakerState::Open {
            return;
        }
        if !ok {
            self.probe_streak = 0;
            return;
        }
        self.probe_streak += 1;
        if self.probe_streak >= self.settings.probe_successes_to_close {
            self.enter(BreakerState::Closed, now);
        }
    }

    /// The state at `now`, after applying the half-open deadline. An open breaker whose wait
    /// has passed still reads open: only a call ([`Breaker::try_acquire`]) starts half-open,
    /// so looking at a breaker never starts its trial period.
    pub fn state(&mut self, now: Millis) -> BreakerState {
        self.apply_deadlines(now);
        self.state
    }

    /// State and counters at `now`, for a status page.
    pub fn snapshot(&mut self, now: Millis) -> BreakerSnapshot {
        self.apply_deadlines(now);
        let window = match self.state {
            BreakerState::Closed => self.window.tally(now),
            BreakerState::HalfOpen => self.trials,
            BreakerState::Open => Tally::default(),
        };
        BreakerSnapshot {
            name: self.name.clone(),
            state: self.state,
            since: self.since_or(now),
            retry_at: self.retry_at(now),
            probing: self.probing,
            window_calls: window.calls,
            window_failures: window.failures,
            window_slow: window.slow,
            failure_rate: window.failure_rate(),
            slow_rate: window.slow_rate(),
            permitted_total: self.permitted_total,
            rejected_total: self.rejected_total,
            failed_total: self.failed_total,
            slow_total: self.slow_total,
            transitions: self.transitions,
            last_probe: self.last_probe,
            last_trip: self.last_trip,
            next_probe_at: None,
        }
    }

    /// Applies the transitions that time alone causes, lazily: a half-open state whose trials
    /// have not all reported by its deadline opens again, as of that deadline.
    fn apply_deadlines(&mut self, now: Millis) {
        let since = self.since_or(now);
        if self.state == BreakerState::HalfOpen {
            let deadline = since.saturating_add(self.settings.half_open_max_wait_ms);
            if now > deadline {
                self.trip(TripCause::TrialDeadline, self.trials, deadline);
            }
        }
    }

    /// When the current state began, fixing it at `now` on first use.
    fn since_or(&mut self, now: Millis) -> Millis {
        *self.since.get_or_insert(now)
    }

    fn retry_at(&mut self, now: Millis) -> Option<Millis> {
        if self.state == BreakerState::Open && !self.probing {
            Some(
                self.since_or(now)
                    .saturating_add(self.settings.open_wait_ms),
            )
        } else {
            None
        }
    }

    /// Opens at `at` because of `tally`, remembering it.
    fn trip(&mut self, cause: TripCause, tally: Tally, at: Millis) {
        self.last_trip = Some(Trip {
            at,
            cause,
            calls: tally.calls,
            failures: tally.failures,
            slow: tally.slow,
            failure_rate: tally.failure_rate(),
            slow_rate: tally.slow_rate(),
            failure_rate_threshold: self.settings.failure_rate_percent,
            slow_rate_threshold: self.settings.slow_call_rate_percent,
        });
        self.enter(BreakerState::Open, at);
    }

    fn enter(&mut self, state: BreakerState, at: Millis) {
        self.state = state;
        self.since = Some(at);
        self.generation += 1;
        self.transitions += 1;
        self.trials_permitted = 0;
        self.trials = Tally::default();
        self.probe_streak = 0;
        // Closing starts from a clean slate; opening discards the outcomes that tripped it.
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BreakerState::{Closed, HalfOpen, Open};

    const T0: Millis = 1_700_000_000_000;
    const FAST_MS: i64 = 5;

    /// One scenario step. `Call*` acquire a permit and, if granted, report at once; `Acquire`
    /// keeps the permit outstanding and `Report*` hands back the oldest outstanding permit.
    #[derive(Debug, Clone, Copy)]
    enum Act {
        Acquire,
        /// Hands back the oldest outstanding permit unused (the host refused the call).
        Release,
        ReportOk,
        ReportFail,
        ReportSlow,
        CallOk,
        CallFail,
        CallSlow,
        CallSlowFail,
        Wait(i64),
        ProbeOk,
        ProbeFail,
        SetProbing(bool),
        /// Asserts the window figures (calls, failures, slow) of the snapshot.
        ExpectWindow(u64, u64, u64),
    }
    use Act::*;

    /// After the action: expected state, `permitted_total` and `rejected_total`.
    type Step = (Act, BreakerState, u64, u64);

    struct Scenario {
        breaker: Breaker,
        now: Millis,
        outstanding: VecDeque<CallPermit>,
        last_rejection: Option<Rejected>,
    }

    impl Scenario {
        fn new(settings: BreakerPolicy) -> Self {
            settings.validate().expect("test settings are valid");
            Scenario {
                breaker: Breaker::new("shop-a".to_owned(), settings),
                now: T0,
                outstanding: VecDeque::new(),
                last_rejection: None,
            }
        }

        fn run(&mut self, steps: &[Step]) {
            for (index, &(act, state, permitted, rejected)) in steps.iter().enumerate() {
                self.apply(act, index);
                let snapshot = self.breaker.snapshot(self.now);
                let at = self.now - T0;
                assert_eq!(
                    (
                        snapshot.state,
                        snapshot.permitted_total,
                        snapshot.rejected_total
                    ),
                    (state, permitted, rejected),
                    "step {index} ({act:?}) at +{at} ms: (state, permitted, rejected); {snapshot:?}"
                );
            }
        }

        fn apply(&mut self, act: Act, index: usize) {
            let slow_ms = self.breaker.settings().slow_call_ms;
            match act {
                Acquire => {
                    if let Some(permit) = self.acquire() {
                        self.outstanding.push_back(permit);
                    }
                }
                Release => {
                    let permit = self
                        .outstanding
                        .pop_front()
                        .expect("scenario releases only acquired permits");
                    self.breaker.release(permit);
                }
                ReportOk => self.report(CallOutcome::success(FAST_MS)),
                ReportFail => self.report(CallOutcome::failure(FAST_MS)),
                ReportSlow => self.report(CallOutcome::success(slow_ms)),
                CallOk => self.call(CallOutcome::success(FAST_MS)),
                CallFail => self.call(CallOutcome::failure(FAST_MS)),
                CallSlow => self.call(CallOutcome::success(slow_ms)),
                CallSlowFail => self.call(CallOutcome::failure(slow_ms)),
                Wait(ms) => self.now += ms,
                ProbeOk => self.breaker.record_probe(self.now, true),
                ProbeFail => self.breaker.record_probe(self.now, false),
                SetProbing(on) => self.breaker.set_probing(on),
                ExpectWindow(calls, failures, slow) => {
                    let snapshot = self.breaker.snapshot(self.now);
                    assert_eq!(
                        (
                            snapshot.window_calls,
                            snapshot.window_failures,
                            snapshot.window_slow
                        ),
                        (calls, failures, slow),
                        "step {index}: window (calls, failures, slow); {snapshot:?}"
                    );
                }
            }
        }

        fn acquire(&mut self) -> Option<CallPermit> {
            match self.breaker.try_acquire(self.now) {
                Ok(permit) => Some(permit),
                Err(rejected) => {
                    self.last_rejection = Some(rejected);
                    None
                }
            }
        }

        fn call(&mut self, outcome: CallOutcome) {
            if let Some(permit) = self.acquire() {
                self.breaker.record(permit, self.now, outcome);
            }
        }

        fn report(&mut self, outcome: CallOutcome) {
            let permit = self
                .outstanding
                .pop_front()
                .expect("scenario reports only acquired permits");
            self.breaker.record(permit, self.now, outcome);
        }
    }

    /// Count window of 4, opens at 50 % failures (slow calls: at 100 %) once 4 calls are in;
    /// open for 10 s, then 2 trial calls that must report within 5 s.
    fn settings() -> BreakerPolicy {
        BreakerPolicy {
            window: Window::Count(4),
            failure_rate_percent: 50.0,
            slow_call_rate_percent: 100.0,
            slow_call_ms: 1_000,
            minimum_calls: 4,
            open_wait_ms: 10_000,
            half_open_calls: 2,
            half_open_max_wait_ms: 5_000,
            probe_successes_to_close: 2,
        }
    }

    /// Steps that open a breaker with [`settings`] from fresh: four failures.
    const TRIP: [Step; 4] = [
        (CallFail, Closed, 1, 0),
        (CallFail, Closed, 2, 0),
        (CallFail, Closed, 3, 0),
        (CallFail, Open, 4, 0),
    ];

    #[test]
    fn minimum_calls_prevents_early_opening() {
        let mut scenario = Scenario::new(BreakerPolicy {
            window: Window::Count(10),
            ..settings()
        });
        scenario.run(&[
            // Three failures out of three is 100 %, but fewer than 4 calls decide nothing.
            (CallFail, Closed, 1, 0),
            (CallFail, Closed, 2, 0),
            (CallFail, Closed, 3, 0),
            (ExpectWindow(3, 3, 0), Closed, 3, 0),
            // The fourth call makes the window count: 3 of 4 failed, 75 %.
            (CallOk, Open, 4, 0),
            (ExpectWindow(0, 0, 0), Open, 4, 0),
        ]);
    }

    #[test]
    fn failure_rate_opens_on_a_count_window_of_the_last_calls() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&[
            (CallFail, Closed, 1, 0),
            (CallOk, Closed, 2, 0),
            (CallOk, Closed, 3, 0),
            (CallOk, Closed, 4, 0),
            (ExpectWindow(4, 1, 0), Closed, 4, 0),
            // The early failure slides out of the last four.
            (CallOk, Closed, 5, 0),
            (ExpectWindow(4, 0, 0), Closed, 5, 0),
            (CallFail, Closed, 6, 0),
            (ExpectWindow(4, 1, 0), Closed, 6, 0),
            (CallFail, Open, 7, 0),
            (CallOk, Open, 7, 1),
        ]);
        let snapshot = scenario.breaker.snapshot(scenario.now);
        assert_eq!(snapshot.failed_total, 3);
        assert_eq!(snapshot.transitions, 1);
        assert_eq!(snapshot.since, T0);
    }

    #[test]
    fn time_window_forgets_outcomes_older_than_the_window() {
        let settings = BreakerPolicy {
            window: Window::Time { ms: 10_000 },
            ..settings()
        };
        assert_eq!(settings.window.bucket_ms(), Some(1_000));
        let mut scenario = Scenario::new(settings);
        scenario.run(&[
            (CallFail, Closed, 1, 0),
            (CallFail, Closed, 2, 0),
            (CallFail, Closed, 3, 0),
            (Wait(9_999), Closed, 3, 0),
            (ExpectWindow(3, 3, 0), Closed, 3, 0),
            // Ten seconds on, the three failures have left the window.
            (Wait(1), Closed, 3, 0),
            (ExpectWindow(0, 0, 0), Closed, 3, 0),
            (CallFail, Closed, 4, 0),
            (CallOk, Closed, 5, 0),
            (Wait(4_000), Closed, 5, 0),
            (CallOk, Closed, 6, 0),
            (ExpectWindow(3, 1, 0), Closed, 6, 0),
            (CallFail, Open, 7, 0),
        ]);
    }

    #[test]
    fn time_window_buckets_scale_with_the_window() {
        assert_eq!(Window::Time { ms: 60_000 }.bucket_ms(), Some(1_000));
        assert_eq!(Window::Time { ms: 5_000 }.bucket_ms(), Some(500));
        assert_eq!(Window::Time { ms: 500 }.bucket_ms(), Some(50));
        assert_eq!(Window::Time { ms: 5 }.bucket_ms(), Some(1));
        assert_eq!(Window::Time { ms: 3_600_000 }.bucket_ms(), Some(6_000));
        assert_eq!(Window::Count(10).bucket_ms(), None);

        // A half-second window with 50 ms buckets.
        let mut scenario = Scenario::new(BreakerPolicy {
            window: Window::Time { ms: 500 },
            ..settings()
        });
        scenario.run(&[
            (CallFail, Closed, 1, 0),
            (Wait(250), Closed, 1, 0),
            (CallFail, Closed, 2, 0),
            (Wait(250), Closed, 2, 0),
            (ExpectWindow(1, 1, 0), Closed, 2, 0),
            (CallFail, Closed, 3, 0),
            (CallFail, Closed, 4, 0),
            (CallFail, Open, 5, 0),
        ]);
    }

    #[test]
    fn slow_call_rate_opens_and_slow_failures_count_twice() {
        let mut scenario = Scenario::new(BreakerPolicy {
            slow_call_rate_percent: 50.0,
            failure_rate_percent: 100.0,
            ..settings()
        });
        scenario.run(&[
            (CallSlow, Closed, 1, 0),
            (CallOk, Closed, 2, 0),
            (CallSlowFail, Closed, 3, 0),
            (ExpectWindow(3, 1, 2), Closed, 3, 0),
            // Two slow calls of four: 50 %.
            (CallOk, Open, 4, 0),
        ]);
        let snapshot = scenario.breaker.snapshot(scenario.now);
        assert_eq!((snapshot.failed_total, snapshot.slow_total), (1, 2));
    }

    #[test]
    fn a_call_exactly_at_the_slow_threshold_is_slow() {
        let mut breaker = Breaker::new("shop-a".to_owned(), settings());
        let permit = breaker.try_acquire(T0).expect("closed");
        breaker.record(permit, T0, CallOutcome::success(999));
        let permit = breaker.try_acquire(T0).expect("closed");
        breaker.record(permit, T0, CallOutcome::success(1_000));
        assert_eq!(breaker.snapshot(T0).window_slow, 1);
    }

    #[test]
    fn open_rejects_at_once_naming_the_breaker() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&TRIP);
        scenario.run(&[(Wait(3_000), Open, 4, 0), (CallOk, Open, 4, 1)]);
        let rejected = scenario.last_rejection.clone().expect("a rejection");
        assert_eq!(
            rejected,
            Rejected {
                breaker: "shop-a".to_owned(),
                state: Open,
                retry_at: Some(T0 + 10_000),
            }
        );
        assert_eq!(rejected.to_string(), r#"circuit breaker "shop-a" is open"#);
        let as_error: &dyn std::error::Error = &rejected;
        assert!(as_error.source().is_none());
        assert_eq!(
            scenario.breaker.snapshot(scenario.now).retry_at,
            Some(T0 + 10_000)
        );
    }

    #[test]
    fn after_the_open_wait_trials_that_succeed_close_the_breaker() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(9_999), Open, 4, 0),
            (CallOk, Open, 4, 1),
            (Wait(1), Open, 4, 1),
            // Looking does not start half-open; the next call does, as the first trial.
            (Acquire, HalfOpen, 5, 1),
            (Acquire, HalfOpen, 6, 1),
            // Only two trial calls.
            (Acquire, HalfOpen, 6, 2),
            (CallOk, HalfOpen, 6, 3),
            (ReportOk, HalfOpen, 6, 3),
            (ExpectWindow(1, 0, 0), HalfOpen, 6, 3),
            (ReportOk, Closed, 6, 3),
            // A fresh window: the failures from before do not linger.
            (ExpectWindow(0, 0, 0), Closed, 6, 3),
            (CallFail, Closed, 7, 3),
            (CallFail, Closed, 8, 3),
        ]);
        let rejected = scenario.last_rejection.clone().expect("a rejection");
        assert_eq!(rejected.state, HalfOpen);
        assert_eq!(rejected.retry_at, None);
        assert_eq!(
            rejected.to_string(),
            r#"circuit breaker "shop-a" is half-open and all its trial calls are taken"#
        );
        assert_eq!(scenario.breaker.snapshot(scenario.now).transitions, 3);
    }

    #[test]
    fn a_failed_trial_reopens_the_breaker_for_another_wait() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(10_000), Open, 4, 0),
            (CallOk, HalfOpen, 5, 0),
            (Wait(500), HalfOpen, 5, 0),
            // One failure of two trials is 50 %: at the threshold, so open again.
            (CallFail, Open, 6, 0),
            (Wait(9_999), Open, 6, 0),
            (CallOk, Open, 6, 1),
            (Wait(1), Open, 6, 1),
            (CallOk, HalfOpen, 7, 1),
            (CallOk, Closed, 8, 1),
        ]);
    }

    #[test]
    fn slow_trials_reopen_the_breaker() {
        let mut scenario = Scenario::new(BreakerPolicy {
            slow_call_rate_percent: 50.0,
            ..settings()
        });
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(10_000), Open, 4, 0),
            (Acquire, HalfOpen, 5, 0),
            (Acquire, HalfOpen, 6, 0),
            (ReportOk, HalfOpen, 6, 0),
            (ReportSlow, Open, 6, 0),
        ]);
    }

    #[test]
    fn a_released_permit_records_nothing_and_frees_its_trial() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&[
            (Acquire, Closed, 1, 0),
            (Release, Closed, 0, 0),
            (ExpectWindow(0, 0, 0), Closed, 0, 0),
        ]);
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(10_000), Open, 4, 0),
            (Acquire, HalfOpen, 5, 0),
            (Acquire, HalfOpen, 6, 0),
            // Both trials are out.
            (CallOk, HalfOpen, 6, 1),
            // One comes back unused: its slot serves another trial, which decides with the
            // one still out.
            (Release, HalfOpen, 5, 1),
            (CallOk, HalfOpen, 6, 1),
            (ReportOk, Closed, 6, 1),
        ]);
    }

    #[test]
    fn half_open_opens_again_when_trials_never_report() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(10_000), Open, 4, 0),
            (Acquire, HalfOpen, 5, 0),
            (Acquire, HalfOpen, 6, 0),
            (ReportOk, HalfOpen, 6, 0),
            // The deadline itself is still within the wait.
            (Wait(5_000), HalfOpen, 6, 0),
            (Wait(1), Open, 6, 0),
            // The late trial belongs to the old half-open state and changes nothing.
            (ReportOk, Open, 6, 0),
        ]);
        let snapshot = scenario.breaker.snapshot(scenario.now);
        // Open as of the deadline (T0 + 15 000), so the next wait counts from there.
        assert_eq!(snapshot.since, T0 + 15_000);
        assert_eq!(snapshot.retry_at, Some(T0 + 25_000));
        scenario.run(&[
            (Wait(9_998), Open, 6, 0),
            (CallOk, Open, 6, 1),
            (Wait(1), Open, 6, 1),
            (CallOk, HalfOpen, 7, 1),
        ]);
    }

    #[test]
    fn half_open_deadline_applies_even_if_too_few_trials_were_asked_for() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(10_000), Open, 4, 0),
            (CallOk, HalfOpen, 5, 0),
            // No second caller turns up: the breaker must not sit half-open forever.
            (Wait(60_000), Open, 5, 0),
        ]);
        // Long past deadline + open wait, so the next call starts a new trial period.
        scenario.run(&[(CallOk, HalfOpen, 6, 0), (CallOk, Closed, 7, 0)]);
    }

    #[test]
    fn with_a_probe_only_probe_results_end_the_open_state() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&[(SetProbing(true), Closed, 0, 0)]);
        scenario.run(&TRIP);
        scenario.run(&[
            // Far past the open wait, calls are still rejected.
            (Wait(100_000), Open, 4, 0),
            (CallOk, Open, 4, 1),
            (ProbeFail, Open, 4, 1),
            (ProbeOk, Open, 4, 1),
            // A failure restarts the streak of two.
            (ProbeFail, Open, 4, 1),
            (ProbeOk, Open, 4, 1),
            (CallOk, Open, 4, 2),
            (Wait(1_000), Open, 4, 2),
            (ProbeOk, Closed, 4, 2),
            (ExpectWindow(0, 0, 0), Closed, 4, 2),
            (CallOk, Closed, 5, 2),
        ]);
        let rejected = scenario.last_rejection.clone().expect("a rejection");
        assert_eq!(rejected.retry_at, None, "no time is promised while probing");
        let snapshot = scenario.breaker.snapshot(scenario.now);
        assert_eq!(snapshot.last_probe, Some((T0 + 101_000, true)));
        assert!(snapshot.probing);
        assert_eq!(snapshot.since, T0 + 101_000);
    }

    #[test]
    fn probe_successes_count_only_within_one_open_period() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&[
            (SetProbing(true), Closed, 0, 0),
            // Results while closed are only recorded.
            (ProbeOk, Closed, 0, 0),
            (ProbeOk, Closed, 0, 0),
        ]);
        scenario.run(&TRIP);
        scenario.run(&[
            (ProbeOk, Open, 4, 0),
            // Leave the open state another way (no probe for a while) and fail the trials.
            (SetProbing(false), Open, 4, 0),
            (Wait(10_000), Open, 4, 0),
            (CallOk, HalfOpen, 5, 0),
            (CallFail, Open, 6, 0),
            (SetProbing(true), Open, 6, 0),
            // The success from the earlier open period does not carry over.
            (ProbeOk, Open, 6, 0),
            (ProbeOk, Closed, 6, 0),
        ]);
    }

    #[test]
    fn turning_probing_off_restores_the_open_wait() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&[(SetProbing(true), Closed, 0, 0)]);
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(20_000), Open, 4, 0),
            (CallOk, Open, 4, 1),
            (SetProbing(false), Open, 4, 1),
            (CallOk, HalfOpen, 5, 1),
        ]);
    }

    #[test]
    fn late_outcome_from_an_earlier_generation_is_ignored_for_transitions() {
        let mut scenario = Scenario::new(BreakerPolicy {
            half_open_calls: 1,
            ..settings()
        });
        scenario.run(&[
            // A call permitted while closed, still running...
            (Acquire, Closed, 1, 0),
            (CallFail, Closed, 2, 0),
            (CallFail, Closed, 3, 0),
            (CallFail, Closed, 4, 0),
            (CallFail, Open, 5, 0),
            (Wait(10_000), Open, 5, 0),
            // ...and a trial call after the wait.
            (Acquire, HalfOpen, 6, 0),
            // The closed-era call fails late: counted, but it is not a trial result.
            (ReportFail, HalfOpen, 6, 0),
            (ExpectWindow(0, 0, 0), HalfOpen, 6, 0),
            (ReportOk, Closed, 6, 0),
        ]);
        let snapshot = scenario.breaker.snapshot(scenario.now);
        assert_eq!(snapshot.failed_total, 5);
    }

    #[test]
    fn late_outcome_does_not_leak_into_a_fresh_closed_window() {
        let mut scenario = Scenario::new(BreakerPolicy {
            half_open_calls: 1,
            ..settings()
        });
        scenario.run(&[(Acquire, Closed, 1, 0)]);
        let stale = *scenario.outstanding.front().expect("permit");
        assert_eq!((stale.state(), stale.generation()), (Closed, 0));
        scenario.run(&[
            (CallFail, Closed, 2, 0),
            (CallFail, Closed, 3, 0),
            (CallFail, Closed, 4, 0),
            (CallFail, Open, 5, 0),
            (Wait(10_000), Open, 5, 0),
            (CallOk, Closed, 6, 0),
            (ReportSlow, Closed, 6, 0),
            (ExpectWindow(0, 0, 0), Closed, 6, 0),
        ]);
        let snapshot = scenario.breaker.snapshot(scenario.now);
        assert_eq!(snapshot.slow_total, 1);
        assert_eq!(snapshot.transitions, 3);
    }

    #[test]
    fn an_open_breaker_keeps_the_calls_that_tripped_it_until_it_trips_again() {
        let mut scenario = Scenario::new(settings());
        assert_eq!(scenario.breaker.snapshot(T0).last_trip, None);
        scenario.run(&[
            (CallOk, Closed, 1, 0),
            (CallFail, Closed, 2, 0),
            (CallOk, Closed, 3, 0),
            (Wait(3), Closed, 3, 0),
            (CallFail, Open, 4, 0),
            // The window is cleared on opening; the trip keeps what it held.
            (ExpectWindow(0, 0, 0), Open, 4, 0),
        ]);
        let trip = scenario.breaker.snapshot(scenario.now).last_trip;
        assert_eq!(
            trip,
            Some(Trip {
                at: T0 + 3,
                cause: TripCause::FailureRate,
                calls: 4,
                failures: 2,
                slow: 0,
                failure_rate: 50.0,
                slow_rate: 0.0,
                failure_rate_threshold: 50.0,
                slow_rate_threshold: 100.0,
            })
        );
        // Still shown once closed again, until the next trip replaces it.
        scenario.run(&[
            (Wait(10_000), Open, 4, 0),
            (CallOk, HalfOpen, 5, 0),
            (CallOk, Closed, 6, 0),
        ]);
        assert_eq!(scenario.breaker.snapshot(scenario.now).last_trip, trip);
        scenario.run(&[
            (Acquire, Closed, 7, 0),
            (Acquire, Closed, 8, 0),
            (Acquire, Closed, 9, 0),
            (Acquire, Closed, 10, 0),
            (ReportSlow, Closed, 10, 0),
            (ReportSlow, Closed, 10, 0),
            (ReportSlow, Closed, 10, 0),
            (ReportSlow, Open, 10, 0),
        ]);
        let trip = scenario
            .breaker
            .snapshot(scenario.now)
            .last_trip
            .expect("tripped");
        assert_eq!(trip.cause, TripCause::SlowCallRate);
        assert_eq!((trip.calls, trip.failures, trip.slow), (4, 0, 4));
    }

    #[test]
    fn trials_that_fail_or_never_report_say_so_in_the_trip() {
        let mut scenario = Scenario::new(settings());
        scenario.run(&TRIP);
        scenario.run(&[
            (Wait(10_000), Open, 4, 0),
            (CallOk, HalfOpen, 5, 0),
            (CallFail, Open, 6, 0),
        ]);
        let trip = scenario
            .breaker
            .snapshot(scenario.now)
            .last_trip
            .expect("tripped");
        assert_eq!(trip.cause, TripCause::TrialCalls);
        assert_eq!((trip.calls, trip.failures), (2, 1));
        scenario.run(&[
            (Wait(10_000), Open, 6, 0),
            (Acquire, HalfOpen, 7, 0),
            (Wait(5_001), Open, 7, 0),
        ]);
        let trip = scenario
            .breaker
            .snapshot(scenario.now)
            .last_trip
            .expect("tripped");
        assert_eq!(trip.cause, TripCause::TrialDeadline);
        assert_eq!(trip.calls, 0, "no trial reported");
        assert_eq!(trip.at, scenario.now - 1, "as of the deadline");
    }

    #[test]
    fn since_is_fixed_by_the_first_use() {
        let mut breaker = Breaker::new("shop-a".to_owned(), settings());
        assert_eq!(breaker.state(T0 + 7), Closed);
        assert_eq!(breaker.snapshot(T0 + 50).since, T0 + 7);
    }

    #[test]
    fn snapshot_serialises_for_the_status_page() {
        assert_eq!(
            serde_json::to_value(HalfOpen).expect("serialise"),
            serde_json::json!("half_open")
        );
        assert_eq!(
            serde_json::to_value(Closed).expect("serialise"),
            serde_json::json!("closed")
        );
        let mut scenario = Scenario::new(settings());
        scenario.run(&TRIP);
        scenario.breaker.record_probe(T0 + 1, false);
        let json = serde_json::to_value(scenario.breaker.snapshot(T0 + 1)).expect("serialise");
        assert_eq!(json["name"], "shop-a");
        assert_eq!(json["state"], "open");
        assert_eq!(json["rejected_total"], 0);
        assert_eq!(json["retry_at"], T0 + 10_000);
        assert_eq!(json["last_probe"], serde_json::json!([T0 + 1, false]));
    }

    #[test]
    fn default_settings_are_valid() {
        assert_eq!(BreakerPolicy::default().validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_impossible_value() {
        let cases: Vec<(BreakerPolicy, &str)> = vec![
            (
                BreakerPolicy {
                    failure_rate_percent: 0.0,
                    ..settings()
                },
                "failure_rate_percent must be a percentage above 0 and at most 100, got 0",
            ),
            (
                BreakerPolicy {
                    failure_rate_percent: 120.0,
                    ..settings()
                },
                "failure_rate_percent must be a percentage above 0 and at most 100, got 120",
            ),
            (
                BreakerPolicy {
                    slow_call_rate_percent: f64::NAN,
                    ..settings()
                },
                "slow_call_rate_percent must be a percentage",
            ),
            (
                BreakerPolicy {
                    window: Window::Count(0),
                    ..settings()
                },
                "a count window must hold at least 1 call",
            ),
            (
                BreakerPolicy {
                    window: Window::Time { ms: 0 },
                    ..settings()
                },
                "a time window must span more than 0 ms, got 0",
            ),
            (
                BreakerPolicy {
                    window: Window::Count(3),
                    ..settings()
                },
                "minimum_calls (4) is larger than the count window (3 calls)",
            ),
            (
                BreakerPolicy {
                    slow_call_ms: 0,
                    ..settings()
                },
                "slow_call_ms must be more than 0 ms, got 0",
            ),
            (
                BreakerPolicy {
                    open_wait_ms: -1,
                    ..settings()
                },
                "open_wait_ms must be more than 0 ms, got -1",
            ),
            (
                BreakerPolicy {
                    half_open_max_wait_ms: 0,
                    ..settings()
                },
                "half_open_max_wait_ms must be more than 0 ms",
            ),
            (
                BreakerPolicy {
                    minimum_calls: 0,
                    ..settings()
                },
                "minimum_calls must be at least 1",
            ),
            (
                BreakerPolicy {
                    half_open_calls: 0,
                    ..settings()
                },
                "half_open_calls must be at least 1",
            ),
            (
                BreakerPolicy {
                    probe_successes_to_close: 0,
                    ..settings()
                },
                "probe_successes_to_close must be at least 1",
            ),
        ];
        for (settings, expected) in cases {
            let message = match settings.validate() {
                Ok(()) => panic!("{settings:?} should be rejected"),
                Err(error) => error.to_string(),
            };
            assert!(
                message.contains(expected),
                "message {message:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn unvalidated_settings_do_not_panic() {
        let mut breaker = Breaker::new(
            "odd".to_owned(),
            BreakerPolicy {
                window: Window::Count(0),
                half_open_calls: 0,
                minimum_calls: 0,
                probe_successes_to_close: 0,
                open_wait_ms: -5,
                ..settings()
            },
        );
        let permit = breaker.try_acquire(T0).expect("closed");
        breaker.record(permit, T0, CallOutcome::failure(1));
        assert_eq!(breaker.state(T0), Open);
        let permit = breaker.try_acquire(T0).expect("no wait, so half-open");
        assert_eq!(permit.state(), HalfOpen);
        breaker.record(permit, T0, CallOutcome::success(1));
        assert_eq!(breaker.state(T0), Closed);

        let mut timed = Breaker::new(
            "odd".to_owned(),
            BreakerPolicy {
                window: Window::Time { ms: -1 },
                ..settings()
            },
        );
        let permit = timed.try_acquire(T0).expect("closed");
        timed.record(permit, T0, CallOutcome::failure(1));
        assert_eq!(timed.snapshot(T0).window_calls, 1);
    }
}
