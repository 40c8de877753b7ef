//! The SSRF guard: which IP addresses a plugin's request may connect to.
//!
//! The allowlist names hosts, but a name is only as good as its DNS: `feeds.example.com` may
//! resolve to `127.0.0.1` or to a cloud metadata endpoint tomorrow. So the connector's HTTP
//! client resolves names through [`GuardedResolver`], which drops every internal address
//! (loopback, private, link-local, metadata, …) unless the rule that allowed the host says so
//! explicitly. The addresses checked are the ones the client then connects to, so a second
//! lookup (DNS rebinding) cannot slip past. URLs that spell an address instead of a name never
//! reach a resolver; [`super::EgressPolicy::check`] applies the same rule to them.

use super::EgressPolicy;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address is internal, or `None` for a public address.
pub fn internal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "a cloud metadata address",
        _ if ip == Ipv4Addr::new(168, 63, 129, 16) => "a cloud metadata address",
        (127, _, _) => "a loopback address",
        (0, _, _) => "an unspecified address",
        (10, _, _) | (192, 168, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (169, 254, _) => "a link-local address",
        // Carrier-grade NAT; Alibaba Cloud's metadata service lives here too.
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (192, 0, 0) => "an IETF protocol address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        _ => return None,
    };
    Some(reason)
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address a gateway will reach.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return internal_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return internal_v4(embedded_v4(segments[1], segments[2]));
    }
    let reason = match segments[0] {
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "an unspecified address",
        // Unique local, which includes AWS's IPv6 metadata endpoint fd00:ec2::254.
        0xfc00..=0xfdff => "a unique-local (private) address",
        0xfe80..=0xfebf => "a link-local address",
        0xff00..=0xffff => "a multicast address",
        _ => return None,
    };
    Some(reason)
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// The DNS resolver of a connector's HTTP client: resolves with the system resolver, then keeps
/// only the addresses the connector's allowlist permits for that name. A connector has two
/// clients: the strict one (`opt_in = false`) never reaches an internal address; the other
/// serves only requests whose matching rule sets `allow_internal` (the resolver sees names,
/// not ports or schemes, so the rule is chosen before the client is).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
    opt_in: bool,
}

impl GuardedResolver {
    pub fn new(policy: Arc<EgressPolicy>, opt_in: bool) -> Self {
        Self { policy, opt_in }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let opt_in = self.opt_in;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted = policy
                .screen_addresses(&host, &resolved, opt_in)
                .inspect_err(|refusal| {
                    tracing::warn!(connector = %policy.connector(), %host, "{refusal}");
                })?;
            let addresses: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        internal_reason(text.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_named() {
        for (address, expected) in [
            ("127.0.0.1", "a loopback address"),
            ("127.8.9.10", "a loopback address"),
            ("10.1.2.3", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "a cloud metadata address"),
            ("169.254.1.1", "a link-local address"),
            ("100.100.100.200", "a shared (carrier-grade NAT) address"),
            ("0.0.0.0", "an unspecified address"),
            ("224.0.0.1", "a multicast address"),
            ("255.255.255.255", "a reserved address"),
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("fd00:ec2::254", "a unique-local (private) address"),
            ("fe80::1", "a link-local address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:169.254.169.254", "a cloud metadata address"),
            ("64:ff9b::a00:1", "a private address"),
            ("2002:7f00:1::", "a loopback address"),
        ] {
            assert_eq!(reason(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
        ] {
            assert_eq!(reason(address), None, "{address}");
        }
    }
}
