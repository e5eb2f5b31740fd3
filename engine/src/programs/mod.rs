//! The engine's program `instream-seed` ([`seed`]) as a library entry point, and what it
//! shares with `instream-peer` (in instream-agent): the binaries are one call each, and the
//! `instream` multi-call binary runs them when started under their names (so `instream up`
//! needs one build). The shared part: logging set-up, signals, `--transport`, loading a
//! .torrent. Parsing and the exit contract (one `error: ...` line) are the `exit` crate's.

pub mod seed;

use std::io::IsTerminal;

use anyhow::{Context, bail};

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings only, so pipes stay quiet).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `--transport` and the QUIC keys, shared by `instream-seed serve` and `instream-peer get`.
#[derive(clap::Args, Debug, Clone)]
pub struct TransportArgs {
    /// Transport to instream peers: `tcp` (TCP only), `quic` (dial QUIC first, TCP within a
    /// second if UDP is blocked), `auto` (dial TCP, move a connection to an instream peer in
    /// another named fabric to QUIC when its round trip is 10 ms or more; see
    /// docs/QUIC.md). Other clients always get TCP.
    #[arg(long, default_value = "tcp", value_name = "tcp|quic|auto")]
    pub transport: crate::net::Transport,
    /// PEM certificate of this host for QUIC (with --quic-key and --quic-ca); without them
    /// QUIC uses a fresh self-signed certificate and does not authenticate peers.
    #[arg(long, value_name = "FILE", requires_all = ["quic_key", "quic_ca"])]
    pub quic_cert: Option<std::path::PathBuf>,
    /// PEM private key of --quic-cert.
    #[arg(long, value_name = "FILE", requires_all = ["quic_cert", "quic_ca"])]
    pub quic_key: Option<std::path::PathBuf>,
    /// PEM CA that QUIC peers' certificates must be signed by (both ways).
    #[arg(long, value_name = "FILE", requires_all = ["quic_cert", "quic_key"])]
    pub quic_ca: Option<std::path::PathBuf>,
    /// QUIC congestion control: `cubic` or `bbr` (default: `bbr` under `--transport auto`,
    /// else `cubic`).
    #[arg(long, value_name = "cubic|bbr")]
    pub quic_congestion: Option<crate::net::quic::Congestion>,
}

impl TransportArgs {
    /// Fills the session's transport settings.
    pub fn apply(&self, config: &mut crate::session::SessionConfig) {
        config.transport = self.transport;
        config.quic.congestion = self
            .quic_congestion
            .unwrap_or(self.transport.default_congestion());
        if let (Some(cert), Some(key), Some(ca)) = (&self.quic_cert, &self.quic_key, &self.quic_ca)
        {
            config.quic.identity = crate::net::QuicIdentity::Files {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            };
        }
    }
}

/// Largest .torrent we accept over HTTP or from disk: piece hashes of a 1 TiB payload at
/// 1 MiB pieces are 20 MiB.
pub const MAX_TORRENT_FILE: u64 = 64 * 1024 * 1024;

/// Reads a .torrent from a path or an `http(s)://` URL (https checked against `ca` only).
pub async fn load_torrent(source: &str, ca: Option<&crate::https::Ca>) -> anyhow::Result<Vec<u8>> {
    if source.starts_with("http://") || crate::https::is_https(source) {
        let client = crate::https::client_builder(source, ca)?
            .build()
            .context("build the HTTP client")?;
        let resp = client
            .get(source)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(exit::error_chain(&e)))
            .with_context(|| format!("fetch {source}"))?;
        if !resp.status().is_success() {
            bail!("fetch {source}: HTTP {}", resp.status());
        }
        // Capped on the bytes read: a chunked answer has no Content-Length to check.
        let Some(body) = crate::net::body::read_capped(resp, MAX_TORRENT_FILE as usize)
            .await
            .with_context(|| format!("fetch {source}"))?
        else {
            bail!("fetch {source}: larger than {MAX_TORRENT_FILE} bytes");
        };
        Ok(body.to_vec())
    } else {
        let md = std::fs::metadata(source).with_context(|| format!("read {source}"))?;
        if md.len() > MAX_TORRENT_FILE {
            bail!("read {source}: larger than {MAX_TORRENT_FILE} bytes");
        }
        std::fs::read(source).with_context(|| format!("read {source}"))
    }
}
