//! The egress allowlist of one connector: which scheme, host and port its plugin may reach.
//! Nothing is reachable unless a rule from the connector's TOML allows it, and no internal
//! address (loopback, private, link-local, metadata) unless the rule says so explicitly: by
//! naming the address itself, or with `allow_internal = true` (see `addresses`).

use super::addresses::internal_reason;
use crate::config::AllowRule;
use std::net::{IpAddr, SocketAddr};

/// The allowlist of one connector.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    connector: String,
    rules: Vec<AllowRule>,
    /// Every URL passes (see [`EgressPolicy::replay_only`]).
    allow_all: bool,
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
                ..rule
            })
            .collect();
        Self {
            connector: connector.to_string(),
            rules,
            allow_all: false,
        }
    }

    /// A policy that lets every URL through, for a connector whose upstream is a cassette
    /// replay (`tsunagi plugin test`): nothing it sends leaves the process, and a request to an
    /// unrecorded URL should be reported as unmatched, not refused.
    pub fn replay_only(connector: &str) -> Self {
        Self {
            allow_all: true,
            ..Self::new(connector, Vec::new())
        }
    }

    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The rules, normalised, in TOML order; [`Self::check`] answers with an index into them.
    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    /// Allows the request if some rule matches its scheme, host and port, and answers which
    /// (the first such rule). The URL is the one that will be sent (already normalised by the
    /// `url` crate, as the HTTP client sees it), so what is checked is what goes out. A URL
    /// that spells an internal address is allowed only by a rule that names that address or
    /// sets `allow_internal`.
    pub fn check(&self, url: &url::Url) -> Result<usize, EgressRefusal> {
        let refuse = |reason: String| EgressRefusal {
            connector: self.connector.clone(),
            url: url.to_string(),
            reason,
        };
        if self.allow_all {
            return Ok(usize::MAX);
        }
        let scheme = url.scheme();
        let (host, address) = match url.host() {
            Some(url::Host::Domain(domain)) => (domain.to_string(), None),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err(refuse("has no host".to_string())),
        };
        let port = url.port_or_known_default();
        let mut matching = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule_matches(rule, scheme, &host, port))
            .peekable();
        if matching.peek().is_some() {
            let internal = address.and_then(|ip| internal_reason(ip).map(|why| (ip, why)));
            let Some((ip, why)) = internal else {
                // For a name, a rule that opts into internal addresses wins: its requests
                // resolve through the client that may reach them (see `addresses`).
                let matching: Vec<usize> = matching.map(|(index, _)| index).collect();
                let chosen = matching
                    .iter()
                    .find(|index| address.is_none() && self.rules[**index].allow_internal)
                    .or(matching.first());
                return Ok(chosen.copied().unwrap_or(0));
            };
            if let Some((index, _)) = matching.find(|(_, rule)| rule.permits_internal(ip)) {
                return Ok(index);
            }
            return Err(refuse(format!(
                "is {why}; internal addresses need a rule that names the address or sets \
                 allow_internal = true"
            )));
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

    /// The addresses `host` resolved to that this connector may connect to: with `opt_in` (the
    /// request's rule sets `allow_internal`) all of them if a rule for the host opts in,
    /// otherwise only the public ones. Refuses when none is left, naming the first address
    /// dropped and why.
    pub fn screen_addresses(
        &self,
        host: &str,
        resolved: &[SocketAddr],
        opt_in: bool,
    ) -> Result<Vec<SocketAddr>, EgressRefusal> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let rules: Vec<&AllowRule> = self
            .rules
            .iter()
            .filter(|rule| host_matches(&rule.host, &host))
            .collect();
        let mut dropped = None;
        let permitted: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|address| match internal_reason(address.ip()) {
                None => true,
                Some(why) => {
                    let allowed = opt_in && rules.iter().any(|rule| rule.allow_internal);
                    if !allowed {
                        dropped.get_or_insert((address.ip(), why));
                    }
                    allowed
                }
            })
            .collect();
        if !permitted.is_empty() {
            return Ok(permitted);
        }
        let reason = match dropped {
            Some((ip, why)) => format!(
                "resolves to {ip}, {why}; internal addresses need a rule with \
                 allow_internal = true"
            ),
            None => "resolves to no address".to_string(),
        };
        Err(EgressRefusal {
            connector: self.connector.clone(),
            url: host,
            reason,
        })
    }
}

impl AllowRule {
    /// Whether this rule lets a request reach the internal address `ip`.
    fn permits_internal(&self, ip: IpAddr) -> bool {
        self.allow_internal || self.host.parse::<IpAddr>().is_ok_and(|named| named == ip)
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
    if !host_matches(&rule.host, host) {
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

fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix("*.") {
        host.strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.'))
    } else {
        pattern == host
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
            ..AllowRule::default()
        }
    }

    fn allowed(policy: &EgressPolicy, url: &str) -> bool {
        policy.check(&url::Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn only_a_replay_policy_passes_what_no_rule_allows() {
        let replay = EgressPolicy::replay_only("test");
        let strict = EgressPolicy::new("test", Vec::new());
        for url in [
            "http://127.0.0.1:38517/x",
            "https://api.example.com/",
            "http://10.0.0.1/",
        ] {
            assert!(allowed(&replay, url), "{url}");
            assert!(!allowed(&strict, url), "{url}");
        }
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
    fn internal_addresses_need_an_explicit_rule() {
        let wildcard = EgressPolicy::new("rss", vec![rule(Some("http"), "*", None)]);
        assert!(allowed(&wildcard, "http://93.184.216.34/"));
        for url in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let refusal = wildcard.check(&url.parse().unwrap()).unwrap_err();
            assert!(
                refusal.reason.contains("internal addresses need"),
                "{url}: {refusal}"
            );
        }
        let named = EgressPolicy::new("rss", vec![rule(Some("http"), "127.0.0.1", Some(80))]);
        assert!(allowed(&named, "http://127.0.0.1/"));
        let mut opt_in = rule(Some("http"), "*", None);
        opt_in.allow_internal = true;
        assert!(allowed(
            &EgressPolicy::new("rss", vec![opt_in]),
            "http://10.0.0.1/"
        ));
    }

    #[test]
    fn resolved_addresses_are_screened() {
        let address = |text: &str| -> SocketAddr { text.parse().unwrap() };
        let policy = EgressPolicy::new(
            "rss",
            vec![
                rule(Some("http"), "*.example.com", None),
                AllowRule {
                    allow_internal: true,
                    ..rule(Some("http"), "intranet.example.org", None)
                },
            ],
        );
        let refusal = policy
            .screen_addresses("evil.example.com", &[address("127.0.0.1:0")], true)
            .unwrap_err();
        assert!(
            refusal.reason.contains("127.0.0.1, a loopback address"),
            "{refusal}"
        );
        assert_eq!(
            policy
                .screen_addresses(
                    "mixed.example.com",
                    &[address("10.0.0.7:0"), address("93.184.216.34:0")],
                    true
                )
                .unwrap(),
            vec![address("93.184.216.34:0")],
            "internal addresses are dropped, public ones kept"
        );
        assert_eq!(
            policy
                .screen_addresses("intranet.example.org", &[address("10.0.0.7:0")], true)
                .unwrap(),
            vec![address("10.0.0.7:0")]
        );
        assert!(
            policy
                .screen_addresses("intranet.example.org", &[address("10.0.0.7:0")], false)
                .is_err(),
            "the strict client never reaches internal addresses"
        );
    }

    #[test]
    fn an_opt_in_rule_covers_only_its_own_scheme_host_and_port() {
        let opt_in = AllowRule {
            allow_internal: true,
            ..rule(Some("http"), "*.svc.cluster.local", Some(8080))
        };
        let policy = EgressPolicy::new("x", vec![rule(Some("http"), "*", None), opt_in]);
        let index = |url: &str| policy.check(&url.parse().unwrap()).unwrap();
        assert_eq!(index("http://redis.svc.cluster.local:8080/"), 1);
        assert_eq!(
            index("http://redis.svc.cluster.local/"),
            0,
            "port 80 is the wildcard's, which does not opt in: the strict client serves it"
        );
    }

    #[test]
    fn empty_allowlist_refuses_everything() {
        let policy = EgressPolicy::new("rss", vec![]);
        assert!(!allowed(&policy, "https://example.com/"));
    }
}
