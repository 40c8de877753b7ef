//! Runs the parts of the conformance suite Redis offers — the job queue, rankings and rate-limit
//! budgets — each case under a key prefix of its own on the server `TSUNAGI_TEST_REDIS` names
//! (default: the local one `scripts/services` starts), plus Redis-specific checks: budgets on
//! Redis's own clock, the cross-host lock, the queue's rescues by `XAUTOCLAIM`.
//!
//! The server must be up: a case fails, naming the URL, rather than skipping.

use std::sync::Arc;
use std::time::Duration;
use tsunagi_backends::conformance::T0;
use tsunagi_backends::conformance::{StoreFuture, TestStore};
use tsunagi_backends::coordination::{ClusterLock, RateLimitStore};
use tsunagi_backends::ratelimit::{Quota, Reservation};
use tsunagi_backends::redis::budgets::RedisBudgets;
use tsunagi_backends::redis::lock::RedisLock;
use tsunagi_backends::redis::queue::RedisJobQueue;
use tsunagi_backends::redis::rankings::RedisRankings;
use tsunagi_backends::redis::testing::TestPrefix;
use tsunagi_backends::{EarlierOutcome, JobQueue, NewJob, QueueCounts, RankingStore};

async fn redis_rankings() -> TestStore<dyn RankingStore> {
    let prefix = Arc::new(TestPrefix::new());
    let rankings = Arc::new(RedisRankings::new(prefix.open().await));
    let again = prefix.clone();
    let reopen = move || -> StoreFuture<dyn RankingStore> {
        let prefix = again.clone();
        Box::pin(async move {
            Arc::new(RedisRankings::new(prefix.open().await)) as Arc<dyn RankingStore>
        })
    };
    TestStore::new(rankings as Arc<dyn RankingStore>, reopen).keep_alive(prefix)
}

async fn redis_budgets() -> TestStore<dyn RateLimitStore> {
    let prefix = Arc::new(TestPrefix::new());
    let budgets = Arc::new(RedisBudgets::on_caller_clock(prefix.open().await));
    let again = prefix.clone();
    let reopen = move || -> StoreFuture<dyn RateLimitStore> {
        let prefix = again.clone();
        Box::pin(async move {
            Arc::new(RedisBudgets::on_caller_clock(prefix.open().await)) as Arc<dyn RateLimitStore>
        })
    };
    TestStore::new(budgets as Arc<dyn RateLimitStore>, reopen).keep_alive(prefix)
}

async fn redis_jobs() -> TestStore<dyn JobQueue> {
    let prefix = Arc::new(TestPrefix::new());
    let jobs = Arc::new(RedisJobQueue::new(prefix.open().await));
    let again = prefix.clone();
    let reopen = move || -> StoreFuture<dyn JobQueue> {
        let prefix = again.clone();
        Box::pin(
            async move { Arc::new(RedisJobQueue::new(prefix.open().await)) as Arc<dyn JobQueue> },
        )
    };
    TestStore::new(jobs as Arc<dyn JobQueue>, reopen).keep_alive(prefix)
}

tsunagi_backends::job_conformance_tests!(redis_jobs);
tsunagi_backends::ranking_conformance_tests!(redis_rankings);
tsunagi_backends::budget_conformance_tests!(redis_budgets);

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("in range")
}

/// Two hosts whose clocks are an hour apart share one budget on Redis's clock: the second
/// host's request is denied for the rest of the emission interval, told on its own clock.
#[tokio::test]
async fn hosts_with_skewed_clocks_share_one_budget_on_the_servers_clock() {
    let prefix = TestPrefix::new();
    let host_a = RedisBudgets::new(prefix.open().await);
    let host_b = RedisBudgets::new(prefix.open().await);
    let one_per_minute = Quota::parse("1/min", Some(1)).expect("quota");
    let a_now = now_ms();
    let b_now = a_now + 3_600_000;
    assert!(
        host_a
            .reserve("x", &one_per_minute, a_now, 0)
            .await
            .expect("reserve")
            .is_granted()
    );
    match host_b
        .reserve("x", &one_per_minute, b_now, 0)
        .await
        .expect("reserve")
    {
        Reservation::Denied { retry_at } => {
            let wait = retry_at - b_now;
            // The slot is a minute after A's booking on the server, less what has passed.
            assert!(
                (50_000..=60_000).contains(&wait),
                "B waits {wait} ms on its own clock"
            );
        }
        granted => panic!("an hour's skew must not let B through: {granted:?}"),
    }
    // A push-back is placed on the server's clock the same way: 30 s from B's now.
    host_b
        .push_back("y", &one_per_minute, b_now, b_now + 30_000)
        .await
        .expect("push back");
    let fill = host_a
        .fill("y", &one_per_minute, a_now)
        .await
        .expect("fill");
    let wait = fill.next_free_at - a_now;
    assert!((25_000..=30_001).contains(&wait), "A sees {wait} ms");
    // The budget's key expires once the budget is full again.
    let mut connection = redis::Client::open(prefix.url().split('?').next().unwrap())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:budget:x", prefix.prefix()))
        .query_async(&mut connection)
        .await
        .expect("pttl");
    assert!((1..=60_000).contains(&ttl), "ttl {ttl}");
}

/// The lock is held by one holder at a time, only its holder gives it back, and a crashed
/// holder's lock expires.
#[tokio::test]
async fn the_cross_host_lock_has_one_holder_and_expires() {
    let prefix = TestPrefix::new();
    let host_a = RedisLock::new(prefix.open().await);
    let host_b = RedisLock::new(prefix.open().await);
    assert!(
        host_a
            .try_lock("refresh", "a-1", Duration::from_secs(30))
            .await
            .expect("lock")
    );
    assert!(
        !host_b
            .try_lock("refresh", "b-1", Duration::from_secs(30))
            .await
            .expect("lock")
    );
    assert!(
        !host_b.unlock("refresh", "b-1").await.expect("unlock"),
        "not B's to give"
    );
    assert!(host_a.unlock("refresh", "a-1").await.expect("unlock"));
    assert!(
        host_b
            .try_lock("refresh", "b-2", Duration::from_millis(50))
            .await
            .expect("lock")
    );
    // B "crashes": its lock expires by itself (awaited by polling the server, not by a sleep
    // standing in for it).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !host_a
        .try_lock("refresh", "a-2", Duration::from_secs(30))
        .await
        .expect("lock")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired lock was never freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !host_b.unlock("refresh", "b-2").await.expect("unlock"),
        "B's lock is long gone"
    );
    assert!(host_a.unlock("refresh", "a-2").await.expect("unlock"));
}

/// A subscriber through a proxy that silently stops passing its connection's traffic (new
/// connections pass) notices by its watchdog's ping, connects again, and hears what is
/// published after — within about one watchdog interval.
#[tokio::test]
async fn a_silenced_subscriber_reconnects_within_its_watchdog_and_hears_again() {
    use tsunagi_backends::redis::RedisStore;
    use tsunagi_backends::redis::bus::RedisBus;
    use tsunagi_fake_upstream::proxy::TcpProxy;
    let prefix = TestPrefix::new();
    let upstream = tokio::net::lookup_host(prefix.address())
        .await
        .expect("resolves")
        .next()
        .expect("an address");
    let proxy = TcpProxy::start(upstream).await.expect("proxy");
    let through_proxy = prefix.url_via(&proxy.addr().to_string());
    assert_ne!(
        through_proxy,
        prefix.url(),
        "the subscriber goes through the proxy"
    );
    let listener = RedisBus::new(RedisStore::open(&through_proxy).await.expect("open"));
    let publisher = RedisBus::new(prefix.open().await);
    let watchdog = Duration::from_millis(600);
    let mut subscription = listener.subscribe("plugins", watchdog);
    let health = subscription.health().clone();

    // Published until heard: the subscription starts in the background.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            publisher
                .publish("plugins", "rss@1")
                .await
                .expect("publish");
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(100), subscription.next()).await
            {
                return message;
            }
        }
    })
    .await
    .expect("the subscriber hears the bus");
    assert_eq!(heard, "rss@1");
    assert_eq!(health.reconnects(), 0);

    proxy.silence_open();
    let silenced_at = std::time::Instant::now();
    let recovered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            publisher
                .publish("plugins", "rss@2")
                .await
                .expect("publish");
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(50), subscription.next()).await
            {
                return message;
            }
        }
    })
    .await
    .expect("the subscriber recovers by itself");
    let took = silenced_at.elapsed();
    assert_eq!(recovered, "rss@2");
    assert_eq!(health.reconnects(), 1, "one reconnection");
    // Half the interval of silence, half for the ping, then a new connection: generous for a
    // loaded machine, far below the response timeout a plain client would wait.
    assert!(took < watchdog * 3, "recovered after {took:?}");

    // A message over the cap is refused at the publisher.
    let long = "x".repeat(tsunagi_backends::redis::bus::MAX_MESSAGE_BYTES + 1);
    assert!(publisher.publish("plugins", &long).await.is_err());
    // … and one published around the cap is dropped by the subscriber, which goes on.
    let mut raw = redis::Client::open(format!("redis://{}/", prefix.address()))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}:bus:plugins", prefix.prefix()))
        .arg(&long)
        .query_async(&mut raw)
        .await
        .expect("raw publish");
    publisher
        .publish("plugins", "rss@3")
        .await
        .expect("publish");
    // (Skipping a repeat of rss@2 a slow delivery above may have left.)
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match subscription.next().await {
                Some(message) if message == "rss@2" => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the next message");
    assert_eq!(next.as_deref(), Some("rss@3"));
    assert_eq!(health.dropped(), 1);
}

/// Members are listed while their heartbeat lives; one that leaves is gone at once, one that
/// stops beating is gone after its time to live; an oversized card is refused.
#[tokio::test]
async fn members_live_by_their_heartbeat() {
    use tsunagi_backends::redis::members::{MAX_CARD_BYTES, RedisMembers};
    let prefix = TestPrefix::new();
    let a = RedisMembers::new(prefix.open().await);
    let b = RedisMembers::new(prefix.open().await);
    a.heartbeat("host-a", "{\"a\":1}", Duration::from_secs(30))
        .await
        .expect("beat");
    b.heartbeat("host-b", "{\"b\":1}", Duration::from_millis(100))
        .await
        .expect("beat");
    assert_eq!(
        a.members().await.expect("members"),
        [
            ("host-a".to_string(), "{\"a\":1}".to_string()),
            ("host-b".to_string(), "{\"b\":1}".to_string())
        ]
    );
    // B stops beating: its card expires (awaited by polling the server).
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        while a.members().await.expect("members").len() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "a silent member leaves after its time to live"
    );
    a.leave("host-a").await.expect("leave");
    assert_eq!(a.members().await.expect("members"), []);
    let card = "x".repeat(MAX_CARD_BYTES + 1);
    assert!(
        a.heartbeat("host-a", &card, Duration::from_secs(1))
            .await
            .is_err()
    );
}

const LEASE: Duration = Duration::from_secs(60);

/// A plain connection to the test server, to look at the queue's stream as Redis sees it.
async fn raw(prefix: &TestPrefix) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}/", prefix.address()))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}

/// The consumers of a queue's group, each with how many entries it holds.
async fn consumers(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<(String, i64)> {
    let infos: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg("workers")
        .query_async(connection)
        .await
        .expect("xinfo consumers");
    infos
        .into_iter()
        .map(|info| {
            let name: String = redis::from_redis_value(info["name"].clone()).expect("name");
            let pending: i64 = redis::from_redis_value(info["pending"].clone()).expect("pending");
            (name, pending)
        })
        .collect()
}

/// Entries pending in a queue's group (leased and not yet acknowledged).
async fn pending(connection: &mut redis::aio::MultiplexedConnection, stream: &str) -> i64 {
    let summary: (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(stream)
        .arg("workers")
        .query_async(connection)
        .await
        .expect("xpending");
    summary.0
}

/// A job whose lease expired is claimed by `XAUTOCLAIM` for the next worker (on another store
/// instance), as its pending entry moves from one consumer to the other.
#[tokio::test]
async fn an_expired_lease_is_rescued_by_xautoclaim_for_another_worker() {
    let prefix = TestPrefix::new();
    let host_a = RedisJobQueue::new(prefix.open().await);
    let host_b = RedisJobQueue::new(prefix.open().await);
    let stream = format!("{}:jobs:stream:q", prefix.prefix());
    let mut connection = raw(&prefix).await;
    let id = host_a
        .enqueue(NewJob::new("q", "p", 3, T0))
        .await
        .expect("enqueue");
    let lost = host_a
        .lease_jobs("q", "a-1", T0, LEASE, 10)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(
        consumers(&mut connection, &stream).await,
        [("a-1".to_string(), 1)]
    );
    assert!(
        host_b
            .lease_jobs("q", "b-1", lost.lease_until, LEASE, 10)
            .await
            .expect("lease")
            .is_empty(),
        "the lease holds through lease_until"
    );
    assert_eq!(
        consumers(&mut connection, &stream).await,
        [("a-1".to_string(), 1)],
        "a worker that got nothing leaves no consumer behind"
    );
    let rescued = host_b
        .lease_jobs("q", "b-1", lost.lease_until + 1, LEASE, 10)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!((rescued.id, rescued.attempt), (id, 2));
    assert_eq!(rescued.earlier, EarlierOutcome::Unknown);
    assert_eq!(
        consumers(&mut connection, &stream).await,
        [("b-1".to_string(), 1)],
        "the entry moved to the rescuer and the lost worker's consumer is gone"
    );
    assert!(
        !host_a
            .complete_job(&lost, lost.lease_until + 2)
            .await
            .expect("late")
    );
    assert!(
        host_b
            .complete_job(&rescued, lost.lease_until + 2)
            .await
            .expect("complete")
    );
    assert_eq!(pending(&mut connection, &stream).await, 0);
    assert!(consumers(&mut connection, &stream).await.is_empty());
    let length: i64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut connection)
        .await
        .expect("xlen");
    assert_eq!(length, 0, "a finished job's entry is deleted");
}

/// A job completed just before its lease expired is never rescued, and the guard holds even
/// for an entry left pending for a finished job (as a crash between a finish and its
/// acknowledgement would leave it, were they not one script): the entry is acknowledged and
/// deleted, nothing is handed out.
#[tokio::test]
async fn a_job_completed_just_before_its_lease_expired_is_never_rescued() {
    let prefix = TestPrefix::new();
    let host_a = RedisJobQueue::new(prefix.open().await);
    let host_b = RedisJobQueue::new(prefix.open().await);
    let stream = format!("{}:jobs:stream:q", prefix.prefix());
    let mut connection = raw(&prefix).await;
    let id = host_a
        .enqueue(NewJob::new("q", "p", 3, T0))
        .await
        .expect("enqueue");
    let lease = host_a
        .lease_jobs("q", "a-1", T0, LEASE, 10)
        .await
        .expect("lease")
        .remove(0);
    assert!(
        host_a
            .complete_job(&lease, lease.lease_until)
            .await
            .expect("complete at the last moment")
    );
    for later in [lease.lease_until + 1, lease.lease_until + 86_400_000] {
        assert!(
            host_b
                .lease_jobs("q", "b-1", later, LEASE, 10)
                .await
                .expect("lease")
                .is_empty(),
            "a finished job is never rescued"
        );
    }

    // A stray entry for the done job, pending for a long-gone consumer and idle for ages.
    let entry: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("job")
        .arg(id)
        .query_async(&mut connection)
        .await
        .expect("xadd");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("ghost")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut connection)
        .await
        .expect("xreadgroup");
    let _: Vec<String> = redis::cmd("XCLAIM")
        .arg(&stream)
        .arg("workers")
        .arg("ghost")
        .arg(0)
        .arg(&entry)
        .arg("TIME")
        .arg(1)
        .arg("JUSTID")
        .query_async(&mut connection)
        .await
        .expect("xclaim");
    assert_eq!(pending(&mut connection, &stream).await, 1);
    assert!(
        host_b
            .lease_jobs("q", "b-1", lease.lease_until + 2, LEASE, 10)
            .await
            .expect("lease")
            .is_empty(),
        "the guard skips the stray entry"
    );
    assert_eq!(
        pending(&mut connection, &stream).await,
        0,
        "and acknowledges it"
    );
    let record = host_b.job(id).await.expect("job").expect("kept");
    assert_eq!((record.state.as_str(), record.attempt), ("done", 1));
    assert_eq!(
        host_b.queue_counts("q").await.expect("counts"),
        QueueCounts {
            done: 1,
            ..QueueCounts::default()
        }
    );
}

/// Three consumers on three store instances lease one queue at once — fresh jobs and jobs a
/// stopped worker left behind — and no job is handed to two of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_consumers_on_separate_stores_never_share_a_job() {
    let prefix = TestPrefix::new();
    let setup = RedisJobQueue::new(prefix.open().await);
    let mut expected = std::collections::HashSet::new();
    for n in 0..300 {
        let id = setup
            .enqueue(NewJob::new("q", format!("job {n}"), 3, T0))
            .await
            .expect("enqueue");
        expected.insert(id);
    }
    // A worker that stops with 40 jobs leased.
    let abandoned = setup
        .lease_jobs("q", "stopped", T0, LEASE, 40)
        .await
        .expect("lease");
    assert_eq!(abandoned.len(), 40);
    let after_expiry = T0 + 61_000;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..3 {
        let queue = RedisJobQueue::new(prefix.open().await);
        tasks.spawn(async move {
            let worker = format!("consumer-{n}");
            let mut mine = Vec::new();
            loop {
                let leases = queue
                    .lease_jobs("q", &worker, after_expiry, LEASE, 7)
                    .await
                    .expect("lease under contention");
                if leases.is_empty() {
                    return mine;
                }
                for lease in leases {
                    assert!(
                        queue
                            .complete_job(&lease, after_expiry)
                            .await
                            .expect("complete")
                    );
                    mine.push((lease.id, lease.attempt));
                }
            }
        });
    }
    let mut leased = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        leased.extend(joined.expect("consumer task"));
    }
    let ids: std::collections::HashSet<i64> = leased.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), leased.len(), "no job was handed out twice");
    assert_eq!(ids, expected, "every job was handed out");
    let rescued = leased.iter().filter(|(_, attempt)| *attempt == 2).count();
    assert_eq!(rescued, 40, "the abandoned jobs were rescued, each once");
    assert_eq!(
        setup.queue_counts("q").await.expect("counts"),
        QueueCounts {
            done: 300,
            ..QueueCounts::default()
        }
    );
    let stream = format!("{}:jobs:stream:q", prefix.prefix());
    let mut connection = raw(&prefix).await;
    assert_eq!(pending(&mut connection, &stream).await, 0);
    assert!(consumers(&mut connection, &stream).await.is_empty());
}

/// Done jobs are purged oldest first in batches, freeing their idempotency keys; dead and
/// waiting jobs stay.
#[tokio::test]
async fn done_jobs_are_purged_in_batches_and_free_their_keys() {
    let prefix = TestPrefix::new();
    let queue = RedisJobQueue::new(prefix.open().await);
    for n in 0..5 {
        let job = NewJob {
            idempotency_key: Some(format!("k-{n}")),
            ..NewJob::new("q", "p", 1, T0)
        };
        queue.enqueue(job).await.expect("enqueue");
    }
    let leases = queue
        .lease_jobs("q", "w", T0, LEASE, 4)
        .await
        .expect("lease");
    for (n, lease) in leases.iter().take(3).enumerate() {
        assert!(
            queue
                .complete_job(lease, T0 + n as i64)
                .await
                .expect("complete")
        );
    }
    assert!(
        queue
            .fail_job(&leases[3], "gone", None, T0)
            .await
            .expect("fail")
    );
    assert_eq!(queue.purge_done_jobs(T0 + 2, 1).await.expect("purge"), 1);
    assert_eq!(queue.purge_done_jobs(T0 + 2, 10).await.expect("purge"), 1);
    assert_eq!(
        queue.purge_done_jobs(T0 + 2, 10).await.expect("purge"),
        0,
        "the cutoff is exclusive"
    );
    assert!(queue.job(leases[0].id).await.expect("job").is_none());
    assert_eq!(
        queue.queue_counts("q").await.expect("counts"),
        QueueCounts {
            queued: 1,
            leased: 0,
            done: 1,
            dead: 1
        }
    );
    let again = queue
        .enqueue_job(NewJob {
            idempotency_key: Some("k-0".to_string()),
            ..NewJob::new("q", "p", 1, T0)
        })
        .await
        .expect("enqueue");
    assert!(
        matches!(again, tsunagi_backends::Enqueued::New(id) if id != leases[0].id),
        "the purged job's key is free: {again:?}"
    );
}
