//! `tsunagi plugin build [DIR]`: `cargo build --target wasm32-wasip2` for a connector crate,
//! then the same load checks the host makes (component, WIT version, role exports).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use tsunagi::cassette::harness::default_compile_cache;
use tsunagi::runtime::{Engine, EngineSettings};

const TARGET: &str = "wasm32-wasip2";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tsunagi plugin build
  tsunagi plugin build hello-feed
  tsunagi plugin build plugins/rss --profile dev")]
pub struct BuildArgs {
    /// The connector crate (a directory with Cargo.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Cargo profile to build with.
    #[arg(long, default_value = "release")]
    pub profile: String,
}

pub async fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let built = build_crate(&args.dir, &args.profile)?;
    let plugin = check_loads(&built).await?;
    println!(
        "{} ({} KiB), role {}, sha256 {}",
        built.display(),
        plugin.size / 1024,
        plugin.role,
        &plugin.sha256[..16]
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds the crate in `dir` and returns the component's path.
pub fn build_crate(dir: &Path, profile: &str) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{}: no Cargo.toml; pass the connector crate's directory",
            dir.display()
        );
    }
    ensure_target()?;
    let (target_dir, lib_name) = crate_outputs(&manifest)?;
    let status = Command::new(cargo())
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            profile,
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed for {}", manifest.display());
    }
    let profile_dir = match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    };
    let wasm = target_dir
        .join(TARGET)
        .join(profile_dir)
        .join(format!("{lib_name}.wasm"));
    if !wasm.is_file() {
        bail!(
            "cargo built no {}; is the crate's [lib] crate-type \"cdylib\"?",
            wasm.display()
        );
    }
    Ok(wasm)
}

/// Loads the component as the host would, for whichever role it exports.
pub async fn check_loads(wasm: &Path) -> anyhow::Result<tsunagi::runtime::Plugin> {
    let engine = Engine::new(&EngineSettings {
        max_instances: 4,
        compile_cache: default_compile_cache(),
        ..EngineSettings::default()
    })?;
    let path = wasm.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || engine.load_any_role(&path)).await??)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Installs the wasm32-wasip2 target when rustup lacks it (`rustup target add` touches the
/// network even when the target is there, so it runs only when needed).
fn ensure_target() -> anyhow::Result<()> {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: the toolchain is managed some other way; cargo will say if it lacks it.
        return Ok(());
    };
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup target add {TARGET} failed");
    }
    Ok(())
}

/// The target directory and the library's file name, from `cargo metadata`.
fn crate_outputs(manifest: &Path) -> anyhow::Result<(PathBuf, String)> {
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed for {}: {}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")?;
    let manifest = std::fs::canonicalize(manifest)?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| {
            package["manifest_path"]
                .as_str()
                .is_some_and(|path| Path::new(path) == manifest)
        })
        .with_context(|| format!("cargo metadata does not list {}", manifest.display()))?;
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
        })
        .and_then(|target| target["name"].as_str())
        .with_context(|| {
            format!(
                "{}: no cdylib target; a component is built from [lib] crate-type = [\"cdylib\"]",
                manifest.display()
            )
        })?;
    Ok((target_dir, lib.replace('-', "_")))
}
