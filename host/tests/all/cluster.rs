//! End to end: plugins and config pushed to every host of a cluster (`[backends] cluster` on
//! the local Redis, a key prefix per test), through one host's admin API with `tsunagi push`
//! and `tsunagi push-config`; each host on a SQLite file of its own, so only the cluster's
//! store joins them.

use crate::common::*;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tsunagi::backends::redis::revisions::RedisRevisions;
use tsunagi::backends::redis::testing::TestPrefix;
use tsunagi::clock::SystemClock;
use tsunagi::cluster::{BlobCache, Revision};
use tsunagi::config::Config;
use tsunagi::pipeline::RunMode;

const TOKEN: &str = "cluster-test-token";

/// Host `index`'s config in a directory of its own under `dir`: the RSS connector (no targets),
/// the admin API on a free port with a token, and the cluster on `redis`; `host_extra` joins
/// its `[host]` section.
fn cluster_config(dir: &Path, index: usize, redis: &TestPrefix, host_extra: &str) -> Config {
    let sub = dir.join(format!("host{index}"));
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("admin.token"), TOKEN).unwrap();
    let text = host_section(&format!(
        "admin_listen = \"127.0.0.1:{}\"\nadmin_token = {{ file = \"admin.token\" }}\n{host_extra}",
        free_port()
    )) + &rss_connector(9, "").replace("concurrency = 32", "concurrency = 4")
        + &format!("\n[backends]\ncluster = \"{}\"\n", redis.url());
    write_config(&sub, &text)
}

/// Like [`cluster_config`], with the host's own compile cache (nothing compiled in it yet) and
/// `key` as `backends.cluster_key`.
fn keyed_config(dir: &Path, index: usize, redis: &TestPrefix, key: &str) -> Config {
    let shared = cluster_config(dir, index, redis, "");
    let sub = shared.base_dir.clone();
    std::fs::write(sub.join("cluster.key"), key).unwrap();
    let text = std::fs::read_to_string(&shared.source_path)
        .unwrap()
        .replace(
            &format!("compile_cache = \"{}\"", compile_cache().display()),
            "compile_cache = \"cache\"",
        )
        + "cluster_key = { file = \"cluster.key\" }\n";
    write_config(&sub, &text)
}

fn code_from(host: &TestHost) -> String {
    let handle = host.topology().connectors().get("rss").expect("rss runs");
    let (current, _) = handle.versions.versions();
    serde_json::to_value(current.code_from)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// A pushed plugin is compiled once, where the push lands: a host holding the same
/// `cluster_key` runs the code that host shared; one holding another key refuses it (the
/// signature does not check) and compiles the plugin itself. All three run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_plugin_is_compiled_where_it_lands_and_its_signed_code_runs_elsewhere() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let key = "k".repeat(40);
    let configs = [
        keyed_config(dir.path(), 0, &redis, &key),
        keyed_config(dir.path(), 1, &redis, &key),
        keyed_config(dir.path(), 2, &redis, &"x".repeat(40)),
    ];
    let mut hosts = Vec::new();
    for config in &configs {
        hosts.push(start(config).await);
    }
    let (code, report) = tsunagi(&[
        "push",
        "--config",
        &configs[0].source_path.display().to_string(),
        "rss",
        &plugin("jsonfeed").display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "every host applied it: {report}");
    let pushed = serving(&hosts[0]);
    for host in &hosts {
        assert_eq!(serving(host), pushed, "every host runs the pushed plugin");
    }
    assert_eq!(
        hosts.iter().map(code_from).collect::<Vec<_>>(),
        ["compiled", "cluster", "compiled"],
        "compiled where it landed, shared with the host of the same key only"
    );
}

/// A cluster key shorter than 32 characters is refused at start, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_cluster_key_is_refused_naming_the_field() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let config = keyed_config(dir.path(), 0, &redis, "short");
    let backend = open_backend(&config).await;
    let started = tsunagi::topology::Topology::start(
        config.clone(),
        backend,
        tsunagi::topology::TopologyOptions::default(),
    )
    .await;
    let error = match started {
        Ok(_) => panic!("a short key was taken"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("backends.cluster_key") && error.contains("shorter than 32"),
        "{error}"
    );
}

async fn start(config: &Config) -> TestHost {
    let backend = open_backend(config).await;
    start_host_with_clock(config, backend, Arc::new(SystemClock), RunMode::Forever).await
}

fn serving(host: &TestHost) -> String {
    host.topology()
        .connectors()
        .get("rss")
        .expect("rss runs")
        .sha256()
}

/// Runs `tsunagi` with `args`; answers its exit code and stdout as JSON.
async fn tsunagi(args: &[&str]) -> (i32, serde_json::Value) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(args)
        .env("TSUNAGI_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("tsunagi runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "tsunagi {args:?} printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), answer)
}

/// Waits (bounded) until `done` holds, checking every 5 ms.
async fn until(what: &str, done: impl Fn() -> bool) {
    let reached = tokio::time::timeout(Duration::from_secs(30), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{what}");
}

fn hosts_of(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    report["hosts"].as_array().expect("hosts").iter().collect()
}

/// `tsunagi push` through one host: every host swaps the plugin in, each reports it, a host
/// started afterwards runs it from its first job, and `/status` shows every host on the newest
/// revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_pushed_through_one_host_runs_on_every_host() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<Config> = (0..4)
        .map(|index| cluster_config(dir.path(), index, &redis, ""))
        .collect();
    let mut hosts = Vec::new();
    for config in &configs[..3] {
        hosts.push(start(config).await);
    }
    let before = serving(&hosts[0]);
    let pushed = plugin("jsonfeed");
    let (code, report) = tsunagi(&[
        "push",
        "--config",
        &configs[0].source_path.display().to_string(),
        "rss",
        &pushed.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "every host applied it: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["revision"], 1, "{report}");
    let reports = hosts_of(&report);
    assert_eq!(reports.len(), 3, "one report per live host: {report}");
    let took: Vec<&serde_json::Value> = reports.iter().map(|r| &r["took_ms"]).collect();
    eprintln!("from the push to each host running it: {took:?} ms");
    let after = serving(&hosts[0]);
    assert_ne!(after, before, "the pushed plugin serves");
    for (host, entry) in hosts.iter().zip(&reports) {
        assert_eq!(serving(host), after, "every host runs the pushed plugin");
        assert_eq!(entry["ok"], true, "{entry}");
        assert_eq!(entry["connectors"][0]["outcome"], "swapped", "{entry}");
        assert_eq!(entry["connectors"][0]["to"], after.as_str(), "{entry}");
        assert!(entry["took_ms"].as_i64().is_some(), "{entry}");
    }
    // A host joining later starts on the newest revision.
    let late = start(&configs[3]).await;
    assert_eq!(
        serving(&late),
        after,
        "a host started after the push runs it"
    );
    let admin = late.admin_addr().expect("admin");
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = fetch_status(admin).await;
            let cluster = &status["cluster"];
            let listed = cluster["hosts"].as_array().map_or(0, Vec::len);
            let behind: u64 = cluster["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|host| host["behind"].as_u64().unwrap_or(99))
                .sum();
            if listed == 4 && behind == 0 {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every host's card shows revision 1");
    assert_eq!(status["cluster"]["revision"], 1, "{status}");
    for host in status["cluster"]["hosts"].as_array().unwrap() {
        assert_eq!(host["revision"], 1, "{host}");
        assert_eq!(host["plugins"]["rss"], after.as_str(), "{host}");
    }
    late.shutdown().await;
    for host in hosts {
        host.shutdown().await;
    }
}

/// A config push one host cannot take (it was started with fewer instance slots than the new
/// concurrency needs) is applied by the others and reported refused for that host, which keeps
/// running what it ran and shows itself one revision behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_one_host_refuses_is_reported_for_that_host_and_applied_by_the_others() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let configs = [
        cluster_config(dir.path(), 0, &redis, ""),
        cluster_config(dir.path(), 1, &redis, ""),
        cluster_config(dir.path(), 2, &redis, "instance_slots = 24"),
    ];
    let mut hosts = Vec::new();
    for config in &configs {
        hosts.push(start(config).await);
    }
    let wider = std::fs::read_to_string(&configs[0].source_path)
        .unwrap()
        .replace("concurrency = 4", "concurrency = 12");
    let file = dir.path().join("host0/wider.toml");
    std::fs::write(&file, &wider).unwrap();
    let (code, report) = tsunagi(&[
        "push-config",
        "--config",
        &configs[0].source_path.display().to_string(),
        &file.display().to_string(),
    ])
    .await;
    assert_eq!(code, 1, "not every host applied it: {report}");
    assert_eq!(report["ok"], false, "{report}");
    let narrow = hosts[2].topology().worker_id().to_string();
    for entry in hosts_of(&report) {
        let refused_here = entry["worker_id"] == narrow.as_str();
        assert_eq!(entry["ok"], !refused_here, "{entry}");
        let outcome = &entry["connectors"][0];
        if refused_here {
            assert_eq!(outcome["outcome"], "refused", "{entry}");
            let error = outcome["error"].as_str().unwrap_or_default();
            assert!(error.contains("instance slots"), "{entry}");
        } else {
            assert_eq!(outcome["outcome"], "swapped", "{entry}");
        }
    }
    assert_eq!(hosts_of(&report).len(), 3, "{report}");
    let admin = hosts[2].admin_addr().unwrap();
    let status = fetch_status(admin).await;
    assert_eq!(status["reloads"]["rss"]["outcome"], "refused", "{status}");
    // Its card is renewed every 2 s: wait for the one written after the refusal.
    let refused_card = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let status = fetch_status(admin).await;
            let card = status["cluster"]["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|host| host["this_host"] == true)
                .cloned()
                .unwrap();
            if card["refused"]["revision"] == 1 {
                return card;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the refusing host's card says so");
    assert_eq!(refused_card["behind"], 1, "{refused_card}");
    assert_eq!(refused_card["revision"], 0, "{refused_card}");
    for host in hosts {
        host.shutdown().await;
    }
}

/// What the host the push goes to cannot take is refused whole: nothing is stored or
/// announced. So are an unknown connector, a config over the cap and a push without the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_refused_where_it_lands_stores_nothing() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(dir.path(), 0, &redis, "");
    let host = start(&config).await;
    let before = serving(&host);
    let config_arg = config.source_path.display().to_string();
    let not_a_component = dir.path().join("core.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").unwrap();
    let (code, refused) = tsunagi(&[
        "push",
        "--config",
        &config_arg,
        "rss",
        &not_a_component.display().to_string(),
    ])
    .await;
    assert_eq!(code, 1, "{refused}");
    assert_eq!(refused["ok"], false, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("nothing was stored") && error.contains("component"),
        "{refused}"
    );
    let (code, unknown) = tsunagi(&[
        "push",
        "--config",
        &config_arg,
        "nosuch",
        &plugin("jsonfeed").display().to_string(),
    ])
    .await;
    assert_eq!(code, 1, "{unknown}");
    assert!(
        unknown["error"]
            .as_str()
            .is_some_and(|e| e.contains("nosuch")),
        "{unknown}"
    );
    let admin = host.admin_addr().unwrap();
    let client = reqwest::Client::new();
    let huge = "#".repeat(tsunagi::cluster::MAX_CONFIG_BYTES + 1);
    let over_cap = client
        .put(format!("http://{admin}/v1/cluster/config"))
        .bearer_auth(TOKEN)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(over_cap.status(), 413);
    let no_token = client
        .put(format!("http://{admin}/v1/cluster/plugins/rss"))
        .body(std::fs::read(plugin("jsonfeed")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let revisions = RedisRevisions::new(redis.open().await);
    assert_eq!(
        revisions.latest().await.unwrap(),
        0,
        "no revision committed"
    );
    assert_eq!(serving(&host), before, "the host still runs its own plugin");
    host.shutdown().await;
}

/// A revision committed with no announcement (as if every host's subscription missed it) is
/// found by each host's periodic reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revision_no_host_heard_of_is_applied_by_the_reconcile() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let configs = [
        cluster_config(dir.path(), 0, &redis, ""),
        cluster_config(dir.path(), 1, &redis, ""),
    ];
    let mut hosts = Vec::new();
    for config in &configs {
        hosts.push(start(config).await);
    }
    let bytes = std::fs::read(plugin("jsonfeed")).unwrap();
    let sha256 = tsunagi::cluster::sha256_hex(&bytes);
    let revisions = RedisRevisions::new(redis.open().await);
    revisions.put_blob(&sha256, &bytes).await.unwrap();
    let revision = Revision {
        number: 1,
        plugins: [("rss".to_string(), sha256.clone())].into(),
        ..Revision::default()
    };
    let committed = revisions
        .commit(0, &serde_json::to_string(&revision).unwrap())
        .await
        .unwrap();
    assert_eq!(committed, Some(1));
    until("every host reconciled to revision 1", || {
        hosts.iter().all(|host| serving(host) == sha256)
    })
    .await;
    // Each host reports on it once it has swapped it in.
    let reported = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let reports = revisions.reports(1).await.unwrap();
            if reports.len() == 2 {
                return reports;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both hosts reported");
    assert!(
        reported
            .iter()
            .all(|(_, report)| report.contains("\"ok\":true")),
        "{reported:?}"
    );
    let cache = BlobCache::new(BlobCache::default_dir());
    assert!(
        cache.cached(&sha256).is_some(),
        "the blob is a verified file here"
    );
    for host in hosts {
        host.shutdown().await;
    }
}
