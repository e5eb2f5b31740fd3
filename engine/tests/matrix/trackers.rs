//! The two trackers of the matrix, each started per cell inside the namespace on the tracker
//! host's address (UDP and HTTP on one port), serving only the cell's info-hash: ours
//! (`instream-tracker --whitelist`) and Debian's opentracker. A BEP 15 scrape from inside the
//! namespace tells the harness when the seed has registered, so the leecher starts only once
//! the tracker can hand it a peer (no sleeping, no reliance on re-announce intervals).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::Duration;

use proto::tracker::AnnounceEvent;
use proto::tracker::udp::{
    AnnounceKey, AnnounceRequest, ConnectRequest, ConnectionId, NumWant, Request, Response,
    ScrapeRequest, TorrentScrapeStats, TransactionId,
};
use proto::{InfoHash, PeerId};

use super::netns::Netns;
use crate::support::{Proc, STARTUP_TIMEOUT, bin, describe, listening_in, poll_until};

/// How a client talks to a tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// BEP 15.
    Udp,
    /// BEP 3 / BEP 23 (compact).
    Http,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Http => "http",
        }
    }
}

/// Which tracker program serves a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackerKind {
    Instream,
    Opentracker,
}

impl TrackerKind {
    pub const ALL: [TrackerKind; 2] = [TrackerKind::Instream, TrackerKind::Opentracker];

    pub fn name(self) -> &'static str {
        match self {
            TrackerKind::Instream => "instream-tracker",
            TrackerKind::Opentracker => "opentracker",
        }
    }

    /// The announce URL for a tracker on `addr`.
    pub fn url(self, addr: SocketAddrV4, proto: Proto) -> String {
        format!("{}://{addr}/announce", proto.name())
    }
}

/// A tracker process in the namespace.
pub struct Tracker {
    pub proc: Proc,
    addr: SocketAddrV4,
}

impl Tracker {
    /// Starts `kind` on `addr` (UDP and TCP), serving only `info_hash`, and waits until it
    /// listens. `dir` holds its whitelist (and is opentracker's chroot). `trust_announced_ip`
    /// lists peers under their `ip=` / BEP 15 IP field (instream-tracker only).
    pub fn start(
        kind: TrackerKind,
        ns: &Netns,
        addr: SocketAddrV4,
        info_hash: &InfoHash,
        dir: &Path,
        trust_announced_ip: bool,
    ) -> Result<Tracker, String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let wl = dir.join("whitelist.txt");
        fs::write(&wl, format!("{}\n", info_hash.to_hex()))
            .map_err(|e| format!("write {}: {e}", wl.display()))?;
        let cmd = match kind {
            TrackerKind::Instream => {
                let mut cmd = ns.command(bin("instream-tracker"));
                cmd.arg("--udp")
                    .arg(addr.to_string())
                    .arg("--http")
                    .arg(addr.to_string())
                    .arg("--whitelist")
                    .arg(&wl)
                    .args(["--workers", "1"])
                    .env("RUST_LOG", "info");
                if trust_announced_ip {
                    cmd.arg("--trust-announced-ip");
                }
                cmd
            }
            TrackerKind::Opentracker => {
                // It chroots into the dir and drops to `nobody`: the dir and the whitelist
                // must be world-readable, and the whitelist path is read after the chroot.
                set_mode(dir, 0o755)?;
                set_mode(&wl, 0o644)?;
                let mut cmd = ns.command("opentracker");
                let port = addr.port().to_string();
                cmd.arg("-i")
                    .arg(addr.ip().to_string())
                    .args(["-p", &port, "-P", &port])
                    .arg("-d")
                    .arg(dir)
                    .args(["-w", "whitelist.txt"]);
                cmd
            }
        };
        let mut proc = Proc::spawn(kind.name(), cmd);
        let listening = poll_until(STARTUP_TIMEOUT, Duration::from_millis(20), || {
            if let Some(s) = proc.try_wait() {
                return Err(format!(
                    "{} exited ({}) before listening on {addr}\n{}",
                    kind.name(),
                    describe(s),
                    proc.output_tail()
                ));
            }
            Ok(listening_in(proc.pid(), addr.port()).then_some(()))
        })?;
        match listening {
            Some(()) => Ok(Tracker { proc, addr }),
            None => Err(format!(
                "{} did not listen on {addr} within {STARTUP_TIMEOUT:?}\n{}",
                kind.name(),
                proc.output_tail()
            )),
        }
    }

    /// One BEP 15 transaction from `from` inside the namespace.
    fn transact(
        &self,
        ns: &Netns,
        from: Ipv4Addr,
        req: impl FnOnce(ConnectionId) -> Request,
    ) -> Result<Response, String> {
        let sock = ns.udp_socket(SocketAddr::from((from, 0)), Duration::from_millis(500))?;
        transact(&sock, SocketAddr::V4(self.addr), req)
    }

    /// What the tracker counts for `info_hash`, by a BEP 15 scrape sent from `from` inside
    /// the namespace; `Err` says why no answer came.
    pub fn scrape(
        &self,
        ns: &Netns,
        from: Ipv4Addr,
        info_hash: &InfoHash,
    ) -> Result<TorrentScrapeStats, String> {
        let sock = ns.udp_socket(SocketAddr::from((from, 0)), Duration::from_millis(500))?;
        scrape(&sock, SocketAddr::V4(self.addr), info_hash)
    }

    /// The peers the tracker hands out for `info_hash`, asked by an announce from `from` (a
    /// leecher on port 9 that nobody dials back). Only for a failed cell's diagnosis: it adds
    /// the harness to the swarm.
    pub fn peers(
        &self,
        ns: &Netns,
        from: Ipv4Addr,
        info_hash: &InfoHash,
    ) -> Result<Vec<SocketAddr>, String> {
        let req = |connection_id| {
            Request::Announce(AnnounceRequest {
                connection_id,
                transaction_id: TransactionId(3),
                info_hash: *info_hash,
                peer_id: PeerId(*b"-IM0001-matrix-diag-"),
                downloaded: 0,
                left: 1,
                uploaded: 0,
                event: AnnounceEvent::Started,
                ip_address: Ipv4Addr::UNSPECIFIED,
                key: AnnounceKey(1),
                num_want: NumWant(50),
                port: 9,
                url_data: Vec::new(),
            })
        };
        match self.transact(ns, from, req)? {
            Response::Announce(a) => Ok(a
                .peers
                .to_socket_addrs()
                .into_iter()
                .filter(|p| p.ip() != from)
                .collect()),
            other => Err(format!("announce answered with {other:?}")),
        }
    }
}

/// One BEP 15 transaction over `sock` (which has a read timeout): a connect, then `req` with
/// the connection id it returned.
pub fn transact(
    sock: &UdpSocket,
    to: SocketAddr,
    req: impl FnOnce(ConnectionId) -> Request,
) -> Result<Response, String> {
    let ask = |req: Request| -> Result<Response, String> {
        let mut out = Vec::new();
        req.encode(&mut out);
        sock.send_to(&out, to)
            .map_err(|e| format!("send to tracker {to}: {e}"))?;
        let mut buf = [0u8; 1500];
        let (n, _) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer from tracker {to}: {e}"))?;
        Response::parse(&buf[..n], false).map_err(|e| format!("bad answer from {to}: {e}"))
    };
    let connection_id = match ask(Request::Connect(ConnectRequest {
        transaction_id: TransactionId(1),
    }))? {
        Response::Connect(c) => c.connection_id,
        other => return Err(format!("connect answered with {other:?}")),
    };
    ask(req(connection_id))
}

/// A BEP 15 scrape of one torrent over `sock`.
pub fn scrape(
    sock: &UdpSocket,
    to: SocketAddr,
    info_hash: &InfoHash,
) -> Result<TorrentScrapeStats, String> {
    let req = |connection_id| {
        Request::Scrape(ScrapeRequest {
            connection_id,
            transaction_id: TransactionId(2),
            info_hashes: vec![*info_hash],
        })
    };
    match transact(sock, to, req)? {
        Response::Scrape(s) => Ok(s.stats.first().copied().unwrap_or_default()),
        other => Err(format!("scrape answered with {other:?}")),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}
