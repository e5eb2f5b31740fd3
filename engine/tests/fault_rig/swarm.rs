//! A real swarm for fault tests: one origin (`instream-seed serve`), one `instream-tracker` and
//! N peers (`instream-peer get`), every host in its own network namespace with its own address
//! and a shaped link (instream-bench's [`Topology`], optionally with delay and loss), so a
//! test can kill, restart or starve any of them.
//!
//! Hosts: 0 is the origin, 1 the tracker, 2.. the peers (peer k on host k + 2). Progress is read
//! from the peers' files: a piece is written only once its SHA-1 verified, so a piece whose
//! bytes match the payload is one that peer has and announces.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use instream_bench::harness::delay_line::Impairment;
use instream_bench::harness::topology::{Link, Topology, TopologySpec, host_addr};

use crate::support::{
    PeerSummary, Proc, STARTUP_TIMEOUT, assert_same_file, bin, describe, instream_create,
    listening_in, pieces_matching, temp_dir, tracker_bin, wait_for, write_payload,
};

/// The port every host listens on (each has its own address).
pub const PORT: u16 = 6881;
const ORIGIN: usize = 0;
const TRACKER: usize = 1;

/// How the swarm is built.
#[derive(Clone, Debug)]
pub struct SwarmSpec {
    pub peers: usize,
    pub payload_len: usize,
    pub piece_len: usize,
    /// The origin's upload, Mbit/s (slow, so there is a "mid-download" to act in).
    pub origin_mbit: f64,
    /// Every other host's upload, Mbit/s.
    pub up_mbit: f64,
    /// Every host's download, Mbit/s.
    pub down_mbit: f64,
    pub impair: Option<Impairment>,
    /// Announce over BEP 15 UDP (else HTTP).
    pub udp_tracker: bool,
    /// The origin in super-seed mode (its default), handing out each piece once before any
    /// twice; false runs it with `--no-super-seed`.
    pub super_seed: bool,
}

pub struct Swarm {
    pub spec: SwarmSpec,
    pub payload: Vec<u8>,
    pub torrent: PathBuf,
    pub tracker: Option<Proc>,
    pub origin: Option<Proc>,
    /// Peer k's process (None before it starts).
    pub peers: Vec<Option<Proc>>,
    // Processes above die before the namespaces they run in go.
    pub topo: Topology,
    pub work: tempfile::TempDir,
}

impl Swarm {
    /// Builds the namespaces, the payload and the torrent (announcing to the tracker host);
    /// starts nothing.
    pub fn build(spec: SwarmSpec) -> Swarm {
        let link = Link {
            up_mbit: spec.up_mbit,
            down_mbit: spec.down_mbit,
        };
        let mut topo_spec = TopologySpec::star(spec.peers + 1, 1, link, None);
        topo_spec.hosts[ORIGIN].link.up_mbit = spec.origin_mbit;
        if let Some(imp) = spec.impair {
            topo_spec = topo_spec.impaired(imp);
        }
        let topo = Topology::build(topo_spec).expect("build the swarm's network namespaces");
        let work = temp_dir();
        let src = work.path().join("src/payload.bin");
        let payload = write_payload(&src, spec.payload_len, 10);
        let torrent = work.path().join("t.torrent");
        let scheme = if spec.udp_tracker { "udp" } else { "http" };
        let url = format!("{scheme}://{}:{PORT}/announce", host_addr(TRACKER));
        instream_create(
            &src,
            &format!("{}KiB", spec.piece_len / 1024),
            &[url],
            &torrent,
        );
        let meta =
            instream_engine::meta::TorrentMeta::from_torrent_bytes(&fs::read(&torrent).unwrap())
                .expect("read back the torrent");
        fs::write(
            work.path().join("whitelist.txt"),
            format!("{}\n", meta.info_hash.to_hex()),
        )
        .unwrap();
        Swarm {
            peers: (0..spec.peers).map(|_| None).collect(),
            spec,
            payload,
            torrent,
            tracker: None,
            origin: None,
            topo,
            work,
        }
    }

    fn command(&self, host: usize, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.topo.host_ns(host).name()])
            .arg(program)
            .env("RUST_LOG", "info,instream_engine=debug");
        cmd
    }

    pub fn addr(host: usize) -> SocketAddr {
        SocketAddr::from((host_addr(host), PORT))
    }

    /// Peer k's address.
    pub fn peer_addr(k: usize) -> SocketAddr {
        Self::addr(k + 2)
    }

    /// Starts (or restarts) the tracker on its address and waits until it listens. It tells
    /// clients a 1 s interval, so they re-announce at their own floor (10 s).
    pub fn start_tracker(&mut self) {
        let addr = Self::addr(TRACKER).to_string();
        let mut cmd = self.command(TRACKER, &tracker_bin());
        if self.spec.udp_tracker {
            cmd.args(["--udp", &addr, "--http", "none"]);
        } else {
            cmd.args(["--udp", "none", "--http", &addr]);
        }
        cmd.arg("--whitelist")
            .arg(self.work.path().join("whitelist.txt"))
            .args(["--interval", "1", "--workers", "1"]);
        let mut proc = Proc::spawn("instream-tracker", cmd);
        wait_for(STARTUP_TIMEOUT, "instream-tracker to listen", || {
            if let Some(s) = proc.try_wait() {
                panic!(
                    "instream-tracker exited ({})\n{}",
                    describe(s),
                    proc.output_tail()
                );
            }
            proc.stderr_lines()
                .iter()
                .any(|l| l.contains("tracker listening"))
        });
        self.tracker = Some(proc);
    }

    /// Starts the origin and waits until it listens.
    pub fn start_origin(&mut self) {
        let mut cmd = self.command(ORIGIN, &bin("instream-seed"));
        cmd.arg("serve")
            .arg(&self.torrent)
            .arg("--data")
            .arg(self.work.path().join("src/payload.bin"))
            .arg("--listen")
            .arg(Self::addr(ORIGIN).to_string());
        // Super-seeding is the origin's default.
        if !self.spec.super_seed {
            cmd.arg("--no-super-seed");
        }
        let mut proc = Proc::spawn("origin", cmd);
        wait_for(STARTUP_TIMEOUT, "the origin to listen", || {
            if let Some(s) = proc.try_wait() {
                panic!("origin exited ({})\n{}", describe(s), proc.output_tail());
            }
            listening_in(proc.pid(), PORT)
        });
        self.origin = Some(proc);
    }

    pub fn out_dir(&self, k: usize) -> PathBuf {
        self.work.path().join(format!("peer-{k}"))
    }

    /// Starts peer k: it finds others through the tracker only and seeds until stopped.
    pub fn start_peer(&mut self, k: usize) {
        let mut cmd = self.command(k + 2, &bin("instream-peer"));
        cmd.arg("get")
            .arg(&self.torrent)
            .arg("--out")
            .arg(self.out_dir(k))
            .arg("--listen")
            .arg(Self::peer_addr(k).to_string())
            .args(["--json", "--seed-for", "600"]);
        self.peers[k] = Some(Proc::spawn(&format!("peer-{k}"), cmd));
    }

    pub fn peer(&self, k: usize) -> &Proc {
        self.peers[k].as_ref().expect("peer started")
    }

    /// Which pieces peer k has verified and written, by index.
    pub fn pieces_of(&self, k: usize) -> Vec<bool> {
        let got = fs::read(self.out_dir(k).join("payload.bin")).unwrap_or_default();
        let len = self.spec.piece_len;
        self.payload
            .chunks(len)
            .enumerate()
            .map(|(i, want)| got.get(i * len..i * len + want.len()) == Some(want))
            .collect()
    }

    pub fn num_pieces(&self) -> usize {
        self.payload.len().div_ceil(self.spec.piece_len)
    }

    /// Pieces peer k has, counted.
    pub fn count_of(&self, k: usize) -> usize {
        pieces_matching(
            &self.payload,
            &self.out_dir(k).join("payload.bin"),
            self.spec.piece_len,
        )
    }

    /// Waits until every started peer has every piece; panics after `timeout` with each
    /// peer's count and output.
    pub fn wait_all_complete(&mut self, timeout: Duration) {
        let n = self.num_pieces();
        let started: Vec<usize> = (0..self.spec.peers)
            .filter(|k| self.peers[*k].is_some())
            .collect();
        let what = format!("peers {started:?} to have all {n} pieces");
        wait_for(timeout, &what, || {
            for &k in &started {
                if let Some(s) = self.peers[k].as_mut().unwrap().try_wait() {
                    panic!(
                        "peer-{k} exited ({}) with {} of {n} pieces",
                        describe(s),
                        self.count_of(k)
                    );
                }
            }
            started.iter().all(|&k| self.count_of(k) == n)
        });
    }

    /// Stops every peer (SIGTERM ends its seeding), checks it exits 0 with a complete summary
    /// and a byte-identical payload; returns the summaries.
    pub fn finish_peers(&mut self) -> Vec<PeerSummary> {
        let src = self.work.path().join("src/payload.bin");
        let mut out = Vec::new();
        for k in 0..self.spec.peers {
            let out_file = self.out_dir(k).join("payload.bin");
            let Some(p) = self.peers[k].as_mut() else {
                continue;
            };
            let status = p.terminate(Duration::from_secs(20));
            assert!(
                status.success(),
                "peer-{k} ended with {}\n{}",
                describe(status),
                p.output_tail()
            );
            let summary = PeerSummary::of(p);
            assert_eq!(summary.0["complete"], true, "peer-{k}: {}", summary.0);
            assert_same_file(&src, &out_file);
            out.push(summary);
        }
        out
    }
}

/// `10.77.0.x` of host `i` as it appears in /proc/net/udp: little-endian hex, then the port.
pub fn proc_net_addr(ip: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_le_bytes(ip.octets()))
}

/// True when process `pid` has a UDP socket connected to `to` (its namespace's
/// /proc/PID/net/udp): the way to see that a client has tried a tracker.
pub fn udp_connected_to(pid: u32, to: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = to else {
        return false;
    };
    let needle = proc_net_addr(*v4.ip(), v4.port());
    fs::read_to_string(format!("/proc/{pid}/net/udp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(2) == Some(needle.as_str()))
}
