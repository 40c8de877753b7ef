//! The host's rankings (since WIT 0.1.2): sorted sets of (member, score) per ranking and
//! period, kept by the host. A connector may use only the rankings its TOML lists
//! (`[connectors.NAME] rankings = ["top-sellers"]`); ranks are competition ranks (ties share
//! one: 1, 2, 2, 4).
//!
//! ```no_run
//! use tsunagi_sdk::rankings::{self, Period};
//!
//! # fn main() -> tsunagi_sdk::Result<()> {
//! rankings::add("top-sellers", "sku-1", 3)?;
//! for standing in rankings::top("top-sellers", Period::Daily, 10)? {
//!     tsunagi_sdk::info!("{}. {} ({})", standing.rank, standing.member, standing.score);
//! }
//! # Ok(())
//! # }
//! ```

use crate::__bindings::base::tsunagi::connector::rankings as wit;
use crate::{Error, Result};

#[doc(inline)]
pub use wit::{Period, Standing};

/// Adds `delta` to `member`'s score on every period of `ranking`; the score on its longest.
pub fn add(ranking: &str, member: &str, delta: i64) -> Result<i64> {
    wit::add(ranking, member, delta).map_err(Error::permanent)
}

/// `member`'s place on the current board of `period`, if it has one.
pub fn me(ranking: &str, period: Period, member: &str) -> Result<Option<Standing>> {
    wit::me(ranking, period, member).map_err(Error::permanent)
}

/// The first `n` members (at most 1000).
pub fn top(ranking: &str, period: Period, n: u32) -> Result<Vec<Standing>> {
    wit::top(ranking, period, n).map_err(Error::permanent)
}

/// Up to `k` members either side of `member`, and `member`; empty when it has no place.
pub fn around(ranking: &str, period: Period, member: &str, k: u32) -> Result<Vec<Standing>> {
    wit::around(ranking, period, member, k).map_err(Error::permanent)
}
