//! The fake X API's HTTP side: accept loop, routing, auth, rate limits, switches, and the
//! response shapes of X API v2 and v1.1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::fixture::{Post, PostKind, hashtag_spans};
use super::{Outage, Scopes, ShapeChange, Shared, Window, XAuth, bump, lock, oauth1};

/// Request bodies beyond this are refused (X's post text is at most a few KiB).
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// `pagination_token`s are this prefix and the exclusive upper id bound in base 36.
const TOKEN_PREFIX: &str = "7140dk";

type Answer = Response<Full<Bytes>>;

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if let Some(Outage::ConnectionDropped) = shared.outage() {
            bump(&shared.counters.requests);
            bump(&shared.counters.dropped_connections);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, request).await }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Shared {
    fn outage(&self) -> Option<Outage> {
        let mut switches = lock(&self.switches);
        match switches.down {
            Some((until, outage)) if self.config.clock.now() < until => Some(outage),
            Some(_) => {
                switches.down = None;
                None
            }
            None => None,
        }
    }
}

/// Who is calling, as the credentials say.
struct Principal {
    /// The acting user; `None` for the app bearer token.
    user: Option<u64>,
    scopes: Scopes,
    /// The rate-limit bucket: one per token.
    rate_key: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    V2,
    V11,
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Result<Answer, DropConnection> {
    bump(&shared.counters.requests);
    let arrival = shared.arrivals.fetch_add(1, Ordering::Relaxed);
    let (delay, fail) = {
        let switches = lock(&shared.switches);
        let fail = switches.fail_fraction > 0.0
            && (splitmix64(switches.fail_seed ^ arrival) as f64 / u64::MAX as f64)
                < switches.fail_fraction;
        (switches.delay, fail)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match shared.outage() {
        Some(Outage::ConnectionDropped) => {
            bump(&shared.counters.dropped_connections);
            return Err(DropConnection);
        }
        Some(Outage::Unavailable) => {
            bump(&shared.counters.unavailable);
            return Ok(html(StatusCode::SERVICE_UNAVAILABLE, OVER_CAPACITY));
        }
        None => {}
    }
    if fail {
        bump(&shared.counters.unavailable);
        return Ok(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"title": "Service Unavailable", "detail": "Service Unavailable",
                   "type": "about:blank", "status": 503}),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"title": "Payload Too Large", "type": "about:blank", "status": 413,
                       "detail": "request body too large"}),
            ));
        }
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let route = (&parts.method, path.as_str());
    let answer = match route {
        (&Method::POST, "/2/oauth2/token") => token_endpoint(shared, &parts.headers, &body),
        (&Method::GET, "/1.1/statuses/user_timeline.json") => {
            let user = query_param(&query, "user_id").and_then(|id| id.parse().ok());
            match authorize(shared, &parts, &query, &body, Api::V11, user, false) {
                Ok(principal) => {
                    limited(shared, &principal, "timeline", Api::V11, || async {
                        timeline_v11(shared, &query).await
                    })
                    .await
                }
                Err(refusal) => *refusal,
            }
        }
        (&Method::POST, "/2/tweets") => {
            match authorize(shared, &parts, &query, &body, Api::V2, None, true) {
                Ok(principal) => {
                    let outcome = limited(shared, &principal, "post", Api::V2, || async {
                        create_post(shared, &principal, &body)
                    })
                    .await;
                    if outcome.status() == StatusCode::CREATED {
                        let drop = {
                            let mut switches = lock(&shared.switches);
                            let drop = switches.drop_after_accept > 0;
                            switches.drop_after_accept =
                                switches.drop_after_accept.saturating_sub(1);
                            drop
                        };
                        if drop {
                            bump(&shared.counters.dropped_connections);
                            return Err(DropConnection);
                        }
                    }
                    outcome
                }
                Err(refusal) => *refusal,
            }
        }
        (&Method::GET, path) => match timeline_user(path) {
            Some(user) => {
                match authorize(shared, &parts, &query, &body, Api::V2, Some(user), false) {
                    Ok(principal) => {
                        limited(shared, &principal, "timeline", Api::V2, || async {
                            timeline_v2(shared, user, &query).await
                        })
                        .await
                    }
                    Err(refusal) => *refusal,
                }
            }
            None => not_found(),
        },
        _ => not_found(),
    };
    Ok(answer)
}

fn not_found() -> Answer {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"errors": [{"message": "Sorry, that page does not exist", "code": 34}]}),
    )
}

/// `/2/users/{id}/tweets` → the id.
fn timeline_user(path: &str) -> Option<u64> {
    let id = path.strip_prefix("/2/users/")?.strip_suffix("/tweets")?;
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Checks the credentials the server's [`XAuth`] asks for, and the scope the endpoint needs.
fn authorize(
    shared: &Shared,
    parts: &http::request::Parts,
    query: &str,
    body: &[u8],
    api: Api,
    path_user: Option<u64>,
    write: bool,
) -> Result<Principal, Box<Answer>> {
    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let principal = match &shared.config.auth {
        XAuth::None => {
            let user = if write {
                parts
                    .headers
                    .get("x-fake-user-id")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse().ok())
            } else {
                path_user
            };
            Principal {
                user,
                scopes: Scopes::READ_WRITE,
                rate_key: format!("user:{}", user.unwrap_or(0)),
            }
        }
        XAuth::OAuth1 {
            consumer_key,
            consumer_secret,
        } => {
            let host = header_text(header::HOST).unwrap_or_default();
            let form = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
            let verified = header_text(header::AUTHORIZATION).and_then(|header| {
                verify_oauth1(
                    shared,
                    &header,
                    consumer_key,
                    consumer_secret,
                    parts.method.as_str(),
                    &host,
                    parts.uri.path(),
                    query,
                    form.then_some(body),
                )
            });
            match verified {
                Some(principal) => principal,
                None => return Err(Box::new(unauthorized(shared, api))),
            }
        }
        XAuth::OAuth2 { app_bearer } => {
            let token = header_text(header::AUTHORIZATION)
                .and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned));
            let Some(token) = token else {
                return Err(Box::new(unauthorized(shared, api)));
            };
            if app_bearer.as_deref() == Some(token.as_str()) {
                Principal {
                    user: None,
                    scopes: Scopes::READ,
                    rate_key: "app".to_owned(),
                }
            } else {
                let tokens = lock(&shared.tokens);
                match tokens.access.get(&token) {
                    Some(access) if access.expires_unix > shared.config.clock.now() => Principal {
                        user: Some(access.user),
                        scopes: access.scopes,
                        rate_key: format!("oauth2:{token}"),
                    },
                    _ => {
                        drop(tokens);
                        return Err(Box::new(unauthorized(shared, api)));
                    }
                }
            }
        }
    };
    let allowed = if write {
        principal.scopes.write && principal.user.is_some()
    } else {
        principal.scopes.read
    };
    if !allowed {
        bump(&shared.counters.forbidden);
        let scope = if write { "tweet.write" } else { "tweet.read" };
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            json!({"title": "Forbidden", "type": "about:blank", "status": 403,
                   "detail": format!("You are not permitted to perform this action: the token lacks the {scope} scope.")}),
        )));
    }
    Ok(principal)
}

#[allow(clippy::too_many_arguments)]
fn verify_oauth1(
    shared: &Shared,
    header: &str,
    consumer_key: &str,
    consumer_secret: &str,
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    form_body: Option<&[u8]>,
) -> Option<Principal> {
    let params = oauth1::parse_authorization(header)?;
    let field = |name: &str| params.get(name).map(String::as_str);
    if field("oauth_consumer_key")? != consumer_key
        || field("oauth_signature_method")? != "HMAC-SHA1"
        || field("oauth_version").is_some_and(|version| version != "1.0")
    {
        return None;
    }
    let timestamp: f64 = field("oauth_timestamp")?.parse().ok()?;
    if (timestamp - shared.config.clock.now()).abs() > shared.config.timestamp_skew.as_secs_f64() {
        return None;
    }
    let token = field("oauth_token")?.to_owned();
    let nonce = field("oauth_nonce")?.to_owned();
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix(":80").unwrap_or(&host);
    let base = oauth1::base_string(
        method,
        &format!("http://{host}{path}"),
        query,
        form_body,
        &params,
    );
    let mut tokens = lock(&shared.tokens);
    let user = tokens.oauth1.get(&token)?;
    let expected = oauth1::sign(&base, consumer_secret, &user.token_secret);
    if !oauth1::constant_time_eq(&expected, field("oauth_signature")?) {
        return None;
    }
    let principal = Principal {
        user: Some(user.user),
        scopes: user.scopes,
        rate_key: format!("oauth1:{token}"),
    };
    if tokens.nonces.len() > 1_000_000 {
        tokens.nonces.clear();
    }
    if !tokens
        .nonces
        .insert((nonce, field("oauth_timestamp")?.to_owned()))
    {
        return None;
    }
    Some(principal)
}

fn unauthorized(shared: &Shared, api: Api) -> Answer {
    bump(&shared.counters.auth_failures);
    let mut answer = match api {
        Api::V11 => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"code": 32, "message": "Could not authenticate you."}]}),
        ),
        Api::V2 => problem(
            StatusCode::UNAUTHORIZED,
            json!({"title": "Unauthorized", "type": "about:blank", "status": 401,
                   "detail": "Unauthorized",
                   "errors": [{"code": 32, "message": "Could not authenticate you."}]}),
        ),
    };
    answer.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("OAuth realm=\"api.twitter.com\""),
    );
    answer
}

/// The usage cap, then the token's rate-limit window, then `answer`; every outcome carries the
/// window's `x-rate-limit-*` headers.
async fn limited<F, Fut>(
    shared: &Shared,
    principal: &Principal,
    endpoint: &str,
    api: Api,
    answer: F,
) -> Answer
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    if lock(&shared.switches).usage_capped {
        bump(&shared.counters.usage_capped);
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"title": "UsageCapExceeded", "detail": "Usage cap exceeded: Monthly product cap",
                   "type": "https://api.twitter.com/2/problems/usage-capped",
                   "period": "Monthly", "scope": "Product"}),
        );
    }
    let limit = shared.config.rate_limit;
    let window_secs = shared.config.rate_window.as_secs().max(1);
    let now = shared.config.clock.now().max(0.0) as u64;
    let (allowed, remaining, reset) = {
        let mut windows = lock(&shared.windows);
        let window = windows
            .entry(format!("{endpoint}:{}", principal.rate_key))
            .or_insert_with(|| Window {
                started_unix: now,
                used: 0,
            });
        if now >= window.started_unix + window_secs {
            *window = Window {
                started_unix: now,
                used: 0,
            };
        }
        let allowed = window.used < limit;
        if allowed {
            window.used += 1;
        }
        (
            allowed,
            limit - window.used,
            window.started_unix + window_secs,
        )
    };
    let mut response = if allowed {
        answer().await
    } else {
        bump(&shared.counters.rate_limited);
        match api {
            Api::V11 => json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"errors": [{"code": 88, "message": "Rate limit exceeded"}]}),
            ),
            Api::V2 => problem(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"title": "Too Many Requests", "detail": "Too Many Requests",
                       "type": "about:blank", "status": 429}),
            ),
        }
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-rate-limit-limit", limit.to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset.to_string()),
    ] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
    response
}

/// Waits while `user` is held or has a delay; counts the request as pending meanwhile.
async fn user_gate(shared: &Shared, user: u64) {
    *lock(&shared.per_user_timeline).entry(user).or_insert(0) += 1;
    bump(&shared.counters.timeline_requests);
    let delay = lock(&shared.switches).user_delay.get(&user).copied();
    let held = lock(&shared.held).contains(&user);
    if delay.is_none() && !held {
        return;
    }
    *lock(&shared.pending_per_user).entry(user).or_insert(0) += 1;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut release = shared.release.subscribe();
    while lock(&shared.held).contains(&user) && !shared.stopping.load(Ordering::Relaxed) {
        if release.changed().await.is_err() {
            break;
        }
    }
    if let Some(pending) = lock(&shared.pending_per_user).get_mut(&user) {
        *pending -= 1;
    }
}

fn invalid_request(parameter: &str, value: &str, message: String) -> Answer {
    problem(
        StatusCode::BAD_REQUEST,
        json!({"errors": [{"parameters": {parameter: [value]}, "message": message}],
               "title": "Invalid Request",
               "detail": "One or more parameters to your request was invalid.",
               "type": "https://api.twitter.com/2/problems/invalid-request"}),
    )
}

const TWEET_FIELDS: [&str; 11] = [
    "id",
    "text",
    "created_at",
    "entities",
    "referenced_tweets",
    "author_id",
    "conversation_id",
    "edit_history_tweet_ids",
    "in_reply_to_user_id",
    "lang",
    "public_metrics",
];

async fn timeline_v2(shared: &Shared, user: u64, query: &str) -> Answer {
    user_gate(shared, user).await;
    let mut since_id = None;
    let mut until_id = None;
    let mut bound = None;
    let mut max_results = 10u32;
    let mut fields: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let id = || value.parse::<u64>().ok();
        match &*name {
            "since_id" => match id() {
                Some(id) => since_id = Some(id),
                None => {
                    return invalid_request(
                        &name,
                        &value,
                        format!("The `since_id` query parameter value [{value}] is not a valid id"),
                    );
                }
            },
            "until_id" => match id() {
                Some(id) => until_id = Some(id),
                None => {
                    return invalid_request(
                        &name,
                        &value,
                        format!("The `until_id` query parameter value [{value}] is not a valid id"),
                    );
                }
            },
            "max_results" => match value.parse::<u32>() {
                Ok(n) if (5..=100).contains(&n) => max_results = n,
                _ => {
                    return invalid_request(
                        &name,
                        &value,
                        format!(
                            "The `max_results` query parameter value [{value}] is not between 5 and 100"
                        ),
                    );
                }
            },
            "pagination_token" => match value
                .strip_prefix(TOKEN_PREFIX)
                .and_then(|rest| u64::from_str_radix(rest, 36).ok())
            {
                Some(id) => bound = Some(id),
                None => {
                    return invalid_request(
                        &name,
                        &value,
                        format!(
                            "The `pagination_token` query parameter value [{value}] is not valid"
                        ),
                    );
                }
            },
            "tweet.fields" => {
                for field in value.split(',') {
                    if !TWEET_FIELDS.contains(&field) {
                        return invalid_request(
                            &name,
                            field,
                            format!(
                                "The `tweet.fields` query parameter value [{field}] is not one of [{}]",
                                TWEET_FIELDS.join(",")
                            ),
                        );
                    }
                    fields.push(field.to_owned());
                }
            }
            "expansions" | "user.fields" | "exclude" | "start_time" | "end_time" => {}
            _ => {
                return invalid_request(
                    &name,
                    &value,
                    format!(
                        "The query parameter [{name}] is not one of [since_id,until_id,max_results,pagination_token,tweet.fields,expansions,user.fields,exclude,start_time,end_time]"
                    ),
                );
            }
        }
    }
    let index = user.wrapping_sub(super::USER_ID_BASE) as usize;
    let page = {
        let timelines = lock(&shared.timelines);
        let Some(timeline) = timelines.get(index) else {
            drop(timelines);
            return json_response(
                StatusCode::OK,
                json!({"errors": [{"value": user.to_string(),
                    "detail": format!("Could not find user with id: [{user}]."),
                    "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                    "resource_id": user.to_string(),
                    "type": "https://api.twitter.com/2/problems/resource-not-found"}]}),
            );
        };
        let upper = match (until_id, bound) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(u64::MAX),
        };
        let matching: Vec<&Post> = timeline
            .iter()
            .rev()
            .filter(|post| post.id < upper && since_id.is_none_or(|since| post.id > since))
            .collect();
        let more = matching.len() > max_results as usize;
        let page: Vec<Post> = matching
            .into_iter()
            .take(max_results as usize)
            .cloned()
            .collect();
        (page, more)
    };
    let (page, more) = page;
    let switches = {
        let switches = lock(&shared.switches);
        (switches.html_200, switches.shape)
    };
    if switches.0 {
        return html(StatusCode::OK, MAINTENANCE);
    }
    bump(&shared.counters.timeline_pages);
    let mut data: Vec<Value> = page.iter().map(|post| v2_post(post, &fields)).collect();
    if let Some(shape) = switches.1 {
        for post in &mut data {
            reshape(post, shape, "id", "created_at");
        }
        if shape == ShapeChange::NotAnObject {
            return json_response(StatusCode::OK, Value::Array(data));
        }
    }
    let mut meta = serde_json::Map::new();
    meta.insert("result_count".into(), json!(page.len()));
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        meta.insert("newest_id".into(), json!(first.id.to_string()));
        meta.insert("oldest_id".into(), json!(last.id.to_string()));
        if more {
            meta.insert(
                "next_token".into(),
                json!(format!("{TOKEN_PREFIX}{}", base36(last.id))),
            );
        }
    }
    let mut document = serde_json::Map::new();
    if !data.is_empty() {
        document.insert("data".into(), Value::Array(data));
    }
    document.insert("meta".into(), Value::Object(meta));
    json_response(StatusCode::OK, Value::Object(document))
}

fn reshape(post: &mut Value, shape: ShapeChange, id_field: &str, time_field: &str) {
    let Some(object) = post.as_object_mut() else {
        return;
    };
    match shape {
        ShapeChange::RenamedField => {
            if let Some(value) = object.remove(time_field) {
                object.insert("createdAt".into(), value);
            }
        }
        ShapeChange::MissingField => {
            object.remove(id_field);
        }
        ShapeChange::WrongType => {
            if let Some(id) = object.get(id_field).and_then(Value::as_str) {
                let number: u64 = id.parse().unwrap_or(0);
                object.insert(id_field.into(), json!(number));
            }
        }
        ShapeChange::NotAnObject => {}
    }
}

fn v2_post(post: &Post, fields: &[String]) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), json!(post.id.to_string()));
    object.insert("text".into(), json!(post.text));
    object.insert(
        "edit_history_tweet_ids".into(),
        json!([post.id.to_string()]),
    );
    let wants = |name: &str| fields.iter().any(|field| field == name);
    if wants("created_at") {
        object.insert(
            "created_at".into(),
            json!(rfc3339_millis(post.created_unix)),
        );
    }
    if wants("author_id") {
        object.insert("author_id".into(), json!(post.author.to_string()));
    }
    if wants("entities") && !post.hashtags.is_empty() {
        let hashtags: Vec<Value> = hashtag_spans(&post.text, &post.hashtags)
            .into_iter()
            .map(|(start, end, tag)| json!({"start": start, "end": end, "tag": tag}))
            .collect();
        object.insert("entities".into(), json!({"hashtags": hashtags}));
    }
    if wants("referenced_tweets")
        && let Some(referenced) = post.referenced
    {
        let kind = match post.kind {
            PostKind::Reply => "replied_to",
            PostKind::Retweet => "retweeted",
            PostKind::Quote => "quoted",
            PostKind::Original => "",
        };
        if !kind.is_empty() {
            object.insert(
                "referenced_tweets".into(),
                json!([{"type": kind, "id": referenced.to_string()}]),
            );
        }
    }
    Value::Object(object)
}

async fn timeline_v11(shared: &Shared, query: &str) -> Answer {
    let bad = |message: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"code": 44, "message": message}]}),
        )
    };
    let mut user = None;
    let mut since_id = None;
    let mut max_id = None;
    let mut count = 20usize;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let parsed = value.parse::<u64>().ok();
        match (&*name, parsed) {
            ("user_id", Some(id)) => user = Some(id),
            ("since_id", Some(id)) => since_id = Some(id),
            ("max_id", Some(id)) => max_id = Some(id),
            ("count", Some(n)) => count = n.clamp(1, 200) as usize,
            ("user_id" | "since_id" | "max_id" | "count", None) => {
                return bad(&format!("{name} parameter is invalid."));
            }
            _ => {}
        }
    }
    let Some(user) = user else {
        return bad("user_id parameter is missing.");
    };
    user_gate(shared, user).await;
    let index = user.wrapping_sub(super::USER_ID_BASE) as usize;
    let page: Vec<Post> = {
        let timelines = lock(&shared.timelines);
        let Some(timeline) = timelines.get(index) else {
            drop(timelines);
            return not_found();
        };
        timeline
            .iter()
            .rev()
            .filter(|post| {
                max_id.is_none_or(|max| post.id <= max)
                    && since_id.is_none_or(|since| post.id > since)
            })
            .take(count)
            .cloned()
            .collect()
    };
    let (html_200, shape) = {
        let switches = lock(&shared.switches);
        (switches.html_200, switches.shape)
    };
    if html_200 {
        return html(StatusCode::OK, MAINTENANCE);
    }
    bump(&shared.counters.timeline_pages);
    let mut statuses: Vec<Value> = page.iter().map(v11_status).collect();
    if let Some(shape) = shape {
        if shape == ShapeChange::NotAnObject {
            return json_response(StatusCode::OK, json!({"statuses": statuses}));
        }
        for status in &mut statuses {
            reshape(status, shape, "id_str", "created_at");
        }
    }
    json_response(StatusCode::OK, Value::Array(statuses))
}

fn v11_status(post: &Post) -> Value {
    let hashtags: Vec<Value> = hashtag_spans(&post.text, &post.hashtags)
        .into_iter()
        .map(|(start, end, tag)| json!({"text": tag, "indices": [start, end]}))
        .collect();
    let user = json!({"id": post.author, "id_str": post.author.to_string(),
                      "screen_name": format!("user{}", post.author - super::USER_ID_BASE)});
    let mut status = json!({
        "created_at": v11_time(post.created_unix),
        "id": post.id,
        "id_str": post.id.to_string(),
        "text": post.text,
        "truncated": false,
        "entities": {"hashtags": hashtags, "symbols": [], "user_mentions": [], "urls": []},
        "in_reply_to_status_id": null,
        "in_reply_to_status_id_str": null,
        "in_reply_to_user_id_str": null,
        "user": user,
        "is_quote_status": post.kind == PostKind::Quote,
        "retweet_count": 0,
        "favorite_count": 0,
        "lang": "en",
    });
    let referenced = post.referenced.unwrap_or(0);
    match post.kind {
        PostKind::Reply => {
            status["in_reply_to_status_id"] = json!(referenced);
            status["in_reply_to_status_id_str"] = json!(referenced.to_string());
            status["in_reply_to_user_id_str"] = json!("12");
        }
        PostKind::Retweet => {
            status["retweeted_status"] = json!({
                "id": referenced, "id_str": referenced.to_string(),
                "text": "the original", "created_at": v11_time(super::FIXTURE_EPOCH_UNIX),
                "user": {"id": 12, "id_str": "12", "screen_name": "someone"},
            });
        }
        PostKind::Quote => {
            status["quoted_status_id_str"] = json!(referenced.to_string());
        }
        PostKind::Original => {}
    }
    status
}

fn create_post(shared: &Shared, principal: &Principal, body: &[u8]) -> Answer {
    let Some(user) = principal.user else {
        bump(&shared.counters.forbidden);
        return problem(
            StatusCode::FORBIDDEN,
            json!({"title": "Unsupported Authentication", "type": "https://api.twitter.com/2/problems/unsupported-authentication",
                   "status": 403, "detail": "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint."}),
        );
    };
    let text = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|document| document.get("text")?.as_str().map(str::to_owned));
    let Some(text) = text else {
        return problem(
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"message": "$.text: is missing but it is required"}],
                   "title": "Invalid Request",
                   "detail": "One or more parameters to your request was invalid.",
                   "type": "https://api.twitter.com/2/problems/invalid-request"}),
        );
    };
    if !lock(&shared.posted).insert((user, text.clone())) {
        bump(&shared.counters.duplicates_refused);
        return problem(
            StatusCode::FORBIDDEN,
            json!({"detail": "You are not allowed to create a Tweet with duplicate content.",
                   "type": "about:blank", "title": "Forbidden", "status": 403}),
        );
    }
    let hashtags: Vec<String> = text
        .split_whitespace()
        .filter_map(|word| word.strip_prefix('#'))
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect();
    let Some(id) = shared.publish(user, text.clone(), hashtags) else {
        lock(&shared.posted).remove(&(user, text));
        return not_found();
    };
    bump(&shared.counters.posts_accepted);
    *lock(&shared.accepted_by_user).entry(user).or_insert(0) += 1;
    *lock(&shared.accepted_by_text)
        .entry(text.clone())
        .or_insert(0) += 1;
    json_response(
        StatusCode::CREATED,
        json!({"data": {"id": id.to_string(), "text": text,
                        "edit_history_tweet_ids": [id.to_string()]}}),
    )
}

fn token_endpoint(shared: &Shared, _headers: &http::HeaderMap, body: &[u8]) -> Answer {
    let form: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let oauth_error = |error: &str, description: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": error, "error_description": description}),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(
            "unsupported_grant_type",
            "Only refresh_token is supported here.",
        );
    }
    let Some(presented) = form.get("refresh_token") else {
        return oauth_error(
            "invalid_request",
            "Missing required parameter [refresh_token].",
        );
    };
    let pair = {
        let mut tokens = lock(&shared.tokens);
        match tokens.refresh.remove(presented) {
            Some(refresh) => {
                tokens.spent_refresh.insert(presented.clone());
                Some((refresh.user, refresh.scopes))
            }
            None => None,
        }
    };
    let Some((user, scopes)) = pair else {
        bump(&shared.counters.refresh_failures);
        return oauth_error("invalid_grant", "Value passed for the token was invalid.");
    };
    let (access, refresh) = shared.issue_pair(user, scopes);
    bump(&shared.counters.refreshes);
    json_response(
        StatusCode::OK,
        json!({"token_type": "bearer",
               "expires_in": shared.config.access_token_lifetime.as_secs(),
               "access_token": access, "scope": scopes.as_x_scope(), "refresh_token": refresh}),
    )
}

const OVER_CAPACITY: &str = "<!DOCTYPE html><html><head><title>X / Over capacity</title></head>\
    <body><h1>Something is technically wrong.</h1><p>Thanks for noticing.</p></body></html>\n";
const MAINTENANCE: &str = "<!DOCTYPE html><html><head><title>X</title></head>\
    <body><p>We are doing some maintenance. Check back soon.</p></body></html>\n";

fn json_response(status: StatusCode, body: Value) -> Answer {
    with_type(status, "application/json; charset=utf-8", body.to_string())
}

fn problem(status: StatusCode, body: Value) -> Answer {
    with_type(status, "application/problem+json", body.to_string())
}

fn html(status: StatusCode, body: &'static str) -> Answer {
    with_type(status, "text/html; charset=utf-8", body.to_owned())
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `2024-01-01T00:00:00.000Z`, as v2 writes `created_at`.
pub(crate) fn rfc3339_millis(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = crate::render::civil_from_days(days.max(0) as u64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `Wed Oct 10 20:19:24 +0000 2018`, as v1.1 writes `created_at`.
pub(crate) fn v11_time(unix: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = crate::render::civil_from_days(days.max(0) as u64);
    let mut out = String::with_capacity(30);
    let _ = write!(
        out,
        "{} {} {d:02} {:02}:{:02}:{:02} +0000 {y}",
        WEEKDAYS[((days + 4).rem_euclid(7)) as usize],
        MONTHS[(m as usize).saturating_sub(1) % 12],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_formats() {
        assert_eq!(rfc3339_millis(1_539_202_764), "2018-10-10T20:19:24.000Z");
        assert_eq!(v11_time(1_539_202_764), "Wed Oct 10 20:19:24 +0000 2018");
        assert_eq!(v11_time(1_704_067_200), "Mon Jan 01 00:00:00 +0000 2024");
    }

    #[test]
    fn paths_and_tokens() {
        assert_eq!(
            timeline_user("/2/users/2244994945/tweets"),
            Some(2_244_994_945)
        );
        assert_eq!(timeline_user("/2/users/x/tweets"), None);
        assert_eq!(timeline_user("/2/users//tweets"), None);
        let token = base36(1_460_323_737_035_677_698);
        assert_eq!(
            u64::from_str_radix(&token, 36).ok(),
            Some(1_460_323_737_035_677_698)
        );
    }
}
