//! Linked users' tokens: `targets add … --tokens-file F | --tokens -` links one (read from a
//! file or stdin, never argv), `targets remove` unlinks (its tokens go unless another
//! connector's target still uses them; items kept or purged per `purge_items_on_unlink`), and
//! `tokens rekey` re-seals every stored token with the current `host.token_key`.

use super::{ConfigArg, load_config, open_backend};
use anyhow::Context;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::config::Config;
use tsunagi::credentials::Credentials;
use tsunagi_backends::Backend;

/// The largest tokens file read.
const MAX_TOKENS_BYTES: u64 = 16 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Re-seal every stored token with host.token_key (tokens sealed with
    /// host.token_key_previous are read with it); run after rotating the key.
    #[command(after_help = "Examples:
  tsunagi tokens rekey
  tsunagi tokens rekey --config config/tsunagi.toml")]
    Rekey {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Where a linked user's tokens are read from.
#[derive(Debug, Clone)]
pub enum TokensSource {
    File(PathBuf),
    Stdin,
}

/// The credential `connector`'s rules name that keeps per-target tokens: exactly one, or an
/// error saying which there are.
fn linked_credential(config: &Config, connector: &str) -> anyhow::Result<String> {
    let settings = &config.connectors[connector];
    let mut names: Vec<&str> = settings
        .egress
        .allow
        .iter()
        .filter_map(|rule| rule.credential.as_deref())
        .filter(|name| {
            config
                .credentials
                .get(*name)
                .is_some_and(|c| c.needs_linked_tokens())
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        [] => anyhow::bail!(
            "connector '{connector}': no allow rule names a credential that keeps per-target \
             tokens (oauth1 without an app token, or oauth2-user), so there is nothing to link"
        ),
        many => anyhow::bail!(
            "connector '{connector}': its rules name several credentials that keep per-target \
             tokens ({}); which one the tokens are for is ambiguous",
            many.join(", ")
        ),
    }
}

fn read_tokens(source: &TokensSource) -> anyhow::Result<Vec<u8>> {
    let mut text = Vec::new();
    match source {
        TokensSource::File(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("cannot open tokens file {}", path.display()))?
                .take(MAX_TOKENS_BYTES + 1)
                .read_to_end(&mut text)
                .with_context(|| format!("cannot read tokens file {}", path.display()))?;
        }
        TokensSource::Stdin => {
            std::io::stdin()
                .take(MAX_TOKENS_BYTES + 1)
                .read_to_end(&mut text)
                .context("cannot read the tokens from stdin")?;
        }
    }
    if text.len() as u64 > MAX_TOKENS_BYTES {
        anyhow::bail!("the tokens are larger than {MAX_TOKENS_BYTES} bytes");
    }
    Ok(text)
}

fn credentials(config: &Config, backend: &Arc<dyn Backend>) -> anyhow::Result<Credentials> {
    Ok(Credentials::from_config(
        config,
        backend.clone(),
        Arc::new(SystemClock),
    )?)
}

/// Links `target` of `connector` to the tokens `source` holds.
pub async fn link(
    config: &Config,
    backend: &Arc<dyn Backend>,
    connector: &str,
    target: &str,
    source: &TokensSource,
) -> anyhow::Result<()> {
    let credential = linked_credential(config, connector)?;
    let text = zeroize::Zeroizing::new(read_tokens(source)?);
    let linked = credentials(config, backend)?
        .link(&credential, target, &text)
        .await?;
    let scopes: Vec<&str> = linked.scopes.iter().map(|s| s.name()).collect();
    println!(
        "{connector}: linked {} to credential '{credential}' (scopes: {})",
        tsunagi::redact::url(target),
        if scopes.is_empty() {
            "none".to_string()
        } else {
            scopes.join(", ")
        }
    );
    Ok(())
}

/// After `target` of `connector` was removed: forgets its tokens unless another connector
/// naming the same credential still has that target, and purges its items if the connector
/// asks.
pub async fn unlink(
    config: &Config,
    backend: &Arc<dyn Backend>,
    connector: &str,
    target: &str,
) -> anyhow::Result<()> {
    let settings = &config.connectors[connector];
    let mut named: Vec<&str> = settings
        .egress
        .allow
        .iter()
        .filter_map(|rule| rule.credential.as_deref())
        .collect();
    named.sort_unstable();
    named.dedup();
    for credential in named {
        let mut still_used_by = None;
        for (other, other_settings) in &config.connectors {
            let names_it = other_settings
                .egress
                .allow
                .iter()
                .any(|rule| rule.credential.as_deref() == Some(credential));
            if other != connector && names_it && backend.get_target(other, target).await?.is_some()
            {
                still_used_by = Some(other.clone());
                break;
            }
        }
        match still_used_by {
            Some(other) => println!(
                "{connector}: the tokens of credential '{credential}' stay: connector '{other}' \
                 still has this target"
            ),
            None => {
                if backend.delete_token(credential, target).await? {
                    println!("{connector}: forgot the tokens of credential '{credential}'");
                }
            }
        }
    }
    if settings.purge_items_on_unlink {
        let purged = backend.purge_target_items(connector, target).await?;
        println!("{connector}: purged {purged} stored item(s) (purge_items_on_unlink)");
    }
    Ok(())
}

pub async fn tokens(command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Rekey { config } => {
            let config = load_config(&config.config)?;
            let backend = open_backend(&config).await?;
            let credentials = credentials(&config, &backend)?;
            let Some(vault) = credentials.vault() else {
                anyhow::bail!(
                    "{}: host.token_key is not set; set it (and host.token_key_previous to the \
                     old key) before re-sealing",
                    config.source_path.display()
                );
            };
            let report = vault.rekey(SystemClock.now_ms()).await?;
            println!(
                "tokens: {} re-sealed with the current key, {} already were",
                report.resealed, report.already_current
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
