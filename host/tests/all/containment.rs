//! Hostile plugins are contained: a plugin that loops forever, grows memory without end or
//! traps costs one failed job and a log line; the host and other connectors carry on. And a
//! plugin reaches nothing its allowlist does not name.

use crate::common::*;
use std::time::Duration;
use tsunagi::backends::StateScope;
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::pipeline::RunMode;
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
