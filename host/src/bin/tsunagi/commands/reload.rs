//! `tsunagi reload [connector]` and `tsunagi rollback <connector>`: ask the running host (at the
//! config's `host.admin_listen`, with the bearer token `host.admin_token` names) to swap in what
//! changed, or to return to the previous version.
//! Prints the host's report as JSON; exits 1 when anything was refused.

use super::{ConfigArg, load_config};
use anyhow::Context;
use std::process::ExitCode;
use tsunagi::config::Config;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi reload
  tsunagi reload rss
  tsunagi reload rss --config config/tsunagi.toml")]
pub struct ReloadArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this connector (default: every connector whose settings or plugin changed).
    pub connector: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi rollback rss
  tsunagi rollback rss --config config/tsunagi.toml")]
pub struct RollbackArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The connector to return to its previous version.
    pub connector: String,
}

pub async fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let path = match &args.connector {
        Some(name) => format!("/v1/connectors/{name}/reload"),
        None => "/v1/reload".to_string(),
    };
    post(&args.config, &path).await
}

pub async fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    post(
        &args.config,
        &format!("/v1/connectors/{}/rollback", args.connector),
    )
    .await
}

async fn post(config: &ConfigArg, path: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(&config.config)?;
    ask_host(
        &config,
        reqwest::Method::POST,
        path,
        None,
        "; the running version keeps serving",
    )
    .await
}

/// Sends one request to the running host (`host.admin_listen`, with the bearer token the config
/// names) and prints its JSON answer; exits 1 on a refusal, saying `on_refusal` after the status.
pub async fn ask_host(
    config: &Config,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    on_refusal: &str,
) -> anyhow::Result<ExitCode> {
    let body = body.map(Body::Json);
    send_to_host(config, None, method, path, body, on_refusal).await
}

/// What a request to the host carries.
pub enum Body {
    Json(serde_json::Value),
    /// Raw bytes (a plugin, a config's text).
    Bytes(Vec<u8>),
}

/// [`ask_host`] at `address` (`host:port`) when given, else at `host.admin_listen`.
pub async fn send_to_host(
    config: &Config,
    address: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Body>,
    on_refusal: &str,
) -> anyhow::Result<ExitCode> {
    let (status, text) = request_to_host(config, address, method, path, body).await?;
    println!("{}", text.trim_end());
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("refused (HTTP {status}){on_refusal}");
        Ok(ExitCode::FAILURE)
    }
}

/// Reads `path` from the running host; an answer other than 200 is an error naming it.
pub async fn read_from_host(
    config: &Config,
    address: Option<&str>,
    path: &str,
) -> anyhow::Result<String> {
    let (status, text) = request_to_host(config, address, reqwest::Method::GET, path, None).await?;
    if !status.is_success() {
        anyhow::bail!(
            "the host answered {path} with HTTP {status}: {}",
            tsunagi_backends::cap_error(text.trim())
        );
    }
    Ok(text)
}

/// The host's admin address: `address` when given, else the config's `host.admin_listen`.
pub fn admin_address<'a>(config: &'a Config, address: Option<&'a str>) -> anyhow::Result<&'a str> {
    match address {
        Some(address) => Ok(address),
        None => config.host.admin_listen.as_deref().with_context(|| {
            format!(
                "{}: host.admin_listen is not set, so there is no running host to ask (or \
                 name one with --host)",
                config.source_path.display()
            )
        }),
    }
}

/// Sends one request to the host with the config's admin token; the answer's status and text.
pub async fn request_to_host(
    config: &Config,
    address: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Body>,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let admin = admin_address(config, address)?;
    let token = config
        .admin_token()
        .with_context(|| format!("{}: host.admin_token", config.source_path.display()))?;
    let url = format!("http://{admin}{path}");
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(token) = &token {
        request = request.bearer_auth(token.expose());
    }
    request = match body {
        Some(Body::Json(body)) => request.json(&body),
        Some(Body::Bytes(bytes)) => request
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes),
        None => request,
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the host at {url}; is `tsunagi run` running?"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    Ok((status, text))
}
