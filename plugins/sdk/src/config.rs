//! The connector's settings: the values of its `[connectors.NAME.config]` table in the host's
//! TOML, all strings.
//!
//! ```no_run
//! use tsunagi_sdk::config;
//!
//! # fn main() -> tsunagi_sdk::Result<()> {
//! let base = config::require("api-base")?;
//! let page_size = config::parse::<u32>("page-size")?.unwrap_or(50);
//! let lang = config::get("lang").unwrap_or_else(|| "en".to_owned());
//! # Ok(())
//! # }
//! ```

use std::fmt::Display;
use std::str::FromStr;

use crate::__bindings::base::tsunagi::connector::config as wit;
use crate::{Error, Result};

/// The value of `key`, if the table has it.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// The value of `key`; a `permanent` error naming the key when the table lacks it (the
/// connector cannot work until an operator adds it).
pub fn require(key: &str) -> Result<String> {
    get(key).ok_or_else(|| missing(key))
}

/// The value of `key` parsed as `T`, if the table has it; a `permanent` error naming the key
/// and the value when it does not parse.
pub fn parse<T>(key: &str) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    get(key).map(|value| parse_value(key, &value)).transpose()
}

/// The error for a missing required key.
fn missing(key: &str) -> Error {
    Error::permanent(format!(
        "missing config key {key:?} in [connectors.NAME.config]"
    ))
}

/// `value` of `key` parsed as `T`.
fn parse_value<T>(key: &str, value: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|err| {
        Error::permanent(format!(
            "invalid value {value:?} for config key {key:?}: {err}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn missing_key_is_permanent_and_named() {
        let err = missing("token");
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert_eq!(
            err.message(),
            r#"missing config key "token" in [connectors.NAME.config]"#
        );
    }

    #[test]
    fn values_parse_or_name_key_and_value() {
        assert_eq!(parse_value::<u32>("limit", "25").unwrap(), 25);
        assert!(parse_value::<bool>("verbose", "true").unwrap());
        let err = parse_value::<u32>("limit", "many").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert_eq!(
            err.message(),
            r#"invalid value "many" for config key "limit": invalid digit found in string"#
        );
    }
}
