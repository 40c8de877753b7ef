//! Protection state shared by the connectors of a host: rate-limit budgets and circuit
//! breakers, behind two small traits.
//!
//! The embedded backend keeps both in process ([`InProcessCoordination`]): one host owns its
//! budgets and breakers. A scale-out backend keeps budgets where all hosts see them (a GCRA in
//! Redis); breakers stay local by design — each host decides from what it sees, so one host's
//! bad network does not open every host's breaker — and only probe results are shared.
//!
//! The algorithms are the pure state machines of [`crate::ratelimit`] and [`crate::breaker`];
//! these traits only say where their state lives. Times come from the caller.

use crate::breaker::{
    Breaker, BreakerPolicy, BreakerSnapshot, BreakerState, CallOutcome, CallPermit, Rejected,
};
use crate::ratelimit::{GcraState, Quota, Reservation};
use crate::{Millis, Result};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// How full a budget is, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetFill {
    /// Requests that would pass right now without waiting.
    pub available: u32,
    /// The most that can ever pass at once.
    pub burst: u32,
    /// When the next request may go.
    pub next_free_at: Millis,
}

/// Rate-limit budgets keyed by name (and, for per-target budgets, by name and target).
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Takes the earliest slot of `key` if it is at most `max_wait_ms` away.
    async fn reserve(
        &self,
        key: &str,
        quota: &Quota,
        now: Millis,
        max_wait_ms: i64,
    ) -> Result<Reservation>;
    /// The upstream said "nothing before `until`" (429, Retry-After, x-rate-limit-reset), at
    /// `now` (so a store on another clock can place `until` on its own).
    async fn push_back(&self, key: &str, quota: &Quota, now: Millis, until: Millis) -> Result<()>;
    async fn fill(&self, key: &str, quota: &Quota, now: Millis) -> Result<BudgetFill>;
}

/// Circuit breakers by name. Registered once from the config; unknown names are permitted
/// (a breaker that does not exist never rejects).
pub trait BreakerStore: Send + Sync {
    /// Adds a breaker or replaces its settings (its counts start afresh).
    fn register(&self, name: &str, settings: BreakerPolicy, probing: bool);
    /// A permit for one call, `None` when no breaker has that name.
    fn try_acquire(&self, name: &str, now: Millis) -> Result<Option<CallPermit>, Rejected>;
    /// The state right now, without taking a permit (so a half-open trial is not used up).
    fn state(&self, name: &str, now: Millis) -> Option<BreakerState>;
    fn record(&self, name: &str, permit: CallPermit, now: Millis, outcome: CallOutcome);
    /// Hands back a permit whose call never reached the upstream (see [`Breaker::release`]).
    fn release(&self, name: &str, permit: CallPermit);
    fn record_probe(&self, name: &str, now: Millis, ok: bool);
    /// Every breaker, by name.
    fn snapshots(&self, now: Millis) -> BTreeMap<String, BreakerSnapshot>;
}

/// A lock across hosts, for work that must happen once in a cluster at a time (an OAuth
/// refresh rotating a token every host uses). Only a shared store offers one: in one process,
/// a mutex does.
#[async_trait]
pub trait ClusterLock: Send + Sync {
    /// Takes `name` for `holder` (unique per attempt) for at most `ttl`; false when someone
    /// else holds it.
    async fn try_lock(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool>;
    /// Gives `name` back if `holder` still holds it; false when it had expired (and perhaps
    /// been taken by someone else, whose lock stays).
    async fn unlock(&self, name: &str, holder: &str) -> Result<bool>;
}

/// One probe result as hosts share it: its number in the breaker's sequence, and whether the
/// upstream answered healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedProbe {
    pub seq: u64,
    pub ok: bool,
}

/// Health probes shared across hosts: one host probes a breaker's upstream per interval (so N
/// hosts do not probe it N times), and every host records the result into its own breaker
/// (breakers still decide locally).
#[async_trait]
pub trait ProbeBoard: Send + Sync {
    /// Whether `holder` runs `breaker`'s probe now: the first to ask in each `interval` across
    /// hosts does.
    async fn take_probe_turn(
        &self,
        breaker: &str,
        holder: &str,
        interval: std::time::Duration,
    ) -> Result<bool>;
    /// Shares a probe's result; answers its number.
    async fn share_probe(&self, breaker: &str, ok: bool) -> Result<u64>;
    /// The latest result shared, if any.
    async fn latest_probe(&self, breaker: &str) -> Result<Option<SharedProbe>>;
}

/// Budgets and breakers in this process's memory.
#[derive(Debug, Default)]
pub struct InProcessCoordination {
    budgets: Mutex<HashMap<String, GcraState>>,
    breakers: Mutex<BTreeMap<String, Breaker>>,
}

impl InProcessCoordination {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_budget<T>(&self, key: &str, f: impl FnOnce(&mut GcraState) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain numbers;
        // the state is still usable.
        let mut budgets = self
            .budgets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(budgets.entry(key.to_string()).or_default())
    }

    fn with_breaker<T>(&self, name: &str, f: impl FnOnce(&mut Breaker) -> T) -> Option<T> {
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        breakers.get_mut(name).map(f)
    }
}

#[async_trait]
impl RateLimitStore for InProcessCoordination {
    async fn reserve(
        &self,
        key: &str,
        quota: &Quota,
        now: Millis,
        max_wait_ms: i64,
    ) -> Result<Reservation> {
        Ok(self.with_budget(key, |state| state.reserve(quota, now, max_wait_ms)))
    }

    async fn push_back(&self, key: &str, quota: &Quota, _now: Millis, until: Millis) -> Result<()> {
        self.with_budget(key, |state| state.push_back(quota, until));
        Ok(())
    }

    async fn fill(&self, key: &str, quota: &Quota, now: Millis) -> Result<BudgetFill> {
        Ok(self.with_budget(key, |state| BudgetFill {
            available: state.available(quota, now),
            burst: quota.burst,
            next_free_at: state.next_free_at(quota, now),
        }))
    }
}

impl BreakerStore for InProcessCoordination {
    fn register(&self, name: &str, settings: BreakerPolicy, probing: bool) {
        let mut breaker = Breaker::new(name.to_string(), settings);
        breaker.set_probing(probing);
        self.breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_string(), breaker);
    }

    fn try_acquire(&self, name: &str, now: Millis) -> Result<Option<CallPermit>, Rejected> {
        self.with_breaker(name, |breaker| breaker.try_acquire(now))
            .transpose()
    }

    fn state(&self, name: &str, now: Millis) -> Option<BreakerState> {
        self.with_breaker(name, |breaker| breaker.state(now))
    }

    fn record(&self, name: &str, permit: CallPermit, now: Millis, outcome: CallOutcome) {
        self.with_breaker(name, |breaker| breaker.record(permit, now, outcome));
    }

    fn release(&self, name: &str, permit: CallPermit) {
        self.with_breaker(name, |breaker| breaker.release(permit));
    }

    fn record_probe(&self, name: &str, now: Millis, ok: bool) {
        self.with_breaker(name, |breaker| breaker.record_probe(now, ok));
    }

    fn snapshots(&self, now: Millis) -> BTreeMap<String, BreakerSnapshot> {
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        breakers
            .iter_mut()
            .map(|(name, breaker)| (name.clone(), breaker.snapshot(now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::Window;
    use crate::conformance::{StoreFuture, TestStore};
    use std::sync::Arc;

    /// In-process budgets: a "second instance" is the same memory (one host).
    async fn in_process() -> TestStore<dyn RateLimitStore> {
        let store: Arc<dyn RateLimitStore> = Arc::new(InProcessCoordination::new());
        let again = store.clone();
        TestStore::new(store, move || -> StoreFuture<dyn RateLimitStore> {
            let store = again.clone();
            Box::pin(async move { store })
        })
    }

    crate::budget_conformance_tests!(in_process);

    #[tokio::test]
    async fn budgets_are_shared_by_key() {
        let store = InProcessCoordination::new();
        let quota = Quota::parse("1/s", None).unwrap();
        let first = store.reserve("shop", &quota, 0, 0).await.unwrap();
        assert!(first.is_granted());
        let second = store.reserve("shop", &quota, 10, 0).await.unwrap();
        assert_eq!(second, Reservation::Denied { retry_at: 1000 });
        let other = store.reserve("shop:target-2", &quota, 10, 0).await.unwrap();
        assert!(other.is_granted(), "another key has its own budget");
        store.push_back("shop", &quota, 10, 5000).await.unwrap();
        let fill = store.fill("shop", &quota, 1000).await.unwrap();
        assert_eq!((fill.available, fill.next_free_at), (0, 5000));
    }

    #[test]
    fn breakers_open_by_name_and_unknown_names_pass() {
        let store = InProcessCoordination::new();
        let settings = BreakerPolicy {
            window: Window::Count(2),
            minimum_calls: 2,
            ..BreakerPolicy::default()
        };
        store.register("shop", settings, false);
        for at in [0, 1] {
            let permit = store.try_acquire("shop", at).unwrap().unwrap();
            store.record("shop", permit, at, CallOutcome::failure(5));
        }
        let rejected = store.try_acquire("shop", 2).unwrap_err();
        assert_eq!(rejected.breaker, "shop");
        assert_eq!(store.state("shop", 2), Some(BreakerState::Open));
        assert_eq!(store.try_acquire("elsewhere", 2), Ok(None));
        assert_eq!(store.snapshots(2)["shop"].state, BreakerState::Open);
    }
}
