use super::*;
use crate::clock::{Clock, ManualClock};
use std::sync::atomic::{AtomicUsize, Ordering};
use tsunagi_backends::Millis;
use tsunagi_backends::sqlite::SqliteBackend;

const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEY_B: &str = "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI="; // 32 × 0x22, base64
const NOW: Millis = 1_700_000_000_000;

struct World {
    dir: tempfile::TempDir,
    store: Arc<SqliteBackend>,
    clock: Arc<ManualClock>,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, value) in [
            ("key_a", KEY_A),
            ("key_b", KEY_B),
            ("consumer_key", "ck-visible"),
            ("consumer_secret", "cs-SECRET-1"),
            ("bearer", "bearer-SECRET-2"),
            ("api_key", "apikey-SECRET-3"),
            ("client_secret", "client-SECRET-4"),
        ] {
            std::fs::write(dir.path().join(name), value).expect("secret file");
        }
        let store = Arc::new(
            SqliteBackend::open(&dir.path().join("t.db").display().to_string())
                .await
                .expect("store"),
        );
        Self {
            dir,
            store,
            clock: Arc::new(ManualClock::starting_at(NOW)),
        }
    }

    fn config(&self, host: &str, token_url: &str) -> Config {
        let text = format!(
            "[host]\n{host}\n\
             [credentials.x-app]\nkind = \"oauth1\"\nconsumer_key = {{ file = \"consumer_key\" }}\n\
             consumer_secret = {{ file = \"consumer_secret\" }}\n\
             [credentials.app-bearer]\nkind = \"bearer\"\ntoken = {{ file = \"bearer\" }}\n\
             [credentials.key-header]\nkind = \"api-key\"\nkey = {{ file = \"api_key\" }}\nheader = \"X-Api-Key\"\n\
             [credentials.key-query]\nkind = \"api-key\"\nkey = {{ file = \"api_key\" }}\nquery = \"apikey\"\n\
             [credentials.users]\nkind = \"oauth2-user\"\nclient_id = \"tsunagi-client\"\n\
             client_secret = {{ file = \"client_secret\" }}\ntoken_url = \"{token_url}\"\n\
             refresh_before = \"5m\"\nallow_internal = true\n"
        );
        Config::parse(&text, &self.dir.path().join("tsunagi.toml")).expect("valid config")
    }

    fn credentials(&self, config: &Config) -> Credentials {
        Credentials::from_config(config, self.store.clone(), self.clock.clone())
            .expect("credentials")
            .with_nonce(|| "fixed-nonce".to_string())
    }

    /// Every byte of the database and its WAL.
    fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("dir") {
            let path = entry.expect("entry").path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("t.db"))
            {
                bytes.extend(std::fs::read(&path).expect("read"));
            }
        }
        bytes
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn request(method: &str, url: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", "Bearer plugin-made-this-up")
        .header("x-api-key", "plugin-key")
        .body(Bytes::new())
        .expect("request")
}

fn header<'a>(request: &'a http::Request<Bytes>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

const KEYS_A: &str = "token_key = { file = \"key_a\" }";

#[tokio::test]
async fn app_credentials_replace_what_the_plugin_set() {
    let world = World::new().await;
    let credentials = world.credentials(&world.config(KEYS_A, "http://127.0.0.1:9/token"));
    let mut bearer = request("GET", "https://api.example/2/users/1/tweets");
    credentials
        .decorate("app-bearer", Scope::Read, "t", &mut bearer)
        .await
        .expect("bearer");
    assert_eq!(
        header(&bearer, "authorization"),
        Some("Bearer bearer-SECRET-2")
    );
    assert_eq!(bearer.headers().get_all("authorization").iter().count(), 1);
    assert!(bearer.headers()["authorization"].is_sensitive());

    let mut keyed = request("GET", "https://api.example/a");
    credentials
        .decorate("key-header", Scope::Read, "t", &mut keyed)
        .await
        .expect("header key");
    assert_eq!(header(&keyed, "x-api-key"), Some("apikey-SECRET-3"));
    assert_eq!(
        header(&keyed, "authorization"),
        None,
        "the plugin's is dropped"
    );

    let mut query = request("GET", "https://api.example/a?apikey=plugin-key&q=rust");
    credentials
        .decorate("key-query", Scope::Read, "t", &mut query)
        .await
        .expect("query key");
    assert_eq!(
        query.uri().to_string(),
        "https://api.example/a?q=rust&apikey=apikey-SECRET-3"
    );
    assert!(
        !redact::url(&query.uri().to_string()).contains("SECRET"),
        "the redactor hides the configured parameter"
    );
    let unknown = credentials
        .decorate(
            "nope",
            Scope::Read,
            "t",
            &mut request("GET", "https://a.example/"),
        )
        .await
        .expect_err("unknown");
    assert_eq!(unknown, CredentialError::Unknown("nope".into()));
}

#[tokio::test]
async fn oauth1_signs_with_the_targets_linked_token_and_refuses_a_missing_scope() {
    let world = World::new().await;
    let credentials = world.credentials(&world.config(KEYS_A, "http://127.0.0.1:9/token"));
    let mut unlinked = request("GET", "https://api.example/1.1/statuses/user_timeline.json");
    let error = credentials
        .decorate("x-app", Scope::Read, "user-1", &mut unlinked)
        .await
        .expect_err("no token linked");
    assert!(
        matches!(error, CredentialError::NotLinked { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("target user-1 has no linked token"),
        "{error}"
    );

    credentials
        .link(
            "x-app",
            "user-1",
            br#"{"token": "tok-SECRET-5", "token_secret": "ts-SECRET-6", "scopes": ["read"]}"#,
        )
        .await
        .expect("linked");
    let url = "https://api.example/1.1/statuses/update.json?include_entities=true";
    let mut post = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "OAuth forged")
        .body(Bytes::from_static(b"status=hi%21"))
        .expect("request");
    let refused = credentials
        .decorate("x-app", Scope::Write, "user-1", &mut post)
        .await
        .expect_err("read-only token");
    assert!(refused.is_missing_scope(), "{refused}");
    let text = refused.to_string();
    for part in ["'x-app'", "user-1", "'write' scope", "grants: read"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(!text.contains("SECRET"), "{text}");
    assert_eq!(
        header(&post, "authorization"),
        None,
        "nothing of the plugin's stays"
    );

    let mut get = request("GET", url);
    credentials
        .decorate("x-app", Scope::Read, "user-1", &mut get)
        .await
        .expect("signed");
    let expected = oauth1::sign(
        "GET",
        &url::Url::parse(url).unwrap(),
        None,
        &oauth1::SigningKeys {
            consumer_key: "ck-visible",
            consumer_secret: "cs-SECRET-1",
            token: Some(("tok-SECRET-5", "ts-SECRET-6")),
        },
        &oauth1::Freshness {
            nonce: "fixed-nonce",
            timestamp: (NOW / 1000) as u64,
        },
    );
    assert_eq!(header(&get, "authorization"), Some(expected.as_str()));
    assert!(
        expected.contains("oauth_token=\"tok-SECRET-5\""),
        "{expected}"
    );
}

#[tokio::test]
async fn tokens_are_sealed_bound_to_their_row_and_survive_a_key_rotation() {
    let world = World::new().await;
    let config_a = world.config(KEYS_A, "http://127.0.0.1:9/token");
    let credentials = world.credentials(&config_a);
    for user in ["alice", "bob"] {
        credentials
            .link(
                "x-app",
                user,
                format!(
                    r#"{{"token": "tok-{user}-SECRET", "token_secret": "ts-{user}-SECRET", "scopes": ["read", "write"]}}"#
                )
                .as_bytes(),
            )
            .await
            .expect("linked");
    }
    let vault = credentials.vault().expect("vault");
    let alice = vault
        .get("x-app", "alice")
        .await
        .expect("get")
        .expect("alice");
    assert_eq!(alice.scopes, [Scope::Read, Scope::Write]);

    // A row copied to another user does not open.
    let mut stolen = world
        .store
        .get_token("x-app", "alice")
        .await
        .unwrap()
        .unwrap();
    stolen.subject = "mallory".to_string();
    world.store.put_token(&stolen).await.unwrap();
    let copied = vault
        .get("x-app", "mallory")
        .await
        .expect_err("bound to alice");
    assert!(copied.to_string().contains("does not decrypt"), "{copied}");
    assert!(!copied.to_string().contains("SECRET"), "{copied}");
    world.store.delete_token("x-app", "mallory").await.unwrap();

    // Rotation: B is current, A still reads; rekey moves every row to B.
    let rotated = world.config(
        "token_key = { file = \"key_b\" }\ntoken_key_previous = { file = \"key_a\" }",
        "http://127.0.0.1:9/token",
    );
    let rotated = world.credentials(&rotated);
    let vault_b = rotated.vault().expect("vault");
    assert_eq!(
        vault_b
            .get("x-app", "bob")
            .await
            .unwrap()
            .unwrap()
            .scopes
            .len(),
        2
    );
    let report = vault_b.rekey(NOW).await.expect("rekey");
    assert_eq!(
        report,
        RekeyReport {
            resealed: 2,
            already_current: 0
        }
    );
    assert_eq!(vault_b.rekey(NOW).await.unwrap().already_current, 2);
    let only_b = world.credentials(&world.config(
        "token_key = { file = \"key_b\" }",
        "http://127.0.0.1:9/token",
    ));
    let bob = only_b
        .vault()
        .unwrap()
        .get("x-app", "bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        bob.secret,
        TokenSecret::OAuth1 {
            token: "tok-bob-SECRET".into(),
            token_secret: "ts-bob-SECRET".into()
        }
    );
    // The old key alone no longer opens them, and says which key it would need.
    let only_a = world.credentials(&config_a);
    let stale = only_a
        .vault()
        .unwrap()
        .get("x-app", "bob")
        .await
        .expect_err("resealed");
    assert!(
        stale.to_string().contains("neither host.token_key"),
        "{stale}"
    );

    world.store.close().await;
    let bytes = world.database_bytes();
    assert!(!bytes.is_empty());
    for secret in [
        "tok-alice-SECRET",
        "ts-alice-SECRET",
        "tok-bob-SECRET",
        "ts-bob-SECRET",
    ] {
        assert!(
            !contains(&bytes, secret),
            "{secret} is in the database file"
        );
    }
}

#[test]
fn tokens_files_and_token_answers_are_checked_without_echoing_values() {
    let parse = |kind: &str, text: &str| parse_tokens_file_for_test(kind, text);
    let linked = parse(
        "oauth2-user",
        r#"{"access_token": "a", "refresh_token": "r", "expires_in": 60, "scopes": ["write", "read", "read"]}"#,
    )
    .expect("valid");
    assert_eq!(linked.expires_at, Some(NOW + 60_000));
    assert_eq!(linked.scopes, [Scope::Read, Scope::Write]);
    for (kind, text, problem) in [
        (
            "oauth1",
            r#"{"token": "t", "scopes": ["read"]}"#,
            "`token_secret` is missing",
        ),
        (
            "oauth1",
            r#"{"token": "t", "token_secret": 5, "scopes": []}"#,
            "`token_secret` is not a string",
        ),
        (
            "oauth1",
            r#"{"token": "t-SECRET", "token_secret": "s", "scopes": ["admin"]}"#,
            "only \"read\" and \"write\"",
        ),
        (
            "oauth1",
            r#"{"tokn": "t-SECRET", "scopes": []}"#,
            "unknown field `tokn`",
        ),
        (
            "oauth2-user",
            r#"{"access_token": "a", "expires_in": 5, "expires_at": 9, "scopes": []}"#,
            "not both",
        ),
        ("oauth2-user", r#"["t-SECRET"]"#, "not a JSON object"),
        ("oauth2-user", "t-SECRET", "not JSON"),
        ("bearer", r#"{"scopes": []}"#, "keeps no per-target tokens"),
    ] {
        let error = parse(kind, text).expect_err(text).to_string();
        assert!(error.contains(problem), "{text}: {error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
    let big = format!(
        r#"{{"access_token": "{}", "scopes": []}}"#,
        "a".repeat(20_000)
    );
    assert!(
        parse("oauth2-user", &big)
            .unwrap_err()
            .to_string()
            .contains("larger than")
    );

    let ok = parse_token_response(
        br#"{"access_token": "new", "token_type": "Bearer", "expires_in": 7200, "refresh_token": "r2"}"#,
    )
    .expect("valid answer");
    assert_eq!(
        (ok.access_token.as_str(), ok.expires_in),
        ("new", Some(7200))
    );
    for (body, problem) in [
        (
            &br#"{"token_type": "bearer"}"#[..],
            "`access_token` is missing",
        ),
        (br#"{"access_token": 1}"#, "`access_token` is not a string"),
        (
            br#"{"access_token": "a", "token_type": "mac"}"#,
            "`token_type` is not \"bearer\"",
        ),
        (
            br#"{"access_token": "a", "expires_in": "soon"}"#,
            "`expires_in` is not a number",
        ),
        (
            br#"{"access_token": "a", "expires_in": -1}"#,
            "`expires_in` must be",
        ),
        (b"<html>Sorry</html>", "not JSON"),
    ] {
        let error = parse_token_response(body).expect_err("refused");
        assert!(error.contains(problem), "{error}");
    }
    let huge = vec![b' '; MAX_TOKEN_RESPONSE + 1];
    assert!(
        parse_token_response(&huge)
            .unwrap_err()
            .contains("larger than 65536 bytes")
    );
}

fn parse_tokens_file_for_test(kind: &str, text: &str) -> Result<LinkedToken, CredentialError> {
    oauth2::parse_tokens_file("c", kind, text.as_bytes(), NOW)
}

/// A token endpoint that rotates refresh tokens on every use, refuses a used one with
/// `invalid_grant`, and counts refreshes.
#[derive(Clone, Default)]
struct RotatingEndpoint {
    refreshes: Arc<AtomicUsize>,
    current_refresh: Arc<std::sync::Mutex<String>>,
}

async fn start_token_endpoint(endpoint: RotatingEndpoint) -> String {
    use axum::{Form, Json, Router, http::HeaderMap, http::StatusCode, routing::post};
    let handler = move |headers: HeaderMap, Form(form): Form<BTreeMap<String, String>>| {
        let endpoint = endpoint.clone();
        async move {
            // client id and secret as Basic auth: "tsunagi-client:client-SECRET-4".
            let basic = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if basic != "Basic dHN1bmFnaS1jbGllbnQ6Y2xpZW50LVNFQ1JFVC00" {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(serde_json::json!({"error": "invalid_client"})),
                );
            }
            let mut current = endpoint.current_refresh.lock().unwrap();
            if form.get("grant_type").map(String::as_str) != Some("refresh_token")
                || form.get("refresh_token") != Some(&*current)
            {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({"error": "invalid_grant"})),
                );
            }
            let n = endpoint.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
            *current = format!("refresh-SECRET-{n}");
            (
                StatusCode::OK,
                Json(serde_json::json!({
                    "access_token": format!("access-SECRET-{n}"),
                    "token_type": "bearer",
                    "expires_in": 3600,
                    "refresh_token": *current,
                })),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let app = Router::new().route("/token", post(handler));
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}/token")
}

/// A plain client for the test's own endpoint (egress's guarded one is tested in egress).
struct PlainEndpoint(reqwest::Client);

#[async_trait]
impl TokenEndpoint for PlainEndpoint {
    async fn post_form(
        &self,
        _credential: &str,
        url: &str,
        _allow_internal: bool,
        basic_auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<TokenEndpointReply, String> {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = self
            .0
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded);
        if let Some((user, password)) = basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok(TokenEndpointReply { status, body })
    }
}

/// `calls` requests for user `u-1` at once, spread over `hosts` in turn: each is sent with
/// `access_token`.
async fn all_send_bearer(hosts: &[Arc<Credentials>], calls: usize, access_token: &str) {
    let calls: Vec<_> = (0..calls)
        .map(|n| {
            let credentials = hosts[n % hosts.len()].clone();
            tokio::spawn(async move {
                let mut request = request("GET", "https://api.example/me");
                credentials
                    .decorate("users", Scope::Read, "u-1", &mut request)
                    .await
                    .map(|()| header(&request, "authorization").map(str::to_string))
            })
        })
        .collect();
    let expected = format!("Bearer {access_token}");
    for call in calls {
        let sent = call.await.expect("task").expect("decorated");
        assert_eq!(sent.as_deref(), Some(expected.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_near_expiry_refresh_once_store_the_rotated_pair_first_and_relink_on_invalid_grant()
 {
    let world = World::new().await;
    let endpoint = RotatingEndpoint::default();
    *endpoint.current_refresh.lock().unwrap() = "refresh-SECRET-0".to_string();
    let token_url = start_token_endpoint(endpoint.clone()).await;
    let config = world.config(KEYS_A, &token_url);
    let plain: Arc<dyn TokenEndpoint> = Arc::new(PlainEndpoint(reqwest::Client::new()));
    let credentials = Arc::new(
        world
            .credentials(&config)
            .with_token_endpoint(plain.clone()),
    );
    credentials
        .link(
            "users",
            "u-1",
            br#"{"access_token": "access-SECRET-0", "refresh_token": "refresh-SECRET-0", "expires_in": 600, "scopes": ["read"]}"#,
        )
        .await
        .expect("linked");

    // Not due yet: the linked token is used, nothing is refreshed.
    let mut early = request("GET", "https://api.example/me");
    credentials
        .decorate("users", Scope::Read, "u-1", &mut early)
        .await
        .expect("early");
    assert_eq!(
        header(&early, "authorization"),
        Some("Bearer access-SECRET-0")
    );

    // Within refresh_before (5m) of expiry: 50 calls at once, one refresh.
    world.clock.advance(Duration::from_secs(301));
    all_send_bearer(std::slice::from_ref(&credentials), 50, "access-SECRET-1").await;
    assert_eq!(
        endpoint.refreshes.load(Ordering::SeqCst),
        1,
        "exactly one refresh"
    );
    let stored = credentials
        .vault()
        .unwrap()
        .get("users", "u-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.secret,
        TokenSecret::OAuth2 {
            access_token: "access-SECRET-1".into(),
            refresh_token: Some("refresh-SECRET-1".into())
        }
    );
    assert_eq!(stored.expires_at, Some(world.clock.now_ms() + 3_600_000));

    // A crash after the refresh: a new process opens the store and finds the rotated pair,
    // so its next refresh (with refresh-SECRET-1) is accepted.
    world.store.close().await;
    let reopened = Arc::new(
        SqliteBackend::open(&world.dir.path().join("t.db").display().to_string())
            .await
            .expect("reopened"),
    );
    let restarted = Credentials::from_config(&config, reopened.clone(), world.clock.clone())
        .expect("credentials")
        .with_token_endpoint(plain.clone());
    world.clock.advance(Duration::from_secs(3600 - 299));
    let mut after = request("GET", "https://api.example/me");
    restarted
        .decorate("users", Scope::Read, "u-1", &mut after)
        .await
        .expect("after crash");
    assert_eq!(
        header(&after, "authorization"),
        Some("Bearer access-SECRET-2")
    );
    assert_eq!(endpoint.refreshes.load(Ordering::SeqCst), 2);

    // The endpoint forgets the grant: invalid_grant marks the target for relinking, and
    // later calls are refused without asking it again.
    *endpoint.current_refresh.lock().unwrap() = "revoked".to_string();
    world.clock.advance(Duration::from_secs(3600));
    for _ in 0..2 {
        let error = restarted
            .decorate(
                "users",
                Scope::Read,
                "u-1",
                &mut request("GET", "https://api.example/me"),
            )
            .await
            .expect_err("needs relinking");
        assert!(
            matches!(error, CredentialError::NeedsRelink { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("invalid_grant"), "{error}");
        assert!(!error.to_string().contains("SECRET"), "{error}");
    }
    assert_eq!(endpoint.refreshes.load(Ordering::SeqCst), 2);
    let marked = reopened.get_token("users", "u-1").await.unwrap().unwrap();
    assert!(marked.needs_relink.is_some());
    reopened.close().await;
    let bytes = world.database_bytes();
    for n in 0..3 {
        for secret in [format!("access-SECRET-{n}"), format!("refresh-SECRET-{n}")] {
            assert!(
                !contains(&bytes, &secret),
                "{secret} is in the database file"
            );
        }
    }
}

/// Three hosts (each with its own flights, as separate processes have) share one token store
/// and a cluster lock in Redis: 60 calls near expiry, spread over them, make one refresh, and
/// every call gets the rotated token. Without the lock each host would refresh, and all but
/// the first would send a refresh token the endpoint had already rotated away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_sharing_a_token_store_refresh_once_through_the_cluster_lock() {
    use tsunagi_backends::redis::lock::RedisLock;
    use tsunagi_backends::redis::testing::TestPrefix;
    let world = World::new().await;
    let endpoint = RotatingEndpoint::default();
    *endpoint.current_refresh.lock().unwrap() = "refresh-SECRET-0".to_string();
    let token_url = start_token_endpoint(endpoint.clone()).await;
    let config = world.config(KEYS_A, &token_url);
    let plain: Arc<dyn TokenEndpoint> = Arc::new(PlainEndpoint(reqwest::Client::new()));
    let redis = TestPrefix::new();
    let mut hosts = Vec::new();
    for _ in 0..3 {
        let lock: Arc<dyn ClusterLock> = Arc::new(RedisLock::new(redis.open().await));
        hosts.push(Arc::new(
            world
                .credentials(&config)
                .with_token_endpoint(plain.clone())
                .in_another_process()
                .with_cluster_lock(Some(lock)),
        ));
    }
    hosts[0]
        .link(
            "users",
            "u-1",
            br#"{"access_token": "access-SECRET-0", "refresh_token": "refresh-SECRET-0", "expires_in": 600, "scopes": ["read"]}"#,
        )
        .await
        .expect("linked");
    world.clock.advance(Duration::from_secs(301));
    all_send_bearer(&hosts, 60, "access-SECRET-1").await;
    assert_eq!(
        endpoint.refreshes.load(Ordering::SeqCst),
        1,
        "one refresh for the cluster"
    );
}
