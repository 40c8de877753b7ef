//! Hostile plugins are contained: a plugin that loops forever, grows memory without end or
//! traps costs one failed job and a log line; the host and other connectors carry on. And a
//! plugin reaches nothing its allowlist does not name.

use crate::common::*;
use std::time::Duration;
use tsunagi::backends::StateScope;
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi::runtime::TargetCall;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

fn hostile(name: &str, mode: &str, extra: &str) -> String {
    format!(
        r#"
[connectors.{name}]
plugin = "{plugin}"
role = "poller"
concurrency = 2
[connectors.{name}.config]
mode = "{mode}"
[connectors.{name}.limits]
call_timeout = "2s"
memory = "32 MiB"
{extra}
"#,
        plugin = plugin("hostile").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_ballooning_and_trapping_plugins_cost_one_failed_job_each() {
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &hostile("spin", "spin", "")
        + &hostile("balloon", "balloon", "")
        + &hostile("trap", "trap", "")
        + &hostile("calm", "ok", "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    for connector in ["spin", "balloon", "trap", "calm"] {
        backend
            .add_targets(
                connector,
                &["http://127.0.0.1:9/a".to_string()],
                clock.now_ms(),
            )
            .await
            .unwrap();
    }

    for round in 1..=2 {
        let mut running = start_host(&config, backend.clone(), &clock, RunMode::UntilIdle).await;
        running.until_idle().await;
        let view = running.topology();
        running.shutdown().await;
        let stats = |name: &str| connector_stats(&view, name);
        for name in ["spin", "balloon", "trap"] {
            assert_eq!(
                (stats(name).polls_failed, stats(name).polls_ok),
                (1, 0),
                "round {round}: {name} failed exactly once"
            );
        }
        assert_eq!(
            stats("calm").polls_ok,
            1,
            "round {round}: the calm connector carried on"
        );

        let error = |name: &str| {
            let backend = backend.clone();
            let name = name.to_string();
            async move {
                backend
                    .get_target(&name, "http://127.0.0.1:9/a")
                    .await
                    .unwrap()
                    .unwrap()
                    .last_error
                    .unwrap_or_default()
            }
        };
        let spin = error("spin").await;
        assert!(spin.contains("time limit"), "spin: {spin}");
        let balloon = error("balloon").await;
        assert!(
            balloon.contains("memory limit of 33554432 bytes"),
            "balloon: {balloon}"
        );
        let trap = error("trap").await;
        assert!(trap.contains("trapped"), "trap: {trap}");
        clock.advance(Duration::from_secs(48 * 3600));
    }

    // The calm plugin's target state survived both calls: it counts its calls in state.
    let target = backend
        .get_target("calm", "http://127.0.0.1:9/a")
        .await
        .unwrap()
        .unwrap();
    let calls = backend
        .get_state("calm", StateScope::Target(target.id), "calls")
        .await
        .unwrap();
    assert_eq!(calls.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_the_allowlist_are_refused_and_never_leave() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 1,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    // A listener the allowlist does not name: it must never see a connection.
    let bystander = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bystander.set_nonblocking(true).unwrap();
    let bystander_port = bystander.local_addr().unwrap().port();

    let dir = tempfile::tempdir().unwrap();
    let allow = format!(
        "[[connectors.fetch.egress.allow]]\nscheme = \"http\"\nhost = \"127.0.0.1\"\nport = {}\n",
        server.addr().port()
    );
    let text = host_section("")
        + &hostile("fetch", "http", "").replace(
            "\n[connectors.fetch.config]",
            &format!("\n{allow}[connectors.fetch.config]"),
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let allowed = server.feed_url(0);
    let refused = [
        "http://127.0.0.1:6379/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://127.0.0.1:{bystander_port}/"),
        "https://example.com/".to_string(),
    ];
    let mut targets = vec![allowed.clone()];
    targets.extend(refused.iter().cloned());
    backend
        .add_targets("fetch", &targets, clock.now_ms())
        .await
        .unwrap();

    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(
        (stats.polls_ok, stats.polls_failed, stats.polls_refused),
        (1, 0, 4),
        "refusals are the host's policy, not failures: {stats:?}"
    );
    for url in &refused {
        let target = backend.get_target("fetch", url).await.unwrap().unwrap();
        let error = target.refused_reason.unwrap_or_default();
        assert!(
            error.contains("egress refused by connector 'fetch' allowlist")
                && error.contains(&format!("http://127.0.0.1:{}", server.addr().port())),
            "{url}: {error}"
        );
        assert_eq!((target.error_count, target.last_error), (0, None), "{url}");
    }
    assert!(
        matches!(bystander.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection reached the bystander"
    );
    assert_eq!(server.requests_for(0), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_to_internal_addresses_are_refused_after_dns() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 1,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let bystander = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bystander.set_nonblocking(true).unwrap();
    let bystander_port = bystander.local_addr().unwrap().port();
    let server_port = server.addr().port();

    // `fetch` names `localhost` and a wildcard, but neither rule says the address is meant to
    // be internal; `trusted` opts in for the feed server.
    let fetch_allow = format!(
        r#"[[connectors.fetch.egress.allow]]
scheme = "http"
host = "localhost"
port = {bystander_port}
[[connectors.fetch.egress.allow]]
scheme = "http"
host = "*"
port = {bystander_port}
"#
    );
    let trusted_allow = format!(
        r#"[[connectors.trusted.egress.allow]]
scheme = "http"
host = "localhost"
port = {server_port}
allow_internal = true
"#
    );
    let with_rules = |name: &str, rules: &str| {
        hostile(name, "http", "").replace(
            &format!("\n[connectors.{name}.config]"),
            &format!("\n{rules}[connectors.{name}.config]"),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &with_rules("fetch", &fetch_allow)
        + &with_rules("trusted", &trusted_allow);
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let opted_in = server.feed_url(0).replace("127.0.0.1", "localhost");
    let by_name = format!("http://localhost:{bystander_port}/");
    let by_address = format!("http://127.0.0.1:{bystander_port}/");
    backend
        .add_targets(
            "fetch",
            &[by_name.clone(), by_address.clone()],
            clock.now_ms(),
        )
        .await
        .unwrap();
    backend
        .add_targets("trusted", std::slice::from_ref(&opted_in), clock.now_ms())
        .await
        .unwrap();

    // `fetch` sorts first, so these are its counts.
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(
        (stats.polls_ok, stats.polls_failed, stats.polls_refused),
        (0, 0, 2),
        "{stats:?}"
    );
    let error_of = |target: &str| {
        let backend = backend.clone();
        let target = target.to_string();
        async move {
            let row = backend.get_target("fetch", &target).await.unwrap().unwrap();
            row.refused_reason.unwrap_or_default()
        }
    };
    let name_error = error_of(&by_name).await;
    assert!(
        name_error.contains("a loopback address") && name_error.contains("allow_internal"),
        "{name_error}"
    );
    let address_error = error_of(&by_address).await;
    assert!(
        address_error.contains("is a loopback address"),
        "{address_error}"
    );
    assert!(
        matches!(bystander.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection reached the bystander"
    );
    let trusted = backend
        .get_target("trusted", &opted_in)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trusted.last_error, None);
    assert_eq!(
        server.requests_for(0),
        1,
        "the opted-in rule reached the server"
    );
    server.shutdown().await;
}

/// One executor thread for everything: the host, its pipelines and this test. A spinning guest
/// that did not yield at every epoch tick would hold that thread, and nothing below could run
/// until its time limit trapped it.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_plugin_does_not_stall_the_other_connectors() {
    const CALM: u64 = 6;
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("claim_lease = \"300s\"")
        .replace("shutdown_grace = \"10s\"", "shutdown_grace = \"200ms\"")
        + &hostile("spin", "spin", "").replace("call_timeout = \"2s\"", "call_timeout = \"180s\"")
        + &hostile("calm", "ok", "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    backend
        .add_targets(
            "spin",
            &["http://127.0.0.1:9/spin".to_string()],
            clock.now_ms(),
        )
        .await
        .unwrap();

    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let view = running.topology();
    let stats = |name: &str| connector_stats(&view, name);
    // Work of the test's own, on the same thread: it only counts if the thread is free.
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            loop {
                every.tick().await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let spinning = tokio::time::timeout(Duration::from_secs(30), async {
        while stats("spin").in_flight < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(spinning.is_ok(), "the spin started: {:?}", stats("spin"));
    let ticks_at_spin = ticks.load(std::sync::atomic::Ordering::Relaxed);

    // Only now is there calm work: all of it happens while the guest spins. (Slowly: while the
    // only thread keeps getting a runnable spinner back, tokio polls its I/O driver only every
    // few dozen scheduler ticks, each a 10 ms slice of the spin.)
    let calm_targets: Vec<String> = (0..CALM)
        .map(|i| format!("http://127.0.0.1:9/{i}"))
        .collect();
    backend
        .add_targets("calm", &calm_targets, clock.now_ms())
        .await
        .unwrap();
    let calm_started = std::time::Instant::now();
    let calm_done = tokio::time::timeout(Duration::from_secs(150), async {
        while stats("calm").polls_ok < CALM {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(calm_done.is_ok(), "calm finished: {:?}", stats("calm"));
    eprintln!(
        "{CALM} calm polls beside a spinning guest on one thread took {:?}",
        calm_started.elapsed()
    );
    let spin = stats("spin");
    assert_eq!(
        (spin.in_flight, spin.polls_failed, spin.polls_ok),
        (1, 0, 0),
        "the spin is still running, so all of the calm work ran beside it: {spin:?}"
    );
    let ticks_during = ticks.load(std::sync::atomic::Ordering::Relaxed) - ticks_at_spin;
    assert!(
        ticks_during > 0,
        "the test's own timer ran while the guest spun"
    );
    ticker.abort();
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_pool_survives_traps_timeouts_and_failures_between_good_calls() {
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &hostile("mixed", "ok", "").replace("concurrency = 2", "concurrency = 1");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let targets: Vec<String> = ["trap", "ok", "sleep", "ok", "fail", "ok"]
        .iter()
        .enumerate()
        .map(|(i, mode)| format!("http://127.0.0.1:9/{i}#{mode}"))
        .collect();
    backend
        .add_targets("mixed", &targets, clock.now_ms())
        .await
        .unwrap();

    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((stats.polls_ok, stats.polls_failed), (3, 3), "{stats:?}");
    let target = |i: usize| {
        let backend = backend.clone();
        let url = targets[i].clone();
        async move { backend.get_target("mixed", &url).await.unwrap().unwrap() }
    };
    let error = |t: tsunagi::backends::Target| t.last_error.unwrap_or_default();
    assert!(error(target(0).await).contains("trapped"));
    assert!(
        error(target(2).await).contains("time limit of 2s"),
        "the wall-clock timeout stopped a plugin blocked in the host"
    );
    assert!(error(target(4).await).contains("transient error"));
    for i in [1, 3, 5] {
        let t = target(i).await;
        assert_eq!(t.error_count, 0);
        let calls = backend
            .get_state("mixed", StateScope::Target(t.id), "calls")
            .await
            .unwrap();
        assert_eq!(calls.as_deref(), Some("1"), "target {i}");
    }
    let failed = target(4).await;
    let calls = backend
        .get_state("mixed", StateScope::Target(failed.id), "calls")
        .await
        .unwrap();
    assert_eq!(
        calls, None,
        "a failed call's state writes are not committed"
    );
}

/// A response whose body is refused (over `response_size`) still tells the host its status and
/// `Retry-After`: the exchange record keeps the head, so budgets and the scheduler hear a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_keeps_the_response_head() {
    use tsunagi_fake_upstream::{ApiServer, ApiServerConfig};
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tsunagi.toml");
    std::fs::write(
        &config,
        format!(
            "{host}\n[connectors.rss]\nplugin = \"{plugin}\"\nrole = \"poller\"\n\n\
             [connectors.rss.limits]\nresponse_size = \"16 KiB\"\n\n\
             [[connectors.rss.egress.allow]]\nscheme = \"http\"\nhost = \"127.0.0.1\"\nport = {port}\n",
            host = host_section(""),
            plugin = plugin("rss").display(),
            port = api.addr().port()
        ),
    )
    .unwrap();
    let url = api.url("/overloaded/feed");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .args(["poll", "rss", &url, "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let exchange = stderr
        .lines()
        .find(|line| line.contains("/overloaded/feed") && !line.starts_with("error"))
        .unwrap_or_else(|| panic!("no exchange line:\n{stderr}"));
    assert!(
        exchange.starts_with("503 ") && exchange.contains("16384-byte limit"),
        "{exchange}"
    );

    // The head's Retry-After: 120 takes effect in a running host: the target's next run waits
    // for it, and the budget its allow rule names gives the next request (another target's)
    // no slot before then.
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + "[budgets.api]\nrate = \"100/s\"\n"
        + &format!(
            "\n[connectors.rss]\nplugin = \"{plugin}\"\nrole = \"poller\"\nconcurrency = 1\n\n\
             [connectors.rss.retry]\nfirst_delay = \"1m\"\n\n\
             [connectors.rss.limits]\nresponse_size = \"16 KiB\"\n\n\
             [[connectors.rss.egress.allow]]\nscheme = \"http\"\nhost = \"127.0.0.1\"\nport = {port}\nbudget = \"api\"\n",
            plugin = plugin("rss").display(),
            port = api.addr().port()
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let now = clock.now_ms();
    let overloaded = api.url("/overloaded/feed");
    let next = api.url("/flaky/next");
    backend
        .add_targets("rss", std::slice::from_ref(&overloaded), now - 1000)
        .await
        .unwrap();
    backend
        .add_targets("rss", std::slice::from_ref(&next), now)
        .await
        .unwrap();
    let view = run_until_idle(&config, backend.clone(), &clock).await;
    let refused = backend
        .get_target("rss", &overloaded)
        .await
        .unwrap()
        .unwrap();
    let error = refused.last_error.clone().unwrap_or_default();
    assert!(error.contains("16384-byte limit"), "{error}");
    assert!(
        refused.next_run_at >= now + 120_000,
        "the next run waits for Retry-After (not the 1m first retry): {refused:?}"
    );
    let deferred = backend.get_target("rss", &next).await.unwrap().unwrap();
    assert_eq!(
        (deferred.next_run_at, deferred.error_count),
        (now + 120_000, 0),
        "the budget's next slot is the Retry-After's: {deferred:?}"
    );
    assert_eq!(api.requests_to("/flaky/next"), 0, "held back, never sent");
    assert_eq!(
        api.requests_to("/overloaded/feed"),
        2,
        "the poll command's and the host's"
    );
    let counters = connector_stats(&view, "rss");
    assert_eq!(
        (counters.polls_failed, counters.polls_deferred),
        (1, 1),
        "{counters:?}"
    );
    let budget = view.resilience().status().await.budgets["api"]
        .fill
        .clone()
        .unwrap();
    assert_eq!(budget.next_free_at, now + 120_000, "{budget:?}");
    api.shutdown();
}

// ---- Host memory bounded against a hostile plugin: each bound, hit by the hostile plugin. ----

/// A hostile connector with extra config values and limits, allowed to reach `port`.
fn bounded(name: &str, mode: &str, config: &str, limits: &str, port: u16) -> String {
    format!(
        r#"
[connectors.{name}]
plugin = "{plugin}"
role = "poller"
concurrency = 4
[connectors.{name}.config]
mode = "{mode}"
{config}
[connectors.{name}.limits]
call_timeout = "10s"
memory = "32 MiB"
{limits}
[[connectors.{name}.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
        plugin = plugin("hostile").display()
    )
}

/// The last error of `connector`'s only target `url`.
async fn last_error(
    backend: &std::sync::Arc<dyn tsunagi::backends::Backend>,
    connector: &str,
    url: &str,
) -> String {
    let target = backend.get_target(connector, url).await.unwrap();
    target
        .unwrap_or_else(|| panic!("{connector} has no target {url}"))
        .last_error
        .unwrap_or_default()
}

/// The host reads a plugin's request body under `request_size` and stops there: an oversized
/// body is refused naming the limit and never reaches the upstream; one that fits arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_its_cap_is_refused_while_read_and_never_sent() {
    use tsunagi_fake_upstream::{ApiServer, ApiServerConfig};
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let port = api.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &bounded(
            "big",
            "post",
            "body-bytes = \"2097152\"",
            "request_size = \"1 MiB\"",
            port,
        )
        + &bounded(
            "fits",
            "post",
            "body-bytes = \"262144\"",
            "request_size = \"1 MiB\"",
            port,
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let (big, fits) = (api.url("/bytes/10/big"), api.url("/bytes/10/fits"));
    backend
        .add_targets("big", std::slice::from_ref(&big), clock.now_ms())
        .await
        .unwrap();
    backend
        .add_targets("fits", std::slice::from_ref(&fits), clock.now_ms())
        .await
        .unwrap();
    let view = run_until_idle(&config, backend.clone(), &clock).await;
    let error = last_error(&backend, "big", &big).await;
    assert!(
        error.contains(
            "connector 'big': request body larger than 1048576 bytes (limits.request_size)"
        ),
        "{error}"
    );
    assert_eq!(api.requests_to("/bytes/10/big"), 0, "never sent");
    assert_eq!(connector_stats(&view, "fits").polls_ok, 1);
    assert_eq!(
        api.body_bytes_to("/bytes/10/fits"),
        262_144,
        "arrived whole"
    );
    api.shutdown();
}

/// A call may have `requests_in_flight` requests in flight: the next one is refused at once,
/// naming the limit, and never sent. Four at once is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_in_one_call_stop_at_their_cap() {
    use tsunagi_fake_upstream::{ApiServer, ApiServerConfig};
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let port = api.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &bounded(
            "six",
            "fanout",
            "fanout = \"6\"",
            "requests_in_flight = 4",
            port,
        )
        + &bounded(
            "four",
            "fanout",
            "fanout = \"4\"",
            "requests_in_flight = 4",
            port,
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let (six, four) = (api.url("/bytes/1000/six"), api.url("/bytes/1000/four"));
    backend
        .add_targets("six", std::slice::from_ref(&six), clock.now_ms())
        .await
        .unwrap();
    backend
        .add_targets("four", std::slice::from_ref(&four), clock.now_ms())
        .await
        .unwrap();
    let view = run_until_idle(&config, backend.clone(), &clock).await;
    let error = last_error(&backend, "six", &six).await;
    assert!(
        error.contains("connector 'six': the call already has 4 requests in flight")
            && error.contains("(limits.requests_in_flight)"),
        "{error}"
    );
    assert_eq!(
        api.requests_to("/bytes/1000/six"),
        4,
        "the fifth never left"
    );
    assert_eq!(connector_stats(&view, "four").polls_ok, 1);
    assert_eq!(api.requests_to("/bytes/1000/four"), 4);
    api.shutdown();
}

/// All calls of a connector together may have `connector_requests_in_flight` requests in flight: two
/// calls hold both slots on an upstream that never answers, so the third call's request waits,
/// and when its call has no time left for it, fails naming the limit without being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_across_a_connectors_calls_stop_at_their_cap() {
    use tsunagi_fake_upstream::{ApiMode, ApiServer, ApiServerConfig};
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    api.set_mode(ApiMode::Hanging);
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &bounded(
            "held",
            "http",
            "",
            "connector_requests_in_flight = 2",
            api.addr().port(),
        )
        .replace("call_timeout = \"10s\"", "call_timeout = \"2s\"");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let targets: Vec<String> = (0..3).map(|n| api.url(&format!("/flaky/{n}"))).collect();
    backend
        .add_targets("held", &targets, clock.now_ms())
        .await
        .unwrap();
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(stats.polls_failed, 3, "{stats:?}");
    let mut errors = Vec::new();
    for target in &targets {
        errors.push(last_error(&backend, "held", target).await);
    }
    let over: Vec<&String> = errors
        .iter()
        .filter(|e| e.contains("(limits.connector_requests_in_flight)"))
        .collect();
    assert_eq!(over.len(), 1, "{errors:#?}");
    assert!(
        over[0].contains("connector 'held': its calls kept 2 requests in flight"),
        "{}",
        over[0]
    );
    assert_eq!(
        api.stats().flaky_requests,
        2,
        "the third request never reached the upstream"
    );
    api.shutdown();
}

/// A state key or value over its size fails the call, naming the limit; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_keys_and_values_over_their_size_fail_the_call_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &bounded("longkey", "state", "state-key-bytes = \"2000\"", "", 9)
        + &bounded("bigvalue", "state", "state-value-bytes = \"100000\"", "", 9)
        + &bounded(
            "bigshared",
            "state",
            "state-scope = \"connector\"\nstate-value-bytes = \"100000\"",
            "",
            9,
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let url = "http://127.0.0.1:9/a".to_string();
    for connector in ["longkey", "bigvalue", "bigshared"] {
        backend
            .add_targets(connector, std::slice::from_ref(&url), clock.now_ms())
            .await
            .unwrap();
    }
    run_until_idle(&config, backend.clone(), &clock).await;
    for (connector, expected) in [
        (
            "longkey",
            "connector 'longkey': a state key of 2000 bytes is longer than 1024 (limits.state_key_size)",
        ),
        (
            "bigvalue",
            "a state value of 100000 bytes (key \"http://127.0.0.1:9/a#1.0\") is longer than 65536 \
             (limits.state_value_size)",
        ),
        ("bigshared", "(limits.state_value_size)"),
    ] {
        let error = last_error(&backend, connector, &url).await;
        assert!(error.contains(expected), "{connector}: {error}");
        let target = backend.get_target(connector, &url).await.unwrap().unwrap();
        assert_eq!(
            backend.target_state(connector, target.id).await.unwrap(),
            vec![],
            "{connector}: nothing stored"
        );
    }
    assert_eq!(
        backend
            .get_state(
                "bigshared",
                StateScope::Connector,
                "http://127.0.0.1:9/a#1.0"
            )
            .await
            .unwrap(),
        None
    );
}

/// A target's state total holds across calls: each poll adds a 600-byte value, so the fourth
/// would pass 2 KiB and fails, counted against what the first three stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targets_state_total_holds_across_calls() {
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &bounded(
            "grow",
            "state",
            "state-value-bytes = \"600\"",
            "state_per_target = \"2 KiB\"",
            9,
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let url = "http://127.0.0.1:9/grow".to_string();
    backend
        .add_targets("grow", std::slice::from_ref(&url), clock.now_ms())
        .await
        .unwrap();
    for round in 1..=4 {
        let stats = run_round(&config, backend.clone(), &clock).await;
        let expected = if round < 4 { (1, 0) } else { (0, 1) };
        assert_eq!(
            (stats.polls_ok, stats.polls_failed),
            expected,
            "round {round}"
        );
        clock.advance(Duration::from_secs(48 * 3600));
    }
    let error = last_error(&backend, "grow", &url).await;
    assert!(
        error.contains("connector 'grow': the target's state would hold 2508 bytes")
            && error.contains("more than 2048 (limits.state_per_target)"),
        "{error}"
    );
    let target = backend.get_target("grow", &url).await.unwrap().unwrap();
    let stored = backend.target_state("grow", target.id).await.unwrap();
    let size: usize = stored.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!((stored.len(), size), (3, 3 * (url.len() + 4 + 600)));
}

/// Connector-scoped state holds its total across targets and concurrent calls: four calls at
/// once each add 600 bytes under a 2 KiB total, and exactly three succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_state_total_holds_across_concurrent_calls() {
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &bounded(
            "shared",
            "state",
            "state-scope = \"connector\"\nstate-value-bytes = \"600\"",
            "state_per_connector = \"2 KiB\"",
            9,
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let targets: Vec<String> = (0..4).map(|n| format!("http://127.0.0.1:9/{n}")).collect();
    backend
        .add_targets("shared", &targets, clock.now_ms())
        .await
        .unwrap();
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((stats.polls_ok, stats.polls_failed), (3, 1), "{stats:?}");
    let mut stored = 0;
    let mut refused = Vec::new();
    for target in &targets {
        let key = format!("{target}#1.0");
        if let Some(value) = backend
            .get_state("shared", StateScope::Connector, &key)
            .await
            .unwrap()
        {
            stored += key.len() + value.len();
        } else {
            refused.push(last_error(&backend, "shared", target).await);
        }
    }
    assert!(stored <= 2048, "{stored}");
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].contains("connector 'shared': connector state would hold")
            && refused[0].contains("(limits.state_per_connector)"),
        "{}",
        refused[0]
    );
}

/// Log lines past `log_line_size` are cut with a marker and counted; lines past
/// `log_lines_per_call` are dropped and counted. A plugin's error message is cut the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_many_log_lines_and_long_errors_are_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "log_line_size = \"1 KiB\"\nlog_lines_per_call = 50";
    let text = host_section("")
        + &bounded(
            "loud",
            "loud",
            "log-lines = \"300\"\nlog-bytes = \"10000\"",
            limits,
            9,
        )
        + &bounded("shout", "shout", "error-bytes = \"1048576\"", limits, 9);
    let config = write_config(dir.path(), &text);
    let report = pool_of(&config, "loud")
        .await
        .poll(
            TargetCall::detached("http://127.0.0.1:9/"),
            None,
            None,
            None,
        )
        .await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    assert_eq!(
        report.log,
        tsunagi::runtime::LogTally {
            written: 50,
            cut: 50,
            dropped: 250
        }
    );
    let report = pool_of(&config, "shout")
        .await
        .poll(
            TargetCall::detached("http://127.0.0.1:9/"),
            None,
            None,
            None,
        )
        .await;
    let error = report.result.expect_err("shout fails").to_string();
    assert!(
        error.len() < 1200 && error.ends_with("… [cut: 1048576 bytes in all]"),
        "{} bytes: {}",
        error.len(),
        &error[error.len().saturating_sub(80)..]
    );
}

/// Items are checked as the host lifts the result: past `items_per_call`, past `items_size`
/// once lifted, and far past it while lifting (the lift itself stops: the transfer cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_over_their_count_or_size_fail_the_call_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "items_per_call = 100\nitems_size = \"64 KiB\"";
    let text = host_section("")
        + &bounded(
            "fits",
            "items",
            "items = \"100\"\nitem-bytes = \"100\"",
            limits,
            9,
        )
        + &bounded(
            "many",
            "items",
            "items = \"101\"\nitem-bytes = \"1\"",
            limits,
            9,
        )
        + &bounded(
            "large",
            "items",
            "items = \"10\"\nitem-bytes = \"8192\"",
            limits,
            9,
        )
        + &bounded(
            "huge",
            "items",
            "items = \"100\"\nitem-bytes = \"10240\"",
            limits,
            9,
        );
    let config = write_config(dir.path(), &text);
    let poll = |name: &'static str| {
        let config = config.clone();
        async move {
            pool_of(&config, name)
                .await
                .poll(
                    TargetCall::detached("http://127.0.0.1:9/"),
                    None,
                    None,
                    None,
                )
                .await
                .result
        }
    };
    assert_eq!(poll("fits").await.expect("fits").items.len(), 100);
    for (name, expected) in [
        (
            "many",
            "connector 'many': the plugin returned 101 items, more than 100 (limits.items_per_call)",
        ),
        (
            "large",
            "bytes of items, more than 65536 (limits.items_size)",
        ),
        (
            // 64 KiB of state value and 1 KiB of key is the larger bound, plus 64 KiB of room.
            "huge",
            "connector 'huge': the plugin handed the host more than 132096 bytes at once",
        ),
    ] {
        let error = poll(name).await.expect_err(name).to_string();
        assert!(error.contains(expected), "{name}: {error}");
        if name != "many" {
            assert!(error.contains("(limits.items_size)"), "{name}: {error}");
        }
    }
}

/// `tsunagi poll` prints nothing of a result over its bounds, and says which bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsunagi_poll_prints_no_items_of_a_result_over_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "items_per_call = 100";
    let text = host_section("")
        + &bounded("fits", "items", "items = \"100\"", limits, 9)
        + &bounded("many", "items", "items = \"5000\"", limits, 9);
    let config = write_config(dir.path(), &text);
    let run = |name: &'static str| {
        let path = config.source_path.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
                .args(["poll", name, "http://127.0.0.1:9/", "--config"])
                .arg(&path)
                .output()
                .unwrap()
        })
    };
    let fits = run("fits").await.unwrap();
    assert!(
        fits.status.success(),
        "{}",
        String::from_utf8_lossy(&fits.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&fits.stdout).lines().count(), 100);
    let many = run("many").await.unwrap();
    let stderr = String::from_utf8_lossy(&many.stderr);
    assert!(!many.status.success(), "{stderr}");
    assert!(many.stdout.is_empty(), "no item printed");
    assert!(
        stderr.contains("the plugin returned 5000 items, more than 100 (limits.items_per_call)"),
        "{stderr}"
    );
}

/// A response counts against `requests_in_flight` until the plugin has read its body to the
/// end (even with the stream left open, as a garbage-collected runtime leaves it) or dropped
/// it: reading five in turn is fine, keeping them unread stops at the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_read_to_its_end_frees_its_slot_and_an_unread_one_keeps_it() {
    use tsunagi_fake_upstream::{ApiServer, ApiServerConfig};
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let port = api.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let limits = "requests_in_flight = 2";
    let text = host_section("")
        + &bounded(
            "reads",
            "sequence",
            "requests = \"5\"\nsequence-keep = \"read\"",
            limits,
            port,
        )
        + &bounded("keeps", "sequence", "requests = \"5\"", limits, port);
    let config = write_config(dir.path(), &text);
    // 40 KiB: three chunks, the last byte alone.
    let target = api.url("/bytes/40960/seq");
    let report = pool_of(&config, "reads")
        .await
        .poll(TargetCall::detached(&target), None, None, None)
        .await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    let report = pool_of(&config, "keeps")
        .await
        .poll(TargetCall::detached(&target), None, None, None)
        .await;
    let error = report
        .result
        .expect_err("the third finds no slot")
        .to_string();
    assert!(
        error.contains("2 of 5 requests answered")
            && error.contains("the call already has 2 requests in flight"),
        "{error}"
    );
    assert_eq!(api.requests_to("/bytes/40960/seq"), 5 + 2);
    api.shutdown();
}

/// A call makes at most `requests_per_call` requests, refused ones included, and only the first
/// refusal is recorded: the call's exchange log stops growing with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_makes_at_most_requests_per_call_requests() {
    use tsunagi_fake_upstream::{ApiServer, ApiServerConfig};
    let api = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &bounded(
            "chatty",
            "sequence",
            "requests = \"50\"",
            "requests_per_call = 5",
            api.addr().port(),
        );
    let config = write_config(dir.path(), &text);
    let report = pool_of(&config, "chatty")
        .await
        .poll(
            TargetCall::detached(&api.url("/bytes/10/chatty")),
            None,
            None,
            None,
        )
        .await;
    let error = report.result.expect_err("45 refused").to_string();
    assert!(
        error.contains("5 of 50 requests answered")
            && error.contains(
                "connector 'chatty': the call already made 5 requests (limits.requests_per_call)"
            ),
        "{error}"
    );
    assert_eq!(api.requests_to("/bytes/10/chatty"), 5);
    assert_eq!(report.exchanges.len(), 6, "{:#?}", report.exchanges);
    api.shutdown();
}
