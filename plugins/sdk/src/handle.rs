//! The `handler` role: queued pushes. The host hands [`Handler::handle`] one job at a time
//! (publish a post, send a message) and retries it according to the error's kind.
//!
//! Implement [`Handler`] on a unit struct and export it with
//! [`export_handler!`](crate::export_handler). The component exports
//! `tsunagi:connector/jobs` (WIT 0.1.1): each [`Job`] says which linked target it acts for
//! ([`Job::target`]) and what the host knows of its earlier attempts ([`Job::earlier`]); a
//! handler may decline a job with [`Outcome::skipped`].

use serde::de::DeserializeOwned;

use crate::__bindings::handler::exports::tsunagi::connector::jobs as wit;
use crate::item::IntoOptionalString;
use crate::{Error, Result};

#[doc(inline)]
pub use wit::Job;

/// A connector that carries out queued jobs.
pub trait Handler {
    /// Carries out `job` once. A `transient` or `rate-limited` error has the host retry it
    /// later (with `attempt` + 1); `permanent` and `bad-response` give it up. An
    /// [`Outcome::skipped`] completes the job without carrying it out; it is never retried.
    fn handle(job: Job) -> Result<Outcome>;
}

/// What the host knows of a job's earlier attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Earlier {
    /// This is the first attempt.
    None,
    /// Every earlier attempt is known not to have taken effect (it failed before changing
    /// anything, or the upstream answered with a failure): acting again is safe.
    Failed,
    /// An earlier attempt may have taken effect: the host lost track of it after a request that
    /// changes something was sent (the host stopped, the lease ran out, the connection broke
    /// before the answer). Check the upstream (did the post appear?) before acting again.
    Unknown,
}

impl Job {
    /// The linked target (a user) the job acts for, if the producer named one. The host signs
    /// the call's requests for that target; the plugin never sees its credentials.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// What became of the earlier attempts.
    ///
    /// ```
    /// use tsunagi_sdk::{Earlier, Job};
    ///
    /// let first = Job { attempt: 1, ..Default::default() };
    /// assert_eq!(first.earlier(), Earlier::None);
    /// ```
    pub fn earlier(&self) -> Earlier {
        match self.earlier {
            wit::EarlierOutcome::None => Earlier::None,
            wit::EarlierOutcome::Failed => Earlier::Failed,
            wit::EarlierOutcome::Unknown => Earlier::Unknown,
        }
    }

    /// The payload deserialized from its JSON text. A payload that does not deserialize will not
    /// on a retry either: a `permanent` error naming the job.
    ///
    /// ```
    /// use tsunagi_sdk::Job;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Post { text: String }
    ///
    /// let job = Job { kind: "post".into(), payload: r#"{"text":"hi"}"#.into(), ..Default::default() };
    /// assert_eq!(job.payload_json::<Post>()?.text, "hi");
    /// # Ok::<(), tsunagi_sdk::Error>(())
    /// ```
    pub fn payload_json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.payload).map_err(|err| {
            Error::permanent(format!(
                "job {} ({}): unusable payload: {err}",
                self.id, self.kind
            ))
        })
    }
}

/// A first attempt with no target and an empty payload; for tests and struct-update syntax.
impl Default for Job {
    fn default() -> Self {
        Self {
            id: String::new(),
            kind: String::new(),
            payload: String::new(),
            attempt: 1,
            target: None,
            earlier: wit::EarlierOutcome::None,
        }
    }
}

/// What a handled job came to: done (with the upstream's reference and a note) or skipped
/// (with the reason).
///
/// ```
/// use tsunagi_sdk::Outcome;
///
/// let outcome = Outcome::done().reference("post/123").detail("posted to #general");
/// assert_eq!(outcome.reference_str(), Some("post/123"));
/// let skipped = Outcome::skipped("the post came from X");
/// assert_eq!(skipped.skipped_reason(), Some("the post came from X"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome(wit::JobResult);

/// The 0.1.0 name of [`Outcome`]; `JobOutcome::done()` builds the same thing.
pub type JobOutcome = Outcome;

impl Outcome {
    /// A job done, with nothing to report yet.
    pub fn done() -> Self {
        Self(wit::JobResult::Done(wit::JobDone::default()))
    }

    /// A job deliberately not carried out, with the reason (shown to operators; never a
    /// secret). The job is completed and never retried.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self(wit::JobResult::Skipped(reason.into()))
    }

    /// Sets the upstream's id of what was created or changed (ignored on a skipped outcome).
    #[must_use]
    pub fn reference(mut self, reference: impl IntoOptionalString) -> Self {
        if let wit::JobResult::Done(done) = &mut self.0 {
            done.reference = reference.into_optional_string();
        }
        self
    }

    /// Sets a short note for operators, never a secret (ignored on a skipped outcome).
    #[must_use]
    pub fn detail(mut self, detail: impl IntoOptionalString) -> Self {
        if let wit::JobResult::Done(done) = &mut self.0 {
            done.detail = detail.into_optional_string();
        }
        self
    }

    /// The reference of a done outcome.
    pub fn reference_str(&self) -> Option<&str> {
        match &self.0 {
            wit::JobResult::Done(done) => done.reference.as_deref(),
            wit::JobResult::Skipped(_) => None,
        }
    }

    /// The detail of a done outcome.
    pub fn detail_str(&self) -> Option<&str> {
        match &self.0 {
            wit::JobResult::Done(done) => done.detail.as_deref(),
            wit::JobResult::Skipped(_) => None,
        }
    }

    /// The reason of a skipped outcome.
    pub fn skipped_reason(&self) -> Option<&str> {
        match &self.0 {
            wit::JobResult::Skipped(reason) => Some(reason),
            wit::JobResult::Done(_) => None,
        }
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> wit::JobResult {
        self.0
    }
}

/// Exports a [`Handler`] as the component's `tsunagi:connector/jobs`. Invoke it once, in the
/// connector crate, with the name of the implementing type.
///
/// Outside `wasm32` the macro only checks the implementation and exports nothing, so a
/// connector crate can also be built natively (`crate-type = ["cdylib", "rlib"]`) for its tests.
///
#[cfg_attr(feature = "handler", doc = "```")]
#[cfg_attr(not(feature = "handler"), doc = "```ignore")]
/// use tsunagi_sdk::prelude::*;
///
/// struct Publisher;
///
/// impl Handler for Publisher {
///     fn handle(job: Job) -> Result<Outcome> {
///         let api = config::require("api-base")?;
///         if job.earlier() == Earlier::Unknown {
///             // An earlier attempt may have published it: look before publishing again.
///             let seen = http::Request::get(format!("{api}/posts/by-key/{}", job.id)).send()?;
///             if seen.status() == 200 {
///                 return Ok(Outcome::done().detail("published by an earlier attempt"));
///             }
///         }
///         let response = http::Request::post(format!("{api}/posts"))
///             .header("idempotency-key", job.id.as_str())
///             .body(job.payload.clone())
///             .send()?
///             .error_for_status()?;
///         let created: json::Value = response.json()?;
///         Ok(Outcome::done().reference(created["id"].as_str()))
///     }
/// }
///
/// tsunagi_sdk::export_handler!(Publisher);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_handler {
    ($ty:ident) => {
        const _: () = {
            impl $crate::__bindings::handler::exports::tsunagi::connector::jobs::Guest for $ty {
                fn handle(
                    job: $crate::handle::Job,
                ) -> ::core::result::Result<
                    $crate::__bindings::handler::exports::tsunagi::connector::jobs::JobResult,
                    $crate::ConnectorError,
                > {
                    <$ty as $crate::handle::Handler>::handle(job)
                        .map($crate::handle::Outcome::into_wit)
                        .map_err(::core::convert::Into::into)
                }
            }
        };
        // The component exports exist only in wasm: natively their names (`tsunagi:connector/…`)
        // are not linkable symbols, and nothing could call them anyway.
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::handler::__export_handler!($ty with_types_in $crate::__bindings::handler);
        // Natively, referencing the glue keeps the implementation as used as it is in wasm (no
        // dead-code warnings in native test builds).
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = $crate::__bindings::handler::exports::tsunagi::connector::jobs::_export_handle_cabi::<$ty>;
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn unusable_payloads_are_permanent_and_name_the_job() {
        let job = Job {
            id: "j1".into(),
            kind: "post".into(),
            payload: "{".into(),
            ..Job::default()
        };
        let err = job.payload_json::<serde_json::Value>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(
            err.message()
                .starts_with("job j1 (post): unusable payload: ")
        );
    }

    #[test]
    fn the_job_says_its_target_and_earlier_outcome() {
        let job = Job {
            target: Some("user-7".into()),
            earlier: wit::EarlierOutcome::Unknown,
            attempt: 3,
            ..Job::default()
        };
        assert_eq!(job.target(), Some("user-7"));
        assert_eq!(job.earlier(), Earlier::Unknown);
        let failed = Job {
            earlier: wit::EarlierOutcome::Failed,
            ..Job::default()
        };
        assert_eq!(failed.earlier(), Earlier::Failed);
        assert_eq!(Job::default().target(), None);
    }

    #[test]
    fn a_skipped_outcome_keeps_its_reason_and_takes_no_reference() {
        let skipped = Outcome::skipped("came from X").reference("r").detail("d");
        assert_eq!(skipped.skipped_reason(), Some("came from X"));
        assert_eq!(skipped.reference_str(), None);
        assert_eq!(
            skipped.into_wit(),
            wit::JobResult::Skipped("came from X".into())
        );
        let done = Outcome::done().reference("r").detail("d");
        assert_eq!(done.skipped_reason(), None);
        assert_eq!(
            done.into_wit(),
            wit::JobResult::Done(wit::JobDone {
                reference: Some("r".into()),
                detail: Some("d".into()),
            })
        );
    }
}
