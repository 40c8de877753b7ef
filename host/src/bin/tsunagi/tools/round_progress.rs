//! Progress of a crawl round (the demo's and the benchmarks'): a bar over the round's feeds on
//! a terminal, fed from the connector's counters; without one, a plain line now and then, so a
//! CI log still shows a long round moving.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::Duration;
use tsunagi::stats::ConnectorStats;

/// How often the bar takes the counters.
const TICK: Duration = Duration::from_millis(100);
/// Ticks between plain lines when there is no terminal (10 s).
const PLAIN_EVERY: u32 = 100;

/// A round being drawn; [`RoundProgress::finish`] ends it with a summary.
pub struct RoundProgress {
    bar: ProgressBar,
    draw: tokio::task::JoinHandle<()>,
    stats: Arc<ConnectorStats>,
}

/// Starts drawing `label`'s round over `expected` feeds from `stats`.
pub fn start(label: &str, expected: u64, stats: Arc<ConnectorStats>) -> RoundProgress {
    let bar = ProgressBar::new(expected);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} feeds  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let draw = {
        let (bar, stats, label) = (bar.clone(), stats.clone(), label.to_string());
        tokio::spawn(async move {
            let plain = bar.is_hidden();
            let mut ticks: u32 = 0;
            loop {
                tokio::time::sleep(TICK).await;
                ticks = ticks.wrapping_add(1);
                let now = stats.snapshot();
                let message = format!(
                    "{} errors, {} new items, {} in flight",
                    now.polls_failed, now.items_new, now.in_flight
                );
                if plain && ticks.is_multiple_of(PLAIN_EVERY) {
                    eprintln!("  {label}: {}/{expected} feeds, {message}", now.polls());
                }
                bar.set_position(now.polls());
                bar.set_message(message);
            }
        })
    };
    RoundProgress { bar, draw, stats }
}

impl RoundProgress {
    /// Stops drawing and leaves the bar at the round's end, with its rate over `elapsed`.
    pub fn finish(self, elapsed: Duration) {
        self.draw.abort();
        let now = self.stats.snapshot();
        self.bar.set_position(now.polls());
        self.bar.finish_with_message(format!(
            "{} errors, {} new items, {:.0} feeds/s",
            now.polls_failed,
            now.items_new,
            now.polls() as f64 / elapsed.as_secs_f64().max(1e-9)
        ));
    }
}
