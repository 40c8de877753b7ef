//! JSON from upstreams: serde_json with errors that are `bad-response` and name the document
//! they came from, so an operator can tell which upstream sent garbage.
//!
//! ```
//! use tsunagi_sdk::json;
//!
//! let value: json::Value = json::from_str(r#"{"items": []}"#, "https://example.com/feed.json")?;
//! assert!(value["items"].is_array());
//!
//! let err = json::from_str::<json::Value>("<html>", "https://example.com/feed.json").unwrap_err();
//! assert_eq!(err.kind(), tsunagi_sdk::ErrorKind::BadResponse);
//! assert!(err.message().starts_with("https://example.com/feed.json: "));
//! # Ok::<(), tsunagi_sdk::Error>(())
//! ```

use std::fmt::Display;

use serde::de::DeserializeOwned;

use crate::{Error, Result};

pub use serde_json::{Map, Number, Value};

/// Deserializes `bytes`; on failure a `bad-response` error `"<context>: <reason>"`, where
/// `context` names the document (usually its URL).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], context: impl Display) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::bad_response(format!("{context}: {err}")))
}

/// Deserializes `text`; on failure a `bad-response` error `"<context>: <reason>"`.
pub fn from_str<T: DeserializeOwned>(text: &str, context: impl Display) -> Result<T> {
    serde_json::from_str(text).map_err(|err| Error::bad_response(format!("{context}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn errors_are_bad_responses_with_context() {
        let err = from_slice::<Value>(b"{", "https://example.com/api").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert_eq!(
            err.message(),
            "https://example.com/api: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn typed_documents_deserialize() {
        let ids: Vec<u32> = from_str("[1, 2, 3]", "ids").unwrap();
        assert_eq!(ids, [1, 2, 3]);
    }
}
