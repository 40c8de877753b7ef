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

use crate::config::files::{FileError, read_regular_text};
use crate::config::{AllowRule, Checks, ConfigErrors, LimitSettings, Parsed, parse_collecting};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CASES_FILE: &str = "cases.toml";
pub const INTERACTIONS_FILE: &str = "interactions.toml";
pub const BODIES_DIR: &str = "bodies";
pub const EXPECTED_DIR: &str = "expected";

/// The largest `cases.toml` or `interactions.toml` read.
pub const MAX_TOML_BYTES: u64 = 4 << 20;
/// The largest expected-result file read.
pub const MAX_EXPECTED_BYTES: u64 = 16 << 20;
/// What a searcher case may ask for at most.
pub const SEARCH_LIMIT: std::ops::RangeInclusive<u32> = 1..=10_000;

/// Why a cassette cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    /// Every error of its TOML files, each with file, line and field.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
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
    /// The expected-result file of this case, relative to the cassette.
    pub fn expected_file(&self) -> PathBuf {
        match &self.expect {
            Some(path) => path.clone(),
            None => Path::new(EXPECTED_DIR).join(format!("{}.json", slug(&self.name))),
        }
    }

    /// The expected-result file of this case.
    pub fn expected_path(&self, cassette: &Path) -> PathBuf {
        cassette.join(self.expected_file())
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
    /// The linked target the job acts for.
    pub target: Option<String>,
    /// What the host knows of earlier attempts: `none` (default), `failed` or `unknown`.
    pub earlier: Option<crate::runtime::Earlier>,
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
    /// problem of both files is reported at once, each with the file, line and field.
    pub fn load(dir: &Path) -> Result<Self, CassetteError> {
        if !dir.is_dir() {
            return Err(CassetteError::file(dir, "not a directory"));
        }
        let mut errors = Vec::new();
        let mut truncated = false;

        let cases_path = dir.join(CASES_FILE);
        let cases = read_toml::<CaseFile>(&cases_path)?
            .ok_or_else(|| CassetteError::file(&cases_path, "cannot read: no such file"))?;
        truncated |= cases.truncated;
        errors.extend(cases.errors);
        let case_file = cases.value.inspect(|file| {
            let mut checks = Checks::new(&cases.locator, &cases.refused);
            validate_cases(file, &mut checks);
            errors.extend(checks.into_errors());
        });

        let interactions_path = dir.join(INTERACTIONS_FILE);
        let interaction_file = match read_toml::<InteractionFile>(&interactions_path)? {
            Some(parsed) => {
                truncated |= parsed.truncated;
                errors.extend(parsed.errors);
                parsed.value.inspect(|file| {
                    let mut checks = Checks::new(&parsed.locator, &parsed.refused);
                    validate_interactions(dir, file, &mut checks);
                    errors.extend(checks.into_errors());
                })
            }
            None => Some(InteractionFile::default()),
        };
        if let Some(errors) = ConfigErrors::new(errors, truncated) {
            return Err(errors.into());
        }
        match (case_file, interaction_file) {
            (Some(cases), Some(interactions)) => Ok(Self {
                dir: dir.to_path_buf(),
                cases,
                interactions,
            }),
            // A file that did not deserialize always reported an error.
            _ => Err(CassetteError::file(dir, "does not hold a cassette")),
        }
    }
}

fn validate_cases(file: &CaseFile, checks: &mut Checks) {
    if file.cases.is_empty() && !checks.refused("case") {
        checks.error(
            "case",
            "no [[case]]: a cassette needs at least one call to make",
        );
    }
    crate::config::check_config_values("config", &file.config, checks);
    file.limits.check("limits", checks);
    for (index, rule) in file.allow.iter().enumerate() {
        let at = |field: &str| format!("allow[{index}].{field}");
        rule.check(&format!("allow[{index}]"), checks);
        if !rule.budget.is_empty() || rule.breaker.is_some() {
            checks.error(
                &at(if !rule.budget.is_empty() {
                    "budget"
                } else {
                    "breaker"
                }),
                "budgets and breakers are not modelled in a cassette; remove it",
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, case) in file.cases.iter().enumerate() {
        let at = |field: &str| format!("case[{index}].{field}");
        if !seen.insert(slug(&case.name)) {
            checks.error(
                &at("name"),
                format!(
                    "{:?}: another case has the same name (as a file name)",
                    case.name
                ),
            );
        }
        if let Some(path) = &case.expect
            && let Err(why) = inside_cassette(path)
        {
            checks.error(&at("expect"), why);
        }
        if let Some(limit) = case.limit {
            checks.count(&at("limit"), limit, SEARCH_LIMIT);
        }
    }
}

fn validate_interactions(dir: &Path, file: &InteractionFile, checks: &mut Checks) {
    for (index, interaction) in file.interactions.iter().enumerate() {
        let at = |field: &str| format!("interaction[{index}].{field}");
        let request = &interaction.request;
        if let Err(e) = url::Url::parse(&request.url) {
            checks.error(
                &at("request.url"),
                format!("{:?} does not parse: {e}", request.url),
            );
        }
        if let Err(e) = http::Method::from_bytes(request.method.as_bytes()) {
            checks.error(&at("request.method"), e);
        }
        let response = &interaction.response;
        if let Err(e) = http::StatusCode::from_u16(response.status) {
            checks.error(&at("response.status"), e);
        }
        for (name, values) in &response.headers {
            if let Err(e) = http::HeaderName::from_bytes(name.as_bytes()) {
                checks.error(&at("response.headers"), format!("{name:?}: {e}"));
            }
            for value in values.values() {
                if let Err(e) = http::HeaderValue::from_str(value) {
                    checks.error(&at("response.headers"), format!("{name}: {e}"));
                }
            }
        }
        if let Some(body_file) = &response.body_file {
            match path_inside(dir, body_file) {
                Err(why) => checks.error(&at("response.body_file"), why),
                Ok(path) if !path.is_file() => checks.error(
                    &at("response.body_file"),
                    format!("{} is not a file in the cassette", body_file.display()),
                ),
                Ok(_) => {}
            }
        }
    }
}

/// Paths in a cassette stay inside it: `--record` and `--update-expected` write to them.
fn inside_cassette(path: &Path) -> Result<(), String> {
    let escapes = path.as_os_str().is_empty()
        || path.components().any(|part| {
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

/// `relative` under the cassette `dir`, for reading or writing: a plain relative path whose
/// existing part, with every symlink on the way resolved, stays inside the cassette. A
/// symlink that leads out (or nowhere) is refused, so a cassette can neither read a body from
/// elsewhere nor make `--record` or `--update-expected` write elsewhere.
pub fn path_inside(dir: &Path, relative: &Path) -> Result<PathBuf, String> {
    inside_cassette(relative)?;
    let root = dir
        .canonicalize()
        .map_err(|e| format!("cassette {}: {e}", dir.display()))?;
    let joined = dir.join(relative);
    // The longest part of the path that exists now (the rest is about to be created).
    let mut existing = joined.as_path();
    while existing.symlink_metadata().is_err() {
        match existing.parent() {
            Some(parent) if parent.starts_with(dir) => existing = parent,
            _ => return Ok(joined),
        }
    }
    let leaves = match existing.canonicalize() {
        Ok(resolved) => !resolved.starts_with(&root),
        // A symlink to nothing: writing through it would create its target, wherever it is.
        Err(_) => true,
    };
    if leaves {
        return Err(format!(
            "{} leads outside the cassette (through a symlink)",
            relative.display()
        ));
    }
    Ok(joined)
}

/// Reads and parses one of the cassette's TOML files; `None` when it does not exist.
fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<Parsed<T>>, CassetteError> {
    let text = match read_regular_text(path, MAX_TOML_BYTES, "cassette file") {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(CassetteError::file(path, file_message(&e))),
    };
    Ok(Some(parse_collecting(path, &text)))
}

/// A file error without the path (which [`CassetteError::File`] names already).
fn file_message(error: &FileError) -> String {
    match error {
        FileError::Io { source, .. } => format!("cannot read: {source}"),
        FileError::NotAFile { kind, .. } => format!("not a regular file (it is {kind})"),
        FileError::TooLarge { what, cap, .. } => format!(
            "larger than the {what} limit of {}",
            bytesize::ByteSize::b(*cap)
        ),
        FileError::NotText { source, .. } => format!("not UTF-8 text: {source}"),
    }
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

    fn cassette_with(cases: &str, interactions: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CASES_FILE), cases).unwrap();
        if let Some(interactions) = interactions {
            std::fs::write(dir.path().join(INTERACTIONS_FILE), interactions).unwrap();
        }
        dir
    }

    const ONE_CASE: &str = "[[case]]\nname = \"one\"\ntarget = \"http://x.test/\"\n";

    #[test]
    fn a_body_symlinked_out_of_the_cassette_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "not for the plugin").unwrap();
        let interactions = "[[interaction]]\nrequest.url = \"http://x.test/\"\nresponse.status = 200\n\
             response.body_file = \"bodies/001.xml\"\n";
        let dir = cassette_with(ONE_CASE, Some(interactions));
        std::fs::create_dir(dir.path().join(BODIES_DIR)).unwrap();
        let body = dir.path().join(BODIES_DIR).join("001.xml");
        std::os::unix::fs::symlink(outside.path().join("secret"), &body).unwrap();
        let error = Cassette::load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("interactions.toml:4:")
                && error.contains("interaction[0].response.body_file")
                && error.contains("leads outside the cassette"),
            "{error}"
        );

        // A symlink that stays inside is fine.
        std::fs::remove_file(&body).unwrap();
        std::fs::write(dir.path().join(BODIES_DIR).join("real.xml"), "<rss/>").unwrap();
        std::os::unix::fs::symlink("real.xml", &body).unwrap();
        Cassette::load(dir.path()).unwrap();

        // So is a whole cassette reached through a symlink.
        let link = outside.path().join("cassette");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        Cassette::load(&link).unwrap();
    }

    #[test]
    fn paths_inside_refuse_symlinked_directories_and_dangling_links() {
        let outside = tempfile::tempdir().unwrap();
        let dir = cassette_with(ONE_CASE, None);
        std::os::unix::fs::symlink(outside.path(), dir.path().join(EXPECTED_DIR)).unwrap();
        let why = path_inside(dir.path(), Path::new("expected/one.json")).unwrap_err();
        assert!(why.contains("leads outside the cassette"), "{why}");
        std::os::unix::fs::symlink(
            outside.path().join("not-yet"),
            dir.path().join("dangling.json"),
        )
        .unwrap();
        assert!(path_inside(dir.path(), Path::new("dangling.json")).is_err());
        assert_eq!(
            path_inside(dir.path(), Path::new("new/dir/file.json")).unwrap(),
            dir.path().join("new/dir/file.json")
        );
        assert!(path_inside(dir.path(), Path::new("../x.json")).is_err());
        assert!(path_inside(dir.path(), Path::new("")).is_err());
    }

    #[test]
    fn cassette_limits_are_held_to_the_config_ranges() {
        let cases = format!("[limits]\nmemory = \"1 TiB\"\ncall_timeout = \"0s\"\n{ONE_CASE}");
        let dir = cassette_with(&cases, None);
        let error = Cassette::load(dir.path()).unwrap_err();
        let CassetteError::Invalid(errors) = &error else {
            panic!("{error}");
        };
        let fields: Vec<(usize, &str)> = errors
            .errors()
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![(2, "limits.memory"), (3, "limits.call_timeout")],
            "{error}"
        );
        assert!(error.to_string().contains("between 1ms and 1h"), "{error}");
    }

    #[test]
    fn every_error_of_both_files_is_reported() {
        let cases = format!("{ONE_CASE}limit = 0\nexpect = \"/etc/passwd\"\n");
        let interactions = "[[interaction]]\nrequest.url = \"not a url\"\nresponse.status = 42\n";
        let dir = cassette_with(&cases, Some(interactions));
        let error = Cassette::load(dir.path()).unwrap_err().to_string();
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines.len(), 4, "{error}");
        assert!(
            lines[0].contains("cases.toml:4:") && lines[0].contains("case[0].limit"),
            "{error}"
        );
        assert!(
            lines[1].contains("cases.toml:5:") && lines[1].contains("case[0].expect"),
            "{error}"
        );
        assert!(lines[2].contains("interactions.toml:2:"), "{error}");
        assert!(lines[3].contains("interactions.toml:3:"), "{error}");
    }

    #[test]
    fn a_cassette_file_that_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(CASES_FILE)).unwrap();
        let error = Cassette::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }
}

/// The cassette loader under the config loader's bounded fuzz: mutated cases and interaction
/// files load, or every error names its file, a real line and a field.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::config::properties::{check_errors, edits, fixed_run, mutate};
    use proptest::prelude::*;

    const CASES: &str = r#"[config]
user_agent = "t"
[limits]
call_timeout = "5s"
memory = "32 MiB"
[[allow]]
host = "x.test"
[[case]]
name = "first poll"
target = "http://x.test/feed"
[[case]]
name = "second"
target = "http://x.test/feed"
after_previous = true
[[case]]
name = "job"
job = { kind = "post", payload = { text = "hi" }, attempt = 2 }
[[case]]
name = "search"
query = "tea"
limit = 5
params = { sort = "price" }
"#;

    const INTERACTIONS: &str = r#"[[interaction]]
request.url = "http://x.test/feed"
request.headers = { "if-none-match" = ""v1"" }
response.status = 304
[[interaction]]
[interaction.request]
method = "GET"
url = "http://x.test/feed"
body_contains = "x"
[interaction.response]
status = 200
headers = { "content-type" = "application/rss+xml", link = ["<a>", "<b>"] }
body_file = "bodies/001.xml"
"#;

    fn load(cases: &str, interactions: &str) -> Result<(), TestCaseError> {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text);
        write(CASES_FILE, cases).map_err(|e| TestCaseError::fail(e.to_string()))?;
        write(INTERACTIONS_FILE, interactions).map_err(|e| TestCaseError::fail(e.to_string()))?;
        std::fs::create_dir(dir.path().join(BODIES_DIR))
            .and_then(|()| write("bodies/001.xml", "<rss/>"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        match Cassette::load(dir.path()) {
            Ok(_) => Ok(()),
            Err(CassetteError::Invalid(errors)) => {
                prop_assert_eq!(
                    errors.to_string().lines().count(),
                    errors.errors().len() + usize::from(errors.truncated())
                );
                for (name, text) in [(CASES_FILE, cases), (INTERACTIONS_FILE, interactions)] {
                    let file = dir.path().join(name).display().to_string();
                    let of_file: Vec<_> = errors
                        .errors()
                        .iter()
                        .filter(|e| e.file == file)
                        .cloned()
                        .collect();
                    if !of_file.is_empty() {
                        check_errors(text, &file, &of_file)?;
                    }
                }
                let known = errors
                    .errors()
                    .iter()
                    .all(|e| e.file.ends_with(CASES_FILE) || e.file.ends_with(INTERACTIONS_FILE));
                prop_assert!(known, "{}", errors);
                Ok(())
            }
            Err(other) => Err(TestCaseError::fail(format!("not a located error: {other}"))),
        }
    }

    #[test]
    fn the_corpus_itself_loads() {
        load(CASES, INTERACTIONS).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CASES_FILE), CASES).unwrap();
        assert_eq!(Cassette::load(dir.path()).unwrap().cases.cases.len(), 4);
    }

    proptest! {
        #![proptest_config(fixed_run(256))]

        #[test]
        fn a_mutated_cases_file_loads_or_names_each_error(edits in edits()) {
            load(&mutate(CASES, &edits), INTERACTIONS)?;
        }

        #[test]
        fn a_mutated_interactions_file_loads_or_names_each_error(edits in edits()) {
            load(CASES, &mutate(INTERACTIONS, &edits))?;
        }

        #[test]
        fn any_text_as_a_cases_file_loads_or_names_each_error(text in any::<String>()) {
            load(&text, INTERACTIONS)?;
        }
    }
}
