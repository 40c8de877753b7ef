//! [`RankingStore`] for PostgreSQL: one row per (board, member) in `rankings`, read through
//! `rankings_by_score`, the board's order (score descending, member ascending; the columns are
//! `COLLATE "C"`, so members order by their bytes as on SQLite).
//!
//! A rank is 1 + the count of the board's rows scoring higher, a range of the index. The
//! members around one are keyset ranges either side of it, never an OFFSET over the board;
//! their statements run in one `REPEATABLE READ` transaction, so they see one snapshot.
//!
//! Many hosts write at once. An existing member's score moves in one `UPDATE` (the row lock
//! makes concurrent adds all count). Only a new member goes through the cap: its transaction
//! takes the board's advisory lock before counting, so two instances adding new members at
//! once cannot together pass the cap.

use super::PostgresBackend;
use crate::rankings::{
    around_reach, around_window, board_full, board_summaries, check_board, check_board_and_member,
    check_board_prefix, neighbours_missing, prefix_successor, ranked, ranked_window, standing,
    top_limit,
};
use crate::sql::{count, db_error};
use crate::{
    BackendError, BoardSummary, MAX_RETENTION_BATCH, Millis, RankingCap, RankingStore, Result,
    Standing,
};
use async_trait::async_trait;
use sqlx::PgConnection;

/// `score + delta` clamped to the BIGINT range (computed in NUMERIC, which cannot overflow).
/// `score` is the stored row's (`rankings.score`), `$3` the delta.
macro_rules! saturating_add {
    () => {
        "GREATEST(LEAST(rankings.score::numeric + $3::numeric, 9223372036854775807), \
         -9223372036854775808)::bigint"
    };
}

/// An existing member's new score, under its row lock: concurrent adds all count.
const ADD_EXISTING: &str = concat!(
    "UPDATE rankings SET score = ",
    saturating_add!(),
    ", updated_at = $4 WHERE board = $1 AND member = $2 RETURNING score"
);
const SET_EXISTING: &str = "\
UPDATE rankings SET score = $3, updated_at = $4 WHERE board = $1 AND member = $2 RETURNING score";

/// Serializes the creation of members on one board (transaction-scoped), so the count a new
/// member is checked against is the count it is written against.
const LOCK_BOARD: &str = "SELECT pg_advisory_xact_lock(hashtext('rankings:' || $1))";

/// Under the board's lock: whether the member is there (another instance may have created it
/// meanwhile) and how many members the board holds.
const MEMBER_AND_COUNT: &str = "\
SELECT EXISTS (SELECT 1 FROM rankings WHERE board = $1 AND member = $2),
       (SELECT COUNT(*) FROM rankings WHERE board = $1)";

/// A new member starts at 0, so its score is the saturated `0 + delta`, which is `delta`.
const ADD_NEW: &str = concat!(
    "INSERT INTO rankings (board, member, score, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (board, member) DO UPDATE SET score = ",
    saturating_add!(),
    ", updated_at = excluded.updated_at RETURNING score"
);
const SET_NEW: &str = "\
INSERT INTO rankings (board, member, score, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (board, member) DO UPDATE SET score = excluded.score, updated_at = excluded.updated_at
RETURNING score";

const SCORE_OF: &str = "SELECT score FROM rankings WHERE board = $1 AND member = $2";

const COUNT_BOARD: &str = "SELECT COUNT(*) FROM rankings WHERE board = $1";

/// A member's score and how many of its board score higher, in one statement (one snapshot).
const STANDING: &str = "\
SELECT r.score, (SELECT COUNT(*) FROM rankings h WHERE h.board = $1 AND h.score > r.score)
FROM rankings r WHERE r.board = $1 AND r.member = $2";

/// Rows before (`score`, `member`) in the board's order: those scoring higher, and those tied
/// with a smaller member. Their sum is the row's position minus one.
const BEFORE_COUNTS: &str = "\
SELECT (SELECT COUNT(*) FROM rankings WHERE board = $1 AND score > $2),
       (SELECT COUNT(*) FROM rankings WHERE board = $1 AND score = $2 AND member < $3)";

const TOP: &str = "\
SELECT member, score FROM rankings WHERE board = $1 ORDER BY score DESC, member LIMIT $2";

/// The nearest rows before (`$2`, `$3`), nearest first: first its tie, then higher scores.
const TIE_BEFORE: &str = "\
SELECT member, score FROM rankings WHERE board = $1 AND score = $2 AND member < $3
ORDER BY member DESC LIMIT $4";
const HIGHER_NEAREST: &str = "\
SELECT member, score FROM rankings WHERE board = $1 AND score > $2
ORDER BY score, member DESC LIMIT $3";

/// The nearest rows after (`$2`, `$3`), nearest first: first its tie, then lower scores.
const TIE_AFTER: &str = "\
SELECT member, score FROM rankings WHERE board = $1 AND score = $2 AND member > $3
ORDER BY member LIMIT $4";
const LOWER_NEAREST: &str = "\
SELECT member, score FROM rankings WHERE board = $1 AND score < $2
ORDER BY score DESC, member LIMIT $3";

/// Boards named from `$1` on (a prefix with no successor: every name starting with it). A
/// range on the `COLLATE "C"` key, so LIKE's wildcards in a prefix are plain characters.
const BOARDS_FROM: &str = "\
SELECT board, COUNT(*), MAX(updated_at) FROM rankings WHERE board >= $1
GROUP BY board ORDER BY board";
/// Boards named from `$1` (the prefix) up to, not including, `$2` (its successor).
const BOARDS_BETWEEN: &str = "\
SELECT board, COUNT(*), MAX(updated_at) FROM rankings WHERE board >= $1 AND board < $2
GROUP BY board ORDER BY board";

/// One batch of a board's deletion: a short transaction, so other writers run between.
const DROP_BATCH: &str = "\
DELETE FROM rankings WHERE board = $1 AND member IN (
    SELECT member FROM rankings WHERE board = $1 LIMIT $2
)";

/// PostgreSQL text cannot hold NUL: a name with one is refused (as over-long ones are) rather
/// than failing as a database error.
fn check_no_nul(what: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(BackendError::Refused(format!(
            "the {what} holds a NUL character, which the store cannot keep"
        )));
    }
    Ok(())
}

fn check_names(board: &str, member: &str) -> Result<()> {
    check_board_and_member(board, member)?;
    check_no_nul("board name", board)?;
    check_no_nul("member", member)
}

/// Rows of `sql` (member, score) for `board` and up to `limit` nearest neighbours of
/// (`score`, `member`); `member` is bound only for the queries of a tie (`$3`), `limit` last.
async fn neighbours(
    conn: &mut PgConnection,
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

/// How a write changes a member's score.
#[derive(Clone, Copy)]
enum Write {
    Add(i64),
    Set(i64),
}

impl Write {
    /// The statement for a member already there, the one for a new member, and the value
    /// (`$3`) both take.
    fn statements(self) -> (&'static str, &'static str, i64) {
        match self {
            Self::Add(delta) => (ADD_EXISTING, ADD_NEW, delta),
            Self::Set(score) => (SET_EXISTING, SET_NEW, score),
        }
    }
}

impl PostgresBackend {
    /// Applies `write` to `member`'s score, refusing a new member on a board that holds
    /// `cap.max_members` already; answers with the new score.
    async fn write_score(
        &self,
        board: &str,
        member: &str,
        write: Write,
        cap: RankingCap,
        now: Millis,
        context: &'static str,
    ) -> Result<i64> {
        check_names(board, member)?;
        let (existing, new, value) = write.statements();
        // The common case, a member already there: one statement, no board lock.
        let updated: Option<i64> = sqlx::query_scalar(existing)
            .bind(board)
            .bind(member)
            .bind(value)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error(context))?;
        if let Some(score) = updated {
            return Ok(score);
        }
        // A new member (or one removed since): under the board's lock, refused when it is
        // still absent and the board is full.
        let mut tx = self.begin(context).await?;
        sqlx::query(LOCK_BOARD)
            .bind(board)
            .execute(&mut *tx)
            .await
            .map_err(db_error(context))?;
        // READ COMMITTED: this statement, started after the lock, sees every member committed
        // by the lock's previous holders.
        let (present, members): (bool, i64) = sqlx::query_as(MEMBER_AND_COUNT)
            .bind(board)
            .bind(member)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(context))?;
        if !present && count(members) >= cap.max_members {
            tx.rollback().await.map_err(db_error(context))?;
            return Err(board_full(board, cap));
        }
        // An upsert: the member may have been created by another instance meanwhile, and an
        // add racing with ours on it must still count.
        let score: i64 = sqlx::query_scalar(new)
            .bind(board)
            .bind(member)
            .bind(value)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error(context))?;
        tx.commit().await.map_err(db_error(context))?;
        Ok(score)
    }
}

#[async_trait]
impl RankingStore for PostgresBackend {
    async fn rank_add(
        &self,
        board: &str,
        member: &str,
        delta: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<i64> {
        self.write_score(
            board,
            member,
            Write::Add(delta),
            cap,
            now,
            "adding to a score",
        )
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
        self.write_score(
            board,
            member,
            Write::Set(score),
            cap,
            now,
            "setting a score",
        )
        .await
        .map(drop)
    }

    async fn rank_remove(&self, board: &str, member: &str) -> Result<bool> {
        check_names(board, member)?;
        let done = sqlx::query("DELETE FROM rankings WHERE board = $1 AND member = $2")
            .bind(board)
            .bind(member)
            .execute(&self.pool)
            .await
            .map_err(db_error("removing a ranked member"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn rank_of(&self, board: &str, member: &str) -> Result<Option<Standing>> {
        check_names(board, member)?;
        let row: Option<(i64, i64)> = sqlx::query_as(STANDING)
            .bind(board)
            .bind(member)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("reading a member's rank"))?;
        Ok(row.map(|(score, higher)| standing(member, score, higher)))
    }

    async fn rank_top(&self, board: &str, n: u32) -> Result<Vec<Standing>> {
        check_board(board)?;
        check_no_nul("board name", board)?;
        let n = top_limit(n);
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64)> = sqlx::query_as(TOP)
            .bind(board)
            .bind(i64::from(n))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("reading the top of a board"))?;
        // The first row scores highest: nobody scores higher.
        Ok(ranked(rows, 1, 1))
    }

    async fn rank_around(&self, board: &str, member: &str, k: u32) -> Result<Vec<Standing>> {
        const CONTEXT: &str = "reading the members around one";
        check_names(board, member)?;
        let k = around_reach(k);
        let mut tx = self.begin(CONTEXT).await?;
        // One snapshot for every statement below (the first one fixes it).
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_error(CONTEXT))?;
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
        check_no_nul("board name", board)?;
        let members: i64 = sqlx::query_scalar(COUNT_BOARD)
            .bind(board)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("counting a board's members"))?;
        Ok(count(members))
    }

    async fn rank_boards(&self, prefix: &str) -> Result<Vec<BoardSummary>> {
        check_board_prefix(prefix)?;
        check_no_nul("board prefix", prefix)?;
        let successor = prefix_successor(prefix);
        let query = match &successor {
            Some(successor) => sqlx::query_as(BOARDS_BETWEEN).bind(prefix).bind(successor),
            None => sqlx::query_as(BOARDS_FROM).bind(prefix),
        };
        let rows: Vec<(String, i64, Millis)> = query
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("listing boards"))?;
        Ok(board_summaries(rows))
    }

    async fn rank_drop(&self, board: &str) -> Result<u64> {
        check_board(board)?;
        check_no_nul("board name", board)?;
        let mut dropped = 0u64;
        loop {
            let deleted = sqlx::query(DROP_BATCH)
                .bind(board)
                .bind(i64::from(MAX_RETENTION_BATCH))
                .execute(&self.pool)
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
