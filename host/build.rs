//! Embeds the plugin SDK and the WIT it binds, so `tsunagi plugin new` can vendor them into a
//! crate made anywhere (a user who only installed the binary has no checkout to point at).
//!
//! Writes `$OUT_DIR/sdk_files.rs`: every file of `plugins/sdk/src` and `wit/` with its path in
//! the scaffold (`vendor/tsunagi-sdk/…`, `wit/…`: the SDK finds its WIT at `../../wit`, as in
//! the checkout), and the SDK's manifest made standalone — the keys it inherits from this
//! workspace filled in, since the scaffold is a workspace of its own.

use std::path::{Path, PathBuf};
use toml::{Table, Value};

fn main() {
    let host = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = host.join("..");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let (sdk, wit, workspace) = (
        root.join("plugins/sdk"),
        root.join("wit"),
        root.join("Cargo.toml"),
    );
    for watched in [&sdk, &wit, &workspace] {
        println!("cargo::rerun-if-changed={}", watched.display());
    }
    let mut files = Vec::new();
    collect(&sdk.join("src"), "vendor/tsunagi-sdk/src", &mut files);
    collect(&wit, "wit", &mut files);
    let manifest = out.join("tsunagi-sdk.Cargo.toml");
    std::fs::write(
        &manifest,
        standalone_manifest(&sdk.join("Cargo.toml"), &workspace),
    )
    .expect("OUT_DIR is writable");
    files.push(("vendor/tsunagi-sdk/Cargo.toml".into(), manifest));
    files.sort();
    let mut code = String::from(
        "/// The SDK as `tsunagi plugin new` vendors it: (path in the crate, contents).\n\
         pub const SDK_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (to, from) in &files {
        let from = std::fs::canonicalize(from).expect("an SDK file");
        code += &format!(
            "    ({to:?}, include_bytes!({:?})),\n",
            from.display().to_string()
        );
    }
    code += "];\n";
    std::fs::write(out.join("sdk_files.rs"), code).expect("OUT_DIR is writable");
}

/// Every file under `dir`, paired with its path under `to`.
fn collect(dir: &Path, to: &str, files: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("SDK file names are UTF-8");
        if path.is_dir() {
            collect(&path, &format!("{to}/{name}"), files);
        } else {
            files.push((format!("{to}/{name}"), path));
        }
    }
}

/// The SDK's manifest with `key.workspace = true` replaced by the workspace's value.
fn standalone_manifest(sdk: &Path, workspace: &Path) -> String {
    let read = |path: &Path| -> Table {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        text.parse()
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    };
    let mut manifest = read(sdk);
    let workspace = read(workspace);
    let shared = |section: &str| -> Table {
        workspace
            .get("workspace")
            .and_then(|table| table.get(section))
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let inherits = |value: &Value| {
        value
            .get("workspace")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    if let Some(Value::Table(package)) = manifest.get_mut("package") {
        let values = shared("package");
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = values
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| panic!("workspace.package.{key} is not set"));
            }
        }
    }
    let dependencies = shared("dependencies");
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(Value::Table(deps)) = manifest.get_mut(section) else {
            continue;
        };
        for (name, value) in deps.iter_mut() {
            if !inherits(value) {
                continue;
            }
            let mut resolved = match dependencies.get(name) {
                Some(Value::String(version)) => {
                    Table::from_iter([("version".to_string(), Value::String(version.clone()))])
                }
                Some(Value::Table(table)) => table.clone(),
                _ => panic!("workspace.dependencies.{name} is not set"),
            };
            // The SDK's own keys (features, optional) add to the workspace's.
            if let Value::Table(own) = value {
                for (key, extra) in own.iter().filter(|(key, _)| *key != "workspace") {
                    match (resolved.get_mut(key), extra) {
                        (Some(Value::Array(list)), Value::Array(more)) => {
                            list.extend(more.iter().cloned())
                        }
                        _ => {
                            resolved.insert(key.clone(), extra.clone());
                        }
                    }
                }
            }
            *value = Value::Table(resolved);
        }
    }
    if manifest.get("lints").is_some_and(inherits) {
        manifest.remove("lints");
    }
    format!(
        "# Vendored by `tsunagi plugin new`: the SDK of the tsunagi that made this crate.\n{}",
        toml::to_string(&manifest).expect("a manifest serialises")
    )
}
