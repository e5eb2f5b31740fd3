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
