//! The library's modules form a one-way stack: each may use only the modules below it in
//! [`LAYERS`], so no module imports one that imports it back. This reads every `crate::` path
//! in `host/src` (comments and string literals left out) and fails naming the file, line and
//! the two modules of any use that points up the stack.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top to bottom. The data path of a crawl runs down it: the topology starts pipelines, a
/// pipeline asks the scheduler and calls the runtime, the runtime's plugins reach out through
/// egress, egress asks resilience; everything reads config, counts stats and tells the time.
const LAYERS: &[&str] = &[
    "admin",
    "topology",
    "cluster",
    "inbound",
    "pipeline",
    "websub",
    "deadletters",
    "sinks",
    "retention",
    "scheduler",
    "cassette",
    "runtime",
    "rankings",
    "egress",
    "credentials",
    "resilience",
    "membership",
    "stores",
    "config",
    "stats",
    "filter",
    "redact",
    "listen",
    "outage",
    "clock",
    // Test support (`#[cfg(test)]`): a scriptable HTTP server on 127.0.0.1.
    "loopback",
];

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a Rust file with comments and the contents of string literals blanked out
/// (line breaks kept, so line numbers still match).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && next.is_some_and(|n| n != '\\') && chars.get(i + 2) == Some(&'\'') {
            // A char literal such as '"' must not open a string.
            out.push_str("' '");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every top-level module a file's code names through `crate::`, with the line it is on:
/// `crate::a::b` and each first name inside `use crate::{a::x, b}`.
fn crate_uses(code: &str) -> Vec<(usize, String)> {
    let mut uses = Vec::new();
    for (index, _) in code.match_indices("crate::") {
        let line = code[..index].matches('\n').count() + 1;
        let preceded_by_word = code[..index]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if preceded_by_word {
            continue;
        }
        let rest = &code[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 && c == ',' {
                    start = true;
                    continue;
                }
                if start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                    } else if !name.is_empty() {
                        uses.push((line, std::mem::take(&mut name)));
                        start = false;
                    }
                }
            }
            if !name.is_empty() {
                uses.push((line, name));
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                uses.push((line, name));
            }
        }
    }
    uses
}

/// The top-level module a library file belongs to; `None` for the crate root and the binary.
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(source_dir()).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    match first.as_ref() {
        "lib.rs" | "bin" => None,
        name => Some(name.trim_end_matches(".rs").to_string()),
    }
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let mut files = Vec::new();
    rust_files(&source_dir(), &mut files);
    files.sort();
    let mut seen = BTreeSet::new();
    let mut upward = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        seen.insert(module.clone());
        let rank = LAYERS
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("module `{module}` ({}) is not in LAYERS", file.display()));
        let text = std::fs::read_to_string(file).expect("source is UTF-8");
        for (line, used) in crate_uses(&code_only(&text)) {
            if used == module || used == "backends" {
                continue;
            }
            match LAYERS.iter().position(|m| *m == used) {
                Some(used_rank) if used_rank > rank => {}
                Some(_) => upward.push(format!(
                    "{}:{line}: `{module}` uses `{used}`, which stands above it",
                    file.display()
                )),
                None => upward.push(format!(
                    "{}:{line}: `{module}` uses `crate::{used}`, which is not a module in LAYERS",
                    file.display()
                )),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "uses that point up the stack:\n{}",
        upward.join("\n")
    );
    let listed: BTreeSet<String> = LAYERS.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        seen, listed,
        "LAYERS must list exactly the library's modules"
    );
}

#[test]
fn the_reader_sees_through_comments_strings_and_groups() {
    let code = code_only(
        "use crate::{config::Config, egress::{A, B}, clock};\n\
         // crate::admin in a comment\n\
         /* crate::topology\n in a block */ let s = \"crate::sinks\";\n\
         let q = '\"'; crate::stats::count();\n\
         tsunagi::crate_like::x; super::crate::no;\n",
    );
    let uses = crate_uses(&code);
    assert_eq!(
        uses,
        vec![
            (1, "config".to_string()),
            (1, "egress".to_string()),
            (1, "clock".to_string()),
            (5, "stats".to_string()),
        ]
    );
}
