//! Key/value state the host keeps for the connector, durable across calls and restarts.
//!
//! Two stores: [`target()`] is private to the target (or job) of the current call and is
//! committed together with the call's results, so a call that fails leaves it unchanged;
//! [`connector()`] is shared by every target of the connector and written at once.
//!
//! ```no_run
//! use tsunagi_sdk::state;
//!
//! # fn main() -> tsunagi_sdk::Result<()> {
//! let seen: Vec<String> = state::target().get_json("seen")?.unwrap_or_default();
//! state::target().set_json("seen", &seen)?;
//! state::connector().set("token-expires", "2025-01-01T00:00:00Z");
//! # Ok(())
//! # }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::base::tsunagi::connector::state as wit;
use crate::{Error, Result};

pub use wit::Scope;

/// The state of the current call's target: committed with the call's results.
pub fn target() -> Store {
    Store::new(Scope::Target)
}

/// The state shared by every target of the connector.
pub fn connector() -> Store {
    Store::new(Scope::Connector)
}

/// One scope of the connector's state. Cheap to create; holds nothing but the scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    scope: Scope,
}

impl Store {
    /// The store for `scope` ([`target()`] and [`connector()`] are shorter).
    pub fn new(scope: Scope) -> Self {
        Self { scope }
    }

    /// Which scope this store reads and writes.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        wit::get(self.scope, key)
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: &str, value: &str) {
        wit::set(self.scope, key, value);
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        wit::delete(self.scope, key);
    }

    /// The JSON value stored under `key`, if any. A value that does not deserialize as `T`
    /// (written by an older version of the connector, say) is a `permanent` error naming the
    /// key; callers that would rather start over can treat that as `None`.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key).map(|text| decode(key, &text)).transpose()
    }

    /// Stores `value` as JSON under `key`.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let text = encode(key, value)?;
        self.set(key, &text);
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(key: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|err| Error::permanent(format!("state key {key:?} holds unusable JSON: {err}")))
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|err| Error::permanent(format!("cannot store state key {key:?} as JSON: {err}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn json_round_trips() {
        let value = vec!["a".to_owned(), "b".to_owned()];
        let text = encode("seen", &value).unwrap();
        assert_eq!(text, r#"["a","b"]"#);
        assert_eq!(decode::<Vec<String>>("seen", &text).unwrap(), value);
    }

    #[test]
    fn unusable_json_is_permanent_and_names_the_key() {
        let err = decode::<Vec<String>>("seen", "{").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(
            err.message()
                .starts_with(r#"state key "seen" holds unusable JSON: "#)
        );
    }

    #[test]
    fn unencodable_values_are_permanent() {
        // JSON object keys must be strings.
        let map = BTreeMap::from([((1, 2), "x")]);
        let err = encode("map", &map).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
    }

    #[test]
    fn stores_remember_their_scope() {
        assert_eq!(target().scope(), Scope::Target);
        assert_eq!(connector().scope(), Scope::Connector);
    }
}
