//! The BEP 10 extended handshake: the bencoded dictionary sent as extended message id 0.
//!
//! Besides the standard keys (`m`, `p`, `v`, `reqq`, `yourip`, `metadata_size`), instream
//! peers send two of their own: `fabric` (the sender's fabric name) and `quic` (the port of
//! its QUIC listener). Other clients ignore unknown keys, as BEP 10 asks.
//!
//! Decoding is tolerant because every client fills this dictionary its own way (libtorrent
//! alone sends a dozen keys): unknown keys are ignored, and a known key with the wrong type
//! or an out-of-range value reads as absent rather than failing the whole handshake. Only
//! a payload that is not a bencoded dictionary is an error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use thiserror::Error;

use crate::bencode::{self, DecodeError, Node, OwnedValue};
use crate::fabric::is_valid_fabric_name;

/// Extended message id of the handshake itself.
pub const HANDSHAKE_ID: u8 = 0;

/// Longest client string we keep; longer ones read as absent (it is a label for logs, not a
/// place to smuggle data). Fabric names follow [`is_valid_fabric_name`] instead.
pub const MAX_TEXT_LEN: usize = 64;

/// Why an extended handshake payload was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ExtensionError {
    /// The payload is not bencode.
    #[error("extended handshake is not valid bencode: {0}")]
    Bencode(DecodeError),
    /// The payload is bencode but not a dictionary.
    #[error("extended handshake is a {found}, not a dictionary")]
    NotADictionary {
        /// What it is instead.
        found: &'static str,
    },
}

/// The contents of a BEP 10 handshake that instream uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// `m`: extension name -> the message id the sender wants to receive it under (1..=255;
    /// id 0 means "disabled" and is dropped on decode).
    pub extensions: BTreeMap<String, u8>,
    /// `p`: the sender's TCP listen port.
    pub listen_port: Option<u16>,
    /// `v`: client name and version.
    pub client: Option<String>,
    /// `reqq`: how many outstanding requests the sender queues.
    pub reqq: Option<u32>,
    /// `yourip`: the receiver's address as the sender sees it.
    pub yourip: Option<IpAddr>,
    /// `metadata_size` (BEP 9): size of the info dictionary.
    pub metadata_size: Option<u32>,
    /// `fabric` (instream): the sender's fabric name (absent unless [`is_valid_fabric_name`]).
    pub fabric: Option<String>,
    /// `quic` (instream): the sender's QUIC port.
    pub quic_port: Option<u16>,
}

fn small_text(node: &Node<'_>) -> Option<String> {
    node.as_str()
        .filter(|s| !s.is_empty() && s.len() <= MAX_TEXT_LEN)
        .map(str::to_owned)
}

fn int_in<T: TryFrom<i64>>(node: &Node<'_>) -> Option<T> {
    node.as_int().and_then(|i| T::try_from(i).ok())
}

fn ip(node: &Node<'_>) -> Option<IpAddr> {
    let b = node.as_bytes()?;
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else {
        <[u8; 16]>::try_from(b)
            .ok()
            .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
    }
}

impl ExtendedHandshake {
    /// Parses the payload of extended message 0 (after the extended id byte).
    pub fn decode(payload: &[u8]) -> Result<Self, ExtensionError> {
        let root = bencode::decode(payload).map_err(ExtensionError::Bencode)?;
        let Some(entries) = root.as_dict() else {
            return Err(ExtensionError::NotADictionary {
                found: root.kind_name(),
            });
        };
        let mut hs = Self::default();
        for (key, value) in entries {
            match *key {
                b"m" => {
                    for (name, id) in value.as_dict().unwrap_or(&[]) {
                        let name = std::str::from_utf8(name).ok();
                        let id = int_in::<u8>(id).filter(|&id| id != 0);
                        if let (Some(name), Some(id)) = (name, id) {
                            hs.extensions.insert(name.to_owned(), id);
                        }
                    }
                }
                b"p" => hs.listen_port = int_in(value).filter(|&p: &u16| p != 0),
                b"v" => hs.client = small_text(value),
                b"reqq" => hs.reqq = int_in(value),
                b"yourip" => hs.yourip = ip(value),
                b"metadata_size" => hs.metadata_size = int_in(value),
                b"fabric" => {
                    hs.fabric = value
                        .as_str()
                        .filter(|f| is_valid_fabric_name(f))
                        .map(str::to_owned)
                }
                b"quic" => hs.quic_port = int_in(value).filter(|&p: &u16| p != 0),
                _ => {}
            }
        }
        Ok(hs)
    }

    /// The payload of extended message 0 (to be sent after the extended id byte).
    pub fn encode(&self) -> Bytes {
        let mut d: BTreeMap<Vec<u8>, OwnedValue> = BTreeMap::new();
        let m = self
            .extensions
            .iter()
            .map(|(name, id)| (name.as_bytes(), OwnedValue::Int(i64::from(*id))));
        d.insert(b"m".to_vec(), OwnedValue::dict(m));
        let mut int = |key: &[u8], v: Option<i64>| {
            if let Some(v) = v {
                d.insert(key.to_vec(), OwnedValue::Int(v));
            }
        };
        int(b"p", self.listen_port.map(i64::from));
        int(b"reqq", self.reqq.map(i64::from));
        int(b"metadata_size", self.metadata_size.map(i64::from));
        int(b"quic", self.quic_port.map(i64::from));
        if let Some(v) = &self.client {
            d.insert(b"v".to_vec(), OwnedValue::string(v));
        }
        if let Some(f) = &self.fabric {
            d.insert(b"fabric".to_vec(), OwnedValue::string(f));
        }
        if let Some(ip) = self.yourip {
            let raw = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            d.insert(b"yourip".to_vec(), OwnedValue::Bytes(raw));
        }
        Bytes::from(OwnedValue::Dict(d).encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    /// A handshake as libtorrent 2.0 sends it (BEP 10), key by key; the unknown keys and the
    /// odd types must not get in the way.
    #[test]
    fn decodes_a_libtorrent_handshake() {
        let mut b = Vec::new();
        b.extend_from_slice(b"d"); // dictionary
        b.extend_from_slice(b"12:complete_agoi-1e"); // unknown to us
        b.extend_from_slice(b"1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee"); // m
        b.extend_from_slice(b"13:metadata_sizei1234e"); // metadata_size
        b.extend_from_slice(b"1:pi6881e"); // p
        b.extend_from_slice(b"4:reqqi500e"); // reqq
        b.extend_from_slice(b"11:upload_onlyi1e"); // unknown to us
        b.extend_from_slice(b"1:v16:libtorrent 2.0.8"); // v
        b.extend_from_slice(b"6:yourip4:\x7f\x00\x00\x01"); // yourip
        b.extend_from_slice(b"e");
        let hs = ExtendedHandshake::decode(&b).unwrap();
        assert_eq!(hs.extensions.len(), 6);
        assert_eq!(hs.extensions["ut_metadata"], 2);
        assert_eq!(hs.listen_port, Some(6881));
        assert_eq!(hs.reqq, Some(500));
        assert_eq!(hs.client.as_deref(), Some("libtorrent 2.0.8"));
        assert_eq!(hs.yourip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(hs.metadata_size, Some(1234));
        assert_eq!(hs.fabric, None);
        assert_eq!(hs.quic_port, None);
    }

    #[test]
    fn carries_fabric_and_quic_port() {
        let hs = ExtendedHandshake {
            fabric: Some("dc-east-1".into()),
            quic_port: Some(7000),
            listen_port: Some(6881),
            client: Some("instream/0.1".into()),
            reqq: Some(250),
            ..Default::default()
        };
        let bytes = hs.encode();
        assert_eq!(
            &bytes[..],
            &b"d6:fabric9:dc-east-11:mde1:pi6881e4:quici7000e4:reqqi250e1:v12:instream/0.1e"[..]
        );
        assert_eq!(ExtendedHandshake::decode(&bytes).unwrap(), hs);
    }

    #[test]
    fn wrong_types_and_ranges_read_as_absent() {
        let b = b"d6:fabrici3e1:md1:ai0e1:bi300e1:ci-1e1:d1:xe1:p4:68814:quici70000e4:reqqi-1e1:vli1ee6:yourip3:abce";
        let hs = ExtendedHandshake::decode(b).unwrap();
        assert_eq!(hs, ExtendedHandshake::default());
        let long = format!(
            "d6:fabric{}:{}e",
            MAX_TEXT_LEN + 1,
            "x".repeat(MAX_TEXT_LEN + 1)
        );
        assert_eq!(
            ExtendedHandshake::decode(long.as_bytes()).unwrap().fabric,
            None
        );
    }

    #[test]
    fn non_dictionaries_are_errors() {
        assert_eq!(
            ExtendedHandshake::decode(b"li1ee"),
            Err(ExtensionError::NotADictionary { found: "list" })
        );
        assert!(matches!(
            ExtendedHandshake::decode(b"d1:m"),
            Err(ExtensionError::Bencode(_))
        ));
        assert!(matches!(
            ExtendedHandshake::decode(b""),
            Err(ExtensionError::Bencode(_))
        ));
    }

    fn arb_handshake() -> impl Strategy<Value = ExtendedHandshake> {
        let text = "[ -~]{1,64}";
        let ip = prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ];
        (
            proptest::collection::btree_map("[a-z_]{1,12}", 1u8..=255, 0..6),
            proptest::option::of(1u16..),
            proptest::option::of(text),
            proptest::option::of(any::<u32>()),
            proptest::option::of(ip),
            proptest::option::of(any::<u32>()),
            proptest::option::of("[a-zA-Z0-9._-]{1,64}"),
            proptest::option::of(1u16..),
        )
            .prop_map(
                |(
                    extensions,
                    listen_port,
                    client,
                    reqq,
                    yourip,
                    metadata_size,
                    fabric,
                    quic_port,
                )| {
                    ExtendedHandshake {
                        extensions,
                        listen_port,
                        client,
                        reqq,
                        yourip,
                        metadata_size,
                        fabric,
                        quic_port,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn same_after_conversion(hs in arb_handshake()) {
            prop_assert_eq!(ExtendedHandshake::decode(&hs.encode()).unwrap(), hs);
        }

        #[test]
        fn every_truncation_is_an_error_not_a_panic(hs in arb_handshake()) {
            let bytes = hs.encode();
            for n in 0..bytes.len() {
                prop_assert!(ExtendedHandshake::decode(&bytes[..n]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ExtendedHandshake::decode(&bytes);
        }
    }
}
