//! What a post job asks for and what X's answers mean, without any I/O (unit-tested natively).
//!
//! The handler in `lib.rs` does the requests; everything it decides is here: whether a job may
//! be posted at all, how an answer of `POST /2/tweets` is read, and whether a user's recent
//! posts already hold the one an earlier attempt may have made.

use serde::Deserialize;
use tsunagi_sdk::http::Response;
use tsunagi_sdk::{Error, Result, json};

/// The origin the read connector stamps on what it imported: such posts are never mirrored
/// back (they would loop between the service and X).
pub const FROM_X: &str = "x";

/// X's limit on a post's length, in characters (X weighs some characters double; the upstream
/// has the last word, this only refuses what cannot possibly pass).
pub const MAX_TEXT_CHARS: usize = 280;

/// The payload of a `post` job, as the producer sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostJob {
    /// The text to post.
    pub text: String,
    /// Where the post came from (`"x"` for one imported from X).
    #[serde(default)]
    pub origin: Option<String>,
    /// The producer's own id of the post, echoed in the outcome's detail.
    #[serde(default)]
    pub source_id: Option<String>,
}

/// What to do with a job before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Post it.
    Post(PostJob),
    /// Complete it without posting, for this reason; never retried.
    Skip(String),
}

/// Checks a job's kind and payload. A job that can never be posted is a `permanent` error
/// (dead-lettered with the reason); one that must not be posted is skipped.
pub fn check(job_id: &str, kind: &str, payload: &str) -> Result<Verdict> {
    if kind != "post" {
        return Err(Error::permanent(format!(
            "job {job_id}: unknown kind {kind:?} (this connector carries out \"post\")"
        )));
    }
    let post: PostJob = serde_json::from_str(payload)
        .map_err(|err| Error::permanent(format!("job {job_id} (post): unusable payload: {err}")))?;
    if post.origin.as_deref() == Some(FROM_X) {
        return Ok(Verdict::Skip(
            "the post came from X (origin \"x\"): mirroring it back would loop".to_string(),
        ));
    }
    if post.text.trim().is_empty() {
        return Err(Error::permanent(format!(
            "job {job_id} (post): the text is empty"
        )));
    }
    let chars = post.text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(Error::permanent(format!(
            "job {job_id} (post): the text has {chars} characters, over X's {MAX_TEXT_CHARS}"
        )));
    }
    Ok(Verdict::Post(post))
}

/// The job's target as an X user id: digits only, so it can go into a URL path as it is.
pub fn user_id<'a>(job_id: &str, target: Option<&'a str>) -> Result<&'a str> {
    let target = target.ok_or_else(|| {
        Error::permanent(format!(
            "job {job_id} (post): the job names no user (enqueue it with a target)"
        ))
    })?;
    if target.is_empty() || target.len() > 20 || !target.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::permanent(format!(
            "job {job_id} (post): the target {target:?} is not an X user id (digits)"
        )));
    }
    Ok(target)
}

/// The id of the post `POST /2/tweets` created, from its answer.
pub fn created(response: Response, user: &str) -> Result<String> {
    let status = response.status();
    if status == 201 || status == 200 {
        let url = response.display_url().to_string();
        let body: json::Value = response.json()?;
        return body
            .get("data")
            .and_then(|data| data.get("id"))
            .and_then(json::Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::bad_response(format!(
                    "{url}: the answer to user {user}'s post has no string field data.id"
                ))
            });
    }
    Err(refusal(response, user))
}

/// How a failed answer is treated: 429 waits, 5xx retries, anything else (401, 403 and its
/// duplicate-content case, 400) is permanent and says why.
fn refusal(response: Response, user: &str) -> Error {
    let status = response.status();
    let url = response.display_url().to_string();
    let reason = response
        .text()
        .ok()
        .and_then(|text| serde_json::from_str::<json::Value>(&text).ok())
        .and_then(|body| problem_text(&body))
        .unwrap_or_default();
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    let message = format!("{url}: HTTP {status} for user {user}'s post{reason}");
    match status {
        429 => Error::rate_limited(message),
        500..=599 => Error::transient(message),
        _ => Error::permanent(message),
    }
}

/// The human part of an X error body: a problem's `detail` (or `title`), or the first entry of
/// an `errors` array.
fn problem_text(body: &json::Value) -> Option<String> {
    let text = |value: &json::Value, key: &str| {
        value
            .get(key)
            .and_then(json::Value::as_str)
            .map(str::to_string)
    };
    let found = text(body, "detail")
        .or_else(|| text(body, "title"))
        .or_else(|| {
            let first = body.get("errors")?.as_array()?.first()?;
            text(first, "message").or_else(|| text(first, "detail"))
        })?;
    // An upstream's words go into stored errors: keep them short.
    Some(found.chars().take(200).collect())
}

/// What one page of the user's recent posts says about the post an earlier attempt may have
/// made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// Found: the post's id.
    Found(String),
    /// Not on this page; the token of the next (older) page, if there is one.
    NotHere { next: Option<String> },
}

/// Looks through one page of the user's recent posts (`GET /2/users/{id}/tweets`) for one whose
/// text is exactly `text`: what an earlier attempt whose outcome is unknown may have created.
pub fn already_posted(response: Response, user: &str, text: &str) -> Result<Search> {
    let url = response.display_url().to_string();
    let response = response.error_for_status()?;
    let body: json::Value = response.json()?;
    let next = body
        .get("meta")
        .and_then(|meta| meta.get("next_token"))
        .and_then(json::Value::as_str)
        .map(str::to_string);
    let Some(data) = body.get("data") else {
        // X leaves `data` out when a user has no posts at all.
        return match body.get("meta") {
            Some(_) => Ok(Search::NotHere { next: None }),
            None => Err(Error::bad_response(format!(
                "{url}: user {user}'s timeline has neither data nor meta"
            ))),
        };
    };
    let posts = data.as_array().ok_or_else(|| {
        Error::bad_response(format!(
            "{url}: user {user}'s timeline: data is not an array"
        ))
    })?;
    for (index, post) in posts.iter().enumerate() {
        let field = |name: &str| {
            post.get(name).and_then(json::Value::as_str).ok_or_else(|| {
                Error::bad_response(format!(
                    "{url}: user {user}'s timeline: data[{index}].{name} is missing or not a string"
                ))
            })
        };
        if field("text")? == text {
            return Ok(Search::Found(field("id")?.to_string()));
        }
    }
    Ok(Search::NotHere { next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_sdk::ErrorKind;

    const URL: &str = "http://127.0.0.1:9/2/tweets";

    fn answer(status: u16, body: &str) -> Response {
        Response::from_text(status, URL, &[("content-type", "application/json")], body)
    }

    #[test]
    fn a_post_from_x_is_skipped_not_posted() {
        let verdict = check("j1", "post", r#"{"text":"hi","origin":"x"}"#).unwrap();
        assert!(matches!(verdict, Verdict::Skip(reason) if reason.contains("came from X")));
        let verdict = check("j1", "post", r#"{"text":"hi","origin":"service"}"#).unwrap();
        assert!(matches!(verdict, Verdict::Post(post) if post.text == "hi"));
    }

    #[test]
    fn jobs_that_can_never_be_posted_are_permanent_and_say_why() {
        for (kind, payload, says) in [
            ("delete", r#"{"text":"hi"}"#, "unknown kind \"delete\""),
            ("post", "{", "unusable payload"),
            (
                "post",
                r#"{"text":"hi","extra":1}"#,
                "unknown field `extra`",
            ),
            ("post", r#"{"text":"  "}"#, "the text is empty"),
        ] {
            let err = check("j7", kind, payload).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Permanent, "{kind} {payload}");
            assert!(err.message().contains(says), "{}", err.message());
            assert!(err.message().contains("j7"), "{}", err.message());
        }
        let long = format!(r#"{{"text":"{}"}}"#, "あ".repeat(281));
        let err = check("j8", "post", &long).unwrap_err();
        assert!(
            err.message().contains("281 characters"),
            "{}",
            err.message()
        );
        let at_limit = format!(r#"{{"text":"{}"}}"#, "あ".repeat(280));
        assert!(matches!(
            check("j8", "post", &at_limit),
            Ok(Verdict::Post(_))
        ));
    }

    #[test]
    fn the_target_must_be_a_user_id() {
        assert_eq!(user_id("j1", Some("2244994945")).unwrap(), "2244994945");
        for target in [
            None,
            Some(""),
            Some("12/../34"),
            Some("123456789012345678901"),
        ] {
            let err = user_id("j1", target).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Permanent, "{target:?}");
        }
    }

    #[test]
    fn a_created_post_gives_its_id_and_a_changed_shape_is_a_bad_response() {
        let id = created(
            answer(201, r#"{"data":{"id":"1445880548472328192","text":"hi"}}"#),
            "42",
        );
        assert_eq!(id.unwrap(), "1445880548472328192");
        for body in [r#"{"data":{"id":14}}"#, r#"{"id":"1"}"#, r#"{"data":{}}"#] {
            let err = created(answer(201, body), "42").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadResponse, "{body}");
            assert!(err.message().contains("data.id"), "{}", err.message());
        }
        let err = created(
            Response::from_text(
                201,
                URL,
                &[("content-type", "text/html")],
                "<html>oops</html>",
            ),
            "42",
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadResponse);
    }

    #[test]
    fn failures_are_sorted_by_what_a_retry_could_change() {
        let duplicate = r#"{"detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","title":"Forbidden","status":403}"#;
        let err = created(answer(403, duplicate), "42").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(
            err.message().contains("duplicate content"),
            "{}",
            err.message()
        );
        assert!(err.message().contains("user 42"), "{}", err.message());
        let unauthorized = r#"{"errors":[{"message":"Unauthorized","code":32}]}"#;
        let err = created(answer(401, unauthorized), "42").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert!(err.message().contains("Unauthorized"), "{}", err.message());
        let err = created(answer(429, r#"{"title":"Too Many Requests"}"#), "42").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        let err = created(answer(503, "<html>down</html>"), "42").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(
            err.message().ends_with("HTTP 503 for user 42's post"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn an_earlier_post_is_found_by_its_exact_text() {
        let timeline = r#"{"data":[{"id":"9","text":"other"},{"id":"8","text":"hi there"}],"meta":{"result_count":2,"next_token":"p2"}}"#;
        assert_eq!(
            already_posted(answer(200, timeline), "42", "hi there").unwrap(),
            Search::Found("8".to_string())
        );
        assert_eq!(
            already_posted(answer(200, timeline), "42", "hi").unwrap(),
            Search::NotHere {
                next: Some("p2".to_string())
            }
        );
        let empty = r#"{"meta":{"result_count":0}}"#;
        assert_eq!(
            already_posted(answer(200, empty), "42", "hi").unwrap(),
            Search::NotHere { next: None }
        );
        let renamed = r#"{"data":[{"id":"9","full_text":"hi"}],"meta":{}}"#;
        let err = already_posted(answer(200, renamed), "42", "hi").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        assert!(err.message().contains("data[0].text"), "{}", err.message());
        let err = already_posted(answer(200, r#"{"errors":[]}"#), "42", "hi").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadResponse);
        let err = already_posted(answer(503, "down"), "42", "hi").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
    }
}
