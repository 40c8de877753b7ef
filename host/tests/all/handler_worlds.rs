//! The two handler worlds of WIT 0.1.1 through `tsunagi plugin test`: `plugins/test-handler`
//! (SDK, exports `jobs`: target, earlier outcome, skipped) and `plugins/legacy-handler` (built
//! against the kept 0.1.0 WIT, exports `handle`), which the host must still run.

use crate::common::{plugin, workspace_root};
use std::process::Command;

fn plugin_test(name: &str, cassette: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(["plugin", "test"])
        .arg(plugin(name))
        .arg("--cassette")
        .arg(workspace_root().join(cassette))
        .env("TSUNAGI_COMPILE_CACHE", crate::common::compile_cache())
        .output()
        .expect("tsunagi runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_0_1_1_handler_gets_target_and_earlier_outcome_and_may_skip() {
    let (ok, output) = plugin_test("test_handler", "plugins/test-handler/cassettes/basic");
    assert!(ok, "{output}");
    assert!(output.contains("4 passed, 0 failed"), "{output}");
    assert!(
        output.contains("skipped: came from the upstream itself, 0 exchange(s)"),
        "{output}"
    );
}

#[test]
fn a_handler_built_against_0_1_0_still_loads_and_runs() {
    let (ok, output) = plugin_test("legacy_handler", "plugins/legacy-handler/cassettes/basic");
    assert!(ok, "{output}");
    assert!(
        output.contains("(handler)"),
        "its exports read as a handler: {output}"
    );
    assert!(output.contains("2 passed, 0 failed"), "{output}");
}
