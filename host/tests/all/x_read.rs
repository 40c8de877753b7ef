//! End to end: the X read connector polling linked users on the fake X API through the real
//! host (SQLite, sandbox, egress, budgets) with host-side filters, and the usage-cap pause.
//!
//! The thousand-user run signs every request with its user's OAuth 1.0a token (linked in the
//! host sealed, as `tsunagi targets add --tokens` does; the fake verifies each signature), and
//! the OAuth 2.0 run has the host refresh user tokens before they expire at the fake's token
//! endpoint. The other tests run the fake with auth off; rate limits are then kept per user id,
//! as X keeps them per user token.

use crate::common::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tsunagi::backends::{ItemQuery, StoredItem};
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::x::{
    FixtureSpec, Post, PostKind, Scopes, XAuth, XClock, XServer, XServerConfig,
};

const LIMIT: Duration = Duration::from_secs(120);
const USAGE_CAPPED: &str = "https://api.twitter.com/2/problems/usage-capped";

/// The x-read connector reaching the fake on `port`; `extra` goes into the connector's table,
/// `rule` into its allow rule (a credential), `budget` into the per-user budget.
fn xread_connector(port: u16, extra: &str, budget: &str, rule: &str) -> String {
    format!(
        r#"
[connectors.xread]
plugin = "{plugin}"
role = "poller"
concurrency = 16
origin = "x"
{extra}

[connectors.xread.config]
base_url = "http://127.0.0.1:{port}"
max_results = 100
max_pages = 10

[connectors.xread.filters]
drop_categories = ["x:reply", "x:retweet"]
drop_hashtags = ["ad"]
drop_matching = "^post 5 of "

[connectors.xread.schedule]
min_interval = "10m"
max_interval = "1h"

[connectors.xread.retry]
first_delay = "1m"

[connectors.xread.limits]
call_timeout = "20s"

[[connectors.xread.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
budget = "x-user"
{rule}

[budgets.x-user]
{budget}
per = "target"
"#,
        plugin = plugin("x_read").display()
    )
}

/// Which filter the host must apply to `post`, as the connector's categories and the config
/// above say (categories first, in the item's order; then hashtags; then the regex).
fn expected_filter(post: &Post) -> Option<&'static str> {
    if matches!(post.kind, PostKind::Reply | PostKind::Retweet) {
        return Some("drop_categories");
    }
    if post
        .hashtags
        .iter()
        .any(|tag| tag.eq_ignore_ascii_case("ad"))
    {
        return Some("drop_hashtags");
    }
    post.text
        .starts_with("post 5 of ")
        .then_some("drop_matching")
}

async fn items_of(backend: &dyn tsunagi::backends::ItemStore, user: u64) -> Vec<StoredItem> {
    let mut items = backend
        .list_items(&ItemQuery {
            connector: Some("xread".into()),
            target: Some(user.to_string()),
            limit: 10_000,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    items.sort_by_key(|item| item.seq);
    items
}

fn manual_clock_for_fake(clock: &ManualClock) -> XClock {
    let clock = clock.clone();
    XClock(std::sync::Arc::new(move || clock.now_ms() as f64 / 1000.0))
}

const CONSUMER_KEY: &str = "ck-SECRET-x-read";
const CONSUMER_SECRET: &str = "cs-SECRET-x-read";
const TOKEN_KEY: &str = "6162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80";

/// `[host] token_key` and the app's credential, its secrets in files in `dir`: `x-app`
/// (OAuth 1.0a) and `x-user` (OAuth 2.0 user tokens refreshed at the fake's token endpoint).
fn credentials_section(dir: &std::path::Path, base_url: &str) -> (String, String) {
    for (file, value) in [
        ("consumer_key", CONSUMER_KEY),
        ("consumer_secret", CONSUMER_SECRET),
        ("token_key", TOKEN_KEY),
    ] {
        std::fs::write(dir.join(file), value).unwrap();
    }
    let host = "token_key = { file = \"token_key\" }".to_string();
    let credentials = format!(
        r#"
[credentials.x-app]
kind = "oauth1"
consumer_key = {{ file = "consumer_key" }}
consumer_secret = {{ file = "consumer_secret" }}

[credentials.x-user]
kind = "oauth2-user"
client_id = "tsunagi-test"
token_url = "{base_url}/2/oauth2/token"
refresh_before = "10m"
allow_internal = true
"#
    );
    (host, credentials)
}

/// The host's config and store for x-read reaching `x` through `credential`, with the fake's
/// first `users` users added as targets (not linked yet).
async fn host_with_credential(
    x: &XServer,
    dir: &std::path::Path,
    users: u32,
    budget: &str,
    credential: &str,
    clock: &ManualClock,
) -> (
    tsunagi::config::Config,
    std::sync::Arc<dyn tsunagi::backends::Backend>,
    Vec<u64>,
) {
    let (host_keys, credentials) = credentials_section(dir, x.base_url());
    let text = host_section(&host_keys)
        + &credentials
        + &xread_connector(
            x.addr().port(),
            "",
            budget,
            &format!("credential = \"{credential}\""),
        );
    let config = write_config(dir, &text);
    let backend = open_backend(&config).await;
    let users: Vec<u64> = (0..users).map(XServer::user_id).collect();
    let targets: Vec<String> = users.iter().map(u64::to_string).collect();
    backend
        .add_targets("xread", &targets, clock.now_ms())
        .await
        .unwrap();
    (config, backend, users)
}

/// Links `users` in the host as `tsunagi targets add --tokens` does (sealed in the store), each
/// with the tokens file `tokens(user)` for `credential`.
async fn link_all(
    config: &tsunagi::config::Config,
    backend: &std::sync::Arc<dyn tsunagi::backends::Backend>,
    clock: &ManualClock,
    credential: &str,
    users: &[u64],
    tokens: impl Fn(u64) -> String,
) {
    let credentials = tsunagi::credentials::Credentials::from_config(
        config,
        backend.clone(),
        std::sync::Arc::new(clock.clone()),
    )
    .expect("credentials");
    for &user in users {
        credentials
            .link(credential, &user.to_string(), tokens(user).as_bytes())
            .await
            .expect("linked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_filtered_in_order_and_a_restart_imports_nothing_twice() {
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    // The fake verifies every request's OAuth 1.0a signature against the user's own token.
    let x = XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users: 1000,
            posts_per_user: 12,
            posts_override: Vec::new(),
        },
        auth: XAuth::OAuth1 {
            consumer_key: CONSUMER_KEY.into(),
            consumer_secret: CONSUMER_SECRET.into(),
        },
        clock: manual_clock_for_fake(&clock),
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 60 a minute per user: well below the fake's 900 per 15 minutes per token.
    let (config, backend, users) = host_with_credential(
        &x,
        dir.path(),
        1000,
        "rate = \"60/min\"\nburst = 10",
        "x-app",
        &clock,
    )
    .await;
    for &user in &users {
        x.link_oauth1_user(
            user,
            &format!("tok-SECRET-{user}"),
            &format!("tsec-SECRET-{user}"),
            Scopes::READ,
        );
    }
    link_all(&config, &backend, &clock, "x-app", &users, |user| {
        format!(
            r#"{{"token": "tok-SECRET-{user}", "token_secret": "tsec-SECRET-{user}", "scopes": ["read"]}}"#
        )
    })
    .await;

    let view = run_until_idle(&config, backend.clone(), &clock).await;
    let stats = connector_stats(&view, "xread");
    assert_eq!(stats.polls_failed, 0, "{stats:?}");
    assert_eq!(stats.polls_ok, 1000);
    assert_eq!(x.stats().rate_limited, 0);
    assert_eq!(
        x.stats().auth_failures,
        0,
        "every request signed with its user's token"
    );
    assert_eq!(x.stats().timeline_requests, 1000, "one page per user");

    let mut expected_kept = 0u64;
    let mut expected_dropped: BTreeMap<&str, u64> = BTreeMap::new();
    for &user in &users {
        for post in x.posts(user) {
            match expected_filter(&post) {
                Some(filter) => *expected_dropped.entry(filter).or_insert(0) += 1,
                None => expected_kept += 1,
            }
        }
    }
    assert!(
        expected_dropped.values().all(|n| *n > 0),
        "{expected_dropped:?}"
    );
    assert_eq!(stats.items_new, expected_kept);
    assert_eq!(
        backend.count_items(Some("xread")).await.unwrap(),
        expected_kept
    );
    let filtered = stats.items_filtered;
    assert_eq!(
        filtered.drop_categories,
        expected_dropped["drop_categories"]
    );
    assert_eq!(filtered.drop_hashtags, expected_dropped["drop_hashtags"]);
    assert_eq!(filtered.drop_matching, expected_dropped["drop_matching"]);

    for &user in users.iter().step_by(97) {
        let posts = x.posts(user);
        let kept: Vec<String> = posts
            .iter()
            .filter(|post| expected_filter(post).is_none())
            .map(|post| post.id.to_string())
            .collect();
        let stored = items_of(backend.as_ref(), user).await;
        let ids: Vec<String> = stored.iter().map(|s| s.item.id.clone()).collect();
        assert_eq!(ids, kept, "user {user}: the kept posts, oldest first");
        assert!(
            stored.iter().all(|s| s.item.origin.as_deref() == Some("x")),
            "user {user}: every item carries the connector's origin"
        );
        let times: Vec<&str> = stored
            .iter()
            .map(|s| s.item.published.as_deref().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        let target = backend
            .get_target("xread", &user.to_string())
            .await
            .unwrap()
            .unwrap();
        let newest = posts.iter().map(|post| post.id).max().unwrap();
        assert_eq!(
            target.cursor,
            Some(newest.to_string()),
            "the cursor passes filtered posts too"
        );
    }

    // A restart: ten users posted since; the next round imports exactly those ten.
    for &user in &users[..10] {
        x.publish(user, &format!("fresh news from {user}"));
    }
    clock.advance(Duration::from_secs(2 * 3600));
    let view = run_until_idle(&config, backend.clone(), &clock).await;
    let stats = connector_stats(&view, "xread");
    assert_eq!((stats.polls_ok, stats.polls_failed), (1000, 0));
    assert_eq!(stats.items_new, 10);
    assert_eq!(
        stats.items_filtered.drop_categories, 0,
        "nothing fetched twice"
    );
    assert_eq!(
        backend.count_items(Some("xread")).await.unwrap(),
        expected_kept + 10
    );
    assert_eq!(x.stats().rate_limited, 0);
    assert_eq!(x.stats().auth_failures, 0);
    let stored = items_of(backend.as_ref(), users[0]).await;
    assert_eq!(
        stored.last().unwrap().item.content.as_deref(),
        Some(format!("fresh news from {}", users[0]).as_str())
    );
}

/// Every file of the SQLite database in `dir`, as text for grepping.
fn database_text(dir: &std::path::Path) -> String {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("test.db"))
        {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!bytes.is_empty(), "the database files were read");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_user_tokens_are_refreshed_before_they_expire_and_the_rotated_pair_is_kept() {
    const USERS: u32 = 40;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let x = XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users: USERS,
            posts_per_user: 3,
            posts_override: Vec::new(),
        },
        auth: XAuth::OAuth2 { app_bearer: None },
        access_token_lifetime: Duration::from_secs(3600),
        clock: manual_clock_for_fake(&clock),
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, backend, users) =
        host_with_credential(&x, dir.path(), USERS, "rate = \"100/s\"", "x-user", &clock).await;
    let pairs: BTreeMap<u64, (String, String)> = users
        .iter()
        .map(|&user| (user, x.link_oauth2_user(user, Scopes::READ)))
        .collect();
    link_all(&config, &backend, &clock, "x-user", &users, |user| {
        let (access, refresh) = &pairs[&user];
        format!(
            r#"{{"access_token": "{access}", "refresh_token": "{refresh}", "expires_in": 3600, "scopes": ["read"]}}"#
        )
    })
    .await;
    let issued: Vec<&String> = pairs.values().flat_map(|(a, r)| [a, r]).collect();

    // Fresh tokens: used as linked.
    let view = run_until_idle(&config, backend.clone(), &clock).await;
    let stats = connector_stats(&view, "xread");
    assert_eq!((stats.polls_ok, stats.polls_failed), (u64::from(USERS), 0));
    assert_eq!(x.stats().refreshes, 0);

    // 55 minutes on, each token is within `refresh_before` of expiring: refreshed first, once
    // per user. An hour and more after that, the pair from that refresh has expired in turn:
    // only the rotated refresh token, kept by the host, works (the fake spends each one once),
    // and each host run here is a fresh start from the store.
    for (round, advance) in [(1u64, 55 * 60), (2, 2 * 3600)] {
        for &user in &users {
            x.publish(user, &format!("news {round} from {user}"));
        }
        clock.advance(Duration::from_secs(advance));
        let view = run_until_idle(&config, backend.clone(), &clock).await;
        let stats = connector_stats(&view, "xread");
        assert_eq!(
            (stats.polls_ok, stats.polls_failed, stats.items_new),
            (u64::from(USERS), 0, u64::from(USERS)),
            "round {round}: {stats:?}"
        );
        let fake = x.stats();
        assert_eq!(fake.refreshes, round * u64::from(USERS), "{fake:?}");
        assert_eq!(
            (fake.refresh_failures, fake.auth_failures),
            (0, 0),
            "{fake:?}"
        );
    }
    drop(backend);
    let database = database_text(dir.path());
    for token in &issued {
        assert!(
            !database.contains(token.as_str()),
            "{token} in the database file"
        );
    }
    assert!(
        !database.contains("fake-access-") && !database.contains("fake-refresh-"),
        "no refreshed token in the database file either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_active_user_and_a_slow_one_do_not_delay_the_others() {
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let x = XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users: 40,
            posts_per_user: 6,
            // User 0 has 4.5 pages of posts.
            posts_override: vec![(0, 450)],
        },
        clock: manual_clock_for_fake(&clock),
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let slow = XServer::user_id(1);
    x.hold_user(slow);
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("") + &xread_connector(x.addr().port(), "", "rate = \"100/s\"", "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let targets: Vec<String> = (0..40).map(|i| XServer::user_id(i).to_string()).collect();
    backend
        .add_targets("xread", &targets, clock.now_ms())
        .await
        .unwrap();
    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let stats = running
        .topology()
        .connectors()
        .get("xread")
        .unwrap()
        .stats
        .clone();
    let deadline = tokio::time::Instant::now() + LIMIT;
    // Everyone but the slow user is polled while its request is still held.
    while stats.snapshot().polls_ok < 39 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(x.pending_for(slow), 1, "the slow user is still pending");
    assert!(items_of(backend.as_ref(), slow).await.is_empty());
    let active = XServer::user_id(0);
    assert_eq!(
        x.timeline_requests_for(active),
        5,
        "every page of the active user"
    );
    let active_kept = x
        .posts(active)
        .iter()
        .filter(|p| expected_filter(p).is_none())
        .count();
    assert_eq!(items_of(backend.as_ref(), active).await.len(), active_kept);

    x.release_users();
    while stats.snapshot().polls_ok < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let slow_kept = x
        .posts(slow)
        .iter()
        .filter(|p| expected_filter(p).is_none())
        .count();
    assert_eq!(items_of(backend.as_ref(), slow).await.len(), slow_kept);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_for_the_reset_of_that_users_token() {
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let x = XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users: 2,
            posts_per_user: 6,
            posts_override: Vec::new(),
        },
        rate_limit: 1,
        rate_window: Duration::from_secs(900),
        clock: manual_clock_for_fake(&clock),
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let (spent, fresh) = (XServer::user_id(0), XServer::user_id(1));
    // Someone else used user 0's only request of this window.
    let outside = reqwest::get(format!("{}/2/users/{spent}/tweets", x.base_url()))
        .await
        .unwrap();
    assert_eq!(outside.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("") + &xread_connector(x.addr().port(), "", "rate = \"100/s\"", "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    backend
        .add_targets(
            "xread",
            &[spent.to_string(), fresh.to_string()],
            clock.now_ms(),
        )
        .await
        .unwrap();

    // One running host: the budgets' push-back lives in the running host (not in the store).
    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let stats = running
        .topology()
        .connectors()
        .get("xread")
        .unwrap()
        .stats
        .clone();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            stats.snapshot()
        );
        !done()
    };
    while wait_for("first round", &|| stats.snapshot().polls() == 2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = stats.snapshot();
    assert_eq!((first.polls_ok, first.polls_failed), (1, 1), "{first:?}");
    assert_eq!(x.stats().rate_limited, 1);
    let target = backend
        .get_target("xread", &spent.to_string())
        .await
        .unwrap()
        .unwrap();
    assert!(
        target.last_error.as_deref().unwrap().contains("HTTP 429"),
        "{target:?}"
    );

    // Ten minutes on, user 0's retry is due, but its token's window has not reset: the budget
    // holds the call back and no request reaches X.
    let requests = x.stats().timeline_requests;
    clock.advance(Duration::from_secs(600));
    while wait_for("deferred", &|| stats.snapshot().polls_deferred >= 1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.snapshot().polls(), 2, "no call went out");
    assert_eq!(x.stats().timeline_requests, requests);

    // After the reset, user 0 is polled; no second 429.
    clock.advance(Duration::from_secs(3600));
    // A poll counts as done before its group commit lands: wait for the items too.
    let kept = |user: u64| {
        x.posts(user)
            .iter()
            .filter(|post| expected_filter(post).is_none())
            .count()
    };
    let fresh_items = kept(fresh);
    assert!(fresh_items > 0 && kept(spent) == fresh_items);
    loop {
        let stored = (
            items_of(backend.as_ref(), spent).await.len(),
            items_of(backend.as_ref(), fresh).await.len(),
        );
        if !wait_for("after the reset", &|| {
            stats.snapshot().polls_ok >= 2 && stored == (fresh_items, fresh_items)
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(x.stats().rate_limited, 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_cap_pauses_the_connector_until_resumed() {
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let x = XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users: 5,
            posts_per_user: 6,
            posts_override: Vec::new(),
        },
        clock: manual_clock_for_fake(&clock),
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    x.set_usage_capped(true);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("pause_on_problem = [\"{USAGE_CAPPED}\"]");
    let text = host_section("admin_listen = \"127.0.0.1:0\"")
        + &xread_connector(x.addr().port(), &extra, "rate = \"100/s\"", "")
            .replace("concurrency = 16", "concurrency = 1");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let targets: Vec<String> = (0..5).map(|i| XServer::user_id(i).to_string()).collect();
    backend
        .add_targets("xread", &targets, clock.now_ms())
        .await
        .unwrap();
    let running = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let admin = running.admin_addr().unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let status = loop {
        let status = fetch_status(admin).await;
        if !status["connectors"][0]["paused"].is_null() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never paused: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let paused = &status["connectors"][0]["paused"];
    assert!(
        paused["reason"].as_str().unwrap().contains(USAGE_CAPPED),
        "{paused}"
    );
    assert!(paused["until"].is_null(), "no pause_for: until resumed");
    assert_eq!(
        status["connectors"][0]["jobs_failed"], 0,
        "a pause is not a failure"
    );
    // Paused: no more calls, however long we wait.
    clock.advance(Duration::from_secs(7200));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(x.stats().usage_capped, 1, "one call, then the pause");

    x.set_usage_capped(false);
    let resumed: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{admin}/v1/connectors/xread/resume"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["resumed"], true);
    let stats = running
        .topology()
        .connectors()
        .get("xread")
        .unwrap()
        .stats
        .clone();
    while stats.snapshot().polls_ok < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fetch_status(admin).await["connectors"][0]["paused"].is_null());
    let unknown = reqwest::Client::new()
        .post(format!("http://{admin}/v1/connectors/nope/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    running.shutdown().await;
}

#[test]
fn a_bad_filter_or_pause_setting_is_a_config_error_at_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = host_section("")
        + &xread_connector(1, "pause_for = \"0s\"", "rate = \"1/s\"", "")
            .replace("\"^post 5 of \"", "\"(unclosed\"");
    let path = dir.path().join("tsunagi.toml");
    std::fs::write(&path, &text).unwrap();
    let err = tsunagi::config::Config::load(&path)
        .unwrap_err()
        .to_string();
    let line = text
        .lines()
        .position(|line| line.starts_with("drop_matching"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("tsunagi.toml:{line}:"))
            && err.contains("not a valid regular expression"),
        "{err}"
    );
    assert!(err.contains("connectors.xread.pause_for"), "{err}");
}

/// `tsunagi plugin test` over both of the connector's cassettes (v2 and v1.1 shapes, and the
/// bad-response, rate-limit, auth and server-error cases).
#[test]
fn the_x_read_connector_passes_its_cassettes() {
    for (cassette, cases) in [("v2", 12), ("v1.1", 4)] {
        let dir = workspace_root()
            .join("plugins/x-read/cassettes")
            .join(cassette);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .args(["plugin", "test"])
            .arg(plugin("x_read"))
            .arg("--cassette")
            .arg(&dir)
            .env("TSUNAGI_COMPILE_CACHE", compile_cache())
            .output()
            .expect("tsunagi runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{text}");
        assert!(
            text.contains(&format!(
                "{cases} case(s) in 1 cassette(s): {cases} passed, 0 failed"
            )),
            "{text}"
        );
    }
}
