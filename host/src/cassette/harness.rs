//! Runs a plugin's cases against a cassette, through the host's own runtime and egress path
//! (sandbox, limits, allowlist), and compares each result with the expected one. With
//! `record`, requests go to the real upstreams instead and the cassette is rewritten.

use super::record::{Recorder, write_interactions};
use super::replay::Replay;
use super::{Case, Cassette};
use crate::clock::SystemClock;
use crate::config::files::read_regular_text;
use crate::config::{Config, Role, config_texts};
use crate::egress::{EgressError, EgressLimits, EgressPolicy, Network, Upstream};
use crate::resilience::Resilience;
use crate::runtime::{
    CallError, CallReport, ConnectorServices, Engine, EngineSettings, HandleRequest, HandleResult,
    InstancePool, LoadError, PoolSettings, SearchQuery, TargetCall,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How many differences a failed case lists before it stops.
const MAX_DIFFERENCES: usize = 12;

/// What went wrong before any case could run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The harness's own scratch state store or resilience could not be set up.
    #[error("cannot set up the test host: {0}")]
    Setup(String),
    #[error("{path}: {message}")]
    Cassette { path: PathBuf, message: String },
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    pub passed: bool,
    /// One line: item count, or the error the plugin returned.
    pub summary: String,
    /// Why it failed: differences from the expected result, requests no interaction matched.
    pub problems: Vec<String>,
    pub exchanges: usize,
    pub elapsed: Duration,
}

/// The outcome of a whole cassette.
#[derive(Debug, Clone)]
pub struct HarnessReport {
    pub role: Role,
    pub cases: Vec<CaseReport>,
    /// Interactions no request used (replay only).
    pub unused: Vec<String>,
}

impl HarnessReport {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|case| case.passed)
    }
}

/// Where compiled code is cached between runs, so testing a large component (a JavaScript or
/// Python runtime) compiles it once.
pub fn default_compile_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TSUNAGI_COMPILE_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("tsunagi").join("compiled"))
}

/// What a run does with the upstream and the expected results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer from the interactions; compare with the expected results.
    Replay,
    /// Answer from the interactions; write the results as the expected ones (after a change
    /// the author has checked).
    UpdateExpected,
    /// Send to the real upstreams; write interactions and expected results.
    Record,
}

/// Runs every case of `cassette` against the component at `plugin`.
pub async fn run(
    plugin: &Path,
    cassette: &Cassette,
    mode: Mode,
    compile_cache: Option<PathBuf>,
) -> Result<HarnessReport, HarnessError> {
    let record = mode == Mode::Record;
    let file = &cassette.cases;
    let limits = &file.limits;
    let engine = Engine::new(&EngineSettings {
        max_instances: 4,
        max_memory_bytes: limits.memory.as_u64(),
        compile_cache,
        ..EngineSettings::default()
    })?;
    let loader = engine.clone();
    let path = plugin.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || loader.load_any_role(&path))
        .await
        .map_err(|e| LoadError::Engine(format!("loading panicked: {e}")))??;
    let role = loaded.role;
    let name = plugin
        .file_stem()
        .map_or("plugin".to_string(), |s| s.to_string_lossy().into_owned());

    if record && file.allow.is_empty() {
        return Err(HarnessError::Cassette {
            path: cassette.dir.join(super::CASES_FILE),
            message: "recording needs [[allow]] rules naming the upstreams it may reach \
                      (same fields as [[connectors.NAME.egress.allow]])"
                .to_string(),
        });
    }
    let policy = Arc::new(if file.allow.is_empty() {
        // Replay reaches nothing real, so every URL may be tried against the interactions.
        EgressPolicy::replay_only(&name)
    } else {
        EgressPolicy::new(&name, file.allow.clone())
    });
    let egress_limits = EgressLimits::from(limits);
    let replay = Arc::new(Replay::new(&cassette.dir, &cassette.interactions));
    let recorder = if record {
        let network = Network::new(&policy, &egress_limits, 1)?;
        Some(Arc::new(Recorder::new(Arc::new(network))))
    } else {
        None
    };
    let upstream: Arc<dyn Upstream> = match &recorder {
        Some(recorder) => recorder.clone(),
        None => replay.clone(),
    };

    let scratch =
        tempfile::tempdir().map_err(|e| HarnessError::Setup(format!("scratch directory: {e}")))?;
    let backend = tsunagi_backends::open(&format!(
        "sqlite://{}",
        scratch.path().join("state.db").display()
    ))
    .await
    .map_err(|e| HarnessError::Setup(format!("scratch state store: {e}")))?;
    let services = Arc::new(ConnectorServices {
        connector: name.clone(),
        config: config_texts(&file.config),
        state: backend,
        rankings: crate::runtime::RankingAccess::default(),
    });
    let resilience = Resilience::in_process(&Config::default(), Arc::new(SystemClock))
        .map_err(|e| HarnessError::Setup(e.to_string()))?;
    let connector = InstancePool::new(
        engine,
        loaded,
        services,
        policy,
        resilience,
        PoolSettings::new(1, 1000, limits),
        upstream,
    );

    let mut session = Session::default();
    let mut reports = Vec::new();
    for case in &file.cases {
        let report = match session.call(&connector, role, case).await {
            Err(problem) => CaseReport {
                name: case.name.clone(),
                passed: false,
                summary: "not run".to_string(),
                problems: vec![problem],
                exchanges: 0,
                elapsed: Duration::ZERO,
            },
            Ok(call) => judge(cassette, case, call, mode, replay.take_unmatched()),
        };
        reports.push(report);
    }

    if let Some(recorder) = recorder {
        write_interactions(&cassette.dir, &recorder.take()).map_err(|e| {
            HarnessError::Cassette {
                path: cassette.dir.clone(),
                message: e.to_string(),
            }
        })?;
    }
    Ok(HarnessReport {
        role,
        cases: reports,
        unused: if record { Vec::new() } else { replay.unused() },
    })
}

/// A case's call: the result as JSON, how many exchanges it made, how long it took.
struct Call {
    actual: Value,
    summary: String,
    exchanges: usize,
    /// Exchanges that failed before any answer (refused, timed out): a recording cannot replay
    /// them.
    unanswered: Vec<String>,
    elapsed: Duration,
}

/// What carries over from case to case: each target's state and last poll validators.
#[derive(Default)]
struct Session {
    state: HashMap<String, HashMap<String, String>>,
    last_poll: HashMap<String, Validators>,
}

/// What the next poll of a target sends: etag, last-modified, cursor.
type Validators = (Option<String>, Option<String>, Option<String>);

impl Session {
    async fn call(
        &mut self,
        connector: &InstancePool,
        role: Role,
        case: &Case,
    ) -> Result<Call, String> {
        let needs = |field: &str| format!("a {role} case needs `{field}`");
        match role {
            Role::Poller => {
                let target = case.target.clone().ok_or_else(|| needs("target"))?;
                let (etag, last_modified, cursor) = if case.after_previous {
                    self.last_poll.get(&target).cloned().unwrap_or_default()
                } else {
                    (
                        case.etag.clone(),
                        case.last_modified.clone(),
                        case.cursor.clone(),
                    )
                };
                let outcome = connector
                    .poll(self.target_call(&target), etag, last_modified, cursor)
                    .await;
                if let Ok(result) = &outcome.result {
                    // As the host commits a poll: a 304 keeps the validators that earned it, and
                    // a cursor stays until the plugin returns a new one.
                    let previous = self.last_poll.get(&target).cloned().unwrap_or_default();
                    let kept = |new: &Option<String>, old: Option<String>| {
                        new.clone().or(if result.not_modified { old } else { None })
                    };
                    self.last_poll.insert(
                        target.clone(),
                        (
                            kept(&result.etag, previous.0),
                            kept(&result.last_modified, previous.1),
                            result.cursor.clone().or(previous.2),
                        ),
                    );
                }
                Ok(self.finish(&target, outcome, |result| {
                    let summary = if result.not_modified {
                        "not modified".to_string()
                    } else {
                        format!("{} item(s)", result.items.len())
                    };
                    let value = json!({
                        "not_modified": result.not_modified,
                        "items": result.items,
                        "etag": result.etag,
                        "last_modified": result.last_modified,
                        "cursor": result.cursor,
                        "refresh_after_seconds": result.refresh_after.map(|d| d.as_secs()),
                    });
                    (value, summary)
                }))
            }
            Role::Handler => {
                let job = case.job.clone().ok_or_else(|| needs("job"))?;
                let id = job.id.clone().unwrap_or_else(|| super::slug(&case.name));
                // Target state is private to the job, as in the host.
                let target = format!("job:{id}");
                let request = HandleRequest {
                    id,
                    kind: job.kind.clone(),
                    payload: job.payload_json(),
                    attempt: job.attempt.unwrap_or(1),
                    target: job.target.clone(),
                    earlier: job.earlier.unwrap_or_default(),
                };
                let outcome = connector.handle(self.target_call(&target), request).await;
                Ok(self.finish(&target, outcome, |result| {
                    let summary = match result {
                        HandleResult::Done {
                            reference: Some(reference),
                            ..
                        } => format!("done, reference {reference}"),
                        HandleResult::Done { .. } => "done".to_string(),
                        HandleResult::Skipped { skipped } => format!("skipped: {skipped}"),
                    };
                    (json!(result), summary)
                }))
            }
            Role::Searcher => {
                let query = case.query.clone().ok_or_else(|| needs("query"))?;
                let target = format!("search:{query}");
                let request = SearchQuery {
                    query,
                    limit: case.limit.unwrap_or(10),
                    cursor: case.cursor.clone(),
                    params: case
                        .params
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                };
                let outcome = connector.search(self.target_call(&target), request).await;
                Ok(self.finish(&target, outcome, |result| {
                    let value = json!({
                        "items": result.items,
                        "next_cursor": result.next_cursor,
                        "total": result.total,
                    });
                    (value, format!("{} item(s)", result.items.len()))
                }))
            }
        }
    }

    fn target_call(&self, target: &str) -> TargetCall {
        TargetCall::with_state(target, self.state.get(target).cloned().unwrap_or_default())
    }

    /// Commits the call's state writes, as the host would after a successful call, and turns the
    /// result into JSON.
    fn finish<T>(
        &mut self,
        target: &str,
        outcome: CallReport<T>,
        describe: impl FnOnce(&T) -> (Value, String),
    ) -> Call {
        let (actual, summary) = match &outcome.result {
            Ok(result) => {
                let state = self.state.entry(target.to_string()).or_default();
                for (key, value) in &outcome.state_writes {
                    match value {
                        Some(value) => state.insert(key.clone(), value.clone()),
                        None => state.remove(key),
                    };
                }
                describe(result)
            }
            Err(error) => (
                json!({ "error": { "kind": error_kind(error), "message": error_message(error) } }),
                format!("error: {error}"),
            ),
        };
        Call {
            actual,
            summary,
            exchanges: outcome.exchanges.len(),
            unanswered: outcome
                .exchanges
                .iter()
                .filter(|exchange| exchange.status.is_none())
                .map(|exchange| {
                    format!(
                        "{}: {}",
                        exchange.url,
                        exchange.error.as_deref().unwrap_or("no answer")
                    )
                })
                .collect(),
            elapsed: outcome.elapsed,
        }
    }
}

/// The error kind as the WIT spells it, or what the host saw instead of a plugin error.
fn error_kind(error: &CallError) -> &'static str {
    use crate::runtime::FailureKind;
    match error {
        CallError::Connector { kind, .. } => match kind {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
            FailureKind::RateLimited => "rate-limited",
            FailureKind::BadResponse => "bad-response",
        },
        CallError::Trap(_) => "trap",
        CallError::Timeout(_) => "timeout",
        CallError::MemoryLimit(_) => "memory-limit",
        CallError::Limit(_) => "limit",
        CallError::Instantiate(_) => "instantiate",
        CallError::HostService(_) => "host",
    }
}

fn error_message(error: &CallError) -> String {
    match error {
        CallError::Connector { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Compares a call with its expected result (or, recording, writes it as the expected result).
fn judge(
    cassette: &Cassette,
    case: &Case,
    call: Call,
    mode: Mode,
    unmatched: Vec<String>,
) -> CaseReport {
    let mut problems: Vec<String> = unmatched
        .into_iter()
        .map(|request| format!("no interaction matches {request}"))
        .collect();
    if mode == Mode::Record {
        problems.extend(call.unanswered.iter().map(|failure| {
            format!("not recorded, no answer came: {failure} (a replay could not find it)")
        }));
    }
    match super::path_inside(&cassette.dir, &case.expected_file()) {
        Err(why) => problems.push(format!("expected result: {why}")),
        Ok(path) if mode != Mode::Replay => {
            let text = serde_json::to_string_pretty(&call.actual).unwrap_or_default() + "\n";
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, text));
            if let Err(e) = written {
                problems.push(format!("cannot write {}: {e}", path.display()));
            }
        }
        Ok(path) => match read_regular_text(&path, super::MAX_EXPECTED_BYTES, "expected result") {
            Err(e) if e.is_not_found() => problems.push(format!(
                "no expected result at {}; write it, or run with --record",
                path.display()
            )),
            Err(e) => problems.push(e.to_string()),
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Err(e) => problems.push(format!("{}: not JSON: {e}", path.display())),
                Ok(expected) => differences(&expected, &call.actual, "", &mut problems),
            },
        },
    }
    CaseReport {
        name: case.name.clone(),
        passed: problems.is_empty(),
        summary: call.summary,
        problems,
        exchanges: call.exchanges,
        elapsed: call.elapsed,
    }
}

/// Lists where `actual` differs from `expected`, by JSON path, up to [`MAX_DIFFERENCES`].
fn differences(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    if out.len() >= MAX_DIFFERENCES || expected == actual {
        return;
    }
    let at = if path.is_empty() { "(result)" } else { path };
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            let mut keys: Vec<&String> = want.keys().chain(got.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                differences(
                    want.get(key).unwrap_or(&Value::Null),
                    got.get(key).unwrap_or(&Value::Null),
                    &child,
                    out,
                );
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                out.push(format!(
                    "{at}: expected {} element(s), got {}",
                    want.len(),
                    got.len()
                ));
            }
            for (index, (w, g)) in want.iter().zip(got).enumerate() {
                differences(w, g, &format!("{path}[{index}]"), out);
            }
        }
        _ => out.push(format!("{at}: expected {expected}, got {actual}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_path() {
        let expected = json!({"items": [{"id": "1", "title": "A"}, {"id": "2"}], "etag": "x"});
        let actual = json!({"items": [{"id": "1", "title": "B"}], "etag": "x", "cursor": "c"});
        let mut out = Vec::new();
        differences(&expected, &actual, "", &mut out);
        assert_eq!(
            out,
            vec![
                "cursor: expected null, got \"c\"".to_string(),
                "items: expected 2 element(s), got 1".to_string(),
                "items[0].title: expected \"A\", got \"B\"".to_string(),
            ]
        );
        let mut none = Vec::new();
        differences(&expected, &expected, "", &mut none);
        assert!(none.is_empty());
    }
    fn call_returning(actual: Value) -> Call {
        Call {
            actual,
            summary: "0 item(s)".to_string(),
            exchanges: 0,
            unanswered: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn update_expected_does_not_write_through_a_symlink_out_of_the_cassette() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(super::super::CASES_FILE),
            "[[case]]\nname = \"one\"\ntarget = \"http://x.test/\"\n",
        )
        .unwrap();
        let cassette = Cassette::load(dir.path()).unwrap();
        let case = &cassette.cases.cases[0];
        std::os::unix::fs::symlink(outside.path(), dir.path().join(super::super::EXPECTED_DIR))
            .unwrap();

        let report = judge(
            &cassette,
            case,
            call_returning(json!({"items": []})),
            Mode::UpdateExpected,
            Vec::new(),
        );
        assert!(!report.passed);
        assert!(
            report.problems[0].contains("leads outside the cassette"),
            "{:?}",
            report.problems
        );
        assert!(
            !outside.path().join("one.json").exists(),
            "nothing was written outside"
        );

        // Replay refuses to read through it too.
        std::fs::write(outside.path().join("one.json"), "{\"items\": []}").unwrap();
        let report = judge(
            &cassette,
            case,
            call_returning(json!({"items": []})),
            Mode::Replay,
            Vec::new(),
        );
        assert!(!report.passed, "{:?}", report.problems);

        // A real directory is written and read back.
        std::fs::remove_file(dir.path().join(super::super::EXPECTED_DIR)).unwrap();
        let report = judge(
            &cassette,
            case,
            call_returning(json!({"items": []})),
            Mode::UpdateExpected,
            Vec::new(),
        );
        assert!(report.passed, "{:?}", report.problems);
        let report = judge(
            &cassette,
            case,
            call_returning(json!({"items": []})),
            Mode::Replay,
            Vec::new(),
        );
        assert!(report.passed, "{:?}", report.problems);
    }
}
