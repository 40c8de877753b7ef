//! The `tsunagi` command line: one module per subcommand over the `tsunagi` library; with the
//! `tools` feature, also the demo and the benchmarks.

mod commands;
#[cfg(feature = "tools")]
mod tools;

use clap::Parser;
use commands::{Cli, run_cli};
use std::process::ExitCode;

// The crawl allocates and frees many small buffers per poll across threads; mimalloc handles
// that pattern with less contention than glibc's malloc (measured in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TSUNAGI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // One object per line, the event's fields at the top, the spans it is in (connector,
        // target or job ids) listed, so a log pipeline can filter on them. `target` is ours
        // (what a connector calls), not tracing's module path.
        commands::LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
        commands::LogFormat::Pretty => logs.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_cli(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            commands::exit::for_error(&error)
        }
    }
}

/// An error and its causes on one line, each cause once: our error types already say their
/// source in their own message, so `{:#}` would repeat it at every level.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod describe_tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x.wasm: {0}")]
    struct Read(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let error = anyhow::Error::new(Read(io)).context("t.toml:2:1: connectors.rss.plugin");
        assert_eq!(
            describe(&error),
            "t.toml:2:1: connectors.rss.plugin: cannot read x.wasm: No such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&plain), "outer: inner");
    }
}
