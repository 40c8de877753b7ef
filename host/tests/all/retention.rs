//! Retention on a running host: passes during a crawl of the fake feeds by the real RSS
//! component, with a JSON-lines sink and a webhook that fails its first deliveries. No item is
//! lost or delivered twice, items a waiting delivery holds stay stored, forgotten items a
//! feed still lists stay forgotten, and `/status` shows what the last pass measured.

use crate::common::*;
use axum::http::StatusCode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tsunagi::backends::{ItemQuery, ItemStore, JobQueue};
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

const FEEDS: u32 = 200;
const KEEP: u64 = 5;

/// A webhook that answers 500 to its first `failures` deliveries, remembering what they held.
#[derive(Default)]
struct Hook {
    failures: u32,
    calls: AtomicU32,
    refused: Mutex<Vec<String>>,
    delivered: Mutex<Vec<String>>,
}

async fn start_hook(failures: u32) -> (Arc<Hook>, u16) {
    let hook = Arc::new(Hook {
        failures,
        ..Hook::default()
    });
    let state = hook.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Vec<serde_json::Value>>| {
            let state = state.clone();
            async move {
                let ids = body
                    .0
                    .iter()
                    .map(|item| item["id"].as_str().unwrap_or_default().to_string());
                if state.calls.fetch_add(1, Ordering::SeqCst) < state.failures {
                    state.refused.lock().unwrap().extend(ids);
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                state.delivered.lock().unwrap().extend(ids);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hook, port)
}

/// Each id with how often it occurs: a duplicate shows as a count of 2.
fn multiset(ids: impl IntoIterator<Item = String>) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

fn archived(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let item: serde_json::Value = serde_json::from_str(line).expect("a line is an item");
            item["id"].as_str().expect("an id").to_string()
        })
        .collect()
}

async fn stored_ids(backend: &dyn ItemStore) -> BTreeSet<String> {
    let query = ItemQuery {
        limit: 100_000,
        ..ItemQuery::default()
    };
    let stored = backend.list_items(&query).await.unwrap();
    stored.into_iter().map(|s| s.item.id).collect()
}

/// Waits (bounded), advancing the manual clock a minute at a time so retries come due, until
/// `done` holds and no delivery of either sink is queued or leased.
async fn until_delivered(
    clock: &ManualClock,
    backend: &dyn JobQueue,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let mut waiting = 0;
            for queue in ["sink:archive", "sink:hook"] {
                let counts = backend.queue_counts(queue).await.unwrap();
                waiting += counts.queued + counts.leased;
            }
            if waiting == 0 && done() {
                return;
            }
            clock.advance(Duration::from_secs(60));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(finished.is_ok(), "timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_during_a_crawl_loses_no_undelivered_item_and_brings_none_back() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: FEEDS,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let (hook, hook_port) = start_hook(3).await;
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("admin_listen = \"127.0.0.1:0\"\nretention_interval = \"1h\"")
        + &rss_connector(
            server.addr().port(),
            &format!("sinks = [\"archive\", \"hook\"]\nkeep_items_count = {KEEP}"),
        )
        + &format!(
            "\n[sinks.archive]\nkind = \"jsonl\"\npath = \"items.jsonl\"\n\n[sinks.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n"
        );
    let config = write_config(dir.path(), &text);
    let archive = dir.path().join("items.jsonl");
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    backend
        .add_targets("rss", &server.feed_urls(), clock.now_ms())
        .await
        .unwrap();
    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let topology = running.topology();
    let retention = topology.retention().clone();
    let stats = topology.connectors().all()[0].stats.clone();
    let no_stop = CancellationToken::new();

    // Passes while the crawl runs (the runner's own first pass ran at start, too).
    let mut passes_during_crawl = 0;
    let crawled = tokio::time::timeout(Duration::from_secs(120), async {
        while stats.snapshot().polls() < u64::from(FEEDS) {
            let report = retention.pass(&no_stop).await;
            assert_eq!(report.error, None, "{report:?}");
            passes_during_crawl += 1;
        }
    })
    .await;
    assert!(
        crawled.is_ok(),
        "the crawl finished: {:?}",
        stats.snapshot()
    );
    assert_eq!(stats.snapshot().items_new, u64::from(FEEDS) * 10);
    assert!(passes_during_crawl > 0);

    // The hook refused its first deliveries, which wait for a retry the manual clock has not
    // reached: their items, and every item stored after the first of them, stay stored.
    let refused = tokio::time::timeout(Duration::from_secs(60), async {
        while hook.calls.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the hook saw its first deliveries");
    let report = retention.pass(&no_stop).await;
    assert_eq!(report.error, None, "{report:?}");
    let held = hook.refused.lock().unwrap().clone();
    assert!(!held.is_empty());
    let stored = stored_ids(backend.as_ref()).await;
    for id in &held {
        assert!(
            stored.contains(id),
            "{id}, held by a waiting delivery, was deleted"
        );
    }
    assert!(
        report
            .items_held_for_delivery
            .get("rss")
            .copied()
            .unwrap_or(0)
            > 0,
        "{report:?}"
    );

    // Every item reaches both sinks once.
    let all_round_1 = u64::from(FEEDS) * 10;
    until_delivered(
        &clock,
        backend.as_ref(),
        "both sinks got every item",
        || {
            archived(&archive).len() as u64 >= all_round_1
                && hook.delivered.lock().unwrap().len() as u64 >= all_round_1
        },
    )
    .await;
    let report = retention.pass(&no_stop).await;
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(
        backend.count_items(Some("rss")).await.unwrap(),
        KEEP,
        "with nothing waiting, only the newest {KEEP} are kept: {report:?}"
    );

    // A new round: every feed lists one new item beside nine it listed before, most of which
    // retention forgot. Only the new ones are stored and delivered.
    server.publish_round();
    let polls_before = stats.snapshot().polls();
    clock.advance(Duration::from_secs(2 * 3600));
    let all_rounds = all_round_1 + u64::from(FEEDS);
    until_delivered(
        &clock,
        backend.as_ref(),
        "the new round reached both sinks",
        || {
            stats.snapshot().polls() >= polls_before + u64::from(FEEDS)
                && archived(&archive).len() as u64 >= all_rounds
                && hook.delivered.lock().unwrap().len() as u64 >= all_rounds
        },
    )
    .await;
    assert_eq!(stats.snapshot().items_new, all_rounds);

    let mut expected = BTreeMap::new();
    for id in 0..FEEDS {
        for item in rss_item_ids(&server, id) {
            expected.insert(item, 1);
        }
    }
    let archive_ids = multiset(archived(&archive));
    let hook_ids = multiset(hook.delivered.lock().unwrap().clone());
    assert_eq!(archive_ids.len() as u64, all_rounds);
    assert!(
        archive_ids.values().all(|n| *n == 1),
        "a duplicate in the archive"
    );
    assert_eq!(
        archive_ids, hook_ids,
        "both sinks got the same items, once each"
    );
    for (id, _) in expected {
        assert!(archive_ids.contains_key(&id), "{id} was never delivered");
    }

    // Done deliveries are purged once older than keep_done_jobs (7 days by default).
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    let report = retention.pass(&no_stop).await;
    assert!(report.done_jobs_purged > 0, "{report:?}");
    let archive_queue = backend.queue_counts("sink:archive").await.unwrap();
    assert_eq!(archive_queue.done, 0, "{archive_queue:?}");

    // /status shows what the last pass measured, without counting anything itself.
    let status = fetch_status(running.admin_addr().expect("admin listens")).await;
    let storage = &status["storage"];
    assert_eq!(storage["rows"]["items"], KEEP, "{storage}");
    assert_eq!(storage["rows"]["targets"], FEEDS, "{storage}");
    assert!(storage["rows"]["forgotten_items"].as_u64().unwrap() >= all_round_1 - KEEP);
    assert!(storage["database_bytes"].as_u64().unwrap() > 0, "{storage}");
    assert!(storage["measured_at"].as_str().is_some(), "{storage}");
    assert_eq!(
        storage["last_pass"]["done_jobs_purged"], report.done_jobs_purged,
        "{storage}"
    );

    running.shutdown().await;
    server.shutdown().await;
}
