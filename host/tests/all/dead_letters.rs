//! The dead-letter state end to end: a target the plugin calls permanently broken is given up
//! at once, one that keeps failing after `retry.max_failures`; `tsunagi dlq` lists them with
//! their attempt history, retries one (it is polled again) and drops the other.

use crate::common::*;
use std::process::Command;
use std::time::Duration;
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi_fake_upstream::{ApiMode, ApiServer, ApiServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");

fn dlq(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .arg("dlq")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run tsunagi dlq");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_up_targets_are_listed_retried_and_dropped() {
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    api.set_mode(ApiMode::Failing);
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &rss_connector(api.addr().port(), "").replace(
            "first_delay = \"1m\"",
            "first_delay = \"1m\"\nmax_failures = 2",
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let gone = api.url("/gone/old-feed");
    let flaky = api.url("/flaky/busy-feed");
    backend
        .add_targets("rss", &[gone.clone(), flaky.clone()], clock.now_ms())
        .await
        .unwrap();

    // Round 1: 410 Gone is permanent (dead at once); the 500 is the first of two allowed.
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((stats.polls_ok, stats.polls_failed), (0, 2), "{stats:?}");
    let flaky_row = backend.get_target("rss", &flaky).await.unwrap().unwrap();
    assert_eq!((flaky_row.dead_at, flaky_row.error_count), (None, 1));
    // Round 2, when the flaky target is due again: its second failure gives it up.
    clock.advance(Duration::from_secs(3600));
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(stats.polls_failed, 1, "{stats:?}");

    let config_path = dir.path().join("tsunagi.toml");
    let (ok, listed, summary) = dlq(&config_path, &["list"]);
    assert!(ok, "{summary}");
    assert!(
        summary.contains("2 dead target(s), 0 dead job(s)"),
        "{summary}"
    );
    let entries: Vec<serde_json::Value> = listed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let entry_for = |url: &str| {
        entries
            .iter()
            .find(|e| e["target"] == url)
            .unwrap_or_else(|| panic!("{url} not listed: {listed}"))
            .clone()
    };
    let gone_entry = entry_for(&gone);
    assert_eq!(gone_entry["attempts"], 1);
    assert!(
        gone_entry["last_error"].as_str().unwrap().contains("410"),
        "{gone_entry}"
    );
    let flaky_entry = entry_for(&flaky);
    assert_eq!(flaky_entry["attempts"], 2);
    let history = flaky_entry["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{flaky_entry}");
    assert!(
        history
            .iter()
            .all(|a| a["error"].as_str().unwrap().contains("500"))
    );

    // Retry the flaky one once the upstream is back; drop the gone one.
    api.set_mode(ApiMode::Healthy);
    let flaky_id = flaky_entry["entry"].as_str().unwrap();
    let (ok, _, summary) = dlq(&config_path, &["retry", flaky_id]);
    assert!(ok && summary.contains("retried 1 entry"), "{summary}");
    let (ok, _, summary) = dlq(&config_path, &["retry", flaky_id]);
    assert!(!ok, "retrying twice is an error");
    assert!(
        summary.contains("not in the dead-letter state") && summary.contains(flaky_id),
        "{summary}"
    );
    // Dropping everything asks first; with no terminal to ask on, only --yes does it.
    let (ok, _, summary) = dlq(&config_path, &["drop", "--all", "--connector", "rss"]);
    assert!(!ok && summary.contains("pass --yes"), "{summary}");
    assert!(backend.get_target("rss", &gone).await.unwrap().is_some());
    let (ok, _, summary) = dlq(
        &config_path,
        &["drop", "--all", "--yes", "--connector", "rss"],
    );
    assert!(ok && summary.contains("dropped 1 entry"), "{summary}");
    assert!(backend.get_target("rss", &gone).await.unwrap().is_none());
    let (ok, _, summary) = dlq(&config_path, &["retry", "feed:1"]);
    assert!(!ok && summary.contains("target:12 or job:7"), "{summary}");

    // The revived target is due now (by the wall clock) and is polled successfully.
    clock.set(SystemClock.now_ms() + 1000);
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((stats.polls_ok, stats.polls_failed), (1, 0), "{stats:?}");
    let revived = backend.get_target("rss", &flaky).await.unwrap().unwrap();
    assert_eq!((revived.dead_at, revived.error_count), (None, 0));
    assert!(revived.history.is_empty());
    let (_, listed, _) = dlq(&config_path, &["list"]);
    assert!(listed.is_empty(), "{listed}");
    api.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_host_running_dlq_works_through_its_admin_api() {
    use std::sync::Arc;
    use tsunagi::pipeline::RunMode;
    const TOKEN: &str = "dead-letters-admin-token-0123456789";
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let host_extra =
        format!("admin_listen = \"{admin}\"\nadmin_token = {{ file = \"admin.token\" }}");
    let text = host_section(&host_extra) + &rss_connector(api.addr().port(), "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let gone = api.url("/gone/old-feed");
    backend
        .add_targets("rss", std::slice::from_ref(&gone), SystemClock.now_ms())
        .await
        .unwrap();
    let _host = start_host_with_clock(
        &config,
        backend.clone(),
        Arc::new(SystemClock),
        RunMode::Forever,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while backend
        .get_target("rss", &gone)
        .await
        .unwrap()
        .unwrap()
        .dead_at
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the gone feed was given up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The CLI's config names the host but a database it cannot open: only the host can answer.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("admin.token"), TOKEN).unwrap();
    let cli_config = elsewhere.path().join("tsunagi.toml");
    std::fs::write(
        &cli_config,
        format!("[host]\ndatabase = \"no/such/dir/test.db\"\n{host_extra}\n"),
    )
    .unwrap();
    let (ok, listed, summary) = dlq(&cli_config, &["list"]);
    assert!(ok, "{summary}");
    assert!(
        summary.contains("1 dead target(s), 0 dead job(s)"),
        "{summary}"
    );
    let entry: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(entry["target"], gone);
    let (ok, _, summary) = dlq(&cli_config, &["drop", "--all", "--yes"]);
    assert!(ok && summary.contains("dropped 1 entry"), "{summary}");
    assert!(backend.get_target("rss", &gone).await.unwrap().is_none());
    // A wrong token is refused by the host, saying so.
    std::fs::write(
        elsewhere.path().join("admin.token"),
        "a-wrong-token-that-is-long-enough",
    )
    .unwrap();
    let (ok, _, summary) = dlq(&cli_config, &["list"]);
    assert!(!ok && summary.contains("401"), "{summary}");
    api.shutdown();
}
