//! Which store serves each concern beside `host.database`, as `[backends]` says: rate-limit
//! budgets in this process or in Redis (shared by every host, on Redis's clock), rankings in
//! the database or in Redis, the job queues handler connectors serve in the database or on
//! Redis Streams (sink delivery queues always stay in the database: their jobs are enqueued in
//! the transaction that commits a poll, which Redis cannot join), and in Redis the cluster's lock for OAuth refreshes, its shared
//! health probes, its membership and its pushed revisions. Opened once when the host starts; a
//! reload that changes `[backends]` is refused (a store is not swapped under running work).

use crate::config::backends::BackendSettings;
use crate::config::{Config, FieldLocation};
use std::sync::Arc;
use tsunagi_backends::coordination::{
    BreakerStore, ClusterLock, InProcessCoordination, ProbeBoard, RateLimitStore,
};
use tsunagi_backends::redis::RedisStore;
use tsunagi_backends::redis::budgets::RedisBudgets;
use tsunagi_backends::redis::lock::RedisLock;
use tsunagi_backends::redis::members::RedisMembers;
use tsunagi_backends::redis::queue::RedisJobQueue;
use tsunagi_backends::redis::rankings::RedisRankings;
use tsunagi_backends::{Backend, BackendError, JobQueue, RankingStore};

/// A store of `[backends]` that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {source}")]
pub struct StoreError {
    pub at: FieldLocation,
    #[source]
    pub source: BackendError,
}

/// The stores a host's budgets, breakers, rankings and handler job queues live in.
#[derive(Clone)]
pub struct Stores {
    pub budgets: Arc<dyn RateLimitStore>,
    /// Breakers decide locally, on every backend: each host judges the upstream from what it
    /// sees itself.
    pub breakers: Arc<dyn BreakerStore>,
    pub rankings: Arc<dyn RankingStore>,
    /// The job queues handler connectors serve (`ConnectorSettings::job_queue`): everything
    /// that enqueues, leases, completes, pauses or counts handler jobs goes here. Sink delivery
    /// queues are not here: they stay in `host.database` (see the module's docs).
    pub jobs: Arc<dyn JobQueue>,
    /// The same queue when it is on Redis, for what only it offers (purging done jobs); none
    /// when `jobs` is the database, whose retention purges its own.
    pub redis_queue: Option<RedisJobQueue>,
    /// The lock hosts refresh OAuth tokens under (none: each host refreshes on its own).
    pub cluster_lock: Option<Arc<dyn ClusterLock>>,
    /// Where hosts share health probes (none: each host probes every interval).
    pub probe_board: Option<Arc<dyn ProbeBoard>>,
    /// The cluster's membership list (none: a host on its own).
    pub members: Option<RedisMembers>,
    /// Where the cluster keeps pushed plugins, config revisions and its bus (none: alone).
    pub cluster: Option<RedisStore>,
    /// What serves each concern, for logs and `/status` (URLs without passwords).
    pub serving: Vec<(&'static str, String)>,
    /// The settings these were opened from (a reload must not change them).
    pub settings: BackendSettings,
}

impl Stores {
    /// One host's stores: budgets and breakers in memory, rankings and job queues in
    /// `backend`.
    pub fn local(backend: Arc<dyn Backend>) -> Self {
        let memory = Arc::new(InProcessCoordination::new());
        Self {
            budgets: memory.clone(),
            breakers: memory,
            serving: vec![
                ("budgets", "memory".to_string()),
                ("rankings", backend.kind().to_string()),
                ("queue", backend.kind().to_string()),
                ("cluster", "this host alone".to_string()),
            ],
            jobs: backend.clone(),
            redis_queue: None,
            rankings: backend,
            cluster_lock: None,
            probe_board: None,
            members: None,
            cluster: None,
            settings: BackendSettings::default(),
        }
    }

    /// What serves `concern` ("queue", "rankings", …), as [`Self::serving`] says.
    pub fn serving_of(&self, concern: &str) -> String {
        self.serving
            .iter()
            .find(|(name, _)| *name == concern)
            .map(|(_, store)| store.clone())
            .unwrap_or_default()
    }

    /// The stores `config`'s `[backends]` names, `backend` serving what it leaves out. One
    /// Redis connection per distinct URL.
    pub async fn open(config: &Config, backend: Arc<dyn Backend>) -> Result<Self, StoreError> {
        let mut stores = Self::local(backend);
        let settings = &config.backends;
        let mut opened: Vec<(String, RedisStore)> = Vec::new();
        let mut redis = async |field: &str, url: &str| -> Result<RedisStore, StoreError> {
            if let Some((_, store)) = opened.iter().find(|(seen, _)| seen == url) {
                return Ok(store.clone());
            }
            let store = RedisStore::open(url).await.map_err(|source| StoreError {
                at: config.locate(field),
                source,
            })?;
            opened.push((url.to_string(), store.clone()));
            Ok(store)
        };
        if let Some(url) = &settings.budgets {
            let store = redis("backends.budgets", url).await?;
            stores.serving[0].1 = format!("redis {}", store.shown_url());
            stores.budgets = Arc::new(RedisBudgets::new(store));
        }
        if let Some(url) = &settings.rankings {
            let store = redis("backends.rankings", url).await?;
            stores.serving[1].1 = format!("redis {}", store.shown_url());
            stores.rankings = Arc::new(RedisRankings::new(store));
        }
        if let Some(url) = &settings.queue {
            let store = redis("backends.queue", url).await?;
            stores.serving[2].1 = format!("redis {}", store.shown_url());
            let queue = RedisJobQueue::new(store);
            stores.jobs = Arc::new(queue.clone());
            stores.redis_queue = Some(queue);
        }
        if let Some(url) = &settings.cluster {
            let store = redis("backends.cluster", url).await?;
            stores.serving[3].1 = format!("redis {}", store.shown_url());
            stores.members = Some(RedisMembers::new(store.clone()));
            stores.cluster = Some(store.clone());
            let lock = Arc::new(RedisLock::new(store));
            stores.cluster_lock = Some(lock.clone());
            stores.probe_board = Some(lock);
        }
        stores.settings = settings.clone();
        Ok(stores)
    }
}

/// The Redis job queue `config`'s `[backends] queue` names, opened on its own (for the CLI);
/// `None` when handler jobs stay in `host.database`.
pub async fn open_redis_queue(config: &Config) -> Result<Option<RedisJobQueue>, StoreError> {
    let Some(url) = &config.backends.queue else {
        return Ok(None);
    };
    let store = RedisStore::open(url).await.map_err(|source| StoreError {
        at: config.locate("backends.queue"),
        source,
    })?;
    Ok(Some(RedisJobQueue::new(store)))
}
