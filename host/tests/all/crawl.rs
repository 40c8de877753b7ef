//! End to end: the RSS component crawling the fake feed server through the real host
//! (SQLite, sandbox, egress) on 127.0.0.1.

use crate::common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use tsunagi::backends::{ItemQuery, ItemStore};
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

const HOUR: Duration = Duration::from_secs(3600);

async fn stored_ids(backend: &dyn ItemStore, target: &str) -> BTreeSet<String> {
    let query = ItemQuery {
        connector: Some("rss".into()),
        target: Some(target.into()),
        limit: 1000,
        ..ItemQuery::default()
    };
    backend
        .list_items(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.item.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_of_1000_feeds_stores_every_item_exactly_once() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 1000,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, backend, clock) = rss_crawl(&server, dir.path()).await;

    let stats = run_round(&config, backend.clone(), &clock).await;

    assert_eq!(stats.polls_failed, 0, "{stats:?}");
    assert_eq!(stats.polls_ok, 1000);
    assert_eq!(stats.items_new, 10_000);
    assert_eq!(backend.count_items(Some("rss")).await.unwrap(), 10_000);
    for id in 0..1000 {
        assert_eq!(server.requests_for(id), 1, "feed {id} fetched once");
    }
    for id in (0..1000).step_by(37) {
        let expected: BTreeSet<String> = rss_item_ids(&server, id).into_iter().collect();
        assert_eq!(
            stored_ids(backend.as_ref(), &server.feed_url(id)).await,
            expected,
            "feed {id}"
        );
    }
    // The id rule, on fixed values: the feed's own ids are kept as they are — RSS 2.0's guids
    // (URNs) and RSS 1.0's `rdf:about` (the item's link), never a synthesised hash.
    let rss20: BTreeSet<String> = (0..10)
        .map(|k| format!("urn:tsunagi-fake:feed:0:item:{k}"))
        .collect();
    assert_eq!(
        stored_ids(backend.as_ref(), &server.feed_url(0)).await,
        rss20
    );
    let rss10: BTreeSet<String> = (0..10)
        .map(|k| format!("{}/items/{k}", server.feed_url(3)))
        .collect();
    assert_eq!(
        stored_ids(backend.as_ref(), &server.feed_url(3)).await,
        rss10
    );
    let target = backend
        .get_target("rss", &server.feed_url(5))
        .await
        .unwrap()
        .unwrap();
    assert!(
        target.etag.is_some() && target.last_modified.is_some(),
        "{target:?}"
    );
    assert!(
        target.next_run_at >= clock.now_ms() + 10 * 60_000,
        "next run respects min_interval"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_round_is_answered_304_and_only_new_items_are_stored() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 200,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, backend, clock) = rss_crawl(&server, dir.path()).await;

    let first = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((first.polls_ok, first.items_new), (200, 2000));

    clock.advance(2 * HOUR);
    let second = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(second.polls_ok, 200);
    assert_eq!(second.not_modified, 200, "every feed answered 304");
    assert_eq!(second.items_new, 0);
    assert_eq!(server.stats().not_modified, 200);

    server.publish_round();
    clock.advance(2 * HOUR);
    let third = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(third.not_modified, 0);
    assert_eq!(third.items_new, 200, "one new item per feed");
    assert_eq!(backend.count_items(Some("rss")).await.unwrap(), 2200);
    let expected: BTreeSet<String> = rss_item_ids(&server, 9).into_iter().collect();
    let stored = stored_ids(backend.as_ref(), &server.feed_url(9)).await;
    assert!(
        stored.is_superset(&expected),
        "newest items of feed 9 stored"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_failing_feeds_are_recorded_and_backed_off() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 40,
        malformed: vec![3, 10],
        failing: vec![4],
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, backend, clock) = rss_crawl(&server, dir.path()).await;

    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((stats.polls_ok, stats.polls_failed), (37, 3), "{stats:?}");

    for id in [3, 10] {
        let target = backend
            .get_target("rss", &server.feed_url(id))
            .await
            .unwrap()
            .unwrap();
        let error = target.last_error.clone().unwrap_or_default();
        assert_eq!(target.error_count, 1);
        assert!(
            error.contains("bad response") && error.contains("malformed"),
            "{error}"
        );
        let wait = target.next_run_at - clock.now_ms();
        assert!(
            (54_000..=66_000).contains(&wait),
            "first backoff is retry.first_delay (1m) ± 10% jitter: {wait}"
        );
        assert!(
            stored_ids(backend.as_ref(), &server.feed_url(id))
                .await
                .is_empty()
        );
    }
    let failing = backend
        .get_target("rss", &server.feed_url(4))
        .await
        .unwrap()
        .unwrap();
    assert!(
        failing
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("500"),
        "{failing:?}"
    );

    // Nothing is due again before the backoff ends.
    let again = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(again.polls(), 0);
    // After it, only the failed ones are due, and they fail again with a doubled backoff.
    clock.advance(Duration::from_secs(70));
    let retry = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((retry.polls_ok, retry.polls_failed), (0, 3));
    let target = backend
        .get_target("rss", &server.feed_url(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(target.error_count, 2);
    let wait = target.next_run_at - clock.now_ms();
    assert!(
        (108_000..=132_000).contains(&wait),
        "second backoff doubles (2m ± 10% jitter): {wait}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_feed_does_not_delay_the_others() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 120,
        hanging: vec![0],
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("claim_lease = \"300s\"")
        .replace("shutdown_grace = \"10s\"", "shutdown_grace = \"200ms\"")
        + &rss_connector(server.addr().port(), "")
            .replace("concurrency = 32", "concurrency = 4")
            .replace("call_timeout = \"20s\"", "call_timeout = \"120s\"\nfirst_byte_timeout = \"120s\"\nrequest_timeout = \"120s\"");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    backend
        .add_targets("rss", &server.feed_urls(), clock.now_ms())
        .await
        .unwrap();

    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let stats = running.topology().connectors().all()[0].stats.clone();
    // Feed 0 never answers; it holds one of the four slots while the rest keep moving.
    let all_others = tokio::time::timeout(Duration::from_secs(60), async {
        while stats.snapshot().polls_ok < 119 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        all_others.is_ok(),
        "the other feeds finished: {:?}",
        stats.snapshot()
    );
    let snapshot = stats.snapshot();
    assert_eq!(
        snapshot.in_flight, 1,
        "only the hanging feed is still running"
    );
    assert_eq!(snapshot.polls_failed, 0);
    assert_eq!(server.requests_for(0), 1);
    running.shutdown().await;
    server.shutdown().await;
}

/// Validators survive 304s that carry none (as many servers answer): the second and third
/// polls both send the validators of the first 200, and the third is answered 304 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_are_kept_across_a_bare_304_and_sent_again_for_the_next() {
    use tsunagi_fake_upstream::Conditionals;
    let server = FeedServer::start(FeedServerConfig {
        feeds: 7,
        bare_not_modified: true,
        record_conditionals: true,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, backend, clock) = rss_crawl(&server, dir.path()).await;

    let first = run_round(&config, backend.clone(), &clock).await;
    assert_eq!((first.polls_ok, first.not_modified), (7, 0), "{first:?}");
    // Generation 0 serves items 0..=9; the newest, item 9, is dated 2024-01-01 09:00 UTC.
    const LAST_MODIFIED: &str = "Mon, 01 Jan 2024 09:00:00 GMT";
    for id in 0..7 {
        let target = backend
            .get_target("rss", &server.feed_url(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(target.etag.as_deref(), Some(format!("\"{id}-0\"").as_str()));
        assert_eq!(target.last_modified.as_deref(), Some(LAST_MODIFIED));
    }

    for round in 2..=3 {
        clock.advance(2 * HOUR);
        let stats = run_round(&config, backend.clone(), &clock).await;
        assert_eq!(
            (stats.polls_ok, stats.not_modified, stats.items_new),
            (7, 7, 0),
            "round {round}: every feed answered 304: {stats:?}"
        );
        for id in 0..7 {
            let target = backend
                .get_target("rss", &server.feed_url(id))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (target.etag.as_deref(), target.last_modified.as_deref()),
                (Some(format!("\"{id}-0\"").as_str()), Some(LAST_MODIFIED)),
                "round {round}: feed {id} kept the validators of its 200"
            );
        }
    }
    assert_eq!(server.stats().not_modified, 14);
    for id in 0..7 {
        let conditional = Conditionals {
            if_none_match: Some(format!("\"{id}-0\"")),
            if_modified_since: Some(LAST_MODIFIED.to_string()),
        };
        assert_eq!(
            server.conditional_requests(id),
            [
                Conditionals::default(),
                conditional.clone(),
                conditional.clone()
            ],
            "feed {id}: the first request is unconditional, both later ones carry the first \
             answer's validators"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_malformed_and_edge_case_feeds_neither_crash_nor_hang_the_host() {
    use tsunagi_fake_upstream::corpus::{CorpusServer, malformed_corpus, seeds_from_dir};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/rss-feed/fixtures/bodies");
    let seeds = seeds_from_dir(&fixtures).expect("the reader's fixture bodies");
    let server = CorpusServer::start(malformed_corpus(&seeds, 4_004))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &(host_section("") + &rss_connector(server.addr().port(), "")),
    );
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let urls: Vec<String> = (0..server.documents().len())
        .map(|n| server.url(n))
        .collect();
    backend
        .add_targets("rss", &urls, clock.now_ms())
        .await
        .unwrap();

    // A hang would stop the round; the guard turns it into a failure naming the count.
    let stats = tokio::time::timeout(
        Duration::from_secs(900),
        run_round(&config, backend.clone(), &clock),
    )
    .await
    .expect("the corpus round ended");

    assert_eq!(stats.polls(), 4_004, "{stats:?}");
    assert_eq!(server.requests(), 4_004, "each document fetched once");
    assert!(
        stats.polls_ok >= 500 && stats.polls_failed >= 500,
        "{stats:?}"
    );
    for (n, url) in urls.iter().enumerate() {
        let target = backend.get_target("rss", url).await.unwrap().unwrap();
        let Some(error) = target.last_error else {
            continue;
        };
        let origin = &server.documents()[n].origin;
        // Refused by the reader with its reason — never a trap, a timeout or a memory cap.
        assert!(
            error.contains("bad response")
                && ["malformed feed", "not a feed", "unread feed"]
                    .iter()
                    .any(|kind| error.contains(kind)),
            "{origin}: {error}"
        );
        assert!(
            error.len() <= 2_048,
            "{origin}: an error of {} bytes",
            error.len()
        );
    }
    server.shutdown();
}
