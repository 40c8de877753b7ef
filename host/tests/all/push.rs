//! End to end: feeds pushed to instead of polled — pings (`weblogUpdates.ping`,
//! `extendedPing`) from a pinging client to the host's inbound listener, against the fake feed
//! server, with the real host and the RSS component.

use crate::common::*;
use std::time::Duration;
use tsunagi::clock::Clock;
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::pinger;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

/// Waits (bounded) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{what}");
}

async fn post(url: &str, body: String) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .expect("the inbound listener answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_make_a_known_feed_or_a_sites_feeds_due_and_unknown_ones_are_faults() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 20,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, backend, clock) =
        rss_crawl_with(&server, dir.path(), "inbound_listen = \"127.0.0.1:0\"").await;
    let host = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let view = host.topology();
    let ping_url = format!(
        "http://{}/ping",
        view.inbound_addr().expect("inbound listens")
    );
    until("the first round", || {
        connector_stats(&view, "rss").polls_ok == 20
    })
    .await;
    assert_eq!(backend.count_due("rss", clock.now_ms()).await.unwrap(), 0);

    // extendedPing names the feed: that feed alone is polled again.
    let site = format!("http://{}/feeds/3/", server.addr());
    let (status, answer) = post(
        &ping_url,
        pinger::extended_ping("Feed 3", &site, &site, &server.feed_url(3)),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answer.contains("<boolean>0</boolean>") && answer.contains("1 feed(s)"),
        "{answer}"
    );
    until("feed 3 polled again", || server.requests_for(3) == 2).await;

    // A plain ping whose site URL is a feed we crawl.
    let (_, answer) = post(&ping_url, pinger::ping("Feed 5", &server.feed_url(5))).await;
    assert!(answer.contains("<boolean>0</boolean>"), "{answer}");
    until("feed 5 polled again", || server.requests_for(5) == 2).await;

    // Unknown sites, other methods and broken calls are faults and change nothing.
    let unknown = format!("http://{}/elsewhere/", server.addr());
    for (body, code) in [
        (pinger::ping("Nobody", &unknown), 1),
        (
            pinger::call("weblogUpdates.rssUpdate", &["x", &unknown]),
            -32601,
        ),
        (pinger::call("weblogUpdates.ping", &["only a name"]), -32602),
        (
            "<methodCall><methodName>weblogUpdates.ping".to_string(),
            -32700,
        ),
    ] {
        let (status, answer) = post(&ping_url, body).await;
        assert_eq!(status, 200, "XML-RPC faults travel in a 200");
        assert!(
            answer.contains("<fault>") && answer.contains(&format!("<int>{code}</int>")),
            "{answer}"
        );
    }
    let (status, _) = post(&ping_url, "x".repeat(tsunagi::inbound::MAX_BODY_BYTES + 1)).await;
    assert_eq!(status, 413, "bodies are capped");
    assert_eq!(backend.count_due("rss", clock.now_ms()).await.unwrap(), 0);

    // Pinged again at once, feed 3 is due only when the floor has passed.
    let (_, answer) = post(
        &ping_url,
        pinger::extended_ping("Feed 3", &site, &site, &server.feed_url(3)),
    )
    .await;
    assert!(answer.contains("<boolean>0</boolean>"), "{answer}");
    assert_eq!(backend.count_due("rss", clock.now_ms()).await.unwrap(), 0);
    clock.advance(tsunagi::inbound::PING_FLOOR);
    until("feed 3 polled after the floor", || {
        server.requests_for(3) == 3
    })
    .await;

    // A site's ping wakes the feeds under its path.
    let all = format!("http://{}/feeds/", server.addr());
    let (_, answer) = post(&ping_url, pinger::ping("The host", &all)).await;
    assert!(answer.contains("20 feed(s)"), "{answer}");
    until("every feed polled again", || {
        (0..20).all(|id| server.requests_for(id) >= 2)
    })
    .await;
    assert_eq!(server.requests_for(10), 2);
    let status = view.status_report().await.expect("status");
    let inbound = status.inbound.expect("the inbound listener in /status");
    assert_eq!(
        (
            inbound.pings_accepted,
            inbound.pings_refused,
            inbound.feeds_woken
        ),
        (4, 4, 23),
        "{inbound:?}"
    );
    host.shutdown().await;
    server.shutdown().await;
}
