//! `tsunagi dlq list|retry|drop`: the dead-letter state ([`tsunagi::deadletters`]), for
//! operators. `list` prints one JSON object per line with the attempt history, the job's queue
//! and its store, `retry` puts entries back to work now (targets due, jobs queued with fresh
//! attempts), `drop` deletes them (`--all` asks first, unless `--yes`).
//!
//! With `host.admin_listen` set and a host answering there, the work goes through its
//! `/v1/dlq` endpoints (what the dashboard uses); otherwise straight to the stores the config
//! names.

use super::reload::{Body, read_from_host, request_to_host};
use super::{ConfigArg, load_config, open_backend};
use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::config::Config;
use tsunagi::deadletters::{Acted, Action, DeadLetters, Entry, Filter, Listing, MAX_LISTED};
use tsunagi_backends::JobQueue;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Print dead-lettered targets and jobs as JSON lines, with their attempt history.
    #[command(after_help = "Examples:
  tsunagi dlq list
  tsunagi dlq list --connector rss
  tsunagi dlq list --queue posts -c config/tsunagi.toml")]
    List(DlqFilter),
    /// Put entries back to work now: targets become due, jobs are queued with fresh attempts.
    #[command(after_help = "Examples:
  tsunagi dlq retry target:12 job:7
  tsunagi dlq retry --all --connector rss
  tsunagi dlq retry --all --queue posts -c config/tsunagi.toml")]
    Retry(DlqSelection),
    /// Delete entries for good (a dropped target's stored items stay).
    #[command(after_help = "Examples:
  tsunagi dlq drop target:12 redis-job:31
  tsunagi dlq drop --all --sink hook
  tsunagi dlq drop --all --yes -c config/tsunagi.toml")]
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
    /// With `drop --all`: do not ask first.
    #[arg(long, short)]
    pub yes: bool,
}

impl DlqFilter {
    fn filter(&self) -> Filter {
        Filter {
            connector: self.connector.clone(),
            sink: self.sink.clone(),
            queue: self.queue.clone(),
        }
    }

    /// The filter as `/v1/dlq`'s query string.
    fn query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("connector", &self.connector),
            ("sink", &self.sink),
            ("queue", &self.queue),
        ] {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
        query.finish()
    }
}

pub async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List(filter) => list(filter).await,
        DlqCommand::Retry(selection) => act(selection, Action::Retry).await,
        DlqCommand::Drop(selection) => act(selection, Action::Drop).await,
    }
}

/// Where the dead letters are reached: a running host, or the stores themselves.
enum Reach {
    Host(Box<Config>),
    Stores(DeadLetters),
}

async fn reach(config: Config) -> anyhow::Result<Reach> {
    if config.host.admin_listen.is_some() && read_from_host(&config, None, "/readyz").await.is_ok()
    {
        return Ok(Reach::Host(Box::new(config)));
    }
    let backend = open_backend(&config).await?;
    let redis_queue = tsunagi::stores::open_redis_queue(&config)
        .await?
        .map(|queue| Arc::new(queue) as Arc<dyn JobQueue>);
    Ok(Reach::Stores(DeadLetters::new(backend, redis_queue)))
}

impl Reach {
    async fn list(&self, filter: &DlqFilter) -> anyhow::Result<Listing> {
        match self {
            Reach::Host(config) => {
                let path = format!(
                    "/v1/dlq?limit={}&{}",
                    tsunagi::admin::MAX_DLQ_LISTED,
                    filter.query()
                );
                let text = read_from_host(config, None, &path).await?;
                serde_json::from_str(&text).context("the host's /v1/dlq answer")
            }
            Reach::Stores(dead) => Ok(dead.list(&filter.filter(), MAX_LISTED).await?),
        }
    }

    async fn act(
        &self,
        action: Action,
        entries: Option<Vec<Entry>>,
        filter: &DlqFilter,
    ) -> anyhow::Result<Acted> {
        match self {
            Reach::Host(config) => {
                let mut body = serde_json::json!({
                    "connector": filter.connector,
                    "sink": filter.sink,
                    "queue": filter.queue,
                });
                match entries {
                    Some(entries) => {
                        body["entries"] = entries.into_iter().map(Entry::name).collect();
                    }
                    None => body["all"] = true.into(),
                }
                let path = match action {
                    Action::Retry => "/v1/dlq/retry",
                    Action::Drop => "/v1/dlq/drop",
                };
                let (status, text) = request_to_host(
                    config,
                    None,
                    reqwest::Method::POST,
                    path,
                    Some(Body::Json(body)),
                )
                .await?;
                if !status.is_success() {
                    bail!("the host refused {path} (HTTP {status}): {}", text.trim());
                }
                serde_json::from_str(&text).context("the host's answer")
            }
            Reach::Stores(dead) => {
                let entries = match entries {
                    Some(entries) => entries,
                    None => dead.select(&filter.filter()).await?,
                };
                Ok(dead.act(action, &entries, SystemClock.now_ms()).await?)
            }
        }
    }
}

async fn list(filter: DlqFilter) -> anyhow::Result<ExitCode> {
    let config = load_config(&filter.config.config)?;
    let listing = reach(config).await?.list(&filter).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for listed in &listing.entries {
        serde_json::to_writer(&mut out, listed)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let on_redis = if listing.redis_queue {
        format!(" ({} of them on the Redis queue)", listing.redis_jobs)
    } else {
        String::new()
    };
    eprintln!(
        "{} dead target(s), {} dead job(s){on_redis}",
        listing.targets, listing.jobs
    );
    Ok(ExitCode::SUCCESS)
}

async fn act(selection: DlqSelection, action: Action) -> anyhow::Result<ExitCode> {
    let config = load_config(&selection.filter.config.config)?;
    let entries = if selection.all {
        None
    } else {
        Some(
            selection
                .entries
                .iter()
                .map(|text| Entry::parse(text))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let reach = reach(config).await?;
    if action == Action::Drop && selection.all && !selection.yes {
        let listing = reach.list(&selection.filter).await?;
        let question = format!(
            "Delete {} dead target(s) and {} dead job(s) for good? [y/N] ",
            listing.targets, listing.jobs
        );
        if !confirmed(&question)? {
            eprintln!("nothing dropped");
            return Ok(ExitCode::FAILURE);
        }
    }
    let acted = reach.act(action, entries, &selection.filter).await?;
    let verb = match action {
        Action::Retry => "retried",
        Action::Drop => "dropped",
    };
    let done = acted.done;
    eprintln!("{verb} {done} entr{}", if done == 1 { "y" } else { "ies" });
    if !acted.missing.is_empty() {
        bail!(
            "not in the dead-letter state (already retried or dropped, or never dead): {}",
            acted.missing.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks `question` on the terminal; without one (a script), the answer is no: pass `--yes`.
fn confirmed(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("`dlq drop --all` deletes for good: pass --yes to confirm without a terminal");
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
