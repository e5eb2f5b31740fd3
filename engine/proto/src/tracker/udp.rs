//! BEP 15 UDP tracker packets, both directions, with BEP 41 URL data.
//!
//! <https://www.bittorrent.org/beps/bep_0015.html>,
//! <https://www.bittorrent.org/beps/bep_0041.html>.
//!
//! All integers are big-endian. A request starts with a 16-byte header (connection id,
//! action, transaction id); a response with an 8-byte header (action, transaction id).
//! The IP family of an announce response's peer list is not on the wire: it is the family
//! of the socket the packet travelled on, so [`Response::parse`] takes it as an argument.
//!
//! Invariants: parsing never panics and never allocates more than the input's length
//! (scrape lists are bounded by the caller's `max_scrape_hashes`); a request error is typed
//! [`RequestParseError::Sendable`] only when the header was readable, so the server may
//! answer it (after checking the connection id) and otherwise must stay silent.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use thiserror::Error;

use super::AnnounceEvent;
use crate::{InfoHash, PeerId};

/// The magic connection id of a connect request (BEP 15 `protocol_id`).
pub const PROTOCOL_ID: u64 = 0x417_2710_1980;

/// Length of a connect request: connection id 8 + action 4 + transaction id 4.
pub const CONNECT_REQUEST_LEN: usize = 8 + 4 + 4;
/// Length of an announce request without BEP 41 options: the 16-byte header, info-hash 20,
/// peer id 20, downloaded 8, left 8, uploaded 8, event 4, IP 4, key 4, num_want 4, port 2.
pub const ANNOUNCE_REQUEST_LEN: usize = 16 + 20 + 20 + 8 + 8 + 8 + 4 + 4 + 4 + 4 + 2;
/// Length of a scrape request's header; 20 bytes per info-hash follow it.
pub const SCRAPE_REQUEST_HEADER_LEN: usize = 16;
/// BEP 15: "up to about 74 torrents can be scraped at once" (a response of 8 + 74 × 12
/// bytes stays well inside one Ethernet frame).
pub const MAX_SCRAPE_INFO_HASHES: usize = 74;
/// Length of a response header: action 4 + transaction id 4.
pub const RESPONSE_HEADER_LEN: usize = 4 + 4;
/// Length of a connect response: header 8 + connection id 8.
pub const CONNECT_RESPONSE_LEN: usize = RESPONSE_HEADER_LEN + 8;
/// Length of an announce response before its peers: header 8 + interval 4 + leechers 4 +
/// seeders 4.
pub const ANNOUNCE_RESPONSE_HEADER_LEN: usize = RESPONSE_HEADER_LEN + 4 + 4 + 4;
/// One compact IPv4 peer: address 4 + port 2 (BEP 23 layout).
pub const PEER_V4_LEN: usize = 4 + 2;
/// One compact IPv6 peer: address 16 + port 2.
pub const PEER_V6_LEN: usize = 16 + 2;
/// One scrape entry: seeders 4 + completed 4 + leechers 4.
pub const SCRAPE_ENTRY_LEN: usize = 4 + 4 + 4;

mod action {
    pub(super) const CONNECT: u32 = 0;
    pub(super) const ANNOUNCE: u32 = 1;
    pub(super) const SCRAPE: u32 = 2;
    pub(super) const ERROR: u32 = 3;
}

/// BEP 41 option types.
mod option {
    pub(super) const END_OF_OPTIONS: u8 = 0;
    pub(super) const NOP: u8 = 1;
    pub(super) const URL_DATA: u8 = 2;
}

/// The opaque 64-bit id a tracker hands out in a connect response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// The client's 32-bit id that pairs a response with its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub u32);

/// The announce `key`: lets a tracker recognise a peer whose address changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PeerKey(pub u32);

/// The announce `num_want`; negative means "the tracker's default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NumWant(pub i32);

impl NumWant {
    /// The wire value of "tracker's default".
    pub const DEFAULT: Self = Self(-1);

    /// The number of peers asked for, or `None` for the tracker's default.
    pub fn get(self) -> Option<u32> {
        u32::try_from(self.0).ok()
    }
}

/// Seconds a client should wait before its next regular announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnnounceInterval(pub u32);

/// A request from client to tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Asks for a connection id.
    Connect(ConnectRequest),
    /// Announces a peer and asks for peers.
    Announce(AnnounceRequest),
    /// Asks for per-torrent counters.
    Scrape(ScrapeRequest),
}

/// BEP 15 connect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Echoed in the response.
    pub transaction_id: TransactionId,
}

/// BEP 15 announce request, with its BEP 41 URL data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// From the connect response.
    pub connection_id: ConnectionId,
    /// Echoed in the response.
    pub transaction_id: TransactionId,
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Bytes downloaded so far.
    pub downloaded: u64,
    /// Bytes still missing; 0 means the peer is a seeder.
    pub left: u64,
    /// Bytes uploaded so far.
    pub uploaded: u64,
    /// Life-cycle event.
    pub event: AnnounceEvent,
    /// The address the peer asks to be listed under; `0.0.0.0` means "the packet's source".
    pub ip_address: Ipv4Addr,
    /// Peer key.
    pub key: PeerKey,
    /// Peers asked for.
    pub num_want: NumWant,
    /// The peer's listening port.
    pub port: u16,
    /// BEP 41 URL data: the announce URL's path and query (`/announce?fabric=f1`), the
    /// concatenation of every URL-data option; empty when the client sent none.
    pub url_data: Vec<u8>,
}

impl AnnounceRequest {
    /// The raw value of query parameter `name` in the URL data, if present.
    pub fn url_param(&self, name: &str) -> Option<&[u8]> {
        query_param(&self.url_data, name.as_bytes())
    }

    /// The peer's fabric from the URL data (`?fabric=NAME`), if present and well formed.
    pub fn fabric(&self) -> Option<&str> {
        let raw = self.url_param("fabric")?;
        if crate::fabric::is_valid_fabric_name(raw) {
            std::str::from_utf8(raw).ok()
        } else {
            None
        }
    }
}

/// Finds `name=value` in the query part of `url` (after `?`, or the whole input if it has
/// no `?`) and returns the raw value.
fn query_param<'a>(url: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let query = match url.iter().position(|&b| b == b'?') {
        Some(i) => &url[i + 1..],
        None => url,
    };
    query.split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name).then(|| &pair[eq + 1..])
    })
}

/// BEP 15 scrape request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    /// From the connect response.
    pub connection_id: ConnectionId,
    /// Echoed in the response.
    pub transaction_id: TransactionId,
    /// The torrents, in the order the response must follow.
    pub info_hashes: Vec<InfoHash>,
}

/// What was wrong with a request packet.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RequestErrorKind {
    /// Fewer bytes than the action needs.
    #[error("packet of {len} bytes is shorter than the {min} bytes required")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes required.
        min: usize,
    },
    /// A connect request without the BEP 15 magic.
    #[error("connect request has protocol id {found:#x}, not the BEP 15 magic")]
    BadProtocolId {
        /// The value found.
        found: u64,
    },
    /// An action this tracker does not know.
    #[error("unknown action {action}")]
    UnknownAction {
        /// The action code.
        action: u32,
    },
    /// An announce event code outside 0..=3.
    #[error("unknown announce event {event}")]
    UnknownEvent {
        /// The event code.
        event: u32,
    },
    /// A scrape request with no info-hash.
    #[error("scrape request lists no info-hash")]
    NoInfoHashes,
    /// A scrape request with more info-hashes than allowed.
    #[error("scrape request lists {count} info-hashes, at most {max} are allowed")]
    TooManyInfoHashes {
        /// Info-hashes in the packet.
        count: usize,
        /// The bound in force.
        max: usize,
    },
}

/// A request that could not be parsed, tagged with whether the tracker may answer it.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RequestParseError {
    /// The header was readable: the tracker may send an error response to this transaction
    /// once it has checked `connection_id`.
    #[error("{kind}")]
    Sendable {
        /// The connection id the client claimed.
        connection_id: ConnectionId,
        /// The transaction to answer.
        transaction_id: TransactionId,
        /// What was wrong.
        kind: RequestErrorKind,
    },
    /// No usable header (or a bad connect request): drop the packet silently.
    #[error("{kind}")]
    Unsendable {
        /// What was wrong.
        kind: RequestErrorKind,
    },
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn array20(b: &[u8], at: usize) -> [u8; 20] {
    b[at..at + 20].try_into().expect("20 bytes")
}

impl Request {
    /// Parses one datagram. `max_scrape_hashes` bounds a scrape request's list (use
    /// [`MAX_SCRAPE_INFO_HASHES`] unless configured otherwise).
    pub fn parse(bytes: &[u8], max_scrape_hashes: usize) -> Result<Self, RequestParseError> {
        if bytes.len() < CONNECT_REQUEST_LEN {
            return Err(RequestParseError::Unsendable {
                kind: RequestErrorKind::TooShort {
                    len: bytes.len(),
                    min: CONNECT_REQUEST_LEN,
                },
            });
        }
        let connection_id = ConnectionId(be_u64(bytes, 0));
        let action = be_u32(bytes, 8);
        let transaction_id = TransactionId(be_u32(bytes, 12));
        let sendable = |kind| RequestParseError::Sendable {
            connection_id,
            transaction_id,
            kind,
        };
        match action {
            action::CONNECT => {
                if connection_id.0 != PROTOCOL_ID {
                    return Err(RequestParseError::Unsendable {
                        kind: RequestErrorKind::BadProtocolId {
                            found: connection_id.0,
                        },
                    });
                }
                Ok(Self::Connect(ConnectRequest { transaction_id }))
            }
            action::ANNOUNCE => {
                if bytes.len() < ANNOUNCE_REQUEST_LEN {
                    return Err(sendable(RequestErrorKind::TooShort {
                        len: bytes.len(),
                        min: ANNOUNCE_REQUEST_LEN,
                    }));
                }
                let event_code = be_u32(bytes, 80);
                let event = AnnounceEvent::from_udp(event_code).ok_or(sendable(
                    RequestErrorKind::UnknownEvent { event: event_code },
                ))?;
                Ok(Self::Announce(AnnounceRequest {
                    connection_id,
                    transaction_id,
                    info_hash: InfoHash(array20(bytes, 16)),
                    peer_id: PeerId(array20(bytes, 36)),
                    downloaded: be_u64(bytes, 56),
                    left: be_u64(bytes, 64),
                    uploaded: be_u64(bytes, 72),
                    event,
                    ip_address: Ipv4Addr::from(be_u32(bytes, 84)),
                    key: PeerKey(be_u32(bytes, 88)),
                    num_want: NumWant(be_u32(bytes, 92) as i32),
                    port: be_u16(bytes, 96),
                    url_data: parse_url_data(&bytes[ANNOUNCE_REQUEST_LEN..]),
                }))
            }
            action::SCRAPE => {
                // A trailing partial hash is ignored, as other trackers do.
                let count = (bytes.len() - SCRAPE_REQUEST_HEADER_LEN) / 20;
                if count == 0 {
                    return Err(sendable(RequestErrorKind::NoInfoHashes));
                }
                if count > max_scrape_hashes {
                    return Err(sendable(RequestErrorKind::TooManyInfoHashes {
                        count,
                        max: max_scrape_hashes,
                    }));
                }
                let info_hashes = bytes[SCRAPE_REQUEST_HEADER_LEN..]
                    .chunks_exact(20)
                    .map(|c| InfoHash(c.try_into().expect("20 bytes")))
                    .collect();
                Ok(Self::Scrape(ScrapeRequest {
                    connection_id,
                    transaction_id,
                    info_hashes,
                }))
            }
            action => Err(sendable(RequestErrorKind::UnknownAction { action })),
        }
    }

    /// Appends the datagram to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Connect(r) => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&action::CONNECT.to_be_bytes());
                out.extend_from_slice(&r.transaction_id.0.to_be_bytes());
            }
            Self::Announce(r) => {
                out.extend_from_slice(&r.connection_id.0.to_be_bytes());
                out.extend_from_slice(&action::ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&r.transaction_id.0.to_be_bytes());
                out.extend_from_slice(&r.info_hash.0);
                out.extend_from_slice(&r.peer_id.0);
                out.extend_from_slice(&r.downloaded.to_be_bytes());
                out.extend_from_slice(&r.left.to_be_bytes());
                out.extend_from_slice(&r.uploaded.to_be_bytes());
                out.extend_from_slice(&r.event.to_udp().to_be_bytes());
                out.extend_from_slice(&r.ip_address.octets());
                out.extend_from_slice(&r.key.0.to_be_bytes());
                out.extend_from_slice(&r.num_want.0.to_be_bytes());
                out.extend_from_slice(&r.port.to_be_bytes());
                encode_url_data(&r.url_data, out);
            }
            Self::Scrape(r) => {
                out.extend_from_slice(&r.connection_id.0.to_be_bytes());
                out.extend_from_slice(&action::SCRAPE.to_be_bytes());
                out.extend_from_slice(&r.transaction_id.0.to_be_bytes());
                for h in &r.info_hashes {
                    out.extend_from_slice(&h.0);
                }
            }
        }
    }
}

/// BEP 41: a sequence of options after the announce body. `EndOfOptions` (0) stops,
/// `NOP` (1) is one byte, every other type carries a length byte and that many bytes;
/// `URLData` (2) payloads are concatenated. Malformed or truncated options end the parse
/// without failing the announce: the announce itself was complete.
fn parse_url_data(mut opts: &[u8]) -> Vec<u8> {
    let mut url = Vec::new();
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            option::END_OF_OPTIONS => break,
            option::NOP => opts = rest,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len);
                if rest.len() < len {
                    break;
                }
                if kind == option::URL_DATA {
                    url.extend_from_slice(&rest[..len]);
                }
                opts = &rest[len..];
            }
        }
    }
    url
}

/// Writes `url` as URL-data options of at most 255 bytes each, then `EndOfOptions`;
/// writes nothing for an empty `url`.
fn encode_url_data(url: &[u8], out: &mut Vec<u8>) {
    if url.is_empty() {
        return;
    }
    for chunk in url.chunks(usize::from(u8::MAX)) {
        out.push(option::URL_DATA);
        out.push(u8::try_from(chunk.len()).expect("chunks of at most 255"));
        out.extend_from_slice(chunk);
    }
    out.push(option::END_OF_OPTIONS);
}

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

/// The URL-data parameter (`fabric_share=1`) by which an instream client asks for
/// [`append_fabric_share`]'s trailer; nobody else sends it, so no other client sees one.
pub const FABRIC_SHARE_PARAM: &str = "fabric_share";
/// Last bytes of the fabric-share trailer.
const FABRIC_SHARE_MAGIC: &[u8; 3] = b"ifs";
/// Trailer length: rank 4 + count 4 + magic 3. Eleven is not a multiple of 6 or 18, so a
/// trailer is never mistaken for whole peers: a list with one is "ragged" to a parser that
/// does not strip it, and one without one is never stripped.
pub const FABRIC_SHARE_TRAILER_LEN: usize = 4 + 4 + 3;

/// Appends an instream tracker's fabric share (the announcer's rank among its fabric's
/// downloading hosts and their count, see [`crate::picker::FabricShare`]) after an
/// announce response's peers. Only for requests that asked with [`FABRIC_SHARE_PARAM`]:
/// BEP 15 has no room for extensions, and other clients would read it as a peer.
pub fn append_fabric_share(share: crate::picker::FabricShare, out: &mut Vec<u8>) {
    out.extend_from_slice(&share.rank.to_be_bytes());
    out.extend_from_slice(&share.of.to_be_bytes());
    out.extend_from_slice(FABRIC_SHARE_MAGIC);
}

/// Splits a fabric-share trailer off an announce response datagram (IP family as in
/// [`Response::parse`]): the datagram without it, and the share if there was a valid one.
pub fn split_fabric_share(bytes: &[u8], ipv6: bool) -> (&[u8], Option<crate::picker::FabricShare>) {
    let entry = if ipv6 { PEER_V6_LEN } else { PEER_V4_LEN };
    let n = bytes.len();
    let is_announce = n >= RESPONSE_HEADER_LEN && be_u32(bytes, 0) == action::ANNOUNCE;
    if !is_announce
        || n < ANNOUNCE_RESPONSE_HEADER_LEN + FABRIC_SHARE_TRAILER_LEN
        || !bytes.ends_with(FABRIC_SHARE_MAGIC)
        || !(n - ANNOUNCE_RESPONSE_HEADER_LEN - FABRIC_SHARE_TRAILER_LEN).is_multiple_of(entry)
    {
        return (bytes, None);
    }
    let at = n - FABRIC_SHARE_TRAILER_LEN;
    let (rank, of) = (be_u32(bytes, at), be_u32(bytes, at + 4));
    let share = (rank < of).then_some(crate::picker::FabricShare { rank, of });
    (&bytes[..at], share)
}

/// Appends an error response without building an [`ErrorResponse`] (no allocation).
pub fn encode_error(transaction_id: TransactionId, message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&action::ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.0.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    fn ih(b: u8) -> InfoHash {
        InfoHash([b; 20])
    }

    fn announce() -> AnnounceRequest {
        AnnounceRequest {
            connection_id: ConnectionId(0x0102_0304_0506_0708),
            transaction_id: TransactionId(0xdead_beef),
            info_hash: ih(0xaa),
            peer_id: PeerId(*b"-IS0100-abcdefghijkl"),
            downloaded: 1,
            left: 2,
            uploaded: 3,
            event: AnnounceEvent::Started,
            ip_address: Ipv4Addr::UNSPECIFIED,
            key: PeerKey(7),
            num_want: NumWant::DEFAULT,
            port: 6881,
            url_data: b"/announce?fabric=f1".to_vec(),
        }
    }

    /// BEP 15 "Announce" request, field by field, with one BEP 41 URL-data option.
    /// <https://www.bittorrent.org/beps/bep_0015.html>, <https://www.bittorrent.org/beps/bep_0041.html>
    #[test]
    fn announce_request_fixture() {
        let mut b = Vec::new();
        b.extend(0x0102_0304_0506_0708u64.to_be_bytes()); // connection_id
        b.extend(1u32.to_be_bytes()); // action: announce
        b.extend(0xdead_beefu32.to_be_bytes()); // transaction_id
        b.extend([0xaa; 20]); // info_hash
        b.extend(*b"-IS0100-abcdefghijkl"); // peer_id
        b.extend(1u64.to_be_bytes()); // downloaded
        b.extend(2u64.to_be_bytes()); // left
        b.extend(3u64.to_be_bytes()); // uploaded
        b.extend(2u32.to_be_bytes()); // event: started
        b.extend(0u32.to_be_bytes()); // IP address: default
        b.extend(7u32.to_be_bytes()); // key
        b.extend((-1i32).to_be_bytes()); // num_want: default
        b.extend(6881u16.to_be_bytes()); // port
        b.push(2); // BEP 41 option: URLData
        b.push(19); // option length
        b.extend(b"/announce?fabric=f1"); // URL data
        b.push(0); // BEP 41 option: EndOfOptions

        let parsed = Request::parse(&b, MAX_SCRAPE_INFO_HASHES).unwrap();
        assert_eq!(parsed, Request::Announce(announce()));
        let mut out = Vec::new();
        parsed.encode(&mut out);
        assert_eq!(out, b);
        let Request::Announce(a) = parsed else {
            unreachable!()
        };
        assert_eq!(a.fabric(), Some("f1"));
    }

    /// BEP 15 "Connect" request and response.
    #[test]
    fn connect_fixtures() {
        let mut req = Vec::new();
        req.extend(0x417_2710_1980u64.to_be_bytes()); // protocol_id
        req.extend(0u32.to_be_bytes()); // action: connect
        req.extend(42u32.to_be_bytes()); // transaction_id
        assert_eq!(
            Request::parse(&req, 74),
            Ok(Request::Connect(ConnectRequest {
                transaction_id: TransactionId(42)
            }))
        );

        let mut resp = Vec::new();
        resp.extend(0u32.to_be_bytes()); // action: connect
        resp.extend(42u32.to_be_bytes()); // transaction_id
        resp.extend(99u64.to_be_bytes()); // connection_id
        let expected = Response::Connect(ConnectResponse {
            transaction_id: TransactionId(42),
            connection_id: ConnectionId(99),
        });
        assert_eq!(Response::parse(&resp, false), Ok(expected.clone()));
        let mut out = Vec::new();
        expected.encode(&mut out);
        assert_eq!(out, resp);
    }

    /// BEP 15 "Announce" responses over IPv4 (6-byte peers) and IPv6 (18-byte peers).
    #[test]
    fn announce_response_fixtures() {
        let mut v4 = Vec::new();
        v4.extend(1u32.to_be_bytes()); // action: announce
        v4.extend(5u32.to_be_bytes()); // transaction_id
        v4.extend(1800u32.to_be_bytes()); // interval
        v4.extend(3u32.to_be_bytes()); // leechers
        v4.extend(1u32.to_be_bytes()); // seeders
        v4.extend([10, 0, 0, 1]); // IPv4 address
        v4.extend(6881u16.to_be_bytes()); // TCP port
        let Response::Announce(a) = Response::parse(&v4, false).unwrap() else {
            panic!("not an announce")
        };
        assert_eq!(
            a.peers,
            PeerList::V4(vec!["10.0.0.1:6881".parse().unwrap()])
        );
        assert_eq!((a.interval.0, a.leechers, a.seeders), (1800, 3, 1));

        let mut v6 = Vec::new();
        v6.extend(1u32.to_be_bytes()); // action: announce
        v6.extend(5u32.to_be_bytes()); // transaction_id
        v6.extend(1800u32.to_be_bytes()); // interval
        v6.extend(0u32.to_be_bytes()); // leechers
        v6.extend(1u32.to_be_bytes()); // seeders
        v6.extend("::1".parse::<Ipv6Addr>().unwrap().octets()); // IPv6 address
        v6.extend(51413u16.to_be_bytes()); // TCP port
        let Response::Announce(a) = Response::parse(&v6, true).unwrap() else {
            panic!("not an announce")
        };
        assert_eq!(
            a.peers.to_socket_addrs(),
            vec!["[::1]:51413".parse::<std::net::SocketAddr>().unwrap()]
        );
        // The same bytes read as IPv4 are ragged: 18 is a multiple of 6, so check a
        // length that is not.
        assert_eq!(
            Response::parse(&v4[..v4.len() - 1], false),
            Err(ResponseParseError::RaggedList { len: 5, entry: 6 })
        );
    }

    /// BEP 15 "Scrape" request and response, and "Error".
    #[test]
    fn scrape_and_error_fixtures() {
        let mut req = Vec::new();
        req.extend(77u64.to_be_bytes()); // connection_id
        req.extend(2u32.to_be_bytes()); // action: scrape
        req.extend(9u32.to_be_bytes()); // transaction_id
        req.extend([1; 20]); // info_hash 1
        req.extend([2; 20]); // info_hash 2
        assert_eq!(
            Request::parse(&req, 74),
            Ok(Request::Scrape(ScrapeRequest {
                connection_id: ConnectionId(77),
                transaction_id: TransactionId(9),
                info_hashes: vec![ih(1), ih(2)],
            }))
        );

        let mut resp = Vec::new();
        resp.extend(2u32.to_be_bytes()); // action: scrape
        resp.extend(9u32.to_be_bytes()); // transaction_id
        resp.extend(4u32.to_be_bytes()); // seeders
        resp.extend(5u32.to_be_bytes()); // completed
        resp.extend(6u32.to_be_bytes()); // leechers
        assert_eq!(
            Response::parse(&resp, false),
            Ok(Response::Scrape(ScrapeResponse {
                transaction_id: TransactionId(9),
                stats: vec![TorrentScrapeStats {
                    seeders: 4,
                    completed: 5,
                    leechers: 6
                }],
            }))
        );

        let mut err = Vec::new();
        err.extend(3u32.to_be_bytes()); // action: error
        err.extend(9u32.to_be_bytes()); // transaction_id
        err.extend(b"unregistered torrent"); // message
        assert_eq!(
            Response::parse(&err, false),
            Ok(Response::Error(ErrorResponse {
                transaction_id: TransactionId(9),
                message: "unregistered torrent".into()
            }))
        );
    }

    #[test]
    fn request_errors_say_whether_they_may_be_answered() {
        let mut b = Vec::new();
        Request::Announce(announce()).encode(&mut b);
        // Header readable, body short: sendable.
        assert_eq!(
            Request::parse(&b[..50], 74),
            Err(RequestParseError::Sendable {
                connection_id: ConnectionId(0x0102_0304_0506_0708),
                transaction_id: TransactionId(0xdead_beef),
                kind: RequestErrorKind::TooShort {
                    len: 50,
                    min: ANNOUNCE_REQUEST_LEN
                },
            })
        );
        // No header: unsendable.
        assert_eq!(
            Request::parse(&b[..15], 74),
            Err(RequestParseError::Unsendable {
                kind: RequestErrorKind::TooShort { len: 15, min: 16 }
            })
        );
        // Wrong action: sendable.
        let mut wrong = b.clone();
        wrong[8..12].copy_from_slice(&7u32.to_be_bytes());
        assert!(matches!(
            Request::parse(&wrong, 74),
            Err(RequestParseError::Sendable {
                kind: RequestErrorKind::UnknownAction { action: 7 },
                ..
            })
        ));
        // Bad event code.
        let mut bad_event = b.clone();
        bad_event[80..84].copy_from_slice(&9u32.to_be_bytes());
        assert!(matches!(
            Request::parse(&bad_event, 74),
            Err(RequestParseError::Sendable {
                kind: RequestErrorKind::UnknownEvent { event: 9 },
                ..
            })
        ));
        // Connect without the magic: unsendable.
        let mut connect = Vec::new();
        connect.extend(5u64.to_be_bytes());
        connect.extend(0u32.to_be_bytes());
        connect.extend(1u32.to_be_bytes());
        assert_eq!(
            Request::parse(&connect, 74),
            Err(RequestParseError::Unsendable {
                kind: RequestErrorKind::BadProtocolId { found: 5 }
            })
        );
    }

    #[test]
    fn oversized_and_empty_scrapes_are_refused() {
        let scrape = |n: usize| {
            let mut b = Vec::new();
            Request::Scrape(ScrapeRequest {
                connection_id: ConnectionId(1),
                transaction_id: TransactionId(2),
                info_hashes: (0..n).map(|i| ih(u8::try_from(i).unwrap())).collect(),
            })
            .encode(&mut b);
            Request::parse(&b, MAX_SCRAPE_INFO_HASHES)
        };
        assert!(scrape(MAX_SCRAPE_INFO_HASHES).is_ok());
        assert!(matches!(
            scrape(MAX_SCRAPE_INFO_HASHES + 1),
            Err(RequestParseError::Sendable {
                kind: RequestErrorKind::TooManyInfoHashes { count: 75, max: 74 },
                ..
            })
        ));
        assert!(matches!(
            scrape(0),
            Err(RequestParseError::Sendable {
                kind: RequestErrorKind::NoInfoHashes,
                ..
            })
        ));
    }

    #[test]
    fn url_data_options_are_concatenated_and_nops_skipped() {
        let mut b = Vec::new();
        let mut a = announce();
        a.url_data.clear();
        Request::Announce(a).encode(&mut b);
        b.push(1); // NOP
        b.extend([2, 9]); // URLData, 9 bytes
        b.extend(b"/announce");
        b.extend([7, 2, 0, 0]); // unknown option with 2 bytes: skipped
        b.extend([2, 10]); // URLData, 10 bytes
        b.extend(b"?fabric=f2");
        b.extend([2, 200]); // truncated option: ends the parse
        let Ok(Request::Announce(a)) = Request::parse(&b, 74) else {
            panic!("announce must parse")
        };
        assert_eq!(a.url_data, b"/announce?fabric=f2");
        assert_eq!(a.fabric(), Some("f2"));
    }

    #[test]
    fn long_url_data_is_split_into_255_byte_options() {
        let mut a = announce();
        a.url_data = vec![b'x'; 600];
        let mut b = Vec::new();
        Request::Announce(a.clone()).encode(&mut b);
        assert_eq!(b.len(), ANNOUNCE_REQUEST_LEN + 3 * 2 + 600 + 1);
        assert_eq!(Request::parse(&b, 74), Ok(Request::Announce(a)));
    }

    #[test]
    fn fabric_share_trailer_is_stripped_only_when_whole() {
        use crate::picker::FabricShare;
        for ipv6 in [false, true] {
            let peers = if ipv6 {
                PeerList::V6(vec!["[::1]:5".parse().unwrap(); 2])
            } else {
                PeerList::V4(vec!["1.2.3.4:5".parse().unwrap(); 3])
            };
            let resp = Response::Announce(AnnounceResponse {
                transaction_id: TransactionId(9),
                interval: AnnounceInterval(30),
                leechers: 1,
                seeders: 2,
                peers,
            });
            let mut plain = Vec::new();
            resp.encode(&mut plain);
            let mut with = plain.clone();
            append_fabric_share(FabricShare { rank: 3, of: 7 }, &mut with);
            // A parser that does not know the trailer refuses the list rather than
            // inventing a peer from it.
            assert!(Response::parse(&with, ipv6).is_err());
            let (rest, share) = split_fabric_share(&with, ipv6);
            assert_eq!(share, Some(FabricShare { rank: 3, of: 7 }));
            assert_eq!(Response::parse(rest, ipv6), Ok(resp.clone()));
            assert_eq!(split_fabric_share(&plain, ipv6), (&plain[..], None));
            for len in 0..with.len() {
                let _ = split_fabric_share(&with[..len], ipv6);
            }
        }
    }

    #[test]
    fn fabric_param_is_validated() {
        let mut a = announce();
        a.url_data = b"/announce?x=1&fabric=bad%20name".to_vec();
        assert_eq!(a.fabric(), None);
        a.url_data = b"/announce?x=1&fabric=eu-1".to_vec();
        assert_eq!(a.fabric(), Some("eu-1"));
        a.url_data = b"/announce".to_vec();
        assert_eq!(a.fabric(), None);
    }

    #[test]
    fn numwant_default_is_negative() {
        assert_eq!(NumWant::DEFAULT.get(), None);
        assert_eq!(NumWant(30).get(), Some(30));
    }

    #[test]
    fn parsers_never_panic_on_any_length() {
        let mut announce_bytes = Vec::new();
        Request::Announce(announce()).encode(&mut announce_bytes);
        for action in 0u32..5 {
            for len in 0..200 {
                let mut b = announce_bytes.clone();
                b.resize(len.max(16), 0xff);
                b[8..12].copy_from_slice(&action.to_be_bytes());
                b.truncate(len);
                let _ = Request::parse(&b, MAX_SCRAPE_INFO_HASHES);
                let mut r = b.clone();
                if r.len() >= 4 {
                    r[..4].copy_from_slice(&action.to_be_bytes());
                }
                let _ = Response::parse(&r, false);
                let _ = Response::parse(&r, true);
            }
        }
    }

    fn arb_info_hash() -> impl Strategy<Value = InfoHash> {
        any::<[u8; 20]>().prop_map(InfoHash)
    }

    fn arb_event() -> impl Strategy<Value = AnnounceEvent> {
        (0u32..4).prop_map(|c| AnnounceEvent::from_udp(c).unwrap())
    }

    prop_compose! {
        fn arb_announce()(
            cid in any::<u64>(), tid in any::<u32>(), info_hash in arb_info_hash(),
            peer_id in any::<[u8; 20]>(), downloaded in any::<u64>(), left in any::<u64>(),
            uploaded in any::<u64>(), event in arb_event(), ip in any::<u32>(),
            key in any::<u32>(), num_want in any::<i32>(), port in any::<u16>(),
            url_data in proptest::collection::vec(any::<u8>(), 0..700),
        ) -> AnnounceRequest {
            AnnounceRequest {
                connection_id: ConnectionId(cid), transaction_id: TransactionId(tid),
                info_hash, peer_id: PeerId(peer_id), downloaded, left, uploaded, event,
                ip_address: Ipv4Addr::from(ip), key: PeerKey(key), num_want: NumWant(num_want),
                port, url_data,
            }
        }
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            any::<u32>().prop_map(|t| Request::Connect(ConnectRequest {
                transaction_id: TransactionId(t)
            })),
            arb_announce().prop_map(Request::Announce),
            (
                any::<u64>(),
                any::<u32>(),
                proptest::collection::vec(arb_info_hash(), 1..=MAX_SCRAPE_INFO_HASHES)
            )
                .prop_map(|(c, t, info_hashes)| Request::Scrape(ScrapeRequest {
                    connection_id: ConnectionId(c),
                    transaction_id: TransactionId(t),
                    info_hashes
                })),
        ]
    }

    fn arb_response(ipv6: bool) -> impl Strategy<Value = Response> {
        let peers = if ipv6 {
            proptest::collection::vec((any::<[u8; 16]>(), any::<u16>()), 0..50)
                .prop_map(|v| {
                    PeerList::V6(
                        v.into_iter()
                            .map(|(ip, port)| SocketAddrV6::new(ip.into(), port, 0, 0))
                            .collect(),
                    )
                })
                .boxed()
        } else {
            proptest::collection::vec((any::<u32>(), any::<u16>()), 0..50)
                .prop_map(|v| {
                    PeerList::V4(
                        v.into_iter()
                            .map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
                            .collect(),
                    )
                })
                .boxed()
        };
        prop_oneof![
            (any::<u32>(), any::<u64>()).prop_map(|(t, c)| Response::Connect(ConnectResponse {
                transaction_id: TransactionId(t),
                connection_id: ConnectionId(c)
            })),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                peers
            )
                .prop_map(|(t, i, l, s, peers)| Response::Announce(AnnounceResponse {
                    transaction_id: TransactionId(t),
                    interval: AnnounceInterval(i),
                    leechers: l,
                    seeders: s,
                    peers
                })),
            (
                any::<u32>(),
                proptest::collection::vec(any::<(u32, u32, u32)>(), 0..74)
            )
                .prop_map(|(t, v)| Response::Scrape(ScrapeResponse {
                    transaction_id: TransactionId(t),
                    stats: v
                        .into_iter()
                        .map(|(seeders, completed, leechers)| TorrentScrapeStats {
                            seeders,
                            completed,
                            leechers
                        })
                        .collect()
                })),
            (any::<u32>(), ".{0,100}").prop_map(|(t, message)| Response::Error(ErrorResponse {
                transaction_id: TransactionId(t),
                message
            })),
        ]
    }

    proptest! {
        #[test]
        fn requests_same_after_conversion(req in arb_request()) {
            let mut b = Vec::new();
            req.encode(&mut b);
            prop_assert_eq!(Request::parse(&b, MAX_SCRAPE_INFO_HASHES), Ok(req));
        }

        #[test]
        fn v4_responses_same_after_conversion(resp in arb_response(false)) {
            let mut b = Vec::new();
            resp.encode(&mut b);
            prop_assert_eq!(Response::parse(&b, false), Ok(resp));
        }

        #[test]
        fn v6_responses_same_after_conversion(resp in arb_response(true)) {
            let mut b = Vec::new();
            resp.encode(&mut b);
            prop_assert_eq!(Response::parse(&b, true), Ok(resp));
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::parse(&b, MAX_SCRAPE_INFO_HASHES);
            let _ = Response::parse(&b, false);
            let _ = Response::parse(&b, true);
        }
    }
}
