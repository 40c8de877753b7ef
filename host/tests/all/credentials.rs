//! Credentials held by the host, end to end: the `tsunagi` binary links users' tokens from a
//! file and from stdin (never argv), runs hostile connectors whose requests the host signs or
//! decorates for each call's target against a loopback server that checks every signature,
//! refuses a request the target's token has no scope for before it leaves (parked, as a
//! policy refusal), unlinks a user (tokens forgotten, items purged when the TOML asks) and
//! re-seals the tokens after a key rotation. Then no secret is found in the debug log,
//! `/status`, stored items and errors, the CLI's output or the database file.

use crate::common::*;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tsunagi::backends::ItemQuery;
use tsunagi::credentials::oauth1;

const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");

const CONSUMER_KEY: &str = "ck-SECRET-consumer-key";
const CONSUMER_SECRET: &str = "cs-SECRET-consumer";
const BEARER: &str = "bearer-SECRET-app";
const API_KEY: &str = "apikey-SECRET-value";
const ALICE_TOKEN: &str = "alice-SECRET-token";
const ALICE_SECRET: &str = "alice-SECRET-token-secret";
const BOB_TOKEN: &str = "bob-SECRET-token";
const BOB_SECRET: &str = "bob-SECRET-token-secret";
const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// What the upstream saw: per path, whether each request carried the right credential.
#[derive(Clone, Default)]
struct Upstream {
    port: u16,
    verdicts: Arc<Mutex<Vec<(String, bool)>>>,
}

/// Checks an OAuth 1.0a `Authorization` header against the request, as X does.
fn oauth1_valid(port: u16, request: &Request) -> bool {
    let Some(header) = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(fields) = header.strip_prefix("OAuth ") else {
        return false;
    };
    let mut params = BTreeMap::new();
    for field in fields.split(", ") {
        let Some((name, quoted)) = field.split_once('=') else {
            return false;
        };
        let value = percent_encoding::percent_decode_str(quoted.trim_matches('"'))
            .decode_utf8_lossy()
            .into_owned();
        params.insert(name.to_string(), value);
    }
    let Some(signature) = params.remove("oauth_signature") else {
        return false;
    };
    let secret = match params.get("oauth_token").map(String::as_str) {
        Some(ALICE_TOKEN) => ALICE_SECRET,
        Some(BOB_TOKEN) => BOB_SECRET,
        _ => return false,
    };
    if params.get("oauth_consumer_key").map(String::as_str) != Some(CONSUMER_KEY) {
        return false;
    }
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}{}", request.uri())).unwrap();
    let protocol: Vec<(String, String)> = params.into_iter().collect();
    let base = oauth1::signature_base_string(request.method().as_str(), &url, None, &protocol);
    oauth1::hmac_sha1_signature(&base, CONSUMER_SECRET, secret) == signature
}

async fn check(State(upstream): State<Upstream>, request: Request) -> StatusCode {
    let path = request.uri().path().to_string();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let valid = if path.starts_with("/bearer") {
        header("authorization") == Some(format!("Bearer {BEARER}"))
    } else if path.starts_with("/key") {
        let query = request.uri().query().unwrap_or_default().to_string();
        url::form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name == "apikey" && value == API_KEY)
            && header("authorization").is_none()
    } else {
        oauth1_valid(upstream.port, &request)
    };
    if let Ok(mut verdicts) = upstream.verdicts.lock() {
        verdicts.push((path, valid));
    }
    if valid {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn start_upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = Upstream {
        port: listener.local_addr().unwrap().port(),
        ..Upstream::default()
    };
    let app = axum::Router::new()
        .fallback(check)
        .with_state(upstream.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    upstream
}

fn connector(name: &str, port: u16, credential: &str, extra_rule: &str, extra: &str) -> String {
    format!(
        r#"
[connectors.{name}]
plugin = "{plugin}"
role = "poller"
concurrency = 2
{extra}

[connectors.{name}.config]
mode = "http"

# Soon, so that a call that failed only because the machine was slow is tried again (carol,
# who has no token, fails every time, and never leaves the host).
[connectors.{name}.retry]
first_delay = "1s"

[[connectors.{name}.egress.allow]]
scheme = "http"
host = "127.0.0.1"
port = {port}
credential = "{credential}"
{extra_rule}
"#,
        plugin = plugin("hostile").display()
    )
}

fn config_text(port: u16, admin_port: u16, keys: &str) -> String {
    host_section(&format!(
        "admin_listen = \"127.0.0.1:{admin_port}\"\n{keys}"
    )) + r#"
[credentials.x-app]
kind = "oauth1"
consumer_key = { file = "consumer_key" }
consumer_secret = { file = "consumer_secret" }

[credentials.app-bearer]
kind = "bearer"
token = { file = "bearer" }

[credentials.app-key]
kind = "api-key"
key = { file = "api_key" }
query = "apikey"
"# + &connector("signed", port, "x-app", "", "purge_items_on_unlink = true")
        + &connector("writer", port, "x-app", "scope = \"write\"", "")
        + &connector("bearer", port, "app-bearer", "", "")
        + &connector("keyed", port, "app-key", "", "")
}

fn tsunagi(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("TSUNAGI_LOG", "debug")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs a one-shot command; answers (stdout, stderr), failing the test on a non-zero exit.
async fn run(args: &[&str], stdin: Option<&str>) -> (String, String) {
    let mut command = tsunagi(args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("spawn tsunagi");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(text.as_bytes()).await.unwrap();
        drop(input);
    }
    let output = child.wait_with_output().await.unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "{args:?}: {out}\n{err}");
    (out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_signed_for_their_target_scopes_refused_and_no_secret_is_kept_anywhere() {
    let upstream = start_upstream().await;
    let port = upstream.port;
    let dir = tempfile::tempdir().unwrap();
    for (file, value) in [
        ("consumer_key", CONSUMER_KEY),
        ("consumer_secret", CONSUMER_SECRET),
        ("bearer", BEARER),
        ("api_key", API_KEY),
        ("key_a", KEY_A),
        ("key_b", KEY_B),
    ] {
        std::fs::write(dir.path().join(file), value).unwrap();
    }
    let admin_port = free_port();
    let config = write_config(
        dir.path(),
        &config_text(port, admin_port, "token_key = { file = \"key_a\" }"),
    );
    let config_arg = config.source_path.display().to_string();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let (alice, bob, carol) = (
        url("/oauth1/alice"),
        url("/oauth1/bob"),
        url("/oauth1/carol"),
    );

    // Linking: from a file, and from stdin; the CLI never takes tokens as arguments.
    let tokens_file = dir.path().join("alice.json");
    std::fs::write(
        &tokens_file,
        format!(
            r#"{{"token": "{ALICE_TOKEN}", "token_secret": "{ALICE_SECRET}", "scopes": ["read"]}}"#
        ),
    )
    .unwrap();
    let tokens_arg = tokens_file.display().to_string();
    let mut printed = Vec::new();
    printed.push(
        run(
            &[
                "targets",
                "add",
                "signed",
                &alice,
                "--tokens-file",
                &tokens_arg,
                "--config",
                &config_arg,
            ],
            None,
        )
        .await,
    );
    let bob_tokens = format!(
        r#"{{"token": "{BOB_TOKEN}", "token_secret": "{BOB_SECRET}", "scopes": ["read"]}}"#
    );
    printed.push(
        run(
            &[
                "targets",
                "add",
                "writer",
                &bob,
                "--tokens",
                "-",
                "--config",
                &config_arg,
            ],
            Some(&bob_tokens),
        )
        .await,
    );
    assert!(
        printed[1].0.contains("linked") && printed[1].0.contains("scopes: read"),
        "{printed:?}"
    );
    let backend = open_backend(&config).await;
    backend
        .add_targets("signed", std::slice::from_ref(&carol), 0)
        .await
        .unwrap();
    backend
        .add_targets("bearer", &[url("/bearer")], 0)
        .await
        .unwrap();
    backend
        .add_targets("keyed", &[url("/key?page=1&apikey=plugin-guess")], 0)
        .await
        .unwrap();

    let mut host = tsunagi(&["run", "--config", &config_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tsunagi run");
    // Read as it comes: a debug log left in a full pipe would block the host mid-write.
    let mut stderr = host.stderr.take().expect("piped stderr");
    let log_reader = tokio::spawn(async move {
        let mut log = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut log).await;
        String::from_utf8_lossy(&log).into_owned()
    });
    // Three items (alice, bearer, keyed), carol failing, bob parked.
    let mut last_seen = String::new();
    let settled = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let items = backend.count_items(None).await.unwrap();
            let bob_parked = backend.count_refused("writer").await.unwrap() == 1;
            let carol = backend.get_target("signed", &carol).await.unwrap().unwrap();
            if items >= 3 && bob_parked && carol.error_count >= 1 {
                break;
            }
            last_seen = format!("items {items}, bob parked {bob_parked}, carol {carol:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if settled.is_err() {
        signal_term(&host);
        let _ = host.wait().await;
        let log = log_reader.await.unwrap_or_default();
        let tail: String = log
            .chars()
            .rev()
            .take(6000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!("the host did not settle ({last_seen}):\n{tail}");
    }
    let status = fetch_status(format!("127.0.0.1:{admin_port}")).await;
    signal_term(&host);
    tokio::time::timeout(Duration::from_secs(60), host.wait())
        .await
        .expect("exits in time")
        .unwrap();
    let log = log_reader.await.expect("the log reader");

    let items = backend
        .list_items(&ItemQuery {
            limit: 100,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    let titles: BTreeMap<String, Option<String>> = items
        .iter()
        .map(|i| (i.connector.clone(), i.item.title.clone()))
        .collect();
    for connector in ["signed", "bearer", "keyed"] {
        assert_eq!(
            titles.get(connector),
            Some(&Some("200".to_string())),
            "{connector}: the upstream accepted its credential: {titles:?}"
        );
    }
    let verdicts = upstream.verdicts.lock().unwrap().clone();
    assert!(
        verdicts.iter().all(|(_, valid)| *valid),
        "every request arrived signed: {verdicts:?}"
    );
    assert!(
        !verdicts
            .iter()
            .any(|(path, _)| path.contains("bob") || path.contains("carol")),
        "the refused and the unlinked requests never left the host: {verdicts:?}"
    );

    let bob_target = backend.get_target("writer", &bob).await.unwrap().unwrap();
    let reason = bob_target.refused_reason.clone().unwrap_or_default();
    for part in [
        "credential 'x-app'",
        "lacks the 'write' scope",
        "/oauth1/bob",
        "grants: read",
    ] {
        assert!(reason.contains(part), "{part}: {reason}");
    }
    assert_eq!(bob_target.error_count, 0, "a policy refusal is no failure");
    let carol_target = backend.get_target("signed", &carol).await.unwrap().unwrap();
    let carol_error = carol_target.last_error.clone().unwrap_or_default();
    assert!(
        carol_error.contains("credential 'x-app'") && carol_error.contains("has no linked token"),
        "{carol_error}"
    );

    // Unlinking alice: her tokens go, and her items (purge_items_on_unlink).
    printed.push(
        run(
            &[
                "targets",
                "remove",
                "signed",
                &alice,
                "--config",
                &config_arg,
            ],
            None,
        )
        .await,
    );
    assert!(backend.get_token("x-app", &alice).await.unwrap().is_none());
    assert!(
        backend.get_token("x-app", &bob).await.unwrap().is_some(),
        "bob stays linked"
    );
    let left = backend
        .list_items(&ItemQuery {
            connector: Some("signed".into()),
            limit: 10,
            ..ItemQuery::default()
        })
        .await
        .unwrap();
    assert!(left.is_empty(), "alice's items were purged: {left:?}");

    // Key rotation: B current, A previous; rekey re-seals bob's token; B alone then opens it.
    write_config(
        dir.path(),
        &config_text(
            port,
            admin_port,
            "token_key = { file = \"key_b\" }\ntoken_key_previous = { file = \"key_a\" }",
        ),
    );
    let (rekeyed, _) = run(&["tokens", "rekey", "--config", &config_arg], None).await;
    assert!(rekeyed.contains("1 re-sealed"), "{rekeyed}");
    let sealed = backend.get_token("x-app", &bob).await.unwrap().unwrap();
    printed.push((rekeyed, String::new()));
    printed.push(run(&["targets", "list", "--config", &config_arg], None).await);

    let stored_items =
        serde_json::to_string(&items.iter().map(|i| &i.item).collect::<Vec<_>>()).unwrap();
    let mut stored_errors = String::new();
    for connector in ["signed", "writer", "bearer", "keyed"] {
        for target in backend.list_targets(Some(connector), 0, 100).await.unwrap() {
            stored_errors.push_str(&format!(
                "{:?} {:?} {:?}\n",
                target.last_error, target.history, target.refused_reason
            ));
        }
    }
    drop(backend);
    let mut database = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("test.db"))
        {
            database.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!database.is_empty());
    assert!(
        database
            .windows(sealed.ciphertext.len())
            .any(|w| w == sealed.ciphertext.as_slice()),
        "the grep reads the real file (it finds the sealed token)"
    );
    let database = String::from_utf8_lossy(&database).into_owned();
    assert!(log.contains("/oauth1/"), "the debug log was captured");
    let places = [
        ("log".to_string(), log),
        ("status".to_string(), status.to_string()),
        ("stored items".to_string(), stored_items),
        ("stored errors".to_string(), stored_errors),
        ("database file".to_string(), database),
    ]
    .into_iter()
    .chain(
        printed
            .into_iter()
            .map(|(out, err)| ("CLI output".to_string(), out + &err)),
    );
    for (place, text) in places {
        for secret in [
            CONSUMER_KEY,
            CONSUMER_SECRET,
            BEARER,
            API_KEY,
            ALICE_TOKEN,
            ALICE_SECRET,
            BOB_TOKEN,
            BOB_SECRET,
            KEY_A,
            KEY_B,
        ] {
            assert!(!text.contains(secret), "{secret} in the {place}");
        }
        assert!(!text.contains("SECRET"), "a secret in the {place}");
    }
}

fn signal_term(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}
