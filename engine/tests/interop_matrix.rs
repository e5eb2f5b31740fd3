//! The interop matrix (issue 9): instream against the BitTorrent clients people run, every
//! client on its own address in a network namespace, as real hosts are.
//!
//! Cells: each client of `matrix::clients::all()` × both directions (instream-seed seeds to
//! the client; the client seeds to instream-peer) × both trackers (instream-tracker,
//! opentracker), over UDP where the client announces over UDP and HTTP otherwise; plus, per
//! client, one baseline cell (libtorrent seeds the same torrent to the client through
//! instream-tracker), so that a slow instream-seed cell can be told from a slow client: the
//! 0.5 MB/s of transmission and the 2.7 MB/s of aria2 are theirs (transmission declares
//! interest only on its 10 s rechoke pulse and grows its request queue once a second; aria2
//! dials, finishes and exits on 1 s ticks), and the baseline shows the same figures. Then each
//! client again, both directions, on a host with two addresses (its own namespace joined by a
//! veth: it listens on and announces one, and what it does not bind, its dials and most
//! clients' tracker requests, leaves from the other), through instream-tracker run with
//! `--trust-announced-ip` and through opentracker (id suffix `/two-address`). Cells run
//! one after another; a failing cell does not stop the others. The table goes to
//! `<target dir>/interop-matrix.md` and to stderr, then the test fails naming every failing
//! cell.
//!
//! Needs root (ip netns); skips with a message otherwise, fails under CI. Environment:
//! - `INSTREAM_MATRIX_ONLY=aria2,libtorrent/client-seeds` runs only the cells whose id
//!   (`client/instream-seeds|client-seeds|libtorrent-seeds/instream-tracker|opentracker`,
//!   then `/two-address` for those cells) contains one of the comma-separated words;
//! - `INSTREAM_MATRIX_SEED_ARGS`, `INSTREAM_MATRIX_PEER_ARGS`: extra arguments for every
//!   instream-seed / instream-peer (e.g. `--no-super-seed`), to try a flag across clients;
//! - `INSTREAM_MATRIX_CELL_SECS=N` bounds each cell (default 60 s);
//! - `INSTREAM_TEST_ECHO=1` echoes every process's output as it arrives.

mod matrix;
mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use matrix::cell::{self, ALL_IPS, Cell, Direction, Rig};
use matrix::clients;
use matrix::netns::Netns;
use matrix::table::{self, Row};
use matrix::trackers::TrackerKind;

const DEFAULT_CELL_SECS: u64 = 60;

fn cell_timeout() -> Duration {
    let secs = std::env::var("INSTREAM_MATRIX_CELL_SECS")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("INSTREAM_MATRIX_CELL_SECS={v:?} is not a number"))
        })
        .unwrap_or(DEFAULT_CELL_SECS);
    Duration::from_secs(secs)
}

fn selected(id: &str) -> bool {
    match std::env::var("INSTREAM_MATRIX_ONLY") {
        Ok(only) if !only.trim().is_empty() => only
            .split(',')
            .map(str::trim)
            .any(|w| !w.is_empty() && id.contains(w)),
        _ => true,
    }
}

/// The newest modification time of any file under `dir`.
fn newest_in(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.file_type().ok()?.is_dir() {
            newest_in(&e.path())
        } else {
            e.metadata().ok()?.modified().ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// The tracker is the tracker crate's binary, not this package's, so cargo builds it for this
/// test only as part of `cargo test --workspace` (as CI runs it). Say so when the one found
/// next to this test is older than the code it is built from.
fn warn_if_tracker_is_stale() {
    let exe = support::bin("instream-tracker");
    let built = std::fs::metadata(&exe).and_then(|m| m.modified()).ok();
    let root = support::repo_root();
    let sources = ["tracker/src", "engine/proto/src"]
        .iter()
        .filter_map(|d| newest_in(&root.join(d)))
        .max();
    if let (Some(built), Some(sources)) = (built, sources)
        && sources > built
    {
        eprintln!(
            "interop matrix: WARNING: {} is older than tracker/src or engine/proto/src; \
             `cargo build -p instream-tracker` (or run the whole workspace's tests) to \
             test the current tracker",
            exe.display()
        );
    }
}

#[test]
fn instream_interoperates_with_each_client_both_ways_through_both_trackers() {
    if !testkit::needs_root("the interop matrix (a network namespace: ip netns add)") {
        return;
    }
    warn_if_tracker_is_stale();

    let clients = clients::all();
    let mut cells = Vec::new();
    for client in &clients {
        for direction in Direction::ALL {
            for tracker in TrackerKind::ALL {
                // The baseline is libtorrent seeding: one tracker is enough, and libtorrent
                // against itself says nothing about instream.
                if direction == Direction::Baseline
                    && (tracker != TrackerKind::Instream || client.name() == "libtorrent")
                {
                    continue;
                }
                let proto = cell::protocol_for(client.as_ref())
                    .expect("a client that speaks no tracker protocol instream speaks");
                cells.push(Cell {
                    index: cells.len(),
                    client: client.as_ref(),
                    direction,
                    tracker,
                    proto,
                    two_addresses: false,
                });
            }
        }
    }
    // The client on a host with two addresses (listening on one, its unbound sockets leaving
    // from the other), both directions, through instream-tracker (trusting the announced IP)
    // and opentracker.
    for client in &clients {
        for direction in [Direction::InstreamSeeds, Direction::ClientSeeds] {
            for tracker in TrackerKind::ALL {
                let proto = cell::protocol_for(client.as_ref())
                    .expect("a client that speaks no tracker protocol instream speaks");
                cells.push(Cell {
                    index: cells.len(),
                    client: client.as_ref(),
                    direction,
                    tracker,
                    proto,
                    two_addresses: true,
                });
            }
        }
    }
    cells.retain(|c| selected(&c.id()));
    assert!(
        !cells.is_empty(),
        "INSTREAM_MATRIX_ONLY={:?} matches no cell",
        std::env::var("INSTREAM_MATRIX_ONLY").unwrap_or_default()
    );

    // instream-peer is built on first use (another package's binary): before any cell's
    // clock starts, so that a build never eats the first client-seeds cell's time.
    if cells.iter().any(|c| c.direction == Direction::ClientSeeds) {
        support::bin("instream-peer");
    }
    let ns = Netns::create(&ALL_IPS).expect("create the matrix's network namespace");
    let work = support::temp_dir();
    let rig = Rig {
        ns: &ns,
        work: work.path(),
        timeout: cell_timeout(),
    };
    eprintln!(
        "interop matrix: {} cells in namespace {}, at most {:?} each",
        cells.len(),
        ns.name(),
        rig.timeout
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    for c in &cells {
        let t0 = Instant::now();
        let result = match c.client.version() {
            Ok(_) => cell::run(&rig, c),
            Err(e) => Err(cell::Failure {
                reason: e,
                logs: String::new(),
            }),
        };
        match &result {
            Ok(m) => eprintln!(
                "interop matrix: {}: pass, {:.1} MB/s ({:.1} s)",
                c.id(),
                m.mb_per_s(),
                m.secs
            ),
            Err(f) => eprintln!(
                "interop matrix: {}: FAIL after {:.1} s: {}\n{}\n",
                c.id(),
                t0.elapsed().as_secs_f64(),
                f.reason,
                f.logs
            ),
        }
        rows.push(Row {
            id: c.id(),
            client: c
                .client
                .version()
                .unwrap_or_else(|_| c.client.name().into()),
            flow: c.flow(),
            tracker: c.tracker_label(),
            proto: c.proto.name(),
            result,
        });
    }
    drop(ns);

    let text = table::render(&rows);
    let path = table::path();
    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!(
        "interop matrix ({} cells in {:.0} s), written to {}:\n\n{text}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.result
                .as_ref()
                .err()
                .map(|f| format!("{}: {}", r.id, f.reason))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} interop cells failed (each one's logs are above):\n  {}",
        failed.len(),
        rows.len(),
        failed.join("\n  ")
    );
}

/// Found by the matrix: instream-seed's first announce can leave before the seed has
/// published its data check, with `left` = the whole payload; it must still end up counted
/// as a seeder (it stayed a leecher until its next regular announce, 30 minutes later, and a
/// cell waiting for the seed to register timed out about two runs in three). Loopback only:
/// needs no root.
#[test]
fn instream_seed_is_counted_as_a_seeder_even_when_it_announces_before_its_check() {
    let work = support::temp_dir();
    let payload = work.path().join("payload.bin");
    support::write_payload(&payload, 1024 * 1024 + 7, 77);
    let port = support::free_port();
    let torrent = work.path().join("t.torrent");
    support::instream_create(
        &payload,
        "256KiB",
        &[format!("udp://127.0.0.1:{port}/announce")],
        &torrent,
    );
    let bytes = std::fs::read(&torrent).expect("read the torrent");
    let info_hash = proto::metainfo::ValidMetainfo::from_bytes(&bytes)
        .expect("parse the torrent")
        .info_hash();
    let tracker = support::Opentracker::start(port, &[&info_hash.to_hex()]);
    let (_seed, _) = support::instream_serve(&torrent, &payload);

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("set a read timeout");
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], tracker.port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = match matrix::trackers::scrape(&sock, to, &info_hash) {
            Ok(s) if s.seeders >= 1 => return,
            Ok(s) => format!("{} seeders, {} leechers", s.seeders, s.leechers),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "opentracker did not count instream-seed as a seeder within 20 s (scrape: {seen})"
        );
        // A poll interval, not a synchronisation point.
        std::thread::sleep(Duration::from_millis(100));
    }
}
