//! WebSub discovery (since WIT 0.1.3): tell the host that the target being polled has its
//! updates pushed by a hub. When the connector's TOML has `websub = true`, the host subscribes
//! with the hub, checks each delivery's signature, and answers the connector's next request for
//! the target's URL with the delivered update instead of going out; the target is then polled
//! only at `max_interval`. Without `websub = true` the call does nothing, so a connector may
//! always report what it found.
//!
//! ```no_run
//! let links = tsunagi_sdk::websub::links_from_header(
//!     r#"<https://hub.example/>; rel="hub", <https://blog.example/feed>; rel="self""#,
//! );
//! for hub in &links.hubs {
//!     tsunagi_sdk::websub::discovered(hub, links.topic.as_deref().unwrap_or("https://blog.example/feed"));
//! }
//! ```

use crate::__bindings::base::tsunagi::connector::websub as wit;

/// The host takes at most this many hubs per call.
pub const MAX_HUBS: usize = 4;

/// Reports that `hub` pushes the updates of `topic` (the feed's own URL).
pub fn discovered(hub: &str, topic: &str) {
    wit::discovered(hub, topic);
}

/// The WebSub links of an HTTP `Link` header (RFC 8288).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// `rel="hub"` targets, at most [`MAX_HUBS`], in order.
    pub hubs: Vec<String>,
    /// The first `rel="self"` target.
    pub topic: Option<String>,
}

/// Reads `rel="hub"` and `rel="self"` out of a `Link` header value (several links separated by
/// commas; `rel` may list several relations). Links it cannot read are skipped.
pub fn links_from_header(value: &str) -> Links {
    let mut links = Links::default();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let target = rest[open + 1..open + close].trim().to_string();
        let after = &rest[open + close + 1..];
        // The parameters run to the next link (a comma outside quotes) or the end.
        let mut quoted = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == ',' && !quoted
            })
            .map_or(after.len(), |(at, _)| at);
        let relations = after[..end]
            .split(';')
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("rel"))
            .map(|(_, value)| value.trim().trim_matches('"').to_ascii_lowercase())
            .unwrap_or_default();
        for relation in relations.split_ascii_whitespace() {
            match relation {
                "hub" if links.hubs.len() < MAX_HUBS && !links.hubs.contains(&target) => {
                    links.hubs.push(target.clone())
                }
                "self" if links.topic.is_none() => links.topic = Some(target.clone()),
                _ => {}
            }
        }
        rest = &after[end..];
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_and_self_links_are_read_from_a_link_header() {
        let links = links_from_header(
            r#"<https://hub.example/>; rel="hub", <https://blog.example/feed>; rel="self", <https://b.example/?a=1,2>; rel="alternate hub""#,
        );
        assert_eq!(
            links.hubs,
            ["https://hub.example/", "https://b.example/?a=1,2"]
        );
        assert_eq!(links.topic.as_deref(), Some("https://blog.example/feed"));
        assert_eq!(links_from_header("garbage, <unclosed"), Links::default());
        let many = (0..9)
            .map(|n| format!("<https://h{n}.example/>; rel=hub"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(links_from_header(&many).hubs.len(), MAX_HUBS);
    }
}
