//! What both binaries share: size parsing, logging set-up, signals, and the one-line error
//! exit of DESIGN.md ("error: ..." on stderr, non-zero status; a closed stdout is not an
//! error).

#![allow(dead_code)] // each binary uses a subset

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Parses `1048576`, `256KiB`, `1MiB`, `2GiB`, `64k`, `10MB` (decimal units are powers of
/// ten, binary ones powers of two; single letters are binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 256KiB or 1048576)"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("size {s:?} is too large"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        for (s, v) in [
            ("1048576", 1 << 20),
            ("256KiB", 256 << 10),
            ("1MiB", 1 << 20),
            ("64k", 64 << 10),
            ("2GiB", 2 << 30),
            ("10MB", 10_000_000),
        ] {
            assert_eq!(parse_size(s), Ok(v), "{s}");
        }
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("KiB").is_err());
    }
}
