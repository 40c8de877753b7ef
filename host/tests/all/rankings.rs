//! Rankings end to end: the search endpoint counts query popularity in a ranking kept per
//! period in Tokyo time, read back through `GET /v1/rankings/{name}` in all four shapes (with a
//! tie, me absent, fewer members than asked for) across a roll-over of the day and the week,
//! stated on the injected clock; and a plugin (`plugins/hostile`, mode `rank`) adds to and
//! reads a ranking through the WIT `rankings` import, within its TOML's list and the board's
//! cap. (The store's own shapes are in the backend conformance suite.)

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tsunagi::backends::redis::rankings::RedisRankings;
use tsunagi::backends::redis::testing::TestPrefix;
use tsunagi::backends::{Backend, RankingStore};
use tsunagi::clock::{Clock, ManualClock};
use tsunagi::pipeline::RunMode;
use tsunagi_fake_upstream::shop::{ShopApi, ShopServer, ShopServerConfig};

/// 2026-12-06T23:59:00+09:00, a Sunday night in Tokyo.
const SUNDAY_LATE_TOKYO: i64 = 1_796_569_140_000;

fn standings(list: &Value) -> Vec<(String, i64, u64)> {
    list.as_array()
        .map(|all| {
            all.iter()
                .map(|s| {
                    (
                        s["member"].as_str().unwrap().to_string(),
                        s["score"].as_i64().unwrap(),
                        s["rank"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn s(member: &str, score: i64, rank: u64) -> (String, i64, u64) {
    (member.to_string(), score, rank)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_popularity_is_ranked_per_period_and_read_in_every_shape() {
    let backend = search_popularity_ranked("").await;
    let boards = backend.rank_boards("search-queries:").await.unwrap();
    assert_eq!(boards.len(), 5, "two days, two weeks, all time: {boards:?}");
}

/// The same, with `[backends] rankings` in Redis: every board is there (where every host of a
/// cluster counts into it), none in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_popularity_is_ranked_in_redis_when_backends_say_so() {
    let redis = TestPrefix::new();
    let backend =
        search_popularity_ranked(&format!("\n[backends]\nrankings = \"{}\"\n", redis.url())).await;
    assert_eq!(backend.rank_boards("").await.unwrap(), []);
    let in_redis = RedisRankings::new(redis.open().await);
    let boards = in_redis.rank_boards("search-queries:").await.unwrap();
    assert_eq!(boards.len(), 5, "{boards:?}");
    let all_time = in_redis
        .rank_top("search-queries:all-time", 10)
        .await
        .unwrap();
    assert_eq!(all_time.len(), 5, "{all_time:?}");
    assert_eq!(
        (all_time[0].member.as_str(), all_time[0].score),
        ("green tea", 3)
    );
}

/// Runs the search-popularity walk through on a host whose config ends in `extra`; answers the
/// host's database.
async fn search_popularity_ranked(extra: &str) -> std::sync::Arc<dyn Backend> {
    let shop = ShopServer::start(ShopServerConfig::new(ShopApi::Rakuten, "app-SECRET-r"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app_id"), "app-SECRET-r").unwrap();
    let text = host_section("admin_listen = \"127.0.0.1:0\"")
        + &format!(
            r#"
[search]
popularity = "search-queries"

[rankings.search-queries]
time_zone = "Asia/Tokyo"

[credentials.r]
kind = "api-key"
key = {{ file = "app_id" }}
query = "applicationId"

[connectors.shop]
plugin = "{plugin}"
role = "searcher"

[connectors.shop.config]
base_url = "{search}"

[[connectors.shop.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
credential = "r"
"#,
            plugin = plugin("rakuten").display(),
            search = shop.search_url(),
            port = shop.addr().port(),
        )
        + extra;
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SUNDAY_LATE_TOKYO);
    let host = start_host(&config, backend.clone(), &clock, RunMode::Forever).await;
    let base = format!("http://{}", host.admin_addr().unwrap());
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    // As people type them: case and spacing do not make another query.
    for q in [
        "green+tea",
        "Green+Tea",
        "green++tea",
        "matcha",
        "MATCHA",
        "sencha",
        "sencha",
        "hojicha",
    ] {
        let (status, answer) = get(format!("/v1/search?q={q}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    let ranking = |query: &str| get(format!("/v1/rankings/search-queries?{query}"));

    let (status, top) = ranking("type=top&limit=3&period=daily").await;
    assert_eq!(status, 200, "{top}");
    assert_eq!(top["board"], "search-queries:daily:2026-12-06");
    assert_eq!(
        standings(&top["top"]),
        [s("green tea", 3, 1), s("matcha", 2, 2), s("sencha", 2, 2)],
        "a tie shares its rank, in member order"
    );
    let (_, top) = ranking("type=top&limit=50").await;
    assert_eq!(top["period"], "all-time", "the longest period by default");
    assert_eq!(
        standings(&top["top"]).len(),
        4,
        "fewer members than asked for"
    );

    let (_, me) = ranking("type=me&member=sencha&period=weekly").await;
    assert_eq!(me["board"], "search-queries:weekly:2026-W49");
    assert_eq!(me["me"], json!({"member": "sencha", "score": 2, "rank": 2}));
    let (_, me) = ranking("type=me&member=green+tea").await;
    assert_eq!(me["me"]["rank"], 1, "me at rank 1");
    let (status, absent) = ranking("type=me&member=coffee").await;
    assert_eq!(status, 200);
    assert!(absent.get("me").is_none(), "me absent: {absent}");

    let (_, around) = ranking("type=around&member=green+tea&k=1").await;
    assert_eq!(
        standings(&around["around"]),
        [s("green tea", 3, 1), s("matcha", 2, 2)],
        "nothing before rank 1"
    );
    let (_, around) = ranking("type=around&member=hojicha&k=2").await;
    assert_eq!(
        standings(&around["around"]),
        [s("matcha", 2, 2), s("sencha", 2, 2), s("hojicha", 1, 4)]
    );
    let (_, around) = ranking("type=around&member=coffee&k=2").await;
    assert!(around.get("around").is_none(), "{around}");

    let (_, both) = ranking("type=top-and-around&member=sencha&limit=2&k=1").await;
    assert_eq!(
        standings(&both["top"]),
        [s("green tea", 3, 1), s("matcha", 2, 2)]
    );
    assert_eq!(
        standings(&both["around"]),
        [s("sencha", 2, 2), s("hojicha", 1, 4)],
        "members already in the top are left out of around"
    );
    assert_eq!(both["me"]["rank"], 2);

    // Two minutes later it is Monday in Tokyo: a new day and a new week; all time goes on.
    clock.advance(Duration::from_secs(120));
    let (_, daily) = ranking("type=top&period=daily").await;
    assert_eq!(daily["board"], "search-queries:daily:2026-12-07");
    assert!(
        daily.get("top").is_none(),
        "a new day starts empty: {daily}"
    );
    let (_, status_search) = get("/v1/search?q=kukicha".to_string()).await;
    assert!(status_search["shops"].is_object());
    let (_, daily) = ranking("type=top&period=daily").await;
    assert_eq!(standings(&daily["top"]), [s("kukicha", 1, 1)]);
    let (_, weekly) = ranking("type=top&period=weekly").await;
    assert_eq!(weekly["board"], "search-queries:weekly:2026-W50");
    assert_eq!(standings(&weekly["top"]), [s("kukicha", 1, 1)]);
    let (_, all) = ranking("type=top&limit=10").await;
    assert_eq!(standings(&all["top"]).len(), 5);

    // Bad questions name their parameter; an unknown ranking is 404.
    for (query, parameter) in [
        ("type=best", "type"),
        ("type=me", "member"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("k=-1&type=around&member=x", "k"),
        ("period=monthly", "period"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = ranking(query).await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some(parameter)),
            "{query}: {body}"
        );
    }
    let (status, body) = get("/v1/rankings/nope".to_string()).await;
    assert_eq!(status, 404, "{body}");
    host.shutdown().await;
    backend
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_ranks_through_the_host_within_its_list_and_the_boards_cap() {
    let dir = tempfile::tempdir().unwrap();
    let connector = |name: &str, rankings: &str| {
        format!(
            r#"
[connectors.{name}]
plugin = "{plugin}"
role = "poller"
concurrency = 1
{rankings}

[connectors.{name}.config]
mode = "rank"
ranking = "sellers"
rank-members = "2"
"#,
            plugin = plugin("hostile").display()
        )
    };
    let text = host_section("")
        + "\n[rankings.sellers]\nperiods = [\"all-time\"]\nmax_members = 3\n"
        + &connector("ranker", "rankings = [\"sellers\"]")
        + &connector("stranger", "");
    let config = write_config(dir.path(), &text);
    let backend = open_backend(&config).await;
    let clock = ManualClock::starting_at(SUNDAY_LATE_TOKYO);
    for (name, targets) in [("ranker", vec!["a", "b"]), ("stranger", vec!["c"])] {
        let targets: Vec<String> = targets.into_iter().map(str::to_string).collect();
        backend
            .add_targets(name, &targets, clock.now_ms())
            .await
            .unwrap();
    }
    let view = run_until_idle(&config, backend.clone(), &clock).await;
    drop(view);

    let board = "sellers:all-time";
    let top = backend.rank_top(board, 10).await.unwrap();
    let members: Vec<&str> = top.iter().map(|s| s.member.as_str()).collect();
    assert_eq!(top.len(), 3, "the board's cap: {top:?}");
    assert!(
        members.contains(&"a/0") && members.contains(&"a/1"),
        "{members:?}"
    );
    let target = |name: &'static str, target: &'static str| {
        let backend = backend.clone();
        async move { backend.get_target(name, target).await.unwrap().unwrap() }
    };
    let a = target("ranker", "a").await;
    let b = target("ranker", "b").await;
    let (full, done) = if a.last_error.is_some() {
        (a, b)
    } else {
        (b, a)
    };
    assert!(done.last_error.is_none(), "{done:?}");
    let error = full.last_error.expect("the second poll met the cap");
    assert!(
        error.contains("sellers:all-time") && error.contains('3'),
        "the refusal names the board and its cap: {error}"
    );
    let stranger = target("stranger", "c").await;
    let error = stranger.last_error.expect("refused");
    assert!(
        error.contains("connector 'stranger' may not use ranking \"sellers\""),
        "{error}"
    );
    assert!(!members.iter().any(|m| m.starts_with("c/")), "{members:?}");
}
