//! One cell of the matrix: one client, one direction, one tracker. Its run, start to end:
//! a fresh payload and torrent (made by `instream-seed create` when instream seeds, by mktorrent
//! when the client does), the tracker serving only that torrent, the seed, a scrape until the
//! tracker counts the seed, the leecher, then the download compared byte for byte.
//!
//! A cell never panics its caller: every failure, including a helper's panic, becomes a
//! [`Failure`] naming what went wrong with the tail of every process's log, so the other cells
//! still run. Every wait is bounded by the cell's deadline.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use proto::InfoHash;
use proto::metainfo::ValidMetainfo;

use super::clients::{self, Client, Done, Host, Running};
use super::netns::Netns;
use super::trackers::{Proto, Tracker, TrackerKind};
use crate::support::{
    describe, instream_create, mktorrent, pieces_matching, poll_until, write_payload,
};

/// The tracker's host.
pub const TRACKER_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// instream's host (seed or peer).
pub const INSTREAM_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
/// The other client's host.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 3);
/// The reference seed's host (libtorrent, in the baseline cells).
pub const REFERENCE_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 4);
/// A two-address client host (its own namespace, [`Netns::create_host`]): where it listens and
/// what it announces...
pub const TWO_ADDR_LISTEN_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 13);
/// ... and where everything it does not bind leaves from (its route's preferred source).
pub const TWO_ADDR_SOURCE_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 14);
/// Where the harness's own scrapes come from (no program listens there).
pub const HARNESS_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 254);
pub const ALL_IPS: [Ipv4Addr; 5] = [TRACKER_IP, INSTREAM_IP, CLIENT_IP, REFERENCE_IP, HARNESS_IP];

/// 32 whole pieces and a short last one: the last piece's length is a case of its own.
pub const PAYLOAD_LEN: usize = 8 * 1024 * 1024 + 12_345;
pub const PIECE_LEN: usize = 256 * 1024;
const PIECE_LOG2: u32 = 18; // mktorrent -l: 2^18 = 256 KiB
const NAME: &str = "payload.bin";

/// Who seeds in a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// instream-seed serves, the client downloads.
    InstreamSeeds,
    /// The client serves, instream-peer downloads.
    ClientSeeds,
    /// The baseline of `InstreamSeeds`: libtorrent serves the same torrent, the client
    /// downloads, so a slow `InstreamSeeds` cell can be told apart from a slow client.
    Baseline,
}

impl Direction {
    pub const ALL: [Direction; 3] = [
        Direction::InstreamSeeds,
        Direction::ClientSeeds,
        Direction::Baseline,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Direction::InstreamSeeds => "instream-seeds",
            Direction::ClientSeeds => "client-seeds",
            Direction::Baseline => "libtorrent-seeds",
        }
    }
}

/// One cell to run.
pub struct Cell<'a> {
    pub index: usize,
    pub client: &'a dyn Client,
    pub direction: Direction,
    pub tracker: TrackerKind,
    pub proto: Proto,
    /// The client's host has two addresses: it listens on (and announces) one, and what it
    /// does not bind (its dials, its tracker requests for most clients) leaves from the
    /// other. instream-tracker then runs with `--trust-announced-ip`.
    pub two_addresses: bool,
}

impl Cell<'_> {
    /// `client/direction/tracker[/two-address]`, what `INSTREAM_MATRIX_ONLY` matches against.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}{}",
            self.client.name(),
            self.direction.id(),
            self.tracker.name(),
            if self.two_addresses {
                "/two-address"
            } else {
                ""
            }
        )
    }

    /// The tracker column: the program, and how it is run when that matters.
    pub fn tracker_label(&self) -> String {
        if self.trusts_announced_ip() {
            format!("{} --trust-announced-ip", self.tracker.name())
        } else {
            self.tracker.name().to_string()
        }
    }

    fn trusts_announced_ip(&self) -> bool {
        self.two_addresses && self.tracker == TrackerKind::Instream
    }

    /// `instream-seed -> aria2` or `aria2 -> instream-peer`.
    pub fn flow(&self) -> String {
        let flow = match self.direction {
            Direction::InstreamSeeds => format!("instream-seed → {}", self.client.name()),
            Direction::ClientSeeds => format!("{} → instream-peer", self.client.name()),
            Direction::Baseline => format!("libtorrent → {} (baseline)", self.client.name()),
        };
        if self.two_addresses {
            format!(
                "{flow} (client: listens on {TWO_ADDR_LISTEN_IP}, sources {TWO_ADDR_SOURCE_IP})"
            )
        } else {
            flow
        }
    }
}

/// The protocol a cell uses with `tracker`: the client's first choice that instream speaks
/// too (both trackers serve UDP and HTTP on one port).
pub fn protocol_for(client: &dyn Client) -> Option<Proto> {
    client
        .protocols()
        .iter()
        .copied()
        .find(|p| clients::INSTREAM_PROTOCOLS.contains(p))
}

/// What a passing cell measured: wall time from the leecher's start to its last verified
/// byte (start-up and announce included), and the payload over that time.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub secs: f64,
}

impl Measured {
    pub fn mb_per_s(&self) -> f64 {
        PAYLOAD_LEN as f64 / 1e6 / self.secs
    }
}

/// Why a cell failed: one line for the table, then the evidence.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub logs: String,
}

impl Failure {
    fn bare(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            logs: String::new(),
        }
    }
}

/// Everything a cell run shares with the others.
pub struct Rig<'a> {
    pub ns: &'a Netns,
    /// Scratch; each cell works in a subdirectory removed when it ends.
    pub work: &'a Path,
    pub timeout: Duration,
}

/// Runs `cell`; never panics.
pub fn run(rig: &Rig, cell: &Cell) -> Result<Measured, Failure> {
    let dir = rig
        .work
        .join(format!("{:02}-{}", cell.index, cell.id().replace('/', "-")));
    let result =
        catch_unwind(AssertUnwindSafe(|| run_in(rig, cell, &dir))).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            let (reason, logs) = msg.split_once('\n').unwrap_or((&msg, ""));
            Err(Failure {
                reason: format!("harness step failed: {reason}"),
                logs: logs.to_string(),
            })
        });
    let _ = fs::remove_dir_all(&dir);
    result
}

/// The processes of a running cell, for the logs of a failure.
struct Procs<'a> {
    tracker: &'a Tracker,
    seed: &'a Running,
    leech: Option<&'a Running>,
}

impl Procs<'_> {
    fn fail(&self, reason: String) -> Failure {
        let mut logs = self.tracker.proc.output_tail();
        for r in std::iter::once(self.seed).chain(self.leech) {
            let _ = write!(logs, "\n{}", r.proc.output_tail());
            for f in &r.logs {
                let _ = write!(logs, "\n{}", file_tail(f, 30));
            }
        }
        Failure { reason, logs }
    }
}

fn file_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- {} (tail) ---\n{}",
        path.display(),
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

fn run_in(rig: &Rig, cell: &Cell, dir: &Path) -> Result<Measured, Failure> {
    let deadline = Instant::now() + rig.timeout;
    let src = dir.join("src");
    let payload = src.join(NAME);
    let expected = write_payload(&payload, PAYLOAD_LEN, 1000 + cell.index as u64);

    // Distinct ports per cell: a socket of the previous cell in TIME_WAIT never collides.
    let port = |base: u16| base + cell.index as u16;
    let tracker_addr = SocketAddrV4::new(TRACKER_IP, port(6900));
    let url = cell.tracker.url(tracker_addr, cell.proto);
    let torrent = dir.join("t.torrent");
    match cell.direction {
        Direction::InstreamSeeds | Direction::Baseline => {
            instream_create(&payload, "256KiB", &[url], &torrent)
        }
        Direction::ClientSeeds => mktorrent(&payload, PIECE_LOG2, Some(&url), &torrent),
    }
    let info_hash = read_info_hash(&torrent)?;
    let tracker = Tracker::start(
        cell.tracker,
        rig.ns,
        tracker_addr,
        &info_hash,
        &dir.join("tracker"),
        cell.trusts_announced_ip(),
    )
    .map_err(Failure::bare)?;

    // A two-address client is a host of its own, for this cell only.
    let own_host = if cell.two_addresses {
        let h = rig
            .ns
            .create_host(
                &format!("c{}", cell.index),
                &[TWO_ADDR_LISTEN_IP, TWO_ADDR_SOURCE_IP],
                TWO_ADDR_SOURCE_IP,
            )
            .map_err(Failure::bare)?;
        Some(h)
    } else {
        None
    };
    let timeout_secs = rig.timeout.as_secs();
    let host = |ns, ip, base, name: &str, second| {
        let d = dir.join(name);
        fs::create_dir_all(&d).expect("create a host dir");
        Host {
            ns,
            addr: SocketAddrV4::new(ip, port(base)),
            second,
            dir: d,
            timeout_secs,
        }
    };
    let instream = host(rig.ns, INSTREAM_IP, 7000, "instream", None);
    let reference = host(rig.ns, REFERENCE_IP, 7200, "reference", None);
    let client = match &own_host {
        Some(ns) => {
            let d = dir.join("client");
            fs::create_dir_all(&d).expect("create a host dir");
            Host {
                ns,
                addr: SocketAddrV4::new(TWO_ADDR_LISTEN_IP, port(7100)),
                second: Some(TWO_ADDR_SOURCE_IP),
                dir: d,
                timeout_secs,
            }
        }
        None => host(rig.ns, CLIENT_IP, 7100, "client", None),
    };
    let out = dir.join("out");
    fs::create_dir_all(&out).expect("create the download dir");

    let mut seed = match cell.direction {
        Direction::InstreamSeeds => clients::instream_seed(&instream, &torrent, &payload),
        Direction::ClientSeeds => cell.client.seed(&client, &torrent, &src),
        Direction::Baseline => clients::reference().seed(&reference, &torrent, &src),
    };
    wait_registered(rig, &tracker, &mut seed, &info_hash, deadline)?;

    let started = Instant::now();
    let mut leech = match cell.direction {
        Direction::InstreamSeeds | Direction::Baseline => {
            cell.client.leech(&client, &torrent, &out)
        }
        Direction::ClientSeeds => clients::instream_peer(&instream, &torrent, &out),
    };
    let downloaded = out.join(NAME);
    let done_at = wait_done(&mut seed, &mut leech, deadline, |_| {
        format!(
            "{}/{} pieces on disk",
            pieces_matching(&expected, &downloaded, PIECE_LEN),
            PAYLOAD_LEN.div_ceil(PIECE_LEN)
        )
    });
    let procs = Procs {
        tracker: &tracker,
        seed: &seed,
        leech: Some(&leech),
    };
    let done_at = done_at.map_err(|r| {
        let seed_addr = match cell.direction {
            Direction::InstreamSeeds => instream.addr,
            Direction::ClientSeeds => client.addr,
            Direction::Baseline => reference.addr,
        };
        let listed = match tracker.peers(rig.ns, HARNESS_IP, &info_hash) {
            Ok(p) => format!("{p:?}"),
            Err(e) => format!("unknown ({e})"),
        };
        procs.fail(format!("{r}; seed at {seed_addr}, tracker lists {listed}"))
    })?;
    compare(&expected, &downloaded).map_err(|r| procs.fail(r))?;
    Ok(Measured {
        secs: done_at.duration_since(started).as_secs_f64().max(1e-3),
    })
}

fn read_info_hash(torrent: &Path) -> Result<InfoHash, Failure> {
    let bytes =
        fs::read(torrent).map_err(|e| Failure::bare(format!("read {}: {e}", torrent.display())))?;
    let meta = ValidMetainfo::from_bytes(&bytes)
        .map_err(|e| Failure::bare(format!("instream cannot read {}: {e}", torrent.display())))?;
    Ok(meta.info_hash())
}

/// Until the tracker counts a seeder for the torrent (the seed has announced).
fn wait_registered(
    rig: &Rig,
    tracker: &Tracker,
    seed: &mut Running,
    info_hash: &InfoHash,
    deadline: Instant,
) -> Result<(), Failure> {
    let mut last = String::from("no scrape answered");
    // One scrape per 100 ms at most: each is a UDP or HTTP round trip to the tracker.
    let registered = poll_until(left(deadline), Duration::from_millis(100), || {
        if let Some(s) = seed.proc.try_wait() {
            return Err(format!(
                "{} exited ({}) before the tracker counted it",
                seed.proc.label(),
                describe(s)
            ));
        }
        last = match tracker.scrape(rig.ns, HARNESS_IP, info_hash) {
            Ok(s) if s.seeders >= 1 => return Ok(Some(())),
            Ok(s) => format!(
                "scrape: {} seeders, {} leechers, {} completed",
                s.seeders, s.leechers, s.completed
            ),
            Err(e) => e,
        };
        Ok(None)
    });
    let reason = match registered {
        Ok(Some(())) => return Ok(()),
        Ok(None) => format!(
            "{} never registered with the tracker within {:?} ({last})",
            seed.proc.label(),
            rig.timeout
        ),
        Err(reason) => reason,
    };
    Err(Procs {
        tracker,
        seed,
        leech: None,
    }
    .fail(reason))
}

/// What is left until `deadline` (zero once it passed: one more poll, then the timeout).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Until the leecher is done; returns when it was seen done. `progress` describes how far
/// it got, for a timeout's message.
fn wait_done(
    seed: &mut Running,
    leech: &mut Running,
    deadline: Instant,
    progress: impl Fn(&Running) -> String,
) -> Result<Instant, String> {
    // Polls at most 50 ms apart: the time seen done is within 50 ms of the real one.
    let done = poll_until(left(deadline), Duration::from_millis(50), || {
        let exited = leech.proc.try_wait();
        match (&leech.done, exited) {
            (Done::Exit, Some(s)) if s.success() => return Ok(Some(Instant::now())),
            (Done::Marker(m), _) if m.exists() => return Ok(Some(Instant::now())),
            (Done::Probe(p), None) if p() == Ok(true) => return Ok(Some(Instant::now())),
            (_, Some(s)) => {
                return Err(format!(
                    "{} exited ({}) with {}",
                    leech.proc.label(),
                    describe(s),
                    progress(leech)
                ));
            }
            (_, None) => {}
        }
        if let Some(s) = seed.proc.try_wait() {
            return Err(format!(
                "{} exited ({}) while {} was downloading: {}",
                seed.proc.label(),
                describe(s),
                leech.proc.label(),
                progress(leech)
            ));
        }
        Ok(None)
    })?;
    done.ok_or_else(|| format!("timed out: {} has {}", leech.proc.label(), progress(leech)))
}

fn compare(expected: &[u8], actual: &Path) -> Result<(), String> {
    let got =
        fs::read(actual).map_err(|e| format!("read the download {}: {e}", actual.display()))?;
    if got == expected {
        return Ok(());
    }
    let first = expected
        .iter()
        .zip(&got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    Err(format!(
        "the download differs: {} bytes instead of {}, first difference at byte {first}",
        got.len(),
        expected.len()
    ))
}
