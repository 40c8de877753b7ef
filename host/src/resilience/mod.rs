//! Resilience: the protections between a plugin's request and the upstream, applied in the
//! egress path to every request whose allow rule names them.
//!
//! - **Budgets** (`[budgets.*]`): GCRA rate limits shared by every connector that names them.
//!   A request waits for its slot while the call's deadline allows; past that it is *deferred*:
//!   the call fails with a typed "rate limited" error and the worker puts the target back for
//!   when the budget has room, without counting a failure. Upstream signals (429, Retry-After,
//!   `x-rate-limit-remaining: 0` with `x-rate-limit-reset`) push the budget's next slot out.
//!   A per-host budget waits at most [`held::HOST_WAIT`] in the call: a later slot is held for
//!   the target and the call deferred to it (see [`held`]), so one busy host's queue never
//!   holds the workers other hosts' feeds need.
//! - **In flight** (`in_flight = N` on a budget): at most N of its requests out at once, per
//!   its key; see [`in_flight`].
//! - **Breakers** (`[breakers.*]`): one per upstream. An open breaker answers at once with a
//!   typed error naming it, and the target is deferred likewise. Failures (transport errors,
//!   timeouts, 5xx, 429) count when they happen; a success counts when the call ends, because
//!   the plugin may still report the response as bad (an HTML error page with status 200).
//! - **Probes** (`probe`): see [`probes`].
//!
//! State lives behind the backend's [`RateLimitStore`] and [`BreakerStore`]; the clock is
//! injected.

pub mod held;
pub mod in_flight;
pub mod probes;

use crate::clock::SharedClock;
use crate::config::{
    BreakerSettings, BudgetScope, BudgetSettings, Config, ConfigError, ProbeSettings,
};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tsunagi_backends::Millis;
use tsunagi_backends::breaker::{BreakerSnapshot, BreakerState, CallOutcome, CallPermit};
use tsunagi_backends::coordination::{
    BreakerStore, BudgetFill, InProcessCoordination, ProbeBoard, RateLimitStore,
};
use tsunagi_backends::ratelimit::{Quota, Reservation};

/// Why egress held a request back instead of sending it. Not the upstream's fault and not the
/// target's: the worker defers the target to `retry_at` without counting a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deferral {
    #[error("rate limited: budget \"{budget}\" has no slot within this call's time (next at {})", crate::clock::rfc3339(*retry_at))]
    RateLimited { budget: String, retry_at: Millis },
    #[error("circuit breaker \"{breaker}\" is open: the upstream is failing; retrying after {}", crate::clock::rfc3339(*retry_at))]
    BreakerOpen { breaker: String, retry_at: Millis },
    #[error("busy: budget \"{budget}\" already has {in_flight} request(s) in flight (in_flight); retrying after {}", crate::clock::rfc3339(*retry_at))]
    InFlight {
        budget: String,
        in_flight: u32,
        retry_at: Millis,
    },
}

impl Deferral {
    pub fn retry_at(&self) -> Millis {
        match self {
            Self::RateLimited { retry_at, .. }
            | Self::BreakerOpen { retry_at, .. }
            | Self::InFlight { retry_at, .. } => *retry_at,
        }
    }
}

/// A request's place in a breaker: its permit, and whether its outcome has been recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerCall {
    pub breaker: String,
    pub permit: CallPermit,
    pub started_at: Millis,
    /// Set once an outcome is recorded: failures at once, successes when the call ends.
    pub settled: bool,
}

#[derive(Clone)]
struct Budget {
    quota: Quota,
    scope: BudgetScope,
    settings: BudgetSettings,
}

/// What the config declares, swapped whole by [`Resilience::apply`].
#[derive(Default)]
struct Declared {
    budgets: BTreeMap<String, Budget>,
    breakers: BTreeMap<String, BreakerSettings>,
    probes: BTreeMap<String, ProbeSettings>,
    /// How long a deferred target waits when its breaker is open and a probe decides.
    default_retry: BTreeMap<String, Duration>,
}

/// Every budget and breaker of a host.
pub struct Resilience {
    clock: SharedClock,
    declared: ArcSwap<Declared>,
    limiter: Arc<dyn RateLimitStore>,
    breakers: Arc<dyn BreakerStore>,
    /// Where hosts share probes (`[backends] cluster`); none: this host probes every interval.
    probe_board: Option<Arc<dyn ProbeBoard>>,
    /// Running probe tasks by breaker, under the root token set when the host starts them.
    probe_root: OnceLock<CancellationToken>,
    probe_tasks: Mutex<BTreeMap<String, CancellationToken>>,
    /// What each per-host budget made requests wait, by budget and host.
    host_waits: Mutex<BTreeMap<String, HashMap<String, HostWait>>>,
    /// Per-host budget slots held for deferred calls.
    held: held::HeldSlots,
    /// Requests in flight per budget key, for budgets with `in_flight`.
    in_flight: in_flight::InFlightGates,
    /// What each declared budget did to requests since the start (a budget's name is
    /// config's, so this holds as many entries as were ever declared).
    budget_counts: Mutex<BTreeMap<String, BudgetCounts>>,
}

/// What one budget did to the requests that asked it, since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BudgetCounts {
    /// Requests that had to wait for a slot.
    pub waits: u64,
    /// Their waits, summed.
    pub waited_ms: u64,
    /// Requests held back: no slot (or no place in flight) within their call's time.
    pub deferred: u64,
}

/// The hosts a per-host budget keeps wait figures for; past it, the host that waited least
/// makes room (a crawl over a million blog hosts must not grow this without bound).
pub const MAX_TRACKED_HOSTS: usize = 1000;
/// The hosts `/status` lists per budget, those that waited longest first.
pub const HOSTS_SHOWN: usize = 20;

/// How much one host's requests waited for its per-host budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostWait {
    pub host: String,
    /// Requests that waited for a slot.
    pub waits: u64,
    /// Their waits, summed.
    pub waited_ms: u64,
    /// Requests held back: no slot within their call's time.
    pub deferred: u64,
}

/// `/status`'s view.
#[derive(Debug, Clone, Serialize)]
pub struct ResilienceStatus {
    pub budgets: BTreeMap<String, BudgetStatus>,
    pub breakers: BTreeMap<String, BreakerSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetStatus {
    pub rate: String,
    pub per: &'static str,
    /// For a shared budget; per-target budgets have one fill per target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill: Option<BudgetFill>,
    /// A per-host budget: the hosts whose requests waited longest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostWait>,
    #[serde(flatten)]
    pub counts: BudgetCounts,
}

impl Resilience {
    /// Builds the budgets and breakers `config` declares, keeping their state in `limiter` and
    /// `breakers`.
    pub fn from_config(
        config: &Config,
        clock: SharedClock,
        limiter: Arc<dyn RateLimitStore>,
        breakers: Arc<dyn BreakerStore>,
    ) -> Result<Self, ConfigError> {
        let resilience = Self {
            clock,
            declared: ArcSwap::from_pointee(Declared::default()),
            limiter,
            breakers,
            probe_board: None,
            probe_root: OnceLock::new(),
            probe_tasks: Mutex::new(BTreeMap::new()),
            host_waits: Mutex::new(BTreeMap::new()),
            held: held::HeldSlots::default(),
            in_flight: in_flight::InFlightGates::default(),
            budget_counts: Mutex::new(BTreeMap::new()),
        };
        resilience.declare(config)?;
        Ok(resilience)
    }

    /// Shares health probes through `board`: one host of the cluster probes a breaker's
    /// upstream per interval, and every host records what it found.
    pub fn with_probe_board(mut self, board: Option<Arc<dyn ProbeBoard>>) -> Self {
        self.probe_board = board;
        self
    }

    pub(crate) fn probe_board(&self) -> Option<&Arc<dyn ProbeBoard>> {
        self.probe_board.as_ref()
    }

    /// Takes the budgets and breakers of a reloaded config. A budget or breaker whose own
    /// settings did not change keeps its state; a changed breaker starts afresh (and its probe
    /// restarts); ones no longer declared are kept until a restart (a connector whose new
    /// version was refused may still name them). Answers what changed, for the reload report.
    pub fn apply(self: &Arc<Self>, config: &Config) -> Result<Vec<String>, ConfigError> {
        let (changes, touched_breakers) = self.declare(config)?;
        if let Some(root) = self.probe_root.get() {
            let declared = self.declared.load_full();
            let mut tasks = self.lock_probe_tasks();
            for name in &touched_breakers {
                if let Some(token) = tasks.remove(name) {
                    token.cancel();
                }
                if let Some(settings) = declared.probes.get(name) {
                    let token = root.child_token();
                    probes::spawn_probe(
                        self.clone(),
                        name.clone(),
                        settings.clone(),
                        token.clone(),
                    );
                    tasks.insert(name.clone(), token);
                }
            }
        }
        Ok(changes)
    }

    /// Builds [`Declared`] from `config`, registers breakers whose settings changed, and swaps
    /// it in. Answers what changed, and the breakers added, changed or removed.
    fn declare(&self, config: &Config) -> Result<(Vec<String>, Vec<String>), ConfigError> {
        let old = self.declared.load_full();
        let mut new = Declared::default();
        let mut changes = Vec::new();
        let mut touched_breakers = Vec::new();
        for (name, settings) in &config.budgets {
            let quota = settings
                .quota()
                .map_err(|e| config.error_at(&format!("budgets.{name}.rate"), &e.to_string()))?;
            match old.budgets.get(name) {
                None => changes.push(format!("budget {name} added")),
                Some(old) if old.settings != *settings => {
                    changes.push(format!("budget {name} updated"));
                }
                Some(_) => {}
            }
            new.budgets.insert(
                name.clone(),
                Budget {
                    quota,
                    scope: settings.per,
                    settings: settings.clone(),
                },
            );
        }
        // A budget or breaker gone from the file stays until a restart: a connector whose new
        // version was refused still runs with rules that name it, and must stay metered.
        for (name, budget) in &old.budgets {
            if !new.budgets.contains_key(name) {
                changes.push(format!(
                    "budget {name} no longer declared; kept until a restart"
                ));
                new.budgets.insert(name.clone(), budget.clone());
            }
        }
        for (name, breaker) in &config.breakers {
            let settings = breaker
                .settings()
                .map_err(|(_, message)| config.error_at(&format!("breakers.{name}"), &message))?;
            if old.breakers.get(name) != Some(breaker) {
                self.breakers
                    .register(name, settings, breaker.probe.is_some());
                let verb = if old.breakers.contains_key(name) {
                    "rebuilt"
                } else {
                    "added"
                };
                changes.push(format!("breaker {name} {verb}"));
                touched_breakers.push(name.clone());
            }
            let retry = match &breaker.probe {
                Some(probe) => {
                    new.probes.insert(name.clone(), probe.clone());
                    probe.interval
                }
                None => breaker.open_wait,
            };
            new.default_retry.insert(name.clone(), retry);
            new.breakers.insert(name.clone(), breaker.clone());
        }
        for (name, breaker) in &old.breakers {
            if !new.breakers.contains_key(name) {
                changes.push(format!(
                    "breaker {name} no longer declared; kept until a restart"
                ));
                new.breakers.insert(name.clone(), breaker.clone());
                if let Some(probe) = old.probes.get(name) {
                    new.probes.insert(name.clone(), probe.clone());
                }
                if let Some(retry) = old.default_retry.get(name) {
                    new.default_retry.insert(name.clone(), *retry);
                }
            }
        }
        self.declared.store(Arc::new(new));
        Ok((changes, touched_breakers))
    }

    fn lock_probe_tasks(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CancellationToken>> {
        self.probe_tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts every declared probe under `stop`; later reloads start and stop probes under it.
    pub fn start_probes(self: &Arc<Self>, stop: &CancellationToken) {
        let root = stop.child_token();
        if self.probe_root.set(root.clone()).is_err() {
            return;
        }
        let declared = self.declared.load_full();
        let mut tasks = self.lock_probe_tasks();
        for (name, settings) in &declared.probes {
            let token = root.child_token();
            probes::spawn_probe(self.clone(), name.clone(), settings.clone(), token.clone());
            tasks.insert(name.clone(), token);
        }
    }

    /// Budgets and breakers kept in this process (the embedded backend's way).
    pub fn in_process(config: &Config, clock: SharedClock) -> Result<Arc<Self>, ConfigError> {
        let store = Arc::new(InProcessCoordination::new());
        Self::from_config(config, clock, store.clone(), store).map(Arc::new)
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Lets a request through `breaker` and `budget` (either may be absent): an open breaker
    /// answers at once (so a broken upstream does not spend the budget), and the request waits
    /// up to `max_wait` for a budget slot. Only a half-open trial permit is held through the
    /// wait; if the budget then refuses, the trial goes unreported and the breaker's
    /// half-open time bound takes care of it.
    pub async fn admit(
        &self,
        budgets: &[impl AsRef<str>],
        breaker: Option<&str>,
        target: &str,
        max_wait: Duration,
    ) -> Result<Option<BreakerCall>, Deferral> {
        self.admit_to(budgets, breaker, target, "", max_wait).await
    }

    /// [`Self::admit`] for a request to `host` (per-host budgets are keyed by its registrable
    /// domain).
    pub async fn admit_to(
        &self,
        budgets: &[impl AsRef<str>],
        breaker: Option<&str>,
        target: &str,
        host: &str,
        max_wait: Duration,
    ) -> Result<Option<BreakerCall>, Deferral> {
        // A closed breaker permits whatever the order, so the budget wait comes first and no
        // permit is held through it; an open or half-open one answers first, so a broken
        // upstream does not spend the budget.
        let closed = breaker.is_none_or(|name| {
            !matches!(
                self.breakers.state(name, self.clock.now_ms()),
                Some(BreakerState::Open | BreakerState::HalfOpen)
            )
        });
        let mut call = if closed {
            None
        } else {
            self.acquire_permit(breaker)?
        };
        // A slot from every budget, then one wait for the latest of them. A later budget that
        // defers leaves the earlier ones' slots spent, so per-target budgets go first: a user
        // out of room is refused before the app's shared budget is spent on them.
        let declared = self.declared.load_full();
        let mut specs: Vec<(&str, &Budget)> = budgets
            .iter()
            .filter_map(|name| {
                let name = name.as_ref();
                declared.budgets.get(name).map(|spec| (name, spec))
            })
            .collect();
        // Narrowest first: a user, then a host, then what everyone shares.
        specs.sort_by_key(|(_, spec)| match spec.scope {
            BudgetScope::Target => 0,
            BudgetScope::Host => 1,
            BudgetScope::Shared => 2,
        });
        let mut go_at = self.clock.now_ms();
        for (name, spec) in specs {
            let key = budget_key(name, spec.scope, target, host);
            let reserved = if spec.scope == BudgetScope::Host {
                self.reserve_host_slot(name, &key, spec, target, max_wait)
                    .await
            } else {
                self.reserve_slot(name, &key, spec, max_wait).await
            };
            let waited = reserved
                .as_ref()
                .ok()
                .map(|at| at.saturating_sub(self.clock.now_ms()));
            self.note_budget(name, waited);
            if spec.scope == BudgetScope::Host {
                self.note_host_wait(name, host, waited);
            }
            go_at = go_at.max(reserved?);
        }
        let wait = go_at.saturating_sub(self.clock.now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
        }
        if closed {
            call = self.acquire_permit(breaker)?;
        }
        if let Some(call) = call.as_mut() {
            // Slowness is the upstream's, so the clock starts after the budget wait.
            call.started_at = self.clock.now_ms();
        }
        Ok(call)
    }

    /// A place in every `in_flight` cap of `budgets` for a request to `host`, held until the
    /// permits are dropped (the response is). A per-host cap waits at most
    /// [`held::HOST_WAIT`], others up to `max_wait`; past it the call is deferred.
    pub async fn enter_in_flight(
        &self,
        budgets: &[impl AsRef<str>],
        target: &str,
        host: &str,
        max_wait: Duration,
    ) -> Result<Vec<tokio::sync::OwnedSemaphorePermit>, Deferral> {
        let declared = self.declared.load_full();
        let mut permits = Vec::new();
        for name in budgets {
            let name = name.as_ref();
            let Some(spec) = declared.budgets.get(name) else {
                continue;
            };
            let Some(limit) = spec.settings.in_flight else {
                continue;
            };
            let wait = if spec.scope == BudgetScope::Host {
                max_wait.min(held::HOST_WAIT)
            } else {
                max_wait
            };
            let key = budget_key(name, spec.scope, target, host);
            match self.in_flight.enter(&key, limit, wait).await {
                Some(permit) => permits.push(permit),
                None => {
                    self.note_budget(name, None);
                    let retry = Millis::try_from(in_flight::BUSY_RETRY.as_millis()).unwrap_or(0);
                    return Err(Deferral::InFlight {
                        budget: name.to_string(),
                        in_flight: limit,
                        retry_at: self.clock.now_ms().saturating_add(retry),
                    });
                }
            }
        }
        Ok(permits)
    }

    fn acquire_permit(&self, breaker: Option<&str>) -> Result<Option<BreakerCall>, Deferral> {
        let Some(name) = breaker else {
            return Ok(None);
        };
        match self.breakers.try_acquire(name, self.clock.now_ms()) {
            Ok(permit) => Ok(permit.map(|permit| BreakerCall {
                breaker: name.to_string(),
                permit,
                started_at: 0,
                settled: false,
            })),
            Err(rejected) => Err(self.breaker_open(name, rejected.retry_at)),
        }
    }

    /// Counts a request under `budget`: it waited `waited` ms, or was held back (`None`).
    fn note_budget(&self, budget: &str, waited: Option<i64>) {
        if waited == Some(0) {
            return;
        }
        let mut all = self
            .budget_counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Looked up before inserting: the name is allocated once per budget, not per request.
        let counts = match all.get_mut(budget) {
            Some(counts) => counts,
            None => all.entry(budget.to_string()).or_default(),
        };
        match waited {
            Some(ms) => {
                counts.waits += 1;
                counts.waited_ms += ms.unsigned_abs();
            }
            None => counts.deferred += 1,
        }
    }

    /// Counts a request to `host` under per-host budget `budget`: it waited `waited` ms, or was
    /// held back (`None`).
    fn note_host_wait(&self, budget: &str, host: &str, waited: Option<i64>) {
        if waited == Some(0) {
            return;
        }
        let domain = registrable_domain(host);
        let mut all = self.host_waits.lock().unwrap_or_else(|p| p.into_inner());
        let hosts = all.entry(budget.to_string()).or_default();
        if !hosts.contains_key(&domain) && hosts.len() >= MAX_TRACKED_HOSTS {
            let least = hosts
                .iter()
                .min_by_key(|(_, wait)| (wait.waited_ms, wait.deferred))
                .map(|(host, _)| host.clone());
            if let Some(least) = least {
                hosts.remove(&least);
            }
        }
        let entry = hosts.entry(domain.clone()).or_insert_with(|| HostWait {
            host: domain,
            ..HostWait::default()
        });
        match waited {
            Some(ms) => {
                entry.waits += 1;
                entry.waited_ms = entry.waited_ms.saturating_add(ms.unsigned_abs());
            }
            None => entry.deferred += 1,
        }
    }

    /// The hosts of `budget` that waited longest, at most [`HOSTS_SHOWN`].
    fn longest_waits(&self, budget: &str) -> Vec<HostWait> {
        let all = self.host_waits.lock().unwrap_or_else(|p| p.into_inner());
        let mut hosts: Vec<HostWait> = all
            .get(budget)
            .map(|hosts| hosts.values().cloned().collect())
            .unwrap_or_default();
        hosts.sort_by(|a, b| {
            (b.waited_ms, b.deferred, &a.host).cmp(&(a.waited_ms, a.deferred, &b.host))
        });
        hosts.truncate(HOSTS_SHOWN);
        hosts
    }

    /// A per-host budget's slot for `target`: its held slot if it has one, else the next slot
    /// — waited for in the call if within [`held::HOST_WAIT`] (and `max_wait`), held for the
    /// target with the call deferred to it if later.
    async fn reserve_host_slot(
        &self,
        name: &str,
        key: &str,
        spec: &Budget,
        target: &str,
        max_wait: Duration,
    ) -> Result<Millis, Deferral> {
        let now = self.clock.now_ms();
        let deferred = |retry_at| Deferral::RateLimited {
            budget: name.to_string(),
            retry_at,
        };
        // Without a burst, sends keep the steady spacing even when slots are spent late.
        let spacing = if spec.quota.burst <= 1 {
            (spec.quota.emission_interval_us() + 999) / 1000
        } else {
            0
        };
        let max_delay = i64::try_from(max_wait.as_millis()).unwrap_or(i64::MAX);
        let paced = |at: Millis| self.held.pace(key, at, spacing, now, max_delay);
        match self.held.take(key, target, now) {
            held::Held::Due(at) => return Ok(paced(at)),
            held::Held::Early(at) => return Err(deferred(at)),
            held::Held::Spent => {
                return self
                    .reserve_slot(name, key, spec, max_wait)
                    .await
                    .map(paced);
            }
            held::Held::None => {}
        }
        if !self.held.has_room(now) {
            return self
                .reserve_slot(name, key, spec, max_wait)
                .await
                .map(paced);
        }
        let at = self
            .reserve_slot(name, key, spec, held::MAX_HOLD_AHEAD)
            .await?;
        let in_call = i64::try_from(max_wait.min(held::HOST_WAIT).as_millis()).unwrap_or(0);
        if at - now <= in_call {
            return Ok(paced(at));
        }
        // Taken either way: held, the target spends it when it comes back at `at`.
        self.held.hold(key, target, at, now);
        Err(deferred(at))
    }

    /// Reserves the budget's next slot within `max_wait`, and says when it is.
    async fn reserve_slot(
        &self,
        name: &str,
        key: &str,
        spec: &Budget,
        max_wait: Duration,
    ) -> Result<Millis, Deferral> {
        let now = self.clock.now_ms();
        let max_wait_ms = i64::try_from(max_wait.as_millis()).unwrap_or(i64::MAX);
        let reservation = self
            .limiter
            .reserve(key, &spec.quota, now, max_wait_ms)
            .await
            .map_err(|error| {
                // A store that cannot answer must not let traffic through unmetered.
                tracing::error!(budget = %name, "cannot reserve from the budget: {error}");
                Deferral::RateLimited {
                    budget: name.to_string(),
                    retry_at: now.saturating_add(1000),
                }
            })?;
        match reservation {
            Reservation::Granted { at, .. } => Ok(at),
            Reservation::Denied { retry_at } => Err(Deferral::RateLimited {
                budget: name.to_string(),
                retry_at,
            }),
        }
    }

    fn breaker_open(&self, name: &str, retry_at: Option<Millis>) -> Deferral {
        let now = self.clock.now_ms();
        let fallback = self
            .declared
            .load()
            .default_retry
            .get(name)
            .map_or(60_000, |wait| {
                i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
            });
        Deferral::BreakerOpen {
            breaker: name.to_string(),
            retry_at: retry_at.unwrap_or(now.saturating_add(fallback)).max(now),
        }
    }

    /// Records how a breaker call went, once.
    pub fn settle(&self, call: &mut BreakerCall, failed: bool) {
        if call.settled {
            return;
        }
        call.settled = true;
        let now = self.clock.now_ms();
        let outcome = CallOutcome {
            failed,
            duration_ms: now.saturating_sub(call.started_at),
        };
        self.breakers
            .record(&call.breaker, call.permit, now, outcome);
    }

    /// Ends a breaker call that never reached the upstream (the host refused it after the
    /// permit was taken): nothing is recorded, for or against the upstream.
    pub fn release(&self, call: &mut BreakerCall) {
        if call.settled {
            return;
        }
        call.settled = true;
        self.breakers.release(&call.breaker, call.permit);
    }

    /// The upstream said nothing more before `until`, to a request that spent from `budgets`.
    /// Its word is about the limit of whoever made the request: with a per-target budget among
    /// them (a user's token) only those are pushed out, so one user's exhausted limit does not
    /// stop the app's other users; otherwise all of them.
    pub async fn upstream_limit(&self, budgets: &[impl AsRef<str>], target: &str, until: Millis) {
        self.upstream_limit_of(budgets, target, "", until).await;
    }

    /// [`Self::upstream_limit`] for an answer from `host`: with a per-target or per-host budget
    /// among them, only those are pushed out (a user's limit, a host's), not the shared ones.
    pub async fn upstream_limit_of(
        &self,
        budgets: &[impl AsRef<str>],
        target: &str,
        host: &str,
        until: Millis,
    ) {
        let now = self.clock.now_ms();
        let declared = self.declared.load_full();
        let specs: Vec<(&str, &Budget)> = budgets
            .iter()
            .filter_map(|name| {
                let name = name.as_ref();
                declared.budgets.get(name).map(|spec| (name, spec))
            })
            .collect();
        let narrow = specs
            .iter()
            .any(|(_, spec)| spec.scope != BudgetScope::Shared);
        for (budget, spec) in specs {
            if narrow && spec.scope == BudgetScope::Shared {
                continue;
            }
            let key = budget_key(budget, spec.scope, target, host);
            if spec.scope == BudgetScope::Host {
                // Slots held before the push-back are slots the upstream will not take.
                self.held.forget(&key);
            }
            if let Err(error) = self.limiter.push_back(&key, &spec.quota, now, until).await {
                tracing::error!(%budget, "cannot record the upstream's rate limit: {error}");
            }
        }
    }

    pub fn record_probe(&self, breaker: &str, ok: bool) {
        self.breakers.record_probe(breaker, self.clock.now_ms(), ok);
    }

    pub fn breaker_state(&self, breaker: &str) -> Option<BreakerState> {
        self.breakers.state(breaker, self.clock.now_ms())
    }

    pub async fn status(&self) -> ResilienceStatus {
        let now = self.clock.now_ms();
        let mut budgets = BTreeMap::new();
        let declared = self.declared.load_full();
        for (name, spec) in &declared.budgets {
            let fill = match spec.scope {
                BudgetScope::Shared => self.limiter.fill(name, &spec.quota, now).await.ok(),
                BudgetScope::Target | BudgetScope::Host => None,
            };
            budgets.insert(
                name.clone(),
                BudgetStatus {
                    rate: spec.quota.to_string(),
                    per: match spec.scope {
                        BudgetScope::Shared => "shared",
                        BudgetScope::Target => "target",
                        BudgetScope::Host => "host",
                    },
                    fill,
                    hosts: if spec.scope == BudgetScope::Host {
                        self.longest_waits(name)
                    } else {
                        Vec::new()
                    },
                    counts: self
                        .budget_counts
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .get(name)
                        .copied()
                        .unwrap_or_default(),
                },
            );
        }
        let mut breakers = self.breakers.snapshots(now);
        for (name, snapshot) in &mut breakers {
            // The probe runs on its interval from the host's start; its last result dates it.
            if let (Some(probe), Some((at, _))) = (declared.probes.get(name), snapshot.last_probe) {
                let interval = i64::try_from(probe.interval.as_millis()).unwrap_or(i64::MAX);
                snapshot.next_probe_at = Some(at.saturating_add(interval));
            }
        }
        ResilienceStatus { budgets, breakers }
    }
}

fn budget_key(name: &str, scope: BudgetScope, target: &str, host: &str) -> String {
    match scope {
        BudgetScope::Shared => name.to_string(),
        BudgetScope::Target => format!("{name}\u{1f}{target}"),
        BudgetScope::Host => format!("{name}\u{1f}@{}", registrable_domain(host)),
    }
}

/// The part of `host` one owner registers (`example.co.jp` for `feeds.example.co.jp`, by the
/// public suffix list); an IP address or a name without a known suffix stays whole.
pub fn registrable_domain(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return host;
    }
    psl::domain_str(&host).map_or_else(|| host.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::path::Path;

    #[test]
    fn hosts_are_keyed_by_the_domain_their_owner_registered() {
        assert_eq!(registrable_domain("feeds.example.co.jp"), "example.co.jp");
        assert_eq!(registrable_domain("Blog.Example.COM."), "example.com");
        assert_eq!(registrable_domain("alice.github.io"), "alice.github.io");
        assert_eq!(registrable_domain("127.0.0.1"), "127.0.0.1");
        assert_eq!(registrable_domain("localhost"), "localhost");
    }

    #[tokio::test]
    async fn a_per_host_budget_is_one_per_registrable_domain_and_a_429_slows_that_host_only() {
        let config = Config::parse(
            "[budgets.hosts]\nrate = \"1/min\"\nper = \"host\"\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        let clock = ManualClock::starting_at(1_000_000);
        let resilience = Resilience::in_process(&config, Arc::new(clock.clone())).unwrap();
        let admit = |host: &'static str| {
            let resilience = resilience.clone();
            async move {
                resilience
                    .admit_to(&["hosts"], None, "feed", host, Duration::ZERO)
                    .await
                    .is_ok()
            }
        };
        assert!(admit("a.blog.example.com").await);
        assert!(
            !admit("b.blog.example.com").await,
            "the same registrable domain"
        );
        assert!(admit("other.example.net").await, "another host has its own");
        clock.advance(Duration::from_secs(60));
        resilience
            .upstream_limit_of(&["hosts"], "feed", "x.example.net", 1_000_000 + 600_000)
            .await;
        assert!(!admit("other.example.net").await, "its 429 pushed it back");
        assert!(
            admit("c.blog.example.com").await,
            "the other host is not slowed"
        );
        let status = resilience.status().await;
        assert_eq!(status.budgets["hosts"].per, "host");
        assert_eq!(
            status.budgets["hosts"].hosts,
            vec![
                HostWait {
                    host: "example.com".into(),
                    waits: 0,
                    waited_ms: 0,
                    deferred: 1,
                },
                HostWait {
                    host: "example.net".into(),
                    waits: 0,
                    waited_ms: 0,
                    deferred: 1,
                },
            ],
            "each host's held-back requests, in /status"
        );
    }

    #[tokio::test]
    async fn a_per_host_deferral_holds_its_slot_and_the_target_spends_it_when_back() {
        let config = Config::parse(
            "[budgets.hosts]\nrate = \"1/min\"\nper = \"host\"\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        let start = 1_000_000;
        let clock = ManualClock::starting_at(start);
        let resilience = Resilience::in_process(&config, Arc::new(clock.clone())).unwrap();
        let admit = |target: &'static str| {
            let resilience = resilience.clone();
            async move {
                resilience
                    .admit_to(
                        &["hosts"],
                        None,
                        target,
                        "blog.example",
                        Duration::from_secs(10),
                    )
                    .await
            }
        };
        assert!(admit("first").await.is_ok());
        // A minute off: beyond the in-call wait, so held and deferred, not waited for.
        let deferred = admit("second").await.expect_err("deferred");
        assert!(
            matches!(deferred, Deferral::RateLimited { retry_at, .. } if retry_at == start + 60_000),
            "{deferred:?}"
        );
        let third = admit("third").await.expect_err("deferred");
        assert!(
            matches!(third, Deferral::RateLimited { retry_at, .. } if retry_at == start + 120_000),
            "each deferral holds the next slot: {third:?}"
        );
        // Back early: deferred to its own slot again, nothing spent.
        clock.advance(Duration::from_secs(30));
        let early = admit("second").await.expect_err("early");
        assert!(
            matches!(early, Deferral::RateLimited { retry_at, .. } if retry_at == start + 60_000),
            "{early:?}"
        );
        // At its slot: through, on the held slot, and the queue behind it is unchanged.
        clock.advance(Duration::from_secs(30));
        assert!(admit("second").await.is_ok());
        let fourth = admit("fourth").await.expect_err("deferred");
        assert!(
            matches!(fourth, Deferral::RateLimited { retry_at, .. } if retry_at == start + 180_000),
            "{fourth:?}"
        );
        // A 429 from the host forgets what was held: the third queues again behind it.
        resilience
            .upstream_limit_of(&["hosts"], "third", "blog.example", start + 600_000)
            .await;
        clock.advance(Duration::from_secs(60));
        assert!(admit("third").await.is_err(), "its held slot is gone");
    }

    #[tokio::test]
    async fn per_host_waits_are_summed_and_kept_for_a_bounded_number_of_hosts() {
        let config = Config::parse(
            "[budgets.hosts]\nrate = \"1/s\"\nper = \"host\"\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        let clock = ManualClock::starting_at(1_000_000);
        let resilience = Resilience::in_process(&config, Arc::new(clock.clone())).unwrap();
        resilience.note_host_wait("hosts", "busy.example.com", Some(400));
        resilience.note_host_wait("hosts", "www.example.com", Some(600));
        for n in 0..MAX_TRACKED_HOSTS + 10 {
            resilience.note_host_wait("hosts", &format!("h{n}.test-{n}.org"), Some(1));
        }
        let shown = resilience.longest_waits("hosts");
        assert_eq!(shown.len(), HOSTS_SHOWN);
        assert_eq!(
            (shown[0].host.as_str(), shown[0].waits, shown[0].waited_ms),
            ("example.com", 2, 1000),
            "one registrable domain, its waits summed"
        );
        let tracked = resilience.host_waits.lock().unwrap()["hosts"].len();
        assert_eq!(tracked, MAX_TRACKED_HOSTS, "bounded");
        resilience.note_host_wait("hosts", "quiet.example.org", Some(0));
        assert!(
            !resilience.host_waits.lock().unwrap()["hosts"].contains_key("example.org"),
            "a request that did not wait is not a wait"
        );
    }

    const CONFIG: &str = r#"
[budgets.shop]
rate = "1/s"
burst = 2

[budgets.per-user]
rate = "1/min"
per = "target"

[breakers.shop]
window = "4 calls"
minimum_calls = 2
[breakers.shop.probe]
url = "http://127.0.0.1:9/health"
interval = "5s"
"#;

    fn resilience(clock: &ManualClock) -> Arc<Resilience> {
        let config = Config::parse(CONFIG, Path::new("test.toml")).unwrap();
        Resilience::in_process(&config, Arc::new(clock.clone())).unwrap()
    }

    /// Two failed calls through `shop`: its breaker (minimum 2 calls) opens.
    async fn open_the_shop_breaker(resilience: &Resilience) {
        for _ in 0..2 {
            let mut call = resilience
                .admit(&["shop"], Some("shop"), "t", Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap();
            resilience.settle(&mut call, true);
        }
        assert_eq!(resilience.breaker_state("shop"), Some(BreakerState::Open));
    }

    /// Two hosts share a probe board in Redis: their open breakers both close on probes, yet
    /// the upstream is probed once per interval, not once per host, and every probe it saw
    /// was shared.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hosts_sharing_a_probe_board_probe_once_per_interval_and_both_close() {
        use crate::loopback::{Answer, Server};
        use tsunagi_backends::redis::lock::RedisLock;
        use tsunagi_backends::redis::testing::TestPrefix;
        let server = Server::start(Answer::new(200, &[], b"ok")).await;
        let text = CONFIG
            .replace("http://127.0.0.1:9/health", &server.url("/health"))
            .replace("interval = \"5s\"", "interval = \"100ms\"");
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        let clock = ManualClock::starting_at(1_000_000);
        let redis = TestPrefix::new();
        let mut hosts = Vec::new();
        for _ in 0..2 {
            let memory = Arc::new(InProcessCoordination::new());
            let board: Arc<dyn ProbeBoard> = Arc::new(RedisLock::new(redis.open().await));
            let host =
                Resilience::from_config(&config, Arc::new(clock.clone()), memory.clone(), memory)
                    .unwrap()
                    .with_probe_board(Some(board));
            let host = Arc::new(host);
            open_the_shop_breaker(&host).await;
            hosts.push(host);
        }
        let stop = CancellationToken::new();
        let started = std::time::Instant::now();
        for host in &hosts {
            host.start_probes(&stop);
        }
        let board = RedisLock::new(redis.open().await);
        let shared = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let closed = hosts
                    .iter()
                    .all(|host| host.breaker_state("shop") == Some(BreakerState::Closed));
                let latest = board.latest_probe("shop").await.unwrap();
                if let Some(latest) = latest.filter(|latest| closed && latest.seq >= 10) {
                    return latest.seq;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("both breakers close and ten probes are shared");
        stop.cancel();
        let intervals = started.elapsed().as_millis() / 100;
        let probes = server.requests().len() as u64;
        // Each probe sent was shared (one more may have been in flight at the stop) …
        assert!(
            (shared..=shared + 2).contains(&probes),
            "{probes} probes, {shared} shared"
        );
        // … and one host probed per interval: two hosts probing alone would send twice this.
        assert!(
            u128::from(probes) <= intervals + 2,
            "{probes} probes in {intervals} intervals"
        );
    }

    #[tokio::test]
    async fn an_empty_budget_defers_with_its_name_and_next_slot() {
        let clock = ManualClock::starting_at(1_000_000);
        let resilience = resilience(&clock);
        for _ in 0..2 {
            assert!(
                resilience
                    .admit(&["shop"], None, "t", Duration::ZERO)
                    .await
                    .is_ok()
            );
        }
        let deferral = resilience
            .admit(&["shop"], None, "t", Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(
            deferral,
            Deferral::RateLimited {
                budget: "shop".to_string(),
                retry_at: 1_001_000
            }
        );
        assert!(
            deferral.to_string().contains("budget \"shop\""),
            "{deferral}"
        );
    }

    #[tokio::test]
    async fn upstream_signals_push_the_next_slot_out() {
        let clock = ManualClock::starting_at(1_000_000);
        let resilience = resilience(&clock);
        resilience.upstream_limit(&["shop"], "t", 1_030_000).await;
        let deferral = resilience
            .admit(&["shop"], None, "t", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(deferral.retry_at(), 1_030_000);
        clock.advance(Duration::from_secs(30));
        assert!(
            resilience
                .admit(&["shop"], None, "t", Duration::ZERO)
                .await
                .is_ok()
        );
        let status = resilience.status().await;
        assert_eq!(status.budgets["shop"].fill.as_ref().unwrap().available, 0);
    }

    #[tokio::test]
    async fn a_reload_keeps_unchanged_state_and_resets_what_changed() {
        let clock = ManualClock::starting_at(0);
        let resilience = resilience(&clock);
        open_the_shop_breaker(&resilience).await;
        // Same budget, another breaker window, the per-user budget gone.
        let edited = CONFIG
            .replace("window = \"4 calls\"", "window = \"6 calls\"")
            .replace(
                "[budgets.per-user]\nrate = \"1/min\"\nper = \"target\"\n",
                "",
            );
        let config = Config::parse(&edited, Path::new("test.toml")).unwrap();
        let changes = resilience.apply(&config).unwrap();
        assert_eq!(
            changes,
            [
                "budget per-user no longer declared; kept until a restart",
                "breaker shop rebuilt"
            ]
        );
        assert_eq!(
            resilience.breaker_state("shop"),
            Some(BreakerState::Closed),
            "a changed breaker starts afresh"
        );
        let fill = resilience.status().await.budgets["shop"]
            .fill
            .clone()
            .unwrap();
        assert_eq!(fill.available, 0, "an unchanged budget keeps its state");
        assert!(
            resilience.status().await.budgets.contains_key("per-user"),
            "a connector refused a new version may still name it"
        );
        assert_eq!(
            resilience.apply(&config).unwrap(),
            ["budget per-user no longer declared; kept until a restart"],
            "nothing else changed the second time"
        );
    }

    #[tokio::test]
    async fn a_call_the_budget_refuses_takes_no_permit_from_a_closed_breaker() {
        let clock = ManualClock::starting_at(0);
        let resilience = resilience(&clock);
        for _ in 0..2 {
            let mut call = resilience
                .admit(&["shop"], Some("shop"), "t", Duration::ZERO)
                .await
                .unwrap()
                .unwrap();
            resilience.settle(&mut call, false);
        }
        let refused = resilience
            .admit(&["shop"], Some("shop"), "t", Duration::ZERO)
            .await;
        assert!(
            matches!(refused, Err(Deferral::RateLimited { .. })),
            "{refused:?}"
        );
        let breaker = resilience.status().await.breakers["shop"].clone();
        assert_eq!(breaker.permitted_total, 2, "{breaker:?}");
    }

    #[tokio::test]
    async fn per_target_budgets_are_separate() {
        let clock = ManualClock::starting_at(0);
        let resilience = resilience(&clock);
        assert!(
            resilience
                .admit(&["per-user"], None, "alice", Duration::ZERO)
                .await
                .is_ok()
        );
        assert!(
            resilience
                .admit(&["per-user"], None, "bob", Duration::ZERO)
                .await
                .is_ok()
        );
        assert!(
            resilience
                .admit(&["per-user"], None, "alice", Duration::ZERO)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_request_under_an_app_and_a_user_budget_needs_room_in_both() {
        let clock = ManualClock::starting_at(0);
        let resilience = resilience(&clock);
        let both = ["shop", "per-user"];
        // The user budget allows alice one request a minute; the app's burst of 2 is shared.
        assert!(
            resilience
                .admit(&both, None, "alice", Duration::ZERO)
                .await
                .is_ok()
        );
        let alice = resilience.admit(&both, None, "alice", Duration::ZERO).await;
        assert!(
            matches!(&alice, Err(Deferral::RateLimited { budget, .. }) if budget == "per-user"),
            "{alice:?}"
        );
        assert!(
            resilience
                .admit(&both, None, "bob", Duration::ZERO)
                .await
                .is_ok()
        );
        // Bob and carol have room of their own, but the app's burst is spent.
        let carol = resilience.admit(&both, None, "carol", Duration::ZERO).await;
        assert!(
            matches!(&carol, Err(Deferral::RateLimited { budget, .. }) if budget == "shop"),
            "{carol:?}"
        );
    }

    #[tokio::test]
    async fn an_upstream_limit_on_a_users_request_pushes_out_only_that_users_budget() {
        let clock = ManualClock::starting_at(0);
        let resilience = resilience(&clock);
        let both = ["shop", "per-user"];
        resilience.upstream_limit(&both, "alice", 3_600_000).await;
        let alice = resilience.admit(&both, None, "alice", Duration::ZERO).await;
        assert!(
            matches!(&alice, Err(Deferral::RateLimited { budget, retry_at }) if budget == "per-user" && *retry_at >= 3_600_000),
            "{alice:?}"
        );
        assert!(
            resilience
                .admit(&both, None, "bob", Duration::ZERO)
                .await
                .is_ok()
        );
        // A rule with only the shared budget: the upstream's word is about it.
        resilience.upstream_limit(&["shop"], "bob", 60_000).await;
        let shop = resilience
            .admit(&["shop"], None, "bob", Duration::ZERO)
            .await;
        assert!(
            matches!(shop, Err(Deferral::RateLimited { .. })),
            "{shop:?}"
        );
    }

    #[tokio::test]
    async fn an_open_breaker_defers_until_the_next_probe_and_spends_no_budget() {
        let clock = ManualClock::starting_at(0);
        let resilience = resilience(&clock);
        open_the_shop_breaker(&resilience).await;
        clock.advance(Duration::from_secs(10));
        let deferral = resilience
            .admit(&["shop"], Some("shop"), "t", Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(
            deferral,
            Deferral::BreakerOpen {
                breaker: "shop".to_string(),
                retry_at: 15_000
            }
        );
        let fill = resilience.status().await.budgets["shop"]
            .fill
            .clone()
            .unwrap();
        assert_eq!(fill.available, 2, "the rejected call took no slot");
        resilience.record_probe("shop", true);
        assert_eq!(resilience.breaker_state("shop"), Some(BreakerState::Closed));
    }
}
