//! Client-side rate limiting with GCRA, the generic cell rate algorithm.
//!
//! Upstreams publish limits such as "10 requests per second, bursts of 5" or "900 per 15
//! minutes". The host must stay under them without a background refill task and without
//! reading a clock, so this module is a pure state machine: a [`Quota`] says what the upstream
//! allows, a [`GcraState`] (one `i64`, cheap to store in any backend) remembers how much of it
//! is used, and every call takes the current time `now` from the caller.
//!
//! GCRA keeps a single *theoretical arrival time* (TAT): the time at which the budget would be
//! full again if no more requests were sent. With the emission interval `T = period / count`
//! and the tolerance `tau = (burst - 1) * T`, a request may go at the earliest time
//! `s = max(now, TAT - tau)`, and sending it moves the TAT to `max(TAT, now) + T`. Because an
//! idle TAT is raised to `now` before adding `T`, idle time never banks more than `burst`
//! requests.
//!
//! Arithmetic runs in microseconds so that rates such as `3/s` (T = 333 334 µs) or `1000/s`
//! (T = 1 000 µs) are exact enough; times handed back to the caller are rounded *up* to whole
//! milliseconds, so following them never sends a request early.

use crate::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

const MICROS_PER_MILLI: i64 = 1_000;
const MILLIS_PER_SECOND: i64 = 1_000;
const MILLIS_PER_MINUTE: i64 = 60 * MILLIS_PER_SECOND;
const MILLIS_PER_HOUR: i64 = 60 * MILLIS_PER_MINUTE;
const MILLIS_PER_DAY: i64 = 24 * MILLIS_PER_HOUR;

/// An upstream's rate limit: `count` requests per `per_ms` milliseconds, of which up to `burst`
/// may be sent at once after a quiet spell.
///
/// Build one with [`Quota::parse`] or [`Quota::new`], which reject impossible values; the
/// methods stay well-defined (never panic) even for a hand-built quota with zeros in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Requests allowed per period (at least 1).
    pub count: u32,
    /// The period in milliseconds (at least 1).
    pub per_ms: i64,
    /// How many requests may be sent back to back when the budget is full (at least 1).
    pub burst: u32,
}

/// Why a rate or burst was rejected. Each message quotes the input and shows a valid example.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error(
        "invalid rate {rate:?}: expected COUNT/PERIOD, for example \"10/s\", \"900/15min\" or \"2/500ms\""
    )]
    Format { rate: String },
    #[error(
        "invalid rate {rate:?}: the count before '/' must be a whole number from 1 to {max}, for example \"10/s\"",
        max = u32::MAX
    )]
    Count { rate: String },
    #[error(
        "invalid rate {rate:?}: the period after '/' needs a time unit (ms, s, min, h or day), for example \"5/min\""
    )]
    MissingUnit { rate: String },
    #[error(
        "invalid rate {rate:?}: unknown time unit {unit:?}; use ms, s, min, h or day, for example \"100/1h\""
    )]
    Unit { rate: String, unit: String },
    #[error(
        "invalid rate {rate:?}: the period must be a whole number greater than zero followed by a unit, for example \"1/s\" or \"900/15min\""
    )]
    Period { rate: String },
    #[error(
        "invalid rate {rate:?}: the period is too long to compute with; use at most a few thousand years, for example \"3/day\""
    )]
    PeriodTooLong { rate: String },
    #[error(
        "invalid rate {rate:?}: more than one request per microsecond cannot be scheduled; use a longer period, for example \"1000/ms\""
    )]
    TooFast { rate: String },
    #[error(
        "invalid burst {burst}: burst is how many requests may be sent at once and must be at least 1, for example burst = 5"
    )]
    Burst { burst: u32 },
}

impl QuotaError {
    /// The same error, quoting `rate` as the input (burst errors quote no rate).
    fn for_rate(self, rate: &str) -> QuotaError {
        let rate = rate.to_owned();
        match self {
            QuotaError::Format { .. } => QuotaError::Format { rate },
            QuotaError::Count { .. } => QuotaError::Count { rate },
            QuotaError::MissingUnit { .. } => QuotaError::MissingUnit { rate },
            QuotaError::Unit { unit, .. } => QuotaError::Unit { rate, unit },
            QuotaError::Period { .. } => QuotaError::Period { rate },
            QuotaError::PeriodTooLong { .. } => QuotaError::PeriodTooLong { rate },
            QuotaError::TooFast { .. } => QuotaError::TooFast { rate },
            QuotaError::Burst { burst } => QuotaError::Burst { burst },
        }
    }
}

impl Quota {
    /// A quota of `count` requests per `per_ms` milliseconds with bursts of `burst`, checked
    /// the same way as [`Quota::parse`].
    pub fn new(count: u32, per_ms: i64, burst: u32) -> Result<Quota, QuotaError> {
        let rate = || format!("{count}/{per_ms}ms");
        if count == 0 {
            return Err(QuotaError::Count { rate: rate() });
        }
        if per_ms <= 0 {
            return Err(QuotaError::Period { rate: rate() });
        }
        let Some(per_us) = per_ms.checked_mul(MICROS_PER_MILLI) else {
            return Err(QuotaError::PeriodTooLong { rate: rate() });
        };
        if i64::from(count) > per_us {
            return Err(QuotaError::TooFast { rate: rate() });
        }
        if burst == 0 {
            return Err(QuotaError::Burst { burst });
        }
        Ok(Quota {
            count,
            per_ms,
            burst,
        })
    }

    /// Parses a rate such as `1/s`, `10/sec`, `900/15min`, `5/m`, `100/1h`, `2/500ms` or
    /// `3/day`: a count, a slash, an optional whole multiplier (default 1) and a unit.
    ///
    /// Units (case-insensitive): `ms`; `s`, `sec`, `second`(`s`); `m`, `min`, `minute`(`s`);
    /// `h`, `hr`, `hour`(`s`); `d`, `day`(`s`). Spaces around the parts are allowed. `burst`
    /// defaults to 1, i.e. requests are evenly spaced.
    pub fn parse(rate: &str, burst: Option<u32>) -> Result<Quota, QuotaError> {
        let owned = || rate.to_owned();
        let (count_text, period_text) = rate
            .trim()
            .split_once('/')
            .ok_or_else(|| QuotaError::Format { rate: owned() })?;
        let count: u32 = count_text
            .trim()
            .parse()
            .map_err(|_| QuotaError::Count { rate: owned() })?;
        if count == 0 {
            return Err(QuotaError::Count { rate: owned() });
        }

        let period_text = period_text.trim();
        let digits_end = period_text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period_text.len());
        let (multiplier_text, unit_text) = period_text.split_at(digits_end);
        let multiplier: i64 = if multiplier_text.is_empty() {
            1
        } else {
            // Only digits here, so a parse failure means the number is too large.
            multiplier_text
                .parse()
                .map_err(|_| QuotaError::PeriodTooLong { rate: owned() })?
        };
        let unit = unit_text.trim().to_ascii_lowercase();
        let unit_ms = match unit.as_str() {
            "" if multiplier_text.is_empty() => return Err(QuotaError::Period { rate: owned() }),
            "" => return Err(QuotaError::MissingUnit { rate: owned() }),
            "ms" | "msec" | "millisecond" | "milliseconds" => 1,
            "s" | "sec" | "secs" | "second" | "seconds" => MILLIS_PER_SECOND,
            "m" | "min" | "mins" | "minute" | "minutes" => MILLIS_PER_MINUTE,
            "h" | "hr" | "hrs" | "hour" | "hours" => MILLIS_PER_HOUR,
            "d" | "day" | "days" => MILLIS_PER_DAY,
            _ if unit.starts_with(['.', ',']) => {
                return Err(QuotaError::Period { rate: owned() });
            }
            _ => {
                return Err(QuotaError::Unit {
                    rate: owned(),
                    unit: unit_text.trim().to_owned(),
                });
            }
        };
        if multiplier == 0 {
            return Err(QuotaError::Period { rate: owned() });
        }
        let per_ms = multiplier
            .checked_mul(unit_ms)
            .ok_or_else(|| QuotaError::PeriodTooLong { rate: owned() })?;

        // Re-check through `new`, but report errors against the text the user wrote.
        Quota::new(count, per_ms, burst.unwrap_or(1)).map_err(|error| error.for_rate(rate))
    }

    /// The emission interval `T` in microseconds: the steady spacing between requests.
    ///
    /// Rounded up (and at least 1 µs) so the host never runs faster than the upstream allows.
    pub fn emission_interval_us(&self) -> i64 {
        let per_us = self.per_ms.max(1).saturating_mul(MICROS_PER_MILLI);
        let count = i64::from(self.count.max(1));
        ceil_div(per_us, count).max(1)
    }

    /// The tolerance `tau = (burst - 1) * T` in microseconds: how far ahead of the steady
    /// schedule a burst may run.
    pub fn tolerance_us(&self) -> i64 {
        let extra_requests = i64::from(self.burst.max(1) - 1);
        extra_requests.saturating_mul(self.emission_interval_us())
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}ms (burst {})", self.count, self.per_ms, self.burst)
    }
}

/// How one quota is used so far: the theoretical arrival time (TAT) in microseconds since the
/// epoch. The TAT is when the budget would be full again if nothing more were sent.
///
/// [`Default`] (TAT 0) is a limiter that was never used: its whole burst is available.
/// It is plain data so that a shared backend can store it next to the upstream it limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct GcraState {
    /// Theoretical arrival time, microseconds since the Unix epoch.
    pub tat_us: i64,
}

/// The answer to [`GcraState::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reservation {
    /// The request is booked: the caller may send it at `at` (never earlier), which is
    /// `waited_ms` after `now` (0 when it may go at once).
    Granted { at: Millis, waited_ms: i64 },
    /// Sending now (or within the accepted wait) would break the quota; nothing was booked.
    /// `retry_at` is the earliest time a request could go without waiting, if no one else
    /// books in between.
    Denied { retry_at: Millis },
}

impl Reservation {
    /// Whether the request was booked.
    pub fn is_granted(&self) -> bool {
        matches!(self, Reservation::Granted { .. })
    }
}

impl GcraState {
    /// Books one request at the earliest permitted time, if that is at most `max_wait_ms` after
    /// `now`; otherwise changes nothing and says when to retry.
    ///
    /// With `max_wait_ms = 0` this is a plain allow/deny check (a negative value counts as 0).
    /// With a larger value, callers queue up: each booking moves the TAT, so callers reserving
    /// at the same instant get consecutive slots one emission interval apart.
    pub fn reserve(&mut self, quota: &Quota, now: Millis, max_wait_ms: i64) -> Reservation {
        let now_us = millis_to_micros(now);
        let at = micros_to_millis_ceil(self.earliest_start_us(quota, now_us));
        let waited_ms = at.saturating_sub(now);
        if waited_ms > max_wait_ms.max(0) {
            return Reservation::Denied { retry_at: at };
        }
        // An idle TAT (in the past) starts from `now`: quiet time never banks extra requests.
        self.tat_us = self
            .tat_us
            .max(now_us)
            .saturating_add(quota.emission_interval_us());
        Reservation::Granted { at, waited_ms }
    }

    /// Records that the upstream refused anything before `until` (a 429 with `Retry-After`,
    /// or `x-rate-limit-remaining: 0` with `x-rate-limit-reset`).
    ///
    /// Semantics: the budget counts as *empty at `until`*. Nothing passes before `until`,
    /// exactly one request passes at `until`, and after that the budget refills at the steady
    /// rate (one request per `T`), reaching the full burst `(burst - 1) * T` after `until`.
    /// In GCRA terms the TAT becomes at least `until + tau`; it is never moved earlier, so a
    /// stale or short `Retry-After` cannot undo bookings already made. An `until` in the past
    /// still applies: the budget is what it would be had it been drained at `until`.
    pub fn push_back(&mut self, quota: &Quota, until: Millis) {
        let empty_at_until = millis_to_micros(until).saturating_add(quota.tolerance_us());
        self.tat_us = self.tat_us.max(empty_at_until);
    }

    /// How many requests would pass at `now` without waiting, one after the other
    /// (`0..=burst`). For a status page's "budget" gauge.
    pub fn available(&self, quota: &Quota, now: Millis) -> u32 {
        let now_us = millis_to_micros(now);
        let start_us = self.tat_us.max(now_us);
        // Request k (from 0) passes now iff start + k*T - tau <= now.
        let slack_us = now_us
            .saturating_add(quota.tolerance_us())
            .saturating_sub(start_us);
        if slack_us < 0 {
            return 0;
        }
        let passing = slack_us / quota.emission_interval_us() + 1;
        u32::try_from(passing)
            .unwrap_or(u32::MAX)
            .min(quota.burst.max(1))
    }

    /// The earliest time at or after `now` at which one request would pass without waiting.
    pub fn next_free_at(&self, quota: &Quota, now: Millis) -> Millis {
        micros_to_millis_ceil(self.earliest_start_us(quota, millis_to_micros(now)))
    }

    /// The earliest time at or after `now` at which the whole burst is available again (the
    /// budget gauge reads full).
    pub fn full_at(&self, now: Millis) -> Millis {
        micros_to_millis_ceil(self.tat_us.max(millis_to_micros(now)))
    }

    /// `s = max(now, TAT - tau)` in microseconds.
    fn earliest_start_us(&self, quota: &Quota, now_us: i64) -> i64 {
        now_us.max(self.tat_us.saturating_sub(quota.tolerance_us()))
    }
}

fn millis_to_micros(ms: Millis) -> i64 {
    ms.saturating_mul(MICROS_PER_MILLI)
}

/// Rounds up, so a time handed to the caller is never before the theoretical one.
fn micros_to_millis_ceil(us: i64) -> Millis {
    ceil_div(us, MICROS_PER_MILLI)
}

/// `ceil(numerator / denominator)` for a positive denominator, correct for negative numerators.
fn ceil_div(numerator: i64, denominator: i64) -> i64 {
    let quotient = numerator.div_euclid(denominator);
    if numerator.rem_euclid(denominator) == 0 {
        quotient
    } else {
        quotient + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario starts at a realistic wall-clock time; table times are offsets from it.
    const T0: Millis = 1_700_000_000_000;

    #[derive(Debug, Clone, Copy)]
    enum Call {
        /// `reserve` with `max_wait_ms = 0`.
        Try,
        Reserve {
            max_wait_ms: i64,
        },
        PushBack {
            until: Millis,
        },
        Available,
        NextFreeAt,
        FullAt,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Expect {
        /// Granted at this offset; `waited_ms` must be `at - now`.
        Granted(Millis),
        Denied(Millis),
        Count(u32),
        Time(Millis),
        Nothing,
    }

    use Call::*;
    use Expect::*;

    /// One step: at offset `t`, make `call`, expect `expect` (times are offsets from `T0`).
    type Step = (Millis, Call, Expect);

    fn quota(rate: &str, burst: u32) -> Quota {
        Quota::parse(rate, Some(burst)).expect("test quota is valid")
    }

    fn run(quota: &Quota, state: &mut GcraState, steps: &[Step]) {
        for (index, &(t, call, expected)) in steps.iter().enumerate() {
            let now = T0 + t;
            let actual = match call {
                Try => reservation(state.reserve(quota, now, 0), now),
                Reserve { max_wait_ms } => reservation(state.reserve(quota, now, max_wait_ms), now),
                PushBack { until } => {
                    state.push_back(quota, T0 + until);
                    Nothing
                }
                Available => Count(state.available(quota, now)),
                NextFreeAt => Time(state.next_free_at(quota, now) - T0),
                FullAt => Time(state.full_at(now) - T0),
            };
            assert_eq!(
                actual, expected,
                "step {index}: at +{t} ms, {call:?} on {quota} (state {state:?})"
            );
        }
    }

    fn reservation(reservation: Reservation, now: Millis) -> Expect {
        match reservation {
            Reservation::Granted { at, waited_ms } => {
                assert_eq!(waited_ms, at - now, "waited_ms is the distance to `at`");
                Granted(at - T0)
            }
            Reservation::Denied { retry_at } => Denied(retry_at - T0),
        }
    }

    #[test]
    fn one_per_second_with_burst_one_spaces_requests_a_second_apart() {
        let quota = quota("1/s", 1);
        run(
            &quota,
            &mut GcraState::default(),
            &[
                (0, Available, Count(1)),
                (0, Try, Granted(0)),
                (0, Try, Denied(1000)),
                (999, Try, Denied(1000)),
                (999, Available, Count(0)),
                (1000, Try, Granted(1000)),
                (1500, Try, Denied(2000)),
                (2000, Try, Granted(2000)),
                // A long pause still gives back only one request.
                (60_000, Available, Count(1)),
                (60_000, Try, Granted(60_000)),
                (60_000, Try, Denied(61_000)),
            ],
        );
    }

    #[test]
    fn ten_per_second_with_burst_five_allows_five_at_once_then_one_every_100_ms() {
        let quota = quota("10/s", 5);
        run(
            &quota,
            &mut GcraState::default(),
            &[
                (0, Available, Count(5)),
                (0, Try, Granted(0)),
                (0, Try, Granted(0)),
                (0, Try, Granted(0)),
                (0, Try, Granted(0)),
                (0, Try, Granted(0)),
                (0, Try, Denied(100)),
                (0, Available, Count(0)),
                (99, Try, Denied(100)),
                (100, Try, Granted(100)),
                (100, Try, Denied(200)),
                (150, Try, Denied(200)),
                (200, Try, Granted(200)),
                (300, Try, Granted(300)),
                (300, Try, Denied(400)),
                // Half a second without requests refills the burst, and no more.
                (800, Available, Count(5)),
                (1_000, Available, Count(5)),
            ],
        );
    }

    #[test]
    fn nine_hundred_per_fifteen_minutes_with_full_burst() {
        let quota = quota("900/15min", 900);
        assert_eq!(quota.emission_interval_us(), 1_000_000);
        let mut steps: Vec<Step> = vec![(0, Try, Granted(0)); 900];
        steps.extend([
            (0, Try, Denied(1_000)),
            (0, Available, Count(0)),
            (0, FullAt, Time(900_000)),
            (1_000, Try, Granted(1_000)),
            (1_000, Try, Denied(2_000)),
            (450_000, Available, Count(449)),
            // After a full period of quiet the whole burst is back, and no more.
            (2 * 900_000, Available, Count(900)),
        ]);
        steps.extend(vec![(2 * 900_000, Try, Granted(2 * 900_000)); 900]);
        steps.push((2 * 900_000, Try, Denied(2 * 900_000 + 1_000)));
        run(&quota, &mut GcraState::default(), &steps);
    }

    #[test]
    fn fifty_callers_reserving_at_once_get_consecutive_slots() {
        let quota = quota("1/s", 1);
        let mut steps: Vec<Step> = (0..50)
            .map(|k| {
                (
                    0,
                    Reserve {
                        max_wait_ms: 60_000,
                    },
                    Granted(k * 1_000),
                )
            })
            .collect();
        steps.extend([
            (0, Available, Count(0)),
            (0, NextFreeAt, Time(50_000)),
            (
                0,
                Reserve {
                    max_wait_ms: 60_000,
                },
                Granted(50_000),
            ),
            (50_000, Try, Denied(51_000)),
            (51_000, Try, Granted(51_000)),
        ]);
        run(&quota, &mut GcraState::default(), &steps);
    }

    #[test]
    fn reservation_beyond_max_wait_is_denied_and_changes_nothing() {
        let quota = quota("1/s", 1);
        let mut state = GcraState::default();
        run(
            &quota,
            &mut state,
            &[
                (0, Reserve { max_wait_ms: 2_000 }, Granted(0)),
                (0, Reserve { max_wait_ms: 2_000 }, Granted(1_000)),
                (0, Reserve { max_wait_ms: 2_000 }, Granted(2_000)),
            ],
        );
        let before = state;
        run(
            &quota,
            &mut state,
            &[
                (0, Reserve { max_wait_ms: 2_999 }, Denied(3_000)),
                (0, Try, Denied(3_000)),
                // A negative wait is treated like zero.
                (0, Reserve { max_wait_ms: -5 }, Denied(3_000)),
            ],
        );
        assert_eq!(state, before, "a denial must not move the TAT");
        run(
            &quota,
            &mut state,
            &[
                (0, Reserve { max_wait_ms: 3_000 }, Granted(3_000)),
                (500, Reserve { max_wait_ms: 3_500 }, Granted(4_000)),
            ],
        );
    }

    #[test]
    fn idle_time_gives_back_at_most_one_burst() {
        let quota = quota("10/s", 5);
        let mut steps: Vec<Step> = vec![(0, Try, Granted(0)); 5];
        steps.extend([
            (0, Try, Denied(100)),
            // A minute of quiet would be 600 requests' worth, but only the burst comes back.
            (60_000, Available, Count(5)),
            (60_000, FullAt, Time(60_000)),
        ]);
        steps.extend(vec![(60_000, Try, Granted(60_000)); 5]);
        steps.extend([
            (60_000, Try, Denied(60_100)),
            (60_000, Reserve { max_wait_ms: 1_000 }, Granted(60_100)),
            (60_000, Reserve { max_wait_ms: 1_000 }, Granted(60_200)),
        ]);
        run(&quota, &mut GcraState::default(), &steps);
    }

    #[test]
    fn push_back_blocks_until_then_allows_one_request_and_refills_steadily() {
        let quota = quota("10/s", 5);
        run(
            &quota,
            &mut GcraState::default(),
            &[
                (0, Try, Granted(0)),
                (0, Available, Count(4)),
                // 429 with Retry-After: 5 s.
                (0, PushBack { until: 5_000 }, Nothing),
                (0, Available, Count(0)),
                (0, Try, Denied(5_000)),
                (0, NextFreeAt, Time(5_000)),
                (4_999, Try, Denied(5_000)),
                // Exactly one request at `until`, not a burst.
                (5_000, Available, Count(1)),
                (5_000, Try, Granted(5_000)),
                (5_000, Try, Denied(5_100)),
                (5_100, Try, Granted(5_100)),
                (5_100, Available, Count(0)),
                // The burst refills at the steady rate: full again 400 ms after the last send.
                (5_500, Available, Count(4)),
                (5_500, FullAt, Time(5_600)),
                (5_600, Available, Count(5)),
            ],
        );
    }

    #[test]
    fn push_back_with_reservations_queues_behind_until() {
        let quota = quota("1/s", 1);
        run(
            &quota,
            &mut GcraState::default(),
            &[
                (0, PushBack { until: 10_000 }, Nothing),
                (
                    0,
                    Reserve {
                        max_wait_ms: 60_000,
                    },
                    Granted(10_000),
                ),
                (
                    0,
                    Reserve {
                        max_wait_ms: 60_000,
                    },
                    Granted(11_000),
                ),
                (0, Reserve { max_wait_ms: 5_000 }, Denied(12_000)),
            ],
        );
    }

    #[test]
    fn push_back_never_pulls_bookings_earlier() {
        let quota = quota("1/s", 1);
        let mut state = GcraState::default();
        let mut steps: Vec<Step> = (0..10)
            .map(|k| {
                (
                    0,
                    Reserve {
                        max_wait_ms: 60_000,
                    },
                    Granted(k * 1_000),
                )
            })
            .collect();
        steps.push((0, NextFreeAt, Time(10_000)));
        run(&quota, &mut state, &steps);
        let before = state;
        run(
            &quota,
            &mut state,
            &[
                // An upstream saying "wait 3 s" must not free the slots booked up to 10 s.
                (0, PushBack { until: 3_000 }, Nothing),
                (0, NextFreeAt, Time(10_000)),
                (0, Try, Denied(10_000)),
            ],
        );
        assert_eq!(state, before);
    }

    #[test]
    fn push_back_to_a_past_instant_counts_the_budget_as_drained_then() {
        let quota = quota("10/s", 5);
        run(
            &quota,
            &mut GcraState::default(),
            &[
                (1_000, Available, Count(5)),
                // Drained at +800: one passes at +800, two more refilled by +1000.
                (1_000, PushBack { until: 800 }, Nothing),
                (1_000, Available, Count(3)),
                (1_000, FullAt, Time(1_200)),
                // Retry-After: 0 leaves one request, not the burst.
                (2_000, PushBack { until: 2_000 }, Nothing),
                (2_000, Available, Count(1)),
            ],
        );
    }

    #[test]
    fn available_next_free_at_and_full_at_describe_the_budget() {
        let quota = quota("10/s", 5);
        let mut steps: Vec<Step> = vec![
            (0, Available, Count(5)),
            (0, NextFreeAt, Time(0)),
            (0, FullAt, Time(0)),
        ];
        steps.extend(vec![(0, Try, Granted(0)); 5]);
        steps.extend([
            (0, Available, Count(0)),
            (0, NextFreeAt, Time(100)),
            (0, FullAt, Time(500)),
            (99, Available, Count(0)),
            (100, Available, Count(1)),
            (250, Available, Count(2)),
            (250, NextFreeAt, Time(250)),
            (250, FullAt, Time(500)),
            (500, Available, Count(5)),
            (10_000, Available, Count(5)),
            (10_000, NextFreeAt, Time(10_000)),
        ]);
        run(&quota, &mut GcraState::default(), &steps);
    }

    #[test]
    fn uneven_intervals_round_up_so_callers_never_go_early() {
        // 3/s: T = 333 334 µs. Slots land at ceil(k * 333.334 ms).
        let quota = quota("3/s", 1);
        assert_eq!(quota.emission_interval_us(), 333_334);
        run(
            &quota,
            &mut GcraState::default(),
            &[
                (
                    0,
                    Reserve {
                        max_wait_ms: 10_000,
                    },
                    Granted(0),
                ),
                (
                    0,
                    Reserve {
                        max_wait_ms: 10_000,
                    },
                    Granted(334),
                ),
                (
                    0,
                    Reserve {
                        max_wait_ms: 10_000,
                    },
                    Granted(667),
                ),
                (
                    0,
                    Reserve {
                        max_wait_ms: 10_000,
                    },
                    Granted(1_001),
                ),
                (0, Available, Count(0)),
            ],
        );

        // 1000/s is exact: one slot per millisecond.
        let quota = self::quota("1000/s", 1);
        assert_eq!(quota.emission_interval_us(), 1_000);
        let steps: Vec<Step> = (0..20)
            .map(|k| (0, Reserve { max_wait_ms: 100 }, Granted(k)))
            .collect();
        run(&quota, &mut GcraState::default(), &steps);
    }

    #[test]
    fn parse_accepts_the_documented_forms() {
        let cases: &[(&str, Option<u32>, u32, i64, u32)] = &[
            ("1/s", None, 1, 1_000, 1),
            ("10/sec", Some(5), 10, 1_000, 5),
            ("900/15min", Some(900), 900, 900_000, 900),
            ("5/m", None, 5, 60_000, 1),
            ("100/1h", None, 100, 3_600_000, 1),
            ("2/500ms", None, 2, 500, 1),
            ("3/day", None, 3, 86_400_000, 1),
            ("3/d", None, 3, 86_400_000, 1),
            (" 7 / 2 Seconds ", Some(2), 7, 2_000, 2),
            ("60/minute", None, 60, 60_000, 1),
            ("1/24hours", None, 1, 86_400_000, 1),
            ("1000/ms", None, 1_000, 1, 1),
        ];
        for &(rate, burst, count, per_ms, expected_burst) in cases {
            assert_eq!(
                Quota::parse(rate, burst),
                Ok(Quota {
                    count,
                    per_ms,
                    burst: expected_burst
                }),
                "parsing {rate:?}"
            );
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong_and_show_an_example() {
        let cases: &[(&str, Option<u32>, &str)] = &[
            ("10", None, "expected COUNT/PERIOD, for example \"10/s\""),
            ("", None, "expected COUNT/PERIOD"),
            ("0/s", None, "must be a whole number from 1"),
            ("-1/s", None, "must be a whole number from 1"),
            ("x/s", None, "must be a whole number from 1"),
            ("1.5/s", None, "must be a whole number from 1"),
            ("99999999999/s", None, "must be a whole number from 1"),
            (
                "10/",
                None,
                "the period must be a whole number greater than zero",
            ),
            (
                "10/0s",
                None,
                "the period must be a whole number greater than zero",
            ),
            (
                "10/1.5h",
                None,
                "the period must be a whole number greater than zero",
            ),
            ("10/60", None, "needs a time unit"),
            ("10/fortnight", None, "unknown time unit \"fortnight\""),
            ("10/5 weeks", None, "unknown time unit \"weeks\""),
            ("1/99999999999999999999s", None, "too long"),
            ("1/9999999999999999day", None, "too long"),
            ("2000/ms", None, "more than one request per microsecond"),
            ("10/s", Some(0), "invalid burst 0"),
        ];
        for &(rate, burst, expected) in cases {
            let message = match Quota::parse(rate, burst) {
                Ok(quota) => panic!("{rate:?} should not parse, got {quota:?}"),
                Err(error) => error.to_string(),
            };
            assert!(
                message.contains(expected),
                "{rate:?}: message {message:?} should contain {expected:?}"
            );
            assert!(
                message.contains("for example"),
                "{rate:?}: message {message:?} should show an example"
            );
            if burst != Some(0) {
                assert!(
                    message.contains(&format!("{rate:?}")),
                    "{rate:?}: message {message:?} should quote the input"
                );
            }
        }
    }

    #[test]
    fn new_checks_the_same_limits_as_parse() {
        assert!(Quota::new(1, 1_000, 1).is_ok());
        assert!(matches!(
            Quota::new(0, 1_000, 1),
            Err(QuotaError::Count { .. })
        ));
        assert!(matches!(
            Quota::new(1, 0, 1),
            Err(QuotaError::Period { .. })
        ));
        assert!(matches!(
            Quota::new(1, -5, 1),
            Err(QuotaError::Period { .. })
        ));
        assert!(matches!(
            Quota::new(1, i64::MAX, 1),
            Err(QuotaError::PeriodTooLong { .. })
        ));
        assert!(matches!(
            Quota::new(1, 1_000, 0),
            Err(QuotaError::Burst { burst: 0 })
        ));
    }

    #[test]
    fn hand_built_degenerate_quota_does_not_panic() {
        let quota = Quota {
            count: 0,
            per_ms: 0,
            burst: 0,
        };
        let mut state = GcraState::default();
        assert!(state.reserve(&quota, T0, 0).is_granted());
        assert_eq!(state.available(&quota, T0), 0);
        assert_eq!(state.next_free_at(&quota, T0), T0 + 1);
        state.push_back(&quota, i64::MAX);
        assert!(!state.reserve(&quota, T0, 0).is_granted());
        assert!(state.reserve(&quota, T0, i64::MAX).is_granted());
    }

    #[test]
    fn state_serialises_as_plain_data() {
        let state = GcraState { tat_us: 42 };
        let json = serde_json::to_string(&state).expect("serialise");
        assert_eq!(json, r#"{"tat_us":42}"#);
        assert_eq!(
            serde_json::from_str::<GcraState>(&json).expect("deserialise"),
            state
        );
    }
}
