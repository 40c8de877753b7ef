//! Worker slots shared by every pipeline: a pipeline leases work only for slots it holds, so
//! nothing waits leased in a local queue behind a slow call, and it gathers freed slots into
//! one lease of several rather than one store write per call.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a pipeline waits to gather free slots into one lease.
const GATHER_WAIT: Duration = Duration::from_millis(5);

/// A quarter of `concurrency` (at most `batch`), or whatever is free after a few milliseconds
/// (at least one), topped up with any others free at once, up to `batch`; `None` when `stop`
/// fired first.
pub(super) async fn gather_slots(
    slots: &Arc<Semaphore>,
    concurrency: usize,
    batch: u32,
    stop: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    let gather = (concurrency / 4).clamp(1, batch.max(1) as usize);
    let mut free = take_slots(slots, gather, stop).await?;
    let extra = slots
        .available_permits()
        .min((batch as usize).saturating_sub(free.num_permits()));
    if extra > 0
        && let Ok(more) = slots.clone().try_acquire_many_owned(extra as u32)
    {
        free.merge(more);
    }
    Some(free)
}

/// Takes `wanted` slots, or after a short wait whatever is free (at least one); `None` when
/// `stop` fired first.
async fn take_slots(
    slots: &Arc<Semaphore>,
    wanted: usize,
    stop: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
    tokio::select! {
        () = stop.cancelled() => return None,
        gathered = tokio::time::timeout(GATHER_WAIT, slots.clone().acquire_many_owned(wanted)) => {
            if let Ok(Ok(permits)) = gathered {
                return Some(permits);
            }
        }
    }
    tokio::select! {
        () = stop.cancelled() => None,
        one = slots.clone().acquire_owned() => one.ok(),
    }
}

/// Returns true when `stop` fired; otherwise waits `idle` or until a running call finishes.
pub(super) async fn wait_or_stop(
    stop: &CancellationToken,
    idle: Duration,
    running: &mut JoinSet<()>,
) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(idle) => false,
        Some(_) = running.join_next(), if !running.is_empty() => false,
    }
}

/// After a stop: lets in-flight calls finish within `grace`, then abandons the rest (their
/// leases expire and another worker takes them over).
/// [`wait_or_stop`], also ending early when `nudge` is notified (a WebSub delivery made a
/// target due).
pub(super) async fn wait_or_stop_or_nudge(
    stop: &CancellationToken,
    idle: Duration,
    running: &mut JoinSet<()>,
    nudge: Option<&tokio::sync::Notify>,
) -> bool {
    let Some(nudge) = nudge else {
        return wait_or_stop(stop, idle, running).await;
    };
    tokio::select! {
        () = nudge.notified() => false,
        stopped = wait_or_stop(stop, idle, running) => stopped,
    }
}

pub(super) async fn drain(connector: &str, mut running: JoinSet<()>, grace: Duration) {
    if running.is_empty() {
        return;
    }
    tracing::info!(%connector, in_flight = running.len(),
        "stopping: waiting up to {grace:?} for in-flight calls");
    let drained = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(%connector, abandoned = running.len(),
            "calls still running after the grace period were abandoned; their leases will expire");
        running.shutdown().await;
    }
}

/// When this pipeline's deferred targets come back, so that it looks for due work at that
/// moment rather than at the next idle tick: a per-host budget's held slot is spent on time,
/// not in a burst with the others that came due during the tick.
#[derive(Default)]
pub(super) struct Returns {
    times: std::sync::Mutex<std::collections::BinaryHeap<std::cmp::Reverse<i64>>>,
}

/// Return times remembered at most; past it the latest are dropped (they wait for a tick).
const MAX_RETURNS: usize = 10_000;

impl Returns {
    pub(super) fn note(&self, at: i64) {
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() < MAX_RETURNS {
            times.push(std::cmp::Reverse(at));
        }
    }

    /// How long to wait before looking again: until the next return after `now`, at most
    /// `idle`. Returns already passed are forgotten.
    pub(super) fn wait(&self, now: i64, idle: Duration) -> Duration {
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        while times.peek().is_some_and(|next| next.0 <= now) {
            times.pop();
        }
        match times.peek() {
            Some(next) => idle.min(Duration::from_millis((next.0 - now).unsigned_abs())),
            None => idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_return_shortens_the_idle_wait_and_passed_ones_are_forgotten() {
        let returns = Returns::default();
        let idle = Duration::from_secs(1);
        assert_eq!(returns.wait(0, idle), idle);
        returns.note(300);
        returns.note(120);
        returns.note(5_000);
        assert_eq!(returns.wait(100, idle), Duration::from_millis(20));
        assert_eq!(returns.wait(200, idle), Duration::from_millis(100));
        assert_eq!(
            returns.wait(300, idle),
            idle,
            "the next is beyond the idle wait"
        );
        assert_eq!(returns.wait(4_990, idle), Duration::from_millis(10));
    }
}
