//! An HTTP(S) URL of a file or an archive, optionally pinned by `#sha256=HEX` (of the bytes
//! as served). The body streams through the digest into the file or the unpacker, never
//! whole in memory; a pin that does not match fails the fetch after the last byte, and the
//! caller throws away what was written.

use super::archive::{self, ArchiveKind};
use super::{DataSource, Fetched, Provenance, SourceError};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

pub struct HttpSource {
    /// The URL without its fragment.
    url: String,
    pin: Option<[u8; 32]>,
    /// The last path segment: the file's name, or the archive's.
    name: String,
}

impl HttpSource {
    pub fn parse(arg: &str) -> Result<Self, SourceError> {
        let invalid = |detail: &str| SourceError::Invalid {
            source_arg: arg.to_string(),
            detail: detail.to_string(),
        };
        let (url, fragment) = match arg.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (arg, None),
        };
        let pin = match fragment {
            None => None,
            Some(f) => {
                let hex_pin = f
                    .strip_prefix("sha256=")
                    .ok_or_else(|| invalid("the only fragment is #sha256=HEX"))?;
                let mut pin = [0u8; 32];
                hex::decode_to_slice(hex_pin, &mut pin)
                    .map_err(|_| invalid("the sha256 pin must be 64 hex digits"))?;
                Some(pin)
            }
        };
        let path = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let path = path.split(['?']).next().unwrap_or(path);
        let name = path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && path.contains('/'))
            .ok_or_else(|| invalid("the URL must name a file"))?;
        let name = percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .map_err(|_| invalid("the file name is not UTF-8"))?
            .to_string();
        if name == "." || name == ".." || name.contains('/') {
            return Err(invalid("the URL must name a file"));
        }
        Ok(HttpSource {
            url: url.to_string(),
            pin,
            name,
        })
    }
}

/// Passes reads through and digests them.
struct Hashing<R> {
    inner: R,
    digest: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl DataSource for HttpSource {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn fetch(&self, into: &Path) -> Result<Fetched, SourceError> {
        let fetch_err = |detail: String| SourceError::Fetch {
            url: self.url.clone(),
            detail,
        };
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // The blocking client applies this to the answer's head and to each body read:
            // a large body may take long, a stalled one fails.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| fetch_err(crate::error_chain(&e)))?;
        let resp = client
            .get(&self.url)
            .send()
            .map_err(|e| fetch_err(crate::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(fetch_err(format!("HTTP {}", resp.status())));
        }
        let mut body = Hashing {
            inner: resp,
            digest: Sha256::new(),
            bytes: 0,
        };
        let kind = ArchiveKind::of_name(&self.name);
        let path = match kind {
            Some(kind) => {
                archive::unpack(kind, &mut body, into).map_err(|e| SourceError::Archive {
                    url: self.url.clone(),
                    detail: e.to_string(),
                })?;
                into.to_path_buf()
            }
            None => {
                let file = into.join(&self.name);
                let mut out = std::fs::File::create(&file).map_err(|err| SourceError::Io {
                    what: "create",
                    path: file.clone(),
                    err,
                })?;
                std::io::copy(&mut body, &mut out).map_err(|e| fetch_err(e.to_string()))?;
                out.sync_all().map_err(|err| SourceError::Io {
                    what: "write",
                    path: file.clone(),
                    err,
                })?;
                file
            }
        };
        let actual: [u8; 32] = body.digest.finalize().into();
        if let Some(pin) = self.pin
            && pin != actual
        {
            return Err(SourceError::PinMismatch {
                url: self.url.clone(),
                expected: hex::encode(pin),
                actual: hex::encode(actual),
            });
        }
        tracing::info!(url = %self.url, bytes = body.bytes, "fetched");
        Ok(Fetched {
            path,
            provenance: Some(Provenance {
                url: self.url.clone(),
                sha256: Some(hex::encode(actual)),
                commit: None,
            }),
        })
    }
}
