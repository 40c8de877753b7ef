//! The egress allowlist of one connector (or sink): which scheme, host and port it may reach.
//! Nothing is reachable unless a rule allows it, and no internal address (loopback, private,
//! link-local, metadata, …: see `addresses`) unless the rule says so explicitly: by naming the
//! address itself, or with `allow_internal = true`. A URL carrying credentials
//! (`user:password@`) is refused whatever the rules: credentials are the host's to add.
//!
//! A refusal says which URL (redacted), the real reason and the fix, so an operator reading
//! it knows which line of the TOML to change.

use super::addresses::{InternalAddress, internal_reason};
use crate::config::AllowRule;
use crate::redact;
use std::net::{IpAddr, SocketAddr};

/// Whose allowlist it is, as refusals name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOwner {
    Connector(String),
    Sink(String),
    /// A credential's token endpoint (`[credentials.NAME] token_url`).
    Credential(String),
}

impl PolicyOwner {
    pub fn name(&self) -> &str {
        match self {
            Self::Connector(name) | Self::Sink(name) | Self::Credential(name) => name,
        }
    }
}

impl std::fmt::Display for PolicyOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connector(name) => write!(f, "connector '{name}'"),
            Self::Sink(name) => write!(f, "sink '{name}'"),
            Self::Credential(name) => write!(f, "credential '{name}'"),
        }
    }
}

/// The allowlist of one connector or sink.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    owner: PolicyOwner,
    rules: Vec<AllowRule>,
    /// Every URL passes (see [`EgressPolicy::replay_only`]).
    allow_all: bool,
    /// Decorates requests whose rule names a credential (see `super::signing`).
    pub(super) signer: super::signing::Signer,
}

/// Why a request was refused by the host's own policy; shown to the plugin, logged, and kept
/// as the reason a target is parked. A configuration problem, never the upstream's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EgressRefusal {
    /// "connector 'rss'" or "sink 'hook'".
    pub owner: String,
    /// The URL (redacted) or, for a refusal after DNS, the host name.
    pub url: String,
    /// The real reason: "127.0.0.1 is a loopback address (RFC 1122), and no rule names it".
    pub reason: String,
    /// What to change in the config.
    pub fix: Option<String>,
}

impl std::fmt::Display for EgressRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "egress refused by {} allowlist: {}: {}",
            self.owner, self.url, self.reason
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

impl EgressPolicy {
    /// The allowlist of connector `connector`.
    pub fn new(connector: &str, rules: Vec<AllowRule>) -> Self {
        Self::with_owner(PolicyOwner::Connector(connector.to_string()), rules)
    }

    pub fn with_owner(owner: PolicyOwner, rules: Vec<AllowRule>) -> Self {
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
            owner,
            rules,
            allow_all: false,
            signer: super::signing::Signer::default(),
        }
    }

    /// A policy that lets every URL without credentials through, for a connector whose
    /// upstream is a cassette replay (`tsunagi plugin test`): nothing it sends leaves the
    /// process, and a request to an unrecorded URL should be reported as unmatched, not
    /// refused.
    pub fn replay_only(connector: &str) -> Self {
        Self {
            allow_all: true,
            ..Self::new(connector, Vec::new())
        }
    }

    /// The connector's (or sink's) name.
    pub fn connector(&self) -> &str {
        self.owner.name()
    }

    pub fn owner(&self) -> &PolicyOwner {
        &self.owner
    }

    /// The rules, normalised, in TOML order; [`Self::check`] answers with an index into them.
    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    /// Allows the request if some rule matches its scheme, host and port, and answers which
    /// (the first such rule). The URL is the one that will be sent (already normalised by the
    /// `url` crate, as the HTTP client sees it), so what is checked is what goes out. A URL
    /// that spells an internal address is allowed only by a rule that names that address or
    /// sets `allow_internal`; a URL with credentials in it never.
    pub fn check(&self, url: &url::Url) -> Result<usize, EgressRefusal> {
        let refuse = |reason: String, fix: Option<String>| EgressRefusal {
            owner: self.owner.to_string(),
            url: redact::url(url.as_str()).into_owned(),
            reason,
            fix,
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse(
                "carries credentials in its authority (user:password@); the host adds \
                 credentials to requests itself, a URL never carries them"
                    .to_string(),
                Some("remove the user name and password from the URL".to_string()),
            ));
        }
        if self.allow_all {
            return Ok(usize::MAX);
        }
        let scheme = url.scheme();
        let (host, address) = match url.host() {
            Some(url::Host::Domain(domain)) => (domain.to_string(), None),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err(refuse("has no host".to_string(), None)),
        };
        let port = url.port_or_known_default();
        let matching: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule_matches(rule, scheme, &host, port))
            .map(|(index, _)| index)
            .collect();
        let wanted = Wanted {
            scheme,
            host: &host,
            port,
        };
        match address.and_then(|ip| internal_reason(ip).map(|why| (ip, why))) {
            None => {
                if !matching.is_empty() {
                    // For a name, a rule that opts into internal addresses wins: its requests
                    // resolve through the client that may reach them (see `addresses`).
                    let chosen = matching
                        .iter()
                        .find(|index| address.is_none() && self.rules[**index].allow_internal)
                        .or(matching.first());
                    return Ok(chosen.copied().unwrap_or(0));
                }
            }
            Some((ip, why)) => {
                if let Some(index) = matching
                    .iter()
                    .find(|index| self.rules[**index].permits_internal(ip))
                {
                    return Ok(*index);
                }
                let (reason, fix) = self.internal_refusal(ip, &why, &wanted, !matching.is_empty());
                return Err(refuse(reason, Some(fix)));
            }
        }
        let reason = if self.rules.is_empty() {
            "matches no rule: the allowlist is empty".to_string()
        } else {
            format!("matches no rule of {}", self.describe_rules())
        };
        Err(refuse(reason, Some(self.fix_adding(&wanted))))
    }

    /// Why an internal address was refused, and the fix.
    fn internal_refusal(
        &self,
        ip: IpAddr,
        why: &InternalAddress,
        wanted: &Wanted<'_>,
        wildcard_matched: bool,
    ) -> (String, String) {
        let naming: Vec<&AllowRule> = self.rules.iter().filter(|rule| rule.names(ip)).collect();
        if naming.is_empty() {
            let mut reason = format!("{ip} is {why}, and no rule names it");
            if wildcard_matched {
                reason.push_str(" (a wildcard host never matches an internal address)");
            } else if !self.rules.is_empty() {
                reason.push_str(&format!(" (rules: {})", self.describe_rules()));
            }
            let fix = match &self.owner {
                PolicyOwner::Connector(_) => format!(
                    "{}, or set `allow_internal = true` on the rule meant to reach it",
                    self.fix_adding(wanted)
                ),
                PolicyOwner::Sink(_) | PolicyOwner::Credential(_) => self.fix_adding(wanted),
            };
            (reason, fix)
        } else {
            let named: Vec<String> = naming.iter().map(|rule| describe(rule)).collect();
            let reason = format!(
                "{ip} is {why}; the rules naming it ([{}]) do not allow {}",
                named.join(", "),
                wanted.scheme_and_port()
            );
            (reason, self.fix_adding(wanted))
        }
    }

    /// "add `{ … }` to [[connectors.NAME.egress.allow]]", or for a sink what to change.
    fn fix_adding(&self, wanted: &Wanted<'_>) -> String {
        match &self.owner {
            PolicyOwner::Connector(name) => format!(
                "add `{}` to [[connectors.{name}.egress.allow]]",
                wanted.rule()
            ),
            PolicyOwner::Credential(name) => format!(
                "a token endpoint is reached only at its own URL's scheme, host and port: \
                 point [credentials.{name}] token_url at {}",
                wanted.url()
            ),
            PolicyOwner::Sink(name) => format!(
                "a sink reaches only its own URL's scheme, host and port (redirects elsewhere \
                 are not followed): point [sinks.{name}] url at {}",
                wanted.url()
            ),
        }
    }

    fn describe_rules(&self) -> String {
        let rules: Vec<String> = self.rules.iter().map(describe).collect();
        format!("[{}]", rules.join(", "))
    }

    /// The addresses `host` resolved to that this policy may connect to: with `opt_in` (the
    /// request's rule sets `allow_internal`) all of them if a rule for the host opts in,
    /// otherwise only the public ones. Refuses when every address was dropped, naming the
    /// first one and why. A name that resolved to nothing is not refused here (that is DNS,
    /// not policy): the answer is empty.
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
        let Some((ip, why)) = dropped.filter(|_| permitted.is_empty()) else {
            return Ok(permitted);
        };
        let reason = format!(
            "{host} resolves to {ip}, {why}, and no rule for {host} that this request matched \
             sets allow_internal = true"
        );
        let fix = match &self.owner {
            PolicyOwner::Connector(name) => format!(
                "if {host} is meant to be internal, set `allow_internal = true` on its rule in \
                 [[connectors.{name}.egress.allow]]"
            ),
            PolicyOwner::Sink(name) => format!(
                "if {host} is meant to be internal, set `allow_internal = true` on [sinks.{name}]"
            ),
            PolicyOwner::Credential(name) => format!(
                "if {host} is meant to be internal, set `allow_internal = true` on \
                 [credentials.{name}]"
            ),
        };
        Err(EgressRefusal {
            owner: self.owner.to_string(),
            url: host,
            reason,
            fix: Some(fix),
        })
    }
}

/// What a refused request asked for, to write the rule that would allow it.
struct Wanted<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

impl Wanted<'_> {
    fn default_port(&self) -> bool {
        matches!(
            (self.scheme, self.port),
            ("http", Some(80)) | ("https", Some(443))
        )
    }

    /// The TOML inline table of a rule allowing exactly this.
    fn rule(&self) -> String {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        match self.port {
            Some(port) if !self.default_port() => format!(
                "{{ scheme = \"{}\", host = \"{host}\", port = {port} }}",
                self.scheme
            ),
            _ => format!("{{ scheme = \"{}\", host = \"{host}\" }}", self.scheme),
        }
    }

    fn url(&self) -> String {
        match self.port {
            Some(port) if !self.default_port() => {
                format!("{}://{}:{port}/", self.scheme, self.host)
            }
            _ => format!("{}://{}/", self.scheme, self.host),
        }
    }

    fn scheme_and_port(&self) -> String {
        match self.port {
            Some(port) => format!("{} on port {port}", self.scheme),
            None => self.scheme.to_string(),
        }
    }
}

impl AllowRule {
    /// Whether this rule lets a request reach the internal address `ip`.
    fn permits_internal(&self, ip: IpAddr) -> bool {
        self.allow_internal || self.names(ip)
    }

    /// Whether this rule's host is the address `ip` itself.
    fn names(&self, ip: IpAddr) -> bool {
        self.host.parse::<IpAddr>().is_ok_and(|named| named == ip)
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
    let host = if rule.host.contains(':') {
        format!("[{}]", rule.host)
    } else {
        rule.host.clone()
    };
    format!(
        "{}://{host}{}",
        rule.scheme.as_deref().unwrap_or("http(s)"),
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

    fn refusal(policy: &EgressPolicy, url: &str) -> EgressRefusal {
        policy
            .check(&url::Url::parse(url).unwrap())
            .expect_err("refused")
    }

    /// The allowlist `config/tsunagi.toml` ships.
    fn shipped() -> EgressPolicy {
        EgressPolicy::new(
            "rss",
            vec![
                rule(Some("https"), "*", None),
                rule(Some("http"), "*", None),
            ],
        )
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
    fn refusal_names_connector_rules_and_the_rule_to_add() {
        let policy = EgressPolicy::new("rss", vec![rule(Some("https"), "*.example.com", None)]);
        let text = refusal(&policy, "http://feeds.example.org:8080/rss").to_string();
        assert_eq!(
            text,
            "egress refused by connector 'rss' allowlist: http://feeds.example.org:8080/rss: \
             matches no rule of [https://*.example.com]; fix: add \
             `{ scheme = \"http\", host = \"feeds.example.org\", port = 8080 }` to \
             [[connectors.rss.egress.allow]]"
        );
    }

    /// The case: with the shipped `https://*` and `http://*`, a target on 127.0.0.1
    /// was refused as "matches no rule"; the real reason is the address.
    #[test]
    fn an_internal_address_no_rule_names_is_refused_for_what_it_is() {
        let text = refusal(&shipped(), "http://127.0.0.1:8080/feed").to_string();
        assert_eq!(
            text,
            "egress refused by connector 'rss' allowlist: http://127.0.0.1:8080/feed: \
             127.0.0.1 is a loopback address (RFC 1122), and no rule names it \
             (rules: [https://*, http://*]); fix: add \
             `{ scheme = \"http\", host = \"127.0.0.1\", port = 8080 }` to \
             [[connectors.rss.egress.allow]], or set `allow_internal = true` on the rule \
             meant to reach it"
        );
        let on_default_port = refusal(&shipped(), "http://10.1.2.3/").to_string();
        assert!(
            on_default_port.contains(
                "10.1.2.3 is a private address (RFC 1918), and no rule names it (a wildcard \
                 host never matches an internal address)"
            ),
            "{on_default_port}"
        );
        let named_elsewhere =
            EgressPolicy::new("rss", vec![rule(Some("http"), "127.0.0.1", Some(8080))]);
        let text = refusal(&named_elsewhere, "http://127.0.0.1:6379/").to_string();
        assert!(
            text.contains(
                "127.0.0.1 is a loopback address (RFC 1122); the rules naming it \
                 ([http://127.0.0.1:8080]) do not allow http on port 6379"
            ),
            "{text}"
        );
    }

    #[test]
    fn refusals_print_the_url_redacted() {
        let text = refusal(
            &shipped(),
            "http://127.0.0.1:8080/feed?token=hunter2&page=2",
        )
        .to_string();
        assert!(
            text.contains("http://127.0.0.1:8080/feed?token=REDACTED&page=2"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn urls_with_credentials_are_refused_whatever_the_rules() {
        let policy = EgressPolicy::new("rss", vec![rule(Some("http"), "127.0.0.1", Some(8080))]);
        for url in [
            "http://user:hunter2@127.0.0.1:8080/feed",
            "http://user@127.0.0.1:8080/feed",
            "http://:hunter2@127.0.0.1:8080/feed",
        ] {
            let refused = refusal(&policy, url);
            assert!(refused.reason.contains("carries credentials"), "{refused}");
            assert!(!refused.to_string().contains("hunter2"), "{refused}");
        }
        assert!(!allowed(
            &EgressPolicy::replay_only("rss"),
            "http://user:pw@x.test/"
        ));
        assert!(allowed(&policy, "http://127.0.0.1:8080/feed"));
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
            "http://[::ffff:93.184.216.34]/",
            "http://[64:ff9b:1::1]/",
            "http://192.0.2.1/",
        ] {
            let refused = refusal(&wildcard, url);
            assert!(
                refused.reason.contains("and no rule names it"),
                "{url}: {refused}"
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
        let refused = policy
            .screen_addresses("evil.example.com", &[address("127.0.0.1:0")], true)
            .unwrap_err();
        assert!(
            refused
                .reason
                .contains("evil.example.com resolves to 127.0.0.1, a loopback address (RFC 1122)"),
            "{refused}"
        );
        assert!(
            refused
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("allow_internal = true")),
            "{refused}"
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
        assert_eq!(
            policy.screen_addresses("empty.example.com", &[], false),
            Ok(Vec::new()),
            "resolving to nothing is DNS's answer, not a refusal"
        );
    }

    #[test]
    fn a_sink_policy_says_what_to_change_on_the_sink() {
        let sink = EgressPolicy::with_owner(
            PolicyOwner::Sink("hook".into()),
            vec![rule(Some("https"), "hooks.example.com", Some(443))],
        );
        let text = refusal(&sink, "http://10.0.0.5:8080/steal").to_string();
        assert!(
            text.starts_with("egress refused by sink 'hook' allowlist: http://10.0.0.5:8080/steal: 10.0.0.5 is a private address (RFC 1918), and no rule names it"),
            "{text}"
        );
        assert!(text.contains("[sinks.hook]"), "{text}");
        let refused = sink
            .screen_addresses("hooks.example.com", &["10.0.0.5:0".parse().unwrap()], false)
            .unwrap_err();
        assert!(
            refused
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("`allow_internal = true` on [sinks.hook]")),
            "{refused}"
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

    /// Bounded property tests of the matcher: a fixed number of cases per property (CI runs
    /// them as they are), the seed fixed by proptest's own file-less default so a failure
    /// prints the case that reproduces it.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Cases per property; with the properties below, 5 × 2,000 = 10,000 checks a run.
        const CASES: u32 = 2_000;

        fn label() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("example".to_string()),
                Just("com".to_string()),
                Just("feeds".to_string()),
                // A last label of digits reads as IPv4 to the URL parser, so labels start
                // with a letter.
                "[a-z][a-z0-9]{0,5}",
                "[a-z]{1,3}-[a-z]{1,3}",
            ]
        }

        fn domain() -> impl Strategy<Value = String> {
            prop::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
        }

        fn address() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<u32>().prop_map(|bits| IpAddr::V4(bits.into())),
                any::<u128>().prop_map(|bits| IpAddr::V6(bits.into())),
                // Dense near the special blocks, where mistakes would be.
                (
                    prop::sample::select(vec![
                        0u8, 10, 100, 127, 169, 172, 192, 198, 203, 224, 255
                    ]),
                    any::<[u8; 3]>()
                )
                    .prop_map(|(a, [b, c, d])| IpAddr::V4([a, b, c, d].into())),
                (
                    prop::sample::select(vec![
                        0u16, 0x64, 0x100, 0x2001, 0x2002, 0xfc00, 0xfe80, 0xff00
                    ]),
                    any::<[u16; 7]>()
                )
                    .prop_map(|(head, tail)| {
                        let mut segments = [head; 8];
                        segments[1..].copy_from_slice(&tail);
                        IpAddr::V6(segments.into())
                    }),
            ]
        }

        fn host_text(ip: IpAddr) -> String {
            match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            }
        }

        fn scheme() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["http", "https"])
        }

        fn pattern() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("*".to_string()),
                domain(),
                domain().prop_map(|d| format!("*.{d}")),
                address().prop_map(|ip| ip.to_string()),
            ]
        }

        fn any_rule() -> impl Strategy<Value = AllowRule> {
            (
                prop::option::of(scheme()),
                pattern(),
                prop::option::of(prop_oneof![Just(80u16), Just(443), Just(8080), 1u16..]),
                any::<bool>(),
            )
                .prop_map(|(scheme, host, port, allow_internal)| AllowRule {
                    scheme: scheme.map(str::to_string),
                    host,
                    port,
                    allow_internal,
                    ..AllowRule::default()
                })
        }

        fn url_text() -> impl Strategy<Value = String> {
            (
                scheme(),
                prop_oneof![domain(), address().prop_map(host_text)],
                prop::option::of(prop_oneof![Just(80u16), Just(443), Just(8080), 1u16..]),
                "[a-z0-9/]{0,8}",
            )
                .prop_map(|(scheme, host, port, path)| match port {
                    Some(port) => format!("{scheme}://{host}:{port}/{path}"),
                    None => format!("{scheme}://{host}/{path}"),
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: CASES,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// An allowed URL is allowed by the rule the check names, and that rule matches
            /// its scheme, host and port.
            #[test]
            fn the_rule_named_matches_what_it_allowed(
                rules in prop::collection::vec(any_rule(), 0..5),
                text in url_text(),
            ) {
                let policy = EgressPolicy::new("p", rules);
                let url = url::Url::parse(&text).expect("the strategy writes URLs");
                if let Ok(index) = policy.check(&url) {
                    let rule = &policy.rules()[index];
                    let host = match url.host() {
                        Some(url::Host::Domain(d)) => d.to_string(),
                        Some(url::Host::Ipv4(ip)) => ip.to_string(),
                        Some(url::Host::Ipv6(ip)) => ip.to_string(),
                        None => unreachable!("the strategy writes hosts"),
                    };
                    prop_assert!(rule_matches(rule, url.scheme(), &host, url.port_or_known_default()));
                }
            }

            /// An internal address is reached only through a rule naming it or opting in.
            #[test]
            fn no_internal_address_passes_without_an_explicit_rule(
                rules in prop::collection::vec(any_rule(), 0..5),
                ip in address(),
                scheme in scheme(),
                port in prop::option::of(1u16..),
            ) {
                let text = match port {
                    Some(port) => format!("{scheme}://{}:{port}/", host_text(ip)),
                    None => format!("{scheme}://{}/", host_text(ip)),
                };
                let url = url::Url::parse(&text).expect("an address URL");
                let policy = EgressPolicy::new("p", rules);
                if internal_reason(ip).is_some() {
                    match policy.check(&url) {
                        Ok(index) => prop_assert!(policy.rules()[index].permits_internal(ip)),
                        Err(refused) => prop_assert!(
                            refused.reason.starts_with(&format!("{ip} is ")),
                            "{refused}"
                        ),
                    }
                }
            }

            /// A wildcard-free allowlist allows only the hosts it names (or their subdomains).
            #[test]
            fn named_hosts_only(
                rules in prop::collection::vec(any_rule(), 0..5),
                text in url_text(),
            ) {
                let policy = EgressPolicy::new("p", rules);
                let url = url::Url::parse(&text).expect("a URL");
                let host = match url.host() {
                    Some(url::Host::Domain(d)) => d.to_string(),
                    Some(url::Host::Ipv4(ip)) => ip.to_string(),
                    Some(url::Host::Ipv6(ip)) => ip.to_string(),
                    None => String::new(),
                };
                if policy.check(&url).is_ok() {
                    let named = policy.rules().iter().any(|rule| {
                        rule.host == "*"
                            || rule.host == host
                            || rule.host.strip_prefix('*').is_some_and(|suffix| host.ends_with(suffix))
                    });
                    prop_assert!(named, "{} allowed by {:?}", host, policy.rules());
                }
            }

            /// Credentials in the authority never pass, whatever the rules and the host.
            #[test]
            fn userinfo_never_passes(
                rules in prop::collection::vec(any_rule(), 0..5),
                text in url_text(),
                user in "[a-z]{1,5}",
                password in prop::option::of("[a-z0-9]{1,5}"),
            ) {
                let (scheme, rest) = text.split_once("://").expect("a scheme");
                let userinfo = match &password {
                    Some(password) => format!("{user}:{password}"),
                    None => user.clone(),
                };
                let url = url::Url::parse(&format!("{scheme}://{userinfo}@{rest}")).expect("a URL");
                let refused = EgressPolicy::new("p", rules).check(&url);
                prop_assert!(refused.is_err());
                let text = refused.unwrap_err().to_string();
                if let Some(password) = password {
                    prop_assert!(!text.contains(&format!(":{password}@")), "{text}");
                }
            }

            /// Arbitrary text never makes the matcher panic, and a refusal always says why.
            #[test]
            fn arbitrary_urls_are_answered(
                rules in prop::collection::vec(any_rule(), 0..5),
                text in "(http|https|ftp)://[ -~]{0,40}",
            ) {
                if let Ok(url) = url::Url::parse(&text)
                    && let Err(refused) = EgressPolicy::new("p", rules).check(&url)
                {
                    prop_assert!(!refused.reason.is_empty());
                }
            }
        }
    }
}
