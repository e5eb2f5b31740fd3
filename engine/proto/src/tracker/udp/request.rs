//! Client → tracker packets (connect, announce, scrape). A parse error says whether the
//! tracker may answer it ([`RequestParseError::Sendable`]) or must stay silent.

use std::net::Ipv4Addr;

use thiserror::Error;

use super::fields::{AnnounceKey, ConnectionId, NumWant, TransactionId};
use super::layout::{
    ANNOUNCE_REQUEST_LEN, CONNECT_REQUEST_LEN, PROTOCOL_ID, SCRAPE_REQUEST_HEADER_LEN, action,
    array20, be_u16, be_u32, be_u64,
};
use super::url_data::{encode_url_data, parse_url_data};
use crate::tracker::AnnounceEvent;
use crate::{InfoHash, PeerId};

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
    /// BEP 15 `key`.
    pub key: AnnounceKey,
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

impl Request {
    /// Parses one datagram. `max_scrape_hashes` bounds a scrape request's list (use
    /// [`MAX_SCRAPE_INFO_HASHES`](super::MAX_SCRAPE_INFO_HASHES) unless configured otherwise).
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
                    key: AnnounceKey(be_u32(bytes, 88)),
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
