//! `instream-seed`: make a torrent (`create`) and seed one or many (`serve`).
//!
//! `serve --data PATH` finds each torrent's payload like this:
//! - a single-file torrent: PATH itself if PATH is a file, else `PATH/<name>`;
//! - a multi-file torrent: `PATH/<name>/...` if that holds the files, else PATH itself is the
//!   torrent's directory (the directory `create` was pointed at, whatever its name).
//!
//! So `create X -o t.torrent` then `serve t.torrent --data X` always works, and a directory
//! of payloads can be served with many torrents and one `--data`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::create::{CreateOptions, create_torrent};
use crate::meta::TorrentMeta;
use crate::session::{AddOptions, Session, SessionConfig};
use crate::storage::{self, FileLayout, Mode, OpenOptions};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing::info;

#[derive(Parser)]
#[command(name = "instream-seed", version, about = "Make torrents and seed them")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: the size of `Serve` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Make a .torrent for a file or a directory.
    Create {
        /// File or directory to describe.
        path: PathBuf,
        /// Piece size, a power of two from 16KiB (e.g. 256KiB, 1MiB); automatic if absent.
        #[arg(long, value_parser = parse_piece_size)]
        piece_size: Option<u32>,
        /// Tracker announce URL (http:// or udp://); repeatable.
        #[arg(long = "tracker")]
        trackers: Vec<String>,
        /// Where to write the .torrent.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// A comment stored in the torrent.
        #[arg(long)]
        comment: Option<String>,
        /// Set the BEP 27 private flag.
        #[arg(long)]
        private: bool,
        /// Hashing threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Seed one or more torrents from existing data.
    Serve {
        /// The .torrent files (or http:// URLs of them).
        #[arg(required_unless_present = "watch")]
        torrents: Vec<String>,
        /// The payload: the file or directory itself, or the directory containing it.
        #[arg(long, required_unless_present = "watch")]
        data: Option<PathBuf>,
        /// Address to accept peers on. A specific IP is also the source of tracker
        /// announces and peer dials, so the tracker lists the address peers must dial.
        #[arg(long, default_value = "0.0.0.0:6881")]
        listen: SocketAddr,
        /// Address trackers should list this seed under (behind NAT): sent as `ip=`
        /// (HTTP) and in the BEP 15 IP field (UDP), and never dialled by this seed.
        #[arg(long, value_name = "ADDR")]
        announce_ip: Option<IpAddr>,
        /// This host's fabric (data center), told to peers; checked here, where it enters.
        #[arg(long)]
        fabric: Option<proto::fabric::FabricName>,
        /// A peer to connect to; repeatable.
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Accepted for scripts written before super-seeding became the default; no effect.
        #[arg(long, conflicts_with = "no_super_seed")]
        super_seed: bool,
        /// Serve like a plain seed (advertise every piece) instead of the default origin
        /// mode, which reveals to each peer a few pieces the swarm has least of (BEP 16-like),
        /// so each piece leaves the origin about once and distinct pieces reach each fabric.
        #[arg(long)]
        no_super_seed: bool,
        /// Trust the data without hashing it first (it was just created from these files).
        #[arg(long)]
        skip_check: bool,
        /// Most connections per torrent (when full, an idle peer makes room for a new one).
        #[arg(long)]
        max_peers: Option<usize>,
        /// Most incoming connections at once over all torrents (default 1024; 0: unlimited).
        #[arg(long, value_name = "N")]
        max_connections: Option<usize>,
        /// Most incoming connections from one IP address (default 32; 0: unlimited).
        #[arg(long, value_name = "N")]
        max_connections_per_ip: Option<usize>,
        /// Seconds an incoming connection has for its handshake (default 10).
        #[arg(long, value_name = "SECS")]
        handshake_timeout: Option<u64>,
        /// When a torrent is at --max-peers, a newcomer takes the slot of a peer idle (no
        /// interest either way, nothing in flight) and connected this long (default 30).
        #[arg(long, value_name = "SECS")]
        idle_evict_after: Option<u64>,
        /// Do not announce to the torrents' trackers.
        #[arg(long)]
        no_tracker: bool,
        /// Disk I/O back end: `auto` (io_uring where the kernel allows it, else pread/pwrite,
        /// with one log line saying why), `uring` (an error if it cannot work) or `portable`.
        #[arg(long, default_value = "auto", value_name = "auto|uring|portable")]
        io_backend: crate::storage::IoBackend,
        /// MSE/PE: `plaintext` dials plain and accepts both; `prefer` dials encrypted
        /// (retrying plain once); `require` is encrypted (RC4) only, both ways.
        #[arg(
            long,
            default_value = "plaintext",
            value_name = "plaintext|prefer|require"
        )]
        encryption: proto::mse::Policy,
        #[command(flatten)]
        transport: super::TransportArgs,
        /// Also seed every version dropped into DIR while running: DIR/<key>/ holds the
        /// payload, DIR/<key>.torrent appears last (by rename); the origin answers with
        /// DIR/<key>.seeding (or DIR/<key>.error) and announces it to the torrent's
        /// trackers. `instream publish` uses this (see crate::origin).
        #[arg(long, value_name = "DIR")]
        watch: Option<PathBuf>,
        /// Serve Prometheus text at http://ADDR/metrics (bytes served and received, peers,
        /// torrents, announces and their errors, pieces that failed verification); port 0
        /// picks one, printed as `metrics http://ADDR/metrics` before `listening ...`.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
}

fn parse_piece_size(s: &str) -> Result<u32, String> {
    let v = crate::size::parse_size(s)?;
    u32::try_from(v).map_err(|_| format!("piece size {s} is too large"))
}

/// The program: parses `std::env::args`, runs, and returns the exit status.
pub fn main() -> ExitCode {
    crate::allocator::use_one_malloc_arena();
    super::init_tracing();
    let cli = exit::parse_args::<Cli>();
    exit::exit(match cli.cmd {
        Cmd::Create {
            path,
            piece_size,
            trackers,
            output,
            comment,
            private,
            threads,
        } => create(
            &path, piece_size, trackers, &output, comment, private, threads,
        ),
        serve_cmd @ Cmd::Serve { .. } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the runtime")
            .and_then(|rt| rt.block_on(serve(serve_cmd))),
    })
}

fn create(
    path: &Path,
    piece_len: Option<u32>,
    trackers: Vec<String>,
    output: &Path,
    comment: Option<String>,
    private: bool,
    threads: usize,
) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    let bytes = create_torrent(
        path,
        &CreateOptions {
            piece_len,
            trackers,
            creation_date: now,
            comment,
            private,
            threads,
        },
    )
    .with_context(|| format!("create a torrent of {}", path.display()))?;
    let meta = TorrentMeta::from_torrent_bytes(&bytes).context("re-read the new torrent")?;
    // Write beside, then rename: a reader never sees half a torrent.
    let tmp = output.with_extension("torrent.part");
    std::fs::write(&tmp, &bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("write {}", output.display()))?;
    info!(info_hash = %meta.info_hash, pieces = meta.lengths.num_pieces(), "torrent written");
    // writeln!, not println!: a closed stdout is a BrokenPipe error (exit 0), not a panic.
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{}", meta.info_hash).context("write the info-hash")?;
    Ok(())
}

/// Where a torrent's payload is under `--data` (see the module header): the storage root and
/// the layout below it.
fn resolve_data(meta: &TorrentMeta, data: &Path) -> anyhow::Result<(PathBuf, FileLayout)> {
    if !meta.multi_file {
        if data.is_file() {
            let name = data
                .file_name()
                .context("data path has no file name")?
                .to_owned();
            let root = data.parent().unwrap_or(Path::new(".")).to_path_buf();
            return Ok((root, FileLayout::single(name, meta.lengths.total_len())?));
        }
        return Ok((data.to_path_buf(), meta.layout()?));
    }
    let first = meta
        .files
        .iter()
        .find(|f| !f.pad)
        .context("torrent has only padding files")?;
    if data.join(&first.path).exists() {
        return Ok((data.to_path_buf(), meta.layout()?));
    }
    let inside = meta.layout_inside().context("multi-file layout")??;
    Ok((data.to_path_buf(), inside))
}

async fn serve(cmd: Cmd) -> anyhow::Result<()> {
    let Cmd::Serve {
        torrents,
        data,
        listen,
        announce_ip,
        fabric,
        peers,
        super_seed: _,
        no_super_seed,
        skip_check,
        max_peers,
        max_connections,
        max_connections_per_ip,
        handshake_timeout,
        idle_evict_after,
        no_tracker,
        io_backend,
        encryption,
        transport,
        watch,
        metrics,
    } = cmd
    else {
        unreachable!("serve called with another command")
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind TCP listener {listen}"))?;
    let metrics_listener = match metrics {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("bind the metrics listener {a}"))?,
        ),
        None => None,
    };
    let mut config = SessionConfig::default();
    config.torrent.fabric = fabric.map(String::from);
    // Origin mode by default: a seed's uplink is the scarcest link in a rollout.
    config.torrent.super_seed = !no_super_seed;
    config.socket.encryption = encryption;
    config.announce_ip = announce_ip;
    transport.apply(&mut config);
    if let Some(m) = max_peers {
        config.torrent.max_peers = m;
    }
    if let Some(n) = max_connections {
        config.listen.max_connections = n;
    }
    if let Some(n) = max_connections_per_ip {
        config.listen.max_per_ip = n;
    }
    if let Some(s) = handshake_timeout {
        config.listen.handshake_timeout = std::time::Duration::from_secs(s.max(1));
    }
    if let Some(s) = idle_evict_after {
        config.torrent.idle_evict_after = std::time::Duration::from_secs(s);
    }
    let session = Session::start(config, Some(listener)).context("start the session")?;
    let addr = session.listen_addr().expect("listening");
    let data = data.unwrap_or_default();
    // Up before the torrents are checked: a scraper sees `checking` rather than nothing.
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let metrics_addr = match metrics_listener {
        Some(l) => {
            let a = l
                .local_addr()
                .context("read the metrics listener's address")?;
            let s = session.clone();
            tokio::spawn(crate::metrics_http::run(
                l,
                crate::metrics_http::Limits::default(),
                move || s.stats_snapshot().to_prometheus("instream_seed"),
                metrics_stop.clone().cancelled_owned(),
            ));
            info!(addr = %a, "serving /metrics");
            Some(a)
        }
        None => None,
    };

    for source in &torrents {
        let bytes = super::load_torrent(source, None).await?;
        let meta = TorrentMeta::from_torrent_bytes(&bytes)
            .with_context(|| format!("read torrent {source}"))?;
        let (root, layout) = resolve_data(&meta, &data)
            .with_context(|| format!("find the data of {source} under {}", data.display()))?;
        let storage = storage::open_with(
            &root,
            layout,
            OpenOptions {
                mode: Mode::ReadOnly,
                ..Default::default()
            },
            io_backend,
        )
        .with_context(|| format!("open the data of {} under {}", meta.name, root.display()))?;
        let name = meta.name.clone();
        let total = meta.lengths.num_pieces();
        let handle = session
            .add_torrent(
                meta,
                storage,
                AddOptions {
                    peers: peers.clone(),
                    assume_complete: skip_check,
                    no_trackers: no_tracker,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("add torrent {source}"))?;
        let have = handle.status().pieces_at_start;
        if have != total {
            bail!(
                "the data of {name} under {} does not match {source}: {have} of {total} pieces verified",
                data.display()
            );
        }
        info!(%name, info_hash = %handle.info_hash(), %addr, "seeding");
    }
    // For scripts that bind port 0: the address, once every torrent is being served.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop the seed.
        let _ = metrics_addr
            .map_or(Ok(()), |m| writeln!(out, "metrics http://{m}/metrics"))
            .and_then(|_| writeln!(out, "listening {addr}"))
            .and_then(|_| out.flush());
    }

    // A panicked torrent task or disk thread ends the seed with an error, not half-served.
    let serving = async {
        match watch {
            Some(dir) => {
                let mut cfg = crate::origin::WatchConfig::new(dir.clone());
                cfg.io_backend = io_backend;
                info!(dir = %dir.display(), %addr, "watching for new versions");
                crate::origin::watch(session.clone(), cfg, super::shutdown_signal())
                    .await
                    .with_context(|| format!("watch {}", dir.display()))
            }
            None => {
                super::shutdown_signal().await;
                Ok(())
            }
        }
    };
    tokio::select! {
        r = serving => r?,
        e = session.failed() => bail!("{e}"),
    }
    info!("shutting down");
    session.shutdown().await;
    metrics_stop.cancel();
    Ok(())
}
