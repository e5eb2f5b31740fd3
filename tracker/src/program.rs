//! `instream-tracker [--udp ADDR] [--http ADDR] [--fabric-map FILE] [--whitelist FILE | --open]`
//!
//! The program as a library entry point ([`main`]): the `instream-tracker` binary is one
//! call to it, and the `instream` multi-call binary runs it when started under that name.
//! Parses flags over the optional `--config` file, binds, and runs the library tracker
//! until SIGINT/SIGTERM; SIGHUP re-reads the whitelist. Exits with one `error: ...` line.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{Config, Tracker, bind, config::DEFAULT_CONFIG_TOML};
use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// BitTorrent tracker (BEP 15 UDP, BEP 3 HTTP) with fabric-aware peer lists.
#[derive(Debug, Parser)]
#[command(name = "instream-tracker", version)]
struct Args {
    /// UDP listen address (repeatable; `none` disables UDP). Default 0.0.0.0:6969.
    #[arg(long, value_name = "ADDR")]
    udp: Vec<String>,
    /// HTTP listen address (repeatable; `none` disables HTTP). Default 0.0.0.0:6969.
    #[arg(long, value_name = "ADDR")]
    http: Vec<String>,
    /// CIDR -> fabric file (`10.1.0.0/16 dc1` per line) for peers that do not send fabric=.
    #[arg(long, value_name = "FILE")]
    fabric_map: Option<PathBuf>,
    /// Hex info-hashes to serve, one per line; re-read on SIGHUP.
    #[arg(long, value_name = "FILE", conflicts_with = "open")]
    whitelist: Option<PathBuf>,
    /// Serve every info-hash.
    #[arg(long)]
    open: bool,
    /// Bearer token file for POST /register and /unregister (or INSTREAM_TRACKER_TOKEN).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// UDP worker threads (0: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Cross-fabric peers per reply to a peer of known fabric.
    #[arg(long, value_name = "N")]
    bridges: Option<u32>,
    /// Announce interval told to clients, in seconds.
    #[arg(long, value_name = "SECS")]
    interval: Option<u32>,
    /// Most peers per torrent; a new peer beyond it is refused (default 50000; 0: unlimited).
    #[arg(long, value_name = "N")]
    max_peers_per_torrent: Option<u32>,
    /// Most fabrics per torrent and address family (default 1024; 0: unlimited).
    #[arg(long, value_name = "N")]
    max_fabrics_per_torrent: Option<u32>,
    /// List peers under the address they announce (`ip=`, the BEP 15 IP field) rather
    /// than their source address, for peers behind NAT (`--announce-ip`). The listing
    /// stays owned by the source address: no other source can change or remove it.
    #[arg(long)]
    trust_announced_ip: bool,
    /// TOML configuration file (see --print-config); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the commented default configuration and exit.
    #[arg(long)]
    print_config: bool,
}

fn addrs(values: &[String], what: &str) -> Result<Vec<SocketAddr>> {
    if values.iter().any(|v| v == "none") {
        if values.len() > 1 {
            bail!("--{what} none cannot be combined with addresses");
        }
        return Ok(Vec::new());
    }
    values
        .iter()
        .map(|v| {
            v.parse()
                .with_context(|| format!("parse --{what} address {v:?}"))
        })
        .collect()
}

fn settings(args: &Args) -> Result<Config> {
    let mut config: Config = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("read config file {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parse config file {}", p.display()))?
        }
        None => Config::default(),
    };
    if !args.udp.is_empty() {
        config.udp.listen = addrs(&args.udp, "udp")?;
    }
    if !args.http.is_empty() {
        config.http.listen = addrs(&args.http, "http")?;
    }
    if let Some(p) = &args.fabric_map {
        config.fabric.map = Some(p.clone());
    }
    if let Some(p) = &args.whitelist {
        config.access.whitelist = Some(p.clone());
        config.access.open = false;
    }
    if args.open {
        config.access.open = true;
        config.access.whitelist = None;
    }
    if let Some(p) = &args.admin_token_file {
        config.access.admin_token_file = Some(p.clone());
    }
    if let Some(n) = args.workers {
        config.udp.workers = n;
    }
    if let Some(n) = args.bridges {
        config.fabric.bridges = n;
    }
    if let Some(n) = args.interval {
        config.swarm.announce_interval_secs = n;
    }
    if let Some(n) = args.max_peers_per_torrent {
        config.swarm.max_peers_per_torrent = n;
    }
    if let Some(n) = args.max_fabrics_per_torrent {
        config.swarm.max_fabrics_per_torrent = n;
    }
    if args.trust_announced_ip {
        config.udp.trust_ip_field = true;
        config.http.trust_ip_param = true;
    }
    if config.udp.listen.is_empty() && config.http.listen.is_empty() {
        bail!("nothing to serve: both --udp and --http are none");
    }
    Ok(config)
}

fn run(args: Args) -> Result<()> {
    if args.print_config {
        print!("{DEFAULT_CONFIG_TOML}");
        return Ok(());
    }
    let config = settings(&args)?;
    let env_token = std::env::var("INSTREAM_TRACKER_TOKEN").ok();
    let tracker = Tracker::new(config.clone(), env_token).context("load tracker state")?;
    if !config.access.open && config.access.whitelist.is_none() {
        tracing::warn!(
            "no --whitelist and not --open: only info-hashes registered through the admin API are served"
        );
    }
    let listeners = bind(&config).context("bind listeners")?;
    for a in listeners.udp_addrs() {
        tracing::info!(addr = %a, "UDP tracker listening");
    }
    for a in listeners.http_addrs() {
        tracing::info!(addr = %a, "HTTP tracker listening");
    }
    let handle = tracker.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .context("start the tokio runtime")?;
    rt.block_on(async move {
        let mut hup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
        let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
        let reload = handle.clone();
        let reloader = tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reload.reload_whitelist() {
                    Ok(n) => tracing::info!(hashes = n, "whitelist reloaded"),
                    Err(e) => tracing::error!(error = %anyhow::Error::from(e), "whitelist reload failed; keeping the old one"),
                }
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
        };
        let r = tracker.run(listeners, shutdown).await;
        reloader.abort();
        r.context("run the tracker")
    })
}

/// The program: parses `std::env::args`, runs, and returns the exit status.
pub fn main() -> std::process::ExitCode {
    let args = exit::parse_args::<Args>();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    exit::exit(run(args))
}
