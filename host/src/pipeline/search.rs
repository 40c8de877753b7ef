//! The search pipeline: one product search fanned out to the chosen shops (`searcher`
//! connectors) at once under one deadline, merged into the common product schema and sorted,
//! with each shop's status. A shop that is down, slow, out of budget or answering nonsense
//! yields its status (`breaker-open`, `rate-limited`, `timeout`, `error` with the reason) and
//! the others' products, never a failed search.
//!
//! Identical searches share one flight: concurrent ones wait for the same shop calls, and an
//! answer every shop gave fully is kept for `search.cache_ttl` (at most `search.cache_entries`
//! answers, the oldest dropped first). Distinct searches in flight are capped; past the cap a
//! search is refused as busy rather than queued without end.
//!
//! Queries come from outside (the admin API, `tsunagi search`): [`SearchPipeline::parse`]
//! checks every parameter and names the one that is wrong.

use crate::config::{SEARCH_LIMIT, SearchSettings};
use crate::redact;
use crate::resilience::Deferral;
use crate::runtime::{
    CallError, CallReport, FailureKind, Product, ProductPage, ProductQuery, SortOrder,
    SwappableConnector, TargetCall,
};
use crate::stats::ConnectorStats;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// The longest query text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most shops one search may name.
pub const MAX_SHOPS_PER_SEARCH: usize = 32;
/// The last page a search may ask for.
pub const MAX_PAGE: u32 = 100;
/// The highest price a filter may name.
pub const MAX_PRICE: u64 = 1_000_000_000_000;
/// Distinct searches running at once; identical ones share a flight and count once.
pub const SEARCHES_IN_FLIGHT: usize = 1024;
/// How long past the deadline a shop's call may take to end on its own (the call's own timeout
/// fires first; this only guards against a call that ignores it).
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// The parameters a search takes.
const PARAMETERS: [&str; 7] = [
    "q",
    "shops",
    "limit",
    "sort",
    "min_price",
    "max_price",
    "page",
];

/// A parameter of a search that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter '{parameter}': {reason}")]
pub struct BadQuery {
    pub parameter: String,
    pub reason: String,
}

fn bad(parameter: &str, reason: impl Into<String>) -> BadQuery {
    BadQuery {
        parameter: parameter.to_string(),
        reason: reason.into(),
    }
}

/// Why a search was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    BadQuery(#[from] BadQuery),
    #[error("no searcher connector is running")]
    NoShops,
    #[error("{SEARCHES_IN_FLIGHT} different searches are running already; try again in a moment")]
    Busy,
}

/// A checked search: what to ask and whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProductSearch {
    pub query: ProductQuery,
    /// Sorted, without repeats.
    pub shops: Vec<String>,
}

/// What became of one shop in a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShopStatus {
    Ok,
    BreakerOpen,
    RateLimited,
    Timeout,
    Error,
}

impl ShopStatus {
    /// As answers name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ShopStatus::Ok => "ok",
            ShopStatus::BreakerOpen => "breaker-open",
            ShopStatus::RateLimited => "rate-limited",
            ShopStatus::Timeout => "timeout",
            ShopStatus::Error => "error",
        }
    }
}

/// One shop's part of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShopOutcome {
    pub status: ShopStatus,
    /// Why it is not `ok` (redacted: fit to show a user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Products it gave.
    pub count: usize,
    /// Its count of all matches, if it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    pub elapsed_ms: u64,
}

/// A search's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchAnswer {
    pub query: String,
    pub sort: SortOrder,
    pub page: u32,
    pub limit: u32,
    /// Merged from every shop that answered, in the order asked for.
    pub products: Vec<Product>,
    pub shops: BTreeMap<String, ShopOutcome>,
    pub elapsed_ms: u64,
}

impl SearchAnswer {
    /// Every shop answered fully.
    pub fn complete(&self) -> bool {
        self.shops
            .values()
            .all(|shop| shop.status == ShopStatus::Ok)
    }
}

/// An answer and whether it came from the cache (or a flight another search started).
#[derive(Debug, Clone)]
pub struct Answered {
    pub answer: Arc<SearchAnswer>,
    pub cached: bool,
}

/// What the pipeline did, for `/status` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SearchCounts {
    pub searches: u64,
    /// Answered from a kept answer or a flight already running.
    pub shared: u64,
    /// Flights that called the shops.
    pub flights: u64,
    pub refused_busy: u64,
    pub kept_answers: usize,
}

/// A flight: the answer once the shops have answered; every identical search waits on it.
type Flight = Arc<OnceCell<Arc<SearchAnswer>>>;

enum Slot {
    Flying(Flight),
    Kept {
        answer: Arc<SearchAnswer>,
        until: Instant,
    },
}

/// How a search gets its answer.
enum Boarding {
    Kept(Arc<SearchAnswer>),
    Join(Flight),
    Lead(Flight, tokio::sync::OwnedSemaphorePermit),
}

#[derive(Default)]
struct Flights {
    slots: HashMap<ProductSearch, Slot>,
    /// Kept answers in the order they expire (the TTL is one for all).
    kept: VecDeque<(Instant, ProductSearch)>,
    counts: SearchCounts,
}

/// A shop searches may ask: its versions, and the counters its answers go to.
#[derive(Clone)]
struct Shop {
    versions: Arc<SwappableConnector>,
    stats: Arc<ConnectorStats>,
}

/// The product searches of a topology, over the shops it runs now.
pub struct SearchPipeline {
    settings: RwLock<SearchSettings>,
    shops: RwLock<BTreeMap<String, Shop>>,
    flights: Mutex<Flights>,
    in_flight: Arc<Semaphore>,
}

impl SearchPipeline {
    pub fn new(settings: SearchSettings) -> Self {
        Self::with_flight_cap(settings, SEARCHES_IN_FLIGHT)
    }

    /// With another cap on distinct searches in flight (tests).
    pub fn with_flight_cap(settings: SearchSettings, cap: usize) -> Self {
        Self {
            settings: RwLock::new(settings),
            shops: RwLock::new(BTreeMap::new()),
            flights: Mutex::new(Flights::default()),
            in_flight: Arc::new(Semaphore::new(cap)),
        }
    }

    /// A reloaded `[search]`: new searches use it; kept answers are dropped (a shorter TTL or
    /// other default shops may make them wrong).
    pub fn apply(&self, settings: &SearchSettings) {
        let mut current = self.settings.write().unwrap_or_else(|p| p.into_inner());
        if *current != *settings {
            *current = settings.clone();
            drop(current);
            self.forget_kept();
        }
    }

    /// Adds (or replaces) a shop the searches may ask.
    pub fn add_shop(
        &self,
        name: &str,
        versions: Arc<SwappableConnector>,
        stats: Arc<ConnectorStats>,
    ) {
        self.write_shops()
            .insert(name.to_string(), Shop { versions, stats });
        self.forget_kept();
    }

    /// Removes a shop (its connector stopped).
    pub fn remove_shop(&self, name: &str) {
        if self.write_shops().remove(name).is_some() {
            self.forget_kept();
        }
    }

    /// The ranking that counts queries (`search.popularity`), if any.
    pub fn popularity(&self) -> Option<String> {
        self.read_settings().popularity.clone()
    }

    /// The shops searches may ask now.
    pub fn shop_names(&self) -> Vec<String> {
        self.read_shops().keys().cloned().collect()
    }

    pub fn counts(&self) -> SearchCounts {
        let flights = self.lock_flights();
        SearchCounts {
            kept_answers: flights.kept.len(),
            ..flights.counts
        }
    }

    /// Checks a search's parameters (as a query string gives them: possibly repeated, in any
    /// order); the error names the first wrong one.
    pub fn parse(&self, params: &[(String, String)]) -> Result<ProductSearch, SearchError> {
        let settings = self.read_settings().clone();
        parse_search(params, &settings, self.shop_names())
    }
}

/// Query-string pairs by name, each one of `known` and given once; the error names the first
/// that is not (an unknown name cut to 64 characters).
pub fn known_once<'a>(
    params: &'a [(String, String)],
    known: &[&str],
) -> Result<BTreeMap<&'a str, &'a str>, BadQuery> {
    let mut seen = BTreeMap::new();
    for (name, value) in params {
        if !known.contains(&name.as_str()) {
            return Err(bad(
                &clip(name, 64),
                format!("unknown parameter (known: {})", known.join(", ")),
            ));
        }
        if seen.insert(name.as_str(), value.as_str()).is_some() {
            return Err(bad(name, "given more than once"));
        }
    }
    Ok(seen)
}

/// [`SearchPipeline::parse`] over the shops `running` now.
fn parse_search(
    params: &[(String, String)],
    settings: &SearchSettings,
    running: Vec<String>,
) -> Result<ProductSearch, SearchError> {
    let seen = known_once(params, &PARAMETERS)?;
    let keywords = seen.get("q").map_or("", |q| q.trim());
    if keywords.is_empty() {
        return Err(bad("q", "empty: say what to search for").into());
    }
    let chars = keywords.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(bad(
            "q",
            format!("{chars} characters, more than {MAX_QUERY_CHARS}"),
        )
        .into());
    }
    if keywords.chars().any(char::is_control) {
        return Err(bad("q", "holds control characters").into());
    }
    let number = |name: &str| -> Result<Option<u64>, BadQuery> {
        seen.get(name)
            .map(|text| {
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| bad(name, format!("{:?} is not a whole number", clip(text, 32))))
            })
            .transpose()
    };
    let limit = match number("limit")? {
        None => settings.default_limit,
        Some(limit) => u32::try_from(limit)
            .ok()
            .filter(|limit| SEARCH_LIMIT.contains(limit))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!(
                        "{limit} is not between {} and {}",
                        SEARCH_LIMIT.start(),
                        SEARCH_LIMIT.end()
                    ),
                )
            })?,
    };
    let page = match number("page")? {
        None => 1,
        Some(page) => u32::try_from(page)
            .ok()
            .filter(|page| (1..=MAX_PAGE).contains(page))
            .ok_or_else(|| bad("page", format!("{page} is not between 1 and {MAX_PAGE}")))?,
    };
    let sort = match seen.get("sort") {
        None => SortOrder::Relevance,
        Some(name) => SortOrder::parse(name).ok_or_else(|| {
            let known: Vec<&str> = SortOrder::ALL.iter().map(|(name, _)| *name).collect();
            bad(
                "sort",
                format!("{:?} is not one of {}", clip(name, 32), known.join(", ")),
            )
        })?,
    };
    let min_price = number("min_price")?;
    let max_price = number("max_price")?;
    for (name, price) in [("min_price", min_price), ("max_price", max_price)] {
        if price.is_some_and(|price| price > MAX_PRICE) {
            return Err(bad(name, format!("more than {MAX_PRICE}")).into());
        }
    }
    if let (Some(min), Some(max)) = (min_price, max_price)
        && min > max
    {
        return Err(bad(
            "min_price",
            format!("{min} is above max_price {max}: no price is in that range"),
        )
        .into());
    }
    let mut shops: Vec<String> = match seen.get("shops") {
        Some(list) => {
            let named: Vec<&str> = list.split(',').map(str::trim).collect();
            if named.len() > MAX_SHOPS_PER_SEARCH {
                return Err(bad(
                    "shops",
                    format!("{} shops, more than {MAX_SHOPS_PER_SEARCH}", named.len()),
                )
                .into());
            }
            let mut shops = Vec::new();
            for shop in named {
                if !running.iter().any(|known| known == shop) {
                    return Err(bad(
                        "shops",
                        format!(
                            "no shop {:?} (shops: {})",
                            clip(shop, 64),
                            if running.is_empty() {
                                "none".to_string()
                            } else {
                                running.join(", ")
                            }
                        ),
                    )
                    .into());
                }
                shops.push(shop.to_string());
            }
            shops
        }
        None => match &settings.shops {
            Some(defaults) => defaults
                .iter()
                .filter(|shop| running.contains(shop))
                .cloned()
                .collect(),
            None => running,
        },
    };
    shops.sort();
    shops.dedup();
    if shops.is_empty() {
        return Err(SearchError::NoShops);
    }
    Ok(ProductSearch {
        query: ProductQuery {
            keywords: keywords.to_string(),
            limit,
            page,
            sort,
            min_price,
            max_price,
        },
        shops,
    })
}

impl SearchPipeline {
    /// Answers `search`: from a kept answer, by joining a flight already asking the same, or
    /// by asking its shops.
    pub async fn search(&self, search: ProductSearch) -> Result<Answered, SearchError> {
        let (flight, permit) = match self.board(&search)? {
            Boarding::Kept(answer) => {
                return Ok(Answered {
                    answer,
                    cached: true,
                });
            }
            Boarding::Join(flight) => (flight, None),
            Boarding::Lead(flight, permit) => (flight, Some(permit)),
        };
        let answer = flight
            .get_or_init(|| self.fly(search.clone()))
            .await
            .clone();
        // Whoever lands it: the search that started the flight may have gone away first.
        self.land(&search, &flight, &answer);
        let cached = permit.is_none();
        drop(permit);
        Ok(Answered { answer, cached })
    }

    /// A kept answer, a flight to join, or a new flight (with its place among those in
    /// flight).
    fn board(&self, search: &ProductSearch) -> Result<Boarding, SearchError> {
        let mut flights = self.lock_flights();
        flights.counts.searches += 1;
        match flights.slots.get(search) {
            Some(Slot::Kept { answer, until }) if *until > Instant::now() => {
                let answer = answer.clone();
                flights.counts.shared += 1;
                return Ok(Boarding::Kept(answer));
            }
            Some(Slot::Flying(flight)) => {
                let flight = flight.clone();
                flights.counts.shared += 1;
                return Ok(Boarding::Join(flight));
            }
            _ => {}
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            flights.counts.refused_busy += 1;
            return Err(SearchError::Busy);
        };
        let flight: Flight = Arc::new(OnceCell::new());
        flights
            .slots
            .insert(search.clone(), Slot::Flying(flight.clone()));
        Ok(Boarding::Lead(flight, permit))
    }

    /// After a flight: keep a complete answer for the TTL, else forget the flight.
    fn land(&self, search: &ProductSearch, flight: &Flight, answer: &Arc<SearchAnswer>) {
        let (ttl, cap) = {
            let settings = self.read_settings();
            (settings.cache_ttl, settings.cache_entries)
        };
        let mut flights = self.lock_flights();
        let ours = matches!(flights.slots.get(search),
            Some(Slot::Flying(current)) if Arc::ptr_eq(current, flight));
        if !ours {
            return;
        }
        if answer.complete() && !ttl.is_zero() && cap > 0 {
            let until = Instant::now() + ttl;
            flights.slots.insert(
                search.clone(),
                Slot::Kept {
                    answer: answer.clone(),
                    until,
                },
            );
            flights.kept.push_back((until, search.clone()));
            let now = Instant::now();
            while let Some((until, oldest)) = flights.kept.front().cloned() {
                if until > now && flights.kept.len() <= cap {
                    break;
                }
                flights.kept.pop_front();
                if matches!(flights.slots.get(&oldest),
                    Some(Slot::Kept { until: kept, .. }) if *kept == until)
                {
                    flights.slots.remove(&oldest);
                }
            }
        } else {
            flights.slots.remove(search);
        }
    }

    /// Asks every shop of `search` at once and merges what came back by the deadline.
    async fn fly(&self, search: ProductSearch) -> Arc<SearchAnswer> {
        let started = Instant::now();
        let deadline = started + self.read_settings().deadline;
        {
            self.lock_flights().counts.flights += 1;
        }
        let asked: Vec<(String, Option<Shop>)> = {
            let shops = self.read_shops();
            search
                .shops
                .iter()
                .map(|name| (name.clone(), shops.get(name).cloned()))
                .collect()
        };
        let calls: Vec<_> = asked
            .into_iter()
            .map(|(name, shop)| {
                let query = search.query.clone();
                // Spawned, so a call runs to its end (and settles its breaker) even if every
                // search waiting for it goes away.
                let task =
                    shop.map(|shop| tokio::spawn(ask_shop(name.clone(), shop, query, deadline)));
                (name, task)
            })
            .collect();
        let mut pages = Vec::new();
        let mut shops = BTreeMap::new();
        for (name, task) in calls {
            let (outcome, products) = match task {
                None => (
                    failed(ShopStatus::Error, "the shop was removed".into(), started),
                    Vec::new(),
                ),
                Some(task) => match task.await {
                    Ok(answer) => answer,
                    Err(error) => (
                        failed(
                            ShopStatus::Error,
                            format!("the call failed: {error}"),
                            started,
                        ),
                        Vec::new(),
                    ),
                },
            };
            shops.insert(name, outcome);
            pages.push(products);
        }
        let query = &search.query;
        Arc::new(SearchAnswer {
            query: query.keywords.clone(),
            sort: query.sort,
            page: query.page,
            limit: query.limit,
            products: merge(pages, query.sort, query.limit as usize),
            shops,
            elapsed_ms: millis(started.elapsed()),
        })
    }

    fn forget_kept(&self) {
        let mut flights = self.lock_flights();
        flights.kept.clear();
        flights
            .slots
            .retain(|_, slot| matches!(slot, Slot::Flying(_)));
    }

    fn read_settings(&self) -> std::sync::RwLockReadGuard<'_, SearchSettings> {
        self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    fn read_shops(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Shop>> {
        self.shops.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_shops(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Shop>> {
        self.shops.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_flights(&self) -> std::sync::MutexGuard<'_, Flights> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One shop's call, bounded by the deadline, and what it came to.
async fn ask_shop(
    name: String,
    shop: Shop,
    query: ProductQuery,
    deadline: Instant,
) -> (ShopOutcome, Vec<Product>) {
    let started = Instant::now();
    let pool = shop.versions.current();
    // The shop's name is the call's target: per-target budgets then count per shop.
    let call = pool.search_products(TargetCall::detached(&name), &query, deadline);
    let answered = match tokio::time::timeout_at((deadline + DEADLINE_GRACE).into(), call).await {
        Err(_) => (
            failed(
                ShopStatus::Timeout,
                "no answer within the search's deadline".into(),
                started,
            ),
            Vec::new(),
        ),
        Ok(report) => {
            super::count_upstream(&shop.stats, &report.exchanges);
            outcome(report, started)
        }
    };
    shop.stats.shop_answered(answered.0.status.as_str());
    answered
}

fn failed(status: ShopStatus, reason: String, started: Instant) -> ShopOutcome {
    ShopOutcome {
        status,
        reason: Some(reason),
        count: 0,
        total: None,
        elapsed_ms: millis(started.elapsed()),
    }
}

/// A shop's call report as its status in the answer.
fn outcome(report: CallReport<ProductPage>, started: Instant) -> (ShopOutcome, Vec<Product>) {
    let error = match report.result {
        Ok(page) => {
            return (
                ShopOutcome {
                    status: ShopStatus::Ok,
                    reason: None,
                    count: page.products.len(),
                    total: page.total,
                    elapsed_ms: millis(started.elapsed()),
                },
                page.products,
            );
        }
        Err(error) => error,
    };
    // The host's own hold-back says more than what the plugin made of it.
    let held_back = report
        .exchanges
        .iter()
        .find_map(|exchange| exchange.deferral.clone());
    let (status, reason) = match (held_back, &error) {
        (Some(deferral @ Deferral::BreakerOpen { .. }), _) => {
            (ShopStatus::BreakerOpen, deferral.to_string())
        }
        (Some(deferral @ (Deferral::RateLimited { .. } | Deferral::InFlight { .. })), _) => {
            (ShopStatus::RateLimited, deferral.to_string())
        }
        (None, CallError::Timeout(_)) => (
            ShopStatus::Timeout,
            "no answer within the search's deadline".to_string(),
        ),
        (
            None,
            CallError::Connector {
                kind: FailureKind::RateLimited,
                message,
            },
        ) => (ShopStatus::RateLimited, message.clone()),
        (None, error) => (ShopStatus::Error, error.to_string()),
    };
    (
        failed(status, redact::text(&reason).into_owned(), started),
        Vec::new(),
    )
}

/// The shops' pages as one list in `sort` order, at most `limit` long. Relevance takes each
/// shop's best in turn (no shop's ranking is comparable with another's); the other orders sort
/// on the field, ties kept in shop order.
fn merge(pages: Vec<Vec<Product>>, sort: SortOrder, limit: usize) -> Vec<Product> {
    let mut merged: Vec<Product> = Vec::with_capacity(pages.iter().map(Vec::len).sum());
    match sort {
        SortOrder::Relevance => {
            let mut pages: Vec<std::vec::IntoIter<Product>> =
                pages.into_iter().map(Vec::into_iter).collect();
            while merged.len() < limit {
                let before = merged.len();
                for page in &mut pages {
                    if let Some(product) = page.next() {
                        merged.push(product);
                    }
                }
                if merged.len() == before {
                    break;
                }
            }
        }
        _ => {
            merged.extend(pages.into_iter().flatten());
            match sort {
                SortOrder::PriceAscending => merged.sort_by_key(|p| p.price),
                SortOrder::PriceDescending => merged.sort_by_key(|p| std::cmp::Reverse(p.price)),
                SortOrder::ReviewCount => {
                    merged.sort_by_key(|p| std::cmp::Reverse(p.review_count));
                }
                _ => merged.sort_by(|a, b| {
                    b.review_average
                        .unwrap_or(-1.0)
                        .total_cmp(&a.review_average.unwrap_or(-1.0))
                }),
            }
        }
    }
    merged.truncate(limit);
    merged
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

fn clip(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests;
