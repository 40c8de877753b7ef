//! {{name}}: a tsunagi handler. The host hands it one queued job at a time; this one POSTs the
//! job's JSON payload to the `endpoint` in its config and reports the id the upstream gave.
//! The job id goes along as an idempotency key, so a retried job is not published twice.

use serde::Deserialize;
use tsunagi_sdk::prelude::*;

struct Connector;

/// The upstream's answer to a publish.
#[derive(Deserialize)]
struct Created {
    id: String,
}

impl Handler for Connector {
    fn handle(job: Job) -> Result<JobOutcome> {
        let endpoint = config::require("endpoint")?;
        let payload: json::Value = job.payload_json()?;
        let created: Created = http::Request::post(&endpoint)
            .header("idempotency-key", job.id.as_str())
            .json(&payload)
            .send()?
            .error_for_status()?
            .json()?;
        Ok(JobOutcome::done()
            .reference(created.id)
            .detail(format!("{} published", job.kind)))
    }
}

tsunagi_sdk::export_handler!(Connector);
