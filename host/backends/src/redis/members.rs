//! Cluster membership in Redis: each host writes its card (who it is, what it runs) under a
//! key that expires unless renewed, so a host that dies leaves the list by itself within one
//! time to live, and one that stops cleanly leaves at once.

use super::RedisStore;
use crate::Result;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// The most hosts a listing returns (and the longest card it keeps): a cluster is a handful of
/// hosts, and `/status` prints every one.
pub const MAX_MEMBERS: usize = 256;
/// The longest card a host may write.
pub const MAX_CARD_BYTES: usize = 16 * 1024;

/// KEYS: the member's card, the member set. ARGV: member, card, ttl ms.
const HEARTBEAT: &str = r#"
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"#;

/// KEYS: the member set. ARGV: key prefix, most. Answers `{member, card, …}` of live members,
/// dropping from the set those whose card expired.
const LIST: &str = r#"
local rows = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local card = redis.call('GET', ARGV[1] .. ':member:' .. member)
  if card then
    if #rows < 2 * tonumber(ARGV[2]) then
      table.insert(rows, member)
      table.insert(rows, card)
    end
  else
    redis.call('SREM', KEYS[1], member)
  end
end
return rows
"#;

static HEARTBEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(HEARTBEAT));
static LIST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIST));

/// The hosts of a cluster.
#[derive(Debug, Clone)]
pub struct RedisMembers {
    store: RedisStore,
}

impl RedisMembers {
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn card_key(&self, member: &str) -> String {
        self.store.key(&format!("member:{member}"))
    }

    /// Writes `member`'s `card`, alive for `ttl` unless renewed.
    pub async fn heartbeat(&self, member: &str, card: &str, ttl: Duration) -> Result<()> {
        if card.len() > MAX_CARD_BYTES {
            return Err(crate::BackendError::Refused(format!(
                "a member card of {} bytes is over the limit of {MAX_CARD_BYTES}",
                card.len()
            )));
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: i64 = self
            .store
            .run(
                "writing a member's heartbeat",
                &HEARTBEAT_SCRIPT,
                &[&self.card_key(member), &self.store.key("members")],
                &[&member, &card, &ttl_ms],
            )
            .await?;
        Ok(())
    }

    /// Removes `member` at once (a clean stop).
    pub async fn leave(&self, member: &str) -> Result<()> {
        let mut connection = self.store.connection();
        let _: () = redis::pipe()
            .atomic()
            .del(self.card_key(member))
            .ignore()
            .srem(self.store.key("members"), member)
            .ignore()
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("removing a member"))?;
        Ok(())
    }

    /// Every live member and its card, by member (at most [`MAX_MEMBERS`]).
    pub async fn members(&self) -> Result<Vec<(String, String)>> {
        let flat: Vec<String> = self
            .store
            .run(
                "listing the cluster's members",
                &LIST_SCRIPT,
                &[&self.store.key("members")],
                &[&self.store.prefix(), &(MAX_MEMBERS as u64)],
            )
            .await?;
        let mut members: Vec<(String, String)> = flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [member, card] => Some((member.clone(), card.clone())),
                _ => None,
            })
            .collect();
        members.sort();
        Ok(members)
    }
}
