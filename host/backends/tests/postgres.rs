//! Runs the backend conformance suite against PostgreSQL, each case in a fresh schema of its
//! own on the server `TSUNAGI_TEST_POSTGRES` names (default: the local test database that
//! `scripts/services` starts), plus PostgreSQL-specific checks.
//!
//! The server must be up: a case fails, naming the URL, rather than skipping.

use futures::future::join_all;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tsunagi_backends::conformance::{BackendFuture, T0, TestStore};
use tsunagi_backends::postgres::PostgresBackend;
use tsunagi_backends::postgres::testing::TestSchema;
use tsunagi_backends::{Backend, BackendError, JobLease, JobOutcome, JobQueue, NewJob};

async fn postgres_store() -> TestStore {
    let schema = Arc::new(TestSchema::create().await);
    let backend = schema.open().await;
    let again = schema.clone();
    let reopen = move || -> BackendFuture {
        let schema = again.clone();
        Box::pin(async move { Arc::new(schema.open().await) as Arc<dyn Backend> })
    };
    TestStore::new(Arc::new(backend) as Arc<dyn Backend>, reopen).keep_alive(schema)
}

tsunagi_backends::conformance_tests!(postgres_store);

/// The RSS crawl's scale: 210,000 feeds imported in one call (timing belongs in benchmarks).
#[tokio::test]
async fn imports_210_000_targets_in_one_call() {
    let store = postgres_store().await;
    let backend = &store.backend;
    let feeds: Vec<String> = (0..210_000)
        .map(|n| format!("https://feeds.example/{n}.xml"))
        .collect();
    let report = backend
        .add_targets("rss", &feeds, T0)
        .await
        .expect("import");
    assert_eq!(report.added, 210_000);
    assert_eq!(report.already_present, 0);
    assert_eq!(backend.count_targets("rss").await.expect("count"), 210_000);

    // A re-import with 1,000 new feeds adds only those.
    let more: Vec<String> = (209_000..211_000)
        .map(|n| format!("https://feeds.example/{n}.xml"))
        .collect();
    let report = backend.add_targets("rss", &more, T0).await.expect("import");
    assert_eq!(report.added, 1_000);
    assert_eq!(report.already_present, 1_000);
    assert_eq!(
        backend.count_due("rss", T0).await.expect("count_due"),
        211_000
    );
}

#[tokio::test]
async fn opening_twice_keeps_the_schema_and_a_newer_one_is_refused() {
    let schema = TestSchema::create().await;
    let first = schema.open().await;
    assert_eq!(first.kind(), "postgres");
    // A second open finds every migration applied and changes nothing.
    let second = schema.open().await;
    second.close().await;

    // A migration this build does not know: the database was migrated by a newer tsunagi.
    let mut admin = schema.admin().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}._sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (999, 'from the future', true, '\\x00', 0)",
        schema.name()
    )))
    .execute(&mut admin)
    .await
    .expect("record a future migration");
    let refused = PostgresBackend::open_with(schema.options(), schema.server())
        .await
        .expect_err("a database from a newer build is refused");
    let message = refused.to_string();
    assert!(matches!(refused, BackendError::Open { .. }), "{message}");
    assert!(
        message.contains("999") && message.contains("upgrade tsunagi"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_an_open_error_naming_it_without_its_password() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://app:hunter2@127.0.0.1:1/tsunagi";
    let error = tsunagi_backends::open(url)
        .await
        .err()
        .expect("nothing listens on port 1");
    let message = error.to_string();
    assert!(
        message.contains("postgres://app:***@127.0.0.1:1/tsunagi"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

/// Completions are group-committed (`postgres/completions.rs`). Two hosts (backend instances)
/// race to complete the same 64 jobs, each current lease from both hosts at once, and host A
/// also completes the 16 leases it lost to host B: every job is done exactly once, with the
/// outcome of the one completion answered true; every lost lease is refused while the
/// completions batched with it succeed; and batching happened (fewer statements than
/// completions on each host).
#[tokio::test]
async fn racing_batched_completions_from_two_hosts_finish_each_job_once() {
    const JOBS: usize = 64;
    const LOST: usize = 16;
    let schema = TestSchema::create().await;
    let (a, b) = (schema.open().await, schema.open().await);
    for n in 0..JOBS {
        a.enqueue_job(NewJob::new("q", n.to_string(), 3, T0))
            .await
            .expect("enqueue");
    }
    // Host A holds the first 16 for one second (and so loses them), the others for an hour.
    let lost = a
        .lease_jobs("q", "host-a", T0, Duration::from_secs(1), LOST as u32)
        .await
        .expect("short leases");
    let kept = a
        .lease_jobs("q", "host-a", T0, Duration::from_secs(3600), JOBS as u32)
        .await
        .expect("long leases");
    let taken = b
        .lease_jobs(
            "q",
            "host-b",
            T0 + 2_000,
            Duration::from_secs(3600),
            JOBS as u32,
        )
        .await
        .expect("take over the expired leases");
    assert_eq!((lost.len(), kept.len()), (LOST, JOBS - LOST));
    let ids = |leases: &[JobLease]| leases.iter().map(|l| l.id).collect::<BTreeSet<_>>();
    assert_eq!(
        ids(&taken),
        ids(&lost),
        "host B took over exactly the expired leases"
    );

    let (a_before, b_before) = (a.completion_stats(), b.completion_stats());
    // Each current lease completed through both hosts, the outcome naming the host; the lost
    // leases through host A, mixed in among them.
    let current: Vec<&JobLease> = kept.iter().chain(&taken).collect();
    let mut calls = Vec::new();
    for (n, lease) in current.iter().enumerate() {
        for (host, backend) in [("a", &a), ("b", &b)] {
            calls.push((lease.id, host, true, backend, *lease));
        }
        if let Some(old) = lost.get(n) {
            calls.push((old.id, "a-lost", false, &a, old));
        }
    }
    let answers = join_all(
        calls
            .iter()
            .map(|&(_, host, _, backend, lease)| async move {
                let outcome = JobOutcome::Done {
                    reference: Some(host.to_string()),
                    detail: None,
                };
                backend.finish_job(lease, &outcome, T0 + 3_000).await
            }),
    )
    .await;

    let mut winners: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (&(id, host, current, _, _), answer) in calls.iter().zip(answers) {
        let done = answer.unwrap_or_else(|e| panic!("completing job {id} from {host}: {e}"));
        if !current {
            assert!(!done, "job {id}: the lost lease's completion is refused");
        }
        if done {
            winners.entry(id).or_default().push(host);
        }
    }
    assert_eq!(winners.len(), JOBS, "every job was completed: {winners:?}");
    for (id, hosts) in &winners {
        assert_eq!(hosts.len(), 1, "job {id} completed once, not by {hosts:?}");
        let record = a.job(*id).await.expect("read").expect("the job is there");
        assert_eq!(record.state, "done", "job {id}");
        assert_eq!(
            record.outcome,
            Some(JobOutcome::Done {
                reference: Some(hosts[0].to_string()),
                detail: None
            }),
            "job {id} keeps the outcome of the completion answered true"
        );
    }
    let counts = a.queue_counts("q").await.expect("counts");
    assert_eq!((counts.done, counts.leased), (JOBS as u64, 0), "{counts:?}");

    for (host, before, after, sent) in [
        ("a", a_before, a.completion_stats(), JOBS + LOST),
        ("b", b_before, b.completion_stats(), JOBS),
    ] {
        let statements = after.statements - before.statements;
        let completions = after.completions - before.completions;
        assert_eq!(
            completions, sent as u64,
            "host {host}: every completion counted"
        );
        assert!(
            statements < completions,
            "host {host}: {completions} completions took {statements} statements: no batching"
        );
    }
}

/// `lease_jobs` picks due and expired jobs apart (an index each) and then takes the earliest of
/// both in (run_at, id) order, at most `limit` in all.
#[tokio::test]
async fn a_lease_takes_the_earliest_of_due_and_expired_jobs_together() {
    let schema = TestSchema::create().await;
    let backend = schema.open().await;
    let enqueue = async |run_at| {
        backend
            .enqueue_job(NewJob::new("q", "{}", 3, run_at))
            .await
            .expect("enqueue")
            .id()
    };
    let expired = enqueue(T0 + 1).await;
    let lost = backend
        .lease_jobs("q", "w1", T0 + 1, Duration::from_secs(1), 10)
        .await
        .expect("lease");
    assert_eq!(lost.len(), 1);
    let (early, late, early_too) = (enqueue(T0).await, enqueue(T0 + 3).await, enqueue(T0).await);

    let now = T0 + 10_000;
    let lease = |limit| backend.lease_jobs("q", "w2", now, Duration::from_secs(60), limit);
    let first: Vec<i64> = lease(3)
        .await
        .expect("lease")
        .iter()
        .map(|l| l.id)
        .collect();
    // By (run_at, id): early (T0), early_too (T0), expired (T0 + 1); late (T0 + 3) waits.
    let mut expected = vec![early, early_too, expired];
    expected.sort_unstable();
    assert_eq!(first, expected);
    let taken_over = backend.job(expired).await.expect("read").expect("there");
    assert!(
        taken_over.earlier_unknown,
        "its first attempt may have acted"
    );
    let second: Vec<i64> = lease(3)
        .await
        .expect("lease")
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(second, [late]);
}
