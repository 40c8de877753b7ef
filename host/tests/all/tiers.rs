//! A plugin nobody compiled before serves at once on Winch's quick code, and its pool moves to
//! Cranelift's code when the background compile has it, with the same answers; the fast code is
//! cached for the next start; quick code is contained like fast code.

use crate::common::*;
use std::path::Path;
use tsunagi::runtime::{CallError, InstancePool, Optimizing, TargetCall, Tier};
use tsunagi_fake_upstream::{FeedServer, FeedServerConfig};

fn host(cache: &Path, compiler: &str) -> String {
    format!(
        "[host]\ndatabase = \"test.db\"\ncompile_cache = \"{}\"\ncompiler = \"{compiler}\"\nwatch = false\n",
        cache.display()
    )
}

async fn item_ids(pool: &InstancePool, url: &str) -> Vec<String> {
    let report = pool.poll(TargetCall::detached(url), None, None, None).await;
    let result = report
        .result
        .unwrap_or_else(|e| panic!("poll of {url}: {e}"));
    let mut ids: Vec<String> = result.items.into_iter().map(|item| item.id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_serves_on_quick_code_then_on_the_fast_code_with_the_same_answers() {
    let server = FeedServer::start(FeedServerConfig {
        feeds: 3,
        ..FeedServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A cache of this test's own: nothing in it yet.
    let cache = dir.path().join("cache");
    let text = host(&cache, "tiered") + &rss_connector(server.addr().port(), "");
    let config = write_config(dir.path(), &text);

    let first = pool_of(&config, "rss").await;
    assert_eq!(first.plugin().started_on(), Tier::Quick, "not in the cache");
    let url = server.feed_url(1);
    let quick_answer = item_ids(&first, &url).await;
    assert!(!quick_answer.is_empty());
    assert_eq!(first.instances_made(Tier::Quick), 1);

    assert_eq!(first.plugin().optimized().await, Optimizing::Done);
    assert_eq!(first.plugin().tier(), Tier::Optimized);
    for _ in 0..3 {
        assert_eq!(item_ids(&first, &url).await, quick_answer, "same answer");
    }
    assert_eq!(
        (
            first.instances_made(Tier::Quick),
            first.instances_made(Tier::Optimized)
        ),
        (1, 1),
        "the quick instance went; one fast instance served the rest"
    );

    // The next start (another engine, as another process would be) finds the fast code cached.
    let next = pool_of(&config, "rss").await;
    assert_eq!(
        next.plugin().started_on(),
        Tier::Optimized,
        "from the cache"
    );
    assert_eq!(next.plugin().optimized().await, Optimizing::Done);
    assert_eq!(item_ids(&next, &url).await, quick_answer);
    assert_eq!(next.instances_made(Tier::Quick), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_code_is_held_to_the_same_time_and_memory_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = host(&dir.path().join("cache"), "winch");
    for (name, mode) in [("spin", "spin"), ("balloon", "balloon"), ("calm", "ok")] {
        text += &format!(
            r#"
[connectors.{name}]
plugin = "{plugin}"
role = "poller"
[connectors.{name}.config]
mode = "{mode}"
[connectors.{name}.limits]
call_timeout = "1s"
memory = "32 MiB"
"#,
            plugin = plugin("hostile").display()
        );
    }
    let config = write_config(dir.path(), &text);
    let target = "http://127.0.0.1:9/a";
    let spin = pool_of(&config, "spin").await;
    assert_eq!(spin.plugin().started_on(), Tier::Quick);
    assert!(
        matches!(spin.plugin().optimized().await, Optimizing::Failed(why) if why.contains("winch")),
        "winch alone never optimizes"
    );
    let spun = spin
        .poll(TargetCall::detached(target), None, None, None)
        .await;
    assert!(
        matches!(spun.result, Err(CallError::Timeout(_))),
        "the epoch stops quick code: {:?}",
        spun.result
    );
    let balloon = pool_of(&config, "balloon").await;
    let ballooned = balloon
        .poll(TargetCall::detached(target), None, None, None)
        .await;
    assert!(
        matches!(ballooned.result, Err(CallError::MemoryLimit(33_554_432))),
        "{:?}",
        ballooned.result
    );
    let calm = pool_of(&config, "calm").await;
    let answered = calm
        .poll(TargetCall::detached(target), None, None, None)
        .await;
    assert!(answered.result.is_ok(), "{:?}", answered.result);
}
