//! `docs/plugin-authoring.md`'s walk-through, run as written: every `sh` block between the
//! `walkthrough:start` and `walkthrough:end` markers, in order, in one bash from the checkout's
//! root. Scaffold, build, test, add to a config, poll a loopback server.

use crate::common::workspace_root;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The loopback port docs/plugin-authoring.md uses.
const DOC_PORT: &str = "38517";

/// The `sh` blocks of the walk-through section, joined into one script.
fn walkthrough_script(doc: &str) -> String {
    let start = doc
        .find("<!-- walkthrough:start -->")
        .expect("the doc marks where the walk-through starts");
    let end = doc
        .find("<!-- walkthrough:end -->")
        .expect("the doc marks where the walk-through ends");
    let mut script = String::from("set -euo pipefail\n");
    let mut in_block = false;
    for line in doc[start..end].lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, text) => {
                script.push_str(text);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

#[test]
fn the_plugin_authoring_walkthrough_works_as_written() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/plugin-authoring.md")).unwrap();
    let written = walkthrough_script(&doc);
    // The doc's loopback port is fixed for readers; the test takes one that is free now (bound
    // and released here, so a port already in use cannot collide).
    assert!(
        written.contains(DOC_PORT),
        "the walk-through no longer uses port {DOC_PORT}:\n{written}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let script = written.replace(DOC_PORT, &port);
    // Waiting for the server is bounded in the doc itself, so a server that never comes up
    // fails the step instead of hanging it.
    assert!(
        script.contains("timeout ") && script.contains("until curl"),
        "the wait for the loopback server is unbounded:\n{script}"
    );
    for step in [
        "tsunagi plugin new hello-feed --role poller",
        "tsunagi plugin build",
        "tsunagi plugin test .",
        "tsunagi poll hello-feed",
    ] {
        assert!(
            script.contains(step),
            "the walk-through lost `{step}`:\n{script}"
        );
    }
    // Its own process group, so a step that fails cannot leave the loopback server behind; and a
    // time bound, so a server that never comes up fails the test instead of hanging it.
    let child = Command::new("timeout")
        .args(["900", "bash", "-c", &script])
        .current_dir(workspace_root())
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let group = child.id().to_string();
    let output = child.wait_with_output().expect("bash ends");
    let _ = Command::new("pkill").args(["-g", &group]).status();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walk-through failed\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("created poller hello-feed"), "{stdout}");
    assert!(stdout.contains("role poller"), "{stdout}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
    let polled: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids: Vec<&str> = polled
        .iter()
        .filter_map(|item| item["id"].as_str())
        .collect();
    assert_eq!(ids, ["hello-1", "hello-2"], "{stdout}");
    assert_eq!(polled[0]["title"], "Hello, tsunagi");
    assert!(
        stderr.contains(&format!("200 http://127.0.0.1:{port}/items.json")),
        "{stderr}"
    );
}
