//! `tsunagi enqueue QUEUE --kind K …` and `tsunagi queues list|pause|resume`: hand a job to a
//! handler connector's queue, and see or steer the queues.
//!
//! Both go through the running host's admin API (`host.admin_listen`, with the bearer token
//! `host.admin_token` names, as `tsunagi reload` sends it), never straight into the database:
//! only the host knows which queues a handler serves now (after reloads) and how many attempts
//! its jobs get, and one path means one set of checks (caps, field errors) for every producer.
//! With no host running there is nothing to run the job either.

use super::reload::ask_host;
use super::{ConfigArg, load_config};
use anyhow::Context;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi enqueue posts --kind post --payload '{\"text\":\"hi\"}' --target user-1
  tsunagi enqueue posts --kind post --payload-file post.json --idempotency-key post-42
  echo '{\"text\":\"hi\"}' | tsunagi enqueue posts --kind post -c config/tsunagi.toml")]
pub struct EnqueueArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The queue (a handler connector's `jobs.queue`, by default its name).
    pub queue: String,
    /// What the job is (`post`, `delete`, …), as the handler understands it.
    #[arg(long)]
    pub kind: String,
    /// The linked target the job acts for.
    #[arg(long)]
    pub target: Option<String>,
    /// Enqueueing the same key again stores nothing and prints the first job's id.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// The payload as JSON text (default: read from stdin).
    #[arg(long, conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// A file holding the payload's JSON.
    #[arg(long)]
    pub payload_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum QueuesCommand {
    /// Every queue a handler serves: its connector, counts and whether it is paused.
    #[command(after_help = "Examples:
  tsunagi queues list
  tsunagi queues list --config config/tsunagi.toml")]
    List(ConfigArg),
    /// Stop leasing from a queue (durable; enqueueing still works).
    #[command(after_help = "Examples:
  tsunagi queues pause posts
  tsunagi queues pause posts -c config/tsunagi.toml")]
    Pause(QueueArgs),
    /// Carry on leasing from a paused queue.
    #[command(after_help = "Examples:
  tsunagi queues resume posts
  tsunagi queues resume posts -c config/tsunagi.toml")]
    Resume(QueueArgs),
}

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The queue (a handler connector's `jobs.queue`, by default its name).
    pub queue: String,
}

pub async fn enqueue(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    let limit = tsunagi_backends::MAX_JOB_PAYLOAD_BYTES;
    let text = match (&args.payload, &args.payload_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => {
            let bytes = tsunagi::config::files::read_regular(path, limit as u64, "job payload")
                .with_context(|| format!("--payload-file {}", path.display()))?;
            String::from_utf8(bytes)
                .with_context(|| format!("--payload-file {}: not UTF-8", path.display()))?
        }
        (None, None) => {
            let mut text = String::new();
            std::io::stdin()
                .take(limit as u64 + 1)
                .read_to_string(&mut text)
                .context("reading the payload from stdin")?;
            anyhow::ensure!(
                text.len() <= limit,
                "the payload on stdin is larger than the {limit}-byte limit of a job's payload"
            );
            text
        }
    };
    let payload: serde_json::Value =
        serde_json::from_str(&text).context("the payload is not JSON")?;
    let body = serde_json::json!({
        "kind": args.kind,
        "payload": payload,
        "target": args.target,
        "idempotency_key": args.idempotency_key,
    });
    let path = format!("/v1/queues/{}/jobs", args.queue);
    ask_host(&config, reqwest::Method::POST, &path, Some(body), "").await
}

pub async fn queues(command: QueuesCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueuesCommand::List(config) => {
            let config = load_config(&config.config)?;
            ask_host(&config, reqwest::Method::GET, "/v1/queues", None, "").await
        }
        QueuesCommand::Pause(args) => {
            let config = load_config(&args.config.config)?;
            let path = format!("/v1/queues/{}/pause", args.queue);
            ask_host(&config, reqwest::Method::POST, &path, None, "").await
        }
        QueuesCommand::Resume(args) => {
            let config = load_config(&args.config.config)?;
            let path = format!("/v1/queues/{}/resume", args.queue);
            ask_host(&config, reqwest::Method::POST, &path, None, "").await
        }
    }
}
