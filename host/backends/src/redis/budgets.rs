//! [`RateLimitStore`] in Redis: one budget for every host of a cluster, as a GCRA in one Lua
//! script, so a "5 requests/s" quota holds at the upstream however many hosts call it.
//!
//! The script is [`crate::ratelimit::GcraState`] line for line; the state is one key per budget
//! holding the theoretical arrival time in microseconds (`P:budget:KEY`), expiring when the
//! budget is full again. Time is **Redis's own clock** (`TIME`), read inside the script: hosts'
//! clocks drift apart, and a budget booked by clocks a second apart would let twice the quota
//! through. The script answers in durations ("the slot is 40 ms from now"), which the caller
//! adds to its own `now`, so each host waits the right time on its own clock.
//!
//! [`RedisBudgets::on_caller_clock`] runs the same script on the caller's times instead, for the
//! conformance suite's exact instants.

use super::RedisStore;
use crate::coordination::{BudgetFill, RateLimitStore};
use crate::ratelimit::{Quota, Reservation};
use crate::{BackendError, Millis, Result};
use async_trait::async_trait;
use redis::Script;
use std::sync::LazyLock;

/// KEYS: the budget. ARGV: operation ('reserve', 'push' or 'fill'), T µs, tau µs, burst,
/// operand µs (the accepted wait; the push-back's offset from now), the caller's now in µs or
/// '' for Redis's clock. Answers `{granted, µs from now to the slot}` for 'reserve',
/// `{available, µs from now to the next free slot}` for 'fill', `{}` for 'push'.
const GCRA: &str = r#"
local now
if ARGV[6] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[6])
end
local emission, tolerance, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local operand = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local function store(new_tat)
  if ARGV[6] == '' then
    local ttl = math.ceil((new_tat - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
  else
    redis.call('SET', KEYS[1], string.format('%.0f', new_tat))
  end
end
local start = math.max(now, tat - tolerance)
if ARGV[1] == 'reserve' then
  if start - now > operand then return {0, start - now} end
  store(math.max(tat, now) + emission)
  return {1, start - now}
elseif ARGV[1] == 'push' then
  local drained = now + operand + tolerance
  if drained > tat then store(drained) end
  return {}
else
  local slack = now + tolerance - math.max(tat, now)
  local available = 0
  if slack >= 0 then available = math.min(math.floor(slack / emission) + 1, burst) end
  return {available, start - now}
end
"#;

static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));

/// The largest interval the script computes with exactly (Lua numbers are doubles): about 142
/// years in microseconds.
const MAX_EXACT_US: i64 = 1 << 52;

/// Rate-limit budgets in Redis.
#[derive(Debug, Clone)]
pub struct RedisBudgets {
    store: RedisStore,
    caller_clock: bool,
}

impl RedisBudgets {
    /// Budgets on Redis's clock: what hosts share.
    pub fn new(store: RedisStore) -> Self {
        Self {
            store,
            caller_clock: false,
        }
    }

    /// Budgets on the caller's `now` (tests stating exact instants); every caller must then
    /// share one clock.
    pub fn on_caller_clock(store: RedisStore) -> Self {
        Self {
            store,
            caller_clock: true,
        }
    }

    async fn gcra(
        &self,
        operation: &str,
        key: &str,
        quota: &Quota,
        now: Millis,
        operand_us: i64,
    ) -> Result<Vec<i64>> {
        let (emission, tolerance) = (quota.emission_interval_us(), quota.tolerance_us());
        if emission > MAX_EXACT_US || tolerance > MAX_EXACT_US {
            return Err(BackendError::Refused(format!(
                "budget {key:?}: a period this long cannot be kept in Redis (at most 142 years \
                 between requests or in a burst)"
            )));
        }
        let caller_now = if self.caller_clock {
            now.saturating_mul(1000).to_string()
        } else {
            String::new()
        };
        let budget = self.store.key(&format!("budget:{key}"));
        self.store
            .run(
                "using a rate-limit budget",
                &GCRA_SCRIPT,
                &[&budget],
                &[
                    &operation,
                    &emission,
                    &tolerance,
                    &i64::from(quota.burst.max(1)),
                    &operand_us.clamp(-MAX_EXACT_US, MAX_EXACT_US),
                    &caller_now,
                ],
            )
            .await
    }
}

/// `now` plus a script's µs from its now, rounded up (never early).
fn after(now: Millis, micros: i64) -> Millis {
    now.saturating_add(micros.max(0).saturating_add(999) / 1000)
}

fn corrupt(answer: &[i64]) -> BackendError {
    BackendError::Corrupt {
        context: "a rate-limit budget in Redis",
        reason: format!("the script answered {answer:?}"),
    }
}

#[async_trait]
impl RateLimitStore for RedisBudgets {
    async fn reserve(
        &self,
        key: &str,
        quota: &Quota,
        now: Millis,
        max_wait_ms: i64,
    ) -> Result<Reservation> {
        let max_wait_us = max_wait_ms.max(0).saturating_mul(1000);
        let answer = self.gcra("reserve", key, quota, now, max_wait_us).await?;
        match answer.as_slice() {
            [1, wait_us] => {
                let at = after(now, *wait_us);
                Ok(Reservation::Granted {
                    at,
                    waited_ms: at - now,
                })
            }
            [0, wait_us] => Ok(Reservation::Denied {
                retry_at: after(now, *wait_us),
            }),
            _ => Err(corrupt(&answer)),
        }
    }

    async fn push_back(&self, key: &str, quota: &Quota, now: Millis, until: Millis) -> Result<()> {
        let offset_us = until.saturating_sub(now).saturating_mul(1000);
        self.gcra("push", key, quota, now, offset_us).await?;
        Ok(())
    }

    async fn fill(&self, key: &str, quota: &Quota, now: Millis) -> Result<BudgetFill> {
        let answer = self.gcra("fill", key, quota, now, 0).await?;
        match answer.as_slice() {
            [available, wait_us] => Ok(BudgetFill {
                available: u32::try_from(*available).unwrap_or(0),
                burst: quota.burst,
                next_free_at: after(now, *wait_us),
            }),
            _ => Err(corrupt(&answer)),
        }
    }
}
