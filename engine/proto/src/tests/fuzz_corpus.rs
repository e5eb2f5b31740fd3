//! Replays every file of `fuzz/corpus/<target>/` through the matching entry of
//! [`crate::fuzzing`], so stable CI runs each fuzz target over its seeds (and over every
//! truncation of them) without nightly or cargo-fuzz.

use std::fs;
use std::path::{Path, PathBuf};

use crate::fuzzing::TARGETS;

/// Truncations are replayed for files up to this size (the seeds are small; this keeps a
/// stray large file from making the test slow).
const MAX_TRUNCATED_LEN: usize = 4096;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "fuzz target {target} has no corpus at {}: {e}",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_replays_through_its_target() {
    for (target, entry) in TARGETS {
        let files = corpus_files(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target}/ has no seed file");
        for file in files {
            let data = fs::read(&file).expect("read corpus file");
            entry(&data);
            if data.len() <= MAX_TRUNCATED_LEN {
                for n in 0..data.len() {
                    entry(&data[..n]);
                }
            }
        }
    }
}

#[test]
fn every_target_has_a_fuzz_target_file_and_every_corpus_a_target() {
    for (target, _) in TARGETS {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(file.is_file(), "missing {}", file.display());
    }
    for dir in fs::read_dir(fuzz_dir().join("corpus")).expect("read fuzz/corpus") {
        let dir = dir.expect("read fuzz/corpus entry");
        if !dir.path().is_dir() {
            continue;
        }
        let name = dir.file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name}/ has no entry in fuzzing::TARGETS"
        );
    }
}

#[test]
fn the_signed_manifest_seed_verifies_with_the_fuzz_key() {
    // Without it the manifest target would never get past the signature check.
    let seed = fuzz_dir().join("corpus/manifest/signed_by_fuzz_key.json");
    let data = fs::read(&seed).expect("read the signed manifest seed");
    let verified = crate::manifest::verify(&data, &[crate::fuzzing::fuzz_manifest_key()]);
    assert!(verified.is_ok(), "{verified:?}");
}

/// Writes the corpus seeds that need our own code to make (a manifest signed with the fuzz
/// key, frames in our encoding). Run by hand after a format change:
/// `cargo test -p instream-proto write_generated_corpus_seeds -- --ignored`.
#[test]
#[ignore = "writes files into fuzz/corpus; run by hand"]
fn write_generated_corpus_seeds() {
    use bytes::BytesMut;
    use ed25519_dalek::SigningKey;

    use crate::fuzzing::FUZZ_MANIFEST_KEY_SEED;
    use crate::manifest::{Manifest, ManifestFile, sign};
    use crate::wire::extension::ExtendedHandshake;
    use crate::wire::{BlockSpec, Message};
    use crate::{InfoHash, PeerId};

    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        fs::write(dir.join(name), data).expect("write corpus file");
    };

    let m = Manifest {
        product: "web".into(),
        version: "1.0.0".into(),
        variant: Some("debian12".into()),
        info_hash: InfoHash([0x11; 20]),
        blake3: [0x22; 32],
        size: 3,
        hooks: vec!["start".into(), "health".into()],
        files: Some(vec![ManifestFile {
            path: "bin/web".into(),
            size: 3,
        }]),
        created_unix: 1_700_000_000,
        source: None,
    };
    let key = SigningKey::from_bytes(&FUZZ_MANIFEST_KEY_SEED);
    write(
        "manifest",
        "signed_by_fuzz_key.json",
        &sign(&m, &key).unwrap(),
    );
    write(
        "manifest",
        "bare_manifest.json",
        &serde_json::to_vec(&m).unwrap(),
    );

    let hs = ExtendedHandshake {
        fabric: Some("dc-east".into()),
        quic_port: Some(7000),
        listen_port: Some(6881),
        client: Some("instream/0.1".into()),
        reqq: Some(250),
        extensions: [("ut_metadata".to_owned(), 2)].into(),
        ..Default::default()
    };
    write("extension", "instream.bencode", &hs.encode());

    let mut frames = BytesMut::new();
    let spec = BlockSpec {
        index: 1,
        begin: 16384,
        len: 16384,
    };
    for msg in [
        Message::KeepAlive,
        Message::Extended {
            id: 0,
            payload: hs.encode(),
        },
        Message::Bitfield(vec![0b1010_0000].into()),
        Message::HaveNone,
        Message::Interested,
        Message::Unchoke,
        Message::Have(2),
        Message::Request(spec),
        Message::Piece {
            index: 1,
            begin: 16384,
            data: vec![0xaa; 64].into(),
        },
        Message::Cancel(spec),
        Message::Reject(spec),
        Message::AllowedFast(3),
        Message::Suggest(4),
        Message::Port(6881),
        Message::HaveAll,
        Message::NotInterested,
        Message::Choke,
    ] {
        msg.encode(&mut frames);
    }
    write("wire_message", "instream_session.bin", &frames);
    write(
        "handshake",
        "instream.bin",
        &crate::wire::Handshake::new(InfoHash([0x11; 20]), PeerId(*b"-IS0100-abcdefghijkl"))
            .encode(),
    );
}
