//! Fuzzing entry points: one function per parser that reads bytes from the network or from a
//! file. Each cargo-fuzz target in `fuzz/fuzz_targets/` is a one-line call into this module,
//! and `src/tests/fuzz_corpus.rs` replays every file of `fuzz/corpus/<target>/` through the
//! same functions, so stable CI exercises every target without nightly.
//!
//! Compiled under `cfg(any(fuzzing, test))` only. Besides "never panics", each entry asserts
//! what must hold when its parser accepts the input (spans in bounds, re-encoding decodes to
//! the same value, the info-hash is the SHA-1 of the raw `info` bytes...): a failed assert is
//! a finding just like a panic in the parser.
//!
//! [`TARGETS`] lists every entry by its fuzz target name; the corpus test uses it to check
//! that each target has a corpus directory and a target file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
#[cfg(feature = "manifest")]
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha1::{Digest, Sha1};

use crate::bencode as bencode_codec;
use crate::fabric::FabricMap;
#[cfg(feature = "manifest")]
use crate::manifest::{self as manifest_codec, Manifest};
use crate::metainfo::{ValidMetainfo, path};
use crate::wire::extension::ExtendedHandshake;
use crate::wire::{HANDSHAKE_LEN, Handshake, MAX_MSG_LEN, Message};

/// A fuzz entry point.
pub type Entry = fn(&[u8]);

/// Every fuzz entry, by the name of its cargo-fuzz target (and corpus directory).
pub const TARGETS: &[(&str, Entry)] = &[
    ("bencode", bencode),
    ("metainfo", metainfo),
    ("handshake", handshake),
    ("wire_message", wire_message),
    ("extension", extension),
    #[cfg(feature = "manifest")]
    ("manifest", manifest),
    ("fabric_map", fabric_map),
    ("mse_responder", mse_responder),
    // Tracker codecs (see the section at the end of this file).
    ("udp_tracker_request", udp_tracker_request),
    ("udp_tracker_response", udp_tracker_response),
    ("http_announce", http_announce),
];

#[cfg(feature = "manifest")]
/// Seed of the key the [`manifest`] entry trusts, so a corpus file signed with it reaches
/// the code behind the signature check.
pub const FUZZ_MANIFEST_KEY_SEED: [u8; 32] = [7; 32];

/// The public key of [`FUZZ_MANIFEST_KEY_SEED`].
#[cfg(feature = "manifest")]
pub fn fuzz_manifest_key() -> VerifyingKey {
    SigningKey::from_bytes(&FUZZ_MANIFEST_KEY_SEED).verifying_key()
}

/// Bencode decoder: spans cover the input; the canonical re-encoding decodes to the same value.
pub fn bencode(data: &[u8]) {
    if let Ok(node) = bencode_codec::decode(data) {
        assert_eq!(node.span(), 0..data.len());
        assert_eq!(node.raw(), data);
        let owned = node.to_owned_value();
        let again = bencode_codec::decode(&owned.encode())
            .expect("a canonical encoding decodes")
            .to_owned_value();
        assert_eq!(again, owned);
    }
    if let Ok((node, used)) = bencode_codec::decode_prefix(data) {
        assert_eq!(node.raw(), &data[..used]);
    }
}

/// Metainfo parser: the info-hash is over the raw `info` bytes, paths are safe, files tile
/// the payload, one hash per piece.
pub fn metainfo(data: &[u8]) {
    let Ok(m) = ValidMetainfo::from_bytes(data) else {
        return;
    };
    let digest: [u8; 20] = Sha1::digest(m.info_bytes()).into();
    assert_eq!(m.info_hash().0, digest);
    assert_eq!(m.piece_hashes().len(), m.lengths().num_pieces() as usize);
    let mut offset = 0;
    for f in m.files() {
        assert_eq!(f.offset, offset);
        offset += f.length;
        assert!(path::check_components(&f.path).is_ok(), "{:?}", f.path);
    }
    assert_eq!(offset, m.lengths().total_len());
}

/// BEP 3 handshake: an accepted handshake re-encodes to the bytes it came from.
pub fn handshake(data: &[u8]) {
    if let Ok(Some(h)) = Handshake::decode(data) {
        assert_eq!(&h.encode()[..], &data[..HANDSHAKE_LEN]);
    }
}

/// Peer wire frames, decoded one after another as a connection would; every accepted
/// message except `Unknown` re-encodes and decodes to itself.
pub fn wire_message(data: &[u8]) {
    let mut buf = data;
    while let Ok(Some((msg, used))) = Message::decode(buf, MAX_MSG_LEN) {
        assert!((4..=buf.len()).contains(&used));
        if !matches!(msg, Message::Unknown { .. }) {
            let mut out = BytesMut::new();
            msg.encode(&mut out);
            assert_eq!(&out[..], &buf[..used]);
            let (again, n) = Message::decode(&out, MAX_MSG_LEN)
                .expect("our encoding decodes")
                .expect("our encoding is complete");
            assert_eq!((again, n), (msg, used));
        }
        buf = &buf[used..];
    }
}

/// BEP 10 extended handshake: an accepted one survives encode -> decode.
pub fn extension(data: &[u8]) {
    if let Ok(hs) = ExtendedHandshake::decode(data) {
        let again = ExtendedHandshake::decode(&hs.encode()).expect("our encoding decodes");
        assert_eq!(again, hs);
    }
}

#[cfg(feature = "manifest")]
/// Signed manifest: verification against the fuzz key, and payload validation on its own
/// (which the signature check would otherwise keep the fuzzer from reaching).
pub fn manifest(data: &[u8]) {
    if let Ok(v) = manifest_codec::verify(data, &[fuzz_manifest_key()]) {
        assert!(v.manifest().validate().is_ok());
    }
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        let _ = m.validate();
    }
}

/// Fabric map text: parsing, then lookups of addresses taken from the input.
pub fn fabric_map(data: &[u8]) {
    let Ok(map) = FabricMap::parse(&String::from_utf8_lossy(data)) else {
        return;
    };
    for chunk in data.chunks(16) {
        let mut v6 = [0u8; 16];
        v6[..chunk.len()].copy_from_slice(chunk);
        let v4 = Ipv4Addr::new(v6[0], v6[1], v6[2], v6[3]);
        let _ = map.fabric_of(IpAddr::V4(v4));
        let _ = map.fabric_of(IpAddr::V6(Ipv6Addr::from(v6)));
        let _ = map.fabric_of(IpAddr::V6(v4.to_ipv6_mapped()));
    }
}

/// Seed of the responder's keys in [`mse_responder`], so a recorded initiator stream made
/// against a responder with this seed reaches the steps after the key exchange.
pub const FUZZ_MSE_SEED: u64 = 0x4d5345;

/// The info-hash the [`mse_responder`] entry serves.
pub const FUZZ_MSE_INFO_HASH: crate::InfoHash = crate::InfoHash([0x11; 20]);

/// MSE responder fed an initiator's bytes, whole and then split in two: whatever it
/// accepts names the served torrent, keeps IA within its bound, and it never sends more than
/// `Yb, PadB` and its bounded reply.
pub fn mse_responder(data: &[u8]) {
    use crate::mse::{CryptoSet, MAX_IA_LEN, MAX_PAD, Progress, Responder, dh::KEY_LEN, req2_hash};
    use rand::SeedableRng;
    let lookup =
        |h: &[u8; 20]| (*h == req2_hash(&FUZZ_MSE_INFO_HASH)).then_some(FUZZ_MSE_INFO_HASH);
    for split in [data.len(), data.len() / 2] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(FUZZ_MSE_SEED);
        let mut r = Responder::new(&mut rng, CryptoSet::BOTH);
        let mut sent = 0;
        for part in [&data[..split], &data[split..]] {
            let p = r.handle_input(part, lookup);
            sent += r.poll_transmit().map_or(0, |b| b.len());
            assert!(sent <= KEY_LEN + MAX_PAD + 8 + 4 + 2 + MAX_PAD);
            match p {
                Ok(Progress::NeedMore) => continue,
                Ok(Progress::Done(e)) => {
                    assert_eq!(e.info_hash, FUZZ_MSE_INFO_HASH);
                    assert!(e.initial_payload.len() <= MAX_IA_LEN);
                    assert!(e.initial_payload.len() + e.leftover.len() <= data.len());
                }
                Err(_) => {}
            }
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tracker codecs (owned by the tracker engineer): add `udp_tracker_request`,
// `udp_tracker_response` and `http_announce` entries below, list them in `TARGETS`, and give
// each a `fuzz/fuzz_targets/<name>.rs` and a `fuzz/corpus/<name>/` directory.
// ---------------------------------------------------------------------------------------------

/// BEP 15 request parser (tracker side): an accepted request re-encodes to bytes that parse
/// to the same request; a `Sendable` error quotes the transaction id of the input's header.
pub fn udp_tracker_request(data: &[u8]) {
    use crate::tracker::udp::{MAX_SCRAPE_INFO_HASHES, Request, RequestParseError};
    match Request::parse(data, MAX_SCRAPE_INFO_HASHES) {
        Ok(req) => {
            if let Request::Announce(a) = &req {
                let _ = a.fabric();
            }
            let mut out = Vec::new();
            req.encode(&mut out);
            assert_eq!(Request::parse(&out, MAX_SCRAPE_INFO_HASHES), Ok(req));
        }
        Err(RequestParseError::Sendable { transaction_id, .. }) => {
            assert_eq!(transaction_id.0.to_be_bytes()[..], data[12..16]);
        }
        Err(RequestParseError::Unsendable { .. }) => {}
    }
}

/// BEP 15 response parser (client side), for both peer-list families: an accepted response
/// re-encodes to bytes that parse to the same response.
pub fn udp_tracker_response(data: &[u8]) {
    use crate::tracker::udp::Response;
    for ipv6 in [false, true] {
        if let Ok(resp) = Response::parse(data, ipv6) {
            let mut out = Vec::new();
            resp.encode(&mut out);
            assert_eq!(Response::parse(&out, ipv6), Ok(resp));
        }
    }
}

/// HTTP tracker codecs: the announce and scrape query parsers (tracker side) and the
/// announce and scrape reply parsers (client side); what they accept round-trips.
pub fn http_announce(data: &[u8]) {
    use crate::tracker::http::{
        AnnounceReply, AnnounceRequest, ScrapeResponse, parse_scrape_query, scrape_query,
    };
    if let Ok(req) = AnnounceRequest::parse_query(data) {
        assert_eq!(
            AnnounceRequest::parse_query(req.to_query().as_bytes()),
            Ok(req)
        );
    }
    if let Ok(hashes) = parse_scrape_query(data, 74) {
        assert!(hashes.len() <= 74);
        assert_eq!(
            parse_scrape_query(scrape_query(&hashes).as_bytes(), 74),
            Ok(hashes)
        );
    }
    if let Ok(AnnounceReply::Ok(reply)) = AnnounceReply::parse(data) {
        let mut out = Vec::new();
        reply.encode(&mut out);
        assert_eq!(AnnounceReply::parse(&out), Ok(AnnounceReply::Ok(reply)));
    }
    if let Ok(scrape) = ScrapeResponse::parse(data) {
        let _ = scrape.files.len();
    }
}
