//! The dashboard in a real browser: headless Chromium (Debian's), driven by playwright-core
//! from `tests/browser/dashboard.mjs`, against a host crawling a fake upstream that fails and
//! recovers. The page sees the breaker open (and why) and close again, retries a dead letter
//! and reloads; the screenshot it takes is `docs/dashboard.png`. The test installs what it
//! needs (`scripts/browser-deps`), and checks the host did what the page asked.

use crate::common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use tsunagi_fake_upstream::ApiMode;

const TOKEN: &str = "dashboard-test-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_breaker_open_and_close_retries_a_dead_letter_and_reloads() {
    let root = workspace_root();
    let installed = Command::new(root.join("scripts/browser-deps"))
        .status()
        .expect("scripts/browser-deps runs");
    assert!(
        installed.success(),
        "scripts/browser-deps installed Chromium and playwright-core"
    );

    let crawl = BreakerCrawl::start(
        10,
        &["/gone/feed"],
        "admin_token = { file = \"admin.token\" }",
        &[("admin.token", TOKEN)],
    )
    .await;
    let (api, backend, admin) = (&crawl.api, &crawl.backend, crawl.admin());
    let gone = api.url("/gone/feed");

    let screenshot = root.join("docs/dashboard.png");
    let mut browser = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .args([&format!("http://{admin}"), TOKEN])
        .arg(&screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut to_browser = browser.stdin.take().unwrap();
    let receive = lines_of(browser.stdout.take().unwrap());
    let next_line = |what: &str| -> String {
        let line = receive
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the browser said nothing for 120 s (waiting for {what})"));
        assert!(
            !line.starts_with("failed:"),
            "the browser test failed: {line}"
        );
        line
    };

    assert_eq!(next_line("the page"), "step:closed-before");
    api.set_mode(ApiMode::Failing);
    writeln!(to_browser, "go").unwrap();
    assert_eq!(next_line("the breaker to open"), "step:open");
    api.set_mode(ApiMode::Healthy);
    writeln!(to_browser, "go").unwrap();
    assert_eq!(next_line("the breaker to close"), "step:closed-after");
    let retried = next_line("a retry");
    let entry = retried.strip_prefix("retried:").expect("the retried entry");
    assert_eq!(next_line("the reload"), "step:reloaded");
    assert_eq!(next_line("the screenshot"), "step:done");
    drop(to_browser);
    assert!(browser.wait().unwrap().success());

    // What the page asked was done: the gone feed was put back to work (and fetched again),
    // and the reload reached the host.
    let id: i64 = entry.strip_prefix("target:").unwrap().parse().unwrap();
    let target = backend
        .get_target("rss", &gone)
        .await
        .unwrap()
        .expect("the target");
    assert_eq!(target.id, id, "the dead letter retried was the gone feed");
    assert!(
        target.history.len() >= 2,
        "fetched again after the retry: {:?}",
        target.history
    );
    let status = fetch_status(admin).await;
    assert!(
        status["reload_counts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|count| count["connector"] == "rss"),
        "{}",
        status["reload_counts"]
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot"
    );
    crawl.api.shutdown();
}
