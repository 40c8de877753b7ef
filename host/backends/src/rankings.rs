//! [`RankingStore`]: rankings, that is sorted sets of (member, score) per named board, as Redis
//! sorted sets offer them: "my rank", "the top N", "the members around me".
//!
//! The host names the boards (one per period, such as `search-queries:daily:2026-12-02`), says
//! how many members a board may hold ([`RankingCap`]) and drops the boards of periods long over
//! ([`RankingStore::rank_boards`], [`RankingStore::rank_drop`]). Plugins reach the store through
//! the host and are not trusted: every name and member is checked against a cap here, and no
//! list is longer than [`MAX_RANKING_LIST`].
//!
//! The trait speaks only of boards, members and scores, so a Redis backend (`ZINCRBY`,
//! `ZREVRANK`, `ZREVRANGE`) implements it as well as SQL does.

use crate::{BackendError, Millis, Result};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashSet;

/// The longest board name the store takes, in bytes.
pub const MAX_BOARD_NAME_BYTES: usize = 200;
/// The longest member the store takes, in bytes.
pub const MAX_MEMBER_BYTES: usize = 256;
/// The longest list one call answers with: `n` of [`RankingStore::rank_top`] and the `2k + 1`
/// of [`RankingStore::rank_around`] are clamped to it.
pub const MAX_RANKING_LIST: u32 = 1000;

/// How many members a board may hold, as the caller (the host) allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankingCap {
    pub max_members: u64,
}

/// A member's place on a board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub member: String,
    pub score: i64,
    /// Competition rank: 1 + the number of members with a strictly higher score.
    pub rank: u64,
}

/// One board, as [`RankingStore::rank_boards`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardSummary {
    pub board: String,
    pub members: u64,
    /// The latest time a member of the board was added or updated.
    pub updated_at: Millis,
}

/// Rankings: one sorted set of (member, score) per board.
///
/// - Scores are `i64`. A board's order is score descending, then member ascending (bytewise).
/// - A rank is a competition rank: 1 + the number of members with a strictly higher score, so
///   tied members share a rank (1, 2, 2, 4) and stand in member order inside the tie.
/// - Board names and members are non-empty and at most [`MAX_BOARD_NAME_BYTES`] and
///   [`MAX_MEMBER_BYTES`] bytes; anything else is [`BackendError::Refused`] (the message gives
///   the length, never the value), by every method, nothing written.
/// - Lists are at most [`MAX_RANKING_LIST`] long, whatever the caller asks.
/// - Each call is atomic on its own; two calls are not one snapshot.
#[async_trait]
pub trait RankingStore: Send + Sync {
    /// Adds `delta` to `member`'s score (a new member starts at 0), saturating at `i64::MIN`
    /// and `i64::MAX`, stamps the member's update time `now` and answers with the new score.
    /// Atomic: concurrent adds to one member all count. A member new to a board that already
    /// holds `cap.max_members` is [`BackendError::Refused`] (the message names the board and
    /// the cap); an existing member is always updated.
    async fn rank_add(
        &self,
        board: &str,
        member: &str,
        delta: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<i64>;
    /// Sets `member`'s score, under the same cap as [`Self::rank_add`].
    async fn rank_set(
        &self,
        board: &str,
        member: &str,
        score: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<()>;
    /// Removes `member` from `board`; false when it was not there.
    async fn rank_remove(&self, board: &str, member: &str) -> Result<bool>;
    /// "Me": `member`'s score and rank, `None` when it is not on the board.
    async fn rank_of(&self, board: &str, member: &str) -> Result<Option<Standing>>;
    /// "Top N": the first `n` members in the board's order (fewer when it holds fewer; `n` is
    /// clamped to [`MAX_RANKING_LIST`]).
    async fn rank_top(&self, board: &str, n: u32) -> Result<Vec<Standing>>;
    /// "Around me": up to `k` members before `member` in the board's order, the member itself,
    /// and up to `k` members after it, in the board's order. Before and after are by position
    /// in the order (score descending, member ascending), not by rank: a tie is split at the
    /// member. `2k + 1` is clamped to [`MAX_RANKING_LIST`]. Empty when `member` is not on the
    /// board.
    async fn rank_around(&self, board: &str, member: &str, k: u32) -> Result<Vec<Standing>>;
    /// How many members `board` holds (0 for a board that does not exist).
    async fn rank_count(&self, board: &str) -> Result<u64>;
    /// Every board whose name starts with `prefix` (all of them for `""`), by name. For the
    /// host, which names the boards: a prefix longer than [`MAX_BOARD_NAME_BYTES`] is refused.
    async fn rank_boards(&self, prefix: &str) -> Result<Vec<BoardSummary>>;
    /// Deletes a whole board; answers how many members it held.
    async fn rank_drop(&self, board: &str) -> Result<u64>;
}

/// "Top N and around me", as a leaderboard page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TopAndAround {
    /// [`RankingStore::rank_top`] of `n`.
    pub top: Vec<Standing>,
    /// [`RankingStore::rank_around`] of `k`, without the members already in `top`.
    pub around: Vec<Standing>,
    /// The member's own standing; `None` when it is not on the board.
    pub me: Option<Standing>,
}

/// The top `n` of `board` and the `k` members either side of `member`, leaving out of `around`
/// those already in `top` (so a member in the top N has an empty or shorter `around`). Two
/// calls of the store: a write between them may show in one and not the other.
pub async fn top_and_around(
    store: &dyn RankingStore,
    board: &str,
    member: &str,
    n: u32,
    k: u32,
) -> Result<TopAndAround> {
    let top = store.rank_top(board, n).await?;
    let around = store.rank_around(board, member, k).await?;
    let me = around
        .iter()
        .find(|standing| standing.member == member)
        .cloned();
    let in_top: HashSet<&str> = top
        .iter()
        .map(|standing| standing.member.as_str())
        .collect();
    let around = around
        .iter()
        .filter(|standing| !in_top.contains(standing.member.as_str()))
        .cloned()
        .collect();
    Ok(TopAndAround { top, around, me })
}

/// Refuses an empty board name or one over [`MAX_BOARD_NAME_BYTES`] (giving its length only).
pub fn check_board(board: &str) -> Result<()> {
    check_name("board name", board, MAX_BOARD_NAME_BYTES)
}

/// Refuses an empty member or one over [`MAX_MEMBER_BYTES`] (giving its length only).
pub fn check_member(member: &str) -> Result<()> {
    check_name("member", member, MAX_MEMBER_BYTES)
}

/// Refuses a board name or member [`check_board`] or [`check_member`] refuses.
pub(crate) fn check_board_and_member(board: &str, member: &str) -> Result<()> {
    check_board(board)?;
    check_member(member)
}

/// Refuses a board prefix over [`MAX_BOARD_NAME_BYTES`] (an empty one lists every board).
pub fn check_board_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_BOARD_NAME_BYTES {
        return Err(BackendError::Refused(format!(
            "a board prefix of {} bytes is over the limit of {MAX_BOARD_NAME_BYTES} bytes",
            prefix.len()
        )));
    }
    Ok(())
}

fn check_name(what: &str, value: &str, limit: usize) -> Result<()> {
    if value.is_empty() {
        return Err(BackendError::Refused(format!("the {what} is empty")));
    }
    if value.len() > limit {
        return Err(BackendError::Refused(format!(
            "a {what} of {} bytes is over the limit of {limit} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// The refusal of a new member on a full board.
pub fn board_full(board: &str, cap: RankingCap) -> BackendError {
    BackendError::Refused(format!(
        "board {board:?} is full: it holds its cap of {} members, so a new member cannot be \
         added",
        cap.max_members
    ))
}

/// `n` of [`RankingStore::rank_top`], clamped to [`MAX_RANKING_LIST`].
pub fn top_limit(n: u32) -> u32 {
    n.min(MAX_RANKING_LIST)
}

/// `k` of [`RankingStore::rank_around`], clamped so that `2k + 1` is at most
/// [`MAX_RANKING_LIST`].
pub fn around_reach(k: u32) -> u32 {
    k.min((MAX_RANKING_LIST - 1) / 2)
}

/// Ranks for consecutive rows of a board's order, given as (member, score): the first row
/// has rank `first_rank` and stands at (1-based) position `first_position`. A row scoring as
/// its predecessor shares its rank; any other row's rank is its position (every row before it
/// scores higher).
pub fn ranked(rows: Vec<(String, i64)>, first_rank: u64, first_position: u64) -> Vec<Standing> {
    let mut standings: Vec<Standing> = Vec::with_capacity(rows.len());
    let mut position = first_position;
    for (member, score) in rows {
        let rank = match standings.last() {
            None => first_rank,
            Some(previous) if previous.score == score => previous.rank,
            Some(_) => position,
        };
        standings.push(Standing {
            member,
            score,
            rank,
        });
        position = position.saturating_add(1);
    }
    standings
}

/// The smallest string greater than every string starting with `prefix` (UTF-8 byte order,
/// the order boards are kept in, is code point order): its last character that can grow,
/// grown by one, and what follows it dropped. `None` when every character is `char::MAX`
/// (every name from `prefix` on starts with it).
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `member`'s standing from its score and how many members of its board score higher.
pub(crate) fn standing(member: &str, score: i64, higher: i64) -> Standing {
    Standing {
        member: member.to_string(),
        score,
        rank: higher.unsigned_abs().saturating_add(1),
    }
}

/// [`RankingStore::rank_boards`]'s answer from rows of (board, members, updated_at).
pub(crate) fn board_summaries(rows: Vec<(String, i64, Millis)>) -> Vec<BoardSummary> {
    rows.into_iter()
        .map(|(board, members, updated_at)| BoardSummary {
            board,
            members: members.unsigned_abs(),
            updated_at,
        })
        .collect()
}

/// How many of the `k` neighbours one side of [`RankingStore::rank_around`] wants are still
/// missing once `found` are read (from the member's tie).
pub(crate) fn neighbours_missing(k: u32, found: usize) -> u32 {
    k.saturating_sub(u32::try_from(found).unwrap_or(k))
}

/// The rows of a [`RankingStore::rank_around`] window in the board's order, given the rows
/// `before` and `after` (member, score) of the member, nearest first; and the window's first
/// row (the member itself when nothing is before it).
pub(crate) fn around_window(
    before: Vec<(String, i64)>,
    member: &str,
    score: i64,
    mut after: Vec<(String, i64)>,
) -> (Vec<(String, i64)>, (String, i64)) {
    let mut rows = before;
    rows.reverse();
    rows.push((member.to_string(), score));
    rows.append(&mut after);
    let first = rows
        .first()
        .cloned()
        .unwrap_or_else(|| (member.to_string(), score));
    (rows, first)
}

/// Standings of a window's `rows`, its first row having `higher` members of the board score
/// higher and `tied_before` tied with it stand before it.
pub(crate) fn ranked_window(
    rows: Vec<(String, i64)>,
    higher: i64,
    tied_before: i64,
) -> Vec<Standing> {
    let first_rank = higher.unsigned_abs().saturating_add(1);
    ranked(
        rows,
        first_rank,
        first_rank.saturating_add(tied_before.unsigned_abs()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_give_the_length_and_the_limit_not_the_value() {
        assert!(check_board("b").is_ok());
        assert!(check_member(&"m".repeat(MAX_MEMBER_BYTES)).is_ok());
        let long = "secret".repeat(50);
        let message = check_member(&long).expect_err("too long").to_string();
        assert_eq!(
            message,
            "refused: a member of 300 bytes is over the limit of 256 bytes"
        );
        assert!(!message.contains("secret"));
        assert_eq!(
            check_board("").expect_err("empty").to_string(),
            "refused: the board name is empty"
        );
    }

    #[test]
    fn ranks_are_shared_in_a_tie_and_jump_after_it() {
        let rows = [("a", 9), ("b", 5), ("c", 5), ("d", 1)]
            .map(|(m, s)| (m.to_string(), s))
            .to_vec();
        let ranks: Vec<u64> = ranked(rows.clone(), 1, 1).iter().map(|s| s.rank).collect();
        assert_eq!(ranks, [1, 2, 2, 4]);
        // A window starting inside a tie: the first row's rank and position differ.
        let ranks: Vec<u64> = ranked(rows[2..].to_vec(), 2, 3)
            .iter()
            .map(|s| s.rank)
            .collect();
        assert_eq!(ranks, [2, 4]);
    }

    #[test]
    fn a_prefix_successor_bounds_exactly_the_names_starting_with_it() {
        assert_eq!(prefix_successor("").as_deref(), None);
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_successor("\u{10FFFF}").as_deref(), None);
        let successor = prefix_successor("q:").expect("a successor");
        for name in ["q:", "q:daily", "q:\u{10FFFF}\u{10FFFF}"] {
            assert!(name < successor.as_str(), "{name}");
        }
        assert!("q;" >= successor.as_str());
    }

    #[test]
    fn lists_are_clamped() {
        assert_eq!(top_limit(5), 5);
        assert_eq!(top_limit(u32::MAX), MAX_RANKING_LIST);
        assert_eq!(around_reach(3), 3);
        assert_eq!(around_reach(u32::MAX), 499);
        assert!(2 * around_reach(u32::MAX) < MAX_RANKING_LIST);
    }
}
