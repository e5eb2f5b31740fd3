//! Tracker → client packets (connect, announce, scrape, error). The announce peer list's
//! IP family is the socket's, so [`Response::parse`] takes it as an argument.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use thiserror::Error;

use super::fields::{AnnounceInterval, ConnectionId, TransactionId};
use super::layout::{
    ANNOUNCE_RESPONSE_HEADER_LEN, CONNECT_RESPONSE_LEN, PEER_V4_LEN, PEER_V6_LEN,
    RESPONSE_HEADER_LEN, SCRAPE_ENTRY_LEN, action, be_u16, be_u32, be_u64,
};

/// A response from tracker to client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Hands out a connection id.
    Connect(ConnectResponse),
    /// Peers for an announce.
    Announce(AnnounceResponse),
    /// Counters for a scrape.
    Scrape(ScrapeResponse),
    /// The request was refused.
    Error(ErrorResponse),
}

/// BEP 15 connect response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectResponse {
    /// From the request.
    pub transaction_id: TransactionId,
    /// To quote in the next requests.
    pub connection_id: ConnectionId,
}

/// A compact peer list of one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerList {
    /// 6 bytes per peer (answer on an IPv4 socket).
    V4(Vec<SocketAddrV4>),
    /// 18 bytes per peer (answer on an IPv6 socket).
    V6(Vec<SocketAddrV6>),
}

impl PeerList {
    /// Number of peers.
    pub fn len(&self) -> usize {
        match self {
            Self::V4(p) => p.len(),
            Self::V6(p) => p.len(),
        }
    }

    /// True when there is no peer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The peers as socket addresses.
    pub fn to_socket_addrs(&self) -> Vec<std::net::SocketAddr> {
        match self {
            Self::V4(p) => p.iter().map(|&a| a.into()).collect(),
            Self::V6(p) => p.iter().map(|&a| a.into()).collect(),
        }
    }
}

/// BEP 15 announce response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// From the request.
    pub transaction_id: TransactionId,
    /// When to announce next.
    pub interval: AnnounceInterval,
    /// Peers still downloading.
    pub leechers: u32,
    /// Peers with the whole torrent.
    pub seeders: u32,
    /// Peers to contact.
    pub peers: PeerList,
}

/// Counters of one torrent in a scrape response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TorrentScrapeStats {
    /// Peers with the whole torrent.
    pub seeders: u32,
    /// Downloads completed (`event=completed` announces) since the tracker started.
    pub completed: u32,
    /// Peers still downloading.
    pub leechers: u32,
}

/// BEP 15 scrape response: one entry per requested info-hash, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeResponse {
    /// From the request.
    pub transaction_id: TransactionId,
    /// Counters, in request order.
    pub stats: Vec<TorrentScrapeStats>,
}

/// BEP 15 error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// From the request.
    pub transaction_id: TransactionId,
    /// Human-readable reason.
    pub message: String,
}

/// Why a response packet was refused (client side; never answered).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ResponseParseError {
    /// Fewer bytes than the action needs.
    #[error("response of {len} bytes is shorter than the {min} bytes required")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes required.
        min: usize,
    },
    /// An action code outside 0..=3.
    #[error("unknown response action {action}")]
    UnknownAction {
        /// The action code.
        action: u32,
    },
    /// A peer list or scrape list whose length is not a whole number of entries.
    #[error("list of {len} bytes is not a multiple of {entry}-byte entries")]
    RaggedList {
        /// Bytes in the list.
        len: usize,
        /// Bytes per entry.
        entry: usize,
    },
}

impl Response {
    /// Parses one datagram; `ipv6` says which family the socket had (BEP 15 peer lists
    /// are 6 bytes per peer over IPv4 and 18 over IPv6).
    pub fn parse(bytes: &[u8], ipv6: bool) -> Result<Self, ResponseParseError> {
        let too_short = |min| ResponseParseError::TooShort {
            len: bytes.len(),
            min,
        };
        if bytes.len() < RESPONSE_HEADER_LEN {
            return Err(too_short(RESPONSE_HEADER_LEN));
        }
        let action = be_u32(bytes, 0);
        let transaction_id = TransactionId(be_u32(bytes, 4));
        let body = &bytes[RESPONSE_HEADER_LEN..];
        match action {
            action::CONNECT => {
                if bytes.len() < CONNECT_RESPONSE_LEN {
                    return Err(too_short(CONNECT_RESPONSE_LEN));
                }
                Ok(Self::Connect(ConnectResponse {
                    transaction_id,
                    connection_id: ConnectionId(be_u64(bytes, 8)),
                }))
            }
            action::ANNOUNCE => {
                if bytes.len() < ANNOUNCE_RESPONSE_HEADER_LEN {
                    return Err(too_short(ANNOUNCE_RESPONSE_HEADER_LEN));
                }
                let list = &bytes[ANNOUNCE_RESPONSE_HEADER_LEN..];
                let entry = if ipv6 { PEER_V6_LEN } else { PEER_V4_LEN };
                if !list.len().is_multiple_of(entry) {
                    return Err(ResponseParseError::RaggedList {
                        len: list.len(),
                        entry,
                    });
                }
                let peers = if ipv6 {
                    PeerList::V6(
                        list.chunks_exact(PEER_V6_LEN)
                            .map(|c| {
                                let ip: [u8; 16] = c[..16].try_into().expect("16 bytes");
                                SocketAddrV6::new(Ipv6Addr::from(ip), be_u16(c, 16), 0, 0)
                            })
                            .collect(),
                    )
                } else {
                    PeerList::V4(
                        list.chunks_exact(PEER_V4_LEN)
                            .map(|c| SocketAddrV4::new(Ipv4Addr::from(be_u32(c, 0)), be_u16(c, 4)))
                            .collect(),
                    )
                };
                Ok(Self::Announce(AnnounceResponse {
                    transaction_id,
                    interval: AnnounceInterval(be_u32(bytes, 8)),
                    leechers: be_u32(bytes, 12),
                    seeders: be_u32(bytes, 16),
                    peers,
                }))
            }
            action::SCRAPE => {
                if !body.len().is_multiple_of(SCRAPE_ENTRY_LEN) {
                    return Err(ResponseParseError::RaggedList {
                        len: body.len(),
                        entry: SCRAPE_ENTRY_LEN,
                    });
                }
                let stats = body
                    .chunks_exact(SCRAPE_ENTRY_LEN)
                    .map(|c| TorrentScrapeStats {
                        seeders: be_u32(c, 0),
                        completed: be_u32(c, 4),
                        leechers: be_u32(c, 8),
                    })
                    .collect();
                Ok(Self::Scrape(ScrapeResponse {
                    transaction_id,
                    stats,
                }))
            }
            action::ERROR => Ok(Self::Error(ErrorResponse {
                transaction_id,
                message: String::from_utf8_lossy(body).into_owned(),
            })),
            action => Err(ResponseParseError::UnknownAction { action }),
        }
    }

    /// The transaction this response answers.
    pub fn transaction_id(&self) -> TransactionId {
        match self {
            Self::Connect(r) => r.transaction_id,
            Self::Announce(r) => r.transaction_id,
            Self::Scrape(r) => r.transaction_id,
            Self::Error(r) => r.transaction_id,
        }
    }

    /// Appends the datagram to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Connect(r) => {
                out.extend_from_slice(&action::CONNECT.to_be_bytes());
                out.extend_from_slice(&r.transaction_id.0.to_be_bytes());
                out.extend_from_slice(&r.connection_id.0.to_be_bytes());
            }
            Self::Announce(r) => r.encode(out),
            Self::Scrape(r) => {
                out.extend_from_slice(&action::SCRAPE.to_be_bytes());
                out.extend_from_slice(&r.transaction_id.0.to_be_bytes());
                for s in &r.stats {
                    out.extend_from_slice(&s.seeders.to_be_bytes());
                    out.extend_from_slice(&s.completed.to_be_bytes());
                    out.extend_from_slice(&s.leechers.to_be_bytes());
                }
            }
            Self::Error(r) => encode_error(r.transaction_id, &r.message, out),
        }
    }
}

impl AnnounceResponse {
    /// Appends the datagram to `out` (the tracker's hot path reuses one response value and
    /// one buffer, so this neither allocates nor re-wraps the struct).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&action::ANNOUNCE.to_be_bytes());
        out.extend_from_slice(&self.transaction_id.0.to_be_bytes());
        out.extend_from_slice(&self.interval.0.to_be_bytes());
        out.extend_from_slice(&self.leechers.to_be_bytes());
        out.extend_from_slice(&self.seeders.to_be_bytes());
        match &self.peers {
            PeerList::V4(peers) => {
                for p in peers {
                    out.extend_from_slice(&p.ip().octets());
                    out.extend_from_slice(&p.port().to_be_bytes());
                }
            }
            PeerList::V6(peers) => {
                for p in peers {
                    out.extend_from_slice(&p.ip().octets());
                    out.extend_from_slice(&p.port().to_be_bytes());
                }
            }
        }
    }
}

/// Appends an error response without building an [`ErrorResponse`] (no allocation).
pub fn encode_error(transaction_id: TransactionId, message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&action::ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.0.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
}
