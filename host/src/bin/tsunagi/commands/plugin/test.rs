//! `tsunagi plugin test PLUGIN --cassette DIR [--record]`: see [`tsunagi::cassette`].

use super::build::build_crate;
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tsunagi::cassette::Cassette;
use tsunagi::cassette::harness::{self, HarnessReport, Mode};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi plugin test .
  tsunagi plugin test target/wasm32-wasip2/plugin/tsunagi_plugin_rss.wasm --cassette plugins/rss/cassettes/basic
  tsunagi plugin test hello-feed --update-expected
  tsunagi plugin test hello-feed --record")]
pub struct TestArgs {
    /// A component (`.wasm`), or a connector crate's directory (built first).
    pub plugin: PathBuf,
    /// A cassette directory; repeat for several. Default: every directory under the crate's
    /// `cassettes/`.
    #[arg(long)]
    pub cassette: Vec<PathBuf>,
    /// Send the requests to the real upstreams (only where the cassette's [[allow]] rules
    /// permit) and rewrite the cassette's interactions and expected results from what came back.
    #[arg(long, conflicts_with = "update_expected")]
    pub record: bool,
    /// Replay as usual, but write each case's result as its expected result (review the diff).
    #[arg(long)]
    pub update_expected: bool,
    /// Cargo profile, when PLUGIN is a crate.
    #[arg(long, default_value = "release")]
    pub profile: String,
}

pub async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let wasm = if args.plugin.is_dir() {
        build_crate(&args.plugin, &args.profile)?
    } else {
        args.plugin.clone()
    };
    let cassettes = if args.cassette.is_empty() {
        crate_cassettes(&args.plugin)?
    } else {
        args.cassette.clone()
    };

    let mode = match (args.record, args.update_expected) {
        (true, _) => Mode::Record,
        (false, true) => Mode::UpdateExpected,
        (false, false) => Mode::Replay,
    };
    let (mut passed, mut failed) = (0, 0);
    for dir in &cassettes {
        let cassette = Cassette::load(dir)?;
        let report = harness::run(&wasm, &cassette, mode, harness::default_compile_cache()).await?;
        print_report(&wasm, dir, &report, mode);
        passed += report.cases.iter().filter(|case| case.passed).count();
        failed += report.cases.iter().filter(|case| !case.passed).count();
    }
    let verb = match mode {
        Mode::Replay => "passed",
        Mode::UpdateExpected => "updated",
        Mode::Record => "recorded",
    };
    println!(
        "{} case(s) in {} cassette(s): {passed} {verb}, {failed} failed",
        passed + failed,
        cassettes.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn crate_cassettes(plugin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let root = plugin.join("cassettes");
    if !plugin.is_dir() || !root.is_dir() {
        bail!(
            "no --cassette given and {} has no cassettes/ directory",
            plugin.display()
        );
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!("{} holds no cassette directories", root.display());
    }
    Ok(dirs)
}

fn print_report(wasm: &Path, dir: &Path, report: &HarnessReport, mode: Mode) {
    println!(
        "{} ({}) with cassette {}",
        wasm.display(),
        report.role,
        dir.display()
    );
    for case in &report.cases {
        let verdict = match (case.passed, mode) {
            (true, Mode::Replay) => "ok  ",
            (true, Mode::UpdateExpected) => "upd ",
            (true, Mode::Record) => "rec ",
            (false, _) => "FAIL",
        };
        println!(
            "  {verdict} {} — {}, {} exchange(s), {:.1?}",
            case.name, case.summary, case.exchanges, case.elapsed
        );
        for problem in &case.problems {
            println!("         {problem}");
        }
    }
    if !report.unused.is_empty() {
        println!(
            "  note: {} interaction(s) never used: {}",
            report.unused.len(),
            report.unused.join("; ")
        );
    }
}
