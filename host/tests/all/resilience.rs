//! Resilience end to end, in real time on loopback: a shared budget keeps a rate-limited
//! upstream from ever answering 429 while using its allowed rate, and a breaker with a probe
//! spares a failing upstream, lets no user call through while open, closes when the probe sees
//! the upstream back, and loses no job.

use crate::common::TestHost;
use crate::common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi::resilience::Resilience;
use tsunagi_backends::breaker::BreakerState;
use tsunagi_fake_upstream::{ApiMode, ApiServer, ApiServerConfig};

async fn start_real_time_host(config: &tsunagi::config::Config) -> TestHost {
    let backend = open_backend(config).await;
    start_host_with_clock(config, backend, Arc::new(SystemClock), RunMode::Forever).await
}

fn connector(name: &str, port: u16, concurrency: usize, rule_extra: &str, extra: &str) -> String {
    format!(
        r#"
[connectors.{name}]
plugin = "{plugin}"
role = "poller"
concurrency = {concurrency}

[connectors.{name}.schedule]
min_interval = "1s"
max_interval = "2s"

[connectors.{name}.retry]
first_delay = "1s"

{extra}

[[connectors.{name}.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
{rule_extra}
"#,
        plugin = plugin("rss").display()
    )
}

/// Waits (checking every 20 ms) until the breaker is in `state`; returns when it was seen.
async fn breaker_reaches(
    resilience: &Resilience,
    breaker: &str,
    state: BreakerState,
    within: Duration,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if resilience.breaker_state(breaker) == Some(state) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "breaker {breaker} did not become {state} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_on_a_one_per_second_upstream_see_no_429_and_use_its_rate() {
    const RUN: Duration = Duration::from_secs(60);
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + "[budgets.upstream]\nrate = \"1/s\"\n"
        + &connector("rss", api.addr().port(), 50, "budget = \"upstream\"", "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let targets: Vec<String> = (0..50).map(|i| api.url(&format!("/limited/{i}"))).collect();
    backend
        .add_targets("rss", &targets, SystemClock.now_ms())
        .await
        .unwrap();
    drop(backend);

    let started = Instant::now();
    let host = start_real_time_host(&config).await;
    let offset = api.elapsed();
    tokio::time::sleep(RUN).await;
    let window = started.elapsed();
    let view = host.topology();
    host.shutdown().await;

    let stats = api.stats();
    assert_eq!(
        stats.limited_refused, 0,
        "the upstream never had to refuse: {stats:?}"
    );
    let in_window = api
        .accepted_times()
        .iter()
        .filter(|at| **at >= offset && **at <= offset + window)
        .count();
    // One request per whole second of the run, plus the one at its start.
    let allowed = window.as_secs() + 1;
    eprintln!(
        "rate-limited upstream: {in_window} of {allowed} allowed requests used in {window:?}, \
         {} refused",
        stats.limited_refused
    );
    assert!(
        in_window as f64 >= 0.95 * allowed as f64,
        "used {in_window} of {allowed} allowed requests ({stats:?})"
    );
    let counters = connector_stats(&view, "rss");
    assert_eq!(counters.polls_failed, 0, "{counters:?}");
    api.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_spares_a_failing_upstream_and_probes_close_it() {
    const PROBE_INTERVAL: Duration = Duration::from_secs(1);
    const FEEDS: u32 = 20;
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("admin_listen = \"127.0.0.1:0\"")
        + &format!(
            r#"
[budgets.api]
rate = "100/s"
burst = 10

[breakers.api]
window = "20 calls"
minimum_calls = 5
failure_rate = 50
[breakers.api.probe]
url = "{probe}"
interval = "{interval}s"
timeout = "500ms"
"#,
            probe = api.url("/health"),
            interval = PROBE_INTERVAL.as_secs()
        )
        + &connector(
            "rss",
            api.addr().port(),
            4,
            "budget = \"api\"\nbreaker = \"api\"",
            "[connectors.rss.limits]\ncall_timeout = \"3s\"\nfirst_byte_timeout = \"1s\"\nrequest_timeout = \"2s\"",
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let targets: Vec<String> = (0..FEEDS)
        .map(|i| api.url(&format!("/flaky/{i}")))
        .collect();
    backend
        .add_targets("rss", &targets, SystemClock.now_ms())
        .await
        .unwrap();

    let host = start_real_time_host(&config).await;
    let view = host.topology();
    let resilience = view.resilience().clone();

    // Healthy: every feed is fetched once.
    wait_until(Duration::from_secs(20), || async {
        api.stats().flaky_requests >= u64::from(FEEDS)
    })
    .await;

    // 30 seconds of trouble: 500s, then no answer at all.
    let trouble_began = Instant::now();
    let before_trouble = api.stats().flaky_requests;
    api.set_mode(ApiMode::Failing);
    breaker_reaches(
        &resilience,
        "api",
        BreakerState::Open,
        Duration::from_secs(10),
    )
    .await;
    let at_open = resilience.status().await.breakers["api"].clone();
    assert!(
        api.stats().flaky_requests - before_trouble <= 20,
        "opened within its 20-call window"
    );
    let half = Duration::from_secs(15).saturating_sub(trouble_began.elapsed());
    tokio::time::sleep(half).await;
    api.set_mode(ApiMode::Hanging);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(trouble_began.elapsed())).await;

    // While open, no user call went out: the breaker permitted nothing more, and the upstream
    // saw exactly the calls permitted before it opened.
    let during = resilience.status().await.breakers["api"].clone();
    assert_eq!(during.state, BreakerState::Open);
    assert_eq!(
        during.permitted_total, at_open.permitted_total,
        "{during:?}"
    );
    let seen_by_upstream = api.stats().flaky_requests;
    assert!(
        during.rejected_total > 0,
        "calls kept coming and were held back"
    );
    assert!(
        api.stats().probes >= 20,
        "probes ran throughout: {:?}",
        api.stats()
    );

    // Recovery: a probe closes the breaker within one probe interval (plus its timeout).
    let recovered = Instant::now();
    api.set_mode(ApiMode::Healthy);
    let closed = breaker_reaches(
        &resilience,
        "api",
        BreakerState::Closed,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        closed - recovered <= PROBE_INTERVAL + Duration::from_millis(700),
        "closed {:?} after recovery",
        closed - recovered
    );
    eprintln!(
        "breaker: opened after {} failing calls, held back {} calls while open, {} probes, \
         closed {:?} after recovery",
        at_open.permitted_total.saturating_sub(before_trouble),
        during.rejected_total,
        api.stats().probes,
        closed - recovered
    );
    assert_eq!(
        seen_by_upstream, at_open.permitted_total,
        "every request the upstream saw was permitted before the breaker opened"
    );

    // Queued jobs resume and none is lost: every feed is polled successfully after recovery.
    let recovered_at =
        SystemClock.now_ms() - i64::try_from(recovered.elapsed().as_millis()).unwrap();
    let backend = view.backend().clone();
    wait_until(Duration::from_secs(20), || {
        let backend = backend.clone();
        let targets = targets.clone();
        async move {
            for target in &targets {
                let row = backend.get_target("rss", target).await.unwrap().unwrap();
                if row.error_count != 0 || row.last_polled_at.unwrap_or(0) < recovered_at {
                    return false;
                }
            }
            true
        }
    })
    .await;

    // /status shows the breaker and the budget.
    let addr = host.admin_addr().unwrap();
    let status = fetch_status(addr).await;
    assert_eq!(status["breakers"]["api"]["state"], "closed", "{status}");
    assert!(
        status["breakers"]["api"]["rejected_total"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(status["breakers"]["api"]["last_probe"][1], true, "{status}");
    assert_eq!(status["budgets"]["api"]["fill"]["burst"], 10, "{status}");
    assert!(
        status["connectors"][0]["polls_deferred"].as_u64().unwrap() > 0,
        "{status}"
    );
    host.shutdown().await;
    api.shutdown();
}

/// Checks `condition` every 20 ms until it holds; fails the test after `within`.
async fn wait_until<F, Fut>(within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 200 whose body the plugin calls bad (`bad-response`: here, feeds that do not parse)
/// counts against the breaker like a 500 would; once open, the rest of the round is deferred,
/// not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_plugin_calls_bad_counts_against_the_breaker() {
    use tsunagi::clock::ManualClock;
    use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};
    let server = FeedServer::start(FeedServerConfig {
        feeds: 6,
        malformed: (0..6).collect(),
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + "[breakers.feeds]\nwindow = \"10 calls\"\nminimum_calls = 2\nfailure_rate = 50\nopen_wait = \"10m\"\n"
        + &rss_connector(server.addr().port(), "").replace("concurrency = 32", "concurrency = 1")
        + "breaker = \"feeds\"\n";
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    backend
        .add_targets("rss", &server.feed_urls(), clock.now_ms())
        .await
        .unwrap();
    let view = run_until_idle(&config, backend.clone(), &clock).await;

    let breaker = view.resilience().status().await.breakers["feeds"].clone();
    assert_eq!(breaker.state, BreakerState::Open, "{breaker:?}");
    assert_eq!(
        (breaker.failed_total, breaker.permitted_total),
        (2, 2),
        "{breaker:?}"
    );
    let counters = connector_stats(&view, "rss");
    assert_eq!(
        (
            counters.polls_ok,
            counters.polls_failed,
            counters.polls_deferred
        ),
        (0, 2, 4),
        "{counters:?}"
    );
    assert_eq!(
        server.stats().requests,
        2,
        "deferred calls never reached the server"
    );
    server.shutdown().await;
}
