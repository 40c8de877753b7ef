//! [`RankingStore`] for SQLite: one row per (board, member) in `rankings` (schema v7), read
//! through `rankings_by_score`, the board's order (score descending, member ascending).
//!
//! A rank is 1 + the count of the board's rows scoring higher: a range of the index, so it
//! costs in proportion to the rank (SQLite keeps no order statistics). The members around one
//! are keyset ranges either side of it, never an OFFSET over the board. Reads of several
//! statements run in one read transaction, so they see one snapshot. Writes run on the writer
//! inside `BEGIN IMMEDIATE`: the cap counted is the cap written against, in this process or
//! another.

use super::SqliteBackend;
use crate::rankings::{
    around_reach, around_window, board_full, board_summaries, check_board, check_board_and_member,
    check_board_prefix, neighbours_missing, prefix_successor, ranked, ranked_window, standing,
    top_limit,
};
use crate::sql::{count, db_error};
use crate::{
    BoardSummary, MAX_RETENTION_BATCH, Millis, RankingCap, RankingStore, Result, Standing,
};
use async_trait::async_trait;
use sqlx::SqliteConnection;

const SCORE_OF: &str = "SELECT score FROM rankings WHERE board = ?1 AND member = ?2";

const COUNT_BOARD: &str = "SELECT COUNT(*) FROM rankings WHERE board = ?1";

const UPSERT: &str = "\
INSERT INTO rankings (board, member, score, updated_at) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (board, member) DO UPDATE SET score = excluded.score, updated_at = excluded.updated_at";

/// A member's score and how many of its board score higher, in one statement (one snapshot).
const STANDING: &str = "\
SELECT r.score, (SELECT COUNT(*) FROM rankings h WHERE h.board = ?1 AND h.score > r.score)
FROM rankings r WHERE r.board = ?1 AND r.member = ?2";

/// Rows before (`score`, `member`) in the board's order: those scoring higher, and those tied
/// with a smaller member. Their sum is the row's position minus one.
const BEFORE_COUNTS: &str = "\
SELECT (SELECT COUNT(*) FROM rankings WHERE board = ?1 AND score > ?2),
       (SELECT COUNT(*) FROM rankings WHERE board = ?1 AND score = ?2 AND member < ?3)";

const TOP: &str = "\
SELECT member, score FROM rankings WHERE board = ?1 ORDER BY score DESC, member LIMIT ?2";

/// The nearest rows before (`?2`, `?3`), nearest first: first its tie, then higher scores.
const TIE_BEFORE: &str = "\
SELECT member, score FROM rankings WHERE board = ?1 AND score = ?2 AND member < ?3
ORDER BY member DESC LIMIT ?4";
const HIGHER_NEAREST: &str = "\
SELECT member, score FROM rankings WHERE board = ?1 AND score > ?2
ORDER BY score, member DESC LIMIT ?3";

/// The nearest rows after (`?2`, `?3`), nearest first: first its tie, then lower scores.
const TIE_AFTER: &str = "\
SELECT member, score FROM rankings WHERE board = ?1 AND score = ?2 AND member > ?3
ORDER BY member LIMIT ?4";
const LOWER_NEAREST: &str = "\
SELECT member, score FROM rankings WHERE board = ?1 AND score < ?2
ORDER BY score DESC, member LIMIT ?3";

/// Boards named from `?1` on (a prefix with no successor: every name starting with it).
const BOARDS_FROM: &str = "\
SELECT board, COUNT(*), MAX(updated_at) FROM rankings WHERE board >= ?1
GROUP BY board ORDER BY board";
/// Boards named from `?1` (the prefix) up to, not including, `?2` (its successor).
const BOARDS_BETWEEN: &str = "\
SELECT board, COUNT(*), MAX(updated_at) FROM rankings WHERE board >= ?1 AND board < ?2
GROUP BY board ORDER BY board";

/// One batch of a board's deletion: a short write transaction, so other writers run between.
const DROP_BATCH: &str = "\
DELETE FROM rankings WHERE board = ?1 AND member IN (
    SELECT member FROM rankings WHERE board = ?1 LIMIT ?2
)";

/// Rows of `sql` (member, score) for `board` and up to `limit` nearest neighbours of
/// (`score`, `member`); `member` is bound only for the queries of a tie (`?3`), `limit` last.
async fn neighbours(
    conn: &mut SqliteConnection,
    sql: &'static str,
    board: &str,
    score: i64,
    member: Option<&str>,
    limit: u32,
) -> Result<Vec<(String, i64)>> {
    const CONTEXT: &str = "reading the members around one";
    if limit == 0 {
        return Ok(Vec::new());
    }
    let query = sqlx::query_as(sql).bind(board).bind(score);
    let query = match member {
        Some(member) => query.bind(member),
        None => query,
    };
    query
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error(CONTEXT))
}

impl SqliteBackend {
    /// Sets `member`'s score to `new_score(old score)` in one write transaction, refusing a new
    /// member on a board that holds `cap.max_members` already; answers with the new score.
    async fn write_score(
        &self,
        board: &str,
        member: &str,
        cap: RankingCap,
        now: Millis,
        context: &'static str,
        new_score: impl FnOnce(Option<i64>) -> i64 + Send,
    ) -> Result<i64> {
        check_board_and_member(board, member)?;
        let mut tx = self.begin_write(context).await?;
        let old: Option<i64> = sqlx::query_scalar(SCORE_OF)
            .bind(board)
            .bind(member)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error(context))?;
        if old.is_none() {
            let members: i64 = sqlx::query_scalar(COUNT_BOARD)
                .bind(board)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error(context))?;
            if count(members) >= cap.max_members {
                tx.rollback().await.map_err(db_error(context))?;
                return Err(board_full(board, cap));
            }
        }
        let score = new_score(old);
        sqlx::query(UPSERT)
            .bind(board)
            .bind(member)
            .bind(score)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error(context))?;
        tx.commit().await.map_err(db_error(context))?;
        Ok(score)
    }
}

#[async_trait]
impl RankingStore for SqliteBackend {
    async fn rank_add(
        &self,
        board: &str,
        member: &str,
        delta: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<i64> {
        self.write_score(board, member, cap, now, "adding to a score", |old| {
            old.unwrap_or(0).saturating_add(delta)
        })
        .await
    }

    async fn rank_set(
        &self,
        board: &str,
        member: &str,
        score: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<()> {
        self.write_score(board, member, cap, now, "setting a score", |_| score)
            .await
            .map(drop)
    }

    async fn rank_remove(&self, board: &str, member: &str) -> Result<bool> {
        check_board_and_member(board, member)?;
        let done = sqlx::query("DELETE FROM rankings WHERE board = ?1 AND member = ?2")
            .bind(board)
            .bind(member)
            .execute(&self.writer)
            .await
            .map_err(db_error("removing a ranked member"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn rank_of(&self, board: &str, member: &str) -> Result<Option<Standing>> {
        check_board_and_member(board, member)?;
        let row: Option<(i64, i64)> = sqlx::query_as(STANDING)
            .bind(board)
            .bind(member)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading a member's rank"))?;
        Ok(row.map(|(score, higher)| standing(member, score, higher)))
    }

    async fn rank_top(&self, board: &str, n: u32) -> Result<Vec<Standing>> {
        check_board(board)?;
        let n = top_limit(n);
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64)> = sqlx::query_as(TOP)
            .bind(board)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("reading the top of a board"))?;
        // The first row scores highest: nobody scores higher.
        Ok(ranked(rows, 1, 1))
    }

    async fn rank_around(&self, board: &str, member: &str, k: u32) -> Result<Vec<Standing>> {
        const CONTEXT: &str = "reading the members around one";
        check_board_and_member(board, member)?;
        let k = around_reach(k);
        let mut tx = self.reader.begin().await.map_err(db_error(CONTEXT))?;
        let score: Option<i64> = sqlx::query_scalar(SCORE_OF)
            .bind(board)
            .bind(member)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        let Some(score) = score else {
            tx.commit().await.map_err(db_error(CONTEXT))?;
            return Ok(Vec::new());
        };

        let mut before = neighbours(&mut tx, TIE_BEFORE, board, score, Some(member), k).await?;
        let missing = neighbours_missing(k, before.len());
        before.extend(neighbours(&mut tx, HIGHER_NEAREST, board, score, None, missing).await?);
        let mut after = neighbours(&mut tx, TIE_AFTER, board, score, Some(member), k).await?;
        let missing = neighbours_missing(k, after.len());
        after.extend(neighbours(&mut tx, LOWER_NEAREST, board, score, None, missing).await?);

        let (rows, (first_member, first_score)) = around_window(before, member, score, after);
        let (higher, tied_before): (i64, i64) = sqlx::query_as(BEFORE_COUNTS)
            .bind(board)
            .bind(first_score)
            .bind(&first_member)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
        tx.commit().await.map_err(db_error(CONTEXT))?;
        Ok(ranked_window(rows, higher, tied_before))
    }

    async fn rank_count(&self, board: &str) -> Result<u64> {
        check_board(board)?;
        let members: i64 = sqlx::query_scalar(COUNT_BOARD)
            .bind(board)
            .fetch_one(&self.reader)
            .await
            .map_err(db_error("counting a board's members"))?;
        Ok(count(members))
    }

    async fn rank_boards(&self, prefix: &str) -> Result<Vec<BoardSummary>> {
        check_board_prefix(prefix)?;
        let successor = prefix_successor(prefix);
        let query = match &successor {
            Some(successor) => sqlx::query_as(BOARDS_BETWEEN).bind(prefix).bind(successor),
            None => sqlx::query_as(BOARDS_FROM).bind(prefix),
        };
        let rows: Vec<(String, i64, Millis)> = query
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing boards"))?;
        Ok(board_summaries(rows))
    }

    async fn rank_drop(&self, board: &str) -> Result<u64> {
        check_board(board)?;
        let mut dropped = 0u64;
        loop {
            let deleted = sqlx::query(DROP_BATCH)
                .bind(board)
                .bind(i64::from(MAX_RETENTION_BATCH))
                .execute(&self.writer)
                .await
                .map_err(db_error("dropping a board"))?
                .rows_affected();
            dropped = dropped.saturating_add(deleted);
            if deleted < u64::from(MAX_RETENTION_BATCH) {
                return Ok(dropped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Rank queries must read the board's order from `rankings_by_score` (or the primary key),
    //! never scan the table nor sort: each statement's plan, from the SQLite this build links.

    use super::*;

    use crate::sqlite::query_plan as plan;

    #[tokio::test]
    async fn rank_queries_search_the_order_index_and_neither_scan_nor_sort() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("plans.db");
        let backend = SqliteBackend::open(path.to_str().expect("UTF-8 path"))
            .await
            .expect("open");
        let by_score = "USING COVERING INDEX rankings_by_score (board=?";
        let cases = [
            (STANDING, "USING PRIMARY KEY (board=? AND member=?)"),
            (STANDING, "rankings_by_score (board=? AND score>?)"),
            (BEFORE_COUNTS, "rankings_by_score (board=? AND score>?)"),
            (
                BEFORE_COUNTS,
                "rankings_by_score (board=? AND score=? AND member<?)",
            ),
            (TOP, by_score),
            (
                TIE_BEFORE,
                "rankings_by_score (board=? AND score=? AND member<?)",
            ),
            (HIGHER_NEAREST, "rankings_by_score (board=? AND score>?)"),
            (
                TIE_AFTER,
                "rankings_by_score (board=? AND score=? AND member>?)",
            ),
            (LOWER_NEAREST, "rankings_by_score (board=? AND score<?)"),
            (COUNT_BOARD, by_score),
            (SCORE_OF, "USING PRIMARY KEY (board=? AND member=?)"),
            (BOARDS_FROM, "USING PRIMARY KEY (board>?)"),
            (BOARDS_BETWEEN, "USING PRIMARY KEY (board>? AND board<?)"),
            (DROP_BATCH, "USING PRIMARY KEY (board=?"),
        ];
        for (sql, expected) in cases {
            let plan = plan(&backend, sql).await;
            assert!(
                plan.contains(expected),
                "expected {expected:?} in:\n{plan}\nfor {sql}"
            );
            for line in plan.lines() {
                let line = line.trim_start();
                assert!(
                    !(line.starts_with("SCAN rankings") || line.starts_with("SCAN h")),
                    "{line:?} in:\n{plan}\nfor {sql}"
                );
                assert!(!line.contains("TEMP B-TREE"), "{line:?} for {sql}");
            }
        }
    }
}
