//! HTTPS for instream's clients of the control API (the host agent, `instream-peer get
//! --report` and torrents fetched by URL, the operator CLI): the only trust root is the CA
//! file the operator names with `--ca FILE`. No system or bundled roots, so a certificate
//! that this CA did not sign is refused, whoever else signed it. rustls with ring: no
//! OpenSSL, no aws-lc.
//!
//! An `https://` URL without a CA is an error here, before any request, so that it reads
//! as one line naming the flag rather than as a handshake failure later.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A CA file that could not be used, or an https URL without one.
#[derive(Debug, Error)]
pub enum CaError {
    /// The file could not be read.
    #[error("read CA file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has no usable PEM certificate.
    #[error("CA file {path}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An https URL and no CA to check the server's certificate with.
    #[error("{url} is https: pass --ca FILE (the CA that signed the server's certificate)")]
    Missing {
        /// The URL.
        url: String,
    },
}

/// The certificates of a CA file (PEM, one or more), checked once when loaded.
#[derive(Clone, Debug)]
pub struct Ca {
    path: PathBuf,
    certs: Vec<reqwest::Certificate>,
}

impl Ca {
    /// Reads and checks `path`: it must hold at least one PEM certificate that rustls
    /// accepts as a trust anchor.
    pub fn load(path: &Path) -> Result<Self, CaError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| CaError::Read {
            path: shown.clone(),
            source,
        })?;
        let invalid = |detail: String| CaError::Invalid {
            path: shown.clone(),
            detail,
        };
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| invalid(format!("not PEM ({e})")))?;
        if certs.is_empty() {
            return Err(invalid("no \"BEGIN CERTIFICATE\" block in it".into()));
        }
        let ca = Self {
            path: path.to_path_buf(),
            certs,
        };
        // Building a client parses every certificate into the root store: a broken one
        // fails here, naming the file, instead of on the first request.
        ca.apply(reqwest::Client::builder())
            .build()
            .map_err(|e| invalid(exit::error_chain(&e)))?;
        Ok(ca)
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        self.certs.iter().fold(
            builder.use_rustls_tls().tls_built_in_root_certs(false),
            |b, c| b.add_root_certificate(c.clone()),
        )
    }
}

/// Loads `--ca FILE` if given.
pub fn load_optional(path: Option<&Path>) -> Result<Option<Ca>, CaError> {
    path.map(Ca::load).transpose()
}

/// Whether `url` needs TLS.
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// Fails for an https `url` without a CA.
pub fn require_ca_for(url: &str, ca: Option<&Ca>) -> Result<(), CaError> {
    if is_https(url) && ca.is_none() {
        return Err(CaError::Missing {
            url: url.to_string(),
        });
    }
    Ok(())
}

/// A client builder for requests to `url`: trusting only `ca`'s certificates, and an
/// error for an https `url` without a CA.
pub fn client_builder(url: &str, ca: Option<&Ca>) -> Result<reqwest::ClientBuilder, CaError> {
    require_ca_for(url, ca)?;
    let builder = reqwest::Client::builder();
    Ok(match ca {
        Some(ca) => ca.apply(builder),
        None => builder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_needs_a_ca_and_http_does_not() {
        assert!(is_https("HTTPS://h:1/x"));
        assert!(!is_https("http://h:1/x"));
        let e = client_builder("https://h:1", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "https://h:1 is https: pass --ca FILE (the CA that signed the server's certificate)"
        );
        assert!(client_builder("http://h:1", None).is_ok());
    }

    #[test]
    fn unusable_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = Ca::load(&missing).unwrap_err();
        assert!(matches!(e, CaError::Read { .. }), "{e}");
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let e = Ca::load(&text).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("CA file {}: ", text.display())),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Ca::load(&junk).unwrap_err();
        assert!(matches!(e, CaError::Invalid { .. }), "{e}");
    }
}
