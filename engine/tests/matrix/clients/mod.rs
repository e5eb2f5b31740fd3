//! The BitTorrent programs of the matrix: the other clients, one [`Client`] each, and
//! instream's own seed and peer. Adding a client is one file here with a `Client` impl (how it
//! seeds, how it leeches, the tracker protocols it can use, its closed-network flags) and one
//! line in [`all`].
//!
//! Every program runs inside the namespace bound to its host's own address and port, with
//! DHT, local discovery, PEX, UPnP/NAT-PMP and uTP off, so it can find the other side only
//! through the cell's tracker, over TCP.

mod aria2;
mod ctorrent;
mod libtorrent;
mod qbittorrent;
mod rtorrent;
mod transmission;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use super::netns::Netns;
use super::trackers::Proto;
use crate::support::{Proc, bin};

/// One host of a cell: where a program runs and what it may write.
pub struct Host<'a> {
    pub ns: &'a Netns,
    /// Its own address (a /32 on the namespace's lo) and the port it accepts peers on.
    pub addr: SocketAddrV4,
    /// A two-address host's other address: where what the client does not bind to `addr`
    /// leaves from. A client that can bind its dials apart from its listener dials from it.
    pub second: Option<Ipv4Addr>,
    /// Scratch for its config and logs; exists.
    pub dir: PathBuf,
    /// Deadline for the whole cell, for programs that take a timeout of their own.
    pub timeout_secs: u64,
}

impl Host<'_> {
    pub fn ip(&self) -> Ipv4Addr {
        *self.addr.ip()
    }
}

/// How the harness sees that a leecher has the whole payload.
pub enum Done {
    /// The process exits 0 when it has everything (non-zero: failure).
    Exit,
    /// The client's on-completion hook creates this file; the process keeps running.
    Marker(PathBuf),
    /// Asked of the client itself (its Web API): `Ok(true)` once it has everything, `Err`
    /// when it cannot answer (the harness retries until the cell's deadline).
    Probe(Box<dyn Fn() -> Result<bool, String>>),
}

/// A running seed or leecher.
pub struct Running {
    pub proc: Proc,
    pub done: Done,
    /// Log files the program writes besides its stdout/stderr, tailed on failure.
    pub logs: Vec<PathBuf>,
}

impl Running {
    pub fn exits(proc: Proc) -> Running {
        Running {
            proc,
            done: Done::Exit,
            logs: Vec::new(),
        }
    }
}

/// Another BitTorrent client, as the matrix drives it.
pub trait Client {
    /// Short name for the table and for `INSTREAM_MATRIX_ONLY` (e.g. `aria2`).
    fn name(&self) -> &'static str;
    /// Name and version for the table (e.g. `aria2 1.36.0`); `Err` if it is not installed,
    /// naming the Debian package.
    fn version(&self) -> Result<String, String>;
    /// Tracker protocols it can announce over, preferred first.
    fn protocols(&self) -> &'static [Proto];
    /// Seeds `torrent` from `data_dir` (the payload, named as in the torrent, is inside).
    fn seed(&self, host: &Host, torrent: &Path, data_dir: &Path) -> Running;
    /// Downloads `torrent` into `out_dir` (the payload lands in `out_dir/<name>`).
    fn leech(&self, host: &Host, torrent: &Path, out_dir: &Path) -> Running;
}

/// Every client the matrix tries, in table order.
pub fn all() -> Vec<Box<dyn Client>> {
    vec![
        Box::new(libtorrent::Libtorrent),
        Box::new(aria2::Aria2),
        Box::new(transmission::Transmission),
        Box::new(rtorrent::Rtorrent),
        Box::new(qbittorrent::Qbittorrent),
        Box::new(ctorrent::Ctorrent),
    ]
}

/// The seed of the baseline cells.
pub fn reference() -> Box<dyn Client> {
    Box::new(libtorrent::ReferenceSeed)
}

/// Tracker protocols instream's client speaks.
pub const INSTREAM_PROTOCOLS: &[Proto] = &[Proto::Udp, Proto::Http];

fn rust_log() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())
}

/// `instream-seed serve` on the host's address; announces to the torrent's tracker.
pub fn instream_seed(host: &Host, torrent: &Path, data: &Path) -> Running {
    let mut cmd = host.ns.command(bin("instream-seed"));
    cmd.arg("serve")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(host.addr.to_string())
        .args(extra_args("INSTREAM_MATRIX_SEED_ARGS"))
        .env("RUST_LOG", rust_log());
    Running::exits(Proc::spawn("instream-seed", cmd))
}

/// `instream-peer get` on the host's address; finds peers through the torrent's tracker only
/// and exits 0 once the payload is verified.
pub fn instream_peer(host: &Host, torrent: &Path, out: &Path) -> Running {
    let mut cmd = host.ns.command(bin("instream-peer"));
    cmd.arg("get")
        .arg(torrent)
        .arg("--out")
        .arg(out)
        .arg("--listen")
        .arg(host.addr.to_string())
        .args(["--json", "--seed-for", "0"])
        .arg("--timeout")
        .arg(host.timeout_secs.to_string())
        .args(extra_args("INSTREAM_MATRIX_PEER_ARGS"))
        .env("RUST_LOG", rust_log());
    Running::exits(Proc::spawn("instream-peer", cmd))
}

/// Extra arguments from the environment, split on whitespace (for trying a flag across the
/// matrix, e.g. `INSTREAM_MATRIX_SEED_ARGS=--no-super-seed`).
fn extra_args(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The first line of `program --version`-style output, or why it cannot run.
fn first_line_of(program: &str, args: &[&str], package: &str) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e} (install Debian {package})"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if out.status.success() {
        Ok(first)
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            text.trim()
        ))
    }
}
