//! No-code connectors end to end: connectors declared only in TOML, run by the host's
//! interpreter (`plugins/declarative`, real wasm components). The shipped Yahoo! Shopping file
//! (`config/shops/yahoo.toml`, pointed at the fake Yahoo API) is dropped into the config
//! folder of a running host and is searched without a restart; mistakes in such a file are
//! reported at its file and line; a JSON API (the fake X API) is polled by a declarative
//! poller, following its pages.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::clock::{Clock, ManualClock, SystemClock};
use tsunagi::config::Config;
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::shop::{ShopApi, ShopMode, ShopServer, ShopServerConfig};
use tsunagi_fake_upstream::x::{FixtureSpec, XServer, XServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");
const YAHOO_APP_ID: &str = "yahoo-SECRET-app";

/// A `[host]` that watches its files (the drop-in folder among them) and runs the interpreter
/// from where `scripts/build-plugins` put it.
fn watching_host(admin: bool) -> String {
    format!(
        "[host]\ndatabase = \"test.db\"\ncompile_cache = \"{cache}\"\nidle_poll = \"50ms\"\n\
         shutdown_grace = \"10s\"\nwatch = true\nconnectors_dir = \"connectors\"\n\
         declarative_plugins = \"{plugins}\"\n{admin}\n",
        cache = compile_cache().display(),
        plugins = declarative_plugins().display(),
        admin = if admin {
            "admin_listen = \"127.0.0.1:0\""
        } else {
            ""
        }
    )
}

/// Rakuten by its plugin, in the main file.
fn rakuten_section(dir: &Path, server: &ShopServer) -> String {
    std::fs::write(dir.join("rakuten.app_id"), "rakuten-SECRET-app").unwrap();
    format!(
        r#"
[credentials.rakuten-app]
kind = "api-key"
key = {{ file = "rakuten.app_id" }}
query = "applicationId"

[budgets.rakuten]
rate = "1/1100ms"

[connectors.rakuten]
plugin = "{plugin}"
role = "searcher"
concurrency = 8

[connectors.rakuten.config]
base_url = "{search}"

[[connectors.rakuten.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
budget = "rakuten"
credential = "rakuten-app"
"#,
        plugin = plugin("rakuten").display(),
        search = server.search_url(),
        port = server.addr().port(),
    )
}

async fn search(client: &reqwest::Client, base: &str, query: &str) -> (u16, Value) {
    let response = client
        .get(format!("{base}/v1/search?{query}"))
        .send()
        .await
        .expect("the admin API answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_code_shop_dropped_into_the_config_folder_is_searched_without_a_restart() {
    let rakuten = ShopServer::start(ShopServerConfig::new(
        ShopApi::Rakuten,
        "rakuten-SECRET-app",
    ))
    .await
    .unwrap();
    let yahoo = ShopServer::start(ShopServerConfig::new(ShopApi::Yahoo, YAHOO_APP_ID))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("connectors")).unwrap();
    let config = write_config(
        dir.path(),
        &(watching_host(true) + &rakuten_section(dir.path(), &rakuten)),
    );
    let backend = open_backend(&config).await;
    let host =
        start_host_with_clock(&config, backend, Arc::new(SystemClock), RunMode::Forever).await;
    let base = format!("http://{}", host.admin_addr().unwrap());
    let client = reqwest::Client::new();

    let (status, answer) = search(&client, &base, "q=tea").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["shops"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["rakuten"]
    );
    let (status, answer) = search(&client, &base, "q=tea&shops=yahoo").await;
    assert_eq!((status, answer["parameter"].as_str()), (400, Some("shops")));

    // Dropped in the way deploy tools write: aside, then renamed into the folder.
    let aside = dir.path().join("yahoo.toml.incoming");
    std::fs::write(
        &aside,
        shipped_yahoo(dir.path(), yahoo.base_url(), YAHOO_APP_ID),
    )
    .unwrap();
    std::fs::rename(&aside, dir.path().join("connectors/yahoo.toml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let (status, answer) = search(&client, &base, "q=green+tea&limit=6&sort=price-asc").await;
        if status == 200 && answer["shops"]["yahoo"].is_object() {
            break answer;
        }
        assert!(Instant::now() < deadline, "yahoo never joined: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["shops"]["yahoo"]["status"], "ok", "{answer}");
    assert_eq!(answer["shops"]["rakuten"]["status"], "ok", "{answer}");
    let from_yahoo: Vec<&Value> = answer["products"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["shop"] == "yahoo")
        .collect();
    let mut expected = yahoo.catalogue("green tea");
    expected.sort_by_key(|p| p.price);
    let cheapest = &expected[0];
    assert_eq!(from_yahoo[0]["price"], cheapest.price, "{answer}");
    assert_eq!(from_yahoo[0]["id"], cheapest.code.replace(':', "_"));
    assert_eq!(from_yahoo[0]["name"], cheapest.name);
    assert_eq!(from_yahoo[0]["currency"], "JPY");
    assert_eq!(from_yahoo[0]["seller"], cheapest.seller);
    assert_eq!(from_yahoo[0]["review_count"], cheapest.review_count);
    assert_eq!(from_yahoo[0]["in_stock"], cheapest.in_stock);
    assert_eq!(yahoo.stats().bad_app_id, 0, "the host added the appid");
    let prices: Vec<u64> = answer["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price"].as_u64().unwrap())
        .collect();
    assert!(prices.is_sorted(), "merged cheapest first: {prices:?}");

    // Yahoo! changes shape: that shop's error names the field; Rakuten is unaffected.
    for (round, (mode, expected)) in [
        (
            ShopMode::RenamedPrice,
            "/hits/0/price (fields.price): missing",
        ),
        (
            ShopMode::PriceAsString,
            "/hits/0/price (fields.price): expected a whole number, found",
        ),
        (ShopMode::Html200, "with text/html; charset=utf-8, not JSON"),
    ]
    .into_iter()
    .enumerate()
    {
        yahoo.set_mode(mode);
        let (status, answer) = search(&client, &base, &format!("q=sencha+{round}")).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["shops"]["yahoo"]["status"], "error",
            "{mode:?}: {answer}"
        );
        let reason = answer["shops"]["yahoo"]["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{mode:?}: {reason}");
        assert_eq!(answer["shops"]["rakuten"]["status"], "ok", "{answer}");
    }
    yahoo.set_mode(ShopMode::Normal);

    // A broken file dropped beside it: the reload is refused naming its file and line, and the
    // shops that run go on as they were.
    let broken = dir.path().join("connectors/broken.toml");
    std::fs::write(
        &broken,
        "[connectors.broken]\nrole = \"searcher\"\n\n[connectors.broken.declarative.request]\nurl = \"https://api.example/search\"\n[connectors.broken.declarative.records]\npointer = \"items\"\n[connectors.broken.declarative.fields]\nid = \"/id\"\n",
    )
    .unwrap();
    let response = client
        .post(format!("{base}/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let report = response.text().await.unwrap();
    assert!(
        report.contains(&format!("{}:7:", broken.display()))
            && report.contains("connectors.broken.declarative.records.pointer"),
        "{report}"
    );
    let (status, answer) = search(&client, &base, "q=bancha").await;
    assert_eq!(status, 200);
    // Three bad answers in four opened Yahoo!'s breaker (the shipped file has no probe): still
    // a shop, now spared; the broken file added none.
    assert_eq!(
        answer["shops"]["yahoo"]["status"], "breaker-open",
        "{answer}"
    );
    assert_eq!(answer["shops"]["rakuten"]["status"], "ok", "{answer}");
    assert!(answer["shops"]["broken"].is_null(), "{answer}");
    for server in [&rakuten, &yahoo] {
        assert_eq!(server.stats().over_limit, 0, "{:?}", server.stats());
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_in_a_no_code_file_are_reported_at_its_file_and_line() {
    let yahoo = ShopServer::start(ShopServerConfig::new(ShopApi::Yahoo, YAHOO_APP_ID))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("connectors")).unwrap();
    let good = shipped_yahoo(dir.path(), yahoo.base_url(), YAHOO_APP_ID);
    let cases = [
        (
            ("pointer = \"/hits\"", "pointer = \"hits\""),
            "connectors.yahoo.declarative.records.pointer",
            "is not a JSON pointer",
        ),
        (
            ("seller = \"/seller/name\"", "colour = \"/colour\""),
            "connectors.yahoo.declarative.fields.colour",
            "the product schema has no field \"colour\"",
        ),
        (
            ("credential = \"yahoo-app\"", "credential = \"yahoo-aap\""),
            "connectors.yahoo.declarative.credential",
            "no [credentials.yahoo-aap] is declared",
        ),
        (
            ("results = \"{limit}\"", "results = \"{limits}\""),
            "connectors.yahoo.declarative.request.query.results",
            "unknown placeholder {limits}",
        ),
        (
            ("max_limit = 100", "max_limit = 100\nmax_pagez = 3"),
            "connectors.yahoo.declarative.paging.max_pagez",
            "unknown field",
        ),
    ];
    let main = dir.path().join("tsunagi.toml");
    std::fs::write(&main, watching_host(false)).unwrap();
    let file = dir.path().join("connectors/yahoo.toml");
    for ((from, to), field, message) in cases {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        std::fs::write(&file, &bad).unwrap();
        let errors = Config::load(&main).expect_err("refused");
        let error = errors
            .errors()
            .iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("no error at {field}: {errors}"));
        assert_eq!(error.file, file.display().to_string(), "{error}");
        let line = bad
            .lines()
            .position(|l| l.contains(to.lines().last().unwrap()))
            .unwrap()
            + 1;
        assert_eq!(error.line, line, "{error}");
        assert!(error.message.contains(message), "{error}");
    }

    // The same name in two files: the second is refused, naming the first.
    std::fs::write(&file, &good).unwrap();
    std::fs::write(dir.path().join("connectors/zz-yahoo.toml"), &good).unwrap();
    let errors = Config::load(&main).expect_err("twice");
    assert!(
        errors.errors().iter().any(|e| e.field == "connectors.yahoo"
            && e.file.ends_with("zz-yahoo.toml")
            && e.message
                .contains(&format!("already declared in {}", file.display()))),
        "{errors}"
    );
    std::fs::remove_file(dir.path().join("connectors/zz-yahoo.toml")).unwrap();

    // `tsunagi check` prints the place.
    std::fs::write(
        &file,
        good.replacen("pointer = \"/hits\"", "pointer = \"hits\"", 1),
    )
    .unwrap();
    let output = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&main)
        .output()
        .expect("tsunagi check runs");
    let printed = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("{}:", file.display()))
            && printed.contains("connectors.yahoo.declarative.records.pointer"),
        "{printed}"
    );
    std::fs::write(&file, &good).unwrap();
    Config::load(&main).expect("the shipped file is good");

    // The folder is read up to a cap.
    for n in 0..256 {
        std::fs::write(dir.path().join(format!("connectors/empty-{n:03}.toml")), "").unwrap();
    }
    let errors = Config::load(&main).expect_err("257 files");
    assert!(
        errors
            .errors()
            .iter()
            .any(|e| e.field == "host.connectors_dir"
                && e.message.contains("257 .toml files, more than 256")),
        "{errors}"
    );
}

/// A JSON API polled by a declarative poller: the fake X API's v2 timeline, pages of 5
/// followed through `meta.next_token` up to 3 pages, mapped onto items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declarative_poller_polls_a_json_api_following_its_pages() {
    let x = XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users: 2,
            posts_per_user: 12,
            posts_override: Vec::new(),
        },
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = host_section(&format!(
        "declarative_plugins = \"{}\"",
        declarative_plugins().display()
    )) + &format!(
        r#"
[connectors.timeline]
role = "poller"
concurrency = 2

[connectors.timeline.declarative.request]
url = "{base}/2/users/{{target}}/tweets"
query = {{ max_results = "5", pagination_token = "{{cursor}}", "tweet.fields" = "created_at" }}

[connectors.timeline.declarative.records]
pointer = "/data"
next = "/meta/next_token"

[connectors.timeline.declarative.fields]
id = "/id"
title = "/text"
published = "/created_at"

[connectors.timeline.declarative.paging]
max_pages = 3
"#,
        base = x.base_url()
    );
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let users: Vec<String> = (0..2).map(|i| XServer::user_id(i).to_string()).collect();
    backend
        .add_targets("timeline", &users, clock.now_ms())
        .await
        .unwrap();
    let stats = run_round(&config, backend.clone(), &clock).await;
    assert_eq!(stats.polls_ok, 2, "{stats:?}");
    for user in &users {
        let expected: std::collections::BTreeSet<String> = x
            .posts(user.parse().unwrap())
            .iter()
            .map(|post| post.id.to_string())
            .collect();
        let stored: std::collections::BTreeSet<String> = backend
            .list_items(&tsunagi::backends::ItemQuery {
                connector: Some("timeline".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|item| expected.contains(&item.item.id))
            .map(|item| item.item.id)
            .collect();
        assert_eq!(expected.len(), 12);
        assert_eq!(stored, expected, "all three pages of user {user}");
    }
}
