//! The `handler` role: queued pushes. The host hands [`Handler::handle`] one job at a time
//! (publish a post, send a message) and retries it according to the error's kind.
//!
//! Implement [`Handler`] on a unit struct and export it with
//! [`export_handler!`](crate::export_handler).

use serde::de::DeserializeOwned;

use crate::__bindings::handler::exports::tsunagi::connector::handle as wit;
use crate::item::IntoOptionalString;
use crate::{Error, Result};

#[doc(inline)]
pub use wit::{Job, JobOutcome};

/// A connector that carries out queued jobs.
pub trait Handler {
    /// Carries out `job` once. A `transient` or `rate-limited` error has the host retry it
    /// later (with `attempt` + 1); `permanent` and `bad-response` give it up.
    fn handle(job: Job) -> Result<JobOutcome>;
}

impl Job {
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

/// Builder-style setters:
///
/// ```
/// use tsunagi_sdk::JobOutcome;
///
/// let outcome = JobOutcome::done().reference("post/123").detail("posted to #general");
/// assert_eq!(outcome.reference.as_deref(), Some("post/123"));
/// ```
impl JobOutcome {
    /// A job done, with nothing to report yet.
    pub fn done() -> Self {
        Self::default()
    }

    /// Sets the upstream's id of what was created or changed.
    #[must_use]
    pub fn reference(mut self, reference: impl IntoOptionalString) -> Self {
        self.reference = reference.into_optional_string();
        self
    }

    /// Sets a short note for operators (never a secret).
    #[must_use]
    pub fn detail(mut self, detail: impl IntoOptionalString) -> Self {
        self.detail = detail.into_optional_string();
        self
    }
}

/// Exports a [`Handler`] as the component's `tsunagi:connector/handle`. Invoke it once, in the
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
///     fn handle(job: Job) -> Result<JobOutcome> {
///         let api = config::require("api-base")?;
///         let response = http::Request::post(format!("{api}/posts"))
///             .header("idempotency-key", job.id.as_str())
///             .body(job.payload.clone())
///             .send()?
///             .error_for_status()?;
///         let created: json::Value = response.json()?;
///         Ok(JobOutcome::done().reference(created["id"].as_str()))
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
            impl $crate::__bindings::handler::exports::tsunagi::connector::handle::Guest for $ty {
                fn handle(
                    job: $crate::handle::Job,
                ) -> ::core::result::Result<$crate::handle::JobOutcome, $crate::ConnectorError>
                {
                    <$ty as $crate::handle::Handler>::handle(job)
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
            let _ = $crate::__bindings::handler::exports::tsunagi::connector::handle::_export_handle_cabi::<$ty>;
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
            attempt: 1,
        };
        let err = job.payload_json::<serde_json::Value>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(
            err.message()
                .starts_with("job j1 (post): unusable payload: ")
        );
    }
}
