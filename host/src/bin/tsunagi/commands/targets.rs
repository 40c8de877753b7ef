//! `tsunagi targets add|import|list|remove`: a connector's targets in the store.
//!
//! `import` reads a text file (one URL per line, `#` comments) or a CSV file (a `url`, `feed`,
//! `link` or `href` column, or the one `--column` names). Bad lines are reported as
//! `file:line: reason` and skipped; every good line is kept. A target longer than
//! [`MAX_TARGET_BYTES`] is refused by its line number and length, never echoed; shorter bad
//! ones are shown with credentials redacted.

use super::{ConfigArg, load_config, open_backend, require_connector};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tsunagi::clock::{Clock, SystemClock, rfc3339};
use tsunagi::config::files::read_any_capped;
use tsunagi_backends::{AddReport, MAX_TARGET_BYTES, target_problem};

/// Targets sent to the store per call while importing.
const IMPORT_CHUNK: usize = 10_000;

/// The largest target list imported (210,000 feed URLs are about 20 MiB).
const MAX_IMPORT_BYTES: u64 = 256 << 20;

#[derive(Debug, clap::Subcommand)]
pub enum TargetsCommand {
    /// Add targets given on the command line. With `--tokens-file F` or `--tokens -` (stdin),
    /// add one target linked to a user's tokens (JSON; never on the command line).
    #[command(after_help = "Examples:
  tsunagi targets add rss https://blog.rust-lang.org/feed.xml
  tsunagi targets add rss https://blog.rust-lang.org/feed.xml https://example.org/feed -c config/tsunagi.toml
  tsunagi targets add x-read 2244994945 --tokens-file user-tokens.json")]
    Add {
        /// Connector name from the config.
        connector: String,
        /// The targets to add, e.g. feed URLs.
        #[arg(required = true)]
        targets: Vec<String>,
        /// JSON holding the linked user's tokens and `scopes`, for the credential the
        /// connector's rules name.
        #[arg(long, conflicts_with = "tokens")]
        tokens_file: Option<PathBuf>,
        /// `-`: read the tokens JSON from stdin.
        #[arg(long, value_parser = ["-"])]
        tokens: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Add every target listed in a text or CSV file.
    #[command(after_help = "Examples:
  tsunagi targets import rss feeds.txt
  tsunagi targets import rss feeds.csv --column url -c config/tsunagi.toml
  tsunagi targets import rss export.dat --format text")]
    Import {
        /// Connector name from the config.
        connector: String,
        /// The text (one target a line) or CSV file to read.
        file: PathBuf,
        /// `text` (one per line) or `csv`; guessed from the file name when absent.
        #[arg(long)]
        format: Option<ImportFormat>,
        /// CSV column holding the target: a header name or a 0-based index.
        #[arg(long)]
        column: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List targets as JSON lines, with their state: scheduled, dead (given up on; see
    /// `tsunagi dlq`) or refused_by_policy (parked until a reload changes the egress rules).
    #[command(after_help = "Examples:
  tsunagi targets list
  tsunagi targets list rss -c config/tsunagi.toml")]
    List {
        /// Only this connector's targets (default: every connector's).
        connector: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove a target and its state; a linked user's tokens are forgotten too (unless another
    /// connector's target still uses them), and its items purged if the connector sets
    /// `purge_items_on_unlink`.
    #[command(after_help = "Examples:
  tsunagi targets remove rss https://blog.rust-lang.org/feed.xml
  tsunagi targets remove x-read 2244994945 -c config/tsunagi.toml")]
    Remove {
        /// Connector name from the config.
        connector: String,
        /// The target to remove, as it was added.
        target: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    Text,
    Csv,
}

pub async fn targets(command: TargetsCommand) -> anyhow::Result<ExitCode> {
    match command {
        TargetsCommand::Add {
            connector,
            targets,
            tokens_file,
            tokens,
            config,
        } => {
            let config = load_config(&config.config)?;
            require_connector(&config, &connector)?;
            let tokens = match (tokens_file, tokens) {
                (Some(file), _) => Some(super::tokens::TokensSource::File(file)),
                (None, Some(_)) => Some(super::tokens::TokensSource::Stdin),
                (None, None) => None,
            };
            if tokens.is_some() && targets.len() != 1 {
                anyhow::bail!("--tokens-file and --tokens link exactly one target");
            }
            let mut good = Vec::new();
            let mut bad = 0;
            for (index, target) in targets.iter().enumerate() {
                match validate_target_or_id(target) {
                    Ok(url) => good.push(url),
                    Err(reason) => {
                        bad += 1;
                        eprintln!("argument {}: {}{reason}", index + 1, shown(target));
                    }
                }
            }
            let backend = open_backend(&config).await?;
            if let (Some(source), Some(target)) = (&tokens, good.first()) {
                // Linked first: a target is never left due without its tokens.
                super::tokens::link(&config, &backend, &connector, target, source).await?;
            }
            let report = backend
                .add_targets(&connector, &good, SystemClock.now_ms())
                .await?;
            println!(
                "{connector}: {} added, {} already present, {bad} rejected",
                report.added, report.already_present
            );
            Ok(exit_code(bad))
        }
        TargetsCommand::Import {
            connector,
            file,
            format,
            column,
            config,
        } => {
            let config = load_config(&config.config)?;
            require_connector(&config, &connector)?;
            let format = format.unwrap_or_else(|| guess_format(&file));
            let parsed = read_targets(&file, format, column.as_deref())?;
            for problem in &parsed.problems {
                eprintln!("{problem}");
            }
            let backend = open_backend(&config).await?;
            let now = SystemClock.now_ms();
            let mut total = AddReport::default();
            let bar = super::progress::bar(parsed.targets.len() as u64, "targets");
            for chunk in parsed.targets.chunks(IMPORT_CHUNK) {
                let report = backend.add_targets(&connector, chunk, now).await?;
                total.added += report.added;
                total.already_present += report.already_present;
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            println!(
                "{}: {connector}: {} added, {} already present, {} bad line(s) ({} too long)",
                file.display(),
                total.added,
                total.already_present,
                parsed.problems.len(),
                parsed.too_long
            );
            Ok(exit_code(parsed.problems.len()))
        }
        TargetsCommand::List { connector, config } => {
            let config = load_config(&config.config)?;
            if let Some(connector) = &connector {
                require_connector(&config, connector)?;
            }
            let backend = open_backend(&config).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut after = 0;
            loop {
                let page = backend
                    .list_targets(connector.as_deref(), after, 1000)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for target in &page {
                    let state = if target.refused_at.is_some() {
                        "refused_by_policy"
                    } else if target.dead_at.is_some() {
                        "dead"
                    } else {
                        "scheduled"
                    };
                    let line = serde_json::json!({
                        "id": target.id,
                        "connector": target.connector,
                        // Credentials in a target URL are for its requests, not for printing.
                        "target": tsunagi::redact::url(&target.target),
                        "state": state,
                        // Parked and dead targets have no next run.
                        "next_run_at": (state == "scheduled").then(|| rfc3339(target.next_run_at)),
                        "last_polled_at": target.last_polled_at.map(rfc3339),
                        "error_count": target.error_count,
                        "last_error": target.last_error,
                        "refused_by_policy": target.refused_reason,
                        "refused_at": target.refused_at.map(rfc3339),
                        "etag": target.etag,
                        "last_modified": target.last_modified,
                    });
                    serde_json::to_writer(&mut out, &line)?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        TargetsCommand::Remove {
            connector,
            target,
            config,
        } => {
            let config = load_config(&config.config)?;
            require_connector(&config, &connector)?;
            let target = lookup_form(target);
            let backend = open_backend(&config).await?;
            if backend.remove_target(&connector, &target).await? {
                println!("{connector}: removed {}", tsunagi::redact::url(&target));
                super::tokens::unlink(&config, &backend, &connector, &target).await?;
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{connector}: no target {}", tsunagi::redact::url(&target));
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Some lines refused and the rest added is a partial success ([`super::exit::PARTIAL`]).
fn exit_code(problems: usize) -> ExitCode {
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::PARTIAL)
    }
}

/// What `targets add` and `remove` accept: a URL as [`validate_target`] does, or a plain
/// identifier (an X user id, an account name: letters, digits and `_-.:@`, nothing a URL
/// needs), kept as it is. Imports take URLs only, so a stray word in a feed list stays an error.
pub fn validate_target_or_id(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if is_plain_identifier(trimmed) {
        return Ok(trimmed.to_string());
    }
    validate_target(text)
}

/// Accepts absolute http(s) URLs with a host, at most [`MAX_TARGET_BYTES`] long (as given
/// and once normalised); returns them normalised.
pub fn validate_target(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Some(problem) = target_problem(text) {
        return Err(problem);
    }
    let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_string());
    }
    let normalised = url.to_string();
    if let Some(problem) = target_problem(&normalised) {
        return Err(format!("normalised (percent-encoded), it {problem}"));
    }
    Ok(normalised)
}

/// A target that names an account rather than a place: no scheme, no path, no spaces.
fn is_plain_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 256
        && !text.contains("://")
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b))
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// How a rejected target is shown before the reason: quoted with credentials redacted, or not
/// at all when it is too long to print.
fn shown(text: &str) -> String {
    if text.trim().len() > MAX_TARGET_BYTES {
        String::new()
    } else {
        format!("{:?}: ", tsunagi::redact::url(text.trim()))
    }
}

/// A target as given on the command line, in the form it is stored under (normalised, when it
/// is a URL), for looking it up.
pub fn lookup_form(target: String) -> String {
    validate_target(&target).unwrap_or(target)
}

fn guess_format(file: &Path) -> ImportFormat {
    match file.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("csv") => ImportFormat::Csv,
        _ => ImportFormat::Text,
    }
}

/// Targets read from a file, and the lines that were rejected.
#[derive(Debug, Default)]
pub struct ParsedTargets {
    pub targets: Vec<String>,
    pub problems: Vec<String>,
    /// How many of the problems are targets over [`MAX_TARGET_BYTES`].
    pub too_long: usize,
}

impl ParsedTargets {
    fn add(&mut self, name: &str, line: u64, text: &str) {
        match validate_target(text) {
            Ok(url) => self.targets.push(url),
            Err(reason) => {
                if text.trim().len() > MAX_TARGET_BYTES {
                    self.too_long += 1;
                }
                self.problems
                    .push(format!("{name}:{line}: {}{reason}", shown(text)));
            }
        }
    }
}

pub fn read_targets(
    file: &Path,
    format: ImportFormat,
    column: Option<&str>,
) -> anyhow::Result<ParsedTargets> {
    let bytes = read_any_capped(file, MAX_IMPORT_BYTES, "target list")?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
    let name = file.display().to_string();
    Ok(match format {
        ImportFormat::Text => parse_text(&name, &text),
        ImportFormat::Csv => parse_csv(&name, &text, column)?,
    })
}

pub fn parse_text(name: &str, text: &str) -> ParsedTargets {
    let mut parsed = ParsedTargets::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parsed.add(name, index as u64 + 1, line);
    }
    parsed
}

pub fn parse_csv(name: &str, text: &str, column: Option<&str>) -> anyhow::Result<ParsedTargets> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut parsed = ParsedTargets::default();
    let mut records = reader.records().peekable();
    let header: Option<Vec<String>> = match records.peek() {
        Some(Ok(first)) if first.iter().all(|cell| validate_target(cell).is_err()) => Some(
            first
                .iter()
                .map(|c| c.trim().to_ascii_lowercase())
                .collect(),
        ),
        _ => None,
    };
    let index = match (column, &header) {
        (Some(column), _) if column.parse::<usize>().is_ok() => column.parse::<usize>()?,
        (Some(column), Some(header)) => header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(column))
            .with_context(|| format!("{name}:1: no column named {column:?} in {header:?}"))?,
        (Some(column), None) => {
            anyhow::bail!("{name}: --column {column:?} names a header, but the file has none")
        }
        (None, Some(header)) => header
            .iter()
            .position(|h| {
                ["url", "feed", "feed_url", "link", "href", "target"].contains(&h.as_str())
            })
            .unwrap_or(0),
        (None, None) => 0,
    };
    if header.is_some() {
        records.next();
    }
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                parsed.problems.push(format!("{name}:{line}: {error}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        match record.get(index) {
            Some(cell) if cell.trim().is_empty() => {}
            Some(cell) => parsed.add(name, line, cell),
            None => parsed
                .problems
                .push(format!("{name}:{line}: no column {index} in this row")),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_import_keeps_good_lines_and_reports_bad_ones_by_line() {
        let text = "# feeds\nhttp://a.example/feed\n\nnot a url\nftp://b.example/x\nhttps://c.example/rss\n";
        let parsed = parse_text("feeds.txt", text);
        assert_eq!(
            parsed.targets,
            vec!["http://a.example/feed", "https://c.example/rss"]
        );
        assert_eq!(parsed.problems.len(), 2);
        assert!(
            parsed.problems[0].starts_with("feeds.txt:4: "),
            "{:?}",
            parsed.problems
        );
        assert!(
            parsed.problems[1].starts_with("feeds.txt:5: "),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn csv_import_finds_the_url_column_by_header() {
        let text = "name,url\nA,http://a.example/feed\nB,oops\nC,https://c.example/rss\n";
        let parsed = parse_csv("feeds.csv", text, None).unwrap();
        assert_eq!(
            parsed.targets,
            vec!["http://a.example/feed", "https://c.example/rss"]
        );
        assert_eq!(parsed.problems.len(), 1);
        assert!(
            parsed.problems[0].starts_with("feeds.csv:3: "),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn add_takes_account_ids_as_they_are_and_imports_take_only_urls() {
        assert_eq!(validate_target_or_id(" 2244994945 ").unwrap(), "2244994945");
        assert_eq!(
            validate_target_or_id("shop:acme-01").unwrap(),
            "shop:acme-01"
        );
        assert_eq!(
            validate_target_or_id("HTTP://A.example/feed").unwrap(),
            "http://a.example/feed"
        );
        for refused in ["a b", "a/b", "-x", "ftp://a.example/x", "x?y=1"] {
            assert!(validate_target_or_id(refused).is_err(), "{refused}");
        }
        assert!(validate_target("2244994945").is_err());
        let parsed = parse_text("ids.txt", "2244994945\nhttp://a.example/feed\n");
        assert_eq!(parsed.targets, vec!["http://a.example/feed"]);
    }

    #[test]
    fn csv_without_header_uses_the_named_index() {
        let text = "x,http://a.example/1\ny,http://a.example/2\n";
        let parsed = parse_csv("f.csv", text, Some("1")).unwrap();
        assert_eq!(parsed.targets.len(), 2);
        assert!(parsed.problems.is_empty());
    }
    #[test]
    fn a_too_long_line_is_refused_by_number_without_echoing_it() {
        let huge = format!("https://a.example/{}", "x".repeat(1 << 20));
        let text = format!("http://a.example/1\n{huge}\nhttp://a.example/2\n");
        let parsed = parse_text("feeds.txt", &text);
        assert_eq!(
            parsed.targets,
            vec!["http://a.example/1", "http://a.example/2"]
        );
        assert_eq!(parsed.too_long, 1);
        assert_eq!(
            parsed.problems,
            vec![format!(
                "feeds.txt:2: is {} bytes long; a target is at most 2048 bytes",
                huge.len()
            )]
        );

        let csv = format!("url\nhttp://a.example/1\n{huge}\n");
        let parsed = parse_csv("feeds.csv", &csv, None).unwrap();
        assert_eq!(parsed.targets.len(), 1);
        assert_eq!(parsed.too_long, 1);
        assert!(
            parsed.problems[0].starts_with("feeds.csv:3: is "),
            "{:?}",
            parsed.problems
        );
        assert!(parsed.problems[0].len() < 100, "{:?}", parsed.problems);
    }

    #[test]
    fn targets_are_capped_as_given_and_once_normalised() {
        let at_cap = format!("https://a.example/{}", "x".repeat(MAX_TARGET_BYTES - 18));
        assert_eq!(validate_target(&at_cap).unwrap().len(), MAX_TARGET_BYTES);
        // Spaces become %20: short enough as written, too long once normalised.
        let spaces = format!("https://a.example/{}", " ".repeat(1000));
        let error = validate_target(&format!("{spaces}x")).unwrap_err();
        assert!(
            error.starts_with("normalised (percent-encoded), it is "),
            "{error}"
        );
    }

    #[test]
    fn a_rejected_target_is_shown_with_its_credentials_hidden() {
        let parsed = parse_text("f.txt", "ftp://a.example/x?token=s3cret\n");
        assert_eq!(parsed.problems.len(), 1);
        assert!(
            !parsed.problems[0].contains("s3cret"),
            "{:?}",
            parsed.problems
        );
    }
}
