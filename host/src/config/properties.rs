//! Property tests of the config loader, a bounded fuzz run: arbitrary text, mutations of a
//! complete config, and generated configs with out-of-range fields written in every TOML
//! style. Each property runs a fixed number of cases from a fixed seed, so CI runs the same
//! inputs every time (`PROPTEST_CASES` does not change them). The cassette loader's properties
//! (in `cassette`) reuse the mutations.

use super::validate::{
    CALLS_PER_INSTANCE, CLAIM_LEASE, CONCURRENCY, LEASE_MARGIN, MEMORY, TIMEOUT,
};
use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

/// A fixed run of `cases` inputs, no regression files written.
pub(crate) fn fixed_run(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x7473_756e_6167_6921),
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// A config that uses every section, valid as it stands.
pub(crate) const FULL_CONFIG: &str = r#"# every section
[host]
database = "sqlite://t.db"
admin_listen = "127.0.0.1:7878"
claim_lease = "2m"
claim_batch = 64
idle_poll = "1s"
shutdown_grace = "15s"
watch = false

[connectors.rss]
plugin = "rss.wasm"
role = "poller"
concurrency = 8
calls_per_instance = 100
sinks = ["archive", "hook"]
schedule = { min_interval = "1m", max_interval = "2h" }
retry.first_delay = "1m"
retry.max_delay = "1h"
retry.jitter = 0.2

[connectors.rss.limits]
call_timeout = "20s"
memory = "64 MiB"
response_size = "8 MiB"

[[connectors.rss.egress.allow]]
scheme = "https"
host = "*.example.com"
budget = "shop"
breaker = "shop"

[[connectors.rss.egress.allow]]
host = "127.0.0.1"
port = 8080
allow_internal = true

[connectors.rss.config]
user_agent = "tsunagi"
note = """
[connectors.rss]
concurrency = 0
"""

[sinks.archive]
kind = "jsonl"
path = "items.jsonl"

[sinks.hook]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
max_attempts = 3
timeout = "5s"

[budgets.shop]
rate = "100/min"
burst = 10
per = "target"

[breakers.shop]
window = "20 calls"
failure_rate = 50
minimum_calls = 5
probe = { url = "https://shop.example.com/health", interval = "10s", expect_status = [200, 204] }
"#;

/// Pieces a mutation inserts: TOML punctuation, awkward numbers and durations, known keys.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\n",
    "#",
    " ",
    "0",
    "-1",
    "18446744073709551615",
    "9223372036854775807",
    "1e400",
    "nan",
    "inf",
    "-inf",
    "true",
    "\"0s\"",
    "\"500000000 years\"",
    "\"1 TiB\"",
    "\"\"",
    "\"0 calls\"",
    "\"1/0s\"",
    "connectors",
    "host",
    "sinks",
    "budgets",
    "breakers",
    "concurrency",
    "plugin",
    "role",
    "limits",
    "memory",
    "egress",
    "allow",
    "probe",
    "[connectors.x]",
    "[[connectors.rss.egress.allow]]",
    "a.b.c",
    "\"é\"",
    "\u{0}",
    "\r\n",
    "1979-05-27T07:32:00Z",
    "kind = \"webhook\"",
    "rate = \"1/s\"",
];

/// One edit of a text: at a position (a fraction of its length), delete some characters,
/// insert a token, or both.
#[derive(Debug, Clone)]
pub(crate) struct Edit {
    at: u16,
    delete: u8,
    insert: Option<usize>,
}

pub(crate) fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(
        (any::<u16>(), 0u8..12, proptest::option::of(0..TOKENS.len()))
            .prop_map(|(at, delete, insert)| Edit { at, delete, insert }),
        1..6,
    )
}

/// `text` with `edits` applied, at character boundaries.
pub(crate) fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let at = (usize::from(edit.at) * chars.len()) / usize::from(u16::MAX).max(1);
        let at = at.min(chars.len());
        let end = (at + usize::from(edit.delete)).min(chars.len());
        chars.drain(at..end);
        if let Some(token) = edit.insert {
            for (offset, c) in TOKENS[token].chars().enumerate() {
                chars.insert(at + offset, c);
            }
        }
    }
    chars.into_iter().collect()
}

/// What every outcome must be: a config whose values are in range, or errors that each name
/// a real position of `text` and a field, one line each.
pub(crate) fn check_errors(
    text: &str,
    file: &str,
    errors: &[ConfigError],
) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(!errors.is_empty());
    prop_assert!(errors.len() <= MAX_ERRORS);
    for error in errors {
        prop_assert_eq!(error.file.as_str(), file);
        prop_assert!(
            (1..=lines.len()).contains(&error.line),
            "line {} of {}: {}",
            error.line,
            lines.len(),
            error
        );
        let width = lines[error.line - 1].chars().count();
        prop_assert!(
            (1..=width + 1).contains(&error.column),
            "column {} of {}: {}",
            error.column,
            width,
            error
        );
        prop_assert!(!error.field.is_empty(), "{}", error);
        prop_assert!(!error.message.is_empty(), "{}", error);
        prop_assert!(!error.message.contains('\n'), "{}", error);
    }
    Ok(())
}

fn check_outcome(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text, Path::new("fuzz.toml")) {
        Err(errors) => {
            check_errors(text, "fuzz.toml", errors.errors())?;
            let shown = errors.to_string();
            prop_assert_eq!(
                shown.lines().count(),
                errors.errors().len() + usize::from(errors.truncated())
            );
        }
        Ok(config) => {
            // Accepted means nothing downstream can overflow on it.
            prop_assert!(CLAIM_LEASE.contains(&config.host.claim_lease));
            for connector in config.connectors.values() {
                prop_assert!(CONCURRENCY.contains(&connector.concurrency));
                prop_assert!(CALLS_PER_INSTANCE.contains(&connector.calls_per_instance));
                prop_assert!(MEMORY.contains(&connector.limits.memory.as_u64()));
                prop_assert!(TIMEOUT.contains(&connector.limits.call_timeout));
                prop_assert!(
                    connector.limits.call_timeout + LEASE_MARGIN <= config.host.claim_lease
                );
                prop_assert!(connector.retry.jitter.is_finite());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(fixed_run(1024))]

    #[test]
    fn any_text_yields_a_config_or_located_errors(text in any::<String>()) {
        check_outcome(&text)?;
    }

    #[test]
    fn toml_like_text_yields_a_config_or_located_errors(
        text in "[\\[\\]{}=.,\"' a-z0-9_#\n-]{0,400}"
    ) {
        check_outcome(&text)?;
    }

    #[test]
    fn a_mutated_config_yields_a_config_or_located_errors(edits in edits()) {
        check_outcome(&mutate(FULL_CONFIG, &edits))?;
    }
}

/// A connector field the generated configs set, good or out of range.
struct Field {
    /// The connector's sub-table (`""` for the connector's own table).
    table: &'static str,
    key: &'static str,
    good: Option<&'static str>,
    bad: &'static str,
    /// What the error for `bad` says.
    says: &'static str,
}

const FIELDS: &[Field] = &[
    Field {
        table: "",
        key: "concurrency",
        good: Some("8"),
        bad: "18446744073709551615",
        says: "between 1 and 1024",
    },
    Field {
        table: "",
        key: "calls_per_instance",
        good: Some("10"),
        bad: "0",
        says: "between 1 and 1000000",
    },
    // A typo: good configs leave it out, bad ones write it.
    Field {
        table: "",
        key: "concurrencyy",
        good: None,
        bad: "1",
        says: "unknown field `concurrencyy`",
    },
    Field {
        table: "schedule",
        key: "min_interval",
        good: Some("\"1s\""),
        bad: "\"500000000 years\"",
        says: "between 100ms and 30days",
    },
    Field {
        table: "schedule",
        key: "max_interval",
        good: Some("\"1h\""),
        bad: "\"0s\"",
        says: "between 100ms and 30days",
    },
    Field {
        table: "retry",
        key: "jitter",
        good: Some("0.5"),
        bad: "nan",
        says: "not NaN",
    },
    Field {
        table: "retry",
        key: "multiplier",
        good: Some("2.0"),
        bad: "-1.0",
        says: "between 1 and 100",
    },
    Field {
        table: "retry",
        key: "max_failures",
        good: Some("3"),
        bad: "0",
        says: "between 1 and 1000",
    },
    Field {
        table: "limits",
        key: "memory",
        good: Some("\"64 MiB\""),
        bad: "\"1 TiB\"",
        says: "between 2.0 MiB and 4.0 GiB",
    },
    Field {
        table: "limits",
        key: "call_timeout",
        good: Some("\"10s\""),
        bad: "\"0s\"",
        says: "between 1ms and 1h",
    },
    Field {
        table: "limits",
        key: "connect_timeout",
        good: Some("\"5s\""),
        bad: "\"2h\"",
        says: "between 1ms and 1h",
    },
];

/// How a generated config writes its tables and keys.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// `[connectors.rss.limits]` then `memory = …`.
    Headers,
    /// `limits.memory = …` under `[connectors.rss]`.
    Dotted,
    /// `limits = { memory = …, … }` on one line.
    Inline,
    /// `[connectors."rss"."limits"]` then `'memory' = …`.
    Quoted,
}

/// A generated config and the errors it must get: (line, column, field, what it says).
struct Generated {
    text: String,
    expected: Vec<(usize, usize, String, &'static str)>,
}

fn generate(style: Style, chosen: &[(bool, bool)], decoy: bool, blank: &[u8]) -> Generated {
    let mut lines: Vec<String> = Vec::new();
    let mut expected = Vec::new();
    let mut gap = blank.iter().cycle();
    let mut push_gap = |lines: &mut Vec<String>| {
        for _ in 0..*gap.next().unwrap_or(&0) {
            lines.push("# gap".to_string());
        }
    };
    let header = match style {
        Style::Quoted => "[connectors.\"rss\"]",
        _ => "[connectors.rss]",
    };
    lines.push(header.to_string());
    lines.push("plugin = \"rss.wasm\"".to_string());
    lines.push("role = \"poller\"".to_string());
    if decoy {
        // Lines that look like keys and headers, inside a string: no error points into it.
        lines.push("config.note = \"\"\"".to_string());
        lines.push("[connectors.rss.limits]".to_string());
        lines.push("memory = \"1 TiB\"".to_string());
        lines.push("concurrency = 0".to_string());
        lines.push("\"\"\"".to_string());
    }
    let quote = |key: &str| match style {
        Style::Quoted => format!("'{key}'"),
        _ => key.to_string(),
    };
    for table in ["", "schedule", "retry", "limits"] {
        let fields: Vec<(&Field, &str, bool)> = FIELDS
            .iter()
            .zip(chosen)
            .filter(|(field, _)| field.table == table)
            .filter_map(|(field, &(written, bad))| {
                if !written {
                    return None;
                }
                match field.good {
                    None if bad => Some((field, field.bad, true)),
                    None => None,
                    Some(good) => Some((field, if bad { field.bad } else { good }, bad)),
                }
            })
            .collect();
        if fields.is_empty() {
            continue;
        }
        let path = |key: &str| {
            if table.is_empty() {
                format!("connectors.rss.{key}")
            } else {
                format!("connectors.rss.{table}.{key}")
            }
        };
        match style {
            Style::Inline if !table.is_empty() => {
                push_gap(&mut lines);
                let mut line = format!("{table} = {{ ");
                for (index, (field, value, bad)) in fields.iter().enumerate() {
                    if index > 0 {
                        line.push_str(", ");
                    }
                    let column = line.chars().count() + 1;
                    if *bad {
                        expected.push((lines.len() + 1, column, path(field.key), field.says));
                    }
                    line.push_str(&format!("{} = {value}", field.key));
                }
                line.push_str(" }");
                lines.push(line);
            }
            Style::Dotted | Style::Inline => {
                for (field, value, bad) in fields {
                    push_gap(&mut lines);
                    let key = if table.is_empty() {
                        field.key.to_string()
                    } else {
                        format!("{table}.{}", field.key)
                    };
                    if bad {
                        // The error points at the field's own key, after `table.`.
                        let column = if table.is_empty() { 1 } else { table.len() + 2 };
                        expected.push((lines.len() + 1, column, path(field.key), field.says));
                    }
                    lines.push(format!("{key} = {value}"));
                }
            }
            Style::Headers | Style::Quoted => {
                if !table.is_empty() {
                    lines.push(match style {
                        Style::Quoted => format!("[connectors.rss.\"{table}\"]"),
                        _ => format!("[connectors.rss.{table}]"),
                    });
                }
                for (field, value, bad) in fields {
                    push_gap(&mut lines);
                    if bad {
                        expected.push((lines.len() + 1, 1, path(field.key), field.says));
                    }
                    lines.push(format!("{} = {value}", quote(field.key)));
                }
            }
        }
    }
    expected.sort();
    Generated {
        text: lines.join("\n") + "\n",
        expected,
    }
}

fn styles() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Headers),
        Just(Style::Dotted),
        Just(Style::Inline),
        Just(Style::Quoted)
    ]
}

proptest! {
    #![proptest_config(fixed_run(512))]

    /// However the TOML is written, each out-of-range field (and nothing else) is reported,
    /// at the line and column of its key.
    #[test]
    fn every_bad_field_is_named_where_it_is_written(
        style in styles(),
        chosen in proptest::collection::vec((any::<bool>(), any::<bool>()), FIELDS.len()),
        decoy in any::<bool>(),
        blank in proptest::collection::vec(0u8..3, 1..8),
    ) {
        let generated = generate(style, &chosen, decoy, &blank);
        let text = &generated.text;
        let found: Vec<(usize, usize, String, String)> =
            match Config::parse(text, Path::new("gen.toml")) {
                Ok(_) => Vec::new(),
                Err(errors) => errors
                    .errors()
                    .iter()
                    .map(|e| (e.line, e.column, e.field.clone(), e.message.clone()))
                    .collect(),
            };
        let places = |list: &[(usize, usize, String, &str)]| -> Vec<(usize, usize, String)> {
            list.iter().map(|(l, c, f, _)| (*l, *c, f.clone())).collect()
        };
        let found_places: Vec<(usize, usize, String)> =
            found.iter().map(|(l, c, f, _)| (*l, *c, f.clone())).collect();
        prop_assert_eq!(found_places, places(&generated.expected), "{}\n{:?}", text, found);
        for ((.., message), (.., says)) in found.iter().zip(&generated.expected) {
            prop_assert!(message.contains(says), "{} should say {}\n{}", message, says, text);
        }
    }
}
