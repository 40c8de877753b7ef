//! Cassettes: recorded HTTP exchanges and expected results, so a plugin can be tested with no
//! network and no running host (`tsunagi plugin test`).
//!
//! A cassette is a directory:
//! - `cases.toml`: the calls to make (a poll target, a job, a search) and, optionally, the
//!   plugin's `[config]`, `[limits]` and the `[[allow]]` rules recording may reach;
//! - `interactions.toml`: request matching rules → the response to answer with;
//! - `bodies/`: response bodies the interactions name;
//! - `expected/<case>.json`: what each call must return (result or error).
//!
//! - [`replay`]: the [`crate::egress::Upstream`] that answers from the interactions.
//! - [`record`]: the one that passes requests to the network and keeps what came back.

pub mod harness;
pub mod record;
pub mod replay;

use crate::config::{AllowRule, ConfigError, LimitSettings, SourceLocator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CASES_FILE: &str = "cases.toml";
pub const INTERACTIONS_FILE: &str = "interactions.toml";
pub const BODIES_DIR: &str = "bodies";
pub const EXPECTED_DIR: &str = "expected";

/// Why a cassette cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    #[error(transparent)]
    Syntax(#[from] ConfigError),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

impl CassetteError {
    fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// `cases.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What the plugin reads through the `config` import, as in `[connectors.NAME.config]`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// The call limits, as in `[connectors.NAME.limits]`.
    #[serde(default)]
    pub limits: LimitSettings,
    /// Where `--record` may send requests, as in `[[connectors.NAME.egress.allow]]`. Replay
    /// enforces them too when present, so a plugin reaching elsewhere fails its test.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

/// One call of the plugin. Which fields apply depends on its role: `target` (and the poll
/// validators) for a poller, `job` for a handler, `query` for a searcher.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub target: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub cursor: Option<String>,
    /// Poll with the validators and cursor the previous case returned for the same target, as
    /// the host would on the next round.
    #[serde(default)]
    pub after_previous: bool,
    pub job: Option<JobInput>,
    pub query: Option<String>,
    pub limit: Option<u32>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The expected result, relative to the cassette; default `expected/<slug of name>.json`.
    pub expect: Option<PathBuf>,
}

impl Case {
    /// The expected-result file of this case.
    pub fn expected_path(&self, cassette: &Path) -> PathBuf {
        match &self.expect {
            Some(path) => cassette.join(path),
            None => cassette
                .join(EXPECTED_DIR)
                .join(format!("{}.json", slug(&self.name))),
        }
    }
}

/// A handler's job: `payload` is JSON text, or a TOML table turned into JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    pub id: Option<String>,
    pub kind: String,
    #[serde(default = "empty_payload")]
    pub payload: toml::Value,
    pub attempt: Option<u32>,
}

fn empty_payload() -> toml::Value {
    toml::Value::Table(toml::map::Map::new())
}

impl JobInput {
    pub fn payload_json(&self) -> String {
        match &self.payload {
            toml::Value::String(text) => text.clone(),
            other => serde_json::to_string(other).unwrap_or_else(|_| "{}".to_string()),
        }
    }
}

/// `interactions.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionFile {
    #[serde(default, rename = "interaction")]
    pub interactions: Vec<Interaction>,
}

/// A request rule and the response it gets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    pub request: RequestRule,
    pub response: RecordedResponse,
}

/// What a request must look like to get this interaction's response: the method, the whole
/// URL, each listed header with exactly this value, and the body containing `body_contains`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRule {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

fn default_method() -> String {
    "GET".to_string()
}

/// A response as the upstream sent it. The body is inline (`body`) or in a file under the
/// cassette (`body_file`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<PathBuf>,
}

/// One header value, or several for a repeated header.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

impl HeaderValues {
    pub fn values(&self) -> Vec<&str> {
        match self {
            Self::One(value) => vec![value.as_str()],
            Self::Many(values) => values.iter().map(String::as_str).collect(),
        }
    }
}

/// A loaded cassette.
#[derive(Debug, Clone)]
pub struct Cassette {
    pub dir: PathBuf,
    pub cases: CaseFile,
    pub interactions: InteractionFile,
}

impl Cassette {
    /// Reads `dir`; `interactions.toml` may be missing (a cassette about to be recorded). Every
    /// problem is reported with the file, line and field.
    pub fn load(dir: &Path) -> Result<Self, CassetteError> {
        if !dir.is_dir() {
            return Err(CassetteError::file(dir, "not a directory"));
        }
        let cases_path = dir.join(CASES_FILE);
        let (cases, locator): (CaseFile, _) = read_toml(&cases_path)?
            .ok_or_else(|| CassetteError::file(&cases_path, "cannot read: no such file"))?;
        validate_cases(&cases, &locator)?;
        let interactions_path = dir.join(INTERACTIONS_FILE);
        let interactions = match read_toml::<InteractionFile>(&interactions_path)? {
            Some((file, locator)) => {
                validate_interactions(dir, &file, &locator)?;
                file
            }
            None => InteractionFile::default(),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            cases,
            interactions,
        })
    }
}

fn validate_cases(file: &CaseFile, locator: &SourceLocator) -> Result<(), CassetteError> {
    if file.cases.is_empty() {
        return Err(locator
            .field_error(
                "case",
                "no [[case]]: a cassette needs at least one call to make",
            )
            .into());
    }
    for (key, value) in &file.config {
        if crate::config::config_value_text(value).is_none() {
            return Err(locator
                .field_error(
                    &format!("config.{key}"),
                    "must be a string, number or boolean",
                )
                .into());
        }
    }
    for (index, rule) in file.allow.iter().enumerate() {
        let at = |field: &str| format!("allow[{index}].{field}");
        if let Some(scheme) = &rule.scheme
            && scheme != "http"
            && scheme != "https"
        {
            return Err(locator
                .field_error(
                    &at("scheme"),
                    &format!("{scheme:?} is not \"http\" or \"https\""),
                )
                .into());
        }
        if rule.host.is_empty() {
            return Err(locator.field_error(&at("host"), "must not be empty").into());
        }
        if rule.budget.is_some() || rule.breaker.is_some() {
            return Err(locator
                .field_error(
                    &at(if rule.budget.is_some() {
                        "budget"
                    } else {
                        "breaker"
                    }),
                    "budgets and breakers are not modelled in a cassette; remove it",
                )
                .into());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, case) in file.cases.iter().enumerate() {
        let at = |field: &str| format!("case[{index}].{field}");
        if !seen.insert(slug(&case.name)) {
            return Err(locator
                .field_error(
                    &at("name"),
                    &format!(
                        "{:?}: another case has the same name (as a file name)",
                        case.name
                    ),
                )
                .into());
        }
        if let Some(path) = &case.expect {
            inside_cassette(path).map_err(|why| locator.field_error(&at("expect"), &why))?;
        }
    }
    Ok(())
}

fn validate_interactions(
    dir: &Path,
    file: &InteractionFile,
    locator: &SourceLocator,
) -> Result<(), CassetteError> {
    for (index, interaction) in file.interactions.iter().enumerate() {
        let at = |field: &str| format!("interaction[{index}].{field}");
        let fail = |field: &str, message: String| -> CassetteError {
            locator.field_error(&at(field), &message).into()
        };
        let request = &interaction.request;
        url::Url::parse(&request.url).map_err(|e| {
            fail(
                "request.url",
                format!("{:?} does not parse: {e}", request.url),
            )
        })?;
        http::Method::from_bytes(request.method.as_bytes())
            .map_err(|e| fail("request.method", e.to_string()))?;
        let response = &interaction.response;
        http::StatusCode::from_u16(response.status)
            .map_err(|e| fail("response.status", e.to_string()))?;
        for (name, values) in &response.headers {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| fail("response.headers", format!("{name:?}: {e}")))?;
            for value in values.values() {
                http::HeaderValue::from_str(value)
                    .map_err(|e| fail("response.headers", format!("{name}: {e}")))?;
            }
        }
        if let Some(body_file) = &response.body_file {
            inside_cassette(body_file).map_err(|why| fail("response.body_file", why))?;
            if !dir.join(body_file).is_file() {
                return Err(fail(
                    "response.body_file",
                    format!("{} does not exist", body_file.display()),
                ));
            }
        }
    }
    Ok(())
}

/// Paths in a cassette stay inside it: `--record` and `--update-expected` write to them.
fn inside_cassette(path: &Path) -> Result<(), String> {
    let escapes = path.components().any(|part| {
        !matches!(
            part,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if escapes {
        Err(format!(
            "{} must be a relative path inside the cassette",
            path.display()
        ))
    } else {
        Ok(())
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<(T, SourceLocator)>, CassetteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CassetteError::file(path, format!("cannot read: {e}"))),
    };
    let locator = SourceLocator::new(path, &text);
    let value = toml::from_str(&text).map_err(|e| locator.toml_error(&e))?;
    Ok(Some((value, locator)))
}

/// A case name as a file name: lower case letters, digits and dashes.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "case".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("First poll: 3 items!"), "first-poll-3-items");
        assert_eq!(slug("  "), "case");
        assert_eq!(slug("304 → not modified"), "304-not-modified");
    }

    #[test]
    fn a_bad_interaction_is_named_by_file_and_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CASES_FILE),
            "[[case]]\nname = \"one\"\ntarget = \"http://x.test/\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(INTERACTIONS_FILE),
            "[[interaction]]\nrequest.url = \"http://x.test/\"\nresponse.status = 200\n\
             [[interaction]]\nrequest.url = \"http://x.test/b\"\nresponse.status = 200\n\
             response.body_file = \"bodies/missing.xml\"\n",
        )
        .unwrap();
        let error = Cassette::load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("interactions.toml:7")
                && error.contains("interaction[1].response.body_file")
                && error.contains("bodies/missing.xml"),
            "{error}"
        );
    }

    #[test]
    fn cassette_input_is_checked_where_it_is_written() {
        let cases = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(CASES_FILE), text).unwrap();
            Cassette::load(dir.path()).unwrap_err().to_string()
        };
        let case = "[[case]]\nname = \"one\"\ntarget = \"http://x.test/\"\n";
        let error = cases(&format!("[config]\nlist = [1, 2]\n{case}"));
        assert!(
            error.contains("cases.toml:2") && error.contains("config.list"),
            "{error}"
        );
        let error = cases(&format!("{case}expect = \"../../outside.json\"\n"));
        assert!(
            error.contains("cases.toml:4") && error.contains("inside the cassette"),
            "{error}"
        );
        let error = cases(&format!(
            "[[allow]]\nhost = \"x.test\"\nbudget = \"b\"\n{case}"
        ));
        assert!(error.contains("allow[0].budget"), "{error}");
        let error = cases(&format!(
            "{case}\n[[case]]\nname = \"One!\"\ntarget = \"x\"\n"
        ));
        assert!(
            error.contains("case[1].name") && error.contains("cases.toml:6"),
            "{error}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CASES_FILE), case).unwrap();
        std::fs::write(
            dir.path().join(INTERACTIONS_FILE),
            "[[interaction]]\nrequest.url = \"http://x.test/\"\nresponse.status = 200\n\
             response.headers = { \"bad header\" = \"v\" }\n",
        )
        .unwrap();
        let error = Cassette::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("interaction[0].response.headers"), "{error}");
    }

    #[test]
    fn a_toml_error_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CASES_FILE),
            "[[case]]\nname = \"one\"\ntarget = 5\n",
        )
        .unwrap();
        let error = Cassette::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("cases.toml:3"), "{error}");
    }
}
