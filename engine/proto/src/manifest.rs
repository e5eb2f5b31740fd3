//! The signed product manifest: what a host checks before it activates a version.
//!
//! A [`Manifest`] names a product version (product, version, variant), the torrent that
//! carries it (info-hash), the BLAKE3 digest and size of the whole payload, and the hooks it
//! ships. The publisher signs it with ed25519; the document that travels is a
//! [`SignedManifest`] JSON envelope carrying the *exact* signed text:
//!
//! ```json
//! {"payload":"{\"product\":\"web\",…}","signature":"<128 hex>","public_key":"<64 hex>"}
//! ```
//!
//! so verification never depends on re-encoding JSON the same way twice. The signature covers
//! [`SIGNING_CONTEXT`] followed by the payload text; the context keeps a manifest signature
//! from being valid for anything else the same key signs.
//!
//! Invariants of a [`VerifiedManifest`], which only [`verify`] makes: its payload was signed
//! by one of the caller's trusted keys; product, version and variant are plain names that are
//! safe as directory names; hooks are known hook names, each once; file paths (if listed) are
//! safe relative paths whose sizes add up to `size`. Input longer than
//! [`MAX_MANIFEST_LEN`] is refused before it is parsed.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::InfoHash;
use crate::metainfo::path;

/// Domain separation prefix of every manifest signature.
pub const SIGNING_CONTEXT: &[u8] = b"instream manifest v1\n";

/// Largest signed manifest accepted: a file list of 100,000 entries fits easily.
pub const MAX_MANIFEST_LEN: usize = 16 * 1024 * 1024;

/// Longest product, version or variant name.
pub const MAX_NAME_LEN: usize = 128;

/// The hooks a product may ship under `.instream/hooks/` (docs/ARCHITECTURE.md, install layout).
pub const KNOWN_HOOKS: [&str; 5] = ["stop", "start", "restart", "status", "health"];

/// Why a manifest was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The document is larger than [`MAX_MANIFEST_LEN`].
    #[error("manifest is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The envelope is not the expected JSON document.
    #[error("manifest is not a signed-manifest JSON document: {0}")]
    Envelope(String),
    /// No signature or no public key.
    #[error("manifest is not signed")]
    Unsigned,
    /// A hex field of the envelope is malformed.
    #[error("manifest field {field:?} is not {len} bytes of hex")]
    BadHex {
        /// Field name.
        field: &'static str,
        /// Bytes expected.
        len: usize,
    },
    /// The public key is not a valid ed25519 point.
    #[error("manifest public key is not a valid ed25519 key")]
    BadKey,
    /// The signing key is not one the caller trusts.
    #[error("manifest is signed by key {public_key}, which is not trusted")]
    UntrustedKey {
        /// The key, hex.
        public_key: String,
    },
    /// The signature does not match the payload.
    #[error("manifest signature does not match its contents")]
    BadSignature,
    /// The signed payload is not a manifest.
    #[error("manifest payload is invalid: {0}")]
    Payload(String),
    /// A field has a value hosts must not act on.
    #[error("manifest field {field:?} is invalid: {reason}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The payload's BLAKE3 differs from the manifest's.
    #[error("payload BLAKE3 is {actual}, the manifest says {expected}")]
    DigestMismatch {
        /// From the manifest, hex.
        expected: String,
        /// Computed, hex.
        actual: String,
    },
    /// The torrent's info-hash differs from the manifest's.
    #[error("torrent info-hash is {actual}, the manifest says {expected}")]
    InfoHashMismatch {
        /// From the manifest.
        expected: InfoHash,
        /// Of the torrent.
        actual: InfoHash,
    },
}

/// A product version as the publisher describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Product name.
    pub product: String,
    /// Version name.
    pub version: String,
    /// Variant (e.g. an OS release the build is for), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Info-hash of the torrent carrying the payload (hex in JSON).
    #[serde(with = "hex_info_hash")]
    pub info_hash: InfoHash,
    /// BLAKE3 of the whole payload, files concatenated in torrent order (hex in JSON).
    #[serde(with = "hex_digest")]
    pub blake3: [u8; 32],
    /// Payload size in bytes.
    pub size: u64,
    /// Hooks present under `.instream/hooks/`, from [`KNOWN_HOOKS`].
    #[serde(default)]
    pub hooks: Vec<String>,
    /// The payload's files, if the publisher lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ManifestFile>>,
    /// When it was made, Unix seconds (the publisher's clock, passed in).
    pub created_unix: u64,
    /// Where the publisher read the payload from, for a remote source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ManifestSource>,
}

/// A remote data source of a published payload: the URL, and what pins its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSource {
    /// As the publisher was given it (without a `#sha256=` pin).
    pub url: String,
    /// SHA-256 of the bytes served (an HTTP source), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The commit whose tree was published (a Git source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// One file of a manifest's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// `/`-separated path relative to the version directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// The JSON envelope that travels: the signed text, the signature and the signer's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// The manifest as JSON text: exactly the bytes signed (after [`SIGNING_CONTEXT`]).
    pub payload: String,
    /// ed25519 signature, hex.
    #[serde(default)]
    pub signature: Option<String>,
    /// The signer's public key, hex.
    #[serde(default)]
    pub public_key: Option<String>,
}

/// A manifest whose signature checked out against a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    manifest: Manifest,
    signer: VerifyingKey,
}

mod hex_info_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::InfoHash;

    pub(super) fn serialize<S: Serializer>(h: &InfoHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_hex())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<InfoHash, D::Error> {
        let text = String::deserialize(d)?;
        InfoHash::from_hex(&text).ok_or_else(|| D::Error::custom("info_hash is not 40 hex digits"))
    }
}

mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|_| D::Error::custom("blake3 is not 64 hex digits"))?;
        Ok(out)
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// True if `name` is a plain product, version or variant name: 1 to [`MAX_NAME_LEN`] ASCII
/// letters, digits, `.`, `_`, `+` or `-`, starting with a letter or digit. Such a name is a
/// safe directory name on every host.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

impl Manifest {
    /// Checks the rules listed in the module header (all but the signature).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let names = [
            ("product", Some(&self.product)),
            ("version", Some(&self.version)),
            ("variant", self.variant.as_ref()),
        ];
        for (field, value) in names {
            if let Some(v) = value.filter(|v| !is_valid_name(v)) {
                return Err(invalid(
                    field,
                    format!("{v:?} is not 1-{MAX_NAME_LEN} letters, digits, '.', '_', '+', '-'"),
                ));
            }
        }
        for (i, hook) in self.hooks.iter().enumerate() {
            if !KNOWN_HOOKS.contains(&hook.as_str()) {
                return Err(invalid("hooks", format!("unknown hook {hook:?}")));
            }
            if self.hooks[..i].contains(hook) {
                return Err(invalid("hooks", format!("hook {hook:?} listed twice")));
            }
        }
        if let Some(files) = &self.files {
            let mut total: u64 = 0;
            for f in files {
                path::split_relative(&f.path)
                    .map_err(|p| invalid("files", format!("path {:?}: {p}", f.path)))?;
                total = total
                    .checked_add(f.size)
                    .ok_or_else(|| invalid("files", "sizes overflow 64 bits"))?;
            }
            if total != self.size {
                return Err(invalid(
                    "files",
                    format!("sizes add up to {total}, not size {}", self.size),
                ));
            }
        }
        Ok(())
    }
}

/// Signs `manifest` with the publisher's key and returns the [`SignedManifest`] JSON
/// document. Refuses a manifest that hosts would refuse.
pub fn sign(manifest: &Manifest, key: &SigningKey) -> Result<Vec<u8>, ManifestError> {
    manifest.validate()?;
    let payload =
        serde_json::to_string(manifest).map_err(|e| invalid("manifest", e.to_string()))?;
    let signature = key.sign(&signed_message(&payload));
    let envelope = SignedManifest {
        payload,
        signature: Some(hex::encode(signature.to_bytes())),
        public_key: Some(public_key_hex(&key.verifying_key())),
    };
    serde_json::to_vec(&envelope).map_err(|e| invalid("manifest", e.to_string()))
}

fn signed_message(payload: &str) -> Vec<u8> {
    [SIGNING_CONTEXT, payload.as_bytes()].concat()
}

fn decode_hex<const N: usize>(text: &str, field: &'static str) -> Result<[u8; N], ManifestError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| ManifestError::BadHex { field, len: N })?;
    Ok(out)
}

/// The hex form of a public key, as envelopes and key files carry it.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Parses a hex public key (64 digits), e.g. from a trusted-keys file.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, ManifestError> {
    let bytes = decode_hex::<32>(text.trim(), "public_key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| ManifestError::BadKey)
}

/// Checks a [`SignedManifest`] document against the keys the host trusts.
pub fn verify(bytes: &[u8], trusted: &[VerifyingKey]) -> Result<VerifiedManifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_LEN {
        return Err(ManifestError::TooLarge {
            len: bytes.len(),
            max: MAX_MANIFEST_LEN,
        });
    }
    let envelope: SignedManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Envelope(e.to_string()))?;
    let (Some(signature), Some(public_key)) = (&envelope.signature, &envelope.public_key) else {
        return Err(ManifestError::Unsigned);
    };
    if signature.is_empty() || public_key.is_empty() {
        return Err(ManifestError::Unsigned);
    }
    let signer = parse_public_key(public_key)?;
    if !trusted.contains(&signer) {
        return Err(ManifestError::UntrustedKey {
            public_key: public_key_hex(&signer),
        });
    }
    let signature = Signature::from_bytes(&decode_hex::<64>(signature, "signature")?);
    signer
        .verify_strict(&signed_message(&envelope.payload), &signature)
        .map_err(|_| ManifestError::BadSignature)?;
    let manifest: Manifest = serde_json::from_str(&envelope.payload)
        .map_err(|e| ManifestError::Payload(e.to_string()))?;
    manifest.validate()?;
    Ok(VerifiedManifest { manifest, signer })
}

impl VerifiedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The key that signed it (one of the trusted ones).
    pub fn signer(&self) -> &VerifyingKey {
        &self.signer
    }

    /// Checks the payload's BLAKE3 digest against the manifest's.
    pub fn check_blake3(&self, digest: &[u8; 32]) -> Result<(), ManifestError> {
        if *digest == self.manifest.blake3 {
            Ok(())
        } else {
            Err(ManifestError::DigestMismatch {
                expected: hex::encode(self.manifest.blake3),
                actual: hex::encode(digest),
            })
        }
    }

    /// Checks a torrent's info-hash against the manifest's.
    pub fn check_info_hash(&self, info_hash: InfoHash) -> Result<(), ManifestError> {
        if info_hash == self.manifest.info_hash {
            Ok(())
        } else {
            Err(ManifestError::InfoHashMismatch {
                expected: self.manifest.info_hash,
                actual: info_hash,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample() -> Manifest {
        Manifest {
            product: "web".into(),
            version: "1.2.3+build.7".into(),
            variant: Some("debian12".into()),
            info_hash: InfoHash([0xab; 20]),
            blake3: *blake3::hash(b"payload").as_bytes(),
            size: 7,
            hooks: vec!["start".into(), "health".into()],
            files: Some(vec![
                ManifestFile {
                    path: "bin/web".into(),
                    size: 5,
                },
                ManifestFile {
                    path: ".instream/hooks/start".into(),
                    size: 2,
                },
            ]),
            created_unix: 1_700_000_000,
            source: None,
        }
    }

    fn envelope(bytes: &[u8]) -> SignedManifest {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn signed_manifest_verifies_with_its_key() {
        let signed = sign(&sample(), &key(1)).unwrap();
        let v = verify(&signed, &[key(9).verifying_key(), key(1).verifying_key()]).unwrap();
        assert_eq!(v.manifest(), &sample());
        assert_eq!(v.signer(), &key(1).verifying_key());
        let e = envelope(&signed);
        assert_eq!(e.public_key, Some(public_key_hex(&key(1).verifying_key())));
        assert_eq!(
            serde_json::from_str::<Manifest>(&e.payload).unwrap(),
            sample()
        );
    }

    #[test]
    fn untrusted_key_is_refused() {
        let signed = sign(&sample(), &key(1)).unwrap();
        assert_eq!(
            verify(&signed, &[key(2).verifying_key()]).unwrap_err(),
            ManifestError::UntrustedKey {
                public_key: public_key_hex(&key(1).verifying_key())
            }
        );
        assert!(matches!(
            verify(&signed, &[]),
            Err(ManifestError::UntrustedKey { .. })
        ));
    }

    #[test]
    fn a_key_swapped_in_by_an_attacker_is_refused() {
        // Re-signed by an attacker who also puts their own key in the envelope.
        let signed = sign(&sample(), &key(66)).unwrap();
        assert!(matches!(
            verify(&signed, &[key(1).verifying_key()]),
            Err(ManifestError::UntrustedKey { .. })
        ));
        // The publisher's key in the envelope, the attacker's signature: bad signature.
        let mut e = envelope(&signed);
        e.public_key = Some(public_key_hex(&key(1).verifying_key()));
        let forged = serde_json::to_vec(&e).unwrap();
        assert_eq!(
            verify(&forged, &[key(1).verifying_key()]).unwrap_err(),
            ManifestError::BadSignature
        );
    }

    #[test]
    fn tampered_payload_is_refused() {
        let signed = sign(&sample(), &key(1)).unwrap();
        let trusted = [key(1).verifying_key()];
        let mut e = envelope(&signed);
        e.payload = e.payload.replace("\"size\":7", "\"size\":8");
        assert_ne!(e.payload, envelope(&signed).payload);
        let tampered = serde_json::to_vec(&e).unwrap();
        assert_eq!(
            verify(&tampered, &trusted).unwrap_err(),
            ManifestError::BadSignature
        );
        // Flipping any single byte of the document never yields a verified different manifest.
        for i in 0..signed.len() {
            let mut copy = signed.clone();
            copy[i] ^= 0x01;
            if let Ok(v) = verify(&copy, &trusted) {
                assert_eq!(v.manifest(), &sample(), "byte {i}");
            }
        }
    }

    #[test]
    fn flipped_signature_is_refused() {
        let signed = sign(&sample(), &key(1)).unwrap();
        let mut e = envelope(&signed);
        let mut sig = hex::decode(e.signature.as_ref().unwrap()).unwrap();
        sig[10] ^= 0x40;
        e.signature = Some(hex::encode(sig));
        let bad = serde_json::to_vec(&e).unwrap();
        assert_eq!(
            verify(&bad, &[key(1).verifying_key()]).unwrap_err(),
            ManifestError::BadSignature
        );
        e.signature = Some("zz".into());
        assert_eq!(
            verify(&serde_json::to_vec(&e).unwrap(), &[key(1).verifying_key()]).unwrap_err(),
            ManifestError::BadHex {
                field: "signature",
                len: 64
            }
        );
    }

    #[test]
    fn signature_without_the_context_prefix_is_refused() {
        let payload = serde_json::to_string(&sample()).unwrap();
        let raw_sig = key(1).sign(payload.as_bytes());
        let e = SignedManifest {
            payload,
            signature: Some(hex::encode(raw_sig.to_bytes())),
            public_key: Some(public_key_hex(&key(1).verifying_key())),
        };
        assert_eq!(
            verify(&serde_json::to_vec(&e).unwrap(), &[key(1).verifying_key()]).unwrap_err(),
            ManifestError::BadSignature
        );
    }

    #[test]
    fn unsigned_manifest_is_refused() {
        let payload = serde_json::to_string(&sample()).unwrap();
        let trusted = [key(1).verifying_key()];
        let unsigned = serde_json::json!({ "payload": payload }).to_string();
        assert_eq!(
            verify(unsigned.as_bytes(), &trusted).unwrap_err(),
            ManifestError::Unsigned
        );
        let empty = serde_json::json!({ "payload": payload, "signature": "", "public_key": "" })
            .to_string();
        assert_eq!(
            verify(empty.as_bytes(), &trusted).unwrap_err(),
            ManifestError::Unsigned
        );
        // A bare manifest (no envelope) is not a signed manifest either.
        assert!(matches!(
            verify(payload.as_bytes(), &trusted),
            Err(ManifestError::Envelope(_))
        ));
    }

    #[test]
    fn truncations_and_garbage_are_errors_not_panics() {
        let signed = sign(&sample(), &key(1)).unwrap();
        let trusted = [key(1).verifying_key()];
        for n in 0..signed.len() {
            assert!(verify(&signed[..n], &trusted).is_err(), "length {n}");
        }
        for garbage in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"\xff\xfe",
            b"{\"payload\":1}",
        ] {
            assert!(verify(garbage, &trusted).is_err());
        }
        let huge = vec![b' '; MAX_MANIFEST_LEN + 1];
        assert_eq!(
            verify(&huge, &trusted).unwrap_err(),
            ManifestError::TooLarge {
                len: MAX_MANIFEST_LEN + 1,
                max: MAX_MANIFEST_LEN
            }
        );
    }

    #[test]
    fn unsafe_names_hooks_and_paths_are_refused_at_both_ends() {
        let cases: Vec<(Manifest, &str)> = vec![
            (
                Manifest {
                    product: "../etc".into(),
                    ..sample()
                },
                "product",
            ),
            (
                Manifest {
                    version: "".into(),
                    ..sample()
                },
                "version",
            ),
            (
                Manifest {
                    variant: Some(".hidden".into()),
                    ..sample()
                },
                "variant",
            ),
            (
                Manifest {
                    hooks: vec!["rm-rf".into()],
                    ..sample()
                },
                "hooks",
            ),
            (
                Manifest {
                    hooks: vec!["start".into(), "start".into()],
                    ..sample()
                },
                "hooks",
            ),
            (
                Manifest {
                    files: Some(vec![ManifestFile {
                        path: "../x".into(),
                        size: 7,
                    }]),
                    ..sample()
                },
                "files",
            ),
            (
                Manifest {
                    size: 8,
                    ..sample()
                },
                "files",
            ),
        ];
        for (m, field) in cases {
            match sign(&m, &key(1)) {
                Err(ManifestError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
            // A publisher that skips validation still cannot get it past a host.
            let payload = serde_json::to_string(&m).unwrap();
            let sig = key(1).sign(&signed_message(&payload));
            let e = SignedManifest {
                payload,
                signature: Some(hex::encode(sig.to_bytes())),
                public_key: Some(public_key_hex(&key(1).verifying_key())),
            };
            let doc = serde_json::to_vec(&e).unwrap();
            assert!(matches!(
                verify(&doc, &[key(1).verifying_key()]),
                Err(ManifestError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn digest_and_info_hash_checks() {
        let v = verify(
            &sign(&sample(), &key(1)).unwrap(),
            &[key(1).verifying_key()],
        )
        .unwrap();
        assert_eq!(v.check_blake3(blake3::hash(b"payload").as_bytes()), Ok(()));
        let wrong = blake3::hash(b"tampered");
        assert_eq!(
            v.check_blake3(wrong.as_bytes()).unwrap_err(),
            ManifestError::DigestMismatch {
                expected: hex::encode(sample().blake3),
                actual: wrong.to_hex().to_string(),
            }
        );
        assert_eq!(v.check_info_hash(InfoHash([0xab; 20])), Ok(()));
        assert!(v.check_info_hash(InfoHash([0; 20])).is_err());
    }

    #[test]
    fn public_keys_parse_from_hex() {
        let k = key(3).verifying_key();
        assert_eq!(
            parse_public_key(&format!(" {}\n", public_key_hex(&k))),
            Ok(k)
        );
        assert_eq!(
            parse_public_key("abcd"),
            Err(ManifestError::BadHex {
                field: "public_key",
                len: 32
            })
        );
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let name = "[a-z0-9][a-z0-9._+-]{0,20}";
        (
            name,
            name,
            proptest::option::of(name),
            any::<[u8; 20]>(),
            any::<[u8; 32]>(),
            proptest::sample::subsequence(KNOWN_HOOKS.to_vec(), 0..=5),
            proptest::option::of(proptest::collection::vec(
                ("[a-z]{1,8}(/[a-z]{1,8}){0,2}", 0u64..1 << 40),
                0..5,
            )),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(product, version, variant, ih, b3, hooks, files, size, created_unix)| {
                    let files: Option<Vec<ManifestFile>> = files.map(|fs| {
                        fs.into_iter()
                            .map(|(path, size)| ManifestFile { path, size })
                            .collect()
                    });
                    let size = files
                        .as_ref()
                        .map_or(size, |fs| fs.iter().map(|f| f.size).sum());
                    Manifest {
                        product,
                        version,
                        variant,
                        info_hash: InfoHash(ih),
                        blake3: b3,
                        size,
                        hooks: hooks.into_iter().map(str::to_owned).collect(),
                        files,
                        created_unix,
                        source: (created_unix % 2 == 0).then(|| ManifestSource {
                            url: "git+file:///srv/repo#v1".into(),
                            sha256: None,
                            commit: Some(format!("{created_unix:040x}")),
                        }),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn same_after_conversion(m in arb_manifest()) {
            let signed = sign(&m, &key(5)).unwrap();
            let v = verify(&signed, &[key(5).verifying_key()]).unwrap();
            prop_assert_eq!(v.manifest(), &m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = verify(&bytes, &[key(5).verifying_key()]);
        }
    }
}
