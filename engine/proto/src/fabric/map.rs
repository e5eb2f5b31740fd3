//! The CIDR -> fabric map the tracker uses to place peers that do not say which fabric
//! they are in (`instream-tracker --fabric-map FILE`).
//!
//! File format, one mapping per line: `CIDR FABRIC`, IPv4 or IPv6, e.g. `10.1.0.0/16 dc-east`
//! or `2001:db8::/32 dc-west`; a bare address means a single host (/32 or /128). `#` starts a
//! comment (whole line or trailing); blank lines are ignored. Errors name the line.
//!
//! Invariants of a [`FabricMap`]: every network has no bits set past its prefix, appears once,
//! and maps to a valid fabric name; lookups return the longest matching prefix, and an
//! IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack socket reports) is looked up
//! as the IPv4 address it carries.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use super::name::{FabricName, InvalidFabricName};

/// A line of a fabric map that could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("fabric map line {line}: {kind}")]
pub struct FabricMapError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: FabricMapErrorKind,
}

/// The kinds of [`FabricMapError`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FabricMapErrorKind {
    /// A network without a fabric name after it.
    #[error("expected `CIDR FABRIC`, found only {0:?}")]
    MissingFabric(String),
    /// More than two fields.
    #[error("unexpected text {0:?} after the fabric name")]
    TrailingText(String),
    /// The address part is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The prefix length is not a number or is too long for the address family.
    #[error("prefix length {text:?} is not a number from 0 to {max}")]
    BadPrefix {
        /// What followed the `/`.
        text: String,
        /// 32 or 128.
        max: u8,
    },
    /// The address has bits set past the prefix (likely a typo).
    #[error("{cidr} has bits set past the prefix; the network is {network}/{len}")]
    HostBitsSet {
        /// As written.
        cidr: String,
        /// The network the prefix selects.
        network: IpAddr,
        /// The prefix length.
        len: u8,
    },
    /// The fabric name is not valid (see [`is_valid_fabric_name`](super::is_valid_fabric_name)).
    #[error(transparent)]
    BadFabricName(InvalidFabricName),
    /// The same network appears twice.
    #[error("{cidr} is already mapped on line {first_line}")]
    Duplicate {
        /// As written.
        cidr: String,
        /// Line of the first mapping.
        first_line: usize,
    },
}

/// One prefix length's networks: masked address -> (fabric index, line defined on).
type Table<A> = Vec<(u8, HashMap<A, (usize, usize)>)>;

/// Which fabric an address belongs to, by longest-prefix match.
#[derive(Debug, Clone, Default)]
pub struct FabricMap {
    names: Vec<String>,
    /// Sorted by prefix length, longest first, so the first hit is the longest match.
    v4: Table<u32>,
    v6: Table<u128>,
    entries: usize,
}

fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn insert<A: std::hash::Hash + Eq>(
    table: &mut Table<A>,
    len: u8,
    key: A,
    value: (usize, usize),
) -> Option<usize> {
    let pos = match table.iter().position(|(l, _)| *l <= len) {
        Some(p) if table[p].0 == len => p,
        Some(p) => {
            table.insert(p, (len, HashMap::new()));
            p
        }
        None => {
            table.push((len, HashMap::new()));
            table.len() - 1
        }
    };
    match table[pos].1.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.get().1),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(value);
            None
        }
    }
}

fn parse_cidr(text: &str) -> Result<(IpAddr, u8), FabricMapErrorKind> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| FabricMapErrorKind::BadAddress(addr_text.to_owned()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match prefix_text {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= max && !p.starts_with('+'))
            .ok_or_else(|| FabricMapErrorKind::BadPrefix {
                text: p.to_owned(),
                max,
            })?,
    };
    let network = match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len))),
    };
    if network != addr {
        return Err(FabricMapErrorKind::HostBitsSet {
            cidr: text.to_owned(),
            network,
            len,
        });
    }
    Ok((addr, len))
}

impl FabricMap {
    /// Parses a fabric map file's text.
    pub fn parse(text: &str) -> Result<Self, FabricMapError> {
        let mut map = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |kind| FabricMapError { line, kind };
            let content = raw.split_once('#').map_or(raw, |(before, _)| before);
            let mut fields = content.split_whitespace();
            let Some(cidr) = fields.next() else { continue };
            let Some(fabric) = fields.next() else {
                return Err(err(FabricMapErrorKind::MissingFabric(cidr.to_owned())));
            };
            if let Some(extra) = fields.next() {
                return Err(err(FabricMapErrorKind::TrailingText(extra.to_owned())));
            }
            let (addr, len) = parse_cidr(cidr).map_err(err)?;
            FabricName::new(fabric).map_err(|e| err(FabricMapErrorKind::BadFabricName(e)))?;
            let name = match map.names.iter().position(|n| n == fabric) {
                Some(idx) => idx,
                None => {
                    map.names.push(fabric.to_owned());
                    map.names.len() - 1
                }
            };
            let previous = match addr {
                IpAddr::V4(a) => insert(&mut map.v4, len, u32::from(a), (name, line)),
                IpAddr::V6(a) => insert(&mut map.v6, len, u128::from(a), (name, line)),
            };
            if let Some(first_line) = previous {
                return Err(err(FabricMapErrorKind::Duplicate {
                    cidr: cidr.to_owned(),
                    first_line,
                }));
            }
            map.entries += 1;
        }
        Ok(map)
    }

    /// The fabric of `addr`: the one mapped to the longest prefix that contains it.
    pub fn fabric_of(&self, addr: IpAddr) -> Option<&str> {
        let hit = match addr {
            IpAddr::V4(a) => Self::lookup_v4(&self.v4, a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Self::lookup_v4(&self.v4, v4),
                None => {
                    let bits = u128::from(a);
                    self.v6
                        .iter()
                        .find_map(|(len, t)| t.get(&(bits & mask_v6(*len))))
                }
            },
        };
        hit.map(|&(name, _)| self.names[name].as_str())
    }

    fn lookup_v4(table: &Table<u32>, a: Ipv4Addr) -> Option<&(usize, usize)> {
        let bits = u32::from(a);
        table
            .iter()
            .find_map(|(len, t)| t.get(&(bits & mask_v4(*len))))
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True if there is no mapping.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The distinct fabric names, in order of first appearance.
    pub fn fabrics(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SAMPLE: &str = "\
# fabrics of the test fleet
10.0.0.0/8        corp
10.1.0.0/16       dc-east   # east building
10.1.2.0/24       dc-east.rack2
10.1.2.3          canary
0.0.0.0/0         elsewhere

2001:db8::/32     dc-west
2001:db8:1::/48   dc-west.lab
";

    #[test]
    fn longest_prefix_wins() {
        let m = FabricMap::parse(SAMPLE).unwrap();
        let table = [
            ("10.9.9.9", Some("corp")),
            ("10.1.9.9", Some("dc-east")),
            ("10.1.2.9", Some("dc-east.rack2")),
            ("10.1.2.3", Some("canary")),
            ("192.0.2.1", Some("elsewhere")),
            ("2001:db8:2::1", Some("dc-west")),
            ("2001:db8:1::1", Some("dc-west.lab")),
            ("2001:db9::1", None),
            ("::1", None),
        ];
        for (addr, want) in table {
            assert_eq!(m.fabric_of(ip(addr)), want, "{addr}");
        }
        assert_eq!(m.len(), 7);
        assert_eq!(m.fabrics().count(), 7);
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_use_the_ipv4_table() {
        let m = FabricMap::parse("10.1.0.0/16 dc-east\n").unwrap();
        assert_eq!(m.fabric_of(ip("::ffff:10.1.2.3")), Some("dc-east"));
        assert_eq!(m.fabric_of(ip("::ffff:10.2.2.3")), None);
    }

    #[test]
    fn empty_map_and_comments_only() {
        let m = FabricMap::parse("# nothing\n\n   \n").unwrap();
        assert!(m.is_empty());
        assert_eq!(m.fabric_of(ip("10.0.0.1")), None);
    }

    #[test]
    fn errors_name_the_line() {
        use FabricMapErrorKind::*;
        let cases: Vec<(&str, usize, FabricMapErrorKind)> = vec![
            ("# ok\n10.0.0.0/8\n", 2, MissingFabric("10.0.0.0/8".into())),
            ("10.0.0.0/8 a b\n", 1, TrailingText("b".into())),
            ("10.0.0/8 a\n", 1, BadAddress("10.0.0".into())),
            ("host.example a\n", 1, BadAddress("host.example".into())),
            (
                "10.0.0.0/33 a\n",
                1,
                BadPrefix {
                    text: "33".into(),
                    max: 32,
                },
            ),
            (
                "::/129 a\n",
                1,
                BadPrefix {
                    text: "129".into(),
                    max: 128,
                },
            ),
            (
                "10.0.0.0/x a\n",
                1,
                BadPrefix {
                    text: "x".into(),
                    max: 32,
                },
            ),
            (
                "10.0.0.0/+8 a\n",
                1,
                BadPrefix {
                    text: "+8".into(),
                    max: 32,
                },
            ),
            (
                "\n10.1.2.3/16 a\n",
                2,
                HostBitsSet {
                    cidr: "10.1.2.3/16".into(),
                    network: ip("10.1.0.0"),
                    len: 16,
                },
            ),
            (
                "10.0.0.0/8 dc/east\n",
                1,
                BadFabricName(InvalidFabricName("dc/east".into())),
            ),
            (
                "10.0.0.0/8 a\n10.0.0.0/8 b\n",
                2,
                Duplicate {
                    cidr: "10.0.0.0/8".into(),
                    first_line: 1,
                },
            ),
        ];
        for (text, line, kind) in cases {
            assert_eq!(
                FabricMap::parse(text).unwrap_err(),
                FabricMapError { line, kind },
                "{text:?}"
            );
        }
        let e = FabricMap::parse("x\n10.0.0.0/8\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert_eq!(
            e.to_string(),
            "fabric map line 1: expected `CIDR FABRIC`, found only \"x\""
        );
    }

    proptest! {
        /// The map agrees with a naive scan over every entry.
        #[test]
        fn lookup_matches_a_linear_scan(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32, 0usize..4), 0..20),
            probes in proptest::collection::vec(any::<u32>(), 1..50),
        ) {
            let mut text = String::new();
            let mut seen = std::collections::HashSet::new();
            let mut entries = Vec::new();
            for (addr, len, fabric) in nets {
                let net = addr & mask_v4(len);
                if seen.insert((net, len)) {
                    text.push_str(&format!("{}/{len} f{fabric}\n", Ipv4Addr::from(net)));
                    entries.push((net, len, format!("f{fabric}")));
                }
            }
            let m = FabricMap::parse(&text).unwrap();
            for p in probes {
                let naive = entries
                    .iter()
                    .filter(|(net, len, _)| p & mask_v4(*len) == *net)
                    .max_by_key(|(_, len, _)| *len)
                    .map(|(_, _, f)| f.as_str());
                prop_assert_eq!(m.fabric_of(IpAddr::V4(Ipv4Addr::from(p))), naive);
            }
        }

        #[test]
        fn garbage_never_panics(text in "[0-9a-f.:/# \\n-]{0,200}") {
            let _ = FabricMap::parse(&text);
        }
    }
}
