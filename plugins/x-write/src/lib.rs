//! tsunagi X write connector: a `handler` component that mirrors a service's posts to X (API
//! v2 `POST /2/tweets`) for the linked user the job names. Built on `tsunagi-sdk`.
//!
//! The host holds the user's token and signs each request; this plugin never sees it. Before
//! posting it checks the post did not come from X (loop prevention); the host has already
//! checked the user is linked for writing and refuses a request the user's token has no write
//! scope for. When an earlier attempt's outcome is unknown (the host lost it after sending the
//! post), it looks through the user's recent posts first, so a post is never made twice.
//!
//! - `post`: the checks and the reading of X's answers (pure, unit-tested natively).
//! - this module: the requests.

pub mod post;

use post::{Search, Verdict};
use tsunagi_sdk::prelude::*;

/// Identifies the connector to X.
pub const USER_AGENT: &str = "tsunagi-x-write/0.1";

/// Recent posts looked through for one an earlier attempt may have made: X's largest page, and
/// at most [`CHECK_PAGES`] pages (the user may have posted a lot since; a job is retried within
/// minutes, so its post is among the newest few hundred).
pub const RECENT_POSTS: &str = "100";
/// Pages of recent posts looked through at most.
pub const CHECK_PAGES: usize = 3;

struct XWrite;

impl Handler for XWrite {
    fn handle(job: Job) -> Result<JobOutcome> {
        let post = match post::check(&job.id, &job.kind, &job.payload)? {
            Verdict::Skip(reason) => return Ok(JobOutcome::skipped(reason)),
            Verdict::Post(post) => post,
        };
        let user = post::user_id(&job.id, job.target.as_deref())?;
        let base = config::require("base_url")?;
        let base = base.trim_end_matches('/');
        if job.earlier() == Earlier::Unknown {
            let mut page: Option<String> = None;
            for _ in 0..CHECK_PAGES {
                let recent = http::Request::get(format!("{base}/2/users/{user}/tweets"))
                    .query("max_results", RECENT_POSTS)
                    .header("user-agent", USER_AGENT);
                let recent = match &page {
                    Some(token) => recent.query("pagination_token", token),
                    None => recent,
                };
                match post::already_posted(recent.send()?, user, &post.text)? {
                    Search::Found(id) => {
                        tsunagi_sdk::info!(
                            "job {}: an earlier attempt had posted it as {id}",
                            job.id
                        );
                        return Ok(JobOutcome::done()
                            .reference(id)
                            .detail("found among the user's recent posts; not posted again"));
                    }
                    Search::NotHere { next: Some(next) } => page = Some(next),
                    Search::NotHere { next: None } => break,
                }
            }
        }
        let response = http::Request::post(format!("{base}/2/tweets"))
            .header("user-agent", USER_AGENT)
            .json(&serde_json::json!({ "text": post.text }))
            .send()?;
        let id = post::created(response, user)?;
        Ok(JobOutcome::done()
            .reference(id)
            .detail(post.source_id.map(|source| format!("mirrors {source}"))))
    }
}

tsunagi_sdk::export_handler!(XWrite);
