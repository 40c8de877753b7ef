//! The plugin author kit end to end: `tsunagi plugin test` on the built-in connectors'
//! cassettes (the Rust and JavaScript JSON Feed twins share one), a cassette that no longer
//! matches failing with the difference named, and `--record` against a loopback upstream
//! followed by a replay with that upstream gone.

use crate::common::{plugin, workspace_root};
use std::path::Path;
use std::process::Command;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

/// Runs `tsunagi plugin test WASM --cassette DIR [extra]` and returns (success, stdout).
fn plugin_test(wasm: &Path, cassette: &Path, extra: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(["plugin", "test"])
        .arg(wasm)
        .arg("--cassette")
        .arg(cassette)
        .args(extra)
        .env("TSUNAGI_COMPILE_CACHE", crate::common::compile_cache())
        .output()
        .expect("tsunagi runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.success(), format!("{stdout}{stderr}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The number of passed cases in the summary line.
fn passed(output: &str) -> usize {
    let summary = output
        .lines()
        .find(|line| line.contains(" case(s) in "))
        .unwrap_or_else(|| panic!("no summary line:\n{output}"));
    summary
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable summary: {summary}"))
}

#[test]
fn the_rss_connector_passes_its_cassette() {
    let cassette = workspace_root().join("plugins/rss/cassettes/basic");
    let (ok, output) = plugin_test(&plugin("rss"), &cassette, &[]);
    assert!(ok, "{output}");
    assert_eq!(passed(&output), 7, "{output}");
    assert!(output.contains("7 passed, 0 failed"), "{output}");
}

/// How many cases a cassette declares, counted from its file rather than from any run.
fn declared_cases(cassette: &std::path::Path) -> usize {
    std::fs::read_to_string(cassette.join("cases.toml"))
        .unwrap()
        .lines()
        .filter(|line| line.trim() == "[[case]]")
        .count()
}

/// The reader's fixture suite (one small feed per construct: every RSS version, Atom 0.3 and
/// 1.0, JSON Feed, Dublin Core, dates, entities, encodings, `xml:base`, broken XML) through the
/// component, as a cassette.
#[test]
fn the_rss_connector_passes_the_feed_fixture_suite() {
    let cassette = workspace_root().join("plugins/rss-feed/fixtures");
    let (ok, output) = plugin_test(&plugin("rss"), &cassette, &[]);
    assert!(ok, "{output}");
    let cases = declared_cases(&cassette);
    assert!(cases >= 200, "{cases} cases");
    assert_eq!(passed(&output), cases, "{output}");
}

#[test]
fn the_json_feed_twins_pass_the_same_cassette() {
    let cassette = workspace_root().join("plugins/jsonfeed/cassettes/basic");
    let (rust_ok, rust_output) = plugin_test(&plugin("jsonfeed"), &cassette, &[]);
    assert!(rust_ok, "{rust_output}");
    let (js_ok, js_output) = plugin_test(&plugin("jsonfeed_js"), &cassette, &[]);
    assert!(js_ok, "{js_output}");
    // Both pass every case the cassette declares (counted from the file, not from either run).
    let cases = declared_cases(&cassette);
    assert!(cases >= 5, "the shared cassette has {cases} cases");
    let summary = format!("{cases} passed, 0 failed");
    assert_eq!(passed(&rust_output), cases, "{rust_output}");
    assert!(rust_output.contains(&summary), "{rust_output}");
    assert_eq!(passed(&js_output), cases, "{js_output}");
    assert!(js_output.contains(&summary), "{js_output}");
}

#[test]
fn a_cassette_that_no_longer_matches_fails_naming_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("basic");
    copy_dir(
        &workspace_root().join("plugins/rss/cassettes/basic"),
        &cassette,
    );
    // The upstream "changed shape": the first item has another title now.
    let body = cassette.join("bodies/news.xml");
    let text = std::fs::read_to_string(&body).unwrap();
    std::fs::write(
        &body,
        text.replace("Harbour bridge reopens", "Harbour bridge closes"),
    )
    .unwrap();
    // And a request the plugin makes no longer has an interaction.
    let interactions = cassette.join("interactions.toml");
    let text = std::fs::read_to_string(&interactions).unwrap();
    std::fs::write(
        &interactions,
        text.replace(
            "request.url = \"https://news.example.com/retired.xml\"",
            "request.url = \"https://news.example.com/elsewhere.xml\"",
        ),
    )
    .unwrap();

    let (ok, output) = plugin_test(&plugin("rss"), &cassette, &[]);
    assert!(!ok, "{output}");
    assert!(output.contains("5 passed, 2 failed"), "{output}");
    assert!(
        output.contains(
            "items[0].title: expected \"Harbour bridge reopens\", got \"Harbour bridge closes\""
        ),
        "{output}"
    );
    assert!(
        output.contains("no interaction matches GET https://news.example.com/retired.xml"),
        "{output}"
    );
    assert!(
        output.contains("never used: GET https://news.example.com/elsewhere.xml"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_cassette_replays_with_the_upstream_gone() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 2,
        items_per_feed: 3,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("recorded");
    std::fs::create_dir_all(&cassette).unwrap();
    let first = server.feed_url(0);
    let second = server.feed_url(1);
    std::fs::write(
        cassette.join("cases.toml"),
        format!(
            "[[allow]]\nscheme = \"http\"\nhost = \"127.0.0.1\"\nport = {port}\n\n\
             [[case]]\nname = \"first feed\"\ntarget = \"{first}\"\n\n\
             [[case]]\nname = \"first feed again\"\ntarget = \"{first}\"\nafter_previous = true\n\n\
             [[case]]\nname = \"second feed\"\ntarget = \"{second}\"\n",
            port = server.addr().port()
        ),
    )
    .unwrap();

    let wasm = plugin("rss");
    let record = {
        let (wasm, cassette) = (wasm.clone(), cassette.clone());
        tokio::task::spawn_blocking(move || plugin_test(&wasm, &cassette, &["--record"]))
            .await
            .unwrap()
    };
    assert!(record.0, "{}", record.1);
    assert!(record.1.contains("3 recorded, 0 failed"), "{}", record.1);
    assert_eq!(server.requests_for(0), 2);
    assert_eq!(server.requests_for(1), 1);
    let expected_ids = server.expected_item_ids(0);
    server.shutdown().await;

    let interactions = std::fs::read_to_string(cassette.join("interactions.toml")).unwrap();
    assert_eq!(
        interactions.matches("[[interaction]]").count(),
        3,
        "{interactions}"
    );
    assert!(interactions.contains("if-none-match"), "{interactions}");
    assert!(interactions.contains("status = 304"), "{interactions}");
    let first_result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cassette.join("expected/first-feed.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = first_result["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = expected_ids.iter().map(String::as_str).collect();
    let mut got = ids.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);

    // The upstream is gone: only the cassette answers now.
    let (ok, output) = tokio::task::spawn_blocking(move || plugin_test(&wasm, &cassette, &[]))
        .await
        .unwrap();
    assert!(ok, "{output}");
    assert!(output.contains("3 passed, 0 failed"), "{output}");
}

/// `tsunagi plugin new` for the other roles: each crate builds and passes its own cassette.
/// (The poller is the walk-through's, in `walkthrough.rs`.) The binary runs from a folder of
/// its own and the crates are made in an empty one, as for a user who only installed
/// tsunagi: the SDK is vendored into each crate and nothing names the checkout.
#[test]
fn scaffolded_handlers_and_searchers_build_and_pass_their_cassettes() {
    let dir = tempfile::tempdir().unwrap();
    let installed = tempfile::tempdir().unwrap();
    let binary = installed.path().join("tsunagi");
    std::fs::copy(env!("CARGO_BIN_EXE_tsunagi"), &binary).unwrap();
    // One target directory for both crates: the SDK's dependencies compile once.
    let target_dir = dir.path().join("target");
    let checkout = crate::common::workspace_root()
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    for role in ["handler", "searcher"] {
        let name = format!("my-{role}");
        let tsunagi = |args: &[&str]| {
            let output = Command::new(&binary)
                .args(args)
                .current_dir(dir.path())
                .env("CARGO_TARGET_DIR", &target_dir)
                .env_remove("TSUNAGI_SDK")
                .env("TSUNAGI_COMPILE_CACHE", crate::common::compile_cache())
                .output()
                .expect("tsunagi runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(output.status.success(), "tsunagi {args:?}:\n{text}");
            text
        };
        tsunagi(&["plugin", "new", &name, "--role", role]);
        let crate_dir = dir.path().join(&name);
        assert!(crate_dir.join("vendor/tsunagi-sdk/Cargo.toml").is_file());
        for file in files_under(&crate_dir) {
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            assert!(
                !text.contains(&checkout),
                "{} names the checkout",
                file.display()
            );
        }
        let built = tsunagi(&["plugin", "build", &name]);
        assert!(built.contains(&format!("role {role}")), "{built}");
        let tested = tsunagi(&["plugin", "test", &name]);
        assert!(tested.contains("2 passed, 0 failed"), "{tested}");
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A request that gets no answer while recording (nothing listens there) fails its case: the
/// recording could not replay it.
#[test]
fn recording_a_request_that_got_no_answer_fails_the_case() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("unreachable");
    std::fs::create_dir_all(&cassette).unwrap();
    std::fs::write(
        cassette.join("cases.toml"),
        format!(
            "[[allow]]\nscheme = \"http\"\nhost = \"127.0.0.1\"\nport = {closed_port}\n\n\
             [[case]]\nname = \"nobody home\"\ntarget = \"http://127.0.0.1:{closed_port}/feed\"\n"
        ),
    )
    .unwrap();
    let (ok, output) = plugin_test(&plugin("rss"), &cassette, &["--record"]);
    assert!(!ok, "{output}");
    assert!(output.contains("0 recorded, 1 failed"), "{output}");
    assert!(
        output.contains("not recorded, no answer came: http://127.0.0.1:"),
        "{output}"
    );
}
