//! Whole-handshake tests of the MSE machines, in memory. Byte layouts follow the MSE spec
//! (libtorrent wiki "Message Stream Encryption"); see the header of `mse/mod.rs`.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::dh::{KEY_LEN, Keypair};
use super::*;

const IH: InfoHash = InfoHash([0x11; 20]);
const OTHER: InfoHash = InfoHash([0x22; 20]);

fn known(hashes: &[InfoHash]) -> impl FnMut(&[u8; 20]) -> Option<InfoHash> + '_ {
    move |h| hashes.iter().find(|ih| req2_hash(ih) == *h).copied()
}

/// Everything one run sent each way, and both outcomes.
struct Run {
    a_sent: Vec<u8>,
    b_sent: Vec<u8>,
    a: Box<Established>,
    b: Box<Established>,
}

fn run(offered: CryptoSet, allowed: CryptoSet, ia: &[u8], seed: u64) -> Run {
    let mut ra = StdRng::seed_from_u64(seed);
    let mut rb = StdRng::seed_from_u64(seed + 1000);
    let mut a = Initiator::new(&mut ra, IH, offered, ia.to_vec());
    let mut b = Responder::new(&mut rb, allowed);
    let (mut a_sent, mut b_sent) = (Vec::new(), Vec::new());
    let (mut a_done, mut b_done) = (None, None);
    for _ in 0..10 {
        if let Some(bytes) = a.poll_transmit() {
            a_sent.extend_from_slice(&bytes);
            if let Progress::Done(e) = b.handle_input(&bytes, known(&[OTHER, IH])).unwrap() {
                b_done = Some(e);
            }
        }
        if let Some(bytes) = b.poll_transmit() {
            b_sent.extend_from_slice(&bytes);
            if let Progress::Done(e) = a.handle_input(&bytes).unwrap() {
                a_done = Some(e);
            }
        }
        if a_done.is_some() && b_done.is_some() {
            break;
        }
    }
    Run {
        a_sent,
        b_sent,
        a: a_done.expect("initiator finished"),
        b: b_done.expect("responder finished"),
    }
}

fn responder(seed: u64, allowed: CryptoSet) -> Responder {
    Responder::new(&mut StdRng::seed_from_u64(seed + 1000), allowed)
}

#[test]
fn exchange_selects_plaintext_when_both_allow_it() {
    let r = run(
        CryptoSet::BOTH,
        CryptoSet::BOTH,
        b"\x13BitTorrent protocol",
        1,
    );
    assert_eq!(r.a.method, Method::Plaintext);
    assert_eq!(r.b.method, Method::Plaintext);
    assert!(r.a.ciphers.is_none() && r.b.ciphers.is_none());
    assert_eq!(r.b.info_hash, IH);
    assert_eq!(r.b.initial_payload, b"\x13BitTorrent protocol");
    assert!(r.a.leftover.is_empty() && r.b.leftover.is_empty());
}

#[test]
fn exchange_selects_rc4_when_the_responder_requires_it_and_the_streams_match() {
    let r = run(CryptoSet::BOTH, CryptoSet::RC4, b"ia", 2);
    assert_eq!((r.a.method, r.b.method), (Method::Rc4, Method::Rc4));
    let (mut a, mut b) = (r.a.ciphers.unwrap(), r.b.ciphers.unwrap());
    let mut msg = b"payload from A".to_vec();
    a.encrypt.apply(&mut msg);
    assert_ne!(&msg[..], b"payload from A");
    b.decrypt.apply(&mut msg);
    assert_eq!(&msg[..], b"payload from A");
    let mut back = b"and from B".to_vec();
    b.encrypt.apply(&mut back);
    a.decrypt.apply(&mut back);
    assert_eq!(&back[..], b"and from B");
}

#[test]
fn exchange_selects_rc4_when_the_initiator_offers_only_rc4() {
    let r = run(CryptoSet::RC4, CryptoSet::BOTH, b"", 3);
    assert_eq!((r.a.method, r.b.method), (Method::Rc4, Method::Rc4));
    assert!(r.b.initial_payload.is_empty());
}

#[test]
fn bytes_after_the_handshake_arrive_as_leftover_decrypted() {
    // RC4: A's first payload bytes ride in the same read as the end of its request.
    let mut ra = StdRng::seed_from_u64(4);
    let mut a = Initiator::new(&mut ra, IH, CryptoSet::RC4, b"hs".to_vec());
    let mut b = responder(4, CryptoSet::BOTH);
    let ya = a.poll_transmit().unwrap();
    assert!(matches!(
        b.handle_input(&ya, known(&[IH])),
        Ok(Progress::NeedMore)
    ));
    let yb = b.poll_transmit().unwrap();
    assert!(matches!(a.handle_input(&yb), Ok(Progress::NeedMore)));
    let request = a.poll_transmit().unwrap();
    // A cannot encrypt payload before it knows the method; simulate B's side only: the
    // responder gets its request plus trailing bytes encrypted with A's continuing keyA.
    let Progress::Done(e) = b.handle_input(&request, known(&[IH])).unwrap() else {
        panic!("responder should be done");
    };
    assert_eq!(e.initial_payload, b"hs");
    let reply = b.poll_transmit().unwrap();
    let mut tail = b"BBBB".to_vec();
    e.ciphers.unwrap().encrypt.apply(&mut tail);
    let mut both = reply;
    both.extend_from_slice(&tail);
    let Progress::Done(ea) = a.handle_input(&both).unwrap() else {
        panic!("initiator should be done");
    };
    assert_eq!(ea.leftover, b"BBBB");
}

#[test]
fn every_truncation_of_the_request_needs_more_and_never_panics() {
    for (allowed, seed) in [(CryptoSet::BOTH, 5), (CryptoSet::RC4, 6)] {
        let r = run(CryptoSet::BOTH, allowed, b"initial payload", seed);
        for n in 0..r.a_sent.len() {
            let mut b = responder(seed, allowed);
            let p = b.handle_input(&r.a_sent[..n], known(&[IH]));
            assert!(matches!(p, Ok(Progress::NeedMore)), "n={n}: {p:?}");
        }
        // Byte by byte, the responder finishes exactly at the last byte.
        let mut b = responder(seed, allowed);
        for (i, byte) in r.a_sent.iter().enumerate() {
            let p = b.handle_input(&[*byte], known(&[IH])).unwrap();
            assert_eq!(
                matches!(p, Progress::Done(_)),
                i + 1 == r.a_sent.len(),
                "byte {i}"
            );
        }
    }
}

#[test]
fn every_truncation_of_the_reply_needs_more_and_never_panics() {
    let seed = 7;
    let r = run(CryptoSet::BOTH, CryptoSet::RC4, b"", seed);
    for n in 0..r.b_sent.len() {
        let mut a = Initiator::new(
            &mut StdRng::seed_from_u64(seed),
            IH,
            CryptoSet::BOTH,
            Vec::new(),
        );
        let p = a.handle_input(&r.b_sent[..n]);
        assert!(matches!(p, Ok(Progress::NeedMore)), "n={n}: {p:?}");
    }
}

#[test]
fn junk_of_every_length_is_refused_or_needs_more_without_panicking() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut junk = vec![0u8; 2048];
    rand::RngCore::fill_bytes(&mut rng, &mut junk);
    for n in [0, 1, 95, 96, 97, 300, 627, 628, 629, 2048] {
        let mut b = responder(8, CryptoSet::BOTH);
        match b.handle_input(&junk[..n], known(&[IH])) {
            Ok(Progress::NeedMore) => assert!(n < 96 + MAX_PAD + 20, "n={n}"),
            Err(MseError::NoReq1Sync { searched }) => assert_eq!(searched, MAX_PAD + 20),
            other => panic!("n={n}: {other:?}"),
        }
        let mut a = Initiator::new(&mut rng, IH, CryptoSet::BOTH, Vec::new());
        match a.handle_input(&junk[..n]) {
            Ok(Progress::NeedMore) => assert!(n < 96 + MAX_PAD + 8, "n={n}"),
            Err(MseError::NoVcSync { searched }) => assert_eq!(searched, MAX_PAD + 8),
            other => panic!("n={n}: {other:?}"),
        }
    }
}

#[test]
fn an_unknown_skey_is_refused() {
    let mut a = Initiator::new(
        &mut StdRng::seed_from_u64(9),
        OTHER,
        CryptoSet::BOTH,
        Vec::new(),
    );
    let mut b = responder(9, CryptoSet::BOTH);
    let ya = a.poll_transmit().unwrap();
    let _ = b.handle_input(&ya, known(&[IH])).unwrap();
    let _ = a.handle_input(&b.poll_transmit().unwrap()).unwrap();
    let request = a.poll_transmit().unwrap();
    assert_eq!(
        b.handle_input(&request, known(&[IH])).unwrap_err(),
        MseError::UnknownTorrent
    );
    assert_eq!(
        b.handle_input(b"more", known(&[IH])).unwrap_err(),
        MseError::Finished
    );
}

#[test]
fn no_common_method_is_refused() {
    let mut a = Initiator::new(
        &mut StdRng::seed_from_u64(10),
        IH,
        CryptoSet::PLAINTEXT,
        Vec::new(),
    );
    let mut b = responder(10, CryptoSet::RC4);
    let _ = b.handle_input(&a.poll_transmit().unwrap(), known(&[IH]));
    let _ = a.handle_input(&b.poll_transmit().unwrap());
    let err = b
        .handle_input(&a.poll_transmit().unwrap(), known(&[IH]))
        .unwrap_err();
    assert_eq!(
        err,
        MseError::NoCommonMethod {
            provided: 1,
            allowed: 2
        }
    );
}

/// A hand-driven initiator: key exchange done, keyA ready, header fields chosen by the test.
struct RawA {
    b: Responder,
    secret: [u8; KEY_LEN],
    encrypt: Rc4,
}

fn raw_a(seed: u64) -> RawA {
    let keys = Keypair::generate(&mut StdRng::seed_from_u64(seed));
    let mut b = responder(seed, CryptoSet::BOTH);
    let _ = b.handle_input(keys.public(), known(&[IH])).unwrap();
    let reply = b.poll_transmit().unwrap();
    let secret = keys
        .shared_secret(reply[..KEY_LEN].try_into().unwrap())
        .unwrap();
    RawA {
        b,
        secret,
        encrypt: Rc4::for_mse(b"keyA", &secret, &IH.0),
    }
}

impl RawA {
    fn send(&mut self, pad_c_len: u16, ia_len: u16, vc: [u8; 8]) -> Result<Progress, MseError> {
        let mut msg = Vec::new();
        msg.extend_from_slice(&hash(&[b"req1", &self.secret])); // HASH('req1', S)
        msg.extend_from_slice(&xor20(&req2_hash(&IH), &hash(&[b"req3", &self.secret]))); // SKEY
        let start = msg.len();
        msg.extend_from_slice(&vc); // VC
        msg.extend_from_slice(&3u32.to_be_bytes()); // crypto_provide
        msg.extend_from_slice(&pad_c_len.to_be_bytes()); // len(PadC)
        msg.extend(std::iter::repeat_n(0u8, usize::from(pad_c_len).min(600))); // PadC
        msg.extend_from_slice(&ia_len.to_be_bytes()); // len(IA)
        self.encrypt.apply(&mut msg[start..]);
        self.b.handle_input(&msg, known(&[IH]))
    }
}

#[test]
fn an_oversized_pad_c_is_refused() {
    let err = raw_a(11).send(513, 0, VC).unwrap_err();
    assert_eq!(err, MseError::PadTooLong { len: 513 });
    assert!(matches!(raw_a(12).send(512, 0, VC), Ok(Progress::Done(_))));
}

#[test]
fn an_oversized_initial_payload_is_refused() {
    let len = u16::try_from(MAX_IA_LEN + 1).unwrap();
    let err = raw_a(13).send(0, len, VC).unwrap_err();
    assert_eq!(
        err,
        MseError::InitialPayloadTooLong {
            len: MAX_IA_LEN + 1
        }
    );
}

#[test]
fn a_wrong_verification_constant_is_refused() {
    assert_eq!(raw_a(14).send(0, 0, [1; 8]).unwrap_err(), MseError::BadVc);
}

#[test]
fn an_oversized_pad_a_is_refused() {
    let keys = Keypair::generate(&mut StdRng::seed_from_u64(15));
    let mut b = responder(15, CryptoSet::BOTH);
    let mut msg = keys.public().to_vec();
    msg.extend_from_slice(&[0u8; MAX_PAD + 20]); // PadA too long: req1 never shows up
    assert_eq!(
        b.handle_input(&msg, known(&[IH])).unwrap_err(),
        MseError::NoReq1Sync {
            searched: MAX_PAD + 20
        }
    );
}

#[test]
fn an_oversized_pad_d_is_refused() {
    let mut a = Initiator::new(
        &mut StdRng::seed_from_u64(16),
        IH,
        CryptoSet::BOTH,
        Vec::new(),
    );
    let ya: [u8; KEY_LEN] = a.poll_transmit().unwrap()[..KEY_LEN].try_into().unwrap();
    let keys = Keypair::generate(&mut StdRng::seed_from_u64(17));
    let secret = keys.shared_secret(&ya).unwrap();
    let mut reply = keys.public().to_vec(); // Yb, no PadB
    let start = reply.len();
    reply.extend_from_slice(&VC); // VC
    reply.extend_from_slice(&1u32.to_be_bytes()); // crypto_select
    reply.extend_from_slice(&513u16.to_be_bytes()); // len(PadD)
    Rc4::for_mse(b"keyB", &secret, &IH.0).apply(&mut reply[start..]);
    assert_eq!(
        a.handle_input(&reply).unwrap_err(),
        MseError::PadTooLong { len: 513 }
    );
}

#[test]
fn a_select_outside_the_offer_is_refused() {
    let mut a = Initiator::new(
        &mut StdRng::seed_from_u64(18),
        IH,
        CryptoSet::RC4,
        Vec::new(),
    );
    let ya: [u8; KEY_LEN] = a.poll_transmit().unwrap()[..KEY_LEN].try_into().unwrap();
    let keys = Keypair::generate(&mut StdRng::seed_from_u64(19));
    let secret = keys.shared_secret(&ya).unwrap();
    let mut reply = keys.public().to_vec();
    let start = reply.len();
    reply.extend_from_slice(&VC); // VC
    reply.extend_from_slice(&1u32.to_be_bytes()); // crypto_select: plaintext, not offered
    reply.extend_from_slice(&0u16.to_be_bytes()); // len(PadD)
    Rc4::for_mse(b"keyB", &secret, &IH.0).apply(&mut reply[start..]);
    assert_eq!(
        a.handle_input(&reply).unwrap_err(),
        MseError::BadSelect {
            selected: 1,
            offered: 2
        }
    );
}

#[test]
fn policies_parse_and_map_to_method_sets() {
    for p in [Policy::Plaintext, Policy::Prefer, Policy::Require] {
        assert_eq!(p.to_string().parse::<Policy>(), Ok(p));
    }
    assert!("rc4".parse::<Policy>().is_err());
    assert_eq!(Policy::Require.methods(), CryptoSet::RC4);
    assert!(!Policy::Require.accepts_plain());
    assert!(!Policy::Plaintext.dials_encrypted());
    assert_eq!(
        CryptoSet::BOTH.select(CryptoSet::BOTH),
        Some(Method::Plaintext)
    );
    assert_eq!(CryptoSet::BOTH.select(CryptoSet::RC4), Some(Method::Rc4));
}

/// The request an initiator (seed 1) sends to the fuzz entry's responder, IA = a BT
/// handshake prefix: the seed of `fuzz/corpus/mse_responder/`.
fn fuzz_seed_request() -> Vec<u8> {
    use crate::fuzzing::{FUZZ_MSE_INFO_HASH, FUZZ_MSE_SEED};
    let mut a = Initiator::new(
        &mut StdRng::seed_from_u64(1),
        FUZZ_MSE_INFO_HASH,
        CryptoSet::BOTH,
        b"\x13BitTorrent protocol".to_vec(),
    );
    let mut b = Responder::new(&mut StdRng::seed_from_u64(FUZZ_MSE_SEED), CryptoSet::BOTH);
    let mut sent = a.poll_transmit().unwrap();
    let _ = b.handle_input(&sent, known(&[FUZZ_MSE_INFO_HASH])).unwrap();
    let _ = a.handle_input(&b.poll_transmit().unwrap()).unwrap();
    sent.extend_from_slice(&a.poll_transmit().unwrap());
    sent
}

fn fuzz_seed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mse_responder/request")
}

#[test]
fn the_fuzz_corpus_seed_reaches_the_end_of_the_handshake() {
    let data = std::fs::read(fuzz_seed_path()).expect("read the mse_responder corpus seed");
    assert_eq!(
        data,
        fuzz_seed_request(),
        "regenerate with --ignored write_mse_fuzz_seed"
    );
    let mut b = Responder::new(
        &mut StdRng::seed_from_u64(crate::fuzzing::FUZZ_MSE_SEED),
        CryptoSet::BOTH,
    );
    let p = b.handle_input(&data, known(&[crate::fuzzing::FUZZ_MSE_INFO_HASH]));
    assert!(matches!(p, Ok(Progress::Done(_))), "{p:?}");
}

/// Rewrites the corpus seed (run after changing the machines' use of randomness).
#[test]
#[ignore]
fn write_mse_fuzz_seed() {
    let path = fuzz_seed_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, fuzz_seed_request()).unwrap();
}
