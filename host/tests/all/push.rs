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

/// The RSS connector with WebSub on, allowed to reach the feeds and the hub, its deliveries
/// capped at 256 KiB.
fn websub_config(dir: &std::path::Path, feeds_port: u16, hub_port: u16) -> tsunagi::config::Config {
    let text = format!(
        r#"{host}
[connectors.rss]
plugin = "{plugin}"
role = "poller"
concurrency = 8
websub = true

[connectors.rss.schedule]
min_interval = "10m"
max_interval = "1h"

[connectors.rss.limits]
call_timeout = "20s"
response_size = "256KiB"

[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {feeds_port}

[[connectors.rss.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {hub_port}
"#,
        host = host_section("inbound_listen = \"127.0.0.1:0\""),
        plugin = plugin("rss").display()
    );
    write_config(dir, &text)
}

async fn items_of(backend: &dyn tsunagi::backends::Backend, target: &str) -> Vec<String> {
    let query = tsunagi::backends::ItemQuery {
        connector: Some("rss".into()),
        target: Some(target.to_string()),
        ..Default::default()
    };
    backend
        .list_items(&query)
        .await
        .expect("items")
        .into_iter()
        .map(|stored| stored.item.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websub_subscribes_takes_signed_deliveries_at_once_and_renews_its_leases() {
    use tsunagi_fake_upstream::hub::FakeHub;
    let hub = FakeHub::start(100).await.unwrap();
    // Feeds 0 (RSS 2.0) and 1 (Atom 1.0) name the hub; 2 and 3 (JSON Feed, RSS 1.0) do not.
    let server = FeedServer::start(FeedServerConfig {
        feeds: 4,
        hub: Some(hub.url()),
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let hub_port: u16 = hub
        .url()
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = websub_config(dir.path(), server.addr().port(), hub_port);
    let backend = open_backend(&config).await;
    let clock = tsunagi::clock::ManualClock::starting_at(tsunagi::clock::SystemClock.now_ms());
    backend
        .add_targets("rss", &server.feed_urls(), clock.now_ms())
        .await
        .unwrap();
    let host = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let view = host.topology();
    let inbound = view.inbound_addr().expect("inbound listens");

    // The first round finds the hubs; the host subscribes and passes the verification.
    until("the first round", || {
        connector_stats(&view, "rss").polls_ok == 4
    })
    .await;
    assert!(
        hub.until_verified(2, Duration::from_secs(30)).await,
        "two verified subscriptions"
    );
    let subscriptions = hub.subscriptions();
    let mut topics: Vec<&str> = subscriptions.iter().map(|s| s.topic.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(topics, [server.feed_url(0), server.feed_url(1)]);
    for subscription in &subscriptions {
        let id = subscription
            .callback
            .strip_prefix(&format!("http://{inbound}/websub/"))
            .expect("a callback on the inbound listener");
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(subscription.secret.len() >= 32, "a secret per subscription");
    }
    assert_ne!(subscriptions[0].secret, subscriptions[1].secret);

    // A published update is stored at once, from the delivery, without a fetch.
    server.publish_round();
    let (content_type, body) = server.document(0);
    let newest = server.expected_item_ids(0)[0].clone();
    let fetched_before = server.requests_for(0);
    assert!(
        !items_of(backend.as_ref(), &server.feed_url(0))
            .await
            .contains(&newest)
    );
    let outcome = hub.publish(&server.feed_url(0), content_type, &body).await;
    assert_eq!(outcome.len(), 1);
    assert_eq!(outcome[0].status, 202, "accepted once stored");
    // How soon is for `tsunagi bench websub` to measure; here, that it comes by the push.
    let stored = tokio::time::timeout(Duration::from_secs(60), async {
        while !items_of(backend.as_ref(), &server.feed_url(0))
            .await
            .contains(&newest)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(stored.is_ok(), "the delivered item is stored");
    assert_eq!(
        server.requests_for(0),
        fetched_before,
        "nothing fetched: the delivery answered"
    );
    // Subscribed: the next poll is the safety net at max_interval.
    until("the pushed poll committed", || {
        connector_stats(&view, "rss").polls_ok == 5
    })
    .await;
    let target = backend
        .get_target("rss", &server.feed_url(0))
        .await
        .unwrap()
        .unwrap();
    assert!(
        target.next_run_at >= clock.now_ms() + 3_600_000,
        "polled again only at max_interval"
    );

    // A forged signature stores nothing and wakes nothing.
    server.publish_round();
    let (content_type, body) = server.document(1);
    let items_before = items_of(backend.as_ref(), &server.feed_url(1)).await;
    let forged = hub
        .publish_signed_with(&server.feed_url(1), content_type, &body, "not-the-secret")
        .await;
    assert_eq!(
        forged[0].status, 202,
        "acknowledged, so a forger learns nothing"
    );
    assert_eq!(backend.count_due("rss", clock.now_ms()).await.unwrap(), 0);
    assert_eq!(
        items_of(backend.as_ref(), &server.feed_url(1)).await,
        items_before
    );

    // Strangers: an unknown id is gone; a wrong topic or an unsubscribe is not ours; a body
    // over the connector's response_size is refused.
    let http = reqwest::Client::new();
    let unknown = format!("http://{inbound}/websub/{}", "0".repeat(32));
    let status = http.post(&unknown).body("x").send().await.unwrap().status();
    assert_eq!(status, 410);
    let callback = &subscriptions[0].callback;
    for query in [
        "hub.mode=subscribe&hub.topic=http://elsewhere/&hub.challenge=c",
        "hub.mode=unsubscribe&hub.topic=x&hub.challenge=c",
    ] {
        let status = http
            .get(format!("{callback}?{query}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{query}");
    }
    let huge = "x".repeat(300 * 1024);
    let signed = tsunagi_fake_upstream::hub::sign(&subscriptions[0].secret, huge.as_bytes());
    let status = http
        .post(callback)
        .header("x-hub-signature", signed)
        .body(huge)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 413);

    // Nine tenths into the lease, both subscriptions are renewed (and verified again).
    clock.advance(Duration::from_secs(91));
    assert!(
        hub.until_verified(4, Duration::from_secs(30)).await,
        "renewed before expiry"
    );
    assert_eq!(hub.requests(), 4);

    let status = view.status_report().await.expect("status");
    let websub = status.inbound.expect("inbound").websub;
    assert_eq!(
        (
            websub.subscriptions.active,
            websub.deliveries,
            websub.bad_signatures
        ),
        (2, 1, 1),
        "{websub:?}"
    );
    assert_eq!(websub.refused_deliveries, 1, "the body over the cap");
    let shown = serde_json::to_string(&websub).unwrap();
    for subscription in &subscriptions {
        assert!(
            !shown.contains(&subscription.secret),
            "no secret in /status"
        );
    }
    host.shutdown().await;
    server.shutdown().await;
}
