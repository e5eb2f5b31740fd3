//! The local CA of `instream up`: a CA certificate and a server certificate it signs for
//! 127.0.0.1, ::1 and localhost, made fresh for each run (rcgen, ECDSA P-256, ring), so the
//! embedded installation is TLS end to end with nothing to configure. The CLI and the
//! agents trust this CA only; its key never leaves the process that made it (nothing else
//! is ever signed by it).

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// A CA and one server certificate, PEM.
pub struct Generated {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// The server certificate, signed by the CA.
    pub cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub key_pem: String,
}

/// A fresh CA named `name` and a server certificate for `hosts` (IP addresses or DNS
/// names) signed by it.
pub fn generate(name: &str, hosts: &[&str]) -> Result<Generated> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.distinguished_name.push(DnType::CommonName, name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().context("generate the CA key")?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).context("sign the CA")?;

    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let mut params = CertificateParams::new(names).context("server certificate parameters")?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} server"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().context("generate the server key")?;
    let cert = params
        .signed_by(&key, &*ca)
        .context("sign the server certificate")?;
    Ok(Generated {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Where `up` keeps its CA and server certificate (all 0600).
pub struct LocalCa {
    /// The CA certificate: `--ca` of the CLI and the agents.
    pub ca: PathBuf,
    /// The server certificate: `serve --tls-cert`.
    pub cert: PathBuf,
    /// Its key: `serve --tls-key`.
    pub key: PathBuf,
}

/// Makes a CA and a loopback server certificate in `dir` (created if missing).
pub fn make(dir: &Path) -> Result<LocalCa> {
    // A name of its own: a client holding another run's CA is told "UnknownIssuer", not
    // "BadSignature" (same issuer name, other key).
    let name = format!(
        "instream up local CA {}",
        hex::encode(rand::random::<[u8; 4]>())
    );
    let g = generate(&name, &["127.0.0.1", "::1", "localhost"])?;
    let out = LocalCa {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    for (path, text) in [
        (&out.ca, &g.ca_pem),
        (&out.cert, &g.cert_pem),
        (&out.key, &g.key_pem),
    ] {
        crate::cli::config::write_private(path, text)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_is_signed_by_the_ca_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let ca = make(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in [&ca.ca, &ca.cert, &ca.key] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        engine::https::Ca::load(&ca.ca).unwrap();
        crate::api::tls::acceptor(&crate::api::tls::TlsFiles {
            cert: ca.cert.clone(),
            key: ca.key.clone(),
        })
        .unwrap();
        let g = generate("other", &["localhost"]).unwrap();
        assert_ne!(g.ca_pem, std::fs::read_to_string(&ca.ca).unwrap());
    }
}
