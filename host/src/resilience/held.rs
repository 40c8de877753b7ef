//! Slots held for deferred calls of per-host budgets.
//!
//! Thousands of feeds on one host, under a budget of 100 requests a second, are a queue of
//! minutes. Waiting in the call for a slot that far off would hold a worker slot the whole
//! time, so the busy host's backlog would starve every other host's feeds. Instead a request
//! whose slot is further off than [`HOST_WAIT`] takes that slot anyway, the slot is *held* for
//! its target, and the call is deferred to the slot's time. When the target comes back it uses
//! its held slot rather than queueing again: the host is still paced exactly at its rate, each
//! target is deferred once, and the workers meanwhile serve other hosts.
//!
//! A target comes back when a worker is free, which under load is later than its slot; slots
//! spent late would go out together with the on-time ones. So the sends of each per-host
//! budget are also *paced*: never closer than the budget's steady spacing (for budgets
//! without a burst), whatever time their slots said.
//!
//! A call that needs more than one request (a redirect on the same host) spends its held slot
//! on the first; the rest of that call's requests wait for their slots in the call, as
//! requests of other budgets do, rather than hold one each and defer the call again forever.
//!
//! Held slots live in this process, at most [`MAX_HELD`]; an upstream's push-back (429,
//! Retry-After) forgets a host's held slots, so their targets queue again behind it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tsunagi_backends::Millis;

/// How long a request waits in its call for a per-host budget's slot; a later slot is held
/// and the call deferred to it.
pub const HOST_WAIT: Duration = Duration::from_millis(50);
/// The furthest ahead a slot is held; beyond, the call is deferred without one.
pub const MAX_HOLD_AHEAD: Duration = Duration::from_secs(3600);
/// Held slots kept at most; past it, deferred calls hold none (and queue again when back).
pub const MAX_HELD: usize = 100_000;
/// A held slot not used this long after its time is forgotten (its target was removed, or
/// another host polled it).
const STALE_AFTER_MS: Millis = 60_000;

/// Budget keys whose last send is remembered for pacing; past it, keys idle for a minute go.
const MAX_PACED: usize = 10_000;

/// The held slots: (budget key, target) → the slot and whether it was used.
#[derive(Default)]
pub struct HeldSlots {
    slots: Mutex<HashMap<(String, String), Slot>>,
    /// Budget key → when its last request was let go.
    last_sent: Mutex<HashMap<String, Millis>>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Held(Millis),
    /// Spent at that time; the same call's further requests wait in the call.
    Used(Millis),
}

impl Slot {
    fn at(self) -> Millis {
        match self {
            Slot::Held(at) | Slot::Used(at) => at,
        }
    }
}

/// What a target's held slot says about a request now.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// No slot held: queue as usual.
    None,
    /// The held slot is due (within [`HOST_WAIT`]): go at that time, spending nothing more.
    Due(Millis),
    /// Back before its slot: defer again to it.
    Early(Millis),
    /// The slot was just spent by this target's call: this is a further request of it, which
    /// waits in the call.
    Spent,
}

impl HeldSlots {
    /// Looks up (and, when due, uses up) `target`'s held slot under `key`.
    pub fn take(&self, key: &str, target: &str, now: Millis) -> Held {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let entry = (key.to_string(), target.to_string());
        match slots.get(&entry).copied() {
            None => Held::None,
            Some(Slot::Used(at)) if at + STALE_AFTER_MS > now => Held::Spent,
            Some(Slot::Used(_)) => {
                slots.remove(&entry);
                Held::None
            }
            Some(Slot::Held(at)) if at <= now + wait_ms() => {
                slots.insert(entry, Slot::Used(at));
                Held::Due(at.max(now))
            }
            Some(Slot::Held(at)) => Held::Early(at),
        }
    }

    /// Whether a slot could be held now (stale entries are dropped to make room).
    pub fn has_room(&self, now: Millis) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_HELD {
            slots.retain(|_, slot| slot.at() + STALE_AFTER_MS > now);
        }
        slots.len() < MAX_HELD
    }

    /// Holds the slot at `at` for `target`; false when full (the caller defers without one).
    pub fn hold(&self, key: &str, target: &str, at: Millis, now: Millis) -> bool {
        if !self.has_room(now) {
            return false;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.insert((key.to_string(), target.to_string()), Slot::Held(at));
        true
    }

    /// Forgets every slot held under `key` (the upstream pushed back: they are no longer
    /// slots it will take).
    pub fn forget(&self, key: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|(held_key, _), _| held_key != key);
    }

    /// When a request of `key` due at `at` may go: no sooner than `spacing_ms` after the
    /// previous one let go, unless that is more than `max_delay_ms` from now (the call could
    /// not wait so long: it goes at `at`). Records it as the last.
    pub fn pace(
        &self,
        key: &str,
        at: Millis,
        spacing_ms: Millis,
        now: Millis,
        max_delay_ms: Millis,
    ) -> Millis {
        let mut last_sent = self.last_sent.lock().unwrap_or_else(|p| p.into_inner());
        if last_sent.len() >= MAX_PACED && !last_sent.contains_key(key) {
            last_sent.retain(|_, sent| *sent + STALE_AFTER_MS > now);
            if last_sent.len() >= MAX_PACED {
                // Every key sent within the minute: this one goes unpaced, on its slot.
                return at;
            }
        }
        let go = match last_sent.get(key) {
            Some(previous) => at.max(previous + spacing_ms),
            None => at,
        };
        if go - now > max_delay_ms && go > at {
            return at;
        }
        last_sent.insert(key.to_string(), go);
        go
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.slots.lock().map(|slots| slots.len()).unwrap_or(0)
    }
}

fn wait_ms() -> Millis {
    HOST_WAIT.as_millis() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_slot_is_used_once_when_due_and_defers_an_early_return() {
        let held = HeldSlots::default();
        assert_eq!(held.take("k", "t", 0), Held::None);
        assert!(held.hold("k", "t", 10_000, 0));
        assert_eq!(held.take("k", "t", 5_000), Held::Early(10_000));
        assert_eq!(held.take("k", "other", 10_000), Held::None, "per target");
        assert_eq!(held.take("k", "t", 9_960), Held::Due(10_000));
        assert_eq!(
            held.take("k", "t", 10_000),
            Held::Spent,
            "the call's next request"
        );
        assert_eq!(
            held.take("k", "t", 10_000 + STALE_AFTER_MS),
            Held::None,
            "the next call queues afresh"
        );
        assert!(held.hold("k", "t", 20_000, 0));
        held.forget("k");
        assert_eq!(
            held.take("k", "t", 20_000),
            Held::None,
            "forgotten on push-back"
        );
    }

    #[test]
    fn late_slots_are_spread_to_the_budgets_spacing() {
        let held = HeldSlots::default();
        // Three slots 100 ms apart, all spent late at 1,000: they go 100 ms apart.
        let pace = |key, at, now| held.pace(key, at, 100, now, 250);
        assert_eq!(pace("k", 1_000, 1_000), 1_000);
        assert_eq!(pace("k", 1_000, 1_000), 1_100);
        assert_eq!(pace("k", 1_000, 1_000), 1_200);
        assert_eq!(
            pace("k", 1_000, 1_000),
            1_000,
            "a call that cannot wait so long goes"
        );
        assert_eq!(pace("other", 1_000, 1_000), 1_000, "per key");
        // An on-time slot after a gap goes at its time.
        assert_eq!(pace("k", 5_000, 5_000), 5_000);
    }

    #[test]
    fn the_held_slots_are_capped_and_stale_ones_make_room() {
        let held = HeldSlots::default();
        for n in 0..MAX_HELD {
            assert!(held.hold("k", &n.to_string(), 1_000, 0));
        }
        assert!(!held.hold("k", "one more", 1_000, 0), "full");
        assert!(!held.has_room(0));
        assert_eq!(held.count(), MAX_HELD);
        // A minute past their time, the unused ones are stale.
        assert!(held.hold("k", "one more", 100_000, 1_000 + STALE_AFTER_MS));
        assert_eq!(held.count(), 1);
    }
}
