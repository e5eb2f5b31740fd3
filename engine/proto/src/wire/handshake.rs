//! The 68-byte BEP 3 handshake and its reserved bits.
//!
//! Layout: `pstrlen` (19), `"BitTorrent protocol"`, 8 reserved bytes, info-hash, peer id.

use thiserror::Error;

use crate::{InfoHash, PeerId};

const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Length of the handshake on the wire: 1 + 19 + 8 + 20 + 20.
pub const HANDSHAKE_LEN: usize = 1 + 19 + 8 + 20 + 20;

/// Reserved bit: BEP 10 extension protocol (byte 5, 0x10).
const EXTENSION_BYTE: usize = 5;
const EXTENSION_BIT: u8 = 0x10;
/// Reserved bit: BEP 6 Fast extension (byte 7, 0x04).
const FAST_BYTE: usize = 7;
const FAST_BIT: u8 = 0x04;

/// Why a handshake was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The first 20 bytes are not `\x13BitTorrent protocol` (e.g. an encrypted or foreign stream).
    #[error("not a BitTorrent handshake (protocol string mismatch)")]
    WrongProtocol,
}

/// A parsed or to-be-sent handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The 8 reserved bytes, with extension bits.
    pub reserved: [u8; 8],
    /// Torrent the peer wants.
    pub info_hash: InfoHash,
    /// The peer's id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake: Fast and extension protocol bits set.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut reserved = [0u8; 8];
        reserved[EXTENSION_BYTE] |= EXTENSION_BIT;
        reserved[FAST_BYTE] |= FAST_BIT;
        Self {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// True if the peer speaks BEP 6.
    pub fn supports_fast(&self) -> bool {
        self.reserved[FAST_BYTE] & FAST_BIT != 0
    }

    /// True if the peer speaks BEP 10.
    pub fn supports_extensions(&self) -> bool {
        self.reserved[EXTENSION_BYTE] & EXTENSION_BIT != 0
    }

    /// The wire form.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19; // pstrlen
        out[1..20].copy_from_slice(PROTOCOL); // pstr
        out[20..28].copy_from_slice(&self.reserved); // reserved
        out[28..48].copy_from_slice(&self.info_hash.0); // info_hash
        out[48..68].copy_from_slice(&self.peer_id.0); // peer_id
        out
    }

    /// Checks the first bytes as soon as they arrive, so a foreign stream is dropped early.
    /// `Ok(false)` means more bytes are needed before the prefix can be judged.
    pub fn check_prefix(buf: &[u8]) -> Result<bool, HandshakeError> {
        let n = buf.len().min(20);
        let mut expected = [0u8; 20];
        expected[0] = 19;
        expected[1..].copy_from_slice(PROTOCOL);
        if buf[..n] != expected[..n] {
            return Err(HandshakeError::WrongProtocol);
        }
        Ok(n == 20)
    }

    /// Parses a handshake; `Ok(None)` while fewer than [`HANDSHAKE_LEN`] bytes are buffered.
    pub fn decode(buf: &[u8]) -> Result<Option<Self>, HandshakeError> {
        Self::check_prefix(buf)?;
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&buf[28..48]);
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&buf[48..68]);
        Ok(Some(Self {
            reserved,
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BEP 3 handshake, field by field.
    #[test]
    fn decodes_a_fixture() {
        let mut b = Vec::new();
        b.push(19); // pstrlen
        b.extend_from_slice(b"BitTorrent protocol"); // pstr
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]); // reserved: extension + fast
        b.extend_from_slice(&[0xaa; 20]); // info_hash
        b.extend_from_slice(b"-lt2080-abcdefghijkl"); // peer_id
        let h = Handshake::decode(&b).unwrap().unwrap();
        assert!(h.supports_fast() && h.supports_extensions());
        assert_eq!(h.info_hash, InfoHash([0xaa; 20]));
        assert_eq!(&h.encode()[..], &b[..]);
    }

    #[test]
    fn partial_and_foreign_input() {
        let h = Handshake::new(InfoHash([1; 20]), PeerId([2; 20])).encode();
        for n in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::decode(&h[..n]), Ok(None));
        }
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1\r\n"),
            Err(HandshakeError::WrongProtocol)
        );
        assert_eq!(Handshake::decode(&[18]), Err(HandshakeError::WrongProtocol));
    }
}
