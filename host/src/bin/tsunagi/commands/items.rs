//! `tsunagi items`: stored items as JSON lines, oldest first, paged through the store.

use super::{ConfigArg, load_config, open_backend};
use std::io::Write;
use std::process::ExitCode;
use tsunagi::clock::parse_rfc3339;
use tsunagi_backends::ItemQuery;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi items --connector rss --since 2h
  tsunagi items --target https://blog.rust-lang.org/feed.xml --limit 20
  tsunagi items -c config/tsunagi.toml --since 2026-12-01T00:00:00Z")]
pub struct ItemsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this connector's items.
    #[arg(long)]
    pub connector: Option<String>,
    /// Only the items of this target (e.g. a feed URL).
    #[arg(long)]
    pub target: Option<String>,
    /// Only items fetched at or after this time: RFC 3339, or a duration ago like "2h".
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many items.
    #[arg(long)]
    pub limit: Option<u64>,
}

pub async fn items(args: ItemsArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config.config)?;
    let backend = open_backend(&config).await?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut query = ItemQuery {
        connector: args.connector,
        target: args.target.map(super::targets::lookup_form),
        fetched_since: since,
        after_seq: 0,
        limit: 1000,
    };
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while remaining > 0 {
        query.limit = u32::try_from(remaining.min(1000)).unwrap_or(1000);
        let page = backend.list_items(&query).await?;
        let Some(last) = page.last() else { break };
        query.after_seq = last.seq;
        let count = page.len() as u64;
        for mut item in page {
            // The item keeps its target's identity, not the target's credentials.
            item.target = tsunagi::redact::url(&item.target).into_owned();
            serde_json::to_writer(&mut out, &item)?;
            out.write_all(b"\n")?;
        }
        remaining = remaining.saturating_sub(count);
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn parse_since(text: &str) -> anyhow::Result<i64> {
    if let Some(at) = parse_rfc3339(text) {
        return Ok(at);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "--since {text:?}: expected RFC 3339 (2024-05-01T00:00:00Z) or a duration like 2h"
        )
    })?;
    let now = tsunagi::clock::Clock::now_ms(&tsunagi::clock::SystemClock);
    Ok(now - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
}
