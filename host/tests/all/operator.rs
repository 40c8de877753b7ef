//! The operator's views of a running host: `/metrics` read back by a Prometheus text-format
//! parser while a crawl runs and its upstream fails and recovers (the breaker says why it
//! opened and when it next lets a call through), `tsunagi status` printing the tables, and
//! `tsunagi top` driven in tmux; against no host, both name the address they tried.

use crate::common::*;
use prometheus_parse::{Sample, Scrape, Value};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tsunagi::clock::{Clock, SystemClock};
use tsunagi_fake_upstream::ApiMode;

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");
const FEEDS: u32 = 20;

/// `GET /metrics`, parsed.
async fn scrape(admin: SocketAddr) -> Scrape {
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        reqwest::get(format!("http://{admin}/metrics")),
    )
    .await
    .expect("/metrics answers within 30 s")
    .expect("admin answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|line| Ok(line.to_string()));
    Scrape::parse(lines).unwrap_or_else(|error| panic!("not Prometheus text ({error}):\n{text}"))
}

/// The samples of `name` whose labels include every pair of `labels`.
fn samples<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .collect()
}

/// The one value of a counter or gauge sample.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(scrape, name, labels);
    assert_eq!(found.len(), 1, "one {name}{labels:?}, found {found:?}");
    match &found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name} is not a single number: {other:?}"),
    }
}

/// Scrapes until `done` holds for a scrape (bounded); returns that scrape.
async fn scrape_until(admin: SocketAddr, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let found = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let scraped = scrape(admin).await;
            if done(&scraped) {
                return scraped;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_as_the_crawl_runs_and_its_upstream_fails() {
    let crawl = BreakerCrawl::start(FEEDS, &[], "", &[]).await;
    let (api, config, admin) = (&crawl.api, &crawl.config, crawl.admin());
    let rss = [("connector", "rss")];

    // Healthy: the counters move with the crawl.
    let first = scrape_until(admin, "every feed polled once", |s| {
        value(
            s,
            "tsunagi_polls_total",
            &[("connector", "rss"), ("outcome", "ok")],
        ) >= f64::from(FEEDS)
    })
    .await;
    assert_eq!(value(&first, "tsunagi_targets", &rss), f64::from(FEEDS));
    assert!(
        value(
            &first,
            "tsunagi_upstream_responses_total",
            &[("code", "200")]
        ) >= f64::from(FEEDS)
    );
    let requests = samples(&first, "tsunagi_upstream_request_duration_seconds", &rss);
    let Value::Histogram(buckets) = &requests[0].value else {
        panic!("request durations are a histogram: {requests:?}")
    };
    let all = buckets
        .iter()
        .find(|b| b.less_than == f64::INFINITY)
        .expect("+Inf bucket");
    assert!(all.count >= f64::from(FEEDS), "{buckets:?}");
    assert_eq!(
        all.count,
        value(
            &first,
            "tsunagi_upstream_request_duration_seconds_count",
            &rss
        ),
        "+Inf holds every observation"
    );
    assert!(
        buckets
            .windows(2)
            .all(|pair| pair[0].less_than < pair[1].less_than && pair[0].count <= pair[1].count),
        "buckets are cumulative: {buckets:?}"
    );
    assert_eq!(
        samples(&first, "tsunagi_plugin_info", &rss).len(),
        1,
        "the serving plugin as an info metric"
    );
    assert_eq!(
        value(
            &first,
            "tsunagi_breaker_state",
            &[("breaker", "api"), ("state", "closed")]
        ),
        1.0
    );
    assert!(
        value(
            &first,
            "tsunagi_instances",
            &[("connector", "rss"), ("state", "idle")]
        ) >= 1.0
    );
    for sample in &first.samples {
        for (key, label) in sample.labels.iter() {
            assert!(
                !label.contains("://") && !label.contains("/flaky"),
                "{}: label {key}={label} names a URL",
                sample.metric
            );
        }
    }
    let later = scrape_until(admin, "the counters to move on", |s| {
        value(
            s,
            "tsunagi_polls_total",
            &[("connector", "rss"), ("outcome", "ok")],
        ) > value(
            &first,
            "tsunagi_polls_total",
            &[("connector", "rss"), ("outcome", "ok")],
        )
    })
    .await;
    assert!(
        value(
            &later,
            "tsunagi_upstream_responses_total",
            &[("code", "200")]
        ) > value(
            &first,
            "tsunagi_upstream_responses_total",
            &[("code", "200")]
        )
    );

    // Failing: the breaker opens, and both /status and /metrics say why and what comes next.
    api.set_mode(ApiMode::Failing);
    let open = scrape_until(admin, "the breaker to open", |s| {
        value(
            s,
            "tsunagi_breaker_state",
            &[("breaker", "api"), ("state", "open")],
        ) == 1.0
    })
    .await;
    assert!(
        value(
            &open,
            "tsunagi_upstream_responses_total",
            &[("code", "500")]
        ) >= 1.0
    );
    assert!(
        value(
            &open,
            "tsunagi_polls_total",
            &[("connector", "rss"), ("outcome", "failed")]
        ) >= 1.0
    );
    let tripped = samples(
        &open,
        "tsunagi_breaker_last_trip_timestamp_seconds",
        &[("breaker", "api")],
    );
    assert_eq!(tripped.len(), 1, "{tripped:?}");
    assert_eq!(tripped[0].labels.get("cause"), Some("failure_rate"));
    assert!(
        value(
            &open,
            "tsunagi_breaker_last_trip_failure_ratio",
            &[("breaker", "api")]
        ) >= 0.5
    );
    let status = fetch_status(admin).await;
    let breaker = &status["breakers"]["api"];
    let trip = &breaker["last_trip"];
    assert_eq!(trip["cause"], "failure_rate", "{breaker}");
    assert!(trip["calls"].as_u64().unwrap() >= 5, "{trip}");
    assert!(trip["failure_rate"].as_f64().unwrap() >= 50.0, "{trip}");
    assert_eq!(trip["failure_rate_threshold"], 50.0);
    assert_eq!(
        breaker["window_calls"], 0,
        "the window is cleared on opening; the trip keeps it"
    );
    let next_probe = breaker["next_probe_at"]
        .as_i64()
        .expect("when the next probe is due");
    let last_probe = breaker["last_probe"][0].as_i64().unwrap();
    assert_eq!(
        next_probe - last_probe,
        1000,
        "the probe interval after the last probe"
    );

    // The status table says the same in words.
    let printed = Command::new(BIN)
        .args(["status", "--host", &admin.to_string(), "-c"])
        .arg(&config.source_path)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert!(
        table.contains("CONNECTOR") && table.contains("rss"),
        "{table}"
    );
    assert!(
        table.contains("calls failed (") && table.contains("≥ 50%)"),
        "{table}"
    );
    assert!(table.contains("probe "), "when the probe comes: {table}");
    assert!(table.contains("500×"), "upstream answers by code: {table}");

    // Recovered: a probe closes it, and the transitions are counted.
    api.set_mode(ApiMode::Healthy);
    let closed = scrape_until(admin, "the breaker to close", |s| {
        value(
            s,
            "tsunagi_breaker_state",
            &[("breaker", "api"), ("state", "closed")],
        ) == 1.0
    })
    .await;
    assert!(
        value(
            &closed,
            "tsunagi_breaker_transitions_total",
            &[("breaker", "api")]
        ) >= 2.0
    );
    assert_eq!(
        samples(
            &closed,
            "tsunagi_breaker_last_trip_timestamp_seconds",
            &[("breaker", "api")]
        )
        .len(),
        1,
        "still says when and why it last opened"
    );
    assert!(
        value(
            &closed,
            "tsunagi_breaker_calls_total",
            &[("breaker", "api"), ("result", "rejected")]
        ) >= 1.0
    );
    crawl.api.shutdown();
}

/// Runs `tsunagi top` in a detached tmux session of 200×50 and returns the session's name.
fn tmux_top(name: &str, admin: &str, config: &std::path::Path, exit_file: &std::path::Path) {
    let command = format!(
        "{BIN} top --host {admin} -c {config}; echo $? > {exit}",
        config = config.display(),
        exit = exit_file.display()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "200",
            "-y",
            "50",
            &command,
        ])
        .status()
        .expect("tmux runs (scripts/test installs it)");
    assert!(started.success());
}

fn tmux_screen(name: &str) -> String {
    let output = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_the_live_tables_in_a_terminal_and_quits_on_q() {
    let crawl = BreakerCrawl::start(FEEDS, &[], "", &[]).await;
    let admin = crawl.admin().to_string();
    let session = format!("tsunagi-top-{}", std::process::id());
    let exit_file = crawl.dir.path().join("top.exit");
    tmux_top(&session, &admin, &crawl.config.source_path, &exit_file);
    let drawn = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let screen = tmux_screen(&session);
            if screen.contains("CONNECTOR")
                && screen.contains("rss")
                && screen.contains("CALLS/S")
                && screen.contains("breakers")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        drawn.is_ok(),
        "top drew its tables:\n{}",
        tmux_screen(&session)
    );
    // Live: the title carries the host's time, which moves with every refresh.
    let title = |screen: &str| {
        screen
            .lines()
            .find(|line| line.contains("up since"))
            .map(str::to_string)
    };
    let first = title(&tmux_screen(&session)).expect("the host's title line");
    eventually("top to refresh", || {
        title(&tmux_screen(&session)).is_some_and(|now| now != first)
    })
    .await;
    let screen = tmux_screen(&session);
    assert!(screen.contains("q quits"), "{screen}");
    Command::new("tmux")
        .args(["send-keys", "-t", &session, "q"])
        .status()
        .unwrap();
    eventually("top to quit", || exit_file.exists()).await;
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .stderr(std::process::Stdio::null())
        .status();
    crawl.api.shutdown();
}

#[test]
fn status_and_top_against_no_host_name_the_address_they_tried() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &host_section(""));
    let address = format!("127.0.0.1:{}", free_port());
    for command in ["status", "top"] {
        let output = Command::new(BIN)
            .args([command, "--host", &address, "-c"])
            .arg(&config.source_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(5),
            "no host answered: {command}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("cannot reach the host at http://{address}/status")),
            "{command}: {stderr}"
        );
    }
    // Without --host and without host.admin_listen, the config is named.
    let output = Command::new(BIN)
        .args(["status", "-c"])
        .arg(&config.source_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("host.admin_listen is not set"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_saying_whose_poll_it_was() {
    use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};
    const TOKEN: &str = "an-admin-token-that-must-never-be-logged";
    let server = FeedServer::start(FeedServerConfig {
        feeds: 3,
        failing: vec![1],
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let text = host_section(&format!(
        "admin_listen = \"{admin}\"\nadmin_token = {{ file = \"admin.token\" }}"
    )) + &rss_connector(server.addr().port(), "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &server.feed_urls(), SystemClock.now_ms())
        .await
        .unwrap();
    drop(backend);
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "run", "-c"])
        .arg(&config.source_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let receive = lines_of(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let failed_poll = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = receive.recv_timeout(left) else {
            let _ = child.kill();
            panic!("no failed poll logged within 90 s; lines: {seen:#?}");
        };
        let object: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not one JSON object ({error}): {line}"));
        assert!(!line.contains(TOKEN), "the admin token was logged: {line}");
        seen.push(line);
        if object["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("poll failed"))
        {
            break object;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(failed_poll["level"], "INFO", "{failed_poll}");
    assert_eq!(failed_poll["connector"], "rss", "{failed_poll}");
    assert_eq!(failed_poll["target"], server.feed_url(1), "{failed_poll}");
    let span = &failed_poll["spans"][0];
    assert_eq!(span["name"], "poll", "{failed_poll}");
    assert_eq!(span["connector"], "rss", "{failed_poll}");
    assert!(span["target_id"].as_i64().is_some(), "{failed_poll}");
    assert!(
        seen.iter().any(|line| line.contains("admin listening")),
        "start-up lines are JSON too: {seen:#?}"
    );
    server.shutdown().await;
}

#[test]
fn exit_codes_tell_a_bad_config_from_a_bad_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[host]\nidle_poll = \"soon\"\n").unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(BIN).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["check", "-c", &bad.display().to_string()]);
    assert_eq!(code, Some(3), "an invalid config: {stderr}");
    assert!(stderr.contains("bad.toml:2:"), "{stderr}");
    let missing = dir.path().join("missing.toml").display().to_string();
    let (code, stderr) = run(&["check", "-c", &missing]);
    assert_eq!(code, Some(3), "a missing config: {stderr}");
    let (code, stderr) = run(&["check", "--no-such-flag"]);
    assert_eq!(code, Some(2), "a bad command line: {stderr}");
    let (code, help) = {
        let output = Command::new(BIN).arg("--help").output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0));
    assert!(
        help.contains("Exit codes:") && help.contains("5  no host answered"),
        "{help}"
    );
}
