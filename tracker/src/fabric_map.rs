//! CIDR → fabric map (`--fabric-map FILE`), used when an announce does not name its fabric.
//!
//! File format: one `CIDR NAME` pair per line (`10.1.0.0/16 dc1`, `fd00:1::/32 dc2`);
//! blank lines and `#` comments are skipped. The longest matching prefix wins.
//! (`proto::fabric` will own this parser once it lands; this one keeps the same format.)

use std::net::IpAddr;
use std::path::Path;

use crate::Error;
use crate::swarm::FabricId;

#[derive(Debug, Clone)]
struct Entry {
    net: u128,
    mask: u128,
    prefix: u8,
    v4: bool,
    fabric: FabricId,
    name: String,
}

/// A parsed map; lookups are by longest prefix.
#[derive(Debug, Clone, Default)]
pub struct FabricMap {
    /// Sorted by prefix length, longest first, so the first match is the best.
    entries: Vec<Entry>,
}

fn to_u128(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), true),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), true),
            None => (u128::from(v6), false),
        },
    }
}

impl FabricMap {
    /// Reads and parses a map file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|line| Error::FabricMap {
            path: path.to_owned(),
            line,
        })
    }

    /// Parses map text; the error is the 1-based number of the first bad line.
    pub fn parse(text: &str) -> Result<Self, usize> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = i + 1;
            let mut words = line.split_whitespace();
            let (Some(cidr), Some(name), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad);
            };
            if !proto::tracker::valid_fabric_name(name.as_bytes()) {
                return Err(bad);
            }
            let (ip, prefix) = cidr.split_once('/').ok_or(bad)?;
            let ip: IpAddr = ip.parse().map_err(|_| bad)?;
            let prefix: u8 = prefix.parse().map_err(|_| bad)?;
            let (net, v4) = to_u128(ip);
            let bits = if v4 { 32 } else { 128 };
            if prefix > bits {
                return Err(bad);
            }
            let host_bits = u32::from(bits - prefix);
            let full = if v4 { u128::from(u32::MAX) } else { u128::MAX };
            let mask = full.checked_shl(host_bits).unwrap_or(0) & full;
            entries.push(Entry {
                net: net & mask,
                mask,
                prefix,
                v4,
                fabric: FabricId::from_name(name),
                name: name.to_owned(),
            });
        }
        entries.sort_by(|a, b| b.prefix.cmp(&a.prefix));
        Ok(Self { entries })
    }

    /// The fabric of `ip`, or [`FabricId::UNKNOWN`].
    pub fn lookup(&self, ip: IpAddr) -> FabricId {
        self.lookup_name(ip)
            .map(|(id, _)| id)
            .unwrap_or(FabricId::UNKNOWN)
    }

    /// The fabric id and name of `ip`, if any entry matches.
    pub fn lookup_name(&self, ip: IpAddr) -> Option<(FabricId, &str)> {
        let (addr, v4) = to_u128(ip);
        self.entries
            .iter()
            .find(|e| e.v4 == v4 && addr & e.mask == e.net)
            .map(|e| (e.fabric, e.name.as_str()))
    }

    /// True when the map has no entry (lookups can be skipped).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let m = FabricMap::parse(
            "# fleet\n10.0.0.0/8 wide\n10.1.0.0/16 dc1 # narrower\nfd00::/16 v6dc\n0.0.0.0/0 rest\n",
        )
        .unwrap();
        let name = |ip: &str| {
            m.lookup_name(ip.parse().unwrap())
                .map(|(_, n)| n.to_owned())
        };
        assert_eq!(name("10.1.2.3").as_deref(), Some("dc1"));
        assert_eq!(name("10.2.2.3").as_deref(), Some("wide"));
        assert_eq!(name("192.168.1.1").as_deref(), Some("rest"));
        assert_eq!(name("::ffff:10.1.0.9").as_deref(), Some("dc1"), "v4-mapped");
        assert_eq!(name("fd00:1::1").as_deref(), Some("v6dc"));
        assert_eq!(name("fe80::1"), None);
        assert_eq!(
            m.lookup("10.1.2.3".parse().unwrap()),
            FabricId::from_name("dc1")
        );
    }

    #[test]
    fn bad_lines_are_reported_by_number() {
        assert_eq!(
            FabricMap::parse("10.0.0.0/8 a\n10.0.0.0 b\n").unwrap_err(),
            2
        );
        assert_eq!(FabricMap::parse("10.0.0.0/33 a\n").unwrap_err(), 1);
        assert_eq!(FabricMap::parse("10.0.0.0/8\n").unwrap_err(), 1);
        assert_eq!(FabricMap::parse("10.0.0.0/8 a b\n").unwrap_err(), 1);
        assert_eq!(FabricMap::parse("10.0.0.0/8 a&b\n").unwrap_err(), 1);
    }
}
