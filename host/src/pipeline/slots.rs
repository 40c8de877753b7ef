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
