//! `weblogUpdates.ping` and `weblogUpdates.extendedPing`, the XML-RPC calls blog software sends
//! when a blog changes: the call read from its XML (bounded, no DTD, no entities beyond XML's
//! own), the feed or site it names, and the answer — a `flerror = 0` struct when some target
//! was made due, an XML-RPC fault (with nothing changed) when the call is malformed or names
//! nothing we crawl.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Parameters a call may carry (extendedPing has five); more is no ping.
const MAX_PARAMS: usize = 8;
/// A parameter's text: URLs are targets, capped like targets.
const MAX_PARAM: usize = tsunagi_backends::MAX_TARGET_BYTES;

/// A ping as the pinger sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The blog's name (first parameter), for the log.
    pub name: String,
    /// The blog's home page.
    pub site: String,
    /// extendedPing's feed URL, the better key when present.
    pub feed: Option<String>,
}

/// XML-RPC fault codes: the standard ones for a bad call, and one for a ping naming nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingFault {
    #[error("not an XML-RPC call: {0}")]
    Parse(String),
    #[error(
        "unknown method {0:?}: this endpoint answers weblogUpdates.ping and weblogUpdates.extendedPing"
    )]
    Method(String),
    #[error("{0}")]
    Params(String),
    #[error("no feed is crawled at {0} or under it")]
    Unknown(String),
    #[error("the store is unavailable; ping again later")]
    Unavailable,
}

impl PingFault {
    fn code(&self) -> i32 {
        match self {
            PingFault::Parse(_) => -32700,
            PingFault::Method(_) => -32601,
            PingFault::Params(_) => -32602,
            PingFault::Unknown(_) => 1,
            PingFault::Unavailable => -32500,
        }
    }
}

/// Reads one `methodCall` document.
pub fn parse(body: &[u8]) -> Result<Ping, PingFault> {
    let text =
        std::str::from_utf8(body).map_err(|_| PingFault::Parse("the body is not UTF-8".into()))?;
    let mut reader = Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut method: Option<String> = None;
    let mut params: Vec<String> = Vec::new();
    let bad = |what: String| PingFault::Parse(what);
    loop {
        let event = reader
            .read_event()
            .map_err(|error| bad(format!("{error} at byte {}", reader.buffer_position())))?;
        match event {
            Event::Start(start) => {
                if path.len() >= 8 {
                    return Err(bad("elements nested deeper than an XML-RPC call".into()));
                }
                let name = start.local_name().into_inner().to_string();
                if name == "param" {
                    if params.len() == MAX_PARAMS {
                        return Err(PingFault::Params(format!(
                            "more than {MAX_PARAMS} parameters"
                        )));
                    }
                    params.push(String::new());
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Empty(_) => {}
            Event::Text(text) => {
                append(&path, &text.xml10_content(), &mut method, &mut params)?;
            }
            Event::GeneralRef(reference) => {
                // `&amp;`, `&#38;` and friends arrive as references; any other is no XML-RPC.
                let name = reference.xml10_content().into_owned();
                let value = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_xml_entity(&name)
                        .ok_or_else(|| bad(format!("unknown entity &{name};")))?
                        .to_string(),
                };
                append(&path, &value, &mut method, &mut params)?;
            }
            Event::CData(data) => {
                append(&path, &data.xml10_content(), &mut method, &mut params)?;
            }
            Event::DocType(_) => {
                return Err(bad("a DOCTYPE has no place in an XML-RPC call".into()));
            }
            Event::Eof => {
                if let Some(open) = path.last() {
                    return Err(bad(format!("the call ends inside <{open}>")));
                }
                break;
            }
            _ => {}
        }
    }
    let method = method.map(|m| m.trim().to_string()).unwrap_or_default();
    if method.is_empty() {
        return Err(bad("no methodName".into()));
    }
    let params: Vec<String> = params.into_iter().map(|p| p.trim().to_string()).collect();
    let url = |index: usize, what: &str| -> Result<String, PingFault> {
        let value = params
            .get(index)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                PingFault::Params(format!(
                    "{method} needs the {what} as parameter {}",
                    index + 1
                ))
            })?;
        http_url(value).ok_or_else(|| {
            PingFault::Params(format!(
                "parameter {} ({what}) is not an http(s) URL: {}",
                index + 1,
                crate::redact::url(value)
            ))
        })
    };
    match method.as_str() {
        "weblogUpdates.ping" => Ok(Ping {
            name: params.first().cloned().unwrap_or_default(),
            site: url(1, "site URL")?,
            feed: None,
        }),
        "weblogUpdates.extendedPing" => Ok(Ping {
            name: params.first().cloned().unwrap_or_default(),
            site: url(1, "site URL")?,
            feed: Some(url(3, "feed URL")?),
        }),
        _ => Err(PingFault::Method(method.chars().take(64).collect())),
    }
}

/// Text inside `methodName`, or inside a parameter's `value` (bare or in `<string>`).
fn append(
    path: &[String],
    value: &str,
    method: &mut Option<String>,
    params: &mut [String],
) -> Result<(), PingFault> {
    let at = |depth: usize, name: &str| path.get(depth).is_some_and(|n| n == name);
    if path.len() == 2 && at(0, "methodCall") && at(1, "methodName") {
        let name = method.get_or_insert_with(String::new);
        if name.len() + value.len() > 128 {
            return Err(PingFault::Parse(
                "a methodName longer than 128 bytes".into(),
            ));
        }
        name.push_str(value);
    } else if path.len() >= 4
        && at(0, "methodCall")
        && at(1, "params")
        && at(2, "param")
        && at(3, "value")
        && (path.len() == 4 || (path.len() == 5 && at(4, "string")))
        && let Some(param) = params.last_mut()
    {
        if param.len() + value.len() > MAX_PARAM {
            return Err(PingFault::Params(format!(
                "parameter {} is longer than {MAX_PARAM} bytes",
                params.len()
            )));
        }
        param.push_str(value);
    }
    Ok(())
}

/// `value` as an absolute http(s) URL in its normal form, without a fragment.
fn http_url(value: &str) -> Option<String> {
    let mut url = url::Url::parse(value).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    Some(url.to_string())
}

/// The prefix under which a site's feeds live: its URL up to the last `/` of its path
/// (`https://blog.example/alice` and `…/alice/index.html` are both `https://blog.example/alice/`).
pub fn site_prefix(site: &str) -> String {
    let mut url = match url::Url::parse(site) {
        Ok(url) => url,
        Err(_) => return site.to_string(),
    };
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().to_string();
    let dir = if path.ends_with('/') {
        path
    } else {
        let last = path.rsplit('/').next().unwrap_or("");
        if last.contains('.') {
            path[..path.len() - last.len()].to_string()
        } else {
            format!("{path}/")
        }
    };
    url.set_path(&dir);
    url.to_string()
}

/// The success answer weblogUpdates clients expect.
pub fn success(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><struct>\
         <member><name>flerror</name><value><boolean>0</boolean></value></member>\
         <member><name>message</name><value><string>{}</string></value></member>\
         </struct></value></param></params></methodResponse>\n",
        escape(message)
    )
}

/// An XML-RPC fault.
pub fn fault(fault: &PingFault) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct>\
         <member><name>faultCode</name><value><int>{}</int></value></member>\
         <member><name>faultString</name><value><string>{}</string></value></member>\
         </struct></value></fault></methodResponse>\n",
        fault.code(),
        escape(&fault.to_string())
    )
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, params: &[&str]) -> String {
        let params: String = params
            .iter()
            .map(|p| format!("<param><value><string>{p}</string></value></param>"))
            .collect();
        format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName>\
             <params>{params}</params></methodCall>"
        )
    }

    #[test]
    fn both_methods_are_read_with_bare_and_string_values() {
        let ping = parse(
            call(
                "weblogUpdates.ping",
                &["Alice &amp; co", "https://blog.example/alice"],
            )
            .as_bytes(),
        )
        .expect("ping");
        assert_eq!(ping.name, "Alice & co");
        assert_eq!(
            (ping.site.as_str(), ping.feed),
            ("https://blog.example/alice", None)
        );

        let bare = "<methodCall><methodName>weblogUpdates.extendedPing</methodName><params>\
            <param><value>Alice</value></param><param><value>http://blog.example/</value></param>\
            <param><value>http://blog.example/changes</value></param>\
            <param><value><![CDATA[http://blog.example/feed.xml#top]]></value></param>\
            </params></methodCall>";
        let ping = parse(bare.as_bytes()).expect("extended");
        assert_eq!(ping.feed.as_deref(), Some("http://blog.example/feed.xml"));
    }

    #[test]
    fn malformed_calls_are_faults_that_say_why() {
        let cases: Vec<(Vec<u8>, i32, &str)> = vec![
            (
                b"<methodCall><methodName>weblogUpdates.ping".to_vec(),
                -32700,
                "not an XML-RPC call",
            ),
            (b"\xff\xfe<methodCall/>".to_vec(), -32700, "not UTF-8"),
            (
                b"<!DOCTYPE x [<!ENTITY a \"b\">]><methodCall/>".to_vec(),
                -32700,
                "DOCTYPE",
            ),
            (
                b"<methodCall><params/></methodCall>".to_vec(),
                -32700,
                "no methodName",
            ),
            (
                call("system.listMethods", &[]).into_bytes(),
                -32601,
                "unknown method",
            ),
            (
                call("weblogUpdates.ping", &["only a name"]).into_bytes(),
                -32602,
                "parameter 2",
            ),
            (
                call("weblogUpdates.ping", &["x", "ftp://blog.example/"]).into_bytes(),
                -32602,
                "not an http(s) URL",
            ),
            (
                call(
                    "weblogUpdates.extendedPing",
                    &["x", "https://a.example/", "c"],
                )
                .into_bytes(),
                -32602,
                "feed URL",
            ),
        ];
        for (body, code, says) in cases {
            let fault = parse(&body).expect_err("a fault");
            assert_eq!(fault.code(), code, "{fault}");
            assert!(fault.to_string().contains(says), "{fault}");
            let answer = super::fault(&fault);
            assert!(answer.contains(&format!("<int>{code}</int>")), "{answer}");
        }
        let long = "x".repeat(MAX_PARAM + 1);
        let fault = parse(call("weblogUpdates.ping", &["n", &long]).as_bytes()).expect_err("long");
        assert!(fault.to_string().contains("longer than"), "{fault}");
        let many: Vec<&str> = vec!["p"; MAX_PARAMS + 1];
        let fault = parse(call("weblogUpdates.ping", &many).as_bytes()).expect_err("many");
        assert!(fault.to_string().contains("more than"), "{fault}");
    }

    #[test]
    fn a_site_prefix_ends_at_a_path_boundary() {
        for (site, prefix) in [
            ("https://blog.example", "https://blog.example/"),
            ("https://blog.example/alice", "https://blog.example/alice/"),
            ("https://blog.example/alice/", "https://blog.example/alice/"),
            (
                "https://blog.example/alice/index.html?x=1",
                "https://blog.example/alice/",
            ),
        ] {
            assert_eq!(site_prefix(site), prefix, "{site}");
        }
    }
}
