//! Hot swap on a running host: plugin versions replaced under load lose and double no job,
//! each poll is served by exactly one version, and a bad version (not wasm, wrong world, a
//! failing self-test, a broken config) is refused while the old one keeps serving.

use crate::common::TestHost;
use crate::common::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::backends::{Backend, ItemQuery};
use tsunagi::clock::{Clock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

fn tagged_connector(name: &str, port: u16, extra_config: &str) -> String {
    format!(
        r#"
[connectors.{name}]
plugin = "{name}.wasm"
role = "poller"
concurrency = 8

[connectors.{name}.schedule]
min_interval = "200ms"
max_interval = "1s"

[connectors.{name}.config]
mode = "tagged"
{extra_config}

[[connectors.{name}.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#
    )
}

/// A host that watches its files, with the tagged connector allowed to reach `port`.
fn watching_tagged(port: u16) -> String {
    host_section("").replace("watch = false", "watch = true")
        + &tagged_connector("tagged", port, "")
}

/// Opens `config`'s store, gives the tagged connector every feed of `server` and starts the host.
async fn crawl_feeds(
    config: &tsunagi::config::Config,
    server: &FeedServer,
) -> (Arc<dyn Backend>, TestHost) {
    let backend = open_backend(config).await;
    backend
        .add_targets("tagged", &server.feed_urls(), SystemClock.now_ms())
        .await
        .unwrap();
    let host = start(config, backend.clone()).await;
    (backend, host)
}

async fn post(admin: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{admin}{path}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn start(config: &tsunagi::config::Config, backend: Arc<dyn Backend>) -> TestHost {
    start_host_with_clock(config, backend, Arc::new(SystemClock), RunMode::Forever).await
}

/// Items stored after `after_seq`, in order.
async fn items_after(backend: &dyn Backend, after_seq: i64) -> Vec<tsunagi::backends::StoredItem> {
    backend
        .list_items(&ItemQuery {
            after_seq,
            limit: 100_000,
            ..ItemQuery::default()
        })
        .await
        .unwrap()
}

/// The poll of `url` in flight on the upstream right now, if any: its request has arrived but its
/// poll is not committed (each committed poll moves the cursor by one).
async fn in_flight_poll(backend: &dyn Backend, server: &FeedServer, id: u32) -> Option<u64> {
    let url = server.feed_url(id);
    let target = backend.get_target("tagged", &url).await.unwrap().unwrap();
    let committed: u64 = target.cursor.as_deref().unwrap_or("0").parse().unwrap();
    let requested = server.requests_for(id);
    (requested > committed).then_some(requested)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_load_lose_no_job_and_each_poll_has_one_version() {
    // Feeds 0..4 answer slowly, so calls are in flight across every swap.
    let slow: Vec<u32> = (0..4).collect();
    let server = FeedServer::start(FeedServerConfig {
        feeds: 100,
        slow: slow.clone(),
        slow_delay: Duration::from_millis(1500),
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let builds = [plugin("hostile_a"), plugin("hostile_b")];
    let current = dir.path().join("tagged.wasm");
    install(&builds[0], &current);
    let text = host_section("admin_listen = \"127.0.0.1:0\"")
        + &tagged_connector("tagged", server.addr().port(), "");
    let config = write_config(dir.path(), &text);
    let (backend, host) = crawl_feeds(&config, &server).await;
    let admin = host.admin_addr().unwrap();

    let mut seen_seq = 0;
    let mut latencies = Vec::new();
    // (slow feed, its poll in flight when a swap was triggered, the version it started on)
    let mut straddling = Vec::new();
    let mut old_tag = "a";
    // Per slow feed, its requests when the last swap had returned (calls after it start on the
    // new version).
    let mut requested_after_last_swap = vec![0u64; slow.len()];
    for swap in 1..=20 {
        let (tag, build) = if swap % 2 == 1 {
            ("b", &builds[1])
        } else {
            ("a", &builds[0])
        };
        // A slow call is waiting on the upstream, and its request arrived after the previous
        // swap had returned: it started on the version serving now.
        let in_flight = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                for &id in &slow {
                    if let Some(poll) = in_flight_poll(backend.as_ref(), &server, id).await
                        && poll > requested_after_last_swap[id as usize]
                    {
                        return (id, poll);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("swap {swap}: no slow call in flight within 30s"));
        straddling.push((in_flight.0, in_flight.1, old_tag));
        install(build, &current);
        let triggered = Instant::now();
        let (status, report) = post(admin, "/v1/connectors/tagged/reload").await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["connectors"][0]["outcome"], "swapped", "{report}");
        for &id in &slow {
            requested_after_last_swap[id as usize] = server.requests_for(id);
        }
        // In effect: a poll served by the new version is stored (awaited, bounded generously).
        let in_effect = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let fresh = items_after(backend.as_ref(), seen_seq).await;
                if let Some(last) = fresh.last() {
                    seen_seq = last.seq;
                }
                if fresh
                    .iter()
                    .any(|item| item.item.title.as_deref() == Some(tag))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            in_effect.is_ok(),
            "swap {swap} to {tag} not in effect after 30s"
        );
        latencies.push(triggered.elapsed());
        old_tag = tag;
    }
    let view = host.topology();
    // Shutdown lets in-flight calls finish and commit.
    host.shutdown().await;

    let counters = connector_stats(&view, "tagged");
    assert_eq!(counters.polls_failed, 0, "{counters:?}");
    let items = items_after(backend.as_ref(), 0).await;
    assert_eq!(
        items.len() as u64,
        counters.polls_ok,
        "every counted poll stored exactly one item"
    );
    assert!(
        items
            .iter()
            .all(|item| matches!(item.item.title.as_deref(), Some("a" | "b"))),
        "every item was tagged by one of the two builds"
    );
    // The upstream's own count: every request it received is one committed poll of that
    // target, and the target's items are exactly its polls 1..=n, each once.
    let mut requests = 0;
    for id in 0..100 {
        let url = server.feed_url(id);
        let target = backend.get_target("tagged", &url).await.unwrap().unwrap();
        let polls: u64 = target.cursor.as_deref().unwrap_or("0").parse().unwrap();
        let fetched = server.requests_for(id);
        assert_eq!(
            fetched, polls,
            "{url}: the upstream answered {fetched} polls, {polls} were committed"
        );
        let mut stored: Vec<&str> = items
            .iter()
            .filter(|item| item.target == url)
            .map(|item| item.item.id.as_str())
            .collect();
        stored.sort_unstable();
        let mut expected: Vec<String> = (1..=polls).map(|n| format!("{url}#{n}")).collect();
        expected.sort_unstable();
        assert_eq!(stored, expected, "{url}");
        // No target was put aside (a host failure releases it for 30 s): each runs again
        // within its schedule's longest interval (1 s, plus jitter).
        let last = target.last_polled_at.expect("polled");
        assert!(
            target.next_run_at - last <= 2_000,
            "{url} was set aside: next run {} ms after its last poll",
            target.next_run_at - last
        );
        requests += fetched;
    }
    assert_eq!(requests, items.len() as u64);
    // Calls that started on the old version finished on it and were committed.
    for (id, poll, tag) in &straddling {
        let id_of_poll = format!("{}#{poll}", server.feed_url(*id));
        let item = items
            .iter()
            .find(|item| item.item.id == id_of_poll)
            .unwrap_or_else(|| panic!("{id_of_poll}, in flight across a swap, was not committed"));
        assert_eq!(
            item.item.title.as_deref(),
            Some(*tag),
            "{id_of_poll} started on build {tag}"
        );
    }
    latencies.sort();
    eprintln!(
        "20 swaps under load: {} polls, {} items, {} calls straddling a swap; trigger to first \
         poll on the new version: median {:?}, max {:?}",
        counters.polls_ok,
        items.len(),
        straddling.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_versions_are_refused_and_the_old_one_keeps_serving() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 10,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr().port();
    let (build_a, build_b) = (plugin("hostile_a"), plugin("hostile_b"));
    install(&build_a, &dir.path().join("tagged.wasm"));
    install(&build_a, &dir.path().join("bystander.wasm"));
    let host_text = host_section("admin_listen = \"127.0.0.1:0\"");
    let config_text = |extra: &str| {
        host_text.clone()
            + &tagged_connector("tagged", port, extra)
            + &tagged_connector("bystander", port, "")
    };
    let config = write_config(dir.path(), &config_text(""));
    let config_path = dir.path().join("tsunagi.toml");
    let backend = open_backend(&config).await;
    let feeds = server.feed_urls();
    backend
        .add_targets("tagged", &feeds, SystemClock.now_ms())
        .await
        .unwrap();
    let host = start(&config, backend.clone()).await;
    let admin = host.admin_addr().unwrap();
    let view = host.topology();
    let serving = |name: &str| {
        let handle = view.connectors().get(name).unwrap();
        handle.versions.versions().0.sha256
    };
    let original = serving("tagged");

    let not_wasm = dir.path().join("not-wasm.txt");
    std::fs::write(&not_wasm, "this is not a plugin\n").unwrap();
    let wrong_world = dir.path().join("wrong-world.wasm");
    std::fs::write(&wrong_world, wat::parse_str("(component)").unwrap()).unwrap();
    for (file, expected) in [
        (&not_wasm, "not a WebAssembly component"),
        (&wrong_world, "does not fit role 'poller'"),
    ] {
        install(file, &dir.path().join("tagged.wasm"));
        let (status, report) = post(admin, "/v1/connectors/tagged/reload").await;
        assert_eq!(status, 422, "{report}");
        let entry = &report["connectors"][0];
        assert_eq!(entry["outcome"], "refused", "{report}");
        assert!(
            entry["error"].as_str().unwrap().contains(expected),
            "{report}"
        );
        assert_eq!(serving("tagged"), original, "the old version keeps serving");
        let status = fetch_status(admin).await;
        assert_eq!(
            status["reloads"]["tagged"]["outcome"], "refused",
            "{status}"
        );
    }

    // A self-test that traps refuses the swap too (build b, with the config asking it to trap).
    install(&build_b, &dir.path().join("tagged.wasm"));
    std::fs::write(&config_path, config_text("self-test = \"trap\"")).unwrap();
    let (status, report) = post(admin, "/v1/connectors/tagged/reload").await;
    assert_eq!(status, 422, "{report}");
    assert!(
        report["connectors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("self-test trapped"),
        "{report}"
    );
    assert_eq!(serving("tagged"), original);

    // A broken TOML edit changes nothing and names the line.
    std::fs::write(&config_path, config_text("") + "\n[connectors.tagged\n").unwrap();
    let (status, report) = post(admin, "/v1/reload").await;
    assert_eq!(status, 422, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("config refused") && error.contains("tsunagi.toml:"),
        "{error}"
    );
    assert_eq!(serving("tagged"), original);

    // A good edit of one connector rebuilds that connector only.
    std::fs::write(&config_path, config_text("note = \"v2\"")).unwrap();
    let bystander_before = serving("bystander");
    let (status, report) = post(admin, "/v1/reload").await;
    assert_eq!(status, 200, "{report}");
    let outcome_of = |name: &str| {
        report["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["connector"] == name)
            .unwrap()["outcome"]
            .clone()
    };
    assert_eq!(outcome_of("tagged"), "swapped", "{report}");
    assert_eq!(outcome_of("bystander"), "unchanged", "{report}");
    assert_eq!(serving("bystander"), bystander_before);
    let swapped_to = serving("tagged");
    assert_ne!(swapped_to, original, "build b serves now");

    // Rollback returns to build a, and /status shows both versions.
    let (status, report) = post(admin, "/v1/connectors/tagged/rollback").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(serving("tagged"), original);
    let status = fetch_status(admin).await;
    let tagged = status["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tagged")
        .unwrap()
        .clone();
    assert_eq!(tagged["plugin"]["sha256"], original.as_str(), "{tagged}");
    assert_eq!(
        tagged["previous_plugin"]["sha256"],
        swapped_to.as_str(),
        "{tagged}"
    );
    // A rollback sticks: reloading the same files does not swap build b back in…
    let (status, report) = post(admin, "/v1/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(serving("tagged"), original, "{report}");
    // …until the files change again.
    std::fs::write(&config_path, config_text("note = \"v3\"")).unwrap();
    let (_, report) = post(admin, "/v1/reload").await;
    assert_eq!(serving("tagged"), swapped_to, "{report}");

    // Through all of it, polls kept succeeding.
    let counters = connector_stats(&view, "tagged");
    host.shutdown().await;
    assert_eq!(counters.polls_failed, 0, "{counters:?}");
    assert!(counters.polls_ok > 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_plugin_file_swaps_it() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 10,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (build_a, build_b) = (plugin("hostile_a"), plugin("hostile_b"));
    let current = dir.path().join("tagged.wasm");
    install(&build_a, &current);
    let text = watching_tagged(server.addr().port());
    let config = write_config(dir.path(), &text);
    let (_, host) = crawl_feeds(&config, &server).await;
    let view = host.topology();
    let serving = || view.connectors().all()[0].versions.versions().0.sha256;
    let original = serving();

    for (round, build) in [&build_b, &build_a, &build_b].into_iter().enumerate() {
        let before = serving();
        install(build, &current);
        let triggered = Instant::now();
        // Awaited with a generous bound: a loaded machine may be slow, never wrong.
        while serving() == before {
            assert!(
                triggered.elapsed() < Duration::from_secs(30),
                "round {round}: the new file was not serving within 30s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "file replaced → new version serving in {:?}",
            triggered.elapsed()
        );
    }
    assert_ne!(serving(), original);
    let reloads = view.reloader().last_reloads();
    assert_eq!(
        reloads["tagged"].outcome,
        tsunagi::topology::Outcome::Swapped
    );
    let counters = connector_stats(&view, "tagged");
    host.shutdown().await;
    assert_eq!(counters.polls_failed, 0, "{counters:?}");
    server.shutdown().await;
}

/// Writes `files` into `dir` the way the kubelet updates a mounted ConfigMap: a new hidden
/// folder, a `..data_tmp` link to it renamed over `..data`, each visible name a link through
/// `..data` (made once), the old folder removed.
fn configmap_update(dir: &Path, version: u32, files: &[(&str, &[u8])]) {
    let folder = format!("..2026_12_07_23_00_{version:02}.000000001");
    std::fs::create_dir(dir.join(&folder)).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(&folder).join(name), bytes).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&folder, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// Config and plugin mounted from a ConfigMap: an update swaps `..data` and names neither file,
/// yet the running host serves the new plugin and takes the new config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_reloads_the_plugin_and_config_it_mounts() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 10,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (build_a, build_b) = (plugin("hostile_a"), plugin("hostile_b"));
    let port = server.addr().port();
    let one = watching_tagged(port);
    let mount = |version: u32, build: &Path, text: &str, plugins: &[&str]| {
        let wasm = std::fs::read(build).unwrap();
        let mut files = vec![("tsunagi.toml", text.as_bytes())];
        files.extend(plugins.iter().map(|name| (*name, wasm.as_slice())));
        configmap_update(dir.path(), version, &files);
    };
    mount(1, &build_a, &one, &["tagged.wasm"]);
    let config = tsunagi::config::Config::load(&dir.path().join("tsunagi.toml")).unwrap();
    let (_, host) = crawl_feeds(&config, &server).await;
    let view = host.topology();
    let serving = || {
        view.connectors()
            .get("tagged")
            .unwrap()
            .versions
            .versions()
            .0
            .sha256
    };
    let original = serving();

    // The plugin changes.
    mount(2, &build_b, &one, &["tagged.wasm"]);
    wait_until_async(|| async { serving() != original }).await;
    // Then the config: a second connector, its plugin mounted beside the first.
    let two = one.clone() + &tagged_connector("second", port, "");
    mount(3, &build_b, &two, &["tagged.wasm", "second.wasm"]);
    wait_until_async(|| async { view.connectors().get("second").is_some() }).await;
    assert_ne!(serving(), original, "the swapped plugin still serves");
    let counters = connector_stats(&view, "tagged");
    host.shutdown().await;
    assert_eq!(counters.polls_failed, 0, "{counters:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_are_added_removed_and_rescheduled_on_a_running_host() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 15,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let port = server.addr().port();
    let dir = tempfile::tempdir().unwrap();
    for name in ["one", "two", "three"] {
        install(
            &plugin("hostile_a"),
            &dir.path().join(format!("{name}.wasm")),
        );
    }
    let host_text = host_section("");
    let config = write_config(
        dir.path(),
        &(host_text.clone()
            + &tagged_connector("one", port, "")
            + &tagged_connector("two", port, "")),
    );
    let backend = open_backend(&config).await;
    let urls = server.feed_urls();
    let now = SystemClock.now_ms();
    for (name, feeds) in [("one", 0..5), ("two", 5..10), ("three", 10..15)] {
        backend.add_targets(name, &urls[feeds], now).await.unwrap();
    }
    let host = start(&config, backend.clone()).await;
    let view = host.topology();
    let requests =
        |feeds: std::ops::Range<u32>| feeds.map(|id| server.requests_for(id)).sum::<u64>();
    wait_until_async(|| async { requests(5..10) >= 5 }).await;

    // Remove `two`, add `three`, and poll `one` on a different schedule.
    let edited = host_text
        + &tagged_connector("one", port, "")
            .replace("min_interval = \"200ms\"", "min_interval = \"300ms\"")
        + &tagged_connector("three", port, "");
    std::fs::write(dir.path().join("tsunagi.toml"), edited).unwrap();
    let report = view.reloader().reload(None).await;
    assert!(report.ok, "{report:?}");
    let outcome = |name: &str| {
        report
            .connectors
            .iter()
            .find(|c| c.connector == name)
            .unwrap_or_else(|| panic!("{name} not in {report:?}"))
            .clone()
    };
    assert_eq!(outcome("one").outcome, tsunagi::topology::Outcome::Swapped);
    assert!(outcome("one").pipeline_restarted);
    assert_eq!(outcome("two").outcome, tsunagi::topology::Outcome::Removed);
    assert_eq!(outcome("three").outcome, tsunagi::topology::Outcome::Added);
    assert_eq!(view.connectors().names(), ["one", "three"]);

    // `three` works; `two` has stopped claiming (its in-flight calls were allowed to finish).
    let three_rounds = |rounds: u64| {
        let requests = &requests;
        async move { requests(10..15) >= rounds * 5 }
    };
    wait_until_async(|| three_rounds(2)).await;
    let two_after_drain = requests(5..10);
    let three_so_far = requests(10..15);
    wait_until_async(|| async { requests(10..15) >= three_so_far + 10 }).await;
    assert_eq!(
        requests(5..10),
        two_after_drain,
        "a removed connector claims nothing"
    );
    assert!(
        backend.get_target("two", &urls[5]).await.unwrap().is_some(),
        "its targets stay for when it returns"
    );
    let one = connector_stats(&view, "one");
    host.shutdown().await;
    assert_eq!(one.polls_failed, 0, "{one:?}");
    server.shutdown().await;
}

/// Checks `condition` every 10 ms for up to 60 s.
async fn wait_until_async<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "condition not met within 60s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_connectors_added_to_a_running_host_all_get_instances_and_too_many_are_refused() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 88,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let port = server.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
    for name in &names {
        install(
            &plugin("hostile_a"),
            &dir.path().join(format!("{name}.wasm")),
        );
    }
    // One connector of concurrency 8 at start: the engine used to be sized for exactly what
    // it needed (2 × 8 + 8 slots), so ten more connectors found no instance slot.
    let host_text = host_section("");
    let config = write_config(
        dir.path(),
        &(host_text.clone() + &tagged_connector("c0", port, "")),
    );
    let backend = open_backend(&config).await;
    let urls = server.feed_urls();
    let now = SystemClock.now_ms();
    // Eight feeds each, so every connector runs its eight calls at once.
    for (index, name) in names.iter().enumerate() {
        backend
            .add_targets(name, &urls[index * 8..(index + 1) * 8], now)
            .await
            .unwrap();
    }
    let host = start(&config, backend.clone()).await;
    let view = host.topology();
    let all: String = names
        .iter()
        .map(|name| tagged_connector(name, port, ""))
        .collect();
    std::fs::write(dir.path().join("tsunagi.toml"), host_text.clone() + &all).unwrap();
    let report = view.reloader().reload(None).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(view.connectors().names().len(), 11);
    // Every connector polls each of its feeds at least twice, and none fails for want of an
    // instance.
    wait_until_async(|| async { (0..88).all(|id| server.requests_for(id) >= 2) }).await;
    for name in &names {
        let stats = connector_stats(&view, name);
        assert_eq!(
            (stats.polls_failed, stats.host_failures),
            (0, 0),
            "{name}: {stats:?}"
        );
    }

    // Ten more at concurrency 30 would need 2 × (11 × 8 + 10 × 30) = 776 slots of 512: refused
    // with the reason, and the eleven keep serving.
    let more: String = (11..21)
        .map(|i| {
            tagged_connector(&format!("c{i}"), port, "")
                .replace("concurrency = 8", "concurrency = 30")
        })
        .collect();
    for i in 11..21 {
        install(&plugin("hostile_a"), &dir.path().join(format!("c{i}.wasm")));
    }
    std::fs::write(dir.path().join("tsunagi.toml"), host_text + &all + &more).unwrap();
    let report = view.reloader().reload(None).await;
    assert!(!report.ok);
    let refused: Vec<_> = report
        .connectors
        .iter()
        .filter(|c| c.outcome == tsunagi::topology::Outcome::Refused)
        .collect();
    assert_eq!(refused.len(), 10, "{report:?}");
    let reason = refused[0].error.as_deref().unwrap_or_default();
    assert!(
        reason.contains("instance slots") && reason.contains("host.instance_slots"),
        "{reason}"
    );
    assert_eq!(view.connectors().names().len(), 11, "what served goes on");
    host.shutdown().await;
    server.shutdown().await;
}
