//! In-flight caps (`in_flight = N` on a budget): at most N requests under the budget's key —
//! the one shared budget, each target's, or each host's registrable domain — are out at once,
//! counted from the send until the plugin drops the response. A request past the cap waits in
//! the call (a per-host budget at most [`super::held::HOST_WAIT`], as for its rate, so one busy
//! host never holds the workers other hosts need); past that the call is deferred.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Keys whose gates are remembered; past it, idle gates are forgotten (a crawl over a million
/// hosts must not grow this without bound). A key in use is never forgotten.
pub const MAX_GATES: usize = 100_000;
/// How long after a deferral for a full gate the target comes back.
pub const BUSY_RETRY: Duration = Duration::from_millis(250);

/// One gate per key, with the cap it was made for.
#[derive(Default)]
pub struct InFlightGates {
    gates: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
}

impl InFlightGates {
    /// A place among `key`'s `limit` requests in flight, waiting at most `wait`.
    pub async fn enter(
        &self,
        key: &str,
        limit: u32,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let gate = self.gate(key, limit);
        if let Ok(permit) = gate.clone().try_acquire_owned() {
            return Some(permit);
        }
        tokio::time::timeout(wait, gate.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }

    fn gate(&self, key: &str, limit: u32) -> Arc<Semaphore> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cap, gate)) = gates.get(key)
            && *cap == limit
        {
            return gate.clone();
        }
        if gates.len() >= MAX_GATES {
            gates.retain(|_, (cap, gate)| gate.available_permits() < *cap as usize);
        }
        // A new cap (a reload) gets a new gate; requests out under the old one finish there.
        let gate = Arc::new(Semaphore::new(limit as usize));
        gates.insert(key.to_string(), (limit, gate.clone()));
        gate
    }

    /// Gates remembered (for tests of the bound).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.gates.lock().map_or(0, |gates| gates.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_gate_waits_then_refuses_and_a_freed_place_lets_one_in() {
        let gates = InFlightGates::default();
        let wait = Duration::from_millis(20);
        let first = gates.enter("host-a", 2, wait).await.expect("first");
        let _second = gates.enter("host-a", 2, wait).await.expect("second");
        assert!(
            gates.enter("host-a", 2, wait).await.is_none(),
            "the third waits, then not"
        );
        assert!(
            gates.enter("host-b", 2, wait).await.is_some(),
            "other keys are apart"
        );
        let waiting = gates.enter("host-a", 2, Duration::from_secs(5));
        drop(first);
        assert!(
            waiting.await.is_some(),
            "a freed place lets the waiting one in"
        );
    }

    #[tokio::test]
    async fn idle_gates_are_forgotten_at_the_bound_but_busy_ones_kept() {
        let gates = InFlightGates::default();
        let busy = gates.enter("busy", 1, Duration::ZERO).await.expect("busy");
        for n in 0..MAX_GATES {
            drop(gates.enter(&format!("h{n}"), 1, Duration::ZERO).await);
        }
        assert!(gates.remembered() <= MAX_GATES, "{}", gates.remembered());
        assert!(
            gates.enter("busy", 1, Duration::ZERO).await.is_none(),
            "the busy gate kept its count"
        );
        drop(busy);
    }
}
