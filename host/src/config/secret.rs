//! Secrets named in the config: the TOML says where a secret comes from (an environment variable
//! or a file), never the secret itself, so a config file can be read, shared and checked in
//! without leaking anything. A resolved [`Secret`] never prints its value: not in `Debug`, not in
//! an error.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where a secret comes from: `{ env = "NAME" }`, `"${NAME}"`, or `{ file = "path" }` (relative to
/// the config file; its content with the trailing line break removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A secret's value. Compared in constant time; printed as `Secret(…)`.
#[derive(Clone)]
pub struct Secret(String);

/// The largest secret file read (a token or a key, not a document).
pub const MAX_SECRET_FILE: u64 = 16 * 1024;

impl Secret {
    /// For tests and for callers that got the value from a trusted place (stdin, a prompt).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it (an `Authorization` header it sends, a
    /// comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `offered` equals the secret, in time that does not depend on where they differ.
    pub fn matches(&self, offered: &str) -> bool {
        use sha2::{Digest, Sha256};
        // Comparing digests also hides the secret's length.
        let expected = Sha256::digest(self.0.as_bytes());
        let offered = Sha256::digest(offered.as_bytes());
        expected
            .iter()
            .zip(offered.iter())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a secret could not be resolved; names the source, never the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("secret file {0} is empty")]
    FileEmpty(String),
    #[error("secret file {path} is larger than {MAX_SECRET_FILE} bytes")]
    FileTooLarge { path: String },
}

impl SecretSource {
    /// Reads the secret now. `base_dir` anchors a relative file path.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, SecretError> {
        match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(value) if value.is_empty() => Err(SecretError::EnvEmpty(name.clone())),
                Ok(value) => Ok(Secret(value)),
                Err(_) => Err(SecretError::EnvUnset(name.clone())),
            },
            Self::File(path) => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    base_dir.join(path)
                };
                let shown = path.display().to_string();
                let failed = |reason: String| SecretError::File {
                    path: shown.clone(),
                    reason,
                };
                let file = std::fs::File::open(&path).map_err(|e| failed(e.to_string()))?;
                let metadata = file.metadata().map_err(|e| failed(e.to_string()))?;
                if !metadata.is_file() {
                    return Err(failed("not a regular file".into()));
                }
                let mut text = String::new();
                use std::io::Read;
                file.take(MAX_SECRET_FILE + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| failed(e.to_string()))?;
                if text.len() as u64 > MAX_SECRET_FILE {
                    return Err(SecretError::FileTooLarge { path: shown });
                }
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    return Err(SecretError::FileEmpty(shown));
                }
                Ok(Secret(value.to_string()))
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretSource;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "where the secret comes from: { env = \"NAME\" }, \"${NAME}\" or \
                     { file = \"path\" }",
                )
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<SecretSource, E> {
                match value
                    .strip_prefix("${")
                    .and_then(|rest| rest.strip_suffix('}'))
                {
                    Some(name) if is_env_name(name) => Ok(SecretSource::Env(name.to_string())),
                    // Never echo the value: it may be the secret itself.
                    _ => Err(E::custom(
                        "must name where the secret comes from ({ env = \"NAME\" }, \"${NAME}\" \
                         or { file = \"path\" }), never hold the secret itself",
                    )),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretSource, A::Error> {
                let mut source = None;
                while let Some(key) = map.next_key::<String>()? {
                    if source.is_some() {
                        return Err(serde::de::Error::custom(
                            "takes exactly one of `env` or `file`",
                        ));
                    }
                    source = Some(match key.as_str() {
                        "env" => {
                            let name: String = map.next_value()?;
                            if !is_env_name(&name) {
                                return Err(serde::de::Error::custom(format!(
                                    "{name:?} is not an environment variable name"
                                )));
                            }
                            SecretSource::Env(name)
                        }
                        "file" => SecretSource::File(map.next_value()?),
                        other => {
                            return Err(serde::de::Error::unknown_field(other, &["env", "file"]));
                        }
                    });
                }
                source.ok_or_else(|| serde::de::Error::custom("takes one of `env` or `file`"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        secret: SecretSource,
    }

    fn parse(text: &str) -> Result<SecretSource, String> {
        // The message alone, as config errors show it (the error's Display quotes the line).
        toml::from_str::<Holder>(text)
            .map(|h| h.secret)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn sources_are_read_in_every_spelling_and_a_plain_value_is_refused_without_echo() {
        assert_eq!(
            parse("secret = { env = \"TSUNAGI_T\" }"),
            Ok(SecretSource::Env("TSUNAGI_T".into()))
        );
        assert_eq!(
            parse("secret = \"${TSUNAGI_T}\""),
            Ok(SecretSource::Env("TSUNAGI_T".into()))
        );
        assert_eq!(
            parse("secret = { file = \"t.token\" }"),
            Ok(SecretSource::File("t.token".into()))
        );
        let error = parse("secret = \"hunter2-plain-token\"").unwrap_err();
        assert!(error.contains("never hold the secret itself"), "{error}");
        assert!(
            !error.contains("hunter2"),
            "the value is not echoed: {error}"
        );
        for bad in [
            "secret = { env = \"A\", file = \"b\" }",
            "secret = { url = \"x\" }",
            "secret = {}",
            "secret = { env = \"no spaces\" }",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_are_capped_trimmed_and_must_hold_something() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "s3cret\n").unwrap();
        let secret = SecretSource::File("t".into()).resolve(dir.path()).unwrap();
        assert!(secret.matches("s3cret") && !secret.matches("s3cre") && !secret.matches(""));
        assert_eq!(format!("{secret:?}"), "Secret(…)");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        assert_eq!(
            SecretSource::File("empty".into()).resolve(dir.path()).err(),
            Some(SecretError::FileEmpty(
                dir.path().join("empty").display().to_string()
            ))
        );
        std::fs::write(
            dir.path().join("big"),
            vec![b'a'; MAX_SECRET_FILE as usize + 1],
        )
        .unwrap();
        assert!(matches!(
            SecretSource::File("big".into()).resolve(dir.path()),
            Err(SecretError::FileTooLarge { .. })
        ));
        assert!(matches!(
            SecretSource::File(".".into()).resolve(dir.path()),
            Err(SecretError::File { .. })
        ));
        let unset = SecretSource::Env("TSUNAGI_SURELY_UNSET_VARIABLE".into());
        assert_eq!(
            unset.resolve(dir.path()).err(),
            Some(SecretError::EnvUnset(
                "TSUNAGI_SURELY_UNSET_VARIABLE".into()
            ))
        );
    }
}
