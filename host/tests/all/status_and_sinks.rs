//! The admin port's `/status` and `/healthz`, and delivery of new items to sinks: a JSON-lines
//! file and a webhook that fails before it succeeds (retried, never dropped) or fails for good
//! (dead-lettered with its error).

use crate::common::*;
use axum::http::StatusCode;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tsunagi::backends::ItemQuery;
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

/// A webhook receiver that answers 500 to the first `failures` deliveries.
#[derive(Default)]
struct Receiver {
    failures: u32,
    calls: AtomicU32,
    delivered: Mutex<Vec<serde_json::Value>>,
}

async fn start_receiver(failures: u32) -> (Arc<Receiver>, u16) {
    let receiver = Arc::new(Receiver {
        failures,
        ..Receiver::default()
    });
    let state = receiver.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Vec<serde_json::Value>>| {
            let state = state.clone();
            async move {
                let call = state.calls.fetch_add(1, Ordering::SeqCst);
                if call < state.failures {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                state.delivered.lock().unwrap().extend(body.0);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, port)
}

/// Waits (bounded), advancing the manual clock so retries come due, until `done` holds.
async fn until(clock: &ManualClock, what: &str, mut done: impl FnMut() -> bool) {
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            clock.advance(Duration::from_secs(60));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(finished.is_ok(), "timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_connectors_and_sinks_deliver_every_new_item() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 30,
        malformed: vec![2],
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let (receiver, hook_port) = start_receiver(2).await;
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("admin_listen = \"127.0.0.1:0\"")
        + &rss_connector(server.addr().port(), "sinks = [\"archive\", \"hook\"]")
        + &format!(
            "\n[sinks.archive]\nkind = \"jsonl\"\npath = \"items.jsonl\"\n\n[sinks.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n"
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    backend
        .add_targets("rss", &server.feed_urls(), clock.now_ms())
        .await
        .unwrap();

    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let stats = running.topology().connectors().all()[0].stats.clone();
    let polled = tokio::time::timeout(Duration::from_secs(60), async {
        while stats.snapshot().polls() < 30 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok());

    let admin = running.admin_addr().expect("admin is listening");
    let health = reqwest::get(format!("http://{admin}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let status = fetch_status(admin).await;
    let rss = &status["connectors"][0];
    assert_eq!(rss["name"], "rss");
    assert_eq!(rss["targets"], 30);
    assert_eq!(rss["targets_due"], 0);
    assert_eq!(rss["jobs_done"], 29);
    assert_eq!(rss["jobs_failed"], 1);
    assert_eq!(rss["plugin"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(rss["last_errors"][0]["target"], server.feed_url(2));
    assert!(
        rss["last_errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("malformed")
    );
    assert_eq!(status["backend"], "sqlite");
    assert_eq!(status["sinks"].as_array().unwrap().len(), 2);

    // Multisets (sorted lists), not sets: a duplicated delivery must show.
    let mut stored: Vec<String> = backend
        .list_items(&ItemQuery {
            limit: 10_000,
            ..ItemQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.item.id)
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 290);
    assert_eq!(
        stored.iter().collect::<BTreeSet<_>>().len(),
        290,
        "290 distinct items stored"
    );
    until(&clock, "webhook received every item", || {
        receiver.delivered.lock().unwrap().len() >= 290
    })
    .await;
    let ids_of = |values: &[serde_json::Value]| {
        let mut ids: Vec<String> = values
            .iter()
            .map(|v| {
                v["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("delivered item without an id: {v}"))
                    .to_string()
            })
            .collect();
        ids.sort();
        ids
    };
    let delivered = ids_of(&receiver.delivered.lock().unwrap());
    assert_eq!(
        delivered, stored,
        "the webhook got exactly the stored items, each once"
    );
    assert!(
        receiver.calls.load(Ordering::SeqCst) >= 2 + 29,
        "two failures were retried"
    );

    until(&clock, "jsonl file has every item", || {
        std::fs::read_to_string(dir.path().join("items.jsonl"))
            .map(|t| t.lines().count() >= 290)
            .unwrap_or(false)
    })
    .await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("items.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is one JSON item"))
        .collect();
    assert_eq!(
        ids_of(&lines),
        stored,
        "the file got exactly the stored items, each once"
    );
    // The receiver answers before the runner marks the job done: wait (bounded) until no
    // delivery is leased any more, then every job must be done once.
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let counts = backend.queue_counts("sink:hook").await.unwrap();
            if counts.leased == 0 && counts.queued == 0 {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let counts = settled.expect("the webhook's queue settles within 60 s");
    assert_eq!(
        (counts.done, counts.dead, counts.queued),
        (29, 0, 0),
        "{counts:?}"
    );
    running.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_ends_in_the_dead_letter_state_with_its_error() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 1,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let (receiver, hook_port) = start_receiver(u32::MAX).await;
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &rss_connector(server.addr().port(), "sinks = [\"hook\"]")
        + &format!(
            "\n[sinks.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nmax_attempts = 3\n"
        );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    backend
        .add_targets("rss", &server.feed_urls(), clock.now_ms())
        .await
        .unwrap();

    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let dead_backend = backend.clone();
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if !dead_backend
                .list_dead(Some("sink:hook"), 10)
                .await
                .unwrap()
                .is_empty()
            {
                return;
            }
            clock.advance(Duration::from_secs(600));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(finished.is_ok(), "the delivery job died");
    let dead = backend.list_dead(Some("sink:hook"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP 500"),
        "{dead:?}"
    );
    assert_eq!(receiver.calls.load(Ordering::SeqCst), 3);
    running.shutdown().await;
    server.shutdown().await;
}
