//! The instream fabric-share trailer: an instream tracker's extra bytes after a BEP 15
//! announce response's peers, for clients that asked with [`FABRIC_SHARE_PARAM`].

use super::layout::{
    ANNOUNCE_RESPONSE_HEADER_LEN, PEER_V4_LEN, PEER_V6_LEN, RESPONSE_HEADER_LEN, action, be_u32,
};

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
/// [`Response::parse`](super::Response::parse)): the datagram without it, and the share if there was a valid one.
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
