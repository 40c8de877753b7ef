//! `tsunagi poll`: polls one target once through the connector's plugin, with the same sandbox
//! and egress rules as the host, and prints the items as JSON lines. Nothing is stored.

use super::{ConfigArg, load_config, require_connector};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use tsunagi::clock::SystemClock;
use tsunagi::runtime::{Engine, TargetCall};
use tsunagi::topology::{HostParts, build_connector, engine_settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi poll rss https://blog.rust-lang.org/feed.xml
  tsunagi poll rss https://example.org/feed --config config/tsunagi.toml")]
pub struct PollArgs {
    /// Connector name from the config.
    pub connector: String,
    /// The target, e.g. a feed URL.
    pub target: String,
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn poll(args: PollArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    require_connector(&config, &args.connector)?;
    let settings = &config.connectors[&args.connector];
    // A scratch state store in a temporary directory: a one-off poll must not touch the host's
    // database.
    let scratch = tempfile::tempdir()?;
    let backend = tsunagi_backends::open(&format!(
        "sqlite://{}",
        scratch.path().join("poll.db").display()
    ))
    .await?;
    let engine = Engine::new(&engine_settings(&config))?;
    let parts = HostParts::alone(&config, backend, Arc::new(SystemClock))?;
    let connector = build_connector(&engine, &config, &args.connector, settings, &parts).await?;
    let outcome = connector
        .poll(TargetCall::detached(&args.target), None, None, None)
        .await;
    let shown = tsunagi::redact::url(&args.target);
    // Exchange records hold redacted URLs and errors already.
    for exchange in &outcome.exchanges {
        eprintln!(
            "{} {} {}",
            exchange.status.map_or("---".to_string(), |s| s.to_string()),
            exchange.url,
            exchange.error.as_deref().unwrap_or("")
        );
    }
    match outcome.result {
        Ok(result) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for item in &result.items {
                serde_json::to_writer(&mut out, item)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            eprintln!(
                "{shown}: {} item(s){} in {:?}",
                result.items.len(),
                if result.not_modified {
                    " (not modified)"
                } else {
                    ""
                },
                outcome.elapsed
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let error = tsunagi::redact::text(&error.to_string()).into_owned();
            eprintln!(
                "error: connector '{}', target {shown}: {error}",
                args.connector
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
