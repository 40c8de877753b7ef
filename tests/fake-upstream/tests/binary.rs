//! The `fake-upstream feeds` command serves the benchmark's feeds on its own: the base URL on
//! its first line of output, every feed URL in the targets file, validators honoured by 304.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Stops the server however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_feeds_command_serves_feeds_with_validators_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("feeds.txt");
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_fake-upstream"))
            .args([
                "feeds",
                "--feeds",
                "14",
                "--items",
                "3",
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--targets-file")
            .arg(&targets)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake-upstream runs"),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("the base URL");
    let base = first.trim().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base:?}");
    let listed = std::fs::read_to_string(&targets).expect("the targets file");
    let urls: Vec<&str> = listed.lines().collect();
    assert_eq!(urls.len(), 14);
    assert_eq!(urls[13], format!("{base}/feeds/13"));

    let client = reqwest::Client::new();
    let response = client.get(urls[0]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let body = response.text().await.unwrap();
    assert!(body.contains("<rss"), "feed 0 is RSS 2.0: {body}");
    let again = client
        .get(urls[0])
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(
        client
            .get(format!("{base}/feeds/14"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    drop(child);
}
