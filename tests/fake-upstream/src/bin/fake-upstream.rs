//! `fake-upstream feeds`: the benchmark's stand-in feed server on its own, so that any crawler
//! (tsunagi or another) can be measured against the same upstream.
//!
//! ```sh
//! fake-upstream feeds --feeds 210000 --items 10 --feed-bytes 5000 --listen 127.0.0.1:8900 \
//!     --targets-file feeds.txt
//! ```
//!
//! It serves `GET /feeds/{id}` for ids `0..feeds` in seven formats (RSS 2.0, Atom 1.0, JSON
//! Feed 1.1, RSS 1.0, RSS 0.91, Atom 0.3, JSON Feed 1.0 by `id % 7`), with `ETag` and
//! `Last-Modified` validators honoured by 304 answers, exactly as `tsunagi bench rss` uses it;
//! `--publish-every` adds one item to every feed at that interval. The first line on stdout is
//! the base URL (printed once the targets file is written); it runs until Ctrl-C.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "fake-upstream",
    about = "Stand-in upstream servers for measuring crawlers"
)]
enum Command {
    /// Serve stand-in feeds with ETag / Last-Modified / 304.
    Feeds(FeedsArgs),
}

#[derive(Debug, clap::Args)]
struct FeedsArgs {
    #[arg(long, default_value_t = 210_000)]
    feeds: u32,
    /// Items in every feed (the newest).
    #[arg(long, default_value_t = 10)]
    items: u32,
    /// Approximate size of each feed's body.
    #[arg(long, default_value_t = 5_000)]
    feed_bytes: usize,
    /// Where to listen (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Write every feed URL to this file, one per line (for `tsunagi targets import`).
    #[arg(long)]
    targets_file: Option<PathBuf>,
    /// Publish one new item in every feed this often (e.g. `30s`); never by default.
    #[arg(long, value_parser = humantime::parse_duration)]
    publish_every: Option<Duration>,
}

fn main() -> anyhow::Result<()> {
    let Command::Feeds(args) = Command::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = FeedServerConfig {
            feeds: args.feeds,
            items_per_feed: args.items,
            target_feed_bytes: args.feed_bytes,
            ..FeedServerConfig::default()
        };
        let server = FeedServer::start_on(config, args.listen).await?;
        // The targets file first: whoever reads the base URL may read the file at once.
        if let Some(path) = &args.targets_file {
            let mut text = server.feed_urls().join("\n");
            text.push('\n');
            std::fs::write(path, text)?;
            eprintln!("{} feed URLs written to {}", args.feeds, path.display());
        }
        println!("http://{}", server.addr());
        eprintln!(
            "serving {} feeds of {} items (~{} bytes) at http://{}/feeds/{{0..{}}}; Ctrl-C stops",
            args.feeds,
            args.items,
            args.feed_bytes,
            server.addr(),
            args.feeds
        );
        let mut publish = args.publish_every.map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = async { publish.as_mut().expect("guarded").tick().await }, if publish.is_some() => {
                    server.publish_round();
                    eprintln!("published round {}", server.generation());
                }
            }
        }
        anyhow::Ok(())
    })
}
