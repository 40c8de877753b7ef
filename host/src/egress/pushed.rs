//! An update a hub pushed (WebSub content distribution), standing in for the upstream's answer:
//! the call it was handed to gets it as the response to its first `GET` of the target's own
//! URL, and nothing goes out for that request. The plugin reads it like any fetch, so the
//! connector's own parser turns it into items; every other request of the call goes out as
//! usual.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::WasiBody;

/// A delivered body and its `Content-Type`, for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedContent {
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl PushedContent {
    /// Whether this is the request the delivery answers: a `GET` of the call's target.
    pub fn answers(target: &str, method: &http::Method, uri: &http::Uri) -> bool {
        if method != http::Method::GET {
            return false;
        }
        let parse = |text: &str| {
            url::Url::parse(text).ok().map(|mut url| {
                url.set_fragment(None);
                url
            })
        };
        parse(target).is_some_and(|target| parse(&uri.to_string()) == Some(target))
    }

    /// The response the plugin gets: 200, the delivery's `Content-Type`, its body.
    pub fn into_response(self) -> http::Result<http::Response<WasiBody>> {
        let mut builder = http::Response::builder().status(http::StatusCode::OK);
        if let Some(kind) = self
            .content_type
            .as_deref()
            .and_then(|kind| http::HeaderValue::from_str(kind).ok())
        {
            builder = builder.header(http::header::CONTENT_TYPE, kind);
        }
        builder.body(
            Full::new(self.body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_of_the_target_itself_is_answered() {
        let target = "http://127.0.0.1:9/feeds/1";
        let uri = |text: &str| text.parse::<http::Uri>().unwrap();
        assert!(PushedContent::answers(
            target,
            &http::Method::GET,
            &uri(target)
        ));
        assert!(PushedContent::answers(
            "HTTP://127.0.0.1:9/feeds/1#top",
            &http::Method::GET,
            &uri(target)
        ));
        assert!(!PushedContent::answers(
            target,
            &http::Method::POST,
            &uri(target)
        ));
        assert!(!PushedContent::answers(
            target,
            &http::Method::GET,
            &uri("http://127.0.0.1:9/feeds/2")
        ));
    }
}
