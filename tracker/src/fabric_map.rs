//! CIDR → fabric map (`--fabric-map FILE`), used when an announce does not name its fabric.
//! The file format and the longest-prefix lookup are `proto::fabric`'s; this module loads
//! the file and turns names into the registry's [`FabricId`].

use std::net::IpAddr;
use std::path::Path;

use crate::Error;
use crate::swarm::FabricId;

/// A loaded map.
#[derive(Debug, Clone, Default)]
pub struct FabricMap(proto::fabric::FabricMap);

impl FabricMap {
    /// Reads and parses a map file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| Error::FabricMap {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses map text (`CIDR NAME` per line).
    pub fn parse(text: &str) -> Result<Self, proto::fabric::FabricMapError> {
        proto::fabric::FabricMap::parse(text).map(Self)
    }

    /// The fabric of `ip`, or [`FabricId::UNKNOWN`].
    pub fn lookup(&self, ip: IpAddr) -> FabricId {
        self.0
            .fabric_of(ip)
            .map_or(FabricId::UNKNOWN, FabricId::from_name)
    }

    /// True when the map has no entry (lookups can be skipped).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_the_ids_announces_use() {
        let m = FabricMap::parse("10.0.0.0/8 wide\n10.1.0.0/16 dc1\n").unwrap();
        assert_eq!(
            m.lookup("10.1.2.3".parse().unwrap()),
            FabricId::from_name("dc1")
        );
        assert_eq!(
            m.lookup("10.2.2.3".parse().unwrap()),
            FabricId::from_name("wide")
        );
        assert_eq!(
            m.lookup("::ffff:10.1.0.9".parse().unwrap()),
            FabricId::from_name("dc1")
        );
        assert_eq!(m.lookup("192.168.0.1".parse().unwrap()), FabricId::UNKNOWN);
        assert!(FabricMap::parse("10.0.0.0/8\n").is_err());
    }
}
