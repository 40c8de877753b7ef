//! Handler jobs end to end: the real host running `plugins/test-handler` (and the 0.1.0
//! `plugins/legacy-handler`) over the SQLite job queue, and over the Redis one (`[backends]
//! queue`, one host and two sharing it), against a small upstream in the test that counts
//! each job's effects. Jobs arrive through `POST /v1/queues/{queue}/jobs`.

use crate::common::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tsunagi::backends::{Backend, JobOutcome};
use tsunagi::clock::SystemClock;
use tsunagi::pipeline::RunMode;

/// What the upstream saw of one job.
#[derive(Debug, Clone, Default)]
struct Effects {
    /// POSTs that took effect (answered 200).
    applied: u32,
    /// POSTs answered with a failure.
    refused: u32,
    /// The `x-earlier` header of every POST, in order.
    earlier: Vec<String>,
    /// GETs (checks after an unknown outcome).
    checks: u32,
}

/// How the upstream treats jobs: `payload.fail` first POSTs of a job get 503; a payload
/// `status` is answered always; every answer waits `delay` after the effect is recorded.
#[derive(Default)]
struct Upstream {
    effects: Mutex<BTreeMap<String, Effects>>,
    delay: Mutex<Duration>,
}

type Shared = Arc<Upstream>;

async fn apply(
    State(upstream): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let payload: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let earlier = headers
        .get("x-earlier")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (status, delay) = {
        let mut effects = upstream.effects.lock().unwrap();
        let job = effects.entry(id.clone()).or_default();
        job.earlier.push(earlier);
        let fail = payload["fail"].as_u64().unwrap_or(0);
        let status = match payload["status"].as_u64() {
            Some(status) => StatusCode::from_u16(status as u16).unwrap(),
            None if u64::from(job.refused) < fail => StatusCode::SERVICE_UNAVAILABLE,
            None => StatusCode::OK,
        };
        if status == StatusCode::OK {
            job.applied += 1;
        } else {
            job.refused += 1;
        }
        (status, *upstream.delay.lock().unwrap())
    };
    // The effect is recorded before the answer: a host killed meanwhile leaves it unknown.
    tokio::time::sleep(delay).await;
    (status, format!("ref-{id}"))
}

async fn check(State(upstream): State<Shared>, Path(id): Path<String>) -> (StatusCode, String) {
    let mut effects = upstream.effects.lock().unwrap();
    let job = effects.entry(id.clone()).or_default();
    job.checks += 1;
    if job.applied > 0 {
        (StatusCode::OK, format!("ref-{id}"))
    } else {
        (StatusCode::NOT_FOUND, String::new())
    }
}

async fn start_upstream() -> (SocketAddr, Shared) {
    let shared = Shared::default();
    let app = axum::Router::new()
        .route("/effects/{id}", post(apply).get(check))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

/// A handler connector `posts` on `plugin`, allowed to reach the upstream, retrying fast.
fn handler_config(plugin_name: &str, upstream: SocketAddr, admin_port: u16, extra: &str) -> String {
    host_section(&format!(
        "admin_listen = \"127.0.0.1:{admin_port}\"\nclaim_lease = \"7s\"\n"
    )) + &format!(
        r#"
[connectors.posts]
plugin = "{plugin}"
role = "handler"
concurrency = 8
{extra}

[connectors.posts.retry]
first_delay = "50ms"
max_delay = "200ms"
max_failures = 4

[connectors.posts.limits]
call_timeout = "2s"

[connectors.posts.config]
upstream = "http://{upstream}"

[[connectors.posts.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
"#,
        plugin = plugin(plugin_name).display(),
        port = upstream.port(),
    )
}

async fn enqueue(
    admin: SocketAddr,
    queue: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{admin}/v1/queues/{queue}/jobs"))
        .json(&body)
        .send()
        .await
        .expect("admin answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn enqueue_ok(admin: SocketAddr, payload: serde_json::Value) -> i64 {
    let (status, answer) = enqueue(
        admin,
        "posts",
        serde_json::json!({"kind": "post", "payload": payload}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_i64().expect("an id")
}

/// Waits (bounded) until `done` jobs of `queue` are done and none waits or runs.
async fn all_finished(backend: &Arc<dyn Backend>, queue: &str, done: u64, dead: u64) {
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let counts = backend.queue_counts(queue).await.unwrap();
            if counts.done == done && counts.dead == dead && counts.queued + counts.leased == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let counts = backend.queue_counts(queue).await.unwrap();
    assert!(finished.is_ok(), "every job finished in time: {counts:?}");
}

async fn start(
    plugin_name: &str,
    extra: &str,
) -> (tempfile::TempDir, TestHost, Arc<dyn Backend>, Shared) {
    let (upstream, shared) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &handler_config(plugin_name, upstream, 0, extra));
    let backend = open_backend(&config).await;
    let host = start_host_with_clock(
        &config,
        backend.clone(),
        Arc::new(SystemClock),
        RunMode::Forever,
    )
    .await;
    (dir, host, backend, shared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_is_done_once_retried_on_503_dead_on_permanent_and_skipped_without_retry() {
    let (_dir, host, backend, upstream) = start("test_handler", "").await;
    let admin = host.admin_addr().expect("admin");
    let mut plain = Vec::new();
    for n in 0..20 {
        plain.push(enqueue_ok(admin, serde_json::json!({"n": n})).await);
    }
    let flaky = enqueue_ok(admin, serde_json::json!({"fail": 2})).await;
    let permanent = enqueue_ok(admin, serde_json::json!({"status": 422})).await;
    let skipped = enqueue_ok(
        admin,
        serde_json::json!({"skip": "came from the upstream itself"}),
    )
    .await;
    all_finished(&backend, "posts", 22, 1).await;

    let effects = upstream.effects.lock().unwrap().clone();
    for id in &plain {
        let job = &effects[&id.to_string()];
        assert_eq!(job.applied, 1, "job {id} took effect once");
        assert_eq!(job.earlier, ["none"], "a first attempt is told so");
    }
    let flaky_effects = &effects[&flaky.to_string()];
    assert_eq!(flaky_effects.refused, 2);
    assert_eq!(
        flaky_effects.applied, 1,
        "retried after two 503s, then done once"
    );
    assert_eq!(
        flaky_effects.earlier,
        ["none", "failed", "failed"],
        "retries are told the earlier attempts failed"
    );
    assert_eq!(
        effects[&permanent.to_string()].refused,
        1,
        "a permanent error is not retried"
    );
    assert!(
        !effects.contains_key(&skipped.to_string()),
        "a skipped job calls nothing"
    );

    let done = backend.job(flaky).await.unwrap().unwrap();
    assert_eq!(done.state, "done");
    assert_eq!(
        done.outcome,
        Some(JobOutcome::Done {
            reference: Some(format!("ref-{flaky}")),
            detail: Some("earlier=failed attempt=3".into()),
        })
    );
    let skip = backend.job(skipped).await.unwrap().unwrap();
    assert_eq!(skip.state, "done");
    assert_eq!(
        skip.outcome,
        Some(JobOutcome::Skipped {
            reason: "came from the upstream itself".into()
        })
    );
    let dead = backend.list_dead(Some("posts"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, permanent);
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("HTTP 422"),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(
        dead[0].history.len(),
        1,
        "the dead letter keeps its history"
    );
    assert_eq!(dead[0].payload, r#"{"status":422}"#, "and its payload");

    let status = fetch_status(admin).await;
    let handler = &status["connectors"][0]["handler"];
    assert_eq!(handler["queue"], "posts");
    assert_eq!(handler["paused"], false);
    assert_eq!(handler["counts"]["done"], 22);
    assert_eq!(handler["jobs"]["done"], 21);
    assert_eq!(handler["jobs"]["skipped"], 1);
    assert_eq!(handler["jobs"]["failed"], 2);
    assert_eq!(handler["jobs"]["dead"], 1);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_dead_letter_after_max_failures_with_their_history() {
    let (_dir, host, backend, upstream) = start("test_handler", "").await;
    let admin = host.admin_addr().expect("admin");
    let id = enqueue_ok(admin, serde_json::json!({"fail": 100})).await;
    all_finished(&backend, "posts", 0, 1).await;
    let dead = backend.list_dead(Some("posts"), 10).await.unwrap();
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].attempts, 4, "retry.max_failures attempts");
    assert_eq!(dead[0].history.len(), 4);
    assert!(dead[0].history.iter().all(|a| a.error.contains("HTTP 503")));
    assert_eq!(upstream.effects.lock().unwrap()[&id.to_string()].refused, 4);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_target_the_connector_does_not_have_is_skipped_as_not_linked() {
    let (_dir, host, backend, upstream) = start("test_handler", "").await;
    let admin = host.admin_addr().expect("admin");
    backend
        .add_targets("posts", &["user-1".to_string()], 0)
        .await
        .unwrap();
    let (status, linked) = enqueue(
        admin,
        "posts",
        serde_json::json!({"kind": "post", "payload": {}, "target": "user-1"}),
    )
    .await;
    assert_eq!(status, 202);
    let (_, stranger) = enqueue(
        admin,
        "posts",
        serde_json::json!({"kind": "post", "payload": {}, "target": "user-2"}),
    )
    .await;
    all_finished(&backend, "posts", 2, 0).await;
    let stranger = stranger["id"].as_i64().unwrap();
    let record = backend.job(stranger).await.unwrap().unwrap();
    assert!(
        matches!(&record.outcome, Some(JobOutcome::Skipped { reason }) if reason.starts_with("not linked")),
        "{:?}",
        record.outcome
    );
    let effects = upstream.effects.lock().unwrap().clone();
    assert!(
        !effects.contains_key(&stranger.to_string()),
        "the plugin was not called"
    );
    assert_eq!(
        effects[&linked["id"].as_i64().unwrap().to_string()].applied,
        1
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_leases_nothing_and_resuming_carries_on() {
    let (_dir, host, backend, upstream) = start("test_handler", "").await;
    let admin = host.admin_addr().expect("admin");
    let client = reqwest::Client::new();
    let paused = client
        .post(format!("http://{admin}/v1/queues/posts/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), 200);
    for n in 0..5 {
        enqueue_ok(admin, serde_json::json!({"n": n})).await;
    }
    // Several idle polls (50 ms each) pass; nothing is leased.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counts = backend.queue_counts("posts").await.unwrap();
        assert_eq!(
            (counts.queued, counts.leased, counts.done),
            (5, 0, 0),
            "paused"
        );
    }
    assert!(upstream.effects.lock().unwrap().is_empty());
    let status = fetch_status(admin).await;
    assert_eq!(status["connectors"][0]["handler"]["paused"], true);
    let unknown = client
        .post(format!("http://{admin}/v1/queues/nope/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let resumed = client
        .post(format!("http://{admin}/v1/queues/posts/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    all_finished(&backend, "posts", 5, 0).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_endpoint_answers_202_200_and_4xx_and_enqueues_nothing_refused() {
    let (_dir, host, backend, _upstream) = start("test_handler", "").await;
    let admin = host.admin_addr().expect("admin");
    // Pause, so the counts below are all queued.
    reqwest::Client::new()
        .post(format!("http://{admin}/v1/queues/posts/pause"))
        .send()
        .await
        .unwrap();
    let (status, first) = enqueue(
        admin,
        "posts",
        serde_json::json!({"kind": "post", "payload": {"t": 1}, "idempotency_key": "k-1"}),
    )
    .await;
    assert_eq!(status, 202);
    let (status, again) = enqueue(
        admin,
        "posts",
        serde_json::json!({"kind": "post", "payload": {"t": 2}, "idempotency_key": "k-1"}),
    )
    .await;
    assert_eq!(status, 200, "the same key again");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["repeat"], true);

    let big = "x".repeat(tsunagi::backends::MAX_JOB_PAYLOAD_BYTES);
    let cases: Vec<(serde_json::Value, &str, u16, &str)> = vec![
        (
            serde_json::json!({"kind": "post", "payload": 1}),
            "nope",
            404,
            "no handler connector serves queue 'nope'",
        ),
        (
            serde_json::json!({"payload": 1}),
            "posts",
            400,
            "missing field \"kind\"",
        ),
        (
            serde_json::json!({"kind": "post"}),
            "posts",
            400,
            "missing field \"payload\"",
        ),
        (
            serde_json::json!({"kind": 7, "payload": 1}),
            "posts",
            400,
            "field \"kind\" must be a string",
        ),
        (
            serde_json::json!({"kind": "post", "payload": 1, "priority": 1}),
            "posts",
            400,
            "unknown field \"priority\"",
        ),
        (
            serde_json::json!({"kind": "post", "payload": big}),
            "posts",
            413,
            "payload is",
        ),
        (
            serde_json::json!({"kind": "post", "payload": 1, "idempotency_key": "k".repeat(201)}),
            "posts",
            400,
            "idempotency_key is 201 bytes; a key is at most 200 bytes",
        ),
        (
            serde_json::json!({"kind": "post", "payload": 1, "target": "t".repeat(2049)}),
            "posts",
            400,
            "target is 2049 bytes long",
        ),
    ];
    for (body, queue, expected, reason) in cases {
        let (status, answer) = enqueue(admin, queue, body).await;
        assert_eq!(status, expected, "{answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(reason), "{error}");
    }
    // Not JSON at all, and a body over the cap read.
    let client = reqwest::Client::new();
    let garbled = client
        .post(format!("http://{admin}/v1/queues/posts/jobs"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 400);
    let answer: serde_json::Value = garbled.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON")
    );
    let huge = client
        .post(format!("http://{admin}/v1/queues/posts/jobs"))
        .body(vec![b' '; tsunagi::admin::MAX_JOB_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let answer: serde_json::Value = huge.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("larger than"));

    let counts = backend.queue_counts("posts").await.unwrap();
    assert_eq!(
        counts.queued, 1,
        "only the first job was stored: {counts:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_built_against_wit_0_1_0_still_runs() {
    let (_dir, host, backend, _upstream) = start("legacy_handler", "").await;
    let admin = host.admin_addr().expect("admin");
    let ok = enqueue_ok(admin, serde_json::json!({"text": "hi"})).await;
    let (_, failing) = enqueue(
        admin,
        "posts",
        serde_json::json!({"kind": "fail", "payload": {}}),
    )
    .await;
    all_finished(&backend, "posts", 1, 1).await;
    let record = backend.job(ok).await.unwrap().unwrap();
    assert_eq!(
        record.outcome,
        Some(JobOutcome::Done {
            reference: Some(format!("legacy-{ok}")),
            detail: Some(r#"legacy post attempt 1 payload {"text":"hi"}"#.into()),
        })
    );
    let dead = backend.list_dead(Some("posts"), 10).await.unwrap();
    assert_eq!(dead[0].id, failing["id"].as_i64().unwrap());
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("asked to fail")
    );
    host.shutdown().await;
}

/// The `tsunagi` binary, SIGKILLed while jobs are in flight (the upstream has applied them and
/// not yet answered), restarted each time: every job completes, each took effect once, and the
/// jobs whose lease was taken over were told `earlier = unknown` (and checked first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_loses_no_job_and_applies_none_twice() {
    let (upstream_addr, upstream) = start_upstream().await;
    *upstream.delay.lock().unwrap() = Duration::from_millis(400);
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let config = write_config(
        dir.path(),
        &handler_config("test_handler", upstream_addr, admin_port, ""),
    );
    let backend = open_backend(&config).await;
    let config_path = dir.path().join("tsunagi.toml");
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .args(["run", "--config", &config_path.display().to_string()])
            .env("TSUNAGI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tsunagi run")
    };
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let jobs = 40u64;
    let mut host = spawn();
    wait_ready(admin).await;
    for n in 0..jobs {
        enqueue_ok(admin, serde_json::json!({"n": n})).await;
    }
    let kills = 3;
    for kill in 1..=kills {
        // Wait until some job is applied upstream but not yet answered (in flight), then kill.
        let before = applied(&upstream);
        let in_flight = tokio::time::timeout(Duration::from_secs(60), async {
            while applied(&upstream) == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            in_flight.is_ok(),
            "jobs were being applied before kill {kill}"
        );
        host.start_kill().expect("SIGKILL");
        let _ = host.wait().await;
        host = spawn();
        wait_ready(admin).await;
    }
    *upstream.delay.lock().unwrap() = Duration::ZERO;
    all_finished(&backend, "posts", jobs, 0).await;
    host.start_kill().expect("stop");
    let _ = host.wait().await;

    let effects = upstream.effects.lock().unwrap().clone();
    assert_eq!(effects.len() as u64, jobs, "every job reached the upstream");
    let mut told_unknown = 0;
    for (id, job) in &effects {
        assert_eq!(job.applied, 1, "job {id} took effect exactly once: {job:?}");
        let record = backend.job(id.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(record.state, "done");
        if let Some(JobOutcome::Done {
            detail: Some(detail),
            ..
        }) = &record.outcome
            && detail.contains("earlier=unknown")
        {
            told_unknown += 1;
            assert!(
                job.checks >= 1,
                "job {id} was told unknown and checked first"
            );
        }
    }
    assert!(
        told_unknown >= kills,
        "each kill left at least one job applied but unanswered, handed on as unknown ({told_unknown})"
    );
}

fn applied(upstream: &Shared) -> u32 {
    upstream
        .effects
        .lock()
        .unwrap()
        .values()
        .map(|e| e.applied)
        .sum()
}

/// A reload that swaps the plugin while jobs run loses none: calls in flight finish on the
/// version they started on, later jobs run on the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swap_mid_run_loses_no_job() {
    let (upstream_addr, upstream) = start_upstream().await;
    *upstream.delay.lock().unwrap() = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let serving = dir.path().join("handler.wasm");
    install(&plugin("test_handler"), &serving);
    let text = handler_config("test_handler", upstream_addr, 0, "").replace(
        &plugin("test_handler").display().to_string(),
        "handler.wasm",
    );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let host = start_host_with_clock(
        &config,
        backend.clone(),
        Arc::new(SystemClock),
        RunMode::Forever,
    )
    .await;
    let admin = host.admin_addr().expect("admin");
    let jobs = 64;
    let mut ids = Vec::new();
    for n in 0..jobs {
        ids.push(enqueue_ok(admin, serde_json::json!({"n": n})).await);
    }
    // Swap while the first calls are in flight (applied upstream, not yet answered).
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        while applied(&upstream) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(started.is_ok(), "jobs were running before the swap");
    install(&plugin("legacy_handler"), &serving);
    let report = host.topology().reloader().reload(None).await;
    assert!(report.ok, "{report:?}");
    all_finished(&backend, "posts", jobs, 0).await;

    let effects = upstream.effects.lock().unwrap().clone();
    let (mut old, mut new) = (0, 0);
    for id in ids {
        let record = backend.job(id).await.unwrap().unwrap();
        let Some(JobOutcome::Done {
            detail: Some(detail),
            ..
        }) = &record.outcome
        else {
            panic!("job {id} is not done: {record:?}");
        };
        if detail.starts_with("legacy") {
            new += 1;
            assert!(
                !effects.contains_key(&id.to_string()),
                "job {id} ran on one version only"
            );
        } else {
            old += 1;
            assert_eq!(effects[&id.to_string()].applied, 1, "job {id} applied once");
        }
    }
    assert!(old >= 1, "calls in flight finished on the old version");
    assert!(new >= 1, "later jobs ran on the new version");
    host.shutdown().await;
}

/// `POST /v1/events/{topic}`: a thin event becomes one job per subscribed handler (kind = the
/// topic, payload = the event), a resent event (same id) is a repeat, and a bad or oversized
/// event, or one nobody subscribes to, enqueues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_event_becomes_a_job_for_each_subscriber_once() {
    let (_dir, host, backend, upstream) = start(
        "test_handler",
        "[connectors.posts.jobs]\nevents = [\"order-paid\"]",
    )
    .await;
    let admin = host.admin_addr().expect("admin");
    let client = reqwest::Client::new();
    let publish = |topic: &str, body: String| {
        let request = client
            .post(format!("http://{admin}/v1/events/{topic}"))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let response = request.send().await.expect("admin answers");
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let (status, first) = publish("order-paid", r#"{"id": "o-1", "order": "o-1"}"#.into()).await;
    assert_eq!(status, 202, "{first}");
    let jobs = first["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{first}");
    assert_eq!(jobs[0]["connector"], "posts");
    assert_eq!(jobs[0]["repeat"], false);
    let (status, again) = publish("order-paid", r#"{"id": "o-1", "order": "o-1"}"#.into()).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["jobs"][0]["id"], jobs[0]["id"], "the same job");
    assert_eq!(again["jobs"][0]["repeat"], true);
    let (status, numbered) = publish("order-paid", r#"{"id": 7, "order": "o-7"}"#.into()).await;
    assert_eq!(
        (status, numbered["jobs"][0]["repeat"].as_bool()),
        (202, Some(false))
    );

    let too_big = format!("{{\"id\": \"x\", \"pad\": \"{}\"}}", "x".repeat(17 * 1024));
    for (topic, body, expected, says) in [
        (
            "order-shipped",
            r#"{"id": "o-2"}"#.to_string(),
            404,
            "no handler subscribes to topic 'order-shipped'",
        ),
        (
            "order-paid",
            "[1, 2]".to_string(),
            400,
            "must be a JSON object",
        ),
        ("order-paid", "{not json".to_string(), 400, "not JSON"),
        (
            "order-paid",
            r#"{"id": {"a": 1}}"#.to_string(),
            400,
            "field \"id\" must be a string or a number",
        ),
        ("order-paid", too_big, 413, "larger than 16384 bytes"),
    ] {
        let (status, answer) = publish(topic, body).await;
        assert_eq!(status, expected, "{topic}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(says),
            "{answer}"
        );
    }

    all_finished(&backend, "posts", 2, 0).await;
    let effects = upstream.effects.lock().unwrap().clone();
    assert_eq!(effects.len(), 2, "two events, two jobs: {effects:?}");
    assert!(effects.values().all(|job| job.applied == 1), "{effects:?}");
    drop(effects);
    host.shutdown().await;
}

/// Waits (bounded) until the Redis queue's `queue` has `done` jobs done, `dead` dead and none
/// waiting or running.
async fn all_finished_on_redis(
    queue: &tsunagi::backends::redis::queue::RedisJobQueue,
    name: &str,
    done: u64,
    dead: u64,
) {
    use tsunagi::backends::JobQueue;
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let counts = queue.queue_counts(name).await.unwrap();
            if counts.done == done && counts.dead == dead && counts.queued + counts.leased == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let counts = queue.queue_counts(name).await.unwrap();
    assert!(finished.is_ok(), "every job finished in time: {counts:?}");
}

/// `[backends] queue` on Redis: jobs enqueued through the admin API are run by the handler and
/// end done (or dead) in Redis, the database holds none of them, `/status` says where the
/// queue lives, and `tsunagi dlq` lists and drops the dead one as a Redis job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_jobs_on_a_redis_queue_run_there_and_the_database_holds_none() {
    use tsunagi::backends::JobQueue;
    use tsunagi::backends::redis::queue::RedisJobQueue;
    let redis = tsunagi::backends::redis::testing::TestPrefix::new();
    let (upstream_addr, upstream) = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let text = handler_config("test_handler", upstream_addr, 0, "")
        + &format!("\n[backends]\nqueue = \"{}\"\n", redis.url());
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let host = start_host_with_clock(
        &config,
        backend.clone(),
        Arc::new(SystemClock),
        RunMode::Forever,
    )
    .await;
    let admin = host.admin_addr().expect("admin");
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(enqueue_ok(admin, serde_json::json!({"n": n})).await);
    }
    let (status, permanent) = enqueue(
        admin,
        "posts",
        serde_json::json!({"kind": "post", "payload": {"status": 422}}),
    )
    .await;
    assert_eq!((status, permanent["queue"].as_str()), (202, Some("posts")));
    let permanent = permanent["id"].as_i64().unwrap();

    let queue = RedisJobQueue::new(redis.open().await);
    all_finished_on_redis(&queue, "posts", 20, 1).await;
    {
        let effects = upstream.effects.lock().unwrap();
        for id in &ids {
            assert_eq!(effects[&id.to_string()].applied, 1, "job {id} ran once");
        }
    }
    for id in &ids {
        let record = queue.job(*id).await.unwrap().expect("the job is in Redis");
        assert_eq!(record.state, "done", "{record:?}");
    }
    let in_database = backend.queue_counts("posts").await.unwrap();
    assert_eq!(
        in_database,
        tsunagi::backends::QueueCounts::default(),
        "the database holds no handler job"
    );
    assert!(backend.list_dead(None, 10).await.unwrap().is_empty());

    let report = host.topology().status_report().await.unwrap();
    let handler = report.connectors[0].handler.as_ref().expect("a handler");
    assert!(handler.store.starts_with("redis "), "{}", handler.store);
    assert_eq!((handler.counts.done, handler.counts.dead), (20, 1));
    host.shutdown().await;

    // The CLI finds the dead job on the Redis queue and names it as one.
    let config_path = dir.path().join("tsunagi.toml");
    let dlq = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .arg("dlq")
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .output()
            .expect("run tsunagi dlq");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, listed, summary) = dlq(&["list", "--queue", "posts"]);
    assert!(ok, "{summary}");
    assert!(
        summary.contains("0 dead target(s), 1 dead job(s) (1 of them on the Redis queue)"),
        "{summary}"
    );
    let entry: serde_json::Value = serde_json::from_str(listed.trim()).expect("one JSON line");
    let name = format!("redis-job:{permanent}");
    assert_eq!(entry["entry"], name.as_str(), "{entry}");
    assert_eq!(
        (entry["queue"].as_str(), entry["store"].as_str()),
        (Some("posts"), Some("redis"))
    );
    assert!(
        entry["last_error"].as_str().unwrap().contains("422"),
        "{entry}"
    );
    // The same id in the database is another job (none): refused, nothing dropped in Redis.
    let (ok, _, summary) = dlq(&["drop", &format!("job:{permanent}")]);
    assert!(
        !ok && summary.contains("not in the dead-letter state"),
        "{summary}"
    );
    assert_eq!(queue.queue_counts("posts").await.unwrap().dead, 1);
    let (ok, _, summary) = dlq(&["drop", &name]);
    assert!(ok && summary.contains("dropped 1 entry"), "{summary}");
    assert_eq!(queue.queue_counts("posts").await.unwrap().dead, 0);
    assert!(queue.job(permanent).await.unwrap().is_none());
}

/// Two hosts, each with its own SQLite file, sharing one Redis queue: every one of 200 jobs is
/// run exactly once (counted at the upstream), and both hosts ran some. The queue is paused
/// (through one host, for both) while the jobs are enqueued, so both start on a full backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_one_redis_queue_and_run_every_job_once() {
    use tsunagi::backends::redis::queue::RedisJobQueue;
    let redis = tsunagi::backends::redis::testing::TestPrefix::new();
    let (upstream_addr, upstream) = start_upstream().await;
    *upstream.delay.lock().unwrap() = Duration::from_millis(10);
    let backends = format!("\n[backends]\nqueue = \"{}\"\n", redis.url());
    let mut dirs = Vec::new();
    let mut hosts = Vec::new();
    let mut databases = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let text = handler_config("test_handler", upstream_addr, 0, "") + &backends;
        let config = write_config(dir.path(), &text);
        let backend = open_backend(&config).await;
        hosts.push(
            start_host_with_clock(
                &config,
                backend.clone(),
                Arc::new(SystemClock),
                RunMode::Forever,
            )
            .await,
        );
        databases.push(backend);
        dirs.push(dir);
    }
    let admins: Vec<SocketAddr> = hosts.iter().map(|h| h.admin_addr().unwrap()).collect();
    let client = reqwest::Client::new();
    let paused = client
        .post(format!("http://{}/v1/queues/posts/pause", admins[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), 200);
    let jobs = 200u64;
    for n in 0..jobs {
        enqueue_ok(admins[(n % 2) as usize], serde_json::json!({"n": n})).await;
    }
    let queue = RedisJobQueue::new(redis.open().await);
    {
        use tsunagi::backends::JobQueue;
        assert_eq!(queue.queue_counts("posts").await.unwrap().queued, jobs);
    }
    let resumed = client
        .post(format!("http://{}/v1/queues/posts/resume", admins[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    all_finished_on_redis(&queue, "posts", jobs, 0).await;

    {
        let effects = upstream.effects.lock().unwrap();
        assert_eq!(effects.len() as u64, jobs, "every job reached the upstream");
        assert!(
            effects.values().all(|e| e.applied == 1 && e.refused == 0),
            "every job took effect exactly once"
        );
    }
    let done: Vec<u64> = hosts
        .iter()
        .map(|h| h.topology().connectors().all()[0].stats.job_snapshot().done)
        .collect();
    assert_eq!(done.iter().sum::<u64>(), jobs, "{done:?}");
    assert!(done.iter().all(|&d| d > 0), "both hosts ran jobs: {done:?}");
    for backend in &databases {
        let counts = backend.queue_counts("posts").await.unwrap();
        assert_eq!(counts, tsunagi::backends::QueueCounts::default());
    }
    for host in hosts {
        host.shutdown().await;
    }
}
