//! A handler built against `tsunagi:connector@0.1.0` (the copy in `wit/`), which exports the
//! 0.1.0 `handle` interface: the host at 0.1.1 must still load and run it. It calls nothing and
//! answers every job with the detail `legacy <kind> attempt <n> payload <payload>`, so a test
//! can see the job reached it whole.

wit_bindgen::generate!({
    path: "wit",
    world: "tsunagi:connector/handler@0.1.0",
    generate_all,
});

use exports::tsunagi::connector::handle::{Guest, Job, JobOutcome};
use tsunagi::connector::types::{ConnectorError, ErrorKind};

struct Legacy;

impl Guest for Legacy {
    fn handle(job: Job) -> Result<JobOutcome, ConnectorError> {
        if job.kind == "fail" {
            return Err(ConnectorError {
                kind: ErrorKind::Permanent,
                message: format!("job {} asked to fail", job.id),
            });
        }
        Ok(JobOutcome {
            reference: Some(format!("legacy-{}", job.id)),
            detail: Some(format!(
                "legacy {} attempt {} payload {}",
                job.kind, job.attempt, job.payload
            )),
        })
    }
}

export!(Legacy);
