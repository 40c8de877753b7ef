//! [`RankingStore`] on Redis sorted sets, for rankings every host of a cluster counts into.
//!
//! A Redis score is a double, exact only up to 2^53, and Redis orders a tie by member
//! *descending* when read high to low; the trait wants exact `i64` scores and ties in member
//! order. So a board is three keys:
//!
//! - `P:rank:h:BOARD`, a hash of member → exact score (`HINCRBY` adds in 64 bits);
//! - `P:rank:z:BOARD`, a sorted set whose scores are all 0 and whose entries are
//!   `order(score) ++ member`, where `order` is a fixed-width string that sorts higher scores
//!   first: Redis's byte order of equal-score entries is then exactly "score descending, member
//!   ascending", ranks come from `ZRANK`, and "how many score higher" is one `ZLEXCOUNT`;
//! - `P:rank:t:BOARD`, a sorted set of member → the time it was last updated.
//!
//! `P:rank:boards` lists the boards (byte order, so a prefix is a range). Each call is one Lua
//! script, atomic on the server, like one SQL transaction.

use super::RedisStore;
use crate::rankings::{
    around_reach, board_full, check_board, check_board_and_member, check_board_prefix,
    prefix_successor, ranked, ranked_window, top_limit,
};
use crate::{BackendError, BoardSummary, Millis, RankingCap, RankingStore, Result, Standing};
use async_trait::async_trait;
use redis::Script;
use std::sync::LazyLock;

/// `order(score)` in Lua: `0` and the nines' complement of the 19 zero-padded digits for a
/// score of 0 or more, `1` and the 19 zero-padded digits of its magnitude for a negative one.
const ORDER_LUA: &str = r#"
local function order(score)
  if string.sub(score, 1, 1) == '-' then
    local digits = string.sub(score, 2)
    return '1' .. string.rep('0', 19 - #digits) .. digits
  end
  local padded = string.rep('0', 19 - #score) .. score
  return '0' .. (string.gsub(padded, '%d', function(d) return tostring(9 - tonumber(d)) end))
end
local function higher(zset, score)
  return redis.call('ZLEXCOUNT', zset, '-', '(' .. order(score))
end
"#;

/// KEYS: h, z, t, boards. ARGV: board, member, 'add' or 'set', value, max members, now.
/// Answers `{'full'}` or `{'ok', new score}`.
const WRITE: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[2])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return {'full'}
end
if ARGV[3] == 'add' then
  local added = redis.pcall('HINCRBY', KEYS[1], ARGV[2], ARGV[4])
  if type(added) == 'table' and added.err then
    -- Only an overflow fails: saturate towards the delta's sign.
    local bound = '9223372036854775807'
    if string.sub(ARGV[4], 1, 1) == '-' then bound = '-9223372036854775808' end
    redis.call('HSET', KEYS[1], ARGV[2], bound)
  end
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
end
local new = redis.call('HGET', KEYS[1], ARGV[2])
if old then redis.call('ZREM', KEYS[2], order(old) .. ARGV[2]) end
redis.call('ZADD', KEYS[2], 0, order(new) .. ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
return {'ok', new}
"#;

/// KEYS: h, z, t, boards. ARGV: board, member. Answers 1 when the member was there.
const REMOVE: &str = r#"
local score = redis.call('HGET', KEYS[1], ARGV[2])
if not score then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], order(score) .. ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return 1
"#;

/// KEYS: h, z. ARGV: member. Answers `{}` or `{score, higher}`.
const STANDING: &str = r#"
local score = redis.call('HGET', KEYS[1], ARGV[1])
if not score then return {} end
return {score, tostring(higher(KEYS[2], score))}
"#;

/// KEYS: h, z. ARGV: first, last (positions, 0-based). Answers `{member, score, …}`.
const RANGE: &str = r#"
local rows = {}
for _, entry in ipairs(redis.call('ZRANGE', KEYS[2], ARGV[1], ARGV[2])) do
  local member = string.sub(entry, 21)
  table.insert(rows, member)
  table.insert(rows, redis.call('HGET', KEYS[1], member))
end
return rows
"#;

/// KEYS: h, z. ARGV: member, k. Answers `{}` or `{higher than the first row, its position,
/// member, score, …}`.
const AROUND: &str = r#"
local score = redis.call('HGET', KEYS[1], ARGV[1])
if not score then return {} end
local position = redis.call('ZRANK', KEYS[2], order(score) .. ARGV[1])
local k = tonumber(ARGV[2])
local first = position - k
if first < 0 then first = 0 end
local rows = {}
for _, entry in ipairs(redis.call('ZRANGE', KEYS[2], first, position + k)) do
  local member = string.sub(entry, 21)
  table.insert(rows, member)
  table.insert(rows, redis.call('HGET', KEYS[1], member))
end
return {tostring(higher(KEYS[2], rows[2])), tostring(first), unpack(rows)}
"#;

/// KEYS: boards. ARGV: key prefix, min, max (ZRANGEBYLEX bounds). Answers
/// `{board, members, updated_at, …}`.
const BOARDS: &str = r#"
local rows = {}
for _, board in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3])) do
  local members = redis.call('HLEN', ARGV[1] .. ':rank:h:' .. board)
  local newest = redis.call('ZRANGE', ARGV[1] .. ':rank:t:' .. board, -1, -1, 'WITHSCORES')
  table.insert(rows, board)
  table.insert(rows, tostring(members))
  table.insert(rows, newest[2] or '0')
end
return rows
"#;

/// KEYS: h, z, t, boards. ARGV: board. Answers how many members it held.
const DROP: &str = r#"
local members = redis.call('HLEN', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return members
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{ORDER_LUA}{body}"))
}

static WRITE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(WRITE));
static REMOVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(REMOVE));
static STANDING_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(STANDING));
static RANGE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RANGE));
static AROUND_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(AROUND));
static BOARDS_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(BOARDS));
static DROP_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(DROP));

/// Rankings in Redis.
#[derive(Debug, Clone)]
pub struct RedisRankings {
    store: RedisStore,
}

/// The keys of one board: scores, order, update times.
struct BoardKeys {
    scores: String,
    order: String,
    updated: String,
}

impl RedisRankings {
    pub fn new(store: RedisStore) -> Self {
        Self { store }
    }

    fn keys(&self, board: &str) -> BoardKeys {
        BoardKeys {
            scores: self.store.key(&format!("rank:h:{board}")),
            order: self.store.key(&format!("rank:z:{board}")),
            updated: self.store.key(&format!("rank:t:{board}")),
        }
    }

    fn boards_key(&self) -> String {
        self.store.key("rank:boards")
    }

    async fn write(
        &self,
        board: &str,
        member: &str,
        mode: &str,
        value: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<i64> {
        check_board_and_member(board, member)?;
        let keys = self.keys(board);
        let boards = self.boards_key();
        let answer: Vec<String> = self
            .store
            .run(
                "writing a ranked member",
                &WRITE_SCRIPT,
                &[&keys.scores, &keys.order, &keys.updated, &boards],
                &[&board, &member, &mode, &value, &cap.max_members, &now],
            )
            .await?;
        match answer.as_slice() {
            [status] if status == "full" => Err(board_full(board, cap)),
            [status, score] if status == "ok" => parse_score(score),
            _ => Err(corrupt(format!("a write answered {answer:?}"))),
        }
    }

    async fn range(&self, board: &str, first: u64, last: u64) -> Result<Vec<(String, i64)>> {
        let keys = self.keys(board);
        let flat: Vec<String> = self
            .store
            .run(
                "reading a board's order",
                &RANGE_SCRIPT,
                &[&keys.scores, &keys.order],
                &[&first, &last],
            )
            .await?;
        pairs(&flat)
    }
}

fn corrupt(reason: String) -> BackendError {
    BackendError::Corrupt {
        context: "a ranking board in Redis",
        reason,
    }
}

fn parse_score(text: &str) -> Result<i64> {
    text.parse()
        .map_err(|_| corrupt(format!("a score {text:?} is not an integer")))
}

fn parse_count(text: &str) -> Result<i64> {
    // Lua hands whole numbers over as "12" (from tostring on an integer reply) or "1.7e12"
    // (on a double); both parse as f64 exactly for what a board holds.
    text.parse::<i64>()
        .or_else(|_| text.parse::<f64>().map(|value| value as i64))
        .map_err(|_| corrupt(format!("a count {text:?} is not a number")))
}

/// (member, score) pairs from a flat `member, score, …` answer.
fn pairs(flat: &[String]) -> Result<Vec<(String, i64)>> {
    flat.chunks(2)
        .map(|pair| match pair {
            [member, score] => Ok((member.clone(), parse_score(score)?)),
            _ => Err(corrupt("a member without a score".to_string())),
        })
        .collect()
}

#[async_trait]
impl RankingStore for RedisRankings {
    async fn rank_add(
        &self,
        board: &str,
        member: &str,
        delta: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<i64> {
        self.write(board, member, "add", delta, cap, now).await
    }

    async fn rank_set(
        &self,
        board: &str,
        member: &str,
        score: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<()> {
        self.write(board, member, "set", score, cap, now)
            .await
            .map(|_| ())
    }

    async fn rank_remove(&self, board: &str, member: &str) -> Result<bool> {
        check_board_and_member(board, member)?;
        let keys = self.keys(board);
        let boards = self.boards_key();
        let removed: i64 = self
            .store
            .run(
                "removing a ranked member",
                &REMOVE_SCRIPT,
                &[&keys.scores, &keys.order, &keys.updated, &boards],
                &[&board, &member],
            )
            .await?;
        Ok(removed == 1)
    }

    async fn rank_of(&self, board: &str, member: &str) -> Result<Option<Standing>> {
        check_board_and_member(board, member)?;
        let keys = self.keys(board);
        let answer: Vec<String> = self
            .store
            .run(
                "reading a member's rank",
                &STANDING_SCRIPT,
                &[&keys.scores, &keys.order],
                &[&member],
            )
            .await?;
        match answer.as_slice() {
            [] => Ok(None),
            [score, higher] => Ok(Some(crate::rankings::standing(
                member,
                parse_score(score)?,
                parse_count(higher)?,
            ))),
            _ => Err(corrupt(format!("a standing answered {answer:?}"))),
        }
    }

    async fn rank_top(&self, board: &str, n: u32) -> Result<Vec<Standing>> {
        check_board(board)?;
        let n = top_limit(n);
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows = self.range(board, 0, u64::from(n) - 1).await?;
        Ok(ranked(rows, 1, 1))
    }

    async fn rank_around(&self, board: &str, member: &str, k: u32) -> Result<Vec<Standing>> {
        check_board_and_member(board, member)?;
        let keys = self.keys(board);
        let k = i64::from(around_reach(k));
        let answer: Vec<String> = self
            .store
            .run(
                "reading the members around one",
                &AROUND_SCRIPT,
                &[&keys.scores, &keys.order],
                &[&member, &k],
            )
            .await?;
        let [higher, first, rows @ ..] = answer.as_slice() else {
            return Ok(Vec::new());
        };
        let higher = parse_count(higher)?;
        let first = parse_count(first)?;
        Ok(ranked_window(pairs(rows)?, higher, first - higher))
    }

    async fn rank_count(&self, board: &str) -> Result<u64> {
        check_board(board)?;
        let mut connection = self.store.connection();
        let members: u64 = redis::cmd("HLEN")
            .arg(self.keys(board).scores)
            .query_async(&mut connection)
            .await
            .map_err(super::redis_error("counting a board"))?;
        Ok(members)
    }

    async fn rank_boards(&self, prefix: &str) -> Result<Vec<BoardSummary>> {
        check_board_prefix(prefix)?;
        let min = if prefix.is_empty() {
            "-".to_string()
        } else {
            format!("[{prefix}")
        };
        let max = match prefix_successor(prefix) {
            Some(successor) => format!("({successor}"),
            None => "+".to_string(),
        };
        let flat: Vec<String> = self
            .store
            .run(
                "listing boards",
                &BOARDS_SCRIPT,
                &[&self.boards_key()],
                &[&self.store.prefix(), &min, &max],
            )
            .await?;
        flat.chunks(3)
            .map(|row| match row {
                [board, members, updated_at] => Ok(BoardSummary {
                    board: board.clone(),
                    members: parse_count(members)?.unsigned_abs(),
                    updated_at: parse_count(updated_at)?,
                }),
                _ => Err(corrupt("a board without its counts".to_string())),
            })
            .collect()
    }

    async fn rank_drop(&self, board: &str) -> Result<u64> {
        check_board(board)?;
        let keys = self.keys(board);
        let boards = self.boards_key();
        let members: u64 = self
            .store
            .run(
                "dropping a board",
                &DROP_SCRIPT,
                &[&keys.scores, &keys.order, &keys.updated, &boards],
                &[&board],
            )
            .await?;
        Ok(members)
    }
}
