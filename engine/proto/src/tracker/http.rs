//! HTTP tracker protocol: BEP 3 announce and scrape query strings, and their bencoded
//! replies with BEP 23 compact peer lists (`peers`, and `peers6` as BEP 7 adds).
//!
//! <https://www.bittorrent.org/beps/bep_0003.html>,
//! <https://www.bittorrent.org/beps/bep_0023.html>,
//! <https://www.bittorrent.org/beps/bep_0048.html> (scrape).
//!
//! The server side parses query strings and writes replies; the client side writes query
//! strings and parses replies. Replies are always compact: BEP 23 lets a tracker refuse the
//! old dictionary form, and every client in use asks for compact lists. The parser of
//! replies still reads the dictionary form, because other trackers may send it.
//!
//! Invariants: the caller bounds the query's length (the HTTP request size); parsing never
//! panics; percent-decoded values are checked for their exact length before use.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use thiserror::Error;

use super::AnnounceEvent;
use crate::bencode::{self, Node, Value};
use crate::{InfoHash, PeerId};

/// Bytes a client may leave unescaped in a query value (RFC 3986 "unreserved").
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A parsed announce query (`/announce?info_hash=...&peer_id=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// The peer's listening port.
    pub port: u16,
    /// Bytes uploaded so far (0 when absent).
    pub uploaded: u64,
    /// Bytes downloaded so far (0 when absent).
    pub downloaded: u64,
    /// Bytes still missing (0 when absent); 0 means a seeder.
    pub left: u64,
    /// Life-cycle event.
    pub event: AnnounceEvent,
    /// Whether the client asked for a compact list (`compact=1`, the default here).
    pub compact: bool,
    /// Peers asked for, or `None` for the tracker's default.
    pub numwant: Option<u32>,
    /// The address the peer asks to be listed under (`ip=`), when it is a literal address.
    pub ip: Option<IpAddr>,
    /// The peer's fabric (`fabric=`), checked by [`crate::fabric::is_valid_fabric_name`].
    pub fabric: Option<String>,
}

/// Why a query string was refused; every variant may be told to the client as a
/// `failure reason`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A required parameter is absent.
    #[error("missing parameter {name}")]
    MissingParam {
        /// Parameter name.
        name: &'static str,
    },
    /// A binary parameter decoded to the wrong number of bytes.
    #[error("parameter {name} is {len} bytes long, expected {expected}")]
    WrongLength {
        /// Parameter name.
        name: &'static str,
        /// Decoded length.
        len: usize,
        /// Required length.
        expected: usize,
    },
    /// A numeric parameter is not a number in range.
    #[error("parameter {name} is not a valid number")]
    InvalidNumber {
        /// Parameter name.
        name: &'static str,
    },
    /// `event=` has an unknown value.
    #[error("unknown event")]
    UnknownEvent,
    /// `fabric=` is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid fabric name")]
    InvalidFabric,
    /// A scrape lists more info-hashes than allowed.
    #[error("scrape lists {count} info-hashes, at most {max} are allowed")]
    TooManyInfoHashes {
        /// Info-hashes in the query.
        count: usize,
        /// The bound in force.
        max: usize,
    },
}

/// Iterates over `name=value` pairs of a query string, raw (still percent-encoded).
fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split(|&b| b == b'&').filter_map(|pair| {
        if pair.is_empty() {
            return None;
        }
        match pair.iter().position(|&b| b == b'=') {
            Some(eq) => Some((&pair[..eq], &pair[eq + 1..])),
            None => Some((pair, &b""[..])),
        }
    })
}

fn decode(value: &[u8]) -> Cow<'_, [u8]> {
    percent_decode(value).into()
}

fn fixed20(name: &'static str, raw: &[u8]) -> Result<[u8; 20], QueryError> {
    let v = decode(raw);
    <[u8; 20]>::try_from(&v[..]).map_err(|_| QueryError::WrongLength {
        name,
        len: v.len(),
        expected: 20,
    })
}

fn number<T: std::str::FromStr>(name: &'static str, raw: &[u8]) -> Result<T, QueryError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(QueryError::InvalidNumber { name })
}

impl AnnounceRequest {
    /// Parses the query part of an announce URL (the bytes after `?`). Unknown parameters
    /// are ignored; for a repeated parameter the last one wins.
    pub fn parse_query(query: &[u8]) -> Result<Self, QueryError> {
        let mut info_hash = None;
        let mut peer_id = None;
        let mut port = None;
        let mut req = Self {
            info_hash: InfoHash([0; 20]),
            peer_id: PeerId([0; 20]),
            port: 0,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: AnnounceEvent::None,
            compact: true,
            numwant: None,
            ip: None,
            fabric: None,
        };
        for (name, raw) in pairs(query) {
            match name {
                b"info_hash" => info_hash = Some(InfoHash(fixed20("info_hash", raw)?)),
                b"peer_id" => peer_id = Some(PeerId(fixed20("peer_id", raw)?)),
                b"port" => port = Some(number("port", raw)?),
                b"uploaded" => req.uploaded = number("uploaded", raw)?,
                b"downloaded" => req.downloaded = number("downloaded", raw)?,
                b"left" => req.left = number("left", raw)?,
                b"event" => {
                    req.event =
                        AnnounceEvent::from_http(&decode(raw)).ok_or(QueryError::UnknownEvent)?
                }
                b"compact" => req.compact = raw != b"0",
                b"numwant" => {
                    // Negative means "the tracker's default", as in BEP 15.
                    let n: i64 = number("numwant", raw)?;
                    req.numwant = u32::try_from(n).ok();
                }
                b"ip" => {
                    // A host name is legal in BEP 3 but resolving it is not our job: ignore.
                    req.ip = std::str::from_utf8(&decode(raw))
                        .ok()
                        .and_then(|s| s.parse().ok());
                }
                b"fabric" => {
                    let v = decode(raw);
                    if !crate::fabric::is_valid_fabric_name(&v) {
                        return Err(QueryError::InvalidFabric);
                    }
                    req.fabric = Some(String::from_utf8_lossy(&v).into_owned());
                }
                _ => {}
            }
        }
        req.info_hash = info_hash.ok_or(QueryError::MissingParam { name: "info_hash" })?;
        req.peer_id = peer_id.ok_or(QueryError::MissingParam { name: "peer_id" })?;
        req.port = port.ok_or(QueryError::MissingParam { name: "port" })?;
        Ok(req)
    }

    /// The query string a client appends to the announce URL (after `?` or `&`).
    pub fn to_query(&self) -> String {
        use std::fmt::Write;
        let mut q = format!(
            "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}",
            percent_encode(&self.info_hash.0, QUERY_VALUE),
            percent_encode(&self.peer_id.0, QUERY_VALUE),
            self.port,
            self.uploaded,
            self.downloaded,
            self.left,
            u8::from(self.compact),
        );
        if let Some(ev) = self.event.to_http() {
            let _ = write!(q, "&event={ev}");
        }
        if let Some(n) = self.numwant {
            let _ = write!(q, "&numwant={n}");
        }
        if let Some(ip) = self.ip {
            let _ = write!(
                q,
                "&ip={}",
                percent_encode(ip.to_string().as_bytes(), QUERY_VALUE)
            );
        }
        if let Some(f) = &self.fabric {
            let _ = write!(q, "&fabric={}", percent_encode(f.as_bytes(), QUERY_VALUE));
        }
        q
    }
}

/// Parses a scrape query: every `info_hash=` parameter, in order. An empty list is a
/// "full scrape", which the caller may refuse.
pub fn parse_scrape_query(query: &[u8], max: usize) -> Result<Vec<InfoHash>, QueryError> {
    let mut hashes = Vec::new();
    for (name, raw) in pairs(query) {
        if name == b"info_hash" {
            if hashes.len() == max {
                let count = pairs(query).filter(|(n, _)| *n == b"info_hash").count();
                return Err(QueryError::TooManyInfoHashes { count, max });
            }
            hashes.push(InfoHash(fixed20("info_hash", raw)?));
        }
    }
    Ok(hashes)
}

/// Writes a scrape query for `hashes` (client side).
pub fn scrape_query(hashes: &[InfoHash]) -> String {
    hashes
        .iter()
        .map(|h| format!("info_hash={}", percent_encode(&h.0, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A successful announce reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    /// Seconds until the next regular announce.
    pub interval: u32,
    /// Seconds the client must wait at least before re-announcing, if the tracker says.
    pub min_interval: Option<u32>,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// IPv4 peers (`peers`, 6 bytes each in compact form).
    pub peers: Vec<SocketAddrV4>,
    /// IPv6 peers (`peers6`, 18 bytes each).
    pub peers6: Vec<SocketAddrV6>,
    /// A non-fatal message for the user (`warning message`).
    pub warning: Option<String>,
    /// An instream tracker's answer to a peer of known fabric: the peer's rank among the
    /// fabric's downloading hosts and how many they are (keys `instream fabric rank` and
    /// `instream fabric count`; other clients ignore unknown keys, as BEP 3 dictionaries
    /// allow). See [`crate::picker::FabricShare`].
    pub fabric_share: Option<crate::picker::FabricShare>,
}

fn bytes_field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(format!("{}:{key}{}:", key.len(), value.len()).as_bytes());
    out.extend_from_slice(value);
}

fn int_field(out: &mut Vec<u8>, key: &str, value: i64) {
    out.extend_from_slice(format!("{}:{key}i{value}e", key.len()).as_bytes());
}

impl AnnounceResponse {
    /// Appends the bencoded reply (keys in sorted order, as bencode requires).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(b'd');
        int_field(out, "complete", self.complete.into());
        int_field(out, "incomplete", self.incomplete.into());
        if let Some(sh) = self.fabric_share {
            int_field(out, "instream fabric count", sh.of.into());
            int_field(out, "instream fabric rank", sh.rank.into());
        }
        int_field(out, "interval", self.interval.into());
        if let Some(m) = self.min_interval {
            int_field(out, "min interval", m.into());
        }
        let mut compact = Vec::with_capacity(self.peers.len() * 6);
        for p in &self.peers {
            compact.extend_from_slice(&p.ip().octets());
            compact.extend_from_slice(&p.port().to_be_bytes());
        }
        bytes_field(out, "peers", &compact);
        if !self.peers6.is_empty() {
            let mut compact6 = Vec::with_capacity(self.peers6.len() * 18);
            for p in &self.peers6 {
                compact6.extend_from_slice(&p.ip().octets());
                compact6.extend_from_slice(&p.port().to_be_bytes());
            }
            bytes_field(out, "peers6", &compact6);
        }
        if let Some(w) = &self.warning {
            bytes_field(out, "warning message", w.as_bytes());
        }
        out.push(b'e');
    }

    /// All peers, IPv4 first.
    pub fn socket_addrs(&self) -> Vec<SocketAddr> {
        self.peers
            .iter()
            .map(|&p| SocketAddr::V4(p))
            .chain(self.peers6.iter().map(|&p| SocketAddr::V6(p)))
            .collect()
    }
}

/// Appends a bencoded failure reply (`d14:failure reason...e`).
pub fn encode_failure(reason: &str, out: &mut Vec<u8>) {
    out.push(b'd');
    bytes_field(out, "failure reason", reason.as_bytes());
    out.push(b'e');
}

/// What a tracker answered to an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceReply {
    /// Peers and counters.
    Ok(AnnounceResponse),
    /// The tracker refused (`failure reason`).
    Failure(String),
}

/// Why a reply could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// Not valid bencode.
    #[error("reply is not valid bencode (at byte {offset})")]
    Bencode {
        /// Where decoding failed.
        offset: usize,
    },
    /// A required key is missing or has the wrong type.
    #[error("reply field {key} is missing or malformed")]
    BadField {
        /// The key.
        key: &'static str,
    },
    /// A compact list whose length is not a whole number of entries.
    #[error("compact {key} list of {len} bytes is not a multiple of {entry}")]
    RaggedList {
        /// The key.
        key: &'static str,
        /// Bytes in the list.
        len: usize,
        /// Bytes per entry.
        entry: usize,
    },
}

fn u32_field(v: &Node<'_>, key: &'static str) -> Result<Option<u32>, ResponseError> {
    match v.get(key.as_bytes()) {
        None => Ok(None),
        Some(x) => x
            .as_int()
            .map(|i| u32::try_from(i.clamp(0, u32::MAX.into())).expect("clamped"))
            .map(Some)
            .ok_or(ResponseError::BadField { key }),
    }
}

fn compact_peers<A>(
    raw: &[u8],
    key: &'static str,
    entry: usize,
    f: impl Fn(&[u8]) -> A,
) -> Result<Vec<A>, ResponseError> {
    if !raw.len().is_multiple_of(entry) {
        return Err(ResponseError::RaggedList {
            key,
            len: raw.len(),
            entry,
        });
    }
    Ok(raw.chunks_exact(entry).map(f).collect())
}

fn v4(c: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(c[0], c[1], c[2], c[3]),
        u16::from_be_bytes([c[4], c[5]]),
    )
}

fn v6(c: &[u8]) -> SocketAddrV6 {
    let ip: [u8; 16] = c[..16].try_into().expect("16 bytes");
    SocketAddrV6::new(Ipv6Addr::from(ip), u16::from_be_bytes([c[16], c[17]]), 0, 0)
}

impl AnnounceReply {
    /// Parses a bencoded announce reply (compact or dictionary peer lists).
    pub fn parse(body: &[u8]) -> Result<Self, ResponseError> {
        let v = bencode::decode(body).map_err(|e| ResponseError::Bencode { offset: e.offset })?;
        if !matches!(v.value(), Value::Dict(_)) {
            return Err(ResponseError::Bencode { offset: 0 });
        }
        if let Some(reason) = v.get(b"failure reason") {
            let reason = reason.as_bytes().ok_or(ResponseError::BadField {
                key: "failure reason",
            })?;
            return Ok(Self::Failure(String::from_utf8_lossy(reason).into_owned()));
        }
        let mut resp = AnnounceResponse {
            interval: u32_field(&v, "interval")?
                .ok_or(ResponseError::BadField { key: "interval" })?,
            min_interval: u32_field(&v, "min interval")?,
            complete: u32_field(&v, "complete")?.unwrap_or(0),
            incomplete: u32_field(&v, "incomplete")?.unwrap_or(0),
            warning: v
                .get(b"warning message")
                .and_then(Node::as_bytes)
                .map(|w| String::from_utf8_lossy(w).into_owned()),
            // A broken or out-of-range share is dropped, not an error: it is only a hint.
            fabric_share: match (
                u32_field(&v, "instream fabric rank").ok().flatten(),
                u32_field(&v, "instream fabric count").ok().flatten(),
            ) {
                (Some(rank), Some(of)) if rank < of => {
                    Some(crate::picker::FabricShare { rank, of })
                }
                _ => None,
            },
            ..Default::default()
        };
        match v.get(b"peers").map(Node::value) {
            None => {}
            Some(Value::Bytes(raw)) => resp.peers = compact_peers(raw, "peers", 6, v4)?,
            Some(Value::List(items)) => {
                // BEP 3 dictionary form: [{ip, port, peer id}, ...].
                for item in items {
                    let ip = item
                        .get(b"ip")
                        .and_then(Node::as_bytes)
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse::<IpAddr>().ok());
                    let port = item
                        .get(b"port")
                        .and_then(Node::as_int)
                        .and_then(|p| u16::try_from(p).ok());
                    match (ip, port) {
                        (Some(IpAddr::V4(ip)), Some(port)) => {
                            resp.peers.push(SocketAddrV4::new(ip, port))
                        }
                        (Some(IpAddr::V6(ip)), Some(port)) => {
                            resp.peers6.push(SocketAddrV6::new(ip, port, 0, 0))
                        }
                        // A host name or a broken entry: skip it, keep the rest.
                        _ => {}
                    }
                }
            }
            Some(_) => return Err(ResponseError::BadField { key: "peers" }),
        }
        match v.get(b"peers6").map(Node::value) {
            None => {}
            Some(Value::Bytes(raw)) => resp.peers6.extend(compact_peers(raw, "peers6", 18, v6)?),
            Some(_) => return Err(ResponseError::BadField { key: "peers6" }),
        }
        Ok(Self::Ok(resp))
    }
}

/// Counters of one torrent in a scrape reply (BEP 48 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// A scrape reply: `files` maps info-hash to counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    /// One entry per torrent; encoded in info-hash order (bencode sorts dict keys).
    pub files: Vec<(InfoHash, ScrapeStats)>,
}

impl ScrapeResponse {
    /// Appends the bencoded reply. Duplicate info-hashes are written once.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut files = self.files.clone();
        files.sort_by_key(|(h, _)| *h);
        files.dedup_by_key(|(h, _)| *h);
        out.extend_from_slice(b"d5:filesd");
        for (h, s) in &files {
            out.extend_from_slice(b"20:");
            out.extend_from_slice(&h.0);
            out.push(b'd');
            int_field(out, "complete", s.complete.into());
            int_field(out, "downloaded", s.downloaded.into());
            int_field(out, "incomplete", s.incomplete.into());
            out.push(b'e');
        }
        out.extend_from_slice(b"ee");
    }

    /// Parses a bencoded scrape reply.
    pub fn parse(body: &[u8]) -> Result<Self, ResponseError> {
        let v = bencode::decode(body).map_err(|e| ResponseError::Bencode { offset: e.offset })?;
        let Some(Value::Dict(files)) = v.get(b"files").map(Node::value) else {
            return Err(ResponseError::BadField { key: "files" });
        };
        let mut out = Vec::with_capacity(files.len());
        for (k, s) in files {
            let h =
                <[u8; 20]>::try_from(*k).map_err(|_| ResponseError::BadField { key: "files" })?;
            out.push((
                InfoHash(h),
                ScrapeStats {
                    complete: u32_field(s, "complete")?.unwrap_or(0),
                    downloaded: u32_field(s, "downloaded")?.unwrap_or(0),
                    incomplete: u32_field(s, "incomplete")?.unwrap_or(0),
                },
            ));
        }
        Ok(Self { files: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    fn sample() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash(*b"\x12\x34\x56\x78\x9a\xbc\xde\xf1\x23\x45\x67\x89\xab\xcd\xef\x12\x34\x56\x78\x9a"),
            peer_id: PeerId(*b"-IS0100-abcdefghijkl"),
            port: 6881,
            uploaded: 10,
            downloaded: 20,
            left: 30,
            event: AnnounceEvent::Started,
            compact: true,
            numwant: Some(50),
            ip: None,
            fabric: Some("f1".into()),
        }
    }

    /// BEP 3 announce query as libtorrent writes it: binary fields percent-encoded byte by
    /// byte, unreserved characters left as is.
    #[test]
    fn announce_query_fixture() {
        let q = concat!(
            "info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A", // 20 raw bytes
            "&peer_id=-IS0100-abcdefghijkl",                          // 20 bytes, printable
            "&port=6881",                                             // TCP listen port
            "&uploaded=10&downloaded=20&left=30",                     // counters in bytes
            "&corrupt=0&key=1a2b3c&supportcrypto=1",                  // ignored extras
            "&event=started&numwant=50&compact=1&no_peer_id=1",
            "&fabric=f1", // instream extension
        );
        assert_eq!(AnnounceRequest::parse_query(q.as_bytes()), Ok(sample()));
    }

    #[test]
    fn announce_query_round_trips() {
        let mut r = sample();
        r.ip = Some("10.1.2.3".parse().unwrap());
        r.event = AnnounceEvent::None;
        r.numwant = None;
        assert_eq!(AnnounceRequest::parse_query(r.to_query().as_bytes()), Ok(r));
    }

    #[test]
    fn announce_query_errors_carry_the_field() {
        let base = sample().to_query();
        let without = |name: &str| {
            base.split('&')
                .filter(|p| !p.starts_with(&format!("{name}=")))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(
            AnnounceRequest::parse_query(without("info_hash").as_bytes()),
            Err(QueryError::MissingParam { name: "info_hash" })
        );
        assert_eq!(
            AnnounceRequest::parse_query(without("port").as_bytes()),
            Err(QueryError::MissingParam { name: "port" })
        );
        assert_eq!(
            AnnounceRequest::parse_query(format!("{base}&info_hash=abc").as_bytes()),
            Err(QueryError::WrongLength {
                name: "info_hash",
                len: 3,
                expected: 20
            })
        );
        assert_eq!(
            AnnounceRequest::parse_query(format!("{base}&port=70000").as_bytes()),
            Err(QueryError::InvalidNumber { name: "port" })
        );
        assert_eq!(
            AnnounceRequest::parse_query(format!("{base}&event=paused").as_bytes()),
            Err(QueryError::UnknownEvent)
        );
        assert_eq!(
            AnnounceRequest::parse_query(format!("{base}&fabric=a%20b").as_bytes()),
            Err(QueryError::InvalidFabric)
        );
        let neg = AnnounceRequest::parse_query(format!("{base}&numwant=-1").as_bytes()).unwrap();
        assert_eq!(neg.numwant, None);
    }

    #[test]
    fn scrape_query_is_bounded() {
        let hashes: Vec<InfoHash> = (0..5u8).map(|i| InfoHash([i; 20])).collect();
        let q = scrape_query(&hashes);
        assert_eq!(parse_scrape_query(q.as_bytes(), 5), Ok(hashes));
        assert_eq!(
            parse_scrape_query(q.as_bytes(), 4),
            Err(QueryError::TooManyInfoHashes { count: 5, max: 4 })
        );
        assert_eq!(parse_scrape_query(b"", 4), Ok(vec![]));
    }

    /// The fabric share rides in two extra integer keys, sorted among the standard ones.
    #[test]
    fn fabric_share_keys_round_trip_and_bad_ones_are_dropped() {
        let resp = AnnounceResponse {
            interval: 30,
            fabric_share: Some(crate::picker::FabricShare { rank: 2, of: 5 }),
            ..Default::default()
        };
        let mut out = Vec::new();
        resp.encode(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("21:instream fabric counti5e20:instream fabric ranki2e8:interval"),
            "{text}"
        );
        assert_eq!(AnnounceReply::parse(&out), Ok(AnnounceReply::Ok(resp)));
        let bad = b"d21:instream fabric counti2e20:instream fabric ranki2e8:intervali30e5:peers0:e";
        match AnnounceReply::parse(bad) {
            Ok(AnnounceReply::Ok(r)) => assert_eq!(r.fabric_share, None),
            other => panic!("{other:?}"),
        }
    }

    /// BEP 23 compact reply, byte for byte.
    #[test]
    fn compact_reply_fixture() {
        let resp = AnnounceResponse {
            interval: 300,
            min_interval: None,
            complete: 1,
            incomplete: 2,
            peers: vec!["10.0.0.1:6881".parse().unwrap()],
            peers6: vec![],
            warning: None,
            fabric_share: None,
        };
        let mut out = Vec::new();
        resp.encode(&mut out);
        let mut expected = Vec::new();
        expected.extend(b"d");
        expected.extend(b"8:completei1e"); // seeders
        expected.extend(b"10:incompletei2e"); // leechers
        expected.extend(b"8:intervali300e"); // seconds
        expected.extend(b"5:peers6:"); // BEP 23: 6 bytes per peer
        expected.extend([10, 0, 0, 1]); // IPv4 address
        expected.extend(6881u16.to_be_bytes()); // port
        expected.extend(b"e");
        assert_eq!(out, expected);
        assert_eq!(AnnounceReply::parse(&out), Ok(AnnounceReply::Ok(resp)));
    }

    #[test]
    fn failure_reply_round_trips() {
        let mut out = Vec::new();
        encode_failure("unregistered torrent", &mut out);
        assert_eq!(out, b"d14:failure reason20:unregistered torrente");
        assert_eq!(
            AnnounceReply::parse(&out),
            Ok(AnnounceReply::Failure("unregistered torrent".into()))
        );
    }

    #[test]
    fn dictionary_peer_lists_are_read() {
        let body = b"d8:intervali60e5:peersld2:ip8:10.0.0.27:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti7000eed2:ip3:::14:porti7001eed2:ip4:host4:porti1eeee";
        let Ok(AnnounceReply::Ok(r)) = AnnounceReply::parse(body) else {
            panic!("must parse")
        };
        assert_eq!(r.peers, vec!["10.0.0.2:7000".parse().unwrap()]);
        assert_eq!(r.peers6, vec!["[::1]:7001".parse().unwrap()]);
    }

    #[test]
    fn malformed_bencode_replies_are_refused() {
        // The shared decoder (`crate::bencode`) reads replies; these were the cases of the
        // tracker's former private reader, kept so both reply parsers still refuse them.
        let mut deep = vec![b'l'; 10_000];
        deep.extend(vec![b'e'; 10_000]);
        for bad in [
            &b""[..],
            b"i01e",
            b"i-0e",
            b"ie",
            b"5:abc",
            b"l",
            b"d1:a",
            b"i1ei2e",
            b"99999999999999999999999:x",
            b"i99999999999999999999e",
            &deep,
        ] {
            let what = String::from_utf8_lossy(&bad[..bad.len().min(16)]).into_owned();
            assert!(
                matches!(
                    AnnounceReply::parse(bad),
                    Err(ResponseError::Bencode { .. })
                ),
                "announce {what:?}"
            );
            assert!(
                matches!(
                    ScrapeResponse::parse(bad),
                    Err(ResponseError::Bencode { .. })
                ),
                "scrape {what:?}"
            );
        }
    }

    #[test]
    fn ragged_compact_lists_are_refused() {
        assert_eq!(
            AnnounceReply::parse(b"d8:intervali60e5:peers5:abcdee"),
            Err(ResponseError::RaggedList {
                key: "peers",
                len: 5,
                entry: 6
            })
        );
    }

    #[test]
    fn scrape_reply_round_trips_sorted() {
        let resp = ScrapeResponse {
            files: vec![
                (
                    InfoHash([2; 20]),
                    ScrapeStats {
                        complete: 1,
                        downloaded: 2,
                        incomplete: 3,
                    },
                ),
                (InfoHash([1; 20]), ScrapeStats::default()),
            ],
        };
        let mut out = Vec::new();
        resp.encode(&mut out);
        let parsed = ScrapeResponse::parse(&out).unwrap();
        assert_eq!(parsed.files[0].0, InfoHash([1; 20]));
        assert_eq!(parsed.files[1], resp.files[0]);
    }

    prop_compose! {
        fn arb_announce()(
            info_hash in any::<[u8; 20]>(), peer_id in any::<[u8; 20]>(), port in any::<u16>(),
            uploaded in any::<u64>(), downloaded in any::<u64>(), left in any::<u64>(),
            event in 0u32..4, compact in any::<bool>(), numwant in proptest::option::of(any::<u32>()),
            ip in proptest::option::of(any::<[u8; 16]>()), v4 in any::<bool>(),
            fabric in proptest::option::of("[A-Za-z0-9._-]{1,64}"),
        ) -> AnnounceRequest {
            AnnounceRequest {
                info_hash: InfoHash(info_hash), peer_id: PeerId(peer_id), port, uploaded,
                downloaded, left, event: AnnounceEvent::from_udp(event).unwrap(), compact, numwant,
                ip: ip.map(|b| if v4 {
                    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                } else {
                    IpAddr::V6(Ipv6Addr::from(b))
                }),
                fabric,
            }
        }
    }

    prop_compose! {
        fn arb_response()(
            interval in any::<u32>(), min_interval in proptest::option::of(any::<u32>()),
            complete in any::<u32>(), incomplete in any::<u32>(),
            peers in proptest::collection::vec((any::<u32>(), any::<u16>()), 0..40),
            peers6 in proptest::collection::vec((any::<[u8; 16]>(), any::<u16>()), 0..40),
            warning in proptest::option::of(".{0,40}"),
            share in proptest::option::of((0u32..1000, 1u32..1000)),
        ) -> AnnounceResponse {
            AnnounceResponse {
                interval, min_interval, complete, incomplete,
                peers: peers.into_iter().map(|(ip, p)| SocketAddrV4::new(ip.into(), p)).collect(),
                peers6: peers6.into_iter().map(|(ip, p)| SocketAddrV6::new(ip.into(), p, 0, 0)).collect(),
                warning,
                fabric_share: share
                    .map(|(r, o)| crate::picker::FabricShare { rank: r % o, of: o }),
            }
        }
    }

    proptest! {
        #[test]
        fn announce_same_after_conversion(req in arb_announce()) {
            prop_assert_eq!(AnnounceRequest::parse_query(req.to_query().as_bytes()), Ok(req));
        }

        #[test]
        fn reply_same_after_conversion(resp in arb_response()) {
            let mut out = Vec::new();
            resp.encode(&mut out);
            prop_assert_eq!(AnnounceReply::parse(&out), Ok(AnnounceReply::Ok(resp)));
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = AnnounceRequest::parse_query(&b);
            let _ = parse_scrape_query(&b, 10);
            let _ = AnnounceReply::parse(&b);
            let _ = ScrapeResponse::parse(&b);
        }
    }

    #[test]
    fn every_prefix_of_valid_input_never_panics() {
        let q = sample().to_query();
        let mut reply = Vec::new();
        arb_fixed_reply().encode(&mut reply);
        for len in 0..=q.len() {
            let _ = AnnounceRequest::parse_query(&q.as_bytes()[..len]);
        }
        for len in 0..=reply.len() {
            let r = AnnounceReply::parse(&reply[..len]);
            assert!(len == reply.len() || r.is_err());
        }
    }

    fn arb_fixed_reply() -> AnnounceResponse {
        AnnounceResponse {
            interval: 1,
            min_interval: Some(2),
            complete: 3,
            incomplete: 4,
            peers: vec!["1.2.3.4:5".parse().unwrap()],
            peers6: vec!["[::2]:7".parse().unwrap()],
            warning: Some("w".into()),
            fabric_share: Some(crate::picker::FabricShare { rank: 1, of: 3 }),
        }
    }
}
