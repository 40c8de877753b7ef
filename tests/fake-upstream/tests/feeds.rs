//! End-to-end tests of the fake feed server over real loopback HTTP: every format parses with
//! the RSS connector's reader and yields exactly `expected_item_ids`, conditional GETs, misbehaving feeds,
//! shutdown releasing hanging requests, and the stats counters.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use tsunagi_fake_upstream::{FeedFormat, FeedServer, FeedServerConfig};

/// Upper bound for anything a test awaits, so a regression fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(20);
/// 2024-01-01T00:00:00Z, the date of item 0.
const BASE_UNIX: i64 = 1_704_067_200;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

async fn get(
    client: &reqwest::Client,
    url: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = tokio::time::timeout(LIMIT, client.get(url).send())
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

/// The body as the RSS connector reads it.
fn parse(body: &[u8], url: &str) -> Result<tsunagi_rss_feed::ParsedFeed, String> {
    tsunagi_rss_feed::parse(body, url)
}

/// An RFC 3339 date as Unix seconds.
fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|err| panic!("{rfc3339:?}: {err}"))
        .timestamp()
}

/// Fetches and parses every feed and checks it against what the server says it serves.
async fn check_all_feeds(server: &FeedServer, client: &reqwest::Client, items: usize) {
    let generation = server.generation();
    for (id, url) in server.feed_urls().iter().enumerate() {
        let id = id as u32;
        let format = FeedServer::feed_format(id);
        let (status, headers, body) = get(client, url).await;
        assert_eq!(status, StatusCode::OK, "feed {id}");
        assert_eq!(headers[CONTENT_TYPE], format.content_type(), "feed {id}");
        let feed = parse(&body, url)
            .unwrap_or_else(|err| panic!("feed {id} ({format:?}) does not parse: {err}"));
        assert!(feed.warnings.is_empty(), "feed {id}: {:?}", feed.warnings);
        assert_eq!(feed.items.len(), items, "feed {id} ({format:?})");

        let ids: Vec<String> = feed.items.iter().map(|e| e.id.clone()).collect();
        assert_eq!(
            ids,
            server.expected_item_ids(id),
            "feed {id} ({format:?}) ids"
        );
        let links: Vec<String> = feed
            .items
            .iter()
            .map(|e| e.link.clone().expect("link"))
            .collect();
        assert_eq!(
            links,
            server.expected_item_links(id),
            "feed {id} ({format:?}) links"
        );

        for (i, entry) in feed.items.iter().enumerate() {
            let k = generation + (items - 1 - i) as u64;
            let title = entry.title.clone().expect("title");
            assert!(
                title.starts_with(&format!("Feed {id} item {k}: ")),
                "{title}"
            );
            assert!(
                entry.content.is_some() || entry.summary.is_some(),
                "feed {id} item {k}"
            );
            // RSS 0.91 items have no dates.
            if format != FeedFormat::Rss091 {
                let published = unix(entry.published.as_deref().expect("published"));
                assert_eq!(published, BASE_UNIX + k as i64 * 3600, "feed {id} item {k}");
                assert!(!entry.authors.is_empty(), "feed {id} item {k} authors");
            }
            if matches!(
                format,
                FeedFormat::Rss20
                    | FeedFormat::Atom10
                    | FeedFormat::JsonFeed11
                    | FeedFormat::JsonFeed10
            ) {
                assert_eq!(entry.categories.len(), 2, "feed {id} item {k} categories");
            }
        }
    }
}

#[tokio::test]
async fn every_format_parses_with_the_connectors_reader_and_ids_match() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 14,
        ..Default::default()
    })
    .await
    .expect("start");
    let client = client();
    check_all_feeds(&server, &client, 10).await;

    // One round later the window has moved by one item on every feed.
    let before: Vec<Vec<String>> = (0..14).map(|id| server.expected_item_ids(id)).collect();
    server.publish_round();
    assert_eq!(server.generation(), 1);
    for (id, old) in before.iter().enumerate() {
        let new = server.expected_item_ids(id as u32);
        assert_eq!(new.len(), 10);
        assert_eq!(&new[1..], &old[..9], "feed {id}");
        assert!(!old.contains(&new[0]), "feed {id}");
    }
    check_all_feeds(&server, &client, 10).await;
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown");
}

#[tokio::test]
async fn body_size_follows_target_and_item_count() {
    // Targets above the unpadded size are met within 10%; the default 5,000 bytes for 10 items
    // is close to the unpadded size of the richer formats, which is then served as is.
    for (items, target) in [(10, 5_000), (10, 20_000), (25, 50_000), (3, 3_000)] {
        let server = FeedServer::start(FeedServerConfig {
            feeds: 7,
            items_per_feed: items,
            target_feed_bytes: target,
            ..Default::default()
        })
        .await
        .expect("start");
        let client = client();
        for id in 0..7 {
            let (status, _, body) = get(&client, &server.feed_url(id)).await;
            assert_eq!(status, StatusCode::OK);
            let len = body.len();
            let format = FeedServer::feed_format(id);
            let max = if target == 5_000 {
                7_000
            } else {
                target * 11 / 10
            };
            assert!(
                len >= target * 9 / 10 && len <= max,
                "feed {id} ({format:?}) items {items}: {len} bytes for target {target}"
            );
            let feed = parse(&body, &server.feed_url(id)).expect("parse");
            assert_eq!(feed.items.len(), items as usize);
        }
        check_all_feeds(&server, &client, items as usize).await;
        tokio::time::timeout(LIMIT, server.shutdown())
            .await
            .expect("shutdown");
    }
}

#[tokio::test]
async fn conditional_get_answers_304_until_publish() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 3,
        cache_control_max_age: Some(300),
        ttl_minutes: Some(60),
        ..Default::default()
    })
    .await
    .expect("start");
    let client = client();
    let url = server.feed_url(0);

    let (status, headers, body) = get(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[ETAG], "\"0-0\"");
    assert_eq!(headers[CACHE_CONTROL], "max-age=300");
    let last_modified = headers[LAST_MODIFIED].to_str().expect("ascii").to_owned();
    // Newest of 10 items at generation 0 is item 9: 2024-01-01T09:00:00Z.
    assert_eq!(last_modified, "Mon, 01 Jan 2024 09:00:00 GMT");
    let feed = parse(&body, &url).expect("parse");
    assert_eq!(feed.refresh_after_seconds, Some(3600));

    let send = |header: reqwest::header::HeaderName, value: String| {
        let request = client.get(&url).header(header, value);
        async move {
            let resp = tokio::time::timeout(LIMIT, request.send())
                .await
                .expect("timed out")
                .expect("request");
            let status = resp.status();
            let headers = resp.headers().clone();
            (status, headers, resp.bytes().await.expect("body"))
        }
    };

    let (status, headers, body) = send(IF_NONE_MATCH, "\"0-0\"".into()).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[ETAG], "\"0-0\"");
    assert_eq!(headers[CACHE_CONTROL], "max-age=300");
    let (status, _, _) = send(IF_MODIFIED_SINCE, last_modified.clone()).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (status, _, _) = send(IF_NONE_MATCH, "\"0-7\"".into()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(IF_MODIFIED_SINCE, "Mon, 01 Jan 2024 08:59:59 GMT".into()).await;
    assert_eq!(status, StatusCode::OK);

    server.publish_round();
    let (status, headers, body) = send(IF_NONE_MATCH, "\"0-0\"".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[ETAG], "\"0-1\"");
    assert_eq!(headers[LAST_MODIFIED], "Mon, 01 Jan 2024 10:00:00 GMT");
    let feed = parse(&body, &url).expect("parse");
    assert_eq!(feed.items[0].id, server.expected_item_ids(0)[0]);
    let (status, _, _) = send(IF_MODIFIED_SINCE, last_modified).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(IF_NONE_MATCH, "\"0-1\"".into()).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    let stats = server.stats();
    assert_eq!(stats.requests, 8);
    assert_eq!(stats.not_modified, 3);
    assert_eq!(stats.ok, 5);
    assert_eq!(stats.errors, 0);
    assert_eq!(server.requests_for(0), 8);
    assert_eq!(server.requests_for(1), 0);
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown");
}

#[tokio::test]
async fn failing_malformed_and_unknown_feeds() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 9,
        failing: vec![7],
        malformed: (0..7).collect(),
        ..Default::default()
    })
    .await
    .expect("start");
    let client = client();

    for id in 0..7 {
        let format = FeedServer::feed_format(id);
        let (status, headers, body) = get(&client, &server.feed_url(id)).await;
        assert_eq!(status, StatusCode::OK, "feed {id}");
        assert_eq!(headers[CONTENT_TYPE], format.content_type());
        assert!(headers.get(ETAG).is_none());
        assert!(
            parse(&body, &server.feed_url(id)).is_err(),
            "malformed feed {id} ({format:?}) parsed:\n{}",
            String::from_utf8_lossy(&body)
        );
        if matches!(format, FeedFormat::JsonFeed10 | FeedFormat::JsonFeed11) {
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
        }
    }

    let (status, headers, body) = get(&client, &server.feed_url(7)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    assert!(String::from_utf8_lossy(&body).contains("500"));

    // Feed 8 is normal.
    let (status, _, _) = get(&client, &server.feed_url(8)).await;
    assert_eq!(status, StatusCode::OK);

    let base = format!("http://{}", server.addr());
    for path in [
        "/feeds/9",
        "/feeds/abc",
        "/feeds/",
        "/feeds/99999999999",
        "/",
        "/feeds/1/items/2",
    ] {
        let (status, _, _) = get(&client, &format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let resp = client.post(server.feed_url(8)).send().await.expect("post");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(server.expected_item_ids(9).is_empty());
    assert_eq!(server.requests_for(9), 0);

    let stats = server.stats();
    assert_eq!(stats.requests, 7 + 1 + 1 + 6 + 1);
    assert_eq!(stats.ok, 1);
    assert_eq!(stats.errors, 7 + 1 + 6 + 1);
    assert_eq!(stats.not_modified, 0);
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown");
}

#[tokio::test]
async fn slow_feed_answers_after_its_delay() {
    let delay = Duration::from_secs(1);
    let server = FeedServer::start(FeedServerConfig {
        feeds: 2,
        slow: vec![1],
        slow_delay: delay,
        ..Default::default()
    })
    .await
    .expect("start");
    let client = client();
    let started = Instant::now();
    let (status, _, body) = get(&client, &server.feed_url(1)).await;
    assert!(started.elapsed() >= delay);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        parse(&body, &server.feed_url(1))
            .expect("parse")
            .items
            .len(),
        10
    );
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown");

    // Other feeds do not wait for a slow one: with a slow request pending (for an hour), a
    // normal feed is answered, and the slow one is still waiting. Order, not wall time.
    let server = FeedServer::start(FeedServerConfig {
        feeds: 2,
        slow: vec![1],
        slow_delay: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .expect("start");
    let pending = tokio::spawn(client.get(server.feed_url(1)).send());
    until_requests(&server, 1, 1).await;
    let (status, _, _) = get(&client, &server.feed_url(0)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!pending.is_finished(), "the slow feed is still pending");
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown");
    let released = tokio::time::timeout(LIMIT, pending)
        .await
        .expect("shutdown released the slow request")
        .expect("join");
    if let Ok(resp) = released {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

/// Waits (without sleeping) until the server has seen `n` requests for feed `id`.
async fn until_requests(server: &FeedServer, id: u32, n: u64) {
    tokio::time::timeout(LIMIT, async {
        while server.requests_for(id) < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("request never reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_hanging_requests() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 3,
        hanging: vec![0],
        slow: vec![1],
        slow_delay: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .expect("start");
    let client = client();
    let hanging = tokio::spawn(client.get(server.feed_url(0)).send());
    let slow = tokio::spawn(client.get(server.feed_url(1)).send());
    until_requests(&server, 0, 1).await;
    until_requests(&server, 1, 1).await;
    // An idle keep-alive connection must not hold shutdown up either.
    let (status, _, _) = get(&client, &server.feed_url(2)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!hanging.is_finished());

    let started = Instant::now();
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown hung");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited for the grace period"
    );
    for task in [hanging, slow] {
        let answer = tokio::time::timeout(LIMIT, task)
            .await
            .expect("request still hanging after shutdown")
            .expect("join");
        // Released with 503 (or the connection closed) — either way, no longer hanging.
        if let Ok(resp) = answer {
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}

#[tokio::test]
async fn server_in_its_own_thread_serves_and_shuts_down() {
    let server = FeedServer::start_in_thread(
        FeedServerConfig {
            feeds: 7,
            hanging: vec![3],
            ..Default::default()
        },
        1,
    )
    .expect("start");
    assert!(server.addr().ip().is_loopback());
    let client = client();
    check_all_feeds_except(&server, &client, 3).await;
    let hanging = tokio::spawn(client.get(server.feed_url(3)).send());
    until_requests(&server, 3, 1).await;
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown hung");
    let answer = tokio::time::timeout(LIMIT, hanging)
        .await
        .expect("hanging request not released")
        .expect("join");
    if let Ok(resp) = answer {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    // Dropping a running server neither hangs nor panics, in either mode.
    let threaded = FeedServer::start_in_thread(FeedServerConfig::default(), 1).expect("start");
    drop(threaded);
    let local = FeedServer::start(FeedServerConfig::default())
        .await
        .expect("start");
    drop(local);
}

async fn check_all_feeds_except(server: &FeedServer, client: &reqwest::Client, skip: u32) {
    for id in (0..7).filter(|id| *id != skip) {
        let (status, _, body) = get(client, &server.feed_url(id)).await;
        assert_eq!(status, StatusCode::OK);
        let feed = parse(&body, &server.feed_url(id)).expect("parse");
        let ids: Vec<String> = feed.items.into_iter().map(|e| e.id).collect();
        assert_eq!(ids, server.expected_item_ids(id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_and_bytes() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 20,
        failing: vec![5],
        ..Default::default()
    })
    .await
    .expect("start");
    let client = client();
    let mut ok_bytes = 0u64;
    let mut error_bytes = 0u64;
    let mut tasks = Vec::new();
    for round in 0..3 {
        for id in 0..20u32 {
            let client = client.clone();
            let url = server.feed_url(id);
            tasks.push(tokio::spawn(async move {
                let (status, _, body) = get(&client, &url).await;
                (round, id, status, body.len() as u64)
            }));
        }
    }
    for task in tasks {
        let (_, id, status, len) = task.await.expect("join");
        if id == 5 {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            error_bytes += len;
        } else {
            assert_eq!(status, StatusCode::OK);
            ok_bytes += len;
        }
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 60);
    assert_eq!(stats.ok, 57);
    assert_eq!(stats.errors, 3);
    assert_eq!(stats.not_modified, 0);
    assert_eq!(stats.bytes_sent, ok_bytes + error_bytes);
    for id in 0..20 {
        assert_eq!(server.requests_for(id), 3, "feed {id}");
    }
    assert_eq!(server.requests_for(20), 0);
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .expect("shutdown");
}
