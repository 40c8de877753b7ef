//! Failures and how the host should treat them: [`Error`] is what connector code returns, the
//! export glue turns it into the WIT `connector-error`.

use std::fmt;

pub use crate::__bindings::base::tsunagi::connector::types::{ConnectorError, ErrorKind};

/// `Result` with the SDK's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed call: how the host should treat it ([`ErrorKind`]) and a message for operators.
///
/// The message ends up in the host's log and status output: name the upstream URL or field
/// that was at fault, never a secret.
///
/// ```
/// use tsunagi_sdk::{Error, ErrorKind};
///
/// let err = Error::rate_limited("HTTP 429 from https://api.example.com/posts");
/// assert_eq!(err.kind(), ErrorKind::RateLimited);
/// assert_eq!(err.to_string(), "HTTP 429 from https://api.example.com/posts");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Worth retrying later: network trouble, 5xx, a timeout.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// Retrying will not help: the target is gone, the input or the configuration is invalid.
    /// The host gives the target (or job) up at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// The upstream told us to slow down (HTTP 429). The host backs off; it never gives a
    /// target up for this.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited, message)
    }

    /// The upstream answered, but with something unusable (a malformed document, an HTML error
    /// page where JSON was expected).
    pub fn bad_response(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadResponse, message)
    }

    /// How the host should treat this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operator-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` in front of its message (`"<context>: <message>"`).
    ///
    /// ```
    /// let err = tsunagi_sdk::Error::permanent("no such user").context("@alice");
    /// assert_eq!(err.message(), "@alice: no such user");
    /// ```
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for ConnectorError {
    fn from(err: Error) -> Self {
        ConnectorError {
            kind: err.kind,
            message: err.message,
        }
    }
}

impl From<ConnectorError> for Error {
    fn from(err: ConnectorError) -> Self {
        Self {
            kind: err.kind,
            message: err.message,
        }
    }
}

/// A document that does not deserialize is the upstream's fault: `bad-response`. Use
/// [`crate::json::from_slice`] to name the document in the message.
impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::bad_response(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_the_kind() {
        assert_eq!(Error::transient("t").kind(), ErrorKind::Transient);
        assert_eq!(Error::permanent("p").kind(), ErrorKind::Permanent);
        assert_eq!(Error::rate_limited("r").kind(), ErrorKind::RateLimited);
        assert_eq!(Error::bad_response("b").kind(), ErrorKind::BadResponse);
    }

    #[test]
    fn converts_to_and_from_the_wit_error() {
        let wit: ConnectorError = Error::bad_response("broken feed").into();
        assert_eq!(
            wit,
            ConnectorError {
                kind: ErrorKind::BadResponse,
                message: "broken feed".into(),
            }
        );
        assert_eq!(Error::from(wit), Error::bad_response("broken feed"));
    }

    #[test]
    fn serde_errors_are_bad_responses() {
        let err: Error = serde_json::from_str::<u32>("\"x\"").unwrap_err().into();
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert!(err.message().contains("invalid type"), "{err}");
    }

    #[test]
    fn context_prefixes_the_message() {
        let err = Error::transient("timed out").context("https://example.com/feed");
        assert_eq!(err.to_string(), "https://example.com/feed: timed out");
        assert_eq!(err.kind(), ErrorKind::Transient);
    }

    #[test]
    fn error_kind_serializes_with_its_wit_name() {
        assert_eq!(
            serde_json::to_string(&ErrorKind::RateLimited).unwrap(),
            "\"rate-limited\""
        );
    }
}
