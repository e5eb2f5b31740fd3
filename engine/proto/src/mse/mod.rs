//! MSE/PE, BitTorrent's Message Stream Encryption (the Azureus/libtorrent "encryption"
//! spec; no BEP): a 768-bit Diffie-Hellman exchange, an obfuscation header hashed with the
//! shared secret `S` and the torrent's info-hash (`SKEY`), then RC4 on the handshake and,
//! if selected, on the whole payload stream.
//!
//! ```text
//! A->B: Ya, PadA
//! B->A: Yb, PadB
//! A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!       ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! A->B: ENCRYPT2(payload)
//! ```
//!
//! Both sides are sans-IO state machines ([`Responder`], [`Initiator`]): feed received
//! bytes with `handle_input`, send what `poll_transmit` returns, until `handle_input`
//! returns [`Progress::Done`]. Every length is bounded before anything is buffered for it:
//! pads at [`MAX_PAD`], the responder's search for `HASH('req1', S)` at `MAX_PAD + 20`
//! bytes, the initiator's search for the encrypted VC at `MAX_PAD + 8`, and `len(IA)` at
//! [`MAX_IA_LEN`]; so neither machine ever holds more than a few KiB.

pub mod dh;
mod initiator;
pub mod rc4;
mod responder;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::InfoHash;
pub use initiator::Initiator;
pub use rc4::Rc4;
pub use responder::Responder;

/// Longest PadA/PadB/PadC/PadD the spec allows.
pub const MAX_PAD: usize = 512;
/// Longest initial payload (IA) we accept: a BT handshake (68 bytes) plus an extended
/// handshake and a bitfield fit; more is not needed on the first flight.
pub const MAX_IA_LEN: usize = 16 * 1024;
/// The verification constant: 8 zero bytes.
const VC: [u8; 8] = [0; 8];
/// `VC (8) + crypto_provide (4) + len(PadC) (2)`.
const PROVIDE_HEADER_LEN: usize = 8 + 4 + 2;
/// `crypto_select (4) + len(PadD) (2)`, after the VC.
const SELECT_HEADER_LEN: usize = 4 + 2;

/// Whether and how a side uses MSE (`--encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Dial with a plain BT handshake; accept plain and MSE (either payload) incoming.
    #[default]
    Plaintext,
    /// Dial with MSE offering plaintext and RC4 (retry plain once if the peer drops it);
    /// accept both incoming.
    Prefer,
    /// MSE only, both ways, RC4 payload only; plain incoming handshakes are refused.
    Require,
}

impl Policy {
    /// True if a plain `\x13BitTorrent protocol` handshake may come in.
    pub fn accepts_plain(self) -> bool {
        self != Policy::Require
    }

    /// True if outgoing connections start with MSE.
    pub fn dials_encrypted(self) -> bool {
        self != Policy::Plaintext
    }

    /// The payload methods this side accepts (as responder) or offers (as initiator).
    pub fn methods(self) -> CryptoSet {
        match self {
            Policy::Require => CryptoSet::RC4,
            Policy::Plaintext | Policy::Prefer => CryptoSet::BOTH,
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plaintext" => Ok(Policy::Plaintext),
            "prefer" => Ok(Policy::Prefer),
            "require" => Ok(Policy::Require),
            _ => Err(format!(
                "unknown encryption policy {s:?} (plaintext, prefer or require)"
            )),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Plaintext => "plaintext",
            Policy::Prefer => "prefer",
            Policy::Require => "require",
        })
    }
}

/// A `crypto_provide` / `crypto_select` bit set (bit 0x01 plaintext, 0x02 RC4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoSet(pub u32);

impl CryptoSet {
    /// Plaintext payload only.
    pub const PLAINTEXT: Self = Self(0x01);
    /// RC4 payload only.
    pub const RC4: Self = Self(0x02);
    /// Either.
    pub const BOTH: Self = Self(0x03);

    fn contains(self, m: Method) -> bool {
        self.0 & m.bit() != 0
    }

    /// The method a responder allowing `self` picks among `offered`: plaintext when both
    /// allow it (it costs nothing), else RC4.
    fn select(self, offered: CryptoSet) -> Option<Method> {
        [Method::Plaintext, Method::Rc4]
            .into_iter()
            .find(|&m| self.contains(m) && offered.contains(m))
    }
}

/// The payload method both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The payload after the handshake is plain.
    Plaintext,
    /// The payload stays RC4, continuing the handshake's keystreams.
    Rc4,
}

impl Method {
    fn bit(self) -> u32 {
        match self {
            Method::Plaintext => 0x01,
            Method::Rc4 => 0x02,
        }
    }
}

/// The payload ciphers of an RC4 stream.
#[derive(Debug, Clone)]
pub struct Ciphers {
    /// Applied to every byte read after the handshake.
    pub decrypt: Rc4,
    /// Applied to every byte written after the handshake.
    pub encrypt: Rc4,
}

/// A finished MSE handshake.
#[derive(Debug)]
pub struct Established {
    /// The torrent (`SKEY`).
    pub info_hash: InfoHash,
    /// The payload method.
    pub method: Method,
    /// `Some` exactly when `method` is RC4.
    pub ciphers: Option<Ciphers>,
    /// The initiator's initial payload (IA), decrypted (responder only; empty otherwise).
    pub initial_payload: Vec<u8>,
    /// Bytes received after the handshake, already decrypted: the start of the payload
    /// stream (after `initial_payload`).
    pub leftover: Vec<u8>,
}

/// Where a handshake stands after an input.
#[derive(Debug)]
pub enum Progress {
    /// Send what `poll_transmit` returns and feed more bytes.
    NeedMore,
    /// The handshake is complete (send what `poll_transmit` still returns first). Boxed:
    /// the two RC4 states make it large, and it happens once per connection.
    Done(Box<Established>),
}

/// Why an MSE handshake failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MseError {
    /// A DH public key outside `2..=P-2`.
    #[error("MSE: degenerate Diffie-Hellman public key")]
    BadPublicKey,
    /// No `HASH('req1', S)` where the initiator's header should start.
    #[error("MSE: no HASH('req1', S) within {searched} bytes after the key")]
    NoReq1Sync {
        /// Bytes searched.
        searched: usize,
    },
    /// No encrypted VC where the responder's header should start.
    #[error("MSE: no encrypted VC within {searched} bytes after the key")]
    NoVcSync {
        /// Bytes searched.
        searched: usize,
    },
    /// `HASH('req2', SKEY)` names no torrent we serve.
    #[error("MSE: the peer asked for an unknown torrent")]
    UnknownTorrent,
    /// The decrypted VC is not zero (wrong key).
    #[error("MSE: verification constant mismatch")]
    BadVc,
    /// A pad length above [`MAX_PAD`].
    #[error("MSE: pad of {len} bytes (at most {MAX_PAD})")]
    PadTooLong {
        /// Length received.
        len: usize,
    },
    /// `len(IA)` above [`MAX_IA_LEN`].
    #[error("MSE: initial payload of {len} bytes (at most {MAX_IA_LEN})")]
    InitialPayloadTooLong {
        /// Length received.
        len: usize,
    },
    /// No payload method both sides allow.
    #[error("MSE: peer provides methods {provided:#x}, we allow {allowed:#x}")]
    NoCommonMethod {
        /// `crypto_provide`.
        provided: u32,
        /// Our policy's set.
        allowed: u32,
    },
    /// The responder selected something other than one method we offered.
    #[error("MSE: peer selected {selected:#x}, we offered {offered:#x}")]
    BadSelect {
        /// `crypto_select`.
        selected: u32,
        /// Our `crypto_provide`.
        offered: u32,
    },
    /// Input after the handshake completed or failed.
    #[error("MSE: input after the handshake ended")]
    Finished,
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HASH('req2', SKEY)`: what a responder looks torrents up by (precompute it per torrent).
pub fn req2_hash(info_hash: &InfoHash) -> [u8; 20] {
    hash(&[b"req2", &info_hash.0])
}

fn xor20(a: &[u8; 20], b: &[u8]) -> [u8; 20] {
    let mut out = *a;
    for (o, x) in out.iter_mut().zip(b) {
        *o ^= x;
    }
    out
}

fn random_pad(rng: &mut impl rand::RngCore) -> Vec<u8> {
    let len = (rng.next_u32() as usize) % (MAX_PAD + 1);
    let mut pad = vec![0u8; len];
    rng.fill_bytes(&mut pad);
    pad
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn be_u16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests;
