//! The Redis backend: the stores hosts share where Redis does the job better than SQL —
//! rate-limit budgets ([`budgets::RedisBudgets`], a GCRA in one Lua script on Redis's own
//! clock) and rankings ([`rankings::RedisRankings`], on sorted sets) — plus the cross-host
//! single-flight lock ([`lock::RedisLock`]) and announcements on Pub/Sub with a watchdog
//! ([`bus::RedisBus`]), the cluster's membership ([`members::RedisMembers`]) and its desired
//! state — pushed plugins and config ([`revisions::RedisRevisions`]) — and a job queue on
//! Streams with consumer groups ([`queue::RedisJobQueue`]).
//!
//! One [`RedisStore`] is one multiplexed connection that reconnects by itself with backoff (the
//! `redis` crate's connection manager); every key it writes starts with its prefix, so several
//! clusters (or test cases) share one server without meeting. The prefix is the URL's
//! `prefix` query parameter (`redis://127.0.0.1:6379/0?prefix=shop`), `tsunagi` by default.
//!
//! Every script runs atomically on the server, so no two hosts ever read and write around each
//! other; scripts are sent by hash and loaded again after a server restart.

pub mod budgets;
pub mod bus;
pub mod lock;
pub mod members;
pub mod queue;
pub mod rankings;
pub mod revisions;
pub mod testing;

use crate::{BackendError, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// How long one command may take before it counts as failed (the server is away).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnection backoff: from this, doubling …
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// … up to this.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// The longest prefix a URL may give (every key carries it).
pub const MAX_PREFIX_BYTES: usize = 64;
/// The prefix when the URL gives none.
pub const DEFAULT_PREFIX: &str = "tsunagi";

/// A connection to one Redis server under one key prefix.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    /// The URL without its password, for messages.
    shown_url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisStore {
    /// Connects to the server `url` names (`redis://[:password@]host[:port][/db][?prefix=P]`,
    /// or `rediss://` for TLS when the build has it). Fails, naming the URL without its
    /// password, when the server cannot be reached now; later outages are ridden out by
    /// reconnecting.
    pub async fn open(url: &str) -> Result<Self> {
        let shown_url = crate::postgres::redact_url(url);
        let (server_url, prefix) = split_prefix(url).map_err(|reason| BackendError::Open {
            url: shown_url.clone(),
            reason,
        })?;
        let reason =
            |error: redis::RedisError| crate::postgres::redact_error(&error.to_string(), url);
        let client = redis::Client::open(server_url).map_err(|error| BackendError::Open {
            url: shown_url.clone(),
            reason: reason(error),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_number_of_retries(3);
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| BackendError::Open {
            url: shown_url.clone(),
            reason: format!("no answer within {:?}", CONNECT_TIMEOUT * 2),
        })?
        .map_err(|error| BackendError::Open {
            url: shown_url.clone(),
            reason: reason(error),
        })?;
        Ok(Self {
            client,
            connection,
            prefix,
            shown_url,
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL, without its password.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// `prefix:part`, the name of one of this store's keys.
    pub(crate) fn key(&self, part: &str) -> String {
        format!("{}:{part}", self.prefix)
    }

    /// The client, for connections of their own (a Pub/Sub subscriber).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A handle on the shared connection (cheap: connections are multiplexed).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Runs `script` with `keys` and `args`.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        context: &'static str,
        script: &redis::Script,
        keys: &[&str],
        args: &[&dyn RedisArg],
    ) -> Result<T> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            arg.push_onto(&mut invocation);
        }
        let mut connection = self.connection();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error(context))
    }
}

/// An argument of a script call (strings and integers, the only kinds scripts take).
pub(crate) trait RedisArg: Sync {
    fn push_onto(&self, invocation: &mut redis::ScriptInvocation<'_>);
}

impl RedisArg for &str {
    fn push_onto(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation.arg(*self);
    }
}

impl RedisArg for String {
    fn push_onto(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation.arg(self.as_str());
    }
}

impl RedisArg for i64 {
    fn push_onto(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation.arg(*self);
    }
}

impl RedisArg for u64 {
    fn push_onto(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation.arg(*self);
    }
}

/// Maps a Redis error to a [`BackendError`] saying what was being done.
pub(crate) fn redis_error(context: &'static str) -> impl Fn(redis::RedisError) -> BackendError {
    move |source| BackendError::Redis { context, source }
}

/// The server part of `url` and the key prefix its `prefix` query parameter gives. Other query
/// parameters stay for the client (`protocol`, …).
fn split_prefix(url: &str) -> std::result::Result<(String, String), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_PREFIX.to_string()));
    };
    let mut prefix = DEFAULT_PREFIX.to_string();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("prefix", value)) => prefix = value.to_string(),
            _ => kept.push(pair),
        }
    }
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_BYTES {
        return Err(format!(
            "the prefix must be 1 to {MAX_PREFIX_BYTES} bytes long (it is {})",
            prefix.len()
        ));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(
            "the prefix may hold only letters, digits and - _ . : (it names every key)".into(),
        );
    }
    let server = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((server, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_comes_from_the_query_and_other_parameters_stay() {
        assert_eq!(
            split_prefix("redis://127.0.0.1/0").unwrap(),
            ("redis://127.0.0.1/0".to_string(), "tsunagi".to_string())
        );
        assert_eq!(
            split_prefix("redis://h/1?prefix=shop&protocol=resp3").unwrap(),
            ("redis://h/1?protocol=resp3".to_string(), "shop".to_string())
        );
        assert!(split_prefix("redis://h/?prefix=").is_err());
        assert!(split_prefix("redis://h/?prefix=a b").is_err());
        assert!(split_prefix(&format!("redis://h/?prefix={}", "p".repeat(65))).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_naming_it_without_its_password() {
        // Port 9 (discard) is closed on loopback here.
        let error = RedisStore::open("redis://:hunter2@127.0.0.1:9/0")
            .await
            .expect_err("nothing listens there");
        let message = error.to_string();
        assert!(message.contains("127.0.0.1:9"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
