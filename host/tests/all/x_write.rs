//! Posting to X end to end: the `tsunagi` binary runs `plugins/x-write` over the job queue
//! against the fake X API (`tsunagi_fake_upstream::x`), which verifies the OAuth 1.0a signature
//! of every request. Users are linked with `tsunagi targets add --tokens -` (stdin); the host
//! signs each post with its user's token. The fake fails calls, goes down, drops connections
//! after accepting posts, and the host is SIGKILLed; every post must arrive exactly once.

use crate::common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tsunagi::backends::{Backend, JobOutcome};
use tsunagi::config::Config;
use tsunagi_fake_upstream::x::{FixtureSpec, Outage, Scopes, XAuth, XServer, XServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");
const CONSUMER_KEY: &str = "ck-SECRET-x-write";
const CONSUMER_SECRET: &str = "cs-SECRET-x-write";
const TOKEN_KEY: &str = "3132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f50";

fn token(user: u32) -> String {
    format!("tok-SECRET-{user}")
}

fn token_secret(user: u32) -> String {
    format!("tsec-SECRET-{user}")
}

async fn fake_x(users: u32) -> XServer {
    XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users,
            posts_per_user: 3,
            posts_override: Vec::new(),
        },
        auth: XAuth::OAuth1 {
            consumer_key: CONSUMER_KEY.into(),
            consumer_secret: CONSUMER_SECRET.into(),
        },
        ..XServerConfig::default()
    })
    .await
    .expect("fake X API")
}

/// The host's config: the app's OAuth 1.0a credential (secrets from files), budgets per app and
/// per user, and the x-write connector reaching the fake through that credential.
fn write_files(dir: &Path, x: &XServer, admin_port: u16, claim_lease: &str) -> Config {
    std::fs::write(dir.join("consumer_key"), CONSUMER_KEY).unwrap();
    std::fs::write(dir.join("consumer_secret"), CONSUMER_SECRET).unwrap();
    std::fs::write(dir.join("token_key"), TOKEN_KEY).unwrap();
    let port = x.addr().port();
    let text = host_section(&format!(
        "admin_listen = \"127.0.0.1:{admin_port}\"\nclaim_lease = \"{claim_lease}\"\n\
         token_key = {{ file = \"token_key\" }}\n"
    )) + &format!(
        r#"
[credentials.x-app]
kind = "oauth1"
consumer_key = {{ file = "consumer_key" }}
consumer_secret = {{ file = "consumer_secret" }}

[budgets.x-app-posts]
rate = "400/s"
burst = 20

[budgets.x-user-posts]
rate = "100/s"
burst = 4
per = "target"

[connectors.x-write]
plugin = "{plugin}"
role = "handler"
concurrency = 16

[connectors.x-write.retry]
first_delay = "200ms"
max_delay = "2s"
max_failures = 60

[connectors.x-write.limits]
call_timeout = "2s"

[connectors.x-write.config]
base_url = "{base}"

[[connectors.x-write.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
credential = "x-app"
budget = ["x-app-posts", "x-user-posts"]
"#,
        plugin = plugin("x_write").display(),
        base = x.base_url(),
    );
    write_config(dir, &text)
}

/// Links user `index` of the fake: its token in the fake, and in the host through
/// `tsunagi targets add --tokens -` (stdin, never argv). Answers the X user id.
async fn link(x: &XServer, config_path: &Path, index: u32, write: bool) -> String {
    let user = XServer::user_id(index);
    let scopes = if write {
        Scopes::READ_WRITE
    } else {
        Scopes::READ
    };
    x.link_oauth1_user(user, &token(index), &token_secret(index), scopes);
    let granted = if write {
        r#"["read", "write"]"#
    } else {
        r#"["read"]"#
    };
    let tokens = format!(
        r#"{{"token": "{}", "token_secret": "{}", "scopes": {granted}}}"#,
        token(index),
        token_secret(index)
    );
    let user = user.to_string();
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "targets", "add", "x-write", &user, "--tokens", "-", "--config",
        ])
        .arg(config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn targets add");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(tokens.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "targets add {user}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    user
}

fn spawn_host(config_path: &Path, log: &Path) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(config_path)
        .env("TSUNAGI_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tsunagi run")
}

/// SIGTERM, and the exit it leads to (a drain: the log is complete).
async fn stop(host: &mut tokio::process::Child) {
    let pid = host.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let exited = tokio::time::timeout(Duration::from_secs(60), host.wait()).await;
    assert!(
        exited.is_ok_and(|status| status.is_ok_and(|s| s.success())),
        "exit 0 on SIGTERM"
    );
}

/// Enqueues a post through the admin API; answers the job id.
async fn enqueue_post(admin: SocketAddr, user: &str, text: &str, origin: Option<&str>) -> i64 {
    let payload = match origin {
        Some(origin) => serde_json::json!({"text": text, "origin": origin}),
        None => serde_json::json!({"text": text}),
    };
    let response = reqwest::Client::new()
        .post(format!("http://{admin}/v1/queues/x-write/jobs"))
        .json(&serde_json::json!({"kind": "post", "target": user, "payload": payload}))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(response.status(), 202);
    let answer: serde_json::Value = response.json().await.unwrap();
    answer["id"].as_i64().expect("a job id")
}

/// Waits until every one of `jobs` jobs is finished (done or dead) and none waits or runs.
async fn all_finished(backend: &Arc<dyn Backend>, jobs: u64, within: Duration) {
    let finished = tokio::time::timeout(within, async {
        loop {
            let counts = backend.queue_counts("x-write").await.unwrap();
            if counts.done + counts.dead == jobs && counts.queued + counts.leased == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let counts = backend.queue_counts("x-write").await.unwrap();
    assert!(finished.is_ok(), "every job finished in time: {counts:?}");
}

/// What became of one job, from the store.
async fn outcome_of(backend: &Arc<dyn Backend>, id: i64) -> (String, Option<JobOutcome>) {
    let record = backend.job(id).await.unwrap().expect("the job is stored");
    (record.state, record.outcome)
}

/// 1,000 posts for 20 linked users (4 of them read-only), 1 in 25 of which came from X, while
/// the fake API fails 30% of calls with 503 and is down for 20 s in the middle: every post of a
/// writing user arrives exactly once, loop posts are skipped, read-only users' posts are
/// refused by the host before they leave (skipped, never sent), and no secret is in the log,
/// `/status`, the stored jobs or the database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_posts_arrive_once_through_503s_and_an_outage() {
    let users = 20u32;
    let x = fake_x(users).await;
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let config = write_files(dir.path(), &x, admin_port, "7s");
    let config_path = dir.path().join("tsunagi.toml");
    let mut linked = Vec::new();
    for index in 0..users {
        let writes = index % 5 != 4;
        linked.push((link(&x, &config_path, index, writes).await, writes));
    }
    let backend = open_backend(&config).await;
    let log = dir.path().join("run.log");
    let mut host = spawn_host(&config_path, &log);
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    wait_ready(admin).await;

    x.fail_fraction(0.3, 7);
    let total = 1000u32;
    let mut jobs = BTreeMap::new();
    for n in 0..total {
        let (user, writes) = &linked[(n % users) as usize];
        let from_x = n % 25 == 0;
        let text = format!("post {n} by {user}");
        let id = enqueue_post(admin, user, &text, from_x.then_some("x")).await;
        jobs.insert(id, (text, *writes, from_x));
    }
    // Down for 20 s once about a third of the posts are in.
    let third = tokio::time::timeout(Duration::from_secs(120), async {
        while x.stats().posts_accepted < 250 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(third.is_ok(), "posts were going out: {:?}", x.stats());
    x.down_for(Duration::from_secs(20), Outage::Unavailable);
    all_finished(&backend, u64::from(total), Duration::from_secs(300)).await;

    let status: serde_json::Value = reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stop(&mut host).await;

    let stats = x.stats();
    assert!(stats.unavailable > 100, "the fake failed calls: {stats:?}");
    assert_eq!(
        stats.auth_failures, 0,
        "every request was signed right: {stats:?}"
    );
    assert_eq!(
        stats.duplicates_refused, 0,
        "nothing was posted twice: {stats:?}"
    );
    assert_eq!(
        stats.forbidden, 0,
        "no read-only user's post left the host: {stats:?}"
    );
    let (mut posted, mut looped, mut refused) = (0, 0, 0);
    for (id, (text, writes, from_x)) in &jobs {
        let (state, outcome) = outcome_of(&backend, *id).await;
        assert_eq!(state, "done", "job {id} ({text}): {outcome:?}");
        let accepted = x.accepted_posts_with(text);
        match outcome {
            Some(JobOutcome::Skipped { reason }) if *from_x => {
                assert!(reason.contains("came from X"), "{reason}");
                assert_eq!(accepted, 0, "{text}");
                looped += 1;
            }
            Some(JobOutcome::Skipped { reason }) if !writes => {
                assert!(reason.contains("write"), "job {id}: {reason}");
                assert_eq!(accepted, 0, "{text}");
                refused += 1;
            }
            Some(JobOutcome::Done { reference, .. }) if *writes && !from_x => {
                assert_eq!(accepted, 1, "{text} arrived exactly once");
                assert!(reference.is_some(), "job {id} kept the post id");
                posted += 1;
            }
            other => panic!("job {id} ({text}, writes {writes}, from X {from_x}): {other:?}"),
        }
    }
    assert_eq!(looped, 40);
    // Loop posts (n % 25 == 0) all fall on writing users (n % 20 is then 0, 5, 10 or 15).
    assert_eq!(refused, 200, "4 read-only users' 50 posts each");
    assert_eq!(posted, 760);
    assert_eq!(stats.posts_accepted, 760);
    let connector = &status["connectors"][0];
    assert_eq!(connector["name"], "x-write", "{status}");
    assert_eq!(connector["handler"]["jobs"]["skipped"], 240, "{status}");

    // No secret anywhere: the debug log, /status, the stored jobs, the database file.
    let mut secrets = vec![
        CONSUMER_KEY.to_string(),
        CONSUMER_SECRET.to_string(),
        TOKEN_KEY.to_string(),
    ];
    for index in 0..users {
        secrets.push(token(index));
        secrets.push(token_secret(index));
    }
    let mut places = vec![
        ("the log", std::fs::read(&log).unwrap()),
        ("/status", status.to_string().into_bytes()),
    ];
    for file in ["test.db", "test.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            places.push((file, bytes));
        }
    }
    for (id, _) in jobs.iter().take(50) {
        let record = backend.job(*id).await.unwrap().unwrap();
        places.push(("a stored job", format!("{record:?}").into_bytes()));
    }
    assert!(
        String::from_utf8_lossy(&places[0].1).contains("x-write"),
        "the log has the run in it"
    );
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{place} holds a secret");
        }
    }
}

/// The host SIGKILLed 10 times while posting, with the fake dropping the connection after
/// accepting some posts (the post exists, the host never hears so): every post arrives exactly
/// once, each job ends done, and the fake never had to refuse a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_ten_times_with_dropped_answers_every_post_arrives_once() {
    let users = 10u32;
    let x = fake_x(users).await;
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let config = write_files(dir.path(), &x, admin_port, "7s");
    let config_path = dir.path().join("tsunagi.toml");
    let mut linked = Vec::new();
    for index in 0..users {
        linked.push(link(&x, &config_path, index, true).await);
    }
    let backend = open_backend(&config).await;
    let log = dir.path().join("run.log");
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let mut host = spawn_host(&config_path, &log);
    wait_ready(admin).await;
    x.set_delay(Duration::from_millis(300));
    let total = 600u32;
    let mut jobs = BTreeMap::new();
    for n in 0..total {
        let user = &linked[(n % users) as usize];
        let text = format!("kill test {n} by {user}");
        jobs.insert(enqueue_post(admin, user, &text, None).await, text);
    }
    for kill in 1..=10 {
        x.drop_after_accepting(2);
        let before = x.stats().posts_accepted;
        let moving = tokio::time::timeout(Duration::from_secs(120), async {
            while x.stats().posts_accepted < before + 5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let counts = backend.queue_counts("x-write").await.unwrap();
        assert!(
            moving.is_ok(),
            "posts went out before kill {kill}: {counts:?} {:?}",
            x.stats()
        );
        host.start_kill().expect("SIGKILL");
        let _ = host.wait().await;
        host = spawn_host(&config_path, &log);
        wait_ready(admin).await;
    }
    x.set_delay(Duration::ZERO);
    all_finished(&backend, u64::from(total), Duration::from_secs(300)).await;
    stop(&mut host).await;

    let stats = x.stats();
    assert!(
        stats.dropped_connections >= 10,
        "answers were dropped: {stats:?}"
    );
    assert_eq!(
        stats.duplicates_refused, 0,
        "nothing was posted twice: {stats:?}"
    );
    assert_eq!(stats.auth_failures, 0, "{stats:?}");
    let mut found_earlier = 0;
    for (id, text) in &jobs {
        let (state, outcome) = outcome_of(&backend, *id).await;
        assert_eq!(state, "done", "job {id}: {outcome:?}");
        assert_eq!(
            x.accepted_posts_with(text),
            1,
            "{text} arrived exactly once"
        );
        if let Some(JobOutcome::Done {
            detail: Some(detail),
            ..
        }) = &outcome
            && detail.contains("not posted again")
        {
            found_earlier += 1;
        }
    }
    assert_eq!(stats.posts_accepted, u64::from(total));
    assert!(
        found_earlier >= 10,
        "posts whose answer was lost were found, not posted again ({found_earlier})"
    );
}
