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

/// Fifty callers share a one-per-minute budget in front of an upstream that allows one request
/// per minute and answers 429 past that. Host and upstream read the same manual clock, which
/// the test moves one minute at a time once the host has settled: every minute's one allowed
/// request is used, and none is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_on_a_one_per_minute_upstream_see_no_429_and_use_its_rate() {
    use tsunagi::clock::ManualClock;
    use tsunagi_fake_upstream::ApiClock;
    const MINUTE: Duration = Duration::from_secs(60);
    const MINUTES: u64 = 40;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let t0 = clock.now_ms();
    let upstream_clock = clock.clone();
    let api = ApiServer::start(ApiServerConfig {
        limit_interval: MINUTE,
        limit_tolerance: Duration::from_millis(100),
        clock: Some(ApiClock(Arc::new(move || {
            Duration::from_millis(u64::try_from(upstream_clock.now_ms() - t0).unwrap())
        }))),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + "[budgets.upstream]\nrate = \"1/min\"\n"
        + &connector("rss", api.addr().port(), 50, "budget = \"upstream\"", "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let targets: Vec<String> = (0..50).map(|i| api.url(&format!("/limited/{i}"))).collect();
    backend
        .add_targets("rss", &targets, clock.now_ms())
        .await
        .unwrap();

    let host = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let view = host.topology();
    for minute in 0..=MINUTES {
        // Settled: this minute's request went out, nothing is running, nothing is due.
        let settled = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let stats = api.stats();
                let counters = connector_stats(&view, "rss");
                let due = backend.count_due("rss", clock.now_ms()).await.unwrap();
                if stats.limited_accepted + stats.limited_refused > minute
                    && counters.in_flight == 0
                    && due == 0
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            settled.is_ok(),
            "minute {minute}: the host did not settle: {:?} {:?}",
            api.stats(),
            connector_stats(&view, "rss")
        );
        let stats = api.stats();
        assert_eq!(
            (stats.limited_accepted, stats.limited_refused),
            (minute + 1, 0),
            "minute {minute}: one request a minute, none refused"
        );
        if minute < MINUTES {
            clock.advance(MINUTE);
        }
    }
    host.shutdown().await;

    let stats = api.stats();
    assert_eq!(
        stats.limited_refused, 0,
        "the upstream never had to refuse: {stats:?}"
    );
    // Every allowed slot was used, at its time.
    let expected: Vec<Duration> = (0..=MINUTES as u32).map(|m| MINUTE * m).collect();
    assert_eq!(api.accepted_times(), expected);
    let counters = connector_stats(&view, "rss");
    assert_eq!(counters.polls_failed, 0, "{counters:?}");
    assert_eq!(counters.polls_ok, MINUTES + 1, "{counters:?}");
    assert!(
        counters.polls_deferred >= 49 * MINUTES,
        "the other callers were held back, not failed: {counters:?}"
    );
    api.shutdown();
}

/// An upstream pushing back moves the budget its allow rule names: a 429 or 503 with
/// `Retry-After`, or `x-rate-limit-remaining: 0` with `x-rate-limit-reset`. The next request
/// on that budget (another target's) is not sent but deferred to exactly that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_and_rate_limit_reset_push_the_budget_back() {
    use tsunagi::backends::Backend;
    use tsunagi::clock::ManualClock;
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let port = api.addr().port();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let now = clock.now_ms();
    let reset_unix = now / 1000 + 900;
    // (connector and its budget, the target that pushes back, when the budget may go again)
    let cases = [
        ("c429", api.url("/throttled/429/120/a"), now + 120_000),
        ("c503", api.url("/throttled/503/300/b"), now + 300_000),
        (
            "creset",
            api.url(&format!("/exhausted/{reset_unix}/c")),
            reset_unix * 1000,
        ),
    ];
    let mut text = host_section("admin_listen = \"127.0.0.1:0\"");
    for (name, _, _) in &cases {
        text += &format!("[budgets.{name}]\nrate = \"100/s\"\n");
        text += &connector(name, port, 1, &format!("budget = \"{name}\""), "");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &text);
    let backend: Arc<dyn Backend> = open_backend(&config).await;
    for (name, pusher, _) in &cases {
        // The pusher is due first; with one slot per connector, the victim runs after it.
        backend
            .add_targets(name, std::slice::from_ref(pusher), now - 1000)
            .await
            .unwrap();
        backend
            .add_targets(name, &[api.url(&format!("/flaky/victim-{name}"))], now)
            .await
            .unwrap();
    }
    let view = run_until_idle(&config, backend.clone(), &clock).await;

    let status = view.resilience().status().await;
    for (name, pusher, until) in &cases {
        let victim_path = format!("/flaky/victim-{name}");
        assert_eq!(
            api.requests_to(&victim_path),
            0,
            "{name}: the victim was not sent"
        );
        let victim = backend
            .get_target(name, &api.url(&victim_path))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                victim.next_run_at,
                victim.error_count,
                victim.last_polled_at
            ),
            (*until, 0, None),
            "{name}: deferred to the upstream's time, not failed: {victim:?}"
        );
        let counters = connector_stats(&view, name);
        assert_eq!(counters.polls_deferred, 1, "{name}: {counters:?}");
        let fill = status.budgets[*name].fill.clone().unwrap();
        assert_eq!(fill.next_free_at, *until, "{name}: {fill:?}");
        let pushed = backend.get_target(name, pusher).await.unwrap().unwrap();
        assert!(pushed.last_polled_at.is_some(), "{name}: {pushed:?}");
    }
    // A 429/503 is the pusher's failure (and its Retry-After its own next run); a 200 that
    // says the quota is spent is a success.
    for (name, pusher, until) in &cases[..2] {
        let pushed = backend.get_target(name, pusher).await.unwrap().unwrap();
        assert_eq!(pushed.error_count, 1, "{name}: {pushed:?}");
        assert!(pushed.next_run_at >= *until, "{name}: {pushed:?}");
    }
    let reset = backend
        .get_target("creset", &cases[2].1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reset.error_count, 0, "{reset:?}");
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
    wait_until(Duration::from_secs(60), || async {
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
        Duration::from_secs(60),
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

    // Recovery: a probe that sees the upstream back closes the breaker (awaited with a generous
    // bound; what matters is the order: open until the upstream recovered, then a probe, then
    // closed, with no user call in between).
    assert_eq!(
        resilience.breaker_state("api"),
        Some(BreakerState::Open),
        "still open just before the upstream recovers"
    );
    let recovered = Instant::now();
    let recovered_ms = SystemClock.now_ms();
    api.set_mode(ApiMode::Healthy);
    let closed = breaker_reaches(
        &resilience,
        "api",
        BreakerState::Closed,
        Duration::from_secs(60),
    )
    .await;
    // (A probe left hanging by the outage may be the one that sees the upstream back.)
    let at_close = resilience.status().await.breakers["api"].clone();
    let (probed_at, probe_ok) = at_close.last_probe.expect("a probe ran");
    assert!(
        probe_ok && probed_at >= recovered_ms,
        "a successful probe after the recovery closed it: {at_close:?}"
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
    wait_until(Duration::from_secs(60), || {
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

/// One busy host (50 feeds on 127.0.0.2) and forty others (10 feeds each on 127.1.0.x, same
/// port), a per-host budget of 10 requests a second, targets interleaved: the busy host never
/// sees more than its budget, and its queue does not hold the workers the other hosts' feeds
/// need — they are all fetched while most of the busy host's queue still waits. (The figures at
/// full size, 5,000 and 50,000 feeds at 100/s, are `tsunagi bench hosts`'s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_host_is_held_to_its_budget_and_its_queue_does_not_delay_other_hosts() {
    use std::net::{Ipv4Addr, SocketAddr};
    use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};
    let feeds = |feeds, record_arrivals| FeedServerConfig {
        feeds,
        items_per_feed: 2,
        target_feed_bytes: 1_000,
        record_arrivals,
        ..FeedServerConfig::default()
    };
    let busy = FeedServer::start_on(
        feeds(50, true),
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)),
    )
    .await
    .expect("busy host");
    let port = busy.addr().port();
    let mut others = Vec::new();
    for n in 1..=40 {
        let address = SocketAddr::from((Ipv4Addr::new(127, 1, 0, n), port));
        others.push(
            FeedServer::start_on(feeds(10, false), address)
                .await
                .expect("host"),
        );
    }
    let mut urls = Vec::new();
    let mut busy_urls = busy.feed_urls().into_iter();
    for (i, url) in others.iter().flat_map(FeedServer::feed_urls).enumerate() {
        urls.push(url);
        if i % 8 == 0 {
            urls.extend(busy_urls.next());
        }
    }
    urls.extend(busy_urls);

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(host_section("")
            + "[budgets.hosts]\nrate = \"10/s\"\nper = \"host\"\n"
            + &format!(
                r#"
[connectors.rss]
plugin = "{plugin}"
role = "poller"
concurrency = 32

[connectors.rss.schedule]
min_interval = "1h"

[[connectors.rss.egress.allow]]
scheme = "http"
host = "*"
port = {port}
allow_internal = true
budget = "hosts"
"#,
                plugin = plugin("rss").display()
            )),
    );
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &urls, SystemClock.now_ms())
        .await
        .unwrap();
    let host =
        start_host_with_clock(&config, backend, Arc::new(SystemClock), RunMode::Forever).await;
    let others_fetched = || others.iter().map(|s| s.stats().requests).sum::<u64>();
    let reached = tokio::time::timeout(Duration::from_secs(120), async {
        while others_fetched() < 400 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "other hosts' feeds fetched: {}",
        others_fetched()
    );
    let busy_when_others_done = busy.stats().requests;
    let reached = tokio::time::timeout(Duration::from_secs(120), async {
        while busy.stats().requests < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "busy host's feeds fetched: {}",
        busy.stats().requests
    );
    let view = host.topology();
    host.shutdown().await;

    assert!(
        busy_when_others_done <= 35,
        "the other hosts' 400 feeds finished only after the busy host had served \
         {busy_when_others_done} of its 50: its queue held the workers"
    );
    // Sends 100 ms apart put ten in a second and the eleventh at its very end: a millisecond
    // of rounding or loopback jitter brings that one inside, never a twelfth.
    let most = busy.most_requests_within(Duration::from_secs(1));
    assert!(
        most <= 11,
        "the busy host saw {most} requests within one second"
    );
    let stats = connector_stats(&view, "rss");
    assert_eq!((stats.polls_ok, stats.polls_failed), (450, 0), "{stats:?}");
    assert!(
        stats.polls_deferred >= 30,
        "queued on held slots: {stats:?}"
    );
    for server in others {
        server.shutdown().await;
    }
    busy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_host_in_flight_cap_holds_however_many_workers_are_free() {
    use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};
    // Every feed answers after 150 ms: sixteen workers would have sixteen requests out at once.
    let server = FeedServer::start(FeedServerConfig {
        feeds: 24,
        items_per_feed: 2,
        target_feed_bytes: 1_000,
        slow: (0..24).collect(),
        slow_delay: Duration::from_millis(150),
        ..FeedServerConfig::default()
    })
    .await
    .expect("feeds");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(host_section("")
            + "[budgets.hosts]\nrate = \"1000/s\"\nper = \"host\"\nin_flight = 3\n"
            + &rss_connector(server.addr().port(), "")
                .replace("concurrency = 32", "concurrency = 16")
            + "budget = \"hosts\"\n"),
    );
    let backend = open_backend(&config).await;
    backend
        .add_targets("rss", &server.feed_urls(), SystemClock.now_ms())
        .await
        .unwrap();
    let host =
        start_host_with_clock(&config, backend, Arc::new(SystemClock), RunMode::Forever).await;
    let view = host.topology();
    let reached = tokio::time::timeout(Duration::from_secs(120), async {
        while connector_stats(&view, "rss").polls_ok < 24 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let stats = connector_stats(&view, "rss");
    host.shutdown().await;
    assert!(reached.is_ok(), "every feed polled: {stats:?}");
    let most = server.stats().most_in_flight;
    assert_eq!(
        most, 3,
        "the host saw {most} requests at once; the cap is 3"
    );
    assert!(
        stats.polls_deferred > 0,
        "calls past the cap were deferred: {stats:?}"
    );
    assert_eq!(stats.polls_failed, 0, "{stats:?}");
    server.shutdown().await;
}
