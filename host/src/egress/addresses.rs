//! The SSRF guard: which IP addresses a plugin's request (or a sink's delivery) may connect to.
//!
//! The allowlist names hosts, but a name is only as good as its DNS: `feeds.example.com` may
//! resolve to `127.0.0.1` or to a cloud metadata endpoint tomorrow. So the HTTP clients resolve
//! names through [`GuardedResolver`], which drops every address that is not public unless the
//! rule that allowed the host says so explicitly. The addresses checked are the ones the client
//! then connects to, so a second lookup (DNS rebinding) cannot slip past. URLs that spell an
//! address instead of a name never reach a resolver; [`super::EgressPolicy::check`] applies the
//! same rule to them.
//!
//! What is not public comes from the IANA IPv4 and IPv6 special-purpose address registries
//! (RFC 6890 and the RFCs they cite), plus multicast, the deprecated IPv6 blocks (site-local,
//! IPv4-compatible) and the cloud metadata endpoints. Each block answers with its name and
//! where it is defined, so a refusal can say "127.0.0.1 is a loopback address (RFC 1122)".
//! An address in several blocks is classed by the most specific one. Two IPv6 blocks carry an
//! IPv4 address that a gateway will reach (NAT64's `64:ff9b::/96`, 6to4's `2002::/16`): they
//! are classed by the address they carry.

use super::EgressPolicy;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// A special-purpose block: what its addresses are, and where that is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressClass {
    /// As it reads after "127.0.0.1 is": "a loopback address".
    pub name: &'static str,
    /// The RFC (or the provider) that defines the block: "RFC 1122".
    pub source: &'static str,
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.source)
    }
}

/// Why an address is not a public one: its block, and for a block that carries an IPv4
/// address (IPv4-mapped, IPv4-compatible, NAT64, 6to4), that address and its own class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalAddress {
    pub class: AddressClass,
    pub carries: Option<(Ipv4Addr, Option<AddressClass>)>,
}

impl std::fmt::Display for InternalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.class)?;
        if let Some((v4, inner)) = self.carries {
            write!(f, " for {v4}")?;
            if let Some(inner) = inner {
                write!(f, ", {inner}")?;
            }
        }
        Ok(())
    }
}

/// Why an address is not public, or `None` for a public address.
pub fn internal_reason(ip: IpAddr) -> Option<InternalAddress> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|class| InternalAddress {
            class,
            carries: None,
        }),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// How a block treats the IPv4 address some IPv6 blocks carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carried {
    /// None carried.
    Nothing,
    /// In the low 32 bits; the block is never public (IPv4-mapped, IPv4-compatible).
    Low32,
    /// In the low 32 bits, reached through a translator: public when that address is (NAT64).
    TranslatedLow32,
    /// In bits 16..48, reached through a relay: public when that address is (6to4).
    SixToFour,
}

struct Block<T> {
    network: T,
    length: u32,
    class: AddressClass,
    carried: Carried,
}

const fn class(name: &'static str, source: &'static str) -> AddressClass {
    AddressClass { name, source }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, length: u32, class: AddressClass) -> Block<u32> {
    Block {
        network: u32::from_be_bytes([a, b, c, d]),
        length,
        class,
        carried: Carried::Nothing,
    }
}

const fn v6(segments: [u16; 8], length: u32, class: AddressClass, carried: Carried) -> Block<u128> {
    let mut network = 0u128;
    let mut index = 0;
    while index < 8 {
        network = (network << 16) | segments[index] as u128;
        index += 1;
    }
    Block {
        network,
        length,
        class,
        carried,
    }
}

const PRIVATE: AddressClass = class("a private address", "RFC 1918");
const METADATA: AddressClass = class(
    "a cloud metadata address",
    "the instance metadata service of AWS, GCP, Azure and others",
);
const V4_DOCUMENTATION: &str = "RFC 5737";

/// IPv4: the special-purpose registry, multicast, and the metadata endpoints.
const V4_BLOCKS: &[Block<u32>] = &[
    v4(
        0,
        0,
        0,
        0,
        8,
        class("a \"this network\" address", "RFC 791"),
    ),
    v4(0, 0, 0, 0, 32, class("the unspecified address", "RFC 1122")),
    v4(10, 0, 0, 0, 8, PRIVATE),
    // Carrier-grade NAT; Alibaba Cloud's metadata service lives here too.
    v4(
        100,
        64,
        0,
        0,
        10,
        class("a shared (carrier-grade NAT) address", "RFC 6598"),
    ),
    v4(100, 100, 100, 200, 32, METADATA),
    v4(127, 0, 0, 0, 8, class("a loopback address", "RFC 1122")),
    v4(
        169,
        254,
        0,
        0,
        16,
        class("a link-local address", "RFC 3927"),
    ),
    v4(169, 254, 169, 254, 32, METADATA),
    // Azure's WireServer: a public-looking address that only the platform answers.
    v4(168, 63, 129, 16, 32, METADATA),
    v4(172, 16, 0, 0, 12, PRIVATE),
    v4(
        192,
        0,
        0,
        0,
        24,
        class("an IETF protocol assignment address", "RFC 6890"),
    ),
    v4(
        192,
        0,
        0,
        0,
        29,
        class("an IPv4 service continuity address", "RFC 7335"),
    ),
    v4(
        192,
        0,
        0,
        8,
        32,
        class("the IPv4 dummy address", "RFC 7600"),
    ),
    v4(
        192,
        0,
        0,
        9,
        32,
        class("a Port Control Protocol anycast address", "RFC 7723"),
    ),
    v4(
        192,
        0,
        0,
        10,
        32,
        class("a TURN anycast address", "RFC 8155"),
    ),
    v4(
        192,
        0,
        0,
        170,
        32,
        class("a NAT64/DNS64 discovery address", "RFC 8880"),
    ),
    v4(
        192,
        0,
        0,
        171,
        32,
        class("a NAT64/DNS64 discovery address", "RFC 8880"),
    ),
    v4(
        192,
        0,
        2,
        0,
        24,
        class("a TEST-NET-1 documentation address", V4_DOCUMENTATION),
    ),
    v4(
        192,
        31,
        196,
        0,
        24,
        class("an AS112 DNS address", "RFC 7535"),
    ),
    v4(
        192,
        52,
        193,
        0,
        24,
        class("an AMT relay address", "RFC 7450"),
    ),
    v4(
        192,
        88,
        99,
        0,
        24,
        class("a deprecated 6to4 relay anycast address", "RFC 7526"),
    ),
    v4(
        192,
        88,
        99,
        2,
        32,
        class("a 6a44 relay anycast address", "RFC 6751"),
    ),
    v4(192, 168, 0, 0, 16, PRIVATE),
    v4(
        192,
        175,
        48,
        0,
        24,
        class("an AS112 direct delegation address", "RFC 7534"),
    ),
    v4(
        198,
        18,
        0,
        0,
        15,
        class("a benchmarking address", "RFC 2544"),
    ),
    v4(
        198,
        51,
        100,
        0,
        24,
        class("a TEST-NET-2 documentation address", V4_DOCUMENTATION),
    ),
    v4(
        203,
        0,
        113,
        0,
        24,
        class("a TEST-NET-3 documentation address", V4_DOCUMENTATION),
    ),
    v4(224, 0, 0, 0, 4, class("a multicast address", "RFC 5771")),
    v4(240, 0, 0, 0, 4, class("a reserved address", "RFC 1112")),
    v4(
        255,
        255,
        255,
        255,
        32,
        class("the limited broadcast address", "RFC 919"),
    ),
];

/// IPv6: the special-purpose registry, multicast, the deprecated blocks, AWS's metadata.
const V6_BLOCKS: &[Block<u128>] = &[
    v6(
        [0; 8],
        128,
        class("the unspecified address", "RFC 4291"),
        Carried::Nothing,
    ),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 1],
        128,
        class("a loopback address", "RFC 4291"),
        Carried::Nothing,
    ),
    v6(
        [0; 8],
        96,
        class("a deprecated IPv4-compatible address", "RFC 4291"),
        Carried::Low32,
    ),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        class("an IPv4-mapped address", "RFC 4291"),
        Carried::Low32,
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        class("a NAT64 address", "RFC 6052"),
        Carried::TranslatedLow32,
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        class("a local-use NAT64 address", "RFC 8215"),
        Carried::Nothing,
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        class("a discard-only address", "RFC 6666"),
        Carried::Nothing,
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        class("a dummy IPv6 prefix address", "RFC 9780"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        class("an IETF protocol assignment address", "RFC 2928"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        class("a Teredo address", "RFC 4380"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        class("a Port Control Protocol anycast address", "RFC 7723"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        class("a TURN anycast address", "RFC 8155"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        class("a DNS-SD service registration anycast address", "RFC 9665"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        class("a benchmarking address", "RFC 5180"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 3, 0, 0, 0, 0, 0, 0],
        32,
        class("an AMT address", "RFC 7450"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 4, 0x112, 0, 0, 0, 0, 0],
        48,
        class("an AS112 DNS address", "RFC 7535"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        class("a deprecated ORCHID address", "RFC 4843"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 0x20, 0, 0, 0, 0, 0, 0],
        28,
        class("an ORCHIDv2 address", "RFC 7343"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        class("a drone remote ID (DET) address", "RFC 9374"),
        Carried::Nothing,
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        class("a documentation address", "RFC 3849"),
        Carried::Nothing,
    ),
    v6(
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        class("a 6to4 address", "RFC 3056"),
        Carried::SixToFour,
    ),
    v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        class("an AS112 direct delegation address", "RFC 7534"),
        Carried::Nothing,
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        class("a documentation address", "RFC 9637"),
        Carried::Nothing,
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        class("a segment routing (SRv6) SID", "RFC 9602"),
        Carried::Nothing,
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        class("a unique-local (private) address", "RFC 4193"),
        Carried::Nothing,
    ),
    v6(
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254],
        128,
        METADATA,
        Carried::Nothing,
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        class("a link-local address", "RFC 4291"),
        Carried::Nothing,
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        class("a deprecated site-local address", "RFC 3879"),
        Carried::Nothing,
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        class("a multicast address", "RFC 4291"),
        Carried::Nothing,
    ),
];

/// The most specific block holding `address` (the one with the longest prefix).
fn most_specific<T>(blocks: &'static [Block<T>], address: T, bits: u32) -> Option<&'static Block<T>>
where
    T: Copy
        + PartialEq
        + std::ops::Shr<u32, Output = T>
        + std::ops::Shl<u32, Output = T>
        + std::ops::Not<Output = T>
        + std::ops::BitAnd<Output = T>
        + From<u8>,
{
    let ones = !T::from(0u8);
    blocks
        .iter()
        .filter(|block| {
            let mask = if block.length == 0 {
                T::from(0u8)
            } else {
                ones << (bits - block.length)
            };
            address & mask == block.network & mask
        })
        .max_by_key(|block| block.length)
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    most_specific(V4_BLOCKS, u32::from(ip), 32).map(|block| block.class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<InternalAddress> {
    let bits = u128::from(ip);
    let block = most_specific(V6_BLOCKS, bits, 128)?;
    // Truncation is the point: the carried address sits in these bits.
    let low32 = Ipv4Addr::from(bits as u32);
    let six_to_four = Ipv4Addr::from((bits >> 80) as u32);
    let (carried, always_internal) = match block.carried {
        Carried::Nothing => {
            return Some(InternalAddress {
                class: block.class,
                carries: None,
            });
        }
        Carried::Low32 => (low32, true),
        Carried::TranslatedLow32 => (low32, false),
        Carried::SixToFour => (six_to_four, false),
    };
    let inner = classify_v4(carried);
    if inner.is_none() && !always_internal {
        return None;
    }
    Some(InternalAddress {
        class: block.class,
        carries: Some((carried, inner)),
    })
}

/// The DNS resolver of an HTTP client on the egress path: resolves with the system resolver,
/// then keeps only the addresses the policy permits for that name. A connector has two
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
                    tracing::warn!(owner = %policy.owner(), %host, "{refusal}");
                })?;
            if permitted.is_empty() {
                let none = std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} resolves to no address"),
                );
                return Err(none.into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<InternalAddress> {
        internal_reason(text.parse().expect("an address"))
    }

    /// One row of the IANA special-purpose address registries (or of the other blocks the
    /// guard refuses): the block as the registry writes it, and its source as the registry
    /// cites it. Transcribed from the registries, not from `V4_BLOCKS`/`V6_BLOCKS`.
    struct Entry {
        block: &'static str,
        source: &'static str,
        /// The block carries an IPv4 address a gateway reaches: it is internal only when the
        /// carried address is.
        translated: bool,
    }

    const fn entry(block: &'static str, source: &'static str) -> Entry {
        Entry {
            block,
            source,
            translated: false,
        }
    }

    /// IANA IPv4 Special-Purpose Address Registry (as of 2025), then multicast (RFC 5771) and
    /// the metadata endpoints.
    const IPV4_REGISTRY: &[Entry] = &[
        entry("0.0.0.0/8", "RFC 791"),
        entry("0.0.0.0/32", "RFC 1122"),
        entry("10.0.0.0/8", "RFC 1918"),
        entry("100.64.0.0/10", "RFC 6598"),
        entry("127.0.0.0/8", "RFC 1122"),
        entry("169.254.0.0/16", "RFC 3927"),
        entry("172.16.0.0/12", "RFC 1918"),
        entry("192.0.0.0/24", "RFC 6890"),
        entry("192.0.0.0/29", "RFC 7335"),
        entry("192.0.0.8/32", "RFC 7600"),
        entry("192.0.0.9/32", "RFC 7723"),
        entry("192.0.0.10/32", "RFC 8155"),
        entry("192.0.0.170/32", "RFC 8880"),
        entry("192.0.0.171/32", "RFC 8880"),
        entry("192.0.2.0/24", "RFC 5737"),
        entry("192.31.196.0/24", "RFC 7535"),
        entry("192.52.193.0/24", "RFC 7450"),
        entry("192.88.99.0/24", "RFC 7526"),
        entry("192.88.99.2/32", "RFC 6751"),
        entry("192.168.0.0/16", "RFC 1918"),
        entry("192.175.48.0/24", "RFC 7534"),
        entry("198.18.0.0/15", "RFC 2544"),
        entry("198.51.100.0/24", "RFC 5737"),
        entry("203.0.113.0/24", "RFC 5737"),
        entry("240.0.0.0/4", "RFC 1112"),
        entry("255.255.255.255/32", "RFC 919"),
        entry("224.0.0.0/4", "RFC 5771"),
        entry("169.254.169.254/32", "metadata"),
        entry("168.63.129.16/32", "metadata"),
        entry("100.100.100.200/32", "metadata"),
    ];

    /// IANA IPv6 Special-Purpose Address Registry (as of 2025), then the deprecated blocks
    /// (RFC 4291 §2.5.5.1, RFC 3879), multicast and AWS's metadata endpoint.
    const IPV6_REGISTRY: &[Entry] = &[
        entry("::1/128", "RFC 4291"),
        entry("::/128", "RFC 4291"),
        entry("::ffff:0:0/96", "RFC 4291"),
        Entry {
            block: "64:ff9b::/96",
            source: "RFC 6052",
            translated: true,
        },
        entry("64:ff9b:1::/48", "RFC 8215"),
        entry("100::/64", "RFC 6666"),
        entry("100:0:0:1::/64", "RFC 9780"),
        entry("2001::/23", "RFC 2928"),
        entry("2001::/32", "RFC 4380"),
        entry("2001:1::1/128", "RFC 7723"),
        entry("2001:1::2/128", "RFC 8155"),
        entry("2001:1::3/128", "RFC 9665"),
        entry("2001:2::/48", "RFC 5180"),
        entry("2001:3::/32", "RFC 7450"),
        entry("2001:4:112::/48", "RFC 7535"),
        entry("2001:10::/28", "RFC 4843"),
        entry("2001:20::/28", "RFC 7343"),
        entry("2001:30::/28", "RFC 9374"),
        entry("2001:db8::/32", "RFC 3849"),
        Entry {
            block: "2002::/16",
            source: "RFC 3056",
            translated: true,
        },
        entry("2620:4f:8000::/48", "RFC 7534"),
        entry("3fff::/20", "RFC 9637"),
        entry("5f00::/16", "RFC 9602"),
        entry("fc00::/7", "RFC 4193"),
        entry("fe80::/10", "RFC 4291"),
        entry("::/96", "RFC 4291"),
        entry("fec0::/10", "RFC 3879"),
        entry("ff00::/8", "RFC 4291"),
        entry("fd00:ec2::254/128", "metadata"),
    ];

    /// A registry block as (network, prefix length), in 128 bits (IPv4 in the low 32).
    fn parse_block(text: &str) -> (IpAddr, u32) {
        let (address, length) = text.split_once('/').expect("a block");
        (
            address.parse().expect("an address"),
            length.parse().expect("a length"),
        )
    }

    fn first_and_last(block: &str) -> (IpAddr, IpAddr) {
        match parse_block(block) {
            (IpAddr::V4(network), length) => {
                let host_bits = u32::MAX.checked_shr(length).unwrap_or(0);
                let first = u32::from(network) & !host_bits;
                (
                    IpAddr::V4(first.into()),
                    IpAddr::V4((first | host_bits).into()),
                )
            }
            (IpAddr::V6(network), length) => {
                let host_bits = u128::MAX.checked_shr(length).unwrap_or(0);
                let first = u128::from(network) & !host_bits;
                (
                    IpAddr::V6(first.into()),
                    IpAddr::V6((first | host_bits).into()),
                )
            }
        }
    }

    fn contains(block: &str, ip: IpAddr) -> bool {
        let (first, last) = first_and_last(block);
        match (first, last, ip) {
            (IpAddr::V4(first), IpAddr::V4(last), IpAddr::V4(ip)) => first <= ip && ip <= last,
            (IpAddr::V6(first), IpAddr::V6(last), IpAddr::V6(ip)) => first <= ip && ip <= last,
            _ => false,
        }
    }

    /// The registry row an address belongs to: the most specific one holding it.
    fn expected_entry(registry: &'static [Entry], ip: IpAddr) -> &'static Entry {
        registry
            .iter()
            .filter(|entry| contains(entry.block, ip))
            .max_by_key(|entry| parse_block(entry.block).1)
            .expect("the address comes from a registry block")
    }

    #[test]
    fn the_first_and_last_address_of_every_registry_block_are_not_public_and_say_why() {
        let mut checked = 0;
        for registry in [IPV4_REGISTRY, IPV6_REGISTRY] {
            for entry in registry {
                let (first, last) = first_and_last(entry.block);
                for ip in [first, last] {
                    let expected = expected_entry(registry, ip);
                    let reason = internal_reason(ip)
                        .unwrap_or_else(|| panic!("{ip} (of {}) passed as public", entry.block));
                    if expected.source == "metadata" {
                        assert_eq!(reason.class, METADATA, "{ip}");
                    } else {
                        assert_eq!(
                            reason.class.source, expected.source,
                            "{ip} (of {}) is classed as {reason}, not by {}'s {}",
                            entry.block, expected.block, expected.source
                        );
                    }
                    assert!(
                        reason.to_string().contains(expected_source_text(expected)),
                        "{ip}: {reason}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 2 * (IPV4_REGISTRY.len() + IPV6_REGISTRY.len()));
    }

    fn expected_source_text(entry: &Entry) -> &'static str {
        if entry.source == "metadata" {
            METADATA.source
        } else {
            entry.source
        }
    }

    #[test]
    fn translated_blocks_are_classed_by_the_address_they_carry() {
        for entry in IPV6_REGISTRY.iter().filter(|e| e.translated) {
            let (first, _) = first_and_last(entry.block);
            let IpAddr::V6(first) = first else {
                unreachable!("IPv6 registry")
            };
            let carry = |v4: [u8; 4]| -> Ipv6Addr {
                let v4 = u128::from(u32::from_be_bytes(v4));
                let bits = if entry.block.starts_with("2002") {
                    u128::from(first) | (v4 << 80)
                } else {
                    u128::from(first) | v4
                };
                bits.into()
            };
            assert_eq!(
                internal_reason(IpAddr::V6(carry([93, 184, 216, 34]))),
                None,
                "{}: a public IPv4 address behind it is public",
                entry.block
            );
            let loopback = internal_reason(IpAddr::V6(carry([127, 0, 0, 1])))
                .unwrap_or_else(|| panic!("{}: loopback behind it", entry.block));
            assert_eq!(loopback.class.source, entry.source);
            assert_eq!(
                loopback.carries,
                Some((
                    Ipv4Addr::LOCALHOST,
                    Some(class("a loopback address", "RFC 1122"))
                ))
            );
        }
    }

    #[test]
    fn internal_addresses_are_named_with_their_rfc() {
        for (address, expected) in [
            ("127.8.9.10", "a loopback address (RFC 1122)"),
            ("172.31.255.255", "a private address (RFC 1918)"),
            ("169.254.169.254", "a cloud metadata address"),
            ("169.254.1.1", "a link-local address (RFC 3927)"),
            (
                "100.100.100.200",
                "a cloud metadata address (the instance metadata",
            ),
            ("0.0.0.0", "the unspecified address (RFC 1122)"),
            ("0.1.2.3", "a \"this network\" address (RFC 791)"),
            ("192.0.2.7", "a TEST-NET-1 documentation address (RFC 5737)"),
            ("198.19.0.1", "a benchmarking address (RFC 2544)"),
            ("::1", "a loopback address (RFC 4291)"),
            ("fd00:ec2::254", "a cloud metadata address"),
            ("fd12::1", "a unique-local (private) address (RFC 4193)"),
            (
                "::ffff:127.0.0.1",
                "an IPv4-mapped address (RFC 4291) for 127.0.0.1, a loopback address (RFC 1122)",
            ),
            (
                "::ffff:93.184.216.34",
                "an IPv4-mapped address (RFC 4291) for 93.184.216.34",
            ),
            (
                "::127.0.0.1",
                "a deprecated IPv4-compatible address (RFC 4291) for 127.0.0.1, a loopback",
            ),
            (
                "64:ff9b::a00:1",
                "a NAT64 address (RFC 6052) for 10.0.0.1, a private address (RFC 1918)",
            ),
            (
                "2002:7f00:1::",
                "a 6to4 address (RFC 3056) for 127.0.0.1, a loopback address",
            ),
            ("2001:0:4136:e378::1", "a Teredo address (RFC 4380)"),
            ("fec0::1", "a deprecated site-local address (RFC 3879)"),
        ] {
            let text = reason(address).map(|r| r.to_string()).unwrap_or_default();
            assert!(text.starts_with(expected), "{address}: {text:?}");
        }
    }

    #[test]
    fn global_unicast_addresses_pass() {
        for address in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.1.1",
            "192.88.98.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "2001:200::1",
            "2001:4860:4860::8888",
            "64:ff9b::808:808",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(reason(address), None, "{address}");
        }
    }
}
