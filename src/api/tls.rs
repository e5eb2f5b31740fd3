//! TLS on the control API: a rustls (ring) server config from PEM files (`serve --tls-cert
//! FILE --tls-key FILE`), and the handshake as the first part of a connection's header
//! budget, so that a client too slow to finish it holds its connection slot no longer
//! than one too slow to send its headers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The certificate and key files of the server.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM: the server's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read TLS certificate {path}")]
    Cert {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate {path} holds no \"BEGIN CERTIFICATE\" block")]
    NoCert { path: String },
    #[error("read TLS key {path}")]
    Key {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("use TLS key {key} with certificate {cert}")]
    Config {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// Reads the files and builds the acceptor (TLS 1.2 and 1.3, ring, HTTP/1.1 by ALPN).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key {
        path: key_path.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|source| TlsError::Config {
            cert: cert_path,
            key: key_path,
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = || path.display().to_string();
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: shown(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert { path: shown() });
    }
    Ok(chain)
}

/// The TLS handshake of `stream`, bounded by `budget`; `None` (logged) if it failed or was
/// too slow, with how much of `budget` is left otherwise.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    budget: Duration,
    peer: std::net::SocketAddr,
) -> Option<(TlsStream<TcpStream>, Duration)> {
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(budget, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some((tls, budget.saturating_sub(started.elapsed()))),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, secs = budget.as_secs(), "TLS handshake not finished in the header timeout");
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Files(#[from] TlsError),
    #[error("read CA file {path}")]
    Ca {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{host} is not a name a certificate can be for")]
    Name { host: String },
    #[error("CA file {ca} does not verify certificate {cert} for {host}")]
    Refused {
        ca: String,
        cert: String,
        host: String,
        #[source]
        source: Box<rustls::Error>,
    },
}

/// Checks that a client trusting only `ca` accepts the certificate of `files` for `host`,
/// as the agents will: a server whose agents could not reach it would only learn so from
/// report deadlines, much later.
pub fn check_chain(files: &TlsFiles, ca: &Path, host: &str) -> Result<(), ChainError> {
    use rustls::client::danger::ServerCertVerifier;
    let chain = read_chain(&files.cert)?;
    let ca_err = |source| ChainError::Ca {
        path: ca.display().to_string(),
        source,
    };
    let refused = |source| ChainError::Refused {
        ca: ca.display().to_string(),
        cert: files.cert.display().to_string(),
        host: host.to_string(),
        source: Box::new(source),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(ca_err)? {
        roots.add(cert.map_err(ca_err)?).map_err(refused)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| refused(rustls::Error::General(e.to_string())))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
        ChainError::Name {
            host: host.to_string(),
        }
    })?;
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(refused)?;
    Ok(())
}

/// The host of an `https://HOST[:PORT][/...]` URL (brackets of an IPv6 address removed).
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://127.0.0.1:7070"), "127.0.0.1");
        assert_eq!(url_host("https://[::1]:7070/x"), "::1");
        assert_eq!(url_host("https://control.example/api"), "control.example");
    }

    #[test]
    fn a_certificate_is_checked_against_the_agents_ca_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let ours = crate::up::ca::make(&dir.path().join("a")).unwrap();
        let other = crate::up::ca::make(&dir.path().join("b")).unwrap();
        let files = TlsFiles {
            cert: ours.cert.clone(),
            key: ours.key.clone(),
        };
        check_chain(&files, &ours.ca, "127.0.0.1").unwrap();
        check_chain(&files, &ours.ca, "localhost").unwrap();
        let e = check_chain(&files, &other.ca, "127.0.0.1").unwrap_err();
        assert!(matches!(e, ChainError::Refused { .. }), "{e}");
        let e = check_chain(&files, &ours.ca, "10.1.2.3").unwrap_err();
        assert!(matches!(e, ChainError::Refused { .. }), "{e}");
    }
}
