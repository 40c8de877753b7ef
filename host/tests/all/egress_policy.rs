//! A refusal by the host's own egress policy is a configuration problem, not an upstream
//! failure: the target is parked (no error count, no backoff, no dead letter, no breaker
//! count), shown as refused by policy in `/status` and `targets list` with the real reason,
//! and released by a reload that changes the connector's egress rules. A plugin request that
//! carries credentials in its URL never leaves.

use crate::common::*;
use std::time::Duration;
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi::stats::StatsSnapshot;
use tsunagi::topology::{Outcome, Topology};
use tsunagi_backends::breaker::BreakerState;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

/// The hostile plugin in `http` mode: it GETs its target and fails with the host's error.
/// Any failure that counted would dead-letter the target at once (`max_failures = 1`), and
/// any failure the breaker counted would open it (`minimum_calls = 1`).
fn fetch_config(port: u16, allow_internal: bool) -> String {
    host_section("admin_listen = \"127.0.0.1:0\"")
        + &format!(
            r#"
[breakers.feeds]
window = "10 calls"
failure_rate = 1
minimum_calls = 1
open_wait = "1h"

[connectors.fetch]
plugin = "{plugin}"
role = "poller"
concurrency = 2

[connectors.fetch.config]
mode = "http"

[connectors.fetch.retry]
first_delay = "1m"
max_failures = 1

[[connectors.fetch.egress.allow]]
scheme = "http"
host = "*"
port = {port}
breaker = "feeds"
allow_internal = {allow_internal}
"#,
            plugin = plugin("hostile").display()
        )
}

/// Waits (bounded) until the connector's counters satisfy `done`.
async fn until_stats(view: &Topology, what: &str, done: impl Fn(&StatsSnapshot) -> bool) {
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        while !done(&connector_stats(view, "fetch")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{what}: {:?}",
        connector_stats(view, "fetch")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_refusal_parks_the_target_until_a_reload_changes_the_rules() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 1,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let port = server.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fetch_config(port, false));
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    // Refused by the URL check (an address no rule names), and after DNS (a name the wildcard
    // matches, with a breaker permit already taken, that resolves to loopback).
    let by_address = server.feed_url(0);
    let by_name = by_address.replace("127.0.0.1", "localhost");
    backend
        .add_targets(
            "fetch",
            &[by_address.clone(), by_name.clone()],
            clock.now_ms(),
        )
        .await
        .unwrap();

    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let view = running.topology();
    until_stats(&view, "both calls refused", |s| s.polls_refused == 2).await;
    let stats = connector_stats(&view, "fetch");
    assert_eq!((stats.polls_ok, stats.polls_failed), (0, 0), "{stats:?}");
    assert_eq!(server.requests_for(0), 0, "nothing left the host");

    let parked = |url: String| {
        let backend = backend.clone();
        async move { backend.get_target("fetch", &url).await.unwrap().unwrap() }
    };
    for url in [&by_address, &by_name] {
        let target = parked(url.clone()).await;
        assert_eq!(
            (target.error_count, target.dead_at, target.history.len()),
            (0, None, 0),
            "{url}: not a failure: {target:?}"
        );
        assert_eq!(target.next_run_at, i64::MAX, "{url}: parked");
    }
    let address_reason = parked(by_address.clone()).await.refused_reason.unwrap();
    assert!(
        address_reason.contains(&format!(
            "egress refused by connector 'fetch' allowlist: {by_address}: 127.0.0.1 is a \
             loopback address (RFC 1122), and no rule names it"
        )) && address_reason.contains("or set `allow_internal = true`"),
        "{address_reason}"
    );
    let name_reason = parked(by_name.clone()).await.refused_reason.unwrap();
    assert!(
        name_reason.contains("localhost resolves to")
            && name_reason.contains("a loopback address")
            && name_reason.contains("allow_internal = true"),
        "{name_reason}"
    );
    assert!(
        backend
            .list_dead_targets(Some("fetch"), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let far = clock.now_ms() + 48 * 3600 * 1000;
    assert_eq!(
        backend.count_due("fetch", far).await.unwrap(),
        0,
        "no retry schedule"
    );
    let breaker = &view.resilience().status().await.breakers["feeds"];
    assert_eq!(
        (breaker.state, breaker.failed_total, breaker.window_calls),
        (BreakerState::Closed, 0, 0),
        "the breaker heard nothing of the refusal after DNS: {breaker:?}"
    );

    // /status and `targets list` show them as refused by policy, with the reason.
    let status = fetch_status(running.admin_addr().unwrap()).await;
    let fetch = &status["connectors"][0];
    assert_eq!(fetch["targets_refused_by_policy"], 2, "{fetch}");
    assert_eq!(fetch["jobs_failed"], 0);
    assert_eq!(fetch["polls_refused"], 2);
    let shown: Vec<&str> = fetch["refused_by_policy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap())
        .collect();
    assert!(shown.contains(&address_reason.as_str()), "{fetch}");
    let config_path = dir.path().join("tsunagi.toml");
    let listed = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .args(["targets", "list", "fetch", "--config"])
            .arg(&config_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["state"], "refused_by_policy", "{line}");
        assert!(
            line["refused_by_policy"]
                .as_str()
                .is_some_and(|reason| reason.starts_with("egress refused by connector 'fetch'")),
            "{line}"
        );
        assert_eq!(line["next_run_at"], serde_json::Value::Null, "{line}");
    }

    // A reload that leaves the rules as they are leaves the targets parked.
    let report = view.reloader().reload(None).await;
    assert_eq!(report.connectors[0].outcome, Outcome::Unchanged);
    assert_eq!(backend.count_refused("fetch").await.unwrap(), 2);

    // The fix the refusal names: the rule opts in. The reload releases both, and they poll.
    write_config(dir.path(), &fetch_config(port, true));
    let report = view.reloader().reload(None).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (
            report.connectors[0].outcome.clone(),
            report.connectors[0].released_refused
        ),
        (Outcome::Swapped, 2),
        "{report:?}"
    );
    until_stats(&view, "both polled after the reload", |s| s.polls_ok == 2).await;
    assert_eq!(server.requests_for(0), 2);
    for url in [&by_address, &by_name] {
        let target = parked(url.clone()).await;
        assert_eq!(
            (target.refused_at, target.refused_reason, target.error_count),
            (None, None, 0),
            "{url}"
        );
    }
    assert_eq!(backend.count_refused("fetch").await.unwrap(), 0);
    running.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_request_with_credentials_in_its_url_never_leaves() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 1,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let port = server.addr().port();
    let dir = tempfile::tempdir().unwrap();
    // A rule that names the address: only the credentials stand in the way.
    let text = fetch_config(port, false).replace("host = \"*\"", "host = \"127.0.0.1\"");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let with_userinfo = server
        .feed_url(0)
        .replace("http://", "http://alice:hunter2@");
    backend
        .add_targets(
            "fetch",
            std::slice::from_ref(&with_userinfo),
            clock.now_ms(),
        )
        .await
        .unwrap();
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(
        (stats.polls_ok, stats.polls_failed, stats.polls_refused),
        (0, 0, 1),
        "{stats:?}"
    );
    assert_eq!(server.requests_for(0), 0, "no request reached the upstream");
    let target = backend
        .get_target("fetch", &with_userinfo)
        .await
        .unwrap()
        .unwrap();
    let reason = target.refused_reason.unwrap_or_default();
    assert!(
        reason.contains("carries credentials in its authority")
            && reason.contains("http://REDACTED@127.0.0.1:")
            && !reason.contains("hunter2"),
        "{reason}"
    );
    server.shutdown().await;
}
