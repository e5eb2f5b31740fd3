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
//!
//! Files: `layout` (lengths, action codes), `fields` (typed wire fields), `request`
//! (client → tracker), `response` (tracker → client), `url_data` (BEP 41 options inside an
//! announce request), `fabric_share` (the instream trailer after an announce response).
//! Everything is re-exported here, so callers write `udp::Request`, not the file.

mod fabric_share;
mod fields;
mod layout;
mod request;
mod response;
#[cfg(test)]
mod tests;
mod url_data;

pub use fabric_share::{
    FABRIC_SHARE_PARAM, FABRIC_SHARE_TRAILER_LEN, append_fabric_share, split_fabric_share,
};
pub use fields::{AnnounceInterval, AnnounceKey, ConnectionId, NumWant, TransactionId};
pub use layout::{
    ANNOUNCE_REQUEST_LEN, ANNOUNCE_RESPONSE_HEADER_LEN, CONNECT_REQUEST_LEN, CONNECT_RESPONSE_LEN,
    MAX_SCRAPE_INFO_HASHES, PEER_V4_LEN, PEER_V6_LEN, PROTOCOL_ID, RESPONSE_HEADER_LEN,
    SCRAPE_ENTRY_LEN, SCRAPE_REQUEST_HEADER_LEN,
};
pub use request::{
    AnnounceRequest, ConnectRequest, Request, RequestErrorKind, RequestParseError, ScrapeRequest,
};
pub use response::{
    AnnounceResponse, ConnectResponse, ErrorResponse, PeerList, Response, ResponseParseError,
    ScrapeResponse, TorrentScrapeStats, encode_error,
};
