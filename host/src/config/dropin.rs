//! Drop-in config files: every `*.toml` in `host.connectors_dir` holds connectors (and the
//! budgets, breakers and credentials they use), merged into the main config. A config writer
//! adds a shop by dropping one file there; the watcher reloads and the shop is searched.
//!
//! Each file is parsed on its own, so its errors name it and its lines; the merged tables are
//! mounted on the main file's locator, so later errors about them (a check, a plugin that does
//! not load) are located in the drop-in file too. A name declared twice is an error at the
//! second place, naming the first.

use super::files::read_regular_text;
use super::locate::{Parsed, SourceLocator, parse_collecting};
use super::{
    BreakerSettings, BudgetSettings, Config, ConfigError, ConnectorSettings, CredentialSettings,
    MAX_CONFIG_BYTES,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most drop-in files read from the folder.
pub const MAX_DROPIN_FILES: usize = 256;

/// What one drop-in file may hold.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Fragment {
    #[serde(default)]
    connectors: BTreeMap<String, ConnectorSettings>,
    #[serde(default)]
    budgets: BTreeMap<String, BudgetSettings>,
    #[serde(default)]
    breakers: BTreeMap<String, BreakerSettings>,
    #[serde(default)]
    credentials: BTreeMap<String, CredentialSettings>,
}

/// The drop-in files of `dir`, sorted, or why the folder cannot be read.
fn dropin_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read the folder: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "toml")
                && !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    if files.len() > MAX_DROPIN_FILES {
        return Err(format!(
            "{} .toml files, more than {MAX_DROPIN_FILES}",
            files.len()
        ));
    }
    Ok(files)
}

/// Reads `config.host.connectors_dir` (if set) and merges its files into `config`.
pub(super) fn merge_fragments(
    config: &mut Config,
    locator: &mut SourceLocator,
    errors: &mut Vec<ConfigError>,
    refused: &mut BTreeSet<String>,
) {
    let Some(dir) = config.host.connectors_dir.clone() else {
        return;
    };
    let dir = config.resolve(&dir);
    let files = match dropin_files(&dir) {
        Ok(files) => files,
        Err(message) => {
            let mut error = locator.field_error("host.connectors_dir", &message);
            error.message = format!("{}: {message}", dir.display());
            errors.push(error);
            return;
        }
    };
    // Where each name was declared first: the main file, or a drop-in file.
    let main = config.source_path.display().to_string();
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    for (section, names) in [
        (
            "connectors",
            config.connectors.keys().cloned().collect::<Vec<_>>(),
        ),
        ("budgets", config.budgets.keys().cloned().collect()),
        ("breakers", config.breakers.keys().cloned().collect()),
        ("credentials", config.credentials.keys().cloned().collect()),
    ] {
        for name in names {
            declared.insert(format!("{section}.{name}"), main.clone());
        }
    }
    for path in files {
        let text = match read_regular_text(&path, MAX_CONFIG_BYTES, "config file") {
            Ok(text) => text,
            Err(error) => {
                errors.push(ConfigError::file(&path, error.to_string()));
                continue;
            }
        };
        let Parsed {
            value,
            locator: fragment_locator,
            errors: fragment_errors,
            refused: fragment_refused,
            ..
        } = parse_collecting::<Fragment>(&path, &text);
        errors.extend(fragment_errors);
        refused.extend(fragment_refused);
        let fragment_locator = Arc::new(fragment_locator);
        let Some(fragment) = value else { continue };
        let mut take = |field: String, errors: &mut Vec<ConfigError>| -> bool {
            if let Some(first) = declared.get(&field) {
                errors.push(
                    fragment_locator.field_error(&field, &format!("already declared in {first}")),
                );
                return false;
            }
            declared.insert(field.clone(), path.display().to_string());
            locator.mount(field, fragment_locator.clone());
            true
        };
        for (name, connector) in fragment.connectors {
            if take(format!("connectors.{name}"), errors) {
                config.connectors.insert(name, connector);
            }
        }
        for (name, budget) in fragment.budgets {
            if take(format!("budgets.{name}"), errors) {
                config.budgets.insert(name, budget);
            }
        }
        for (name, breaker) in fragment.breakers {
            if take(format!("breakers.{name}"), errors) {
                config.breakers.insert(name, breaker);
            }
        }
        for (name, credential) in fragment.credentials {
            if take(format!("credentials.{name}"), errors) {
                config.credentials.insert(name, credential);
            }
        }
    }
}
