//! A lock across hosts in Redis, for work that must happen once in a cluster at a time (an
//! OAuth refresh: two hosts refreshing one token at once would each rotate the refresh token
//! and one of them would store a dead one).
//!
//! `SET key holder NX PX ttl` takes it; a compare-and-delete script gives it back only if the
//! holder still holds it, so a holder that outlived its TTL never frees a lock someone else has
//! taken since. The TTL bounds how long a crashed holder blocks the others.
//!
//! The same store shares health probes ([`ProbeBoard`]): a probe's turn is such a lock, left to
//! expire after one interval, so one host per interval probes; its result is a numbered entry
//! every host reads.

use super::RedisStore;
use crate::Result;
use crate::coordination::{ClusterLock, ProbeBoard, SharedProbe};
use async_trait::async_trait;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// KEYS: the breaker's result hash. ARGV: '1' or '0'. Answers the result's number.
const SHARE: &str = r#"
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'ok', ARGV[1])
return seq
"#;

static SHARE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SHARE));

/// Named locks with a time to live.
#[derive(Debug, Clone)]
pub struct RedisLock {
    store: RedisStore,
}

impl RedisLock {
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn key(&self, name: &str) -> String {
        self.store.key(&format!("lock:{name}"))
    }
}

#[async_trait]
impl ClusterLock for RedisLock {
    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.store.connection();
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.key(name))
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("taking a lock"))?;
        Ok(taken.is_some())
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<bool> {
        let key = self.key(name);
        let released: i64 = self
            .store
            .run("giving a lock back", &RELEASE_SCRIPT, &[&key], &[&holder])
            .await?;
        Ok(released == 1)
    }
}

#[async_trait]
impl ProbeBoard for RedisLock {
    async fn take_probe_turn(
        &self,
        breaker: &str,
        holder: &str,
        interval: Duration,
    ) -> Result<bool> {
        self.try_lock(&format!("probe-turn:{breaker}"), holder, interval)
            .await
    }

    async fn share_probe(&self, breaker: &str, ok: bool) -> Result<u64> {
        let key = self.store.key(&format!("probe:{breaker}"));
        let flag = if ok { "1" } else { "0" };
        self.store
            .run("sharing a probe result", &SHARE_SCRIPT, &[&key], &[&flag])
            .await
    }

    async fn latest_probe(&self, breaker: &str) -> Result<Option<SharedProbe>> {
        let mut connection = self.store.connection();
        let (seq, ok): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.store.key(&format!("probe:{breaker}")))
            .arg("seq")
            .arg("ok")
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("reading a shared probe result"))?;
        Ok(seq.map(|seq| SharedProbe {
            seq,
            ok: ok.as_deref() == Some("1"),
        }))
    }
}
