//! A pinging client's calls: `weblogUpdates.ping` and `weblogUpdates.extendedPing` as blog
//! software sends them (XML-RPC `methodCall` documents), for tests to POST to a host's inbound
//! listener.

/// `weblogUpdates.ping(name, site)`.
pub fn ping(name: &str, site: &str) -> String {
    call("weblogUpdates.ping", &[name, site])
}

/// `weblogUpdates.extendedPing(name, site, changes, feed)`.
pub fn extended_ping(name: &str, site: &str, changes: &str, feed: &str) -> String {
    call("weblogUpdates.extendedPing", &[name, site, changes, feed])
}

/// Any method call with string parameters.
pub fn call(method: &str, params: &[&str]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\"?>\n<methodCall>\n<methodName>{}</methodName>\n<params>\n",
        escape(method)
    );
    for param in params {
        out.push_str("<param><value><string>");
        out.push_str(&escape(param));
        out.push_str("</string></value></param>\n");
    }
    out.push_str("</params>\n</methodCall>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
