//! The engine's program `instream-seed` ([`seed`]) as a library entry point, and what it
//! shares with `instream-peer` (in instream-agent): the binaries are one call each, and the
//! `instream` multi-call binary runs them when started under their names (so `instream up`
//! needs one build). The shared part: argument parsing with one-line errors,
//! logging set-up, signals, and the exit contract of docs/ARCHITECTURE.md ("error: ..." on
//! stderr, non-zero status; a closed stdout is not an error).

pub mod seed;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Parses the command line, or exits: `--help`/`--version` print and exit 0; any other
/// problem prints one `error: ...` line (clap's first line, without its usage block) and
/// exits 2, the status clap uses for usage errors.
pub fn parse_args<P: clap::Parser>() -> P {
    match P::try_parse() {
        Ok(p) => p,
        Err(e) => exit_usage(e),
    }
}

/// Prints a clap error the way every instream program does (see [`parse_args`]) and exits.
pub fn exit_usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Help asked for (or a bare command): the full text, as clap prints it.
            let _ = e.print();
            std::process::exit(
                if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                },
            )
        }
        _ => {
            eprintln!("error: {}", usage_error_line(&e));
            std::process::exit(2)
        }
    }
}

/// clap's message without its `error: ` prefix, usage block and tips: one line.
pub fn usage_error_line(e: &clap::Error) -> String {
    // The message may continue on indented lines; usage and tips follow a blank line.
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
        .collect::<Vec<_>>()
        .join(" ");
    match line.strip_prefix("error: ").unwrap_or(&line) {
        "" => "invalid arguments".to_string(),
        l => l.to_string(),
    }
}

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

/// True if the error chain holds a broken pipe (stdout closed by `head` and friends).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Turns `main`'s result into the process exit: one `error: ...` line, or 0.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    /// another named fabric to QUIC when its round trip is 10 ms or more; see README,
    /// QUIC). Other clients always get TCP.
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
            .map_err(|e| anyhow::anyhow!(crate::https::error_chain(&e)))
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
