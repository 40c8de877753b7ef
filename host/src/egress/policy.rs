//! The egress allowlist of one connector: which scheme, host and port its plugin may reach.
//! Nothing is reachable unless a rule from the connector's TOML allows it.

use crate::config::AllowRule;

/// The allowlist of one connector.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    connector: String,
    rules: Vec<AllowRule>,
}

/// Why a request was refused; shown to the plugin and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress refused by connector '{connector}' allowlist: {url} {reason}")]
pub struct EgressRefusal {
    pub connector: String,
    pub url: String,
    pub reason: String,
}

impl EgressPolicy {
    pub fn new(connector: &str, rules: Vec<AllowRule>) -> Self {
        let rules = rules
            .into_iter()
            .map(|rule| AllowRule {
                scheme: rule.scheme.map(|s| s.to_ascii_lowercase()),
                host: rule
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase(),
                port: rule.port,
            })
            .collect();
        Self {
            connector: connector.to_string(),
            rules,
        }
    }

    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// Allows the request if some rule matches its scheme, host and port. The URL is the one
    /// that will be sent (already normalised by the `url` crate, as the HTTP client sees it),
    /// so what is checked is what goes out.
    pub fn check(&self, url: &url::Url) -> Result<(), EgressRefusal> {
        let refuse = |reason: String| EgressRefusal {
            connector: self.connector.clone(),
            url: url.to_string(),
            reason,
        };
        let scheme = url.scheme();
        let host = match url.host() {
            Some(url::Host::Domain(domain)) => domain.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(refuse("has no host".to_string())),
        };
        let port = url.port_or_known_default();
        if self
            .rules
            .iter()
            .any(|rule| rule_matches(rule, scheme, &host, port))
        {
            return Ok(());
        }
        let reason = if self.rules.is_empty() {
            "matches no rule: [connectors.NAME.egress] allows nothing".to_string()
        } else {
            format!(
                "matches no rule of [{}]",
                self.rules
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(refuse(reason))
    }
}

fn rule_matches(rule: &AllowRule, scheme: &str, host: &str, port: Option<u16>) -> bool {
    if let Some(wanted) = &rule.scheme
        && !wanted.eq_ignore_ascii_case(scheme)
    {
        return false;
    }
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let pattern = rule.host.as_str();
    let host_ok = if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix("*.") {
        host.strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.'))
    } else {
        pattern == host
    };
    if !host_ok {
        return false;
    }
    match rule.port {
        Some(wanted) => port == Some(wanted),
        // Without a port, a rule allows the scheme's default port only.
        None => match (rule.scheme.as_deref(), port) {
            (Some("http"), Some(80)) | (Some("https"), Some(443)) => true,
            (None, Some(80)) => scheme == "http",
            (None, Some(443)) => scheme == "https",
            _ => false,
        },
    }
}

fn describe(rule: &AllowRule) -> String {
    format!(
        "{}://{}{}",
        rule.scheme.as_deref().unwrap_or("http(s)"),
        rule.host,
        rule.port.map(|p| format!(":{p}")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(scheme: Option<&str>, host: &str, port: Option<u16>) -> AllowRule {
        AllowRule {
            scheme: scheme.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    fn allowed(policy: &EgressPolicy, url: &str) -> bool {
        policy.check(&url::Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn exact_host_and_port() {
        let policy = EgressPolicy::new("rss", vec![rule(Some("http"), "127.0.0.1", Some(8080))]);
        assert!(allowed(&policy, "http://127.0.0.1:8080/feed"));
        assert!(!allowed(&policy, "http://127.0.0.1:6379/"));
        assert!(!allowed(&policy, "https://127.0.0.1:8080/feed"));
        assert!(!allowed(&policy, "http://169.254.169.254/latest/meta-data"));
    }

    #[test]
    fn wildcard_subdomains_and_default_ports() {
        let policy = EgressPolicy::new("x", vec![rule(Some("https"), "*.example.com", None)]);
        assert!(allowed(&policy, "https://api.example.com/v2"));
        assert!(!allowed(&policy, "https://example.com/"));
        assert!(!allowed(&policy, "https://api.example.com:8443/"));
        assert!(!allowed(&policy, "http://api.example.com/"));
    }

    #[test]
    fn refusal_names_connector_and_rules() {
        let policy = EgressPolicy::new("rss", vec![rule(Some("http"), "127.0.0.1", Some(8080))]);
        let refusal = policy
            .check(&"http://10.0.0.1/".parse().unwrap())
            .unwrap_err();
        let text = refusal.to_string();
        assert!(text.contains("'rss'"), "{text}");
        assert!(text.contains("http://127.0.0.1:8080"), "{text}");
        assert!(text.contains("http://10.0.0.1/"), "{text}");
    }

    #[test]
    fn numeric_host_spellings_are_checked_as_the_address_they_mean() {
        let policy = EgressPolicy::new("rss", vec![rule(Some("http"), "example.com", None)]);
        assert!(
            !allowed(&policy, "http://2130706433/"),
            "127.0.0.1 spelled as a number"
        );
        assert!(!allowed(&policy, "http://0x7f.1/"));
        let loopback = EgressPolicy::new("rss", vec![rule(Some("http"), "[::1]", Some(80))]);
        assert!(allowed(&loopback, "http://[::1]/"));
        assert!(
            allowed(&policy, "http://EXAMPLE.com/"),
            "hosts compare case-insensitively"
        );
        assert!(!allowed(&policy, "http://user@evil.example/"));
    }

    #[test]
    fn empty_allowlist_refuses_everything() {
        let policy = EgressPolicy::new("rss", vec![]);
        assert!(!allowed(&policy, "https://example.com/"));
    }
}
