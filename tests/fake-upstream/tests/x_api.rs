//! The fake X API over real loopback HTTP: the v2 and v1.1 shapes and paging, auth (OAuth 1.0a
//! signatures verified, OAuth 2.0 bearer and rotating refresh), scopes, per-token rate limits
//! and the usage cap, posting with duplicate refusal and dropped answers, and the failure
//! switches, each with the counters tests assert on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tsunagi_fake_upstream::x::{
    FixtureSpec, Outage, PostKind, Scopes, ShapeChange, XAuth, XClock, XServer, XServerConfig,
    oauth1,
};

const LIMIT: Duration = Duration::from_secs(20);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = tokio::time::timeout(LIMIT, request.send())
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let value = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, headers, value)
}

async fn server(users: u32, posts: u32) -> XServer {
    XServer::start(XServerConfig {
        fixture: FixtureSpec {
            users,
            posts_per_user: posts,
            posts_override: Vec::new(),
        },
        ..XServerConfig::default()
    })
    .await
    .expect("fake X API")
}

fn timeline(server: &XServer, user: u64, query: &str) -> String {
    format!("{}/2/users/{user}/tweets?{query}", server.base_url())
}

#[tokio::test]
async fn v2_pages_newest_first_back_to_since_id() {
    let x = server(2, 25).await;
    let user = XServer::user_id(1);
    let http = client();
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query =
            "max_results=10&tweet.fields=created_at,entities,referenced_tweets".to_owned();
        if let Some(token) = &token {
            query.push_str(&format!("&pagination_token={token}"));
        }
        let (status, headers, body) = send(http.get(timeline(&x, user, &query))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-rate-limit-limit"], "900");
        pages += 1;
        let data = body["data"].as_array().expect("data");
        assert_eq!(body["meta"]["result_count"], json!(data.len()));
        assert_eq!(body["meta"]["newest_id"], data[0]["id"]);
        assert_eq!(body["meta"]["oldest_id"], data[data.len() - 1]["id"]);
        ids.extend(
            data.iter()
                .map(|post| post["id"].as_str().unwrap().to_owned()),
        );
        match body["meta"]["next_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = x
        .posts(user)
        .iter()
        .rev()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(ids, expected);

    // since_id: only newer posts; nothing newer answers result_count 0 and no data.
    let posts = x.posts(user);
    let since = posts[19].id;
    let (_, _, body) = send(http.get(timeline(&x, user, &format!("since_id={since}")))).await;
    assert_eq!(body["meta"]["result_count"], 5);
    let newest = posts[24].id;
    let (_, _, body) = send(http.get(timeline(&x, user, &format!("since_id={newest}")))).await;
    assert_eq!(body, json!({"meta": {"result_count": 0}}));

    // A new post shows up first.
    let fresh = x.publish(user, "hello #Fresh").unwrap();
    let (_, _, body) = send(http.get(timeline(&x, user, &format!("since_id={newest}")))).await;
    assert_eq!(body["data"][0]["id"], fresh.to_string());
}

#[tokio::test]
async fn v2_fields_say_what_each_post_is() {
    let x = server(1, 20).await;
    let user = XServer::user_id(0);
    let http = client();
    let (_, _, bare) = send(http.get(timeline(&x, user, "max_results=100"))).await;
    assert!(
        bare["data"][0].get("created_at").is_none(),
        "only asked-for fields"
    );
    let (_, _, body) = send(http.get(timeline(
        &x,
        user,
        "max_results=100&tweet.fields=created_at,entities,referenced_tweets",
    )))
    .await;
    let data = body["data"].as_array().unwrap();
    let posts = x.posts(user);
    assert_eq!(data.len(), posts.len());
    for (json, post) in data.iter().zip(posts.iter().rev()) {
        let kind = json["referenced_tweets"][0]["type"].as_str();
        let expected = match post.kind {
            PostKind::Original => None,
            PostKind::Reply => Some("replied_to"),
            PostKind::Retweet => Some("retweeted"),
            PostKind::Quote => Some("quoted"),
        };
        assert_eq!(kind, expected, "{json}");
        let tags: Vec<&str> = json["entities"]["hashtags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .map(|tag| tag["tag"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(tags, post.hashtags);
        assert!(json["created_at"].as_str().unwrap().ends_with(".000Z"));
    }
    assert_eq!(
        data.last().unwrap()["created_at"],
        "2024-01-01T00:00:00.000Z"
    );

    let (status, headers, body) = send(http.get(timeline(&x, user, "max_results=4"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        body["type"],
        "https://api.twitter.com/2/problems/invalid-request"
    );
    assert_eq!(body["errors"][0]["parameters"]["max_results"][0], "4");
    let (status, _, _) = send(http.get(timeline(&x, user, "tweet.fields=colour"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _, body) = send(http.get(timeline(&x, 99, ""))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["errors"][0]["type"],
        "https://api.twitter.com/2/problems/resource-not-found"
    );
}

#[tokio::test]
async fn v1_1_timeline_shape() {
    let x = server(1, 20).await;
    let user = XServer::user_id(0);
    let url = format!(
        "{}/1.1/statuses/user_timeline.json?user_id={user}&count=200",
        x.base_url()
    );
    let (status, _, body) = send(client().get(&url)).await;
    assert_eq!(status, StatusCode::OK);
    let statuses = body.as_array().unwrap();
    assert_eq!(statuses.len(), 20);
    let oldest = statuses.last().unwrap();
    assert_eq!(oldest["created_at"], "Mon Jan 01 00:00:00 +0000 2024");
    for (json, post) in statuses.iter().zip(x.posts(user).iter().rev()) {
        assert_eq!(json["id_str"], post.id.to_string());
        assert_eq!(
            json["in_reply_to_status_id_str"].is_string(),
            post.kind == PostKind::Reply
        );
        assert_eq!(
            json.get("retweeted_status").is_some(),
            post.kind == PostKind::Retweet
        );
        assert_eq!(json["is_quote_status"], post.kind == PostKind::Quote);
        let tags: Vec<&str> = json["entities"]["hashtags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tag| tag["text"].as_str().unwrap())
            .collect();
        assert_eq!(tags, post.hashtags);
    }
    let posts = x.posts(user);
    let url = format!(
        "{}/1.1/statuses/user_timeline.json?user_id={user}&since_id={}&max_id={}&count=3",
        x.base_url(),
        posts[5].id,
        posts[15].id
    );
    let (_, _, body) = send(client().get(&url)).await;
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id_str"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = [15, 14, 13]
        .iter()
        .map(|&k| posts[k].id.to_string())
        .collect();
    assert_eq!(ids, expected);
}

/// A manual clock: Unix seconds.
fn manual_clock(start: u64) -> (Arc<AtomicU64>, XClock) {
    let now = Arc::new(AtomicU64::new(start));
    let read = Arc::clone(&now);
    (
        now,
        XClock(Arc::new(move || read.load(Ordering::Relaxed) as f64)),
    )
}

#[tokio::test]
async fn rate_limits_are_per_token_with_the_real_headers() {
    let (now, clock) = manual_clock(1_800_000_000);
    let x = XServer::start(XServerConfig {
        rate_limit: 3,
        rate_window: Duration::from_secs(900),
        clock,
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let http = client();
    let (a, b) = (XServer::user_id(0), XServer::user_id(1));
    for remaining in ["2", "1", "0"] {
        let (status, headers, _) = send(http.get(timeline(&x, a, ""))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-rate-limit-remaining"], remaining);
        assert_eq!(headers["x-rate-limit-reset"], "1800000900");
    }
    let (status, headers, body) = send(http.get(timeline(&x, a, ""))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["x-rate-limit-remaining"], "0");
    assert_eq!(body["title"], "Too Many Requests");
    // Another user's bucket is untouched.
    let (status, _, _) = send(http.get(timeline(&x, b, ""))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(x.stats().rate_limited, 1);
    // After the reset the window starts over.
    now.store(1_800_000_900, Ordering::Relaxed);
    let (status, headers, _) = send(http.get(timeline(&x, a, ""))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-rate-limit-reset"], "1800001800");

    x.set_usage_capped(true);
    let (status, headers, body) = send(http.get(timeline(&x, b, ""))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        body["type"],
        "https://api.twitter.com/2/problems/usage-capped"
    );
    assert_eq!(x.stats().usage_capped, 1);
}

/// Signs like a client would, with the fake's own RFC 5849 helpers.
fn oauth1_header(
    method: &str,
    url: &str,
    query: &str,
    consumer: (&str, &str),
    token: (&str, &str),
    nonce: &str,
    timestamp: u64,
) -> String {
    let mut params = BTreeMap::new();
    params.insert("oauth_consumer_key".to_owned(), consumer.0.to_owned());
    params.insert("oauth_nonce".to_owned(), nonce.to_owned());
    params.insert("oauth_signature_method".to_owned(), "HMAC-SHA1".to_owned());
    params.insert("oauth_timestamp".to_owned(), timestamp.to_string());
    params.insert("oauth_token".to_owned(), token.0.to_owned());
    params.insert("oauth_version".to_owned(), "1.0".to_owned());
    let base = oauth1::base_string(method, url, query, None, &params);
    params.insert(
        "oauth_signature".to_owned(),
        oauth1::sign(&base, consumer.1, token.1),
    );
    let fields: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", oauth1::encode(value)))
        .collect();
    format!("OAuth {}", fields.join(", "))
}

#[tokio::test]
async fn oauth1_signatures_are_verified() {
    let (_, clock) = manual_clock(1_800_000_000);
    let x = XServer::start(XServerConfig {
        auth: XAuth::OAuth1 {
            consumer_key: "ck".into(),
            consumer_secret: "consumer secret".into(),
        },
        clock,
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let user = XServer::user_id(0);
    x.link_oauth1_user(user, "user-token", "token secret", Scopes::READ);
    let http = client();
    let path = format!("/2/users/{user}/tweets");
    let query = "max_results=5&tweet.fields=created_at,entities";
    let url = format!("{}{path}?{query}", x.base_url());
    let signed = |nonce: &str, secret: &str, timestamp: u64| {
        oauth1_header(
            "GET",
            &format!("{}{path}", x.base_url()),
            query,
            ("ck", "consumer secret"),
            ("user-token", secret),
            nonce,
            timestamp,
        )
    };
    let (status, _, body) = send(
        http.get(&url)
            .header("authorization", signed("n1", "token secret", 1_800_000_000)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (header, why) in [
        (
            signed("n2", "wrong secret", 1_800_000_000),
            "wrong token secret",
        ),
        (
            signed("n1", "token secret", 1_800_000_000),
            "replayed nonce",
        ),
        (
            signed("n3", "token secret", 1_799_990_000),
            "stale timestamp",
        ),
        ("Bearer nope".to_owned(), "not OAuth 1.0a"),
    ] {
        let (status, headers, body) = send(http.get(&url).header("authorization", header)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}");
        assert!(headers.contains_key("www-authenticate"));
        assert_eq!(body["errors"][0]["code"], 32, "{why}");
    }
    // A tampered query no longer matches its signature.
    let tampered = format!(
        "{}{path}?max_results=6&tweet.fields=created_at,entities",
        x.base_url()
    );
    let (status, _, _) = send(
        http.get(&tampered)
            .header("authorization", signed("n4", "token secret", 1_800_000_000)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(x.stats().auth_failures, 5);
    // A read-only user may not post.
    let post_url = format!("{}/2/tweets", x.base_url());
    let header = oauth1_header(
        "POST",
        &post_url,
        "",
        ("ck", "consumer secret"),
        ("user-token", "token secret"),
        "n5",
        1_800_000_000,
    );
    let (status, _, body) = send(
        http.post(&post_url)
            .header("authorization", header)
            .json(&json!({"text": "hi"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(x.stats().posts_accepted, 0);
}

#[tokio::test]
async fn oauth2_bearer_refresh_rotation_and_posting() {
    let (now, clock) = manual_clock(1_800_000_000);
    let x = XServer::start(XServerConfig {
        auth: XAuth::OAuth2 {
            app_bearer: Some("app-token".into()),
        },
        access_token_lifetime: Duration::from_secs(7200),
        clock,
        ..XServerConfig::default()
    })
    .await
    .unwrap();
    let http = client();
    let user = XServer::user_id(1);
    let (status, _, _) = send(http.get(timeline(&x, user, "")).bearer_auth("app-token")).await;
    assert_eq!(status, StatusCode::OK);
    let post_url = format!("{}/2/tweets", x.base_url());
    let (status, _, _) = send(
        http.post(&post_url)
            .bearer_auth("app-token")
            .json(&json!({"text": "app"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the app token cannot post");

    let (access, refresh) = x.link_oauth2_user(user, Scopes::READ_WRITE);
    let (status, _, body) = send(
        http.post(&post_url)
            .bearer_auth(&access)
            .json(&json!({"text": "hello #World"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["data"]["text"], "hello #World");
    assert_eq!(x.posts(user).last().unwrap().id.to_string(), id);
    let (status, _, body) = send(
        http.post(&post_url)
            .bearer_auth(&access)
            .json(&json!({"text": "hello #World"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["detail"],
        "You are not allowed to create a Tweet with duplicate content."
    );
    assert_eq!(x.accepted_posts_by(user), 1);
    assert_eq!(x.accepted_posts_with("hello #World"), 1);
    assert_eq!(x.stats().duplicates_refused, 1);

    // Access tokens expire; the refresh token rotates; the old one is then refused.
    now.fetch_add(7200, Ordering::Relaxed);
    let (status, _, _) = send(http.get(timeline(&x, user, "")).bearer_auth(&access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token_url = format!("{}/2/oauth2/token", x.base_url());
    let form =
        |token: &str| format!("grant_type=refresh_token&refresh_token={token}&client_id=app");
    let (status, _, body) = send(
        http.post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&refresh)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    let new_access = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(body["refresh_token"], json!(refresh));
    let (status, _, _) = send(http.get(timeline(&x, user, "")).bearer_auth(&new_access)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(http.post(&token_url).body(form(&refresh))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!((x.stats().refreshes, x.stats().refresh_failures), (1, 1));

    // A dropped answer after an accepted post: created, counted, but no response.
    x.drop_after_accepting(1);
    let result = tokio::time::timeout(
        LIMIT,
        http.post(&post_url)
            .bearer_auth(&new_access)
            .json(&json!({"text": "lost answer"}))
            .send(),
    )
    .await
    .unwrap();
    assert!(result.is_err(), "the connection is dropped: {result:?}");
    assert_eq!(x.accepted_posts_with("lost answer"), 1);
    assert_eq!(x.stats().dropped_connections, 1);
    let (status, _, _) = send(
        http.post(&post_url)
            .bearer_auth(&new_access)
            .json(&json!({"text": "lost answer"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "posting again is a duplicate"
    );
}

#[tokio::test]
async fn failure_switches() {
    let x = server(2, 5).await;
    let http = client();
    let user = XServer::user_id(0);
    // A seeded fraction of 503s: the same seed fails the same arrivals.
    let mut pattern = Vec::new();
    x.fail_fraction(0.3, 7);
    for _ in 0..100 {
        let (status, _, _) = send(http.get(timeline(&x, user, ""))).await;
        pattern.push(status == StatusCode::SERVICE_UNAVAILABLE);
    }
    let failed = pattern.iter().filter(|f| **f).count();
    assert!((15..=45).contains(&failed), "{failed} of 100");
    let again = server(2, 5).await;
    again.fail_fraction(0.3, 7);
    let mut second = Vec::new();
    for _ in 0..100 {
        let (status, _, _) = send(http.get(timeline(&again, user, ""))).await;
        second.push(status == StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(pattern, second);
    assert_eq!(x.stats().unavailable, failed as u64);
    x.fail_fraction(0.0, 0);

    x.down_for(Duration::from_secs(3600), Outage::Unavailable);
    let (status, headers, _) = send(http.get(timeline(&x, user, ""))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    x.down_for(Duration::from_secs(3600), Outage::ConnectionDropped);
    let fresh = client();
    assert!(
        tokio::time::timeout(LIMIT, fresh.get(timeline(&x, user, "")).send())
            .await
            .unwrap()
            .is_err()
    );
    x.up();
    let (status, _, _) = send(fresh.get(timeline(&x, user, ""))).await;
    assert_eq!(status, StatusCode::OK);

    x.set_html_200(true);
    let (status, headers, body) = send(http.get(timeline(&x, user, ""))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(body.as_str().unwrap().contains("<!DOCTYPE html>"));
    x.set_html_200(false);

    let fields = "tweet.fields=created_at";
    x.set_shape(Some(ShapeChange::RenamedField));
    let (_, _, body) = send(http.get(timeline(&x, user, fields))).await;
    assert!(
        body["data"][0].get("created_at").is_none() && body["data"][0].get("createdAt").is_some()
    );
    x.set_shape(Some(ShapeChange::MissingField));
    let (_, _, body) = send(http.get(timeline(&x, user, fields))).await;
    assert!(body["data"][0].get("id").is_none());
    x.set_shape(Some(ShapeChange::WrongType));
    let (_, _, body) = send(http.get(timeline(&x, user, fields))).await;
    assert!(body["data"][0]["id"].is_u64());
    x.set_shape(Some(ShapeChange::NotAnObject));
    let (_, _, body) = send(http.get(timeline(&x, user, fields))).await;
    assert!(body.is_array());
}

#[tokio::test]
async fn a_held_user_does_not_hold_the_others() {
    let x = Arc::new(server(2, 5).await);
    let (slow, other) = (XServer::user_id(0), XServer::user_id(1));
    x.hold_user(slow);
    let held = tokio::spawn({
        let url = timeline(&x, slow, "");
        async move { client().get(url).send().await.map(|r| r.status()) }
    });
    let deadline = tokio::time::Instant::now() + LIMIT;
    while x.pending_for(slow) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _, _) = send(client().get(timeline(&x, other, ""))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(x.pending_for(slow), 1);
    x.release_users();
    assert_eq!(held.await.unwrap().unwrap(), StatusCode::OK);
    assert_eq!(x.pending_for(slow), 0);
    assert_eq!(x.timeline_requests_for(slow), 1);
}
