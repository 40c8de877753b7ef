//! The product search end to end: `GET /v1/search` on the admin API fans out to searcher
//! connectors (`plugins/rakuten`, a real wasm component) over loopback HTTP to fake Rakuten
//! servers (`tsunagi_fake_upstream::shop`), each allowing one request per second per
//! application id. The application id is a host-held credential the egress path adds to the
//! query; the fakes refuse a request without it and count every one over their limit.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsunagi::clock::SystemClock;
use tsunagi::pipeline::RunMode;
use tsunagi_backends::breaker::BreakerState;
use tsunagi_fake_upstream::shop::{ShopApi, ShopMode, ShopServer, ShopServerConfig};

const ADMIN_TOKEN: &str = "admin-SECRET-search";

fn app_id(shop: &str) -> String {
    format!("app-SECRET-{shop}")
}

async fn fake_rakuten(shop: &str) -> ShopServer {
    ShopServer::start(ShopServerConfig::new(ShopApi::Rakuten, &app_id(shop)))
        .await
        .expect("fake Rakuten")
}

/// The shops' budget, as the shipped files have it: a little under the fakes' 1/s.
const RATE: &str = "1/1100ms";

/// A wider margin for the test that counts requests over the fakes' limit. The budget spaces
/// requests as they leave, the fake times them as they arrive; on two busy cores (another
/// test's three hosts crawling beside this one) one request can take a few hundred
/// milliseconds more than the next from one to the other, where a real API's network jitter
/// is well inside the shipped 100 ms.
const WIDE_RATE: &str = "1/1500ms";

/// One Rakuten connector per shop, each with its own application id (from a file), budget
/// (`rate`), and breaker probed on the fake's `/health`.
fn shop_section(dir: &Path, name: &str, server: &ShopServer, rate: &str) -> String {
    std::fs::write(dir.join(format!("{name}.app_id")), app_id(name)).unwrap();
    format!(
        r#"
[credentials.{name}-app]
kind = "api-key"
key = {{ file = "{name}.app_id" }}
query = "applicationId"

[budgets.{name}]
rate = "{rate}"
burst = 1

[breakers.{name}]
window = "6 calls"
minimum_calls = 2
failure_rate = 50
[breakers.{name}.probe]
url = "{health}"
interval = "100ms"
timeout = "500ms"
successes_to_close = 2

[connectors.{name}]
plugin = "{plugin}"
role = "searcher"
concurrency = 64

[connectors.{name}.config]
base_url = "{search}"

[connectors.{name}.limits]
call_timeout = "10s"
request_timeout = "5s"

[[connectors.{name}.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
budget = "{name}"
breaker = "{name}"
credential = "{name}-app"
"#,
        plugin = plugin("rakuten").display(),
        health = server.health_url(),
        search = server.search_url(),
        port = server.addr().port(),
    )
}

struct SearchHost {
    host: TestHost,
    client: reqwest::Client,
    base: String,
    dir: tempfile::TempDir,
}

/// The shipped Yahoo! no-code file, pointed at `server` (appid from a file, probe on its
/// `/health`, budget `rate`), for the folder `connectors/`.
fn yahoo_dropin(dir: &Path, server: &ShopServer, rate: &str) {
    std::fs::create_dir_all(dir.join("connectors")).unwrap();
    let shipped = shipped_yahoo(dir, server.base_url(), &app_id("yahoo"));
    assert!(shipped.contains(&format!("rate = \"{RATE}\"")), "{shipped}");
    let pointed = shipped.replace(RATE, rate).replace(
        "open_wait = \"30s\"\n",
        &format!(
            "open_wait = \"30s\"\n[breakers.yahoo.probe]\nurl = \"{}\"\ninterval = \"100ms\"\n",
            server.health_url()
        ),
    );
    std::fs::write(dir.join("connectors/yahoo.toml"), pointed).unwrap();
}

impl SearchHost {
    async fn start(shops: &[(&str, &ShopServer)], search: &str) -> SearchHost {
        Self::start_with(shops, None, search, RATE).await
    }

    async fn start_with(
        shops: &[(&str, &ShopServer)],
        yahoo: Option<&ShopServer>,
        search: &str,
        rate: &str,
    ) -> SearchHost {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin_token"), ADMIN_TOKEN).unwrap();
        let dropin = match yahoo {
            Some(server) => {
                yahoo_dropin(dir.path(), server, rate);
                format!(
                    "connectors_dir = \"connectors\"\ndeclarative_plugins = \"{}\"\n",
                    declarative_plugins().display()
                )
            }
            None => String::new(),
        };
        let mut text = host_section(&format!(
            "admin_listen = \"127.0.0.1:0\"\nadmin_token = {{ file = \"admin_token\" }}\n{dropin}"
        )) + &format!("\n[search]\n{search}\n");
        for (name, server) in shops {
            text += &shop_section(dir.path(), name, server, rate);
        }
        let config = write_config(dir.path(), &text);
        let backend = open_backend(&config).await;
        let host =
            start_host_with_clock(&config, backend, Arc::new(SystemClock), RunMode::Forever).await;
        let base = format!("http://{}", host.admin_addr().expect("admin listens"));
        SearchHost {
            host,
            client: reqwest::Client::new(),
            base,
            dir,
        }
    }

    async fn get(&self, query: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}/v1/search?{query}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("the admin API answers");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("a JSON answer");
        (status, body)
    }

    async fn search(&self, query: &str) -> Value {
        let (status, body) = self.get(query).await;
        assert_eq!(status, 200, "{query}: {body}");
        body
    }
}

fn status_of<'a>(answer: &'a Value, shop: &str) -> &'a str {
    answer["shops"][shop]["status"]
        .as_str()
        .unwrap_or("missing")
}

fn reason_of<'a>(answer: &'a Value, shop: &str) -> &'a str {
    answer["shops"][shop]["reason"].as_str().unwrap_or("")
}

fn products_from<'a>(answer: &'a Value, shop: &str) -> Vec<&'a Value> {
    answer["products"]
        .as_array()
        .map(|all| all.iter().filter(|p| p["shop"] == shop).collect())
        .unwrap_or_default()
}

/// Checks `condition` every 20 ms until it holds; fails the test after `within`.
async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The acceptance run: 200 searches at once over two healthy shops — Rakuten by its plugin,
/// Yahoo! by the shipped no-code file — and a Rakuten in maintenance.
/// Every answer is 200 with a status per shop; the fakes see nothing over their limits and
/// every request carried its application id; the down shop's breaker opens, after which only
/// probes reach it, until it is back and a probe closes the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_searches_at_once_with_a_shop_down_all_answer_with_each_shops_status() {
    let (first, down) = (fake_rakuten("first").await, fake_rakuten("down").await);
    let second = ShopServer::start(ShopServerConfig::new(ShopApi::Yahoo, &app_id("yahoo")))
        .await
        .expect("fake Yahoo");
    down.set_mode(ShopMode::Maintenance);
    let host = SearchHost::start_with(
        &[("first", &first), ("down", &down)],
        Some(&second),
        "deadline = \"3s\"\ncache_ttl = \"60s\"",
        WIDE_RATE,
    )
    .await;
    let host = Arc::new(host);

    let mut searches = tokio::task::JoinSet::new();
    for i in 0..200 {
        let host = host.clone();
        // 50 different queries, each asked 4 times: identical ones share one flight.
        searches.spawn(async move { host.get(&format!("q=tea+{}&limit=10", i % 50)).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = searches.join_next().await {
        answers.push(answer.expect("search task"));
    }
    let mut seen = std::collections::BTreeMap::<(String, String), usize>::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "every search answers 200: {body}");
        for shop in ["first", "yahoo", "down"] {
            let shop_status = status_of(body, shop);
            assert!(
                ["ok", "rate-limited", "breaker-open", "error", "timeout"].contains(&shop_status),
                "{shop}: {body}"
            );
            *seen
                .entry((shop.to_string(), shop_status.to_string()))
                .or_default() += 1;
            if shop_status == "ok" {
                assert_eq!(body["shops"][shop]["count"], 10, "{body}");
                assert!(!products_from(body, shop).is_empty(), "{body}");
            } else {
                assert!(products_from(body, shop).is_empty(), "{body}");
                assert!(!reason_of(body, shop).is_empty(), "a reason: {body}");
            }
        }
        assert_ne!(status_of(body, "down"), "ok", "{body}");
    }
    eprintln!("shop statuses over 200 searches: {seen:?}");
    for shop in ["first", "yahoo"] {
        assert!(
            seen.get(&(shop.to_string(), "ok".to_string())).copied() >= Some(1),
            "{shop} answered some searches: {seen:?}"
        );
        assert!(
            seen.get(&(shop.to_string(), "rate-limited".to_string()))
                .copied()
                >= Some(1),
            "a 1/s shop cannot answer 50 different searches in 3 s: {seen:?}"
        );
    }
    for (name, server) in [("first", &first), ("yahoo", &second), ("down", &down)] {
        let stats = server.stats();
        assert_eq!(
            stats.over_limit, 0,
            "{name} saw requests over its limit: {stats:?}"
        );
        assert_eq!(
            stats.bad_app_id, 0,
            "{name}: every request carried its id: {stats:?}"
        );
        assert!(stats.searches >= 1, "{name}: {stats:?}");
    }

    // The down shop failed its first requests: its breaker is open and only probes reach it.
    let resilience = host.host.topology().resilience().clone();
    assert_eq!(
        resilience.breaker_state("down"),
        Some(BreakerState::Open),
        "statuses: {seen:?}"
    );
    let reached = down.stats().searches;
    let health_before = down.stats().health;
    for i in 0..5 {
        let answer = host.search(&format!("q=kettle+{i}&shops=down,first")).await;
        assert_eq!(status_of(&answer, "down"), "breaker-open", "{answer}");
        assert!(
            reason_of(&answer, "down").contains("circuit breaker \"down\" is open"),
            "{answer}"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "probes keep testing the down shop",
        || down.stats().health >= health_before + 3,
    )
    .await;
    assert_eq!(
        down.stats().searches,
        reached,
        "while the breaker is open no user's search reaches the down shop"
    );

    // Back: probes close the breaker, and searches reach it again.
    down.set_mode(ShopMode::Normal);
    let started = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "a probe closes the breaker",
        || resilience.breaker_state("down") == Some(BreakerState::Closed),
    )
    .await;
    eprintln!(
        "breaker closed {:?} after the shop recovered",
        started.elapsed()
    );
    let answer = host.search("q=teapot&shops=down").await;
    assert_eq!(status_of(&answer, "down"), "ok", "{answer}");
    assert_eq!(
        products_from(&answer, "down").len(),
        20,
        "the default limit: {answer}"
    );
    assert_eq!(down.stats().searches, reached + 1);
    assert_eq!(down.stats().over_limit, 0);

    let host = Arc::try_unwrap(host).ok().expect("no search still running");
    host.host.shutdown().await;
}

/// Identical searches at once make one upstream call per shop; an answer every shop gave is
/// kept for the TTL; one a shop failed is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_searches_share_one_call_and_a_complete_answer_is_cached() {
    let shop = fake_rakuten("only").await;
    let host = Arc::new(
        SearchHost::start(&[("only", &shop)], "deadline = \"3s\"\ncache_ttl = \"60s\"").await,
    );
    let mut searches = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let host = host.clone();
        searches.spawn(async move { host.search("q=green+tea&sort=price-asc&limit=5").await });
    }
    let mut cached = 0;
    let mut first_products = None;
    while let Some(answer) = searches.join_next().await {
        let answer = answer.expect("search task");
        assert_eq!(status_of(&answer, "only"), "ok", "{answer}");
        cached += usize::from(answer["cached"] == true);
        let products = answer["products"].clone();
        assert_eq!(first_products.get_or_insert(products.clone()), &products);
    }
    assert_eq!(
        shop.stats().searches,
        1,
        "20 identical searches, one upstream call"
    );
    assert_eq!(cached, 19, "all but the first shared its flight");

    // The products are the shop's, cheapest first, in the common schema.
    let expected = {
        let mut all = shop.catalogue("green tea");
        all.sort_by_key(|p| p.price);
        all
    };
    let products = first_products.expect("answers");
    let prices: Vec<u64> = products
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price"].as_u64().unwrap())
        .collect();
    let expected_prices: Vec<u64> = expected.iter().take(5).map(|p| p.price).collect();
    assert_eq!(prices, expected_prices);
    let first = &products[0];
    assert_eq!(first["id"], expected[0].code);
    assert_eq!(first["name"], expected[0].name);
    assert_eq!(first["currency"], "JPY");
    assert_eq!(first["seller"], expected[0].seller);
    assert_eq!(first["review_count"], expected[0].review_count);
    assert_eq!(first["in_stock"], expected[0].in_stock);
    assert!(first["url"].as_str().unwrap().starts_with(shop.base_url()));

    // Kept: the same search again is the cached answer, with no new call.
    let again = host.search("q=green+tea&sort=price-asc&limit=5").await;
    assert_eq!(again["cached"], true);
    assert_eq!(shop.stats().searches, 1);
    // Another search is another call.
    let other = host.search("q=green+tea&sort=price-desc&limit=5").await;
    assert_eq!(other["cached"], false);
    assert_eq!(shop.stats().searches, 2);

    // A failed shop's answer is not kept: the next identical search asks again.
    shop.set_mode(ShopMode::Maintenance);
    let failed = host.search("q=oolong").await;
    assert_eq!(status_of(&failed, "only"), "error", "{failed}");
    assert!(
        reason_of(&failed, "only").contains("503 (service_unavailable"),
        "{failed}"
    );
    shop.set_mode(ShopMode::Normal);
    let retried = host.search("q=oolong").await;
    assert_eq!(retried["cached"], false, "{retried}");
    assert_eq!(status_of(&retried, "only"), "ok", "{retried}");
    assert_eq!(shop.stats().over_limit, 0);

    let host = Arc::try_unwrap(host).ok().expect("no search still running");
    host.host.shutdown().await;
}

/// A shop whose answer changed shape — a renamed field, a string where a number was, an HTML
/// page with 200 — is that shop's `error` naming the field; the other shop's products are
/// there as ever. A slow shop is `timeout` at the deadline, and the search does not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_changed_shape_or_is_slow_fails_alone_naming_why() {
    let (good, odd) = (fake_rakuten("good").await, fake_rakuten("odd").await);
    let host = SearchHost::start(
        &[("good", &good), ("odd", &odd)],
        "deadline = \"2500ms\"\ncache_ttl = \"0s\"",
    )
    .await;
    let cases = [
        (ShopMode::RenamedPrice, "Items[0].itemPrice: missing"),
        (
            ShopMode::PriceAsString,
            "Items[0].itemPrice: expected a whole number, found",
        ),
        (ShopMode::Html200, "answered 200 with text/html"),
    ];
    let resilience = host.host.topology().resilience().clone();
    for (round, (mode, expected)) in cases.into_iter().enumerate() {
        // Bad answers count against the shop's breaker; its probe (`/health` is fine) closes it
        // again, and the next case is asked of a closed breaker.
        wait_until(
            Duration::from_secs(10),
            "the probe closes odd's breaker",
            || resilience.breaker_state("odd") == Some(BreakerState::Closed),
        )
        .await;
        odd.set_mode(mode);
        let answer = host.search(&format!("q=matcha+{round}&limit=6")).await;
        assert_eq!(status_of(&answer, "odd"), "error", "{mode:?}: {answer}");
        assert!(
            reason_of(&answer, "odd").contains(expected),
            "{mode:?}: the reason names the field: {answer}"
        );
        assert_eq!(status_of(&answer, "good"), "ok", "{answer}");
        assert_eq!(products_from(&answer, "good").len(), 6, "{answer}");
        assert!(products_from(&answer, "odd").is_empty(), "{answer}");
    }

    odd.set_mode(ShopMode::Normal);
    odd.set_delay(Duration::from_secs(6));
    let started = Instant::now();
    let answer = host.search("q=hojicha").await;
    let took = started.elapsed();
    assert_eq!(status_of(&answer, "odd"), "timeout", "{answer}");
    assert_eq!(status_of(&answer, "good"), "ok", "{answer}");
    assert!(
        took < Duration::from_secs(5),
        "the search ended at its deadline, not the slow shop's answer: {took:?}"
    );
    for server in [&good, &odd] {
        assert_eq!(server.stats().over_limit, 0);
    }
    host.host.shutdown().await;
}

/// Bad queries answer 400 naming the parameter, and nothing is asked of any shop; the search
/// needs the admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_query_answers_400_naming_the_parameter() {
    let shop = fake_rakuten("shop").await;
    let host = SearchHost::start(&[("shop", &shop)], "").await;
    let long = "x".repeat(201);
    let cases = [
        ("q=", "q"),
        ("limit=5", "q"),
        (&*format!("q={long}"), "q"),
        ("q=tea&shops=amazon", "shops"),
        ("q=tea&min_price=900&max_price=100", "min_price"),
        ("q=tea&max_price=cheap", "max_price"),
        ("q=tea&limit=1000", "limit"),
        ("q=tea&sort=random", "sort"),
        ("q=tea&page=0", "page"),
        ("q=tea&colour=green", "colour"),
    ];
    for (query, parameter) in cases {
        let (status, body) = host.get(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("parameter '{parameter}': ")),
            "{body}"
        );
    }
    let many = (0..40)
        .map(|n| format!("x{n}=1"))
        .collect::<Vec<_>>()
        .join("&");
    let (status, body) = host.get(&format!("q=tea&{many}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("more than 32 query parameters"),
        "{body}"
    );
    assert_eq!(shop.stats().searches, 0, "no bad query reached the shop");

    let without_token = host
        .client
        .get(format!("{}/v1/search?q=tea", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(without_token.status().as_u16(), 401);
    assert_eq!(shop.stats().searches, 0);

    // `tsunagi search` asks the same endpoint (with the token the config names).
    let admin = host.base.trim_start_matches("http://").to_string();
    let config = std::fs::read_to_string(host.dir.path().join("tsunagi.toml"))
        .unwrap()
        .replace(
            "admin_listen = \"127.0.0.1:0\"",
            &format!("admin_listen = \"{admin}\""),
        );
    std::fs::write(host.dir.path().join("cli.toml"), config).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args([
            "search",
            "green tea",
            "--limit",
            "3",
            "--sort",
            "price-asc",
            "--config",
        ])
        .arg(host.dir.path().join("cli.toml"))
        .output()
        .expect("tsunagi search runs");
    assert!(output.status.success(), "{output:?}");
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(status_of(&answer, "shop"), "ok", "{answer}");
    assert_eq!(
        answer["products"].as_array().map(Vec::len),
        Some(3),
        "{answer}"
    );
    assert_eq!(shop.stats().searches, 1);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(["search", "tea", "--shops", "amazon", "--config"])
        .arg(host.dir.path().join("cli.toml"))
        .output()
        .expect("tsunagi search runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("parameter 'shops'"),
        "{output:?}"
    );
    host.host.shutdown().await;
}
