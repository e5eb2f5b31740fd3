//! Tracker protocol codecs, sans-IO: BEP 15 UDP packets (with BEP 41 URL data) in [`udp`],
//! BEP 3 / BEP 23 HTTP announce and scrape (query strings and bencoded replies) in [`http`].
//!
//! Both directions live here, so the tracker server, the engine's announce client, the
//! benchmarks and the fuzzers all read and write the same bytes. Nothing here touches a
//! socket or a clock; every length read from the wire is bounded before anything is
//! allocated for it.

pub mod http;
pub mod udp;

/// What an announce tells the tracker about the peer's life cycle (BEP 3 `event`,
/// BEP 15 `event` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AnnounceEvent {
    /// A regular, periodic announce.
    #[default]
    None,
    /// The download just finished.
    Completed,
    /// The first announce of this peer for this torrent.
    Started,
    /// The peer leaves the swarm.
    Stopped,
}

impl AnnounceEvent {
    /// The BEP 15 wire code: 0 none, 1 completed, 2 started, 3 stopped.
    pub fn to_udp(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Completed => 1,
            Self::Started => 2,
            Self::Stopped => 3,
        }
    }

    /// Decodes a BEP 15 event code; unknown codes are refused by the caller.
    pub fn from_udp(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::None,
            1 => Self::Completed,
            2 => Self::Started,
            3 => Self::Stopped,
            _ => return None,
        })
    }

    /// The BEP 3 query value, or `None` for a regular announce (the parameter is omitted).
    pub fn to_http(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Completed => Some("completed"),
            Self::Started => Some("started"),
            Self::Stopped => Some("stopped"),
        }
    }

    /// Decodes a BEP 3 `event` value; the empty string and `empty` mean a regular announce,
    /// as some clients send them.
    pub fn from_http(value: &[u8]) -> Option<Self> {
        Some(match value {
            b"" | b"empty" => Self::None,
            b"completed" => Self::Completed,
            b"started" => Self::Started,
            b"stopped" => Self::Stopped,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_round_trip() {
        for ev in [
            AnnounceEvent::None,
            AnnounceEvent::Completed,
            AnnounceEvent::Started,
            AnnounceEvent::Stopped,
        ] {
            assert_eq!(AnnounceEvent::from_udp(ev.to_udp()), Some(ev));
            assert_eq!(
                AnnounceEvent::from_http(ev.to_http().unwrap_or("").as_bytes()),
                Some(ev)
            );
        }
        assert_eq!(AnnounceEvent::from_udp(4), None);
        assert_eq!(AnnounceEvent::from_http(b"paused"), None);
    }
}
