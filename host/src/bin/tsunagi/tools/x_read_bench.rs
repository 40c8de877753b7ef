//! `tsunagi bench x-read`: timeline polls per second for many linked X users, through the real
//! host (the wasm `x-read` component, SQLite, egress with a per-user budget, host-side filters)
//! against the fake X API on loopback, and the peak resident memory of each round.
//!
//! Two rounds on one database: the first imports every user's posts (one page each), the
//! second, after the schedule's interval, finds nothing newer than each cursor. The fake X API
//! runs on its own thread and runtime (`super::server_thread`), so its CPU is not the host's.

use super::demo::crawl_round;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::config::Config;
use tsunagi_fake_upstream::x::{FixtureSpec, XServer, XServerConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi bench x-read
  tsunagi bench x-read --users 1000 --posts 50 --concurrency 32")]
pub struct XReadBenchArgs {
    /// Linked users (targets).
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Posts in each user's timeline.
    #[arg(long, default_value_t = 20)]
    pub posts: u32,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The `x-read` component.
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/plugin/tsunagi_plugin_x_read.wasm"
    )]
    pub plugin: PathBuf,
}

fn config_text(plugin: &str, port: u16, concurrency: usize) -> String {
    format!(
        r#"# Written by tsunagi bench x-read.
[host]
database = "x-read.db"
compile_cache = "compile-cache"
claim_batch = 512

[connectors.xread]
plugin = "{plugin}"
role = "poller"
concurrency = {concurrency}

[connectors.xread.config]
base_url = "http://127.0.0.1:{port}"
max_results = 100
max_pages = 5

[connectors.xread.filters]
drop_categories = ["x:reply", "x:retweet"]
drop_hashtags = ["ad"]

[connectors.xread.schedule]
min_interval = "10m"
max_interval = "2h"

[connectors.xread.limits]
call_timeout = "10s"

[[connectors.xread.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
budget = "x-user"

# Below the fake's 900 per 15 minutes per user token.
[budgets.x-user]
rate = "60/min"
burst = 5
per = "target"
"#
    )
}

pub async fn x_read(args: XReadBenchArgs) -> anyhow::Result<ExitCode> {
    let plugin = std::fs::canonicalize(&args.plugin).with_context(|| {
        format!(
            "x-read plugin not found at {} — run scripts/build-plugins",
            args.plugin.display()
        )
    })?;
    let config = XServerConfig {
        fixture: FixtureSpec {
            users: args.users,
            posts_per_user: args.posts,
            posts_override: Vec::new(),
        },
        ..XServerConfig::default()
    };
    let fake = super::server_thread::start("fake-x-api", move || async move {
        let server = XServer::start(config).await?;
        Ok((server.addr(), server))
    })?;
    let addr = fake.started;
    println!(
        "tsunagi bench x-read: {} users × {} posts on http://{addr}, concurrency {}",
        args.users, args.posts, args.concurrency
    );
    let workdir = tempfile::Builder::new()
        .prefix("tsunagi-x-read-bench-")
        .tempdir()?;
    let path = workdir.path().join("tsunagi.toml");
    let plugin_text = plugin.display().to_string().replace('\\', "\\\\");
    std::fs::write(
        &path,
        config_text(&plugin_text, addr.port(), args.concurrency),
    )?;
    let config = Config::load(&path)?;
    let backend = tsunagi_backends::open(&config.database_url()).await?;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let targets: Vec<String> = (0..args.users)
        .map(|i| XServer::user_id(i).to_string())
        .collect();
    backend
        .add_targets("xread", &targets, clock.now_ms())
        .await?;
    let mut failed = false;
    for (round, label) in [
        (1, "first round (import)"),
        (2, "second round (nothing new)"),
    ] {
        super::peak_rss::reset();
        let summary = crawl_round(&config, backend.clone(), &clock, args.users, label).await?;
        let stats = summary.stats;
        let filtered = stats.items_filtered;
        println!(
            "round {round}: {} polls ({} failed) in {:.1}s = {:.0} polls/s; {} new items, {} filtered; peak RSS {}",
            stats.polls(),
            stats.polls_failed,
            summary.elapsed.as_secs_f64(),
            summary.polls_per_second(),
            stats.items_new,
            filtered.drop_categories + filtered.drop_hashtags + filtered.drop_matching,
            super::peak_rss::shown()
        );
        failed |= stats.polls_failed > 0 || stats.polls() != u64::from(args.users);
        clock.advance(Duration::from_secs(3 * 3600));
    }
    drop(fake);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
