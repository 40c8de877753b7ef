//! `tsunagi push <connector> <file.wasm>` and `tsunagi push-config <file.toml>`: hand a plugin
//! or a config to one host of a cluster (`--host`, or the config's `host.admin_listen`, with
//! the bearer token `host.admin_token` names), which checks it, stores it for every host,
//! announces it and answers each live host's outcome. Prints that report as JSON; exits 1
//! unless every host applied it.

use super::reload::{Body, send_to_host};
use super::{ConfigArg, load_config};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi push rss target/wasm32-wasip2/plugin/tsunagi_plugin_rss.wasm
  tsunagi push rss plugin.wasm --host 10.0.0.5:7878 -c config/tsunagi.toml")]
pub struct PushArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The host to push through (`host:port` of its admin API); default `host.admin_listen`.
    #[arg(long, env = "TSUNAGI_HOST")]
    pub host: Option<String>,
    /// The connector (from the config) that runs the plugin.
    pub connector: String,
    /// The plugin (a wasm32-wasip2 component).
    pub plugin: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi push-config shared.toml
  tsunagi push-config shared.toml --host 10.0.0.5:7878 -c config/tsunagi.toml")]
pub struct PushConfigArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The host to push through (`host:port` of its admin API); default `host.admin_listen`.
    #[arg(long, env = "TSUNAGI_HOST")]
    pub host: Option<String>,
    /// The config every host runs from now on (each keeps its own `[host]` and `[backends]`).
    pub file: PathBuf,
}

const ON_REFUSAL: &str =
    "; the hosts that refused keep running what they ran (see each host above)";

pub async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    let bytes = tsunagi::runtime::read_plugin(&args.plugin)
        .with_context(|| format!("cannot push {}", args.plugin.display()))?;
    let path = format!("/v1/cluster/plugins/{}", args.connector);
    let waiting = super::progress::spinner(format!(
        "pushing {} ({} KiB): checked where it lands, then applied by every host",
        args.plugin.display(),
        bytes.len() / 1024
    ));
    let body = Some(Body::Bytes(bytes));
    let sent = send_to_host(
        &config,
        args.host.as_deref(),
        reqwest::Method::PUT,
        &path,
        body,
        ON_REFUSAL,
    )
    .await;
    waiting.finish_and_clear();
    sent
}

pub async fn push_config(args: PushConfigArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    // Checked here first, so an error names this file's line and field.
    load_config(&args.file)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let body = Some(Body::Bytes(text.into_bytes()));
    let waiting = super::progress::spinner(format!(
        "pushing {}: checked where it lands, then applied by every host",
        args.file.display()
    ));
    let sent = send_to_host(
        &config,
        args.host.as_deref(),
        reqwest::Method::PUT,
        "/v1/cluster/config",
        body,
        ON_REFUSAL,
    )
    .await;
    waiting.finish_and_clear();
    sent
}
