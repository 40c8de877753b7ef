//! [`RankingStore`] for PostgreSQL (not yet implemented).
#![allow(unused_variables, unused_imports)]

use super::PostgresBackend;
use crate::rankings::{
    around_reach, board_full, check_board, check_board_prefix, check_member, ranked, top_limit,
};
use crate::{
    BoardSummary, MAX_RETENTION_BATCH, Millis, RankingCap, RankingStore, Result, Standing,
};
use async_trait::async_trait;
use std::time::Duration;

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
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_set(
        &self,
        board: &str,
        member: &str,
        score: i64,
        cap: RankingCap,
        now: Millis,
    ) -> Result<()> {
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_remove(&self, board: &str, member: &str) -> Result<bool> {
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_of(&self, board: &str, member: &str) -> Result<Option<Standing>> {
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_top(&self, board: &str, n: u32) -> Result<Vec<Standing>> {
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_around(&self, board: &str, member: &str, k: u32) -> Result<Vec<Standing>> {
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_count(&self, board: &str) -> Result<u64> {
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_boards(&self, prefix: &str) -> Result<Vec<BoardSummary>> {
        unimplemented!("PostgreSQL RankingStore")
    }

    async fn rank_drop(&self, board: &str) -> Result<u64> {
        unimplemented!("PostgreSQL RankingStore")
    }
}
