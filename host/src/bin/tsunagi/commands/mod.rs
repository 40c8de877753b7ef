//! The command line: one module per subcommand. Errors leave here as `anyhow` errors whose
//! messages already name the file, field, connector or target concerned.

mod check;
mod dlq;
pub mod exit;
mod items;
mod jobs;
mod plugin;
mod poll;
mod progress;
mod push;
mod reference;
mod reload;
mod run;
mod search;
mod status;
mod targets;
mod tokens;
mod top;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tsunagi_backends::Backend;

use tsunagi::config::Config;

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/tsunagi.toml";

#[derive(Debug, Parser)]
#[command(
    name = "tsunagi",
    version,
    about = "Host runtime for sandboxed WebAssembly connectors",
    after_help = exit::EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines look on stderr: `pretty` for people, `json` (one object per line) for a
    /// log pipeline. Verbosity comes from `TSUNAGI_LOG` (e.g. `info,tsunagi=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty,
        env = "TSUNAGI_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// See [`Cli::log_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host with the connectors the config declares, until Ctrl-C or SIGTERM.
    #[command(after_help = "Examples:
  tsunagi run --config config/tsunagi.toml
  tsunagi run -c config/deploy/tsunagi.toml --log-format json")]
    Run(ConfigArg),
    /// Validate the config and load every plugin without running anything.
    #[command(after_help = "Examples:
  tsunagi check --config config/tsunagi.toml
  tsunagi check -c config/deploy/tsunagi.toml")]
    Check(ConfigArg),
    /// Show a running host's connectors, breakers, budgets, queues and recent errors.
    Status(status::StatusArgs),
    /// Show the running host's status live, refreshed every second (q quits).
    Top(top::TopArgs),
    /// Manage a connector's targets.
    #[command(subcommand)]
    Targets(targets::TargetsCommand),
    /// Poll one target once and print the items as JSON lines.
    Poll(poll::PollArgs),
    /// List stored items as JSON lines.
    Items(items::ItemsArgs),
    /// Ask the running host to swap in changed plugins and settings (all, or one connector).
    Reload(reload::ReloadArgs),
    /// Ask the running host to return a connector to its previous version.
    Rollback(reload::RollbackArgs),
    /// Push a plugin to every host of the cluster (through one of them).
    Push(push::PushArgs),
    /// Push a config to every host of the cluster (each keeps its own [host] and [backends]).
    PushConfig(push::PushConfigArgs),
    /// Hand a job to a handler connector's queue (through the running host).
    Enqueue(jobs::EnqueueArgs),
    /// Search the shops (searcher connectors) at once and print the merged products and each
    /// shop's status (through the running host).
    Search(search::SearchArgs),
    /// Handler job queues: list, pause, resume (through the running host).
    #[command(subcommand)]
    Queues(jobs::QueuesCommand),
    /// The dead-letter state: targets given up on and deliveries out of attempts.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Crawl thousands of stand-in feeds on 127.0.0.1 and print a summary.
    #[cfg(feature = "tools")]
    Demo(crate::tools::demo::DemoArgs),
    /// Benchmarks on 127.0.0.1 (build with --release).
    #[cfg(feature = "tools")]
    #[command(subcommand)]
    Bench(crate::tools::bench::BenchCommand),
    /// Write, build and test connectors: `new`, `build`, `test`.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Linked users' tokens: `rekey` re-seals them with the current host.token_key.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Print a shell's completion script for tsunagi.
    Completions(reference::CompletionsArgs),
    /// Print (or write) tsunagi's man pages.
    Man(reference::ManArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG, env = "TSUNAGI_CONFIG")]
    pub config: PathBuf,
}

impl Cli {
    /// Log verbosity unless `TSUNAGI_LOG` says otherwise: quiet for one-shot commands whose
    /// output is data, informative for the long-running host.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Run(_) => "info,wasmtime=warn,cranelift=warn",
            _ => "warn,wasmtime=warn,cranelift=warn",
        }
    }
}

pub async fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(&args.config).await,
        Command::Check(args) => check::check(&args.config).await,
        Command::Status(args) => status::status(args).await,
        Command::Top(args) => top::top(args).await,
        Command::Targets(command) => targets::targets(command).await,
        Command::Poll(args) => poll::poll(args).await,
        Command::Items(args) => items::items(args).await,
        Command::Dlq(command) => dlq::dlq(command).await,
        Command::Enqueue(args) => jobs::enqueue(args).await,
        Command::Queues(command) => jobs::queues(command).await,
        Command::Search(args) => search::search(args).await,
        Command::Reload(args) => reload::reload(args).await,
        Command::Rollback(args) => reload::rollback(args).await,
        Command::Push(args) => push::push(args).await,
        Command::PushConfig(args) => push::push_config(args).await,
        #[cfg(feature = "tools")]
        Command::Demo(args) => crate::tools::demo::demo(args).await,
        #[cfg(feature = "tools")]
        Command::Bench(command) => crate::tools::bench::bench(command).await,
        Command::Plugin(command) => plugin::run(command).await,
        Command::Tokens(command) => tokens::tokens(command).await,
        Command::Completions(args) => reference::completions(args),
        Command::Man(args) => reference::man(args),
    }
}

/// Loads the config file; its errors already say file:line:column and field.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// Opens the backend the config names.
pub async fn open_backend(config: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    let url = config.database_url();
    tsunagi_backends::open(&url)
        .await
        .with_context(|| format!("{}: host.database", config.source_path.display()))
}

/// Fails unless the config declares `connector`.
pub fn require_connector(config: &Config, connector: &str) -> anyhow::Result<()> {
    if config.connectors.contains_key(connector) {
        return Ok(());
    }
    let known: Vec<&str> = config.connectors.keys().map(String::as_str).collect();
    anyhow::bail!(
        "{}: no connector '{connector}' (declared: {})",
        config.source_path.display(),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}
