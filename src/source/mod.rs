//! Data sources: where `instream publish` reads a product version from. Every source is a
//! [`DataSource`]: given an empty directory, it leaves the version's files there (or names a
//! local path that already holds them) and says where they came from, which the signed
//! manifest records. [`parse`] picks the source from the argument's scheme.
//!
//! | argument | source |
//! | --- | --- |
//! | `PATH`, `file:///PATH` | [`local::LocalSource`]: the file or directory itself |
//! | `http(s)://HOST/F[#sha256=HEX]` | [`http::HttpSource`]: a file, or a `.tar`, `.tar.gz`/`.tgz`, `.tar.zst`/`.tzst` archive unpacked as it streams |
//! | `git+file://PATH[#REF]`, `git+https://URL[#REF]` | [`git::GitSource`]: the tree at REF (default `HEAD`), without `.git` |
//!
//! A new store (S3, HDFS, ...) plugs in as one more file here implementing [`DataSource`]
//! and one more arm in [`parse`]; nothing else changes.

pub mod archive;
pub mod git;
pub mod http;
pub mod local;

use std::path::{Path, PathBuf};

/// Where a published version came from, as the manifest records it.
pub use proto::manifest::ManifestSource as Provenance;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "no data source for {scheme}:// (use a local path, http(s)://, git+file:// or git+https://)"
    )]
    UnknownScheme { scheme: String },
    #[error("invalid source {source_arg:?}: {detail}")]
    Invalid { source_arg: String, detail: String },
    #[error("fetch {url}: {detail}")]
    Fetch { url: String, detail: String },
    #[error("{url} does not match its pin: sha256 {actual}, expected {expected}")]
    PinMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("unpack {url}: {detail}")]
    Archive { url: String, detail: String },
    #[error("git {url}: {detail}")]
    Git { url: String, detail: String },
    #[error("{what} {}: {err}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
}

/// What a source left for publishing.
#[derive(Debug)]
pub struct Fetched {
    /// The file or directory to publish.
    pub path: PathBuf,
    /// Where it came from (`None` for a local path, which names itself).
    pub provenance: Option<Provenance>,
}

/// A place product versions are read from.
pub trait DataSource: Send {
    /// The source as the operator wrote it (for logs and errors).
    fn describe(&self) -> String;
    /// Whether [`DataSource::fetch`] writes into `into` (and so needs a scratch directory).
    fn needs_scratch(&self) -> bool {
        true
    }
    /// Puts the version's files in `into` (an empty directory that the caller removes on
    /// failure) and says what to publish.
    fn fetch(&self, into: &Path) -> Result<Fetched, SourceError>;
}

/// The data source an argument names.
pub fn parse(arg: &str) -> Result<Box<dyn DataSource>, SourceError> {
    if let Some(rest) = arg.strip_prefix("file://") {
        return Ok(Box::new(local::LocalSource::new(PathBuf::from(rest))));
    }
    if arg.starts_with("http://") || arg.starts_with("https://") {
        return Ok(Box::new(http::HttpSource::parse(arg)?));
    }
    if let Some(rest) = arg.strip_prefix("git+") {
        return Ok(Box::new(git::GitSource::parse(arg, rest)?));
    }
    if let Some((scheme, _)) = arg.split_once("://") {
        return Err(SourceError::UnknownScheme {
            scheme: scheme.to_string(),
        });
    }
    Ok(Box::new(local::LocalSource::new(PathBuf::from(arg))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(arg: &str) -> String {
        match parse(arg) {
            Ok(s) => panic!("{arg} parsed as {}", s.describe()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn schemes_pick_their_source() {
        assert_eq!(parse("/srv/app").unwrap().describe(), "/srv/app");
        assert_eq!(parse("file:///srv/app").unwrap().describe(), "/srv/app");
        assert!(!parse("/srv/app").unwrap().needs_scratch());
        assert_eq!(
            err("http://h/app.tar.gz#sha256=00"),
            "invalid source \"http://h/app.tar.gz#sha256=00\": the sha256 pin must be 64 hex digits"
        );
        let pin = "ab".repeat(32);
        assert!(parse(&format!("https://h/a.tgz#sha256={pin}")).is_ok());
        assert!(parse("git+file:///srv/repo#v1").is_ok());
        assert_eq!(
            err("git+ssh://h/r"),
            "invalid source \"git+ssh://h/r\": git sources are git+file:// or git+http(s)://"
        );
        assert_eq!(
            err("s3://bucket/key"),
            "no data source for s3:// (use a local path, http(s)://, git+file:// or git+https://)"
        );
    }
}
