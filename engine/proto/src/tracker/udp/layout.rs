//! The BEP 15 byte layout shared by both directions: every packet length written as the
//! sum of its fields, the action codes, the big-endian field readers.

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

pub(super) mod action {
    pub(in crate::tracker::udp) const CONNECT: u32 = 0;
    pub(in crate::tracker::udp) const ANNOUNCE: u32 = 1;
    pub(in crate::tracker::udp) const SCRAPE: u32 = 2;
    pub(in crate::tracker::udp) const ERROR: u32 = 3;
}

pub(super) fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(super) fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(super) fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(super) fn array20(b: &[u8], at: usize) -> [u8; 20] {
    b[at..at + 20].try_into().expect("20 bytes")
}
