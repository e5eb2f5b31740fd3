//! `instream-peer get`: fetch a torrent's payload into `--out DIR`, verify every piece, keep
//! seeding for `--seed-for` seconds, and exit 0 only if every piece verified.
//!
//! Output contract: a progress bar on stderr only when stderr is a terminal; with `--json`
//! exactly one summary line on stdout at the end; errors as one `error: ...` line.
//! A restarted `get` into the same directory checks what is there and fetches only the rest.
//!
//! With `--report URL` a bare `get` tells the control server where this host stands, as
//! `deploy` does and through the same reporter (crate::report): `downloading` at the
//! start and then with the verified bytes every `--progress-every`, `verifying` once every
//! piece is in, then `success`, or `failure` with the reason. The events are for
//! `--deployment ID` and `--host NAME` (default: this machine's hostname), authenticated by
//! the token in `--token-file`; the server stores them only if the host is a target of that
//! deployment.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::control::ControlClient;
use crate::report::{HostState, ReportIdentity, Reporter, Transport};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use engine::meta::TorrentMeta;
use engine::session::{
    AddOptions, Session, SessionConfig, TorrentHandle, TorrentState, TorrentStatus,
};
use engine::storage::{self, OpenOptions};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpListener;
use tracing::{debug, info};

#[derive(Parser)]
#[command(
    name = "instream-peer",
    version,
    about = "Fetch a product version from the swarm"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download a torrent's payload, verify it, and seed it for a while.
    Get(GetArgs),
    /// Host agent: bring this host to a product version (fetch, verify, install, activate,
    /// report to the control server); see crate.
    Deploy(crate::DeployArgs),
}

#[derive(clap::Args)]
struct GetArgs {
    /// A .torrent file, or an http(s):// URL of one.
    source: String,
    /// Directory to download into (the payload lands in DIR/<name>).
    #[arg(long)]
    out: PathBuf,
    /// Address to accept peers on (port 0: any free port). A specific IP is also the
    /// source of tracker announces and peer dials, so the tracker lists the address peers
    /// must dial.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// This host's fabric (data center), told to peers; checked here, where it enters.
    #[arg(long)]
    fabric: Option<proto::fabric::FabricName>,
    /// This host's share of the pieces to bring in from other fabrics, `RANK/OF` among the
    /// fabric's hosts (without it, the host takes the rank an instream tracker answers, its
    /// count raised to the same-fabric peers it meets; with no tracker share, it ranks
    /// itself among those peers).
    #[arg(long, value_name = "RANK/OF")]
    fabric_share: Option<proto::picker::FabricShare>,
    /// Keep seeding this many seconds after completion.
    #[arg(long, default_value_t = 0)]
    seed_for: u64,
    /// Control server URL to post this host's status events to (`POST /api/v1/events`,
    /// as `deploy` does): downloading (with bytes), verifying, success or failure with
    /// the reason. Needs --deployment and --token-file.
    // Checked in `start_reporter`, not by clap, whose one-line error would not name them.
    #[arg(long, value_name = "URL")]
    report: Option<String>,
    /// Deployment id the reported events belong to (with --report).
    #[arg(long, value_name = "ID")]
    deployment: Option<String>,
    /// Host name in the reported events (with --report) [default: this machine's
    /// hostname].
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// File holding the control API token (with --report).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA file (PEM) that an https --report server or torrent URL must be signed by; the
    /// only root trusted (required for https).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Seconds between `downloading` events (with --report).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    progress_every: f64,
    /// Seconds undelivered status events are retried before exiting (with --report).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    report_for: u64,
    /// Address trackers should list this host under (behind NAT): sent as `ip=` (HTTP)
    /// and in the BEP 15 IP field (UDP), and never dialled by this host.
    #[arg(long, value_name = "ADDR")]
    announce_ip: Option<IpAddr>,
    /// A peer to connect to; repeatable.
    #[arg(long = "peer")]
    peers: Vec<SocketAddr>,
    /// Print one JSON summary line on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Give up if the download has not completed after this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// Most connections.
    #[arg(long)]
    max_peers: Option<usize>,
    /// Disk I/O back end: `auto` (io_uring where the kernel allows it, else pread/pwrite,
    /// with one log line saying why), `uring` (an error if it cannot work) or `portable`.
    #[arg(long, default_value = "auto", value_name = "auto|uring|portable")]
    io_backend: engine::storage::IoBackend,
    /// Threads running the network and the torrent (1: a single-threaded runtime).
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
    /// Threads for hashing and disk I/O.
    #[arg(long, default_value_t = 2)]
    disk_threads: usize,
    /// Do not announce to the torrent's trackers (use `--peer` only).
    #[arg(long)]
    no_tracker: bool,
    /// MSE/PE: `plaintext` dials plain and accepts both; `prefer` dials encrypted
    /// (retrying plain once); `require` is encrypted (RC4) only, both ways.
    #[arg(
        long,
        default_value = "plaintext",
        value_name = "plaintext|prefer|require"
    )]
    encryption: proto::mse::Policy,
    #[command(flatten)]
    transport: engine::programs::TransportArgs,
}

/// The program: parses `std::env::args`, runs, and returns the exit status.
pub fn main() -> ExitCode {
    engine::allocator::use_one_malloc_arena();
    engine::programs::init_tracing();
    let args = match exit::parse_args::<Cli>().cmd {
        Cmd::Get(args) => args,
        Cmd::Deploy(args) => return exit::exit(deploy(args)),
    };
    let rt = if args.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.worker_threads)
            .enable_all()
            .build()
    };
    exit::exit(
        rt.context("start the runtime")
            .and_then(|rt| rt.block_on(get(args))),
    )
}

/// `deploy`: the host agent; exit 0 only if this host ends up on the version, healthy.
fn deploy(args: crate::DeployArgs) -> anyhow::Result<()> {
    let json = args.agent.json;
    let cfg = args.into_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    let out = rt.block_on(crate::deploy(cfg, engine::programs::shutdown_signal()));
    if json {
        writeln!(std::io::stdout(), "{}", serde_json::to_string(&out)?)
            .context("write the outcome")?;
    } else {
        // The outcome is already reported; a full disk under the log must not make it a
        // panic (exit 101) the dispatcher would count as a crash.
        let _ = writeln!(
            std::io::stderr(),
            "{} {} {} on {}: {} ({} bytes downloaded{}{})",
            out.state,
            out.product,
            out.version,
            out.host,
            out.reason.as_deref().unwrap_or("active"),
            out.bytes_downloaded,
            if out.from_disk { ", from disk" } else { "" },
            match &out.copied_from {
                Some(src) => format!(", payload copied from {src}"),
                None => String::new(),
            }
        );
    }
    match out.reason {
        Some(reason) => bail!("{reason}"),
        None => Ok(()),
    }
}

/// Why the wait for completion ended.
enum Ended {
    Complete,
    Failed(String),
    Signal,
    Timeout,
}

fn progress_bar(total: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .expect("valid template"),
    );
    Some(pb)
}

/// This machine's hostname (the default `--host` of reported events).
fn hostname() -> anyhow::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("read the hostname");
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        bail!("the hostname is empty: pass --host NAME");
    }
    Ok(name)
}

/// The status reporter of `--report`, if asked for.
fn start_reporter(
    args: &GetArgs,
    ca: Option<&engine::https::Ca>,
) -> anyhow::Result<Option<Reporter>> {
    let Some(url) = &args.report else {
        if args.deployment.is_some() || args.host.is_some() || args.token_file.is_some() {
            bail!("--deployment, --host and --token-file go with --report URL");
        }
        return Ok(None);
    };
    let (Some(deployment), Some(token_file)) = (&args.deployment, &args.token_file) else {
        bail!("--report needs --deployment ID and --token-file FILE");
    };
    let token = crate::read_token_file(token_file)?;
    let host = match &args.host {
        Some(h) => h.clone(),
        None => hostname()?,
    };
    debug!(%url, %deployment, %host, "reporting status");
    // Each post gives up quickly so that newer events join the retried batch.
    let client = ControlClient::new(url, &token, Duration::from_secs(2), ca)?;
    Ok(Some(Reporter::start(
        Transport::Http(client),
        ReportIdentity {
            deployment: deployment.clone(),
            host,
            fabric: args
                .fabric
                .clone()
                .map_or_else(|| "default".into(), String::from),
        },
    )))
}

async fn wait_for_completion(
    session: &Session,
    handle: &TorrentHandle,
    timeout: u64,
    reporter: Option<&Reporter>,
    progress_every: Duration,
) -> Ended {
    let bar = progress_bar(handle.meta().lengths.total_len());
    let mut watch = handle.watch();
    let progress = async {
        if let Some(pb) = &bar {
            loop {
                let s = watch.borrow_and_update().clone();
                pb.set_position(s.stats.bytes_have);
                pb.set_message(format!("{} peers", s.stats.peers_connected));
                if watch.changed().await.is_err() {
                    break;
                }
            }
        }
        std::future::pending::<()>().await
    };
    let reports = async {
        let Some(reporter) = reporter else {
            return std::future::pending::<()>().await;
        };
        let mut tick = tokio::time::interval(progress_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last = 0;
        loop {
            tick.tick().await;
            let have = handle.status().stats.bytes_have;
            if have != last {
                last = have;
                reporter.report(HostState::Downloading, have, None);
            }
        }
    };
    let deadline = async {
        if timeout == 0 {
            std::future::pending::<()>().await
        } else {
            tokio::time::sleep(Duration::from_secs(timeout)).await
        }
    };
    let ended = tokio::select! {
        r = handle.wait_complete() => match r {
            Ok(()) => Ended::Complete,
            Err(e) => Ended::Failed(e),
        },
        e = session.failed() => Ended::Failed(e),
        _ = engine::programs::shutdown_signal() => Ended::Signal,
        _ = deadline => Ended::Timeout,
        _ = progress => unreachable!("progress never ends"),
        _ = reports => unreachable!("reports never end"),
    };
    if let Some(pb) = bar {
        pb.set_position(handle.status().stats.bytes_have);
        pb.finish_and_clear();
    }
    ended
}

fn summary(
    handle: &TorrentHandle,
    status: &TorrentStatus,
    transport: engine::net::TransportCounts,
    wall: Duration,
    total: Duration,
    error: Option<&str>,
) -> serde_json::Value {
    let s = &status.stats;
    serde_json::json!({
        "info_hash": handle.info_hash().to_hex(),
        "name": handle.meta().name,
        "complete": matches!(status.state, TorrentState::Seeding),
        "bytes_downloaded": s.bytes_downloaded,
        "bytes_uploaded": s.bytes_uploaded,
        "bytes_wasted": s.bytes_wasted,
        "wall_secs": wall.as_secs_f64(),
        "total_secs": total.as_secs_f64(),
        "peers_seen": s.peers_seen,
        "peers_banned": s.peers_banned,
        "dials": s.dials,
        "own_addresses": s.own_addresses,
        "hash_failures": s.hash_failures,
        "pieces": s.pieces_have,
        "pieces_total": s.pieces_total,
        "pieces_at_start": status.pieces_at_start,
        "quic_connections": transport.quic_connections,
        "quic_fallbacks": transport.quic_fallbacks,
        "error": error,
    })
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let ca = engine::https::load_optional(args.ca.as_deref())?;
    // First, so that a torrent that cannot be fetched or read is reported too.
    let reporter = start_reporter(&args, ca.as_ref())?;
    let result = async {
        let bytes = engine::programs::load_torrent(&args.source, ca.as_ref()).await?;
        let meta = TorrentMeta::from_torrent_bytes(&bytes)
            .with_context(|| format!("read torrent {}", args.source))?;
        fetch(&args, meta, started, reporter.as_ref()).await
    }
    .await;
    if let Some(reporter) = reporter {
        let bytes = result.as_ref().map_or(0, |o| o.bytes);
        match result.as_ref().map(|o| o.error.as_deref()) {
            Ok(None) => reporter.report(HostState::Success, bytes, None),
            Ok(Some(e)) => reporter.report(HostState::Failure, bytes, Some(e.to_string())),
            Err(e) => reporter.report(HostState::Failure, 0, Some(format!("{e:#}"))),
        };
        let unsent = reporter.finish(Duration::from_secs(args.report_for)).await;
        if unsent > 0 {
            tracing::warn!(unsent, "status events not delivered to the control server");
        }
    }
    let outcome = result?;
    if args.json {
        // writeln!, not println!: a closed stdout is a BrokenPipe error (exit 0), not a panic.
        writeln!(std::io::stdout().lock(), "{}", outcome.summary).context("write the summary")?;
    }
    if let Some(e) = outcome.error {
        bail!("{e}");
    }
    Ok(())
}

/// What one `get` ended with.
struct Fetched {
    /// The `--json` summary line.
    summary: serde_json::Value,
    /// Why it failed, if it did.
    error: Option<String>,
    /// Payload bytes verified.
    bytes: u64,
}

async fn fetch(
    args: &GetArgs,
    meta: TorrentMeta,
    started: Instant,
    reporter: Option<&Reporter>,
) -> anyhow::Result<Fetched> {
    if let Some(r) = reporter {
        r.report(HostState::Downloading, 0, None);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("create directory {}", args.out.display()))?;
    let storage = storage::open_with(
        &args.out,
        meta.layout()?,
        OpenOptions::default(),
        args.io_backend,
    )
    .with_context(|| format!("prepare files under {}", args.out.display()))?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind TCP listener {}", args.listen))?;
    let mut config = SessionConfig::default();
    config.torrent.fabric = args.fabric.clone().map(String::from);
    config.torrent.fabric_share = args.fabric_share;
    config.socket.encryption = args.encryption;
    config.disk_threads = args.disk_threads;
    config.announce_ip = args.announce_ip;
    args.transport.apply(&mut config);
    if let Some(m) = args.max_peers {
        config.torrent.max_peers = m;
    }
    let session = Session::start(config, Some(listener)).context("start the session")?;
    info!(listen = ?session.listen_addr(), "listening");
    let handle = session
        .add_torrent(
            meta,
            storage,
            AddOptions {
                peers: args.peers.clone(),
                no_trackers: args.no_tracker,
                ..Default::default()
            },
        )
        .await
        .context("start the download")?;

    let every = Duration::from_secs_f64(args.progress_every.clamp(0.05, 3600.0));
    let ended = wait_for_completion(&session, &handle, args.timeout, reporter, every).await;
    if let (Some(r), Ended::Complete) = (reporter, &ended) {
        // Every piece passed its SHA-1 as it landed; this marks the end of that check.
        r.report(HostState::Verifying, handle.status().stats.bytes_have, None);
    }
    let wall = started.elapsed();
    let mut error = match &ended {
        Ended::Complete => None,
        Ended::Failed(e) => Some(e.clone()),
        Ended::Signal | Ended::Timeout => {
            let s = handle.status();
            Some(format!(
                "{} before completion ({} of {} pieces)",
                if matches!(ended, Ended::Signal) {
                    "interrupted"
                } else {
                    "timed out"
                },
                s.stats.pieces_have,
                s.stats.pieces_total
            ))
        }
    };
    if matches!(ended, Ended::Complete) && args.seed_for > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.seed_for)) => {}
            _ = engine::programs::shutdown_signal() => {}
        }
    }
    let transport = session.transport_counts();
    session.shutdown().await;
    let status = handle.status();
    if error.is_none() && !matches!(status.state, TorrentState::Seeding) {
        error = Some(format!("torrent ended in state {:?}", status.state));
    }
    Ok(Fetched {
        summary: summary(
            &handle,
            &status,
            transport,
            wall,
            started.elapsed(),
            error.as_deref(),
        ),
        error,
        bytes: status.stats.bytes_have,
    })
}
