//! Hot swap: one connector's current version (its [`InstancePool`]) behind an atomic pointer.
//!
//! A call loads the current pool once and keeps that `Arc` until it ends, so in-flight calls
//! finish on the version they started with while new calls get the new one, and nothing waits
//! for anything: the swap itself is one pointer store. The pool swapped out is kept (with its
//! idle instances dropped) as the previous version, for rollback and for `/status`.

use super::pool::InstancePool;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tsunagi_backends::Millis;

/// A loaded version of a connector, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub sha256: String,
    pub path: String,
    pub size: usize,
    /// When this version started serving (RFC 3339).
    pub loaded_at: String,
    /// Whose code new instances run: `quick` (Winch's) until the optimized code is ready.
    pub code: super::Tier,
    /// Where that code came from: `compiled` here, the compile `cache`, or another host of the
    /// `cluster`.
    pub code_from: super::Origin,
}

/// What a swap asks of a version: drop what it holds for new calls when swapped out, and take
/// it up again when rolled back to.
pub trait Version: Send + Sync {
    fn retire(&self);
    fn reinstate(&self);
}

impl Version for InstancePool {
    fn retire(&self) {
        InstancePool::retire(self);
    }
    fn reinstate(&self) {
        InstancePool::reinstate(self);
    }
}

struct Loaded<V> {
    pool: Arc<V>,
    loaded_at: Millis,
}

/// A version and when it started serving.
type Stamped<V> = (Arc<V>, Millis);

/// A connector whose version can be replaced while calls run.
pub type SwappableConnector = Swappable<InstancePool>;

/// A current version behind an atomic pointer, and the one before it.
pub struct Swappable<V> {
    current: ArcSwap<V>,
    /// The current version's load time, and the version before it.
    history: Mutex<(Millis, Option<Loaded<V>>)>,
}

impl<V: Version> Swappable<V> {
    pub fn new(pool: V, loaded_at: Millis) -> Self {
        Self {
            current: ArcSwap::from_pointee(pool),
            history: Mutex::new((loaded_at, None)),
        }
    }

    /// The version new calls use.
    pub fn current(&self) -> Arc<V> {
        self.current.load_full()
    }

    /// Makes `pool` current; the one it replaces becomes the previous version.
    pub fn swap(&self, pool: V, now: Millis) {
        let mut history = self.lock_history();
        let old = self.current.swap(Arc::new(pool));
        old.retire();
        let old_loaded_at = std::mem::replace(&mut history.0, now);
        history.1 = Some(Loaded {
            pool: old,
            loaded_at: old_loaded_at,
        });
    }

    /// Makes the previous version current again (and the current one previous). False when
    /// there is no previous version.
    pub fn rollback(&self, now: Millis) -> bool {
        let mut history = self.lock_history();
        let Some(previous) = history.1.take() else {
            return false;
        };
        previous.pool.reinstate();
        let replaced = self.current.swap(previous.pool);
        replaced.retire();
        let replaced_loaded_at = std::mem::replace(&mut history.0, now);
        history.1 = Some(Loaded {
            pool: replaced,
            loaded_at: replaced_loaded_at,
        });
        true
    }

    /// The current version with its load time, and the previous one.
    fn history(&self) -> (Stamped<V>, Option<Stamped<V>>) {
        let history = self.lock_history();
        let current = (self.current.load_full(), history.0);
        let previous = history
            .1
            .as_ref()
            .map(|loaded| (loaded.pool.clone(), loaded.loaded_at));
        (current, previous)
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, (Millis, Option<Loaded<V>>)> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SwappableConnector {
    /// The current and the previous version.
    pub fn versions(&self) -> (VersionInfo, Option<VersionInfo>) {
        let ((current, loaded_at), previous) = self.history();
        (
            version_info(&current, loaded_at),
            previous.map(|(pool, loaded_at)| version_info(&pool, loaded_at)),
        )
    }
}

fn version_info(pool: &InstancePool, loaded_at: Millis) -> VersionInfo {
    let plugin = pool.plugin();
    VersionInfo {
        sha256: plugin.sha256.clone(),
        path: plugin.path.display().to_string(),
        size: plugin.size,
        loaded_at: crate::clock::rfc3339(loaded_at),
        code: plugin.tier(),
        code_from: plugin.origin(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Fake {
        name: &'static str,
        retired: AtomicBool,
    }

    impl Fake {
        fn new(name: &'static str) -> Self {
            Self {
                name,
                retired: AtomicBool::new(false),
            }
        }
        fn retired(&self) -> bool {
            self.retired.load(Ordering::SeqCst)
        }
    }

    impl Version for Fake {
        fn retire(&self) {
            self.retired.store(true, Ordering::SeqCst);
        }
        fn reinstate(&self) {
            self.retired.store(false, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_swap_serves_the_new_version_and_retires_the_old() {
        let versions = Swappable::new(Fake::new("a"), 10);
        let in_flight = versions.current();
        versions.swap(Fake::new("b"), 20);
        assert_eq!(versions.current().name, "b");
        // A call that started before the swap still holds its version.
        assert_eq!(in_flight.name, "a");
        assert!(in_flight.retired());
        let ((current, loaded), previous) = versions.history();
        assert_eq!((current.name, loaded), ("b", 20));
        let (previous, previous_loaded) = previous.expect("a previous version");
        assert_eq!((previous.name, previous_loaded), ("a", 10));
    }

    #[test]
    fn a_rollback_swaps_current_and_previous() {
        let versions = Swappable::new(Fake::new("a"), 10);
        versions.swap(Fake::new("b"), 20);
        assert!(versions.rollback(30));
        let ((current, loaded), previous) = versions.history();
        assert_eq!((current.name, loaded), ("a", 30));
        assert!(!current.retired(), "reinstated");
        let (previous, _) = previous.expect("b is now previous");
        assert_eq!(previous.name, "b");
        assert!(previous.retired());
        // And back again.
        assert!(versions.rollback(40));
        assert_eq!(versions.current().name, "b");
    }

    #[test]
    fn there_is_no_rollback_without_a_previous_version() {
        let versions = Swappable::new(Fake::new("a"), 10);
        assert!(!versions.rollback(20));
        assert_eq!(versions.current().name, "a");
        assert!(!versions.current().retired());
    }

    #[test]
    fn only_one_previous_version_is_kept() {
        let versions = Swappable::new(Fake::new("a"), 1);
        versions.swap(Fake::new("b"), 2);
        versions.swap(Fake::new("c"), 3);
        let (_, previous) = versions.history();
        assert_eq!(previous.expect("one").0.name, "b");
    }
}
