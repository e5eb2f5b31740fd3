//! What both binaries share: logging set-up, signals, and the one-line error
//! exit of DESIGN.md ("error: ..." on stderr, non-zero status; a closed stdout is not an
//! error).

#![allow(dead_code)] // each binary uses a subset

use std::io::IsTerminal;
use std::process::ExitCode;

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

/// Largest .torrent we accept over HTTP or from disk: piece hashes of a 1 TiB payload at
/// 1 MiB pieces are 20 MiB.
pub const MAX_TORRENT_FILE: u64 = 64 * 1024 * 1024;

/// Reads a .torrent from a path or an `http://` URL.
pub async fn load_torrent(source: &str) -> anyhow::Result<Vec<u8>> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let resp = reqwest::get(source)
            .await
            .with_context(|| format!("fetch {source}"))?;
        if !resp.status().is_success() {
            bail!("fetch {source}: HTTP {}", resp.status());
        }
        if resp.content_length().is_some_and(|l| l > MAX_TORRENT_FILE) {
            bail!("fetch {source}: larger than {MAX_TORRENT_FILE} bytes");
        }
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("fetch {source}"))?;
        if body.len() as u64 > MAX_TORRENT_FILE {
            bail!("fetch {source}: larger than {MAX_TORRENT_FILE} bytes");
        }
        Ok(body.to_vec())
    } else {
        let md = std::fs::metadata(source).with_context(|| format!("read {source}"))?;
        if md.len() > MAX_TORRENT_FILE {
            bail!("read {source}: larger than {MAX_TORRENT_FILE} bytes");
        }
        std::fs::read(source).with_context(|| format!("read {source}"))
    }
}
