//! X timelines → items, without any I/O: one page of an X API v2 `GET /2/users/{id}/tweets`
//! or v1.1 `statuses/user_timeline.json` answer, checked field by field.
//!
//! The answer is distrusted: anything that is not the documented shape (an HTML page, a JSON
//! that is not an object, a missing or renamed field, a wrong type) is a `bad-response` naming
//! the user and the field, and nothing of the page is used.

use chrono::{DateTime, SecondsFormat, Utc};
use tsunagi_sdk::json::{Map, Value};
use tsunagi_sdk::{Error, Item, Result};

/// One page of a timeline, newest first as X sends it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub posts: Vec<Post>,
    /// v2 `meta.next_token`: there are older posts to fetch.
    pub next_token: Option<String>,
}

/// One post, as far as the connector needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub id: u64,
    pub text: String,
    /// RFC 3339, UTC, whole seconds.
    pub created_at: String,
    pub reply: bool,
    pub retweet: bool,
    pub quote: bool,
    pub hashtags: Vec<String>,
}

impl Post {
    /// The item: id = post id, published = the post's own time, content = its text,
    /// categories `x:reply` / `x:retweet` / `x:quote` and `#tag` (lower-cased) per hashtag.
    pub fn into_item(self, user: &str) -> Item {
        let mut categories = Vec::new();
        for (flag, name) in [
            (self.reply, "x:reply"),
            (self.retweet, "x:retweet"),
            (self.quote, "x:quote"),
        ] {
            if flag {
                categories.push(name.to_owned());
            }
        }
        for tag in self.hashtags {
            let tag = format!("#{}", tag.to_lowercase());
            if !categories.contains(&tag) {
                categories.push(tag);
            }
        }
        Item {
            id: self.id.to_string(),
            link: Some(format!("https://x.com/i/status/{}", self.id)),
            published: Some(self.created_at),
            authors: vec![user.to_owned()],
            content: Some(self.text),
            categories,
            ..Item::default()
        }
    }
}

/// Where in the answer a field is, for error messages: `data[3].created_at`.
struct At<'a> {
    user: &'a str,
}

impl At<'_> {
    fn bad(&self, field: &str, what: &str) -> Error {
        Error::bad_response(format!(
            "user {}: the timeline answer changed shape: field `{field}` {what}; nothing of this page was imported",
            self.user
        ))
    }
}

/// The body as a JSON document; an HTML page or anything that is not JSON is a bad response.
fn document(user: &str, content_type: Option<&str>, body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|err| {
        let kind = content_type.unwrap_or("no content-type");
        Error::bad_response(format!(
            "user {user}: the timeline answer is not JSON ({kind}): {err}; nothing of this page was imported"
        ))
    })
}

/// Parses one v2 page.
pub fn parse_v2(user: &str, content_type: Option<&str>, body: &[u8]) -> Result<Page> {
    let at = At { user };
    let document = document(user, content_type, body)?;
    let Value::Object(document) = document else {
        return Err(at.bad("(document)", "is not a JSON object"));
    };
    let data = match document.get("data") {
        None => None,
        Some(Value::Array(data)) => Some(data),
        Some(_) => return Err(at.bad("data", "is not an array")),
    };
    if data.is_none()
        && let Some(Value::Array(errors)) = document.get("errors")
    {
        // A 200 with only `errors`: the user does not exist, is suspended or protected.
        let detail = errors
            .first()
            .and_then(|error| error.get("detail").or_else(|| error.get("message")))
            .and_then(Value::as_str)
            .unwrap_or("an error without detail");
        return Err(Error::permanent(format!(
            "user {user}: X answered with an error: {detail}"
        )));
    }
    let meta = match document.get("meta") {
        Some(Value::Object(meta)) => meta,
        Some(_) => return Err(at.bad("meta", "is not an object")),
        None => return Err(at.bad("meta", "is missing")),
    };
    let count = match meta.get("result_count") {
        Some(Value::Number(count)) => count.as_u64(),
        Some(_) => return Err(at.bad("meta.result_count", "is not a number")),
        None => return Err(at.bad("meta.result_count", "is missing")),
    };
    let next_token = match meta.get("next_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if !token.is_empty() => Some(token.clone()),
        Some(_) => return Err(at.bad("meta.next_token", "is not a non-empty string")),
    };
    let data = data.map(Vec::as_slice).unwrap_or_default();
    if count != Some(data.len() as u64) {
        return Err(at.bad(
            "meta.result_count",
            &format!("says {count:?} but `data` has {} posts", data.len()),
        ));
    }
    let mut posts = Vec::with_capacity(data.len());
    for (index, post) in data.iter().enumerate() {
        let field = |name: &str| format!("data[{index}].{name}");
        let Value::Object(post) = post else {
            return Err(at.bad(&format!("data[{index}]"), "is not an object"));
        };
        let id = id_field(&at, post, "id", &field("id"))?;
        let text = string_field(&at, post, "text", &field("text"))?;
        let created = string_field(&at, post, "created_at", &field("created_at"))?;
        let created_at = rfc3339_utc(created)
            .ok_or_else(|| at.bad(&field("created_at"), "is not an RFC 3339 time"))?;
        let (mut reply, mut retweet, mut quote) = (false, false, false);
        match post.get("referenced_tweets") {
            None => {}
            Some(Value::Array(references)) => {
                for (r, reference) in references.iter().enumerate() {
                    let name = field(&format!("referenced_tweets[{r}].type"));
                    match reference.get("type").and_then(Value::as_str) {
                        Some("replied_to") => reply = true,
                        Some("retweeted") => retweet = true,
                        Some("quoted") => quote = true,
                        Some(_) => {}
                        None => return Err(at.bad(&name, "is missing or not a string")),
                    }
                }
            }
            Some(_) => return Err(at.bad(&field("referenced_tweets"), "is not an array")),
        }
        let hashtags = hashtags(&at, post, "tag", &field("entities"))?;
        posts.push(Post {
            id,
            text: text.to_owned(),
            created_at,
            reply,
            retweet,
            quote,
            hashtags,
        });
    }
    Ok(Page { posts, next_token })
}

/// Parses one v1.1 page (an array of statuses).
pub fn parse_v11(user: &str, content_type: Option<&str>, body: &[u8]) -> Result<Page> {
    let at = At { user };
    let document = document(user, content_type, body)?;
    let Value::Array(statuses) = document else {
        return Err(at.bad("(document)", "is not a JSON array of statuses"));
    };
    let mut posts = Vec::with_capacity(statuses.len());
    for (index, status) in statuses.iter().enumerate() {
        let field = |name: &str| format!("[{index}].{name}");
        let Value::Object(status) = status else {
            return Err(at.bad(&format!("[{index}]"), "is not an object"));
        };
        let id = id_field(&at, status, "id_str", &field("id_str"))?;
        let text = match status.get("full_text") {
            Some(Value::String(text)) => text.as_str(),
            _ => string_field(&at, status, "text", &field("text"))?,
        };
        let created = string_field(&at, status, "created_at", &field("created_at"))?;
        let created_at = v11_time(created).ok_or_else(|| {
            at.bad(
                &field("created_at"),
                "is not a time like `Wed Oct 10 20:19:24 +0000 2018`",
            )
        })?;
        let reply = match status.get("in_reply_to_status_id_str") {
            None | Some(Value::Null) => false,
            Some(Value::String(_)) => true,
            Some(_) => {
                return Err(at.bad(&field("in_reply_to_status_id_str"), "is not a string"));
            }
        };
        let retweet = match status.get("retweeted_status") {
            None | Some(Value::Null) => false,
            Some(Value::Object(_)) => true,
            Some(_) => return Err(at.bad(&field("retweeted_status"), "is not an object")),
        };
        let quote = match status.get("is_quote_status") {
            None => false,
            Some(Value::Bool(quote)) => *quote,
            Some(_) => return Err(at.bad(&field("is_quote_status"), "is not a boolean")),
        };
        let hashtags = hashtags(&at, status, "text", &field("entities"))?;
        posts.push(Post {
            id,
            text: text.to_owned(),
            created_at,
            reply,
            retweet,
            quote,
            hashtags,
        });
    }
    Ok(Page {
        posts,
        next_token: None,
    })
}

/// A post id: a string of decimal digits (X ids exceed JavaScript's integers, hence strings).
fn id_field(at: &At<'_>, object: &Map<String, Value>, key: &str, name: &str) -> Result<u64> {
    match object.get(key) {
        Some(Value::String(id)) => id
            .parse()
            .map_err(|_| at.bad(name, "is not a decimal post id")),
        Some(_) => Err(at.bad(name, "is not a string")),
        None => Err(at.bad(name, "is missing")),
    }
}

fn string_field<'a>(
    at: &At<'_>,
    object: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<&'a str> {
    match object.get(key) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(at.bad(name, "is not a string")),
        None => Err(at.bad(name, "is missing")),
    }
}

/// `entities.hashtags[].{tag_key}`; absent entities or hashtags are none.
fn hashtags(
    at: &At<'_>,
    object: &Map<String, Value>,
    tag_key: &str,
    name: &str,
) -> Result<Vec<String>> {
    let entities = match object.get("entities") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(entities)) => entities,
        Some(_) => return Err(at.bad(name, "is not an object")),
    };
    let tags = match entities.get("hashtags") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tags)) => tags,
        Some(_) => return Err(at.bad(&format!("{name}.hashtags"), "is not an array")),
    };
    tags.iter()
        .enumerate()
        .map(|(index, tag)| {
            tag.get(tag_key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    at.bad(
                        &format!("{name}.hashtags[{index}].{tag_key}"),
                        "is missing or not a string",
                    )
                })
        })
        .collect()
}

/// RFC 3339 → UTC, whole seconds.
pub fn rfc3339_utc(text: &str) -> Option<String> {
    let at = DateTime::parse_from_rfc3339(text).ok()?;
    Some(
        at.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// v1.1 `Wed Oct 10 20:19:24 +0000 2018` → RFC 3339 UTC.
pub fn v11_time(text: &str) -> Option<String> {
    let at = DateTime::parse_from_str(text, "%a %b %d %H:%M:%S %z %Y").ok()?;
    Some(
        at.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_sdk::ErrorKind;

    const USER: &str = "2244994945";

    const V2: &str = r##"{
      "data": [
        {"id": "1460323737035677700", "text": "RT @a: hi #Rust", "created_at": "2024-01-01T00:00:02.000Z",
         "edit_history_tweet_ids": ["1460323737035677700"],
         "referenced_tweets": [{"type": "retweeted", "id": "1"}],
         "entities": {"hashtags": [{"start": 11, "end": 16, "tag": "Rust"}]}},
        {"id": "1460323737035677699", "text": "@a thanks", "created_at": "2024-01-01T09:00:01+09:00",
         "referenced_tweets": [{"type": "replied_to", "id": "2"}, {"type": "quoted", "id": "3"}]},
        {"id": "1460323737035677698", "text": "plain", "created_at": "2024-01-01T00:00:00.000Z"}
      ],
      "meta": {"result_count": 3, "newest_id": "1460323737035677700",
               "oldest_id": "1460323737035677698", "next_token": "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i"}
    }"##;

    #[test]
    fn a_v2_page_maps_field_by_field() {
        let page = parse_v2(USER, Some("application/json"), V2.as_bytes()).unwrap();
        assert_eq!(
            page.next_token.as_deref(),
            Some("7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i")
        );
        assert_eq!(page.posts.len(), 3);
        let items: Vec<Item> = page.posts.into_iter().map(|p| p.into_item(USER)).collect();
        assert_eq!(
            items[0],
            Item {
                id: "1460323737035677700".into(),
                link: Some("https://x.com/i/status/1460323737035677700".into()),
                published: Some("2024-01-01T00:00:02Z".into()),
                authors: vec![USER.into()],
                content: Some("RT @a: hi #Rust".into()),
                categories: vec!["x:retweet".into(), "#rust".into()],
                ..Item::default()
            }
        );
        assert_eq!(items[1].categories, ["x:reply", "x:quote"]);
        assert_eq!(items[1].published.as_deref(), Some("2024-01-01T00:00:01Z"));
        assert!(items[2].categories.is_empty());
    }

    #[test]
    fn an_empty_v2_page_has_no_data() {
        let page = parse_v2(USER, None, br#"{"meta": {"result_count": 0}}"#).unwrap();
        assert_eq!(page, Page::default());
    }

    fn bad_v2(body: &str) -> String {
        let err = parse_v2(USER, Some("text/html"), body.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadResponse, "{err}");
        assert!(
            err.message().starts_with(&format!("user {USER}: ")),
            "{err}"
        );
        err.message().to_owned()
    }

    #[test]
    fn changed_v2_shapes_are_bad_responses_naming_the_field() {
        let html = bad_v2("<!DOCTYPE html><html></html>");
        assert!(html.contains("not JSON (text/html)"), "{html}");
        assert!(bad_v2("[1, 2]").contains("field `(document)` is not a JSON object"));
        assert!(bad_v2(r#"{"data": []}"#).contains("field `meta` is missing"));
        assert!(
            bad_v2(r#"{"data": {}, "meta": {"result_count": 0}}"#)
                .contains("field `data` is not an array")
        );
        let renamed = V2.replacen(
            "\"created_at\": \"2024-01-01T09",
            "\"createdAt\": \"2024-01-01T09",
            1,
        );
        assert!(bad_v2(&renamed).contains("field `data[1].created_at` is missing"));
        let missing = V2.replacen("\"id\": \"1460323737035677698\", ", "", 1);
        assert!(bad_v2(&missing).contains("field `data[2].id` is missing"));
        let number = V2.replacen(
            "\"id\": \"1460323737035677698\"",
            "\"id\": 1460323737035677698",
            1,
        );
        assert!(bad_v2(&number).contains("field `data[2].id` is not a string"));
        let date = V2.replacen("2024-01-01T00:00:00.000Z", "yesterday", 1);
        assert!(bad_v2(&date).contains("field `data[2].created_at` is not an RFC 3339 time"));
        let count = V2.replacen("\"result_count\": 3", "\"result_count\": 2", 1);
        assert!(bad_v2(&count).contains("meta.result_count"));
        let tag = V2.replacen("\"tag\": \"Rust\"", "\"tag\": 5", 1);
        assert!(bad_v2(&tag).contains("data[0].entities.hashtags[0].tag"));
    }

    #[test]
    fn an_errors_only_answer_is_permanent() {
        let err = parse_v2(
            USER,
            None,
            br#"{"errors": [{"detail": "Could not find user with id: [1].", "title": "Not Found Error"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permanent);
        assert_eq!(
            err.message(),
            format!("user {USER}: X answered with an error: Could not find user with id: [1].")
        );
    }

    const V11: &str = r##"[
      {"created_at": "Wed Oct 10 20:19:24 +0000 2018", "id": 1050118621198921728,
       "id_str": "1050118621198921728", "text": "To make room for more expression #Ads #ads",
       "entities": {"hashtags": [{"text": "Ads", "indices": [33, 37]}, {"text": "ads", "indices": [38, 42]}]},
       "in_reply_to_status_id_str": null, "is_quote_status": false},
      {"created_at": "Wed Oct 10 20:19:20 +0000 2018", "id_str": "1050118621198921727",
       "text": "RT @x: y", "retweeted_status": {"id_str": "5"}, "in_reply_to_status_id_str": null,
       "is_quote_status": true, "entities": {"hashtags": []}},
      {"created_at": "Wed Oct 10 20:19:10 +0000 2018", "id_str": "1050118621198921726",
       "text": "@x y", "in_reply_to_status_id_str": "7", "is_quote_status": false}
    ]"##;

    #[test]
    fn a_v1_1_page_maps_field_by_field() {
        let page = parse_v11(USER, None, V11.as_bytes()).unwrap();
        let items: Vec<Item> = page.posts.into_iter().map(|p| p.into_item(USER)).collect();
        assert_eq!(items[0].published.as_deref(), Some("2018-10-10T20:19:24Z"));
        // Two hashtags that differ only in case are one category.
        assert_eq!(items[0].categories, ["#ads"]);
        assert_eq!(items[1].categories, ["x:retweet", "x:quote"]);
        assert_eq!(items[2].categories, ["x:reply"]);
        assert_eq!(items[2].id, "1050118621198921726");
    }

    #[test]
    fn changed_v1_1_shapes_are_bad_responses() {
        let bad = |body: &str| {
            let err = parse_v11(USER, None, body.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadResponse, "{err}");
            err.message().to_owned()
        };
        assert!(bad(r#"{"statuses": []}"#).contains("is not a JSON array of statuses"));
        assert!(
            bad(&V11.replacen(
                "\"id_str\": \"1050118621198921727\"",
                "\"id_str\": 1050118621198921727",
                1
            ))
            .contains("`[1].id_str` is not a string")
        );
        assert!(
            bad(&V11.replacen("Wed Oct 10 20:19:10 +0000 2018", "2018-10-10", 1))
                .contains("`[2].created_at`")
        );
        assert!(
            bad(&V11.replacen(
                "\"is_quote_status\": true",
                "\"is_quote_status\": \"yes\"",
                1
            ))
            .contains("`[1].is_quote_status` is not a boolean")
        );
    }
}
