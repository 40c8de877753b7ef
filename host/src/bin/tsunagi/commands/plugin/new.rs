//! `tsunagi plugin new NAME --role poller|handler|searcher`: a connector crate on the SDK that
//! builds (`tsunagi plugin build`) and passes its own cassette (`tsunagi plugin test .`) as
//! created. The templates live next to this file and are compiled into the binary, and so is
//! the SDK (see `host/build.rs`): a crate made anywhere gets it vendored in `vendor/tsunagi-sdk`
//! with the WIT it binds in `wit/`, so it builds without a tsunagi checkout.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tsunagi::config::Role;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi plugin new hello-feed --role poller
  tsunagi plugin new post-sender --role handler --dir plugins/post-sender
  tsunagi plugin new my-shop --role searcher --sdk ../tsunagi/plugins/sdk")]
pub struct NewArgs {
    /// The connector's name: lower-case letters, digits and dashes (`hello-feed`). The crate
    /// has this name and is created in ./NAME unless `--dir` says otherwise.
    pub name: String,
    /// What the connector does for the host.
    #[arg(long, value_enum)]
    pub role: Role,
    /// Where to create the crate.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Depend on the SDK at this path (`plugins/sdk` of a tsunagi checkout) instead of the
    /// copy this binary carries, which is otherwise vendored into the crate.
    #[arg(long, env = "TSUNAGI_SDK")]
    pub sdk: Option<PathBuf>,
}

/// A role's files: (path in the crate, template text).
fn role_files(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::Poller => &[
            ("src/lib.rs", include_str!("templates/poller/lib.rs")),
            (
                "cassettes/basic/cases.toml",
                include_str!("templates/poller/cases.toml"),
            ),
            (
                "cassettes/basic/interactions.toml",
                include_str!("templates/poller/interactions.toml"),
            ),
            (
                "cassettes/basic/bodies/items.json",
                include_str!("templates/poller/items.json"),
            ),
            (
                "cassettes/basic/expected/first-page.json",
                include_str!("templates/poller/expected/first-page.json"),
            ),
            (
                "cassettes/basic/expected/unchanged-page-answers-304.json",
                include_str!("templates/poller/expected/unchanged-page-answers-304.json"),
            ),
            (
                "cassettes/basic/expected/server-error-is-transient.json",
                include_str!("templates/poller/expected/server-error-is-transient.json"),
            ),
        ],
        Role::Handler => &[
            ("src/lib.rs", include_str!("templates/handler/lib.rs")),
            (
                "cassettes/basic/cases.toml",
                include_str!("templates/handler/cases.toml"),
            ),
            (
                "cassettes/basic/interactions.toml",
                include_str!("templates/handler/interactions.toml"),
            ),
            (
                "cassettes/basic/expected/publish-a-post.json",
                include_str!("templates/handler/expected/publish-a-post.json"),
            ),
            (
                "cassettes/basic/expected/a-refused-post-is-permanent.json",
                include_str!("templates/handler/expected/a-refused-post-is-permanent.json"),
            ),
        ],
        Role::Searcher => &[
            ("src/lib.rs", include_str!("templates/searcher/lib.rs")),
            (
                "cassettes/basic/cases.toml",
                include_str!("templates/searcher/cases.toml"),
            ),
            (
                "cassettes/basic/interactions.toml",
                include_str!("templates/searcher/interactions.toml"),
            ),
            (
                "cassettes/basic/bodies/green-tea.json",
                include_str!("templates/searcher/green-tea.json"),
            ),
            (
                "cassettes/basic/expected/green-tea.json",
                include_str!("templates/searcher/expected/green-tea.json"),
            ),
            (
                "cassettes/basic/expected/rate-limited.json",
                include_str!("templates/searcher/expected/rate-limited.json"),
            ),
        ],
    }
}

/// Files every role gets.
const COMMON_FILES: [(&str, &str); 3] = [
    ("Cargo.toml", include_str!("templates/Cargo.toml.tmpl")),
    (".gitignore", include_str!("templates/gitignore.tmpl")),
    ("README.md", include_str!("templates/README.md.tmpl")),
];

pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk = match args.sdk.as_deref() {
        Some(given) => sdk_path(given)?,
        None => PathBuf::from(VENDORED_SDK),
    };
    let crate_name = args.name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{role}}", args.role.name())
            .replace("{{sdk_path}}", &toml_path(&sdk))
            .replace("{{dir}}", &dir.display().to_string())
    };
    for (path, text) in COMMON_FILES.iter().chain(role_files(args.role)) {
        write_file(&dir.join(path), fill(text).as_bytes())?;
    }
    if args.sdk.is_none() {
        for (path, bytes) in vendored::SDK_FILES {
            write_file(&dir.join(path), bytes)?;
        }
    }
    println!(
        "created {} {} in {}\n  build:  tsunagi plugin build {}\n  test:   tsunagi plugin test {}",
        args.role.name(),
        args.name,
        dir.display(),
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "connector name {name:?}: use lower-case letters, digits and dashes, starting with a \
             letter (it names the crate and the connector in the host's TOML)"
        );
    }
    Ok(())
}

/// The SDK and WIT files this binary was built with (generated by `host/build.rs`).
mod vendored {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// Where the scaffold's manifest finds the vendored SDK.
const VENDORED_SDK: &str = "vendor/tsunagi-sdk";

fn write_file(target: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(target, bytes).with_context(|| format!("writing {}", target.display()))
}

/// The SDK crate given with `--sdk`, as an absolute path.
fn sdk_path(path: &Path) -> anyhow::Result<PathBuf> {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no tsunagi SDK at {}: --sdk takes the plugins/sdk directory of a tsunagi checkout \
             (leave it out to vendor the SDK this binary carries)",
            path.display()
        );
    }
    Ok(std::fs::canonicalize(path)?)
}

/// A path as a TOML basic string's content.
fn toml_path(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_a_crate_and_a_toml_key() {
        assert!(check_name("hello-feed").is_ok());
        assert!(check_name("shop2").is_ok());
        for bad in ["", "Hello", "2shop", "a_b", "a-", "a b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_role_writes_a_crate_with_its_own_cassette() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
        for role in [Role::Poller, Role::Handler, Role::Searcher] {
            let dir = tempfile::tempdir().unwrap();
            let crate_dir = dir.path().join("demo");
            new(NewArgs {
                name: "demo-conn".to_string(),
                role,
                dir: Some(crate_dir.clone()),
                sdk: Some(sdk.clone()),
            })
            .unwrap();
            let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
            assert!(manifest.contains("name = \"demo-conn\""), "{manifest}");
            assert!(
                manifest.contains(&format!("features = [\"{}\"]", role.name())),
                "{manifest}"
            );
            assert!(!manifest.contains("{{"), "{manifest}");
            let cassette =
                tsunagi::cassette::Cassette::load(&crate_dir.join("cassettes/basic")).unwrap();
            for case in &cassette.cases.cases {
                assert!(case.expected_path(&cassette.dir).is_file(), "{}", case.name);
            }
            // A second run refuses to overwrite.
            let again = new(NewArgs {
                name: "demo-conn".to_string(),
                role,
                dir: Some(crate_dir.clone()),
                sdk: Some(sdk.clone()),
            });
            assert!(again.is_err());
        }
    }

    #[test]
    fn without_sdk_the_crate_vendors_a_standalone_sdk_and_its_wit() {
        let dir = tempfile::tempdir().unwrap();
        let crate_dir = dir.path().join("demo");
        new(NewArgs {
            name: "demo-conn".to_string(),
            role: Role::Poller,
            dir: Some(crate_dir.clone()),
            sdk: None,
        })
        .unwrap();
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("path = \"vendor/tsunagi-sdk\""),
            "{manifest}"
        );
        let vendored: toml::Table =
            std::fs::read_to_string(crate_dir.join("vendor/tsunagi-sdk/Cargo.toml"))
                .unwrap()
                .parse()
                .unwrap();
        assert!(!vendored.to_string().contains("workspace"), "{vendored}");
        assert_eq!(vendored["package"]["name"].as_str(), Some("tsunagi-sdk"));
        assert_eq!(
            vendored["package"]["edition"].as_str(),
            Some("2024"),
            "{vendored}"
        );
        let serde = &vendored["dependencies"]["serde"];
        assert!(serde["version"].is_str(), "{serde}");
        assert!(vendored["features"].get("poller").is_some(), "{vendored}");
        // The SDK binds ../../wit, as in the checkout.
        let wit = std::fs::read_to_string(crate_dir.join("wit/connector.wit")).unwrap();
        let ours = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/connector.wit"),
        )
        .unwrap();
        assert_eq!(wit, ours);
        let lib = std::fs::read_to_string(crate_dir.join("vendor/tsunagi-sdk/src/lib.rs")).unwrap();
        assert!(lib.contains("path: \"../../wit\""));
        // Nothing in the crate points back at the checkout this binary was built from.
        let checkout = std::fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .unwrap()
            .display()
            .to_string();
        for (path, _) in vendored::SDK_FILES {
            let text =
                String::from_utf8_lossy(&std::fs::read(crate_dir.join(path)).unwrap()).into_owned();
            assert!(!text.contains(&checkout), "{path} names {checkout}");
        }
        assert!(!manifest.contains(&checkout), "{manifest}");
    }
}
