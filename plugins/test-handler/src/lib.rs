//! A handler for the host's job pipeline tests, on the SDK's `handler` role (WIT 0.1.1).
//!
//! Each job is posted to `{upstream}/effects/{job id}` (config value `upstream`) with the job's
//! payload as the body and headers `x-attempt`, `x-earlier` (`none`, `failed`, `unknown`) and
//! `x-target`, so the test's upstream can count each job's effects and see what the host told
//! the plugin. The upstream's answer decides the outcome: 2xx is done (reference: the body;
//! detail: `earlier=<…> attempt=<n>`), 429 rate limited, 5xx transient, any other permanent.
//!
//! When the earlier outcome is `unknown` the plugin first GETs the same URL: a 200 means an
//! earlier attempt took effect, and the job is done without posting again (detail
//! `found earlier=unknown attempt=<n>`). That is the check the WIT asks of a handler.
//!
//! A payload `{"skip": "reason"}` is skipped with that reason without any request.

use tsunagi_sdk::prelude::*;

struct TestHandler;

fn earlier_name(earlier: Earlier) -> &'static str {
    match earlier {
        Earlier::None => "none",
        Earlier::Failed => "failed",
        Earlier::Unknown => "unknown",
    }
}

impl Handler for TestHandler {
    fn handle(job: Job) -> Result<Outcome> {
        let payload: json::Value = job.payload_json()?;
        if let Some(reason) = payload.get("skip").and_then(json::Value::as_str) {
            return Ok(Outcome::skipped(reason));
        }
        let upstream = config::require("upstream")?;
        let url = format!("{upstream}/effects/{}", job.id);
        let earlier = earlier_name(job.earlier());
        if job.earlier() == Earlier::Unknown {
            let seen = http::Request::get(&url).send()?;
            if seen.status() == 200 {
                return Ok(Outcome::done()
                    .reference(seen.text()?)
                    .detail(format!("found earlier={earlier} attempt={}", job.attempt)));
            }
        }
        let response = http::Request::post(&url)
            .header("x-attempt", job.attempt.to_string())
            .header("x-earlier", earlier)
            .header("x-target", job.target().unwrap_or(""))
            .header("content-type", "application/json")
            .body(job.payload.clone())
            .send()?
            .error_for_status()?;
        Ok(Outcome::done()
            .reference(response.text()?)
            .detail(format!("earlier={earlier} attempt={}", job.attempt)))
    }
}

tsunagi_sdk::export_handler!(TestHandler);
