//! The dead-letter state, for operators: targets given up on (a permanent error, or
//! `retry.max_failures` failures in a row) and jobs whose attempts ran out (sink deliveries and
//! handler jobs), listed with their attempt history, put back to work or deleted. `tsunagi dlq`
//! uses it on the database directly; a running host serves it as `/v1/dlq` (the dashboard's
//! and, when a host runs, the CLI's way).
//!
//! Each entry is named `target:ID`, `job:ID` (a job in `host.database`) or `redis-job:ID` (a
//! handler job on the Redis queue `[backends] queue` names): the two stores number their jobs
//! separately, so the name says which one an id belongs to.

use crate::clock::rfc3339;
use crate::sinks::queue_name;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tsunagi_backends::{Attempt, Backend, BackendError, DeadJob, JobQueue, Millis, Target};

/// The most entries one listing holds per store (targets, database jobs, Redis jobs).
pub const MAX_LISTED: u32 = 100_000;

/// One dead-letter entry's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Target(i64),
    /// A job in `host.database`.
    Job(i64),
    /// A job on the Redis queue (its ids are not the database's).
    RedisJob(i64),
}

/// Why a dead-letter request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error(
        "{0:?} is not a dead-letter entry; `tsunagi dlq list` names them like target:12 or \
         job:7 (redis-job:7 for a job on the Redis queue)"
    )]
    NotAnEntry(String),
    #[error("{0} is a job on the Redis queue, but the config names no [backends] queue")]
    NoRedisQueue(String),
    #[error(transparent)]
    Store(#[from] BackendError),
}

impl Entry {
    pub fn parse(text: &str) -> Result<Entry, DeadLetterError> {
        let parsed = match text.split_once(':') {
            Some(("target", id)) => id.parse().ok().map(Entry::Target),
            Some(("job", id)) => id.parse().ok().map(Entry::Job),
            Some(("redis-job", id)) => id.parse().ok().map(Entry::RedisJob),
            _ => None,
        };
        // Echoed in the error: clipped, as it may come from a request.
        parsed
            .ok_or_else(|| DeadLetterError::NotAnEntry(crate::runtime::clip(text, 64).into_owned()))
    }

    pub fn name(self) -> String {
        match self {
            Entry::Target(id) => format!("target:{id}"),
            Entry::Job(id) => format!("job:{id}"),
            Entry::RedisJob(id) => format!("redis-job:{id}"),
        }
    }
}

/// Which entries: a connector's targets, a sink's or a queue's jobs, or everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Only this connector's targets (and no jobs).
    pub connector: Option<String>,
    /// Only this sink's delivery jobs (and no targets).
    pub sink: Option<String>,
    /// Only this job queue's jobs (a handler's `jobs.queue`, or `sink:NAME`), and no targets.
    pub queue: Option<String>,
}

/// One entry as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub entry: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connector: Option<String>,
    /// Redacted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub queue: Option<String>,
    /// Where a job lives: "database" (`host.database`) or "redis" (`[backends] queue`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub store: Option<String>,
    pub died_at: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub history: Vec<ListedAttempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedAttempt {
    pub at: String,
    pub error: String,
}

/// A listing: the entries (targets first, then jobs), and how many of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub entries: Vec<Listed>,
    pub targets: usize,
    pub jobs: usize,
    /// Of `jobs`, those on the Redis queue (none when there is no Redis queue).
    pub redis_jobs: usize,
    /// A Redis queue was asked too.
    pub redis_queue: bool,
}

/// What to do with entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Back to work now: targets become due, jobs are queued with fresh attempts.
    Retry,
    /// Deleted for good (a dropped target's stored items stay).
    Drop,
}

/// What an action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acted {
    pub done: usize,
    /// Entries not in the dead-letter state (already retried or dropped, or never dead).
    pub missing: Vec<String>,
}

/// What is dead, by store: targets, jobs in `host.database`, jobs on the Redis queue.
struct Dead {
    targets: Vec<Target>,
    jobs: Vec<DeadJob>,
    redis_jobs: Vec<DeadJob>,
}

/// The dead-letter state of one host's stores.
#[derive(Clone)]
pub struct DeadLetters {
    backend: Arc<dyn Backend>,
    /// The Redis job queue (`[backends] queue`), if there is one.
    redis_queue: Option<Arc<dyn JobQueue>>,
}

impl DeadLetters {
    pub fn new(backend: Arc<dyn Backend>, redis_queue: Option<Arc<dyn JobQueue>>) -> Self {
        Self {
            backend,
            redis_queue,
        }
    }

    /// Every entry `filter` selects, at most `limit` of each kind.
    pub async fn list(&self, filter: &Filter, limit: u32) -> Result<Listing, DeadLetterError> {
        let dead = self.dead(filter, limit).await?;
        let mut entries: Vec<Listed> = dead.targets.iter().map(listed_target).collect();
        entries.extend(
            dead.jobs
                .iter()
                .map(|job| listed_job(Entry::Job(job.id), "database", job)),
        );
        entries.extend(
            dead.redis_jobs
                .iter()
                .map(|job| listed_job(Entry::RedisJob(job.id), "redis", job)),
        );
        Ok(Listing {
            entries,
            targets: dead.targets.len(),
            jobs: dead.jobs.len() + dead.redis_jobs.len(),
            redis_jobs: dead.redis_jobs.len(),
            redis_queue: self.redis_queue.is_some(),
        })
    }

    /// Every entry `filter` selects, by name.
    pub async fn select(&self, filter: &Filter) -> Result<Vec<Entry>, DeadLetterError> {
        let dead = self.dead(filter, MAX_LISTED).await?;
        let targets = dead.targets.iter().map(|target| Entry::Target(target.id));
        let jobs = dead.jobs.iter().map(|job| Entry::Job(job.id));
        let redis_jobs = dead.redis_jobs.iter().map(|job| Entry::RedisJob(job.id));
        Ok(targets.chain(jobs).chain(redis_jobs).collect())
    }

    /// What is dead, by store.
    async fn dead(&self, filter: &Filter, limit: u32) -> Result<Dead, DeadLetterError> {
        let limit = limit.min(MAX_LISTED);
        let mut targets: Vec<Target> = Vec::new();
        if filter.sink.is_none() && filter.queue.is_none() {
            let mut after = 0;
            while (targets.len() as u32) < limit {
                let page_size = (limit - targets.len() as u32).min(1000);
                let page = self
                    .backend
                    .list_dead_targets(filter.connector.as_deref(), after, page_size)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                targets.extend(page);
            }
        }
        let mut jobs = Vec::new();
        let mut redis_jobs = Vec::new();
        if filter.connector.is_none() {
            let queue = filter
                .sink
                .as_deref()
                .map(queue_name)
                .or_else(|| filter.queue.clone());
            jobs = self.backend.list_dead(queue.as_deref(), limit).await?;
            // The Redis queue holds handler jobs only: never a sink's.
            if let Some(redis_queue) = &self.redis_queue
                && filter.sink.is_none()
            {
                redis_jobs = redis_queue.list_dead(queue.as_deref(), limit).await?;
            }
        }
        Ok(Dead {
            targets,
            jobs,
            redis_jobs,
        })
    }

    /// Retries or drops `entries` at `now`.
    pub async fn act(
        &self,
        action: Action,
        entries: &[Entry],
        now: Millis,
    ) -> Result<Acted, DeadLetterError> {
        let mut acted = Acted::default();
        for &entry in entries {
            let found = match (action, entry) {
                (Action::Retry, Entry::Target(id)) => self.backend.revive_target(id, now).await?,
                (Action::Retry, Entry::Job(id)) => self.backend.retry_dead_job(id, now).await?,
                (Action::Drop, Entry::Target(id)) => self.backend.drop_dead_target(id).await?,
                (Action::Drop, Entry::Job(id)) => self.backend.drop_dead_job(id).await?,
                (Action::Retry, Entry::RedisJob(id)) => {
                    self.redis(entry)?.retry_dead_job(id, now).await?
                }
                (Action::Drop, Entry::RedisJob(id)) => self.redis(entry)?.drop_dead_job(id).await?,
            };
            if found {
                acted.done += 1;
            } else {
                acted.missing.push(entry.name());
            }
        }
        Ok(acted)
    }

    fn redis(&self, entry: Entry) -> Result<&Arc<dyn JobQueue>, DeadLetterError> {
        self.redis_queue
            .as_ref()
            .ok_or_else(|| DeadLetterError::NoRedisQueue(entry.name()))
    }
}

fn listed_history(history: &[Attempt]) -> Vec<ListedAttempt> {
    history
        .iter()
        .map(|attempt| ListedAttempt {
            at: rfc3339(attempt.at),
            error: attempt.error.clone(),
        })
        .collect()
}

fn listed_target(target: &Target) -> Listed {
    Listed {
        entry: Entry::Target(target.id).name(),
        connector: Some(target.connector.clone()),
        target: Some(crate::redact::url(&target.target).into_owned()),
        queue: None,
        store: None,
        died_at: rfc3339(target.dead_at.unwrap_or_default()),
        attempts: target.error_count,
        last_error: target.last_error.clone(),
        history: listed_history(&target.history),
    }
}

fn listed_job(entry: Entry, store: &str, job: &DeadJob) -> Listed {
    Listed {
        entry: entry.name(),
        connector: None,
        target: None,
        queue: Some(job.queue.clone()),
        store: Some(store.to_string()),
        died_at: rfc3339(job.died_at),
        attempts: job.attempts,
        last_error: job.last_error.clone(),
        history: listed_history(&job.history),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_named_kind_colon_id() {
        assert_eq!(Entry::parse("target:12").unwrap(), Entry::Target(12));
        assert_eq!(Entry::parse("job:7").unwrap(), Entry::Job(7));
        assert_eq!(Entry::parse("redis-job:7").unwrap(), Entry::RedisJob(7));
        for entry in [Entry::Target(3), Entry::Job(4), Entry::RedisJob(5)] {
            assert_eq!(Entry::parse(&entry.name()).unwrap(), entry, "round trip");
        }
    }

    #[test]
    fn anything_else_is_refused_saying_how_entries_look() {
        for text in [
            "12",
            "target:",
            "target:x",
            "job:-",
            "item:3",
            "target 12",
            "redis-job:",
        ] {
            let error = Entry::parse(text).unwrap_err().to_string();
            assert!(
                error.contains(&format!("{text:?}")) && error.contains("target:12 or job:7"),
                "{text}: {error}"
            );
        }
        let long = "x".repeat(10_000);
        assert!(
            Entry::parse(&long).unwrap_err().to_string().len() < 300,
            "echo is clipped"
        );
    }

    #[test]
    fn history_is_listed_oldest_first_with_times() {
        let history = [
            Attempt {
                at: 0,
                error: "HTTP 503".into(),
            },
            Attempt {
                at: 60_000,
                error: "timed out".into(),
            },
        ];
        let listed = listed_history(&history);
        assert_eq!(listed[0].at, "1970-01-01T00:00:00Z");
        assert_eq!(listed[1].at, "1970-01-01T00:01:00Z");
        assert_eq!(listed[1].error, "timed out");
    }
}
