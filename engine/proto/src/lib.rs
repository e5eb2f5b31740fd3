//! instream-proto: the sans-IO core of instream.
//!
//! Everything here takes bytes or events and returns bytes or actions. There are no sockets,
//! files, clocks, threads or async in this crate, which the crate's `Cargo.toml` enforces:
//! the engine, the tracker, the fabric simulator and the fuzzers all drive the same code.
//!
//! Contract of the state machines ([`torrent::Torrent`], [`peer`]): feed inputs with
//! `handle_*(now, ...)`, then drain `poll_action()` until it returns `None`, then arm a timer
//! for `poll_timeout()`. Time (`now`) and randomness (`rng`) are always arguments.
#![warn(missing_docs, unreachable_pub)]
#![warn(clippy::cast_possible_truncation)]

pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod fabric;
pub mod lengths;
#[cfg(feature = "manifest")]
pub mod manifest;
pub mod metainfo;
pub mod mse;
pub mod picker;
pub mod prometheus;
#[cfg(feature = "sim")]
pub mod sim;
pub mod size;
pub mod torrent;
pub mod tracker;
pub mod wire;

#[cfg(any(fuzzing, test))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

/// A 20-byte SHA-1 info-hash (BitTorrent v1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hex, as trackers' whitelists and logs use it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 40 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s.trim(), &mut out).ok()?;
        Some(Self(out))
    }
}

impl std::fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl std::fmt::Display for InfoHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A 20-byte peer id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// An Azureus-style id (`-IS0100-` + 12 random bytes), as trackers and clients expect.
    pub fn generate(rng: &mut impl rand::RngCore) -> Self {
        let mut id = *b"-IS0100-000000000000";
        let mut tail = [0u8; 12];
        rng.fill_bytes(&mut tail);
        // Printable tail: some clients and trackers log peer ids as text.
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for (dst, b) in id[8..].iter_mut().zip(tail) {
            *dst = ALPHABET[b as usize % ALPHABET.len()];
        }
        Self(id)
    }
}

impl std::fmt::Debug for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerId({})", String::from_utf8_lossy(&self.0))
    }
}
