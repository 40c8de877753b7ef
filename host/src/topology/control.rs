//! The interface through which the outside watches and steers a running topology: the admin
//! API, SIGHUP and the CLI use it, so the topology never depends on them. Endpoints (jobs,
//! searches, dead letters) add a method here and an implementation in the topology.

use super::{ReloadReport, StatusReport, Topology};
use crate::deadletters::{Acted, Action, DeadLetterError, Entry, Filter as DeadFilter, Listing};
use crate::pipeline::SearchError;
use crate::pipeline::search::Answered;
use async_trait::async_trait;
use serde::Serialize;
use tsunagi_backends::{BackendError, Enqueued, NewJob, QueueSummary};

#[async_trait]
pub trait Control: Send + Sync {
    /// Connectors and their versions, queues, budgets, breakers and the last reloads.
    async fn status(&self) -> Result<StatusReport, BackendError>;
    /// Swaps in what changed: `only` that connector, or every one whose settings or plugin
    /// changed.
    async fn reload(&self, only: Option<&str>) -> ReloadReport;
    /// Returns `connector` to its previous version.
    async fn rollback(&self, connector: &str) -> ReloadReport;
    /// Whether the host should be sent work: its pipelines run and its store answers. `Err`
    /// says why not.
    async fn ready(&self) -> Result<(), String>;

    // --- Handler jobs.
    /// Enqueues a job on a queue a handler connector serves; says whether its idempotency key
    /// was new. Nothing is stored when it is refused.
    async fn enqueue(&self, queue: &str, job: InboundJob) -> Result<Enqueued, JobsError>;
    /// Pauses (`true`) or resumes a served queue, durably.
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), JobsError>;
    /// Every served queue: its connector, counts and whether it is paused.
    async fn queues(&self) -> Result<Vec<QueueStatus>, BackendError>;

    // --- Inbound events.
    /// Enqueues one job per handler subscribed to `topic` (kind = the topic, payload = the
    /// event); the event's id makes a resent event a repeat. `Err(UnknownQueue)` when nobody
    /// subscribes.
    async fn publish(&self, topic: &str, event: InboundEvent) -> Result<Vec<EventJob>, JobsError> {
        let _ = event;
        Err(JobsError::NoSubscriber(topic.to_string()))
    }

    // --- Rankings.
    /// Answers `query` on `ranking`'s board of `period` (by default its longest).
    async fn ranking(
        &self,
        ranking: &str,
        period: Option<crate::config::Period>,
        query: crate::rankings::RankingQuery,
    ) -> Result<crate::rankings::RankingAnswer, crate::rankings::RankingError> {
        let _ = (period, query);
        Err(crate::rankings::RankingError::Unknown(ranking.to_string()))
    }

    // --- Product search.
    /// Runs a product search given as query-string pairs (checked, each wrong one named).
    async fn search(&self, params: Vec<(String, String)>) -> Result<Answered, SearchError> {
        let _ = params;
        Err(SearchError::NoShops)
    }

    // --- Cluster.
    /// Pushes a plugin or the config to every host of the cluster (see [`crate::cluster`]).
    async fn push(
        &self,
        change: crate::cluster::Change,
    ) -> Result<crate::cluster::PushReport, crate::cluster::PushError> {
        let _ = change;
        Err(crate::cluster::PushError::NotInCluster)
    }

    /// Lifts `connector`'s pause (`pause_on_problem`): `Ok(true)` when it was paused, `Err`
    /// when there is no such connector.
    async fn resume(&self, connector: &str) -> Result<bool, String> {
        Err(format!("cannot resume '{connector}' here"))
    }

    // --- Dead letters.
    /// The dead-letter entries `filter` selects, at most `limit` of each kind.
    async fn dead_letters(
        &self,
        filter: &DeadFilter,
        limit: u32,
    ) -> Result<Listing, DeadLetterError> {
        let _ = (filter, limit);
        Ok(Listing::default())
    }

    /// Retries or drops dead-letter entries: those named, or (`entries` none) all `filter`
    /// selects.
    async fn act_on_dead(
        &self,
        action: Action,
        entries: Option<Vec<Entry>>,
        filter: &DeadFilter,
    ) -> Result<Acted, DeadLetterError> {
        let _ = (action, filter);
        Ok(Acted {
            done: 0,
            missing: entries
                .unwrap_or_default()
                .into_iter()
                .map(Entry::name)
                .collect(),
        })
    }
}

/// A job as a producer hands it in (`POST /v1/queues/{queue}/jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundJob {
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub target: Option<String>,
    pub idempotency_key: Option<String>,
}

/// An event as a producer hands it in (`POST /v1/events/{topic}`): thin, ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEvent {
    /// The event as JSON text.
    pub payload: String,
    /// The event's own id: the same id again is a repeat, nothing enqueued.
    pub id: Option<String>,
    /// The linked target the jobs act for, if the event names one.
    pub target: Option<String>,
}

/// The job one subscriber got for an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventJob {
    pub connector: String,
    pub queue: String,
    pub id: i64,
    /// The event was seen before: this is the job it made then.
    pub repeat: bool,
}

/// Why a job could not be enqueued or a queue paused.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("no handler connector serves queue '{0}'")]
    UnknownQueue(String),
    #[error(
        "no handler subscribes to topic '{0}' (a handler lists it in [connectors.NAME.jobs] events)"
    )]
    NoSubscriber(String),
    /// The job is over a cap or malformed; the reason names the field.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Backend(BackendError),
}

/// One served queue, for `tsunagi queues list` and `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    pub connector: String,
    /// Where the queue's jobs live ("sqlite", "redis redis://…"): job ids are that store's.
    pub store: String,
    #[serde(flatten)]
    pub summary: QueueSummary,
}

#[async_trait]
impl Control for Topology {
    async fn status(&self) -> Result<StatusReport, BackendError> {
        self.status_report().await
    }

    async fn reload(&self, only: Option<&str>) -> ReloadReport {
        self.reloader.reload(only).await
    }

    async fn rollback(&self, connector: &str) -> ReloadReport {
        self.reloader.rollback(connector).await
    }

    async fn push(
        &self,
        change: crate::cluster::Change,
    ) -> Result<crate::cluster::PushReport, crate::cluster::PushError> {
        match &self.cluster {
            Some(cluster) => cluster.push(&*self.reloader, change).await,
            None => Err(crate::cluster::PushError::NotInCluster),
        }
    }

    async fn enqueue(&self, queue: &str, job: InboundJob) -> Result<Enqueued, JobsError> {
        let info = self
            .pipelines
            .job_queue(queue)
            .ok_or_else(|| JobsError::UnknownQueue(queue.to_string()))?;
        let new = NewJob {
            kind: job.kind,
            target: job.target,
            idempotency_key: job.idempotency_key,
            ..NewJob::new(queue, job.payload, info.max_attempts, self.clock.now_ms())
        };
        if let Some(problem) = new.problem() {
            return Err(JobsError::Refused(problem));
        }
        self.jobs
            .enqueue_job(new)
            .await
            .map_err(|error| match error {
                BackendError::Refused(reason) => JobsError::Refused(reason),
                other => JobsError::Backend(other),
            })
    }

    async fn publish(&self, topic: &str, event: InboundEvent) -> Result<Vec<EventJob>, JobsError> {
        let subscribed: Vec<(String, String)> = self
            .pipelines
            .job_queues()
            .into_iter()
            .filter(|(_, info)| info.events.iter().any(|t| t == topic))
            .map(|(queue, info)| (queue, info.connector))
            .collect();
        if subscribed.is_empty() {
            return Err(JobsError::NoSubscriber(topic.to_string()));
        }
        let mut jobs = Vec::new();
        for (queue, connector) in subscribed {
            let job = InboundJob {
                kind: topic.to_string(),
                payload: event.payload.clone(),
                target: event.target.clone(),
                idempotency_key: event.id.as_ref().map(|id| format!("event:{topic}:{id}")),
            };
            let (id, repeat) = match self.enqueue(&queue, job).await? {
                Enqueued::New(id) => (id, false),
                Enqueued::Repeat(id) => (id, true),
            };
            jobs.push(EventJob {
                connector,
                queue,
                id,
                repeat,
            });
        }
        Ok(jobs)
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool) -> Result<(), JobsError> {
        if self.pipelines.job_queue(queue).is_none() {
            return Err(JobsError::UnknownQueue(queue.to_string()));
        }
        self.jobs
            .set_queue_paused(queue, paused, self.clock.now_ms())
            .await
            .map_err(JobsError::Backend)
    }

    async fn queues(&self) -> Result<Vec<QueueStatus>, BackendError> {
        let mut queues = Vec::new();
        for (queue, info) in self.pipelines.job_queues() {
            queues.push(QueueStatus {
                connector: info.connector,
                store: self.jobs_store.clone(),
                summary: QueueSummary {
                    paused: self.jobs.queue_paused(&queue).await?,
                    counts: self.jobs.queue_counts(&queue).await?,
                    queue,
                },
            });
        }
        Ok(queues)
    }

    async fn search(&self, params: Vec<(String, String)>) -> Result<Answered, SearchError> {
        let searches = self.pipelines.searches();
        let search = searches.parse(&params)?;
        if let Some(popularity) = searches.popularity() {
            let member = crate::rankings::query_member(&search.query.keywords);
            // Counting is not the search: a full board or a failing store is logged, not fatal.
            if let Err(error) = self.rankings.add(&popularity, &member, 1).await {
                tracing::warn!(ranking = %popularity, "search not counted: {error}");
            }
        }
        searches.search(search).await
    }

    async fn ranking(
        &self,
        ranking: &str,
        period: Option<crate::config::Period>,
        query: crate::rankings::RankingQuery,
    ) -> Result<crate::rankings::RankingAnswer, crate::rankings::RankingError> {
        let period = match period {
            Some(period) => period,
            None => self.rankings.default_period(ranking)?,
        };
        self.rankings.query(ranking, period, &query).await
    }

    async fn resume(&self, connector: &str) -> Result<bool, String> {
        let handle = self
            .connectors
            .get(connector)
            .ok_or_else(|| format!("no connector '{connector}'"))?;
        let was_paused = handle.stats.resume();
        if was_paused {
            tracing::info!(%connector, "resumed by an operator");
        }
        Ok(was_paused)
    }

    async fn dead_letters(
        &self,
        filter: &DeadFilter,
        limit: u32,
    ) -> Result<Listing, DeadLetterError> {
        self.dead_letters.list(filter, limit).await
    }

    async fn act_on_dead(
        &self,
        action: Action,
        entries: Option<Vec<Entry>>,
        filter: &DeadFilter,
    ) -> Result<Acted, DeadLetterError> {
        let entries = match entries {
            Some(entries) => entries,
            None => self.dead_letters.select(filter).await?,
        };
        self.dead_letters
            .act(action, &entries, self.clock.now_ms())
            .await
    }

    async fn ready(&self) -> Result<(), String> {
        if self.stop_requested() {
            return Err("draining: the host is stopping".into());
        }
        // Any cheap read proves the store answers.
        self.backend
            .count_targets("")
            .await
            .map(|_| ())
            .map_err(|error| format!("the store does not answer: {error}"))?;
        self.jobs
            .queue_paused("")
            .await
            .map(|_| ())
            .map_err(|error| format!("the job queue does not answer: {error}"))
    }
}
