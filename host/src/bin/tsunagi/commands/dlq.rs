//! `tsunagi dlq list|retry|drop`: the dead-letter state, for operators.
//!
//! Two kinds of work end up there: targets given up on (a permanent error, or
//! `retry.max_failures` failures in a row) and jobs whose attempts ran out (sink deliveries and
//! handler jobs). Each entry is named `target:ID`, `job:ID` (a job in `host.database`) or
//! `redis-job:ID` (a handler job on the Redis queue `[backends] queue` names): the two stores
//! number their jobs separately, so the name says which one an id belongs to. `list` prints
//! one JSON object per line with the attempt history, the job's queue and its store, `retry`
//! puts entries back to work now (targets due, jobs queued with fresh attempts), `drop`
//! deletes them.

use super::{ConfigArg, load_config, open_backend};
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use tsunagi::clock::{Clock, SystemClock, rfc3339};
use tsunagi::sinks::queue_name;
use tsunagi_backends::redis::queue::RedisJobQueue;
use tsunagi_backends::{Attempt, Backend, DeadJob, JobQueue, Target};

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Print dead-lettered targets and jobs as JSON lines, with their attempt history.
    List(DlqFilter),
    /// Put entries back to work now: targets become due, jobs are queued with fresh attempts.
    Retry(DlqSelection),
    /// Delete entries for good (a dropped target's stored items stay).
    Drop(DlqSelection),
}

#[derive(Debug, clap::Args)]
pub struct DlqFilter {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this connector's targets (and no jobs).
    #[arg(long, conflicts_with_all = ["sink", "queue"])]
    pub connector: Option<String>,
    /// Only this sink's delivery jobs (and no targets).
    #[arg(long, conflicts_with = "queue")]
    pub sink: Option<String>,
    /// Only this job queue's jobs (a handler's `jobs.queue`, or `sink:NAME`), and no targets.
    #[arg(long)]
    pub queue: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DlqSelection {
    #[command(flatten)]
    pub filter: DlqFilter,
    /// Entries as `list` names them: `target:ID`, `job:ID` or `redis-job:ID`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub entries: Vec<String>,
    /// Every entry the filter selects.
    #[arg(long)]
    pub all: bool,
}

/// One entry of `dlq list`.
#[derive(Debug, Serialize)]
struct Listed<'a> {
    entry: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connector: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
    /// Where a job lives: "database" (`host.database`) or "redis" (`[backends] queue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
    died_at: String,
    attempts: u32,
    last_error: Option<&'a str>,
    history: Vec<ListedAttempt<'a>>,
}

#[derive(Debug, Serialize)]
struct ListedAttempt<'a> {
    at: String,
    error: &'a str,
}

fn listed_history(history: &[Attempt]) -> Vec<ListedAttempt<'_>> {
    history
        .iter()
        .map(|attempt| ListedAttempt {
            at: rfc3339(attempt.at),
            error: &attempt.error,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Target(i64),
    /// A job in `host.database`.
    Job(i64),
    /// A job on the Redis queue (its ids are not the database's).
    RedisJob(i64),
}

impl Entry {
    fn parse(text: &str) -> anyhow::Result<Entry> {
        let parsed = match text.split_once(':') {
            Some(("target", id)) => id.parse().ok().map(Entry::Target),
            Some(("job", id)) => id.parse().ok().map(Entry::Job),
            Some(("redis-job", id)) => id.parse().ok().map(Entry::RedisJob),
            _ => None,
        };
        parsed.with_context(|| {
            format!(
                "{text:?} is not a dead-letter entry; `tsunagi dlq list` names them like \
                 target:12 or job:7 (redis-job:7 for a job on the Redis queue)"
            )
        })
    }

    fn name(self) -> String {
        match self {
            Entry::Target(id) => format!("target:{id}"),
            Entry::Job(id) => format!("job:{id}"),
            Entry::RedisJob(id) => format!("redis-job:{id}"),
        }
    }
}

/// What is dead, by store.
struct Dead {
    targets: Vec<Target>,
    /// In `host.database`: sink deliveries, and handler jobs unless `[backends] queue` moved
    /// them (those from before the move stay here).
    jobs: Vec<DeadJob>,
    /// On the Redis queue: handler jobs.
    redis_jobs: Vec<DeadJob>,
}

/// The most dead jobs listed per store.
const MAX_LISTED_JOBS: u32 = 100_000;

pub async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List(filter) => list(filter).await,
        DlqCommand::Retry(selection) => act(selection, Action::Retry).await,
        DlqCommand::Drop(selection) => act(selection, Action::Drop).await,
    }
}

/// Everything in the dead-letter state that `filter` selects, from the database and (when the
/// config names one) the Redis queue.
async fn dead_entries(
    backend: &dyn Backend,
    redis_queue: Option<&RedisJobQueue>,
    filter: &DlqFilter,
) -> anyhow::Result<Dead> {
    let mut targets = Vec::new();
    if filter.sink.is_none() && filter.queue.is_none() {
        let mut after = 0;
        loop {
            let page = backend
                .list_dead_targets(filter.connector.as_deref(), after, 1000)
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
        jobs = backend.list_dead(queue.as_deref(), MAX_LISTED_JOBS).await?;
        // The Redis queue holds handler jobs only: never a sink's.
        if let Some(redis_queue) = redis_queue
            && filter.sink.is_none()
        {
            redis_jobs = redis_queue
                .list_dead(queue.as_deref(), MAX_LISTED_JOBS)
                .await?;
        }
    }
    Ok(Dead {
        targets,
        jobs,
        redis_jobs,
    })
}

async fn list(filter: DlqFilter) -> anyhow::Result<ExitCode> {
    let config = load_config(&filter.config.config)?;
    let backend = open_backend(&config).await?;
    let redis_queue = tsunagi::stores::open_redis_queue(&config).await?;
    let Dead {
        targets,
        jobs,
        redis_jobs,
    } = dead_entries(backend.as_ref(), redis_queue.as_ref(), &filter).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for target in &targets {
        let shown = tsunagi::redact::url(&target.target);
        let listed = Listed {
            entry: Entry::Target(target.id).name(),
            connector: Some(&target.connector),
            target: Some(&shown),
            queue: None,
            store: None,
            died_at: rfc3339(target.dead_at.unwrap_or_default()),
            attempts: target.error_count,
            last_error: target.last_error.as_deref(),
            history: listed_history(&target.history),
        };
        serde_json::to_writer(&mut out, &listed)?;
        out.write_all(b"\n")?;
    }
    let in_database = jobs.iter().map(|job| (Entry::Job(job.id), "database", job));
    let on_redis = redis_jobs
        .iter()
        .map(|job| (Entry::RedisJob(job.id), "redis", job));
    for (entry, store, job) in in_database.chain(on_redis) {
        let listed = Listed {
            entry: entry.name(),
            connector: None,
            target: None,
            queue: Some(&job.queue),
            store: Some(store),
            died_at: rfc3339(job.died_at),
            attempts: job.attempts,
            last_error: job.last_error.as_deref(),
            history: listed_history(&job.history),
        };
        serde_json::to_writer(&mut out, &listed)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let on_redis = if redis_queue.is_some() {
        format!(" ({} of them on the Redis queue)", redis_jobs.len())
    } else {
        String::new()
    };
    eprintln!(
        "{} dead target(s), {} dead job(s){on_redis}",
        targets.len(),
        jobs.len() + redis_jobs.len()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Retry,
    Drop,
}

async fn act(selection: DlqSelection, action: Action) -> anyhow::Result<ExitCode> {
    let config = load_config(&selection.filter.config.config)?;
    let backend = open_backend(&config).await?;
    let redis_queue = tsunagi::stores::open_redis_queue(&config).await?;
    let entries: Vec<Entry> = if selection.all {
        let dead = dead_entries(backend.as_ref(), redis_queue.as_ref(), &selection.filter).await?;
        dead.targets
            .iter()
            .map(|t| Entry::Target(t.id))
            .chain(dead.jobs.iter().map(|j| Entry::Job(j.id)))
            .chain(dead.redis_jobs.iter().map(|j| Entry::RedisJob(j.id)))
            .collect()
    } else {
        selection
            .entries
            .iter()
            .map(|text| Entry::parse(text))
            .collect::<anyhow::Result<_>>()?
    };
    let redis = |entry: Entry| {
        redis_queue.as_ref().with_context(|| {
            format!(
                "{}: {} is a job on the Redis queue, but the config names no [backends] queue",
                config.source_path.display(),
                entry.name()
            )
        })
    };
    let now = SystemClock.now_ms();
    let mut done = 0;
    let mut missing = Vec::new();
    for entry in entries {
        let found = match (action, entry) {
            (Action::Retry, Entry::Target(id)) => backend.revive_target(id, now).await?,
            (Action::Retry, Entry::Job(id)) => backend.retry_dead_job(id, now).await?,
            (Action::Drop, Entry::Target(id)) => backend.drop_dead_target(id).await?,
            (Action::Drop, Entry::Job(id)) => backend.drop_dead_job(id).await?,
            (Action::Retry, Entry::RedisJob(id)) => redis(entry)?.retry_dead_job(id, now).await?,
            (Action::Drop, Entry::RedisJob(id)) => redis(entry)?.drop_dead_job(id).await?,
        };
        if found {
            done += 1;
        } else {
            missing.push(entry.name());
        }
    }
    let verb = match action {
        Action::Retry => "retried",
        Action::Drop => "dropped",
    };
    eprintln!("{verb} {done} entr{}", if done == 1 { "y" } else { "ies" });
    if !missing.is_empty() {
        bail!(
            "not in the dead-letter state (already retried or dropped, or never dead): {}",
            missing.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
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
