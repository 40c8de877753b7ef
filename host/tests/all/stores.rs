//! `[backends]` end to end: a store it names that cannot be reached stops the start at its
//! field, and a reload that would move a concern to another store is refused while the host
//! keeps serving from the one it started with. (Redis serving budgets across hosts is in
//! `processes`; rankings in Redis in `rankings`.)

use crate::common::*;
use tsunagi::backends::RankingStore;
use tsunagi::backends::redis::rankings::RedisRankings;
use tsunagi::backends::redis::testing::TestPrefix;
use tsunagi::clock::ManualClock;
use tsunagi::pipeline::RunMode;
use tsunagi::topology::{Topology, TopologyOptions};

#[tokio::test]
async fn an_unreachable_backends_store_stops_the_start_at_its_field_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback.
    let config = write_config(
        dir.path(),
        &(host_section("")
            + "\n[rankings.q]\n\n[backends]\nrankings = \"redis://:hunter2@127.0.0.1:9/0\"\n"),
    );
    let backend = open_backend(&config).await;
    let error = match Topology::start(config, backend, TopologyOptions::default()).await {
        Ok(_) => panic!("a host must not start without the store its config names"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("tsunagi.toml:"), "{error}");
    assert!(error.contains("backends.rankings"), "{error}");
    assert!(error.contains("127.0.0.1:9"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_a_store_is_refused_and_the_host_keeps_its_own() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let base = host_section("admin_listen = \"127.0.0.1:0\"") + "\n[rankings.q]\n";
    let backends = format!("\n[backends]\nrankings = \"{}\"\n", redis.url());
    let config = write_config(dir.path(), &(base.clone() + &backends));
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(1_796_569_140_000);
    let host = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let view = host.topology();
    view.rankings().add("q", "tea", 2).await.unwrap();

    std::fs::write(dir.path().join("tsunagi.toml"), base).unwrap();
    let report = view.reloader().reload(None).await;
    assert!(!report.ok, "{report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("backends") && error.contains("restart"),
        "{error}"
    );

    // Still counting into Redis, not the database.
    view.rankings().add("q", "tea", 3).await.unwrap();
    let in_redis = RedisRankings::new(redis.open().await);
    let top = in_redis.rank_top("q:all-time", 5).await.unwrap();
    assert_eq!(
        (top[0].member.as_str(), top[0].score),
        ("tea", 5),
        "{top:?}"
    );
    assert_eq!(backend.rank_boards("").await.unwrap(), []);
    host.shutdown().await;
}

/// Two hosts with `[backends] cluster` list each other in `/status` with the plugin each
/// connector runs (and which of them differ from this host's); one that stops leaves the list
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_hosts_list_each_other_with_their_plugins_and_leave_when_they_stop() {
    let redis = TestPrefix::new();
    let cluster = format!("\n[backends]\ncluster = \"{}\"\n", redis.url());
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let config_a = write_config(
        dir_a.path(),
        &(host_section("") + &rss_connector(9, "") + &cluster),
    );
    let config_b = write_config(dir_b.path(), &(host_section("") + &cluster));
    let clock = ManualClock::starting_at(1_796_569_140_000);
    let a = start_host(
        &config_a,
        open_backend(&config_a).await,
        &clock,
        RunMode::Forever,
    )
    .await;
    let b = start_host(
        &config_b,
        open_backend(&config_b).await,
        &clock,
        RunMode::Forever,
    )
    .await;
    let (view_a, view_b) = (a.topology(), b.topology());
    let cluster_of = |view: std::sync::Arc<Topology>| async move {
        view.status_report()
            .await
            .unwrap()
            .cluster
            .expect("a cluster section")
    };
    let both = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let status = cluster_of(view_a.clone()).await;
            if status.hosts.len() == 2 {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both hosts listed");
    assert_eq!(both.error, None);
    let me = both.hosts.iter().find(|h| h.this_host).expect("this host");
    let other = both.hosts.iter().find(|h| !h.this_host).expect("the other");
    assert_eq!(me.card.worker_id, view_a.worker_id());
    assert_eq!(other.card.worker_id, view_b.worker_id());
    let rss = view_a.connectors().get("rss").expect("rss runs").sha256();
    assert_eq!(me.card.plugins.get("rss"), Some(&rss));
    assert!(me.differs_from_this_host.is_empty(), "{me:?}");
    assert_eq!(other.differs_from_this_host, ["rss"], "B runs no rss");

    b.shutdown().await;
    let hosts: Vec<String> = cluster_of(view_a.clone())
        .await
        .hosts
        .into_iter()
        .map(|h| h.card.worker_id)
        .collect();
    assert_eq!(
        hosts,
        [view_a.worker_id().to_string()],
        "B left when it stopped"
    );
    a.shutdown().await;
}

/// Retention purges done jobs on the Redis queue too (`purge_done_jobs`), past
/// `host.keep_done_jobs`, leaving recent done jobs and dead ones.
#[tokio::test]
async fn retention_purges_done_jobs_on_the_redis_queue() {
    use std::sync::Arc;
    use std::time::Duration;
    use tsunagi::backends::redis::queue::RedisJobQueue;
    use tsunagi::backends::{JobQueue, NewJob};
    use tsunagi::clock::Clock;
    use tsunagi::retention::{Retention, RetentionRules};

    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &host_section("keep_done_jobs = \"1h\""));
    let backend = open_backend(&config).await;
    let queue = RedisJobQueue::new(redis.open().await);
    let clock = ManualClock::starting_at(1_796_569_140_000);
    let lease = Duration::from_secs(60);
    let finish = async |count: usize, fail: bool| {
        for n in 0..count {
            let payload = format!("{{\"n\":{n}}}");
            queue
                .enqueue(NewJob::new("posts", payload, 1, clock.now_ms()))
                .await
                .unwrap();
        }
        let leased = queue
            .lease_jobs("posts", "w", clock.now_ms(), lease, 100)
            .await
            .unwrap();
        assert_eq!(leased.len(), count);
        for job in &leased {
            let held = if fail {
                queue.fail_job(job, "gone", None, clock.now_ms()).await
            } else {
                queue.complete_job(job, clock.now_ms()).await
            };
            assert!(held.unwrap());
        }
    };
    finish(3, false).await;
    finish(1, true).await;
    clock.advance(Duration::from_secs(2 * 3600));
    finish(2, false).await;

    let retention = Retention::new(
        backend,
        Arc::new(clock.clone()),
        RetentionRules::from_config(&config),
    )
    .with_redis_queue(Some(queue.clone()));
    let report = retention
        .pass(&tokio_util::sync::CancellationToken::new())
        .await;
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(report.done_jobs_purged, 3, "{report:?}");
    let counts = queue.queue_counts("posts").await.unwrap();
    assert_eq!((counts.done, counts.dead), (2, 1), "{counts:?}");
}

/// A reload that would move the handler queues out of Redis (or into it) is refused: jobs
/// queued or leased in one store would be stranded by a switch to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_the_job_queue_is_refused() {
    let redis = TestPrefix::new();
    let dir = tempfile::tempdir().unwrap();
    let base = host_section("admin_listen = \"127.0.0.1:0\"");
    let backends = format!("\n[backends]\nqueue = \"{}\"\n", redis.url());
    let config = write_config(dir.path(), &(base.clone() + &backends));
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(1_796_569_140_000);
    let host = start_host(&config, backend, &clock, RunMode::Forever).await;
    let view = host.topology();

    std::fs::write(dir.path().join("tsunagi.toml"), base).unwrap();
    let report = view.reloader().reload(None).await;
    assert!(!report.ok, "{report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("backends") && error.contains("restart"),
        "{error}"
    );
    host.shutdown().await;
}
