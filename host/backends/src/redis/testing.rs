//! A key prefix of its own per test on a shared Redis server, for this crate's conformance run
//! and the host's end-to-end tests: each test sees an empty store, and its keys are deleted when
//! it ends, passed or failed.

use super::RedisStore;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server the tests use unless `TSUNAGI_TEST_REDIS` names another: the local one that
/// `scripts/services` starts.
pub const DEFAULT_TEST_SERVER: &str = "redis://127.0.0.1:6379/0";

/// The test server's URL.
pub fn test_server() -> String {
    std::env::var("TSUNAGI_TEST_REDIS").unwrap_or_else(|_| DEFAULT_TEST_SERVER.to_string())
}

/// A prefix of its own on the test server; its keys are deleted on drop.
#[derive(Debug)]
pub struct TestPrefix {
    server: String,
    prefix: String,
}

impl TestPrefix {
    /// A new, unused prefix on [`test_server`].
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "tsunagi-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            server: test_server(),
            prefix,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL of the server with this prefix (what `[backends]` would name).
    pub fn url(&self) -> String {
        let separator = if self.server.contains('?') { '&' } else { '?' };
        format!("{}{separator}prefix={}", self.server, self.prefix)
    }

    /// The server's `host:port`.
    pub fn address(&self) -> String {
        let rest = self
            .server
            .split_once("://")
            .map_or(self.server.as_str(), |(_, rest)| rest);
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host)
            .to_string()
    }

    /// [`Self::url`] with the server reached at `address` instead (a proxy in front of it).
    pub fn url_via(&self, address: &str) -> String {
        self.url().replacen(&self.address(), address, 1)
    }

    /// A new connection under this prefix (each call its own, as another host's). Panics,
    /// naming the server, when it is not reachable: a test must fail rather than skip.
    pub async fn open(&self) -> RedisStore {
        RedisStore::open(&self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test Redis at {}: {e}", self.server))
    }
}

impl Default for TestPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.server.as_str()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> =
                    redis::cmd("UNLINK").arg(&keys).query(&mut connection);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}
