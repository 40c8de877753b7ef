//! The `tsunagi` binary as operators run it: several processes on one database, SIGKILL and
//! restart, graceful SIGTERM, and the one-shot commands.

use crate::common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tsunagi::backends::{Backend, ItemQuery};
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");

fn tsunagi(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("TSUNAGI_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn spawn_host(config: &Path) -> Child {
    tsunagi(&["run", "--config", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tsunagi run")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("child is running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits (bounded) until every target of `connector` has been polled at least once.
async fn all_polled(backend: &Arc<dyn Backend>, connector: &str, expected: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let targets = backend
                .list_targets(Some(connector), 0, 100_000)
                .await
                .unwrap();
            let polled = targets
                .iter()
                .filter(|t| t.last_polled_at.is_some())
                .count();
            if targets.len() == expected && polled == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "every target of {connector} was polled in time"
    );
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("process exits in time")
        .expect("wait")
}

async fn jobs_done(admin_port: u16) -> u64 {
    let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
    status["connectors"][0]["jobs_done"].as_u64().unwrap()
}

async fn wait_for_admin(admin_port: u16) {
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while reqwest::get(format!("http://127.0.0.1:{admin_port}/healthz"))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "admin port {admin_port} came up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_processes_on_one_sqlite_file_fetch_every_target_exactly_once() {
    let feeds = 1500;
    let server = FeedServer::start(FeedServerConfig {
        feeds,
        slow: (0..feeds).collect(),
        slow_delay: Duration::from_millis(20),
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let mut configs = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let sub = dir.path().join(format!("host{index}"));
        std::fs::create_dir_all(&sub).unwrap();
        let text = host_section(&format!(
            "admin_listen = \"127.0.0.1:{port}\"\nclaim_batch = 16"
        ))
        .replace("database = \"test.db\"", "database = \"../shared.db\"")
            + &rss_connector(server.addr().port(), "")
                .replace("concurrency = 32", "concurrency = 8");
        configs.push(write_config(&sub, &text));
    }
    let backend = open_backend(&configs[0]).await;
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();

    let mut hosts: Vec<Child> = configs.iter().map(|c| spawn_host(&c.source_path)).collect();
    for port in ports {
        wait_for_admin(port).await;
    }
    all_polled(&backend, "rss", feeds as usize).await;
    let done = [jobs_done(ports[0]).await, jobs_done(ports[1]).await];
    for host in &hosts {
        signal(host, "TERM");
    }
    for host in &mut hosts {
        assert!(wait_exit(host).await.success(), "host exits 0 on SIGTERM");
    }

    for id in 0..feeds {
        assert_eq!(server.requests_for(id), 1, "feed {id} fetched exactly once");
    }
    assert_eq!(done[0] + done[1], u64::from(feeds), "{done:?}");
    assert!(done[0] > 0 && done[1] > 0, "both hosts worked: {done:?}");
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * 10
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_crawl_and_restarted_loses_no_job_and_stores_no_item_twice() {
    let feeds = 600;
    let server = FeedServer::start(FeedServerConfig {
        feeds,
        slow: (0..feeds).collect(),
        slow_delay: Duration::from_millis(25),
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("claim_lease = \"8s\"\nclaim_batch = 8")
        + &rss_connector(server.addr().port(), "sinks = [\"archive\"]")
            .replace("concurrency = 32", "concurrency = 8")
            .replace("call_timeout = \"20s\"", "call_timeout = \"3s\"")
        + "\n[sinks.archive]\nkind = \"jsonl\"\npath = \"items.jsonl\"\n";
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();

    let mut first = spawn_host(&config.source_path);
    let partway = tokio::time::timeout(Duration::from_secs(120), async {
        while backend.count_items(Some("rss")).await.unwrap() < 1000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(partway.is_ok(), "the first host made progress");
    signal(&first, "KILL");
    let status = wait_exit(&mut first).await;
    assert!(!status.success(), "SIGKILL ended the first host");
    let stored_at_kill = backend.count_items(Some("rss")).await.unwrap();
    assert!(stored_at_kill < u64::from(feeds) * 10, "killed mid-crawl");

    let mut second = spawn_host(&config.source_path);
    all_polled(&backend, "rss", feeds as usize).await;
    // Wait until the sink has caught up with every stored item before stopping.
    let delivered = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let text = std::fs::read_to_string(dir.path().join("items.jsonl")).unwrap_or_default();
            let ids: BTreeSet<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect();
            if ids.len() == (feeds * 10) as usize {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(delivered.is_ok(), "every stored item reached the sink");
    signal(&second, "TERM");
    assert!(wait_exit(&mut second).await.success());

    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * 10
    );
    let all = backend
        .list_items(&ItemQuery {
            connector: Some("rss".into()),
            limit: 100_000,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    let unique: BTreeSet<&str> = all.iter().map(|s| s.item.id.as_str()).collect();
    assert_eq!(unique.len(), all.len(), "no item stored twice");
    for id in 0..feeds {
        let fetches = server.requests_for(id);
        assert!(
            (1..=2).contains(&fetches),
            "feed {id} fetched {fetches} times: once, or twice if it was in flight at the kill"
        );
    }
    for id in (0..feeds).step_by(29) {
        for expected in rss_item_ids(&server, id) {
            assert!(
                unique.contains(expected.as_str()),
                "feed {id}: {expected} stored"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_calls_finish_then_exits_0() {
    let feeds = 12;
    let server = FeedServer::start(FeedServerConfig {
        feeds,
        slow: (0..feeds).collect(),
        slow_delay: Duration::from_millis(1500),
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(host_section("") + &rss_connector(server.addr().port(), "")),
    );
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &server.feed_urls(), 0)
        .await
        .unwrap();

    let mut host = spawn_host(&config.source_path);
    let all_in_flight = tokio::time::timeout(Duration::from_secs(60), async {
        while server.stats().requests < u64::from(feeds) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(all_in_flight.is_ok(), "every feed was requested");
    signal(&host, "TERM");
    assert!(wait_exit(&mut host).await.success(), "exit 0 after SIGTERM");
    // The calls that were in flight finished and were committed before the exit.
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        u64::from(feeds) * 10
    );

    let output = tsunagi(&[
        "items",
        "--connector",
        "rss",
        "--config",
        &config.source_path.display().to_string(),
    ])
    .output()
    .await
    .unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), (feeds * 10) as usize);
    assert!(
        lines
            .iter()
            .all(|l| l["connector"] == "rss" && l["id"].is_string())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_config_errors_with_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = host_section("") + &rss_connector(8080, "");
    let config = write_config(dir.path(), &good);
    let path = config.source_path.display().to_string();
    let output = tsunagi(&["check", "--config", &path])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ok    rss:"), "{stdout}");

    let typo = good.replace("min_interval", "min_intervall");
    std::fs::write(&path, &typo).unwrap();
    let line = typo
        .lines()
        .position(|l| l.starts_with("min_intervall"))
        .unwrap()
        + 1;
    let output = tsunagi(&["check", "--config", &path])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "{path}:{line}:1: connectors.rss.schedule.min_intervall: unknown field"
        )),
        "{stderr}"
    );

    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let wrong_plugin = good.replace(
        &plugin("rss").display().to_string(),
        &not_wasm.display().to_string(),
    );
    std::fs::write(&path, &wrong_plugin).unwrap();
    let output = tsunagi(&["check", "--config", &path])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("connectors.rss.plugin") && stderr.contains("not a WebAssembly component"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_import_keeps_good_lines_and_names_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &(host_section("") + &rss_connector(8080, "")));
    let path = config.source_path.display().to_string();
    let mut text = String::new();
    for i in 0..210_000 {
        text.push_str(&format!("https://feeds{}.example.org/{i}.xml\n", i % 97));
        if i == 1000 {
            text.push_str("not a url\n");
        }
        if i == 2000 {
            text.push_str("ftp://files.example.org/feed\n");
        }
    }
    let list = dir.path().join("feeds.txt");
    std::fs::write(&list, &text).unwrap();
    let output = tsunagi(&[
        "targets",
        "import",
        "rss",
        &list.display().to_string(),
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "bad lines give exit 2: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("210000 added, 0 already present, 2 bad line(s)"),
        "{stdout}"
    );
    assert!(stderr.contains("feeds.txt:1002: \"not a url\""), "{stderr}");
    assert!(
        stderr.contains("feeds.txt:2003: \"ftp://files.example.org/feed\""),
        "{stderr}"
    );

    // Importing again adds nothing.
    let output = tsunagi(&[
        "targets",
        "import",
        "rss",
        &list.display().to_string(),
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 added, 210000 already present"));

    let output = tsunagi(&[
        "targets",
        "remove",
        "rss",
        "https://feeds0.example.org/0.xml",
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    assert!(output.status.success());
    let backend = open_backend(&config).await;
    assert_eq!(backend.count_targets("rss").await.unwrap(), 209_999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_prints_one_targets_items_as_json_lines() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 8,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(host_section("") + &rss_connector(server.addr().port(), "")),
    );
    let path = config.source_path.display().to_string();
    for id in 0..8 {
        let output = tsunagi(&["poll", "rss", &server.feed_url(id), "--config", &path])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let ids: BTreeSet<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let expected: BTreeSet<String> = rss_item_ids(&server, id).into_iter().collect();
        assert_eq!(
            ids,
            expected,
            "feed {id} ({:?})",
            FeedServer::feed_format(id)
        );
    }
    // Nothing was stored: poll is a dry run.
    assert!(!dir.path().join("test.db").exists());

    let output = tsunagi(&[
        "poll",
        "rss",
        "http://127.0.0.1:9/elsewhere",
        "--config",
        &path,
    ])
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("egress refused by connector 'rss'"),
        "{stderr}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_checks_from_the_repository_root() {
    // As the README has it: relative config path, relative database and compile cache.
    let output = tsunagi(&["check", "--config", "config/tsunagi.toml"])
        .current_dir(workspace_root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ok    rss:"), "{stdout}");
    assert!(stdout.contains("0 error(s)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rollback_and_sighup_swap_plugins_of_a_running_process() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 5,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin_file = dir.path().join("tagged.wasm");
    let install = |build: &str| install(&plugin(build), &plugin_file);
    install("hostile_a");
    let admin_port = free_port();
    let text = host_section(&format!("admin_listen = \"127.0.0.1:{admin_port}\""))
        + &format!(
            r#"
[connectors.tagged]
plugin = "tagged.wasm"
role = "poller"
concurrency = 2
[connectors.tagged.config]
mode = "tagged"
[[connectors.tagged.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {}
"#,
            server.addr().port()
        );
    let config = write_config(dir.path(), &text);
    let config_arg = config.source_path.display().to_string();
    let mut host = spawn_host(&config.source_path);
    wait_for_admin(admin_port).await;
    let serving = || async {
        let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
        status["connectors"][0]["plugin"]["sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let build_a = serving().await;

    install("hostile_b");
    let reload = tsunagi(&["reload", "tagged", "--config", &config_arg])
        .output()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&reload.stdout).unwrap();
    assert!(reload.status.success(), "{report}");
    assert_eq!(report["connectors"][0]["outcome"], "swapped", "{report}");
    let build_b = serving().await;
    assert_ne!(build_a, build_b);

    let rollback = tsunagi(&["rollback", "tagged", "--config", &config_arg])
        .output()
        .await
        .unwrap();
    assert!(rollback.status.success());
    assert_eq!(serving().await, build_a, "rolled back to build a");

    std::fs::write(&plugin_file, b"not a plugin").unwrap();
    let refused = tsunagi(&["reload", "--config", &config_arg])
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "a refused reload exits 1");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(serving().await, build_a, "the old version keeps serving");

    // SIGHUP reloads too.
    install("hostile_b");
    signal(&host, "HUP");
    let swapped = tokio::time::timeout(Duration::from_secs(30), async {
        while serving().await != build_b {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(swapped.is_ok(), "SIGHUP swapped build b in");

    signal(&host, "TERM");
    assert!(wait_exit(&mut host).await.success());
    server.shutdown().await;
}
