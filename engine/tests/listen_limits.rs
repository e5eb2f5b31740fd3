//! Issue 15: the engine's listener bounds incoming connections, with real sockets against a
//! real `instream-seed serve`: per source IP (`--max-connections-per-ip`), in total
//! (`--max-connections`), and in handshake time (`--handshake-timeout`). A connection over a
//! cap is closed unanswered; one that never sends its handshake is closed after the timeout.
//! And a torrent at `--max-peers` makes room for a newcomer by evicting its longest-idle
//! peer once it has been connected `--idle-evict-after`.
//! Loopback has the whole 127/8, so clients bind 127.0.0.x to come from different IPs.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use proto::wire::Handshake;
use proto::{InfoHash, PeerId};
use support::*;

fn info_hash(torrent: &Path) -> InfoHash {
    let bytes = std::fs::read(torrent).expect("read the torrent");
    instream_engine::meta::TorrentMeta::from_torrent_bytes(&bytes)
        .expect("parse the torrent")
        .info_hash
}

/// A connection from `from` (a 127.0.0.x address) to `seed`.
fn connect_from(from: [u8; 4], seed: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into())
        .expect("bind a loopback source");
    s.connect(&seed.into()).expect("connect to the seed");
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends a handshake for `ih`; true if the seed answers with its own, false if it closes.
fn handshake(s: &mut TcpStream, ih: InfoHash, n: u8) -> bool {
    let mut hs = Handshake::new(ih, PeerId([n; 20]));
    hs.reserved = [0; 8];
    if s.write_all(&hs.encode()).is_err() {
        return false;
    }
    let mut theirs = [0u8; 68];
    match s.read_exact(&mut theirs) {
        Ok(()) => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the seed neither answered nor closed within 10 s")
        }
        Err(_) => false, // EOF or reset: refused
    }
}

/// True once the seed closed `s` (EOF or reset) within the read timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // bitfield, extension handshake...
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn r15_incoming_connections_are_capped_per_ip_in_total_and_in_handshake_time() {
    let work = temp_dir();
    let data = work.path().join("src/payload.bin");
    write_payload(&data, 1024 * 1024, 15);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let ih = info_hash(&torrent);
    let (mut seed, addr) = instream_serve_with(
        &torrent,
        &data,
        &[
            "--max-connections-per-ip",
            "3",
            "--max-connections",
            "5",
            "--handshake-timeout",
            "1",
            "--max-peers",
            "50",
        ],
        "info",
    );
    // The seed listens before its torrent is routed: retry the first handshake until then.
    let first = wait_for(
        STARTUP_TIMEOUT,
        "the seed to answer a handshake for its torrent",
        || {
            let mut s = connect_from([127, 0, 0, 1], addr);
            handshake(&mut s, ih, 1).then_some(s)
        },
    );
    let mut held = vec![first];
    for n in 2..=3 {
        let mut s = connect_from([127, 0, 0, 1], addr);
        assert!(handshake(&mut s, ih, n), "connection {n} from 127.0.0.1");
        held.push(s);
    }
    let mut fourth = connect_from([127, 0, 0, 1], addr);
    assert!(
        !handshake(&mut fourth, ih, 4),
        "a fourth connection from one IP is refused"
    );
    for n in 5..=6 {
        let mut s = connect_from([127, 0, 0, 2], addr);
        assert!(handshake(&mut s, ih, n), "connection {n} from 127.0.0.2");
        held.push(s);
    }
    let mut sixth = connect_from([127, 0, 0, 3], addr);
    assert!(
        !handshake(&mut sixth, ih, 7),
        "a sixth connection in total is refused"
    );
    // A slot freed is a slot taken again (the seed sees the close asynchronously).
    drop(held.remove(0));
    let again = wait_for(
        Duration::from_secs(10),
        "a freed slot to admit a new connection",
        || {
            let mut s = connect_from([127, 0, 0, 3], addr);
            handshake(&mut s, ih, 8).then_some(s)
        },
    );
    held.push(again);
    drop(held);
    // A connection that never sends its handshake is closed after --handshake-timeout.
    let mut silent = wait_for(
        Duration::from_secs(10),
        "the seed to admit a silent connection",
        || {
            let mut s = connect_from([127, 0, 0, 4], addr);
            // Refused ones close at once; admitted ones stay open past a short read.
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Some(s)
                }
                _ => None,
            }
        },
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        closed(&mut silent),
        "a silent connection outlived the timeout"
    );
    assert!(seed.try_wait().is_none(), "the seed still runs");
}

/// After a handshake: true if the torrent took the peer (it sends its first messages),
/// false if it closed the connection at once (refused).
fn admitted(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(n) => n > 0,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the seed neither spoke nor closed within the read timeout")
        }
        Err(_) => false,
    }
}

#[test]
fn r15_a_full_torrent_evicts_its_longest_idle_peer_for_a_newcomer() {
    let work = temp_dir();
    let data = work.path().join("src/payload.bin");
    write_payload(&data, 1024 * 1024, 16);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let ih = info_hash(&torrent);
    let (mut seed, addr) = instream_serve_with(
        &torrent,
        &data,
        &["--max-peers", "2", "--idle-evict-after", "3"],
        "info",
    );
    let mut first = wait_for(STARTUP_TIMEOUT, "the seed to take a first peer", || {
        let mut s = connect_from([127, 0, 0, 1], addr);
        (handshake(&mut s, ih, 1) && admitted(&mut s)).then_some(s)
    });
    let mut second = connect_from([127, 0, 0, 2], addr);
    assert!(handshake(&mut second, ih, 2) && admitted(&mut second));
    // Both are young: a third is refused. (They stay idle: a seed wants nothing of them,
    // and they never say they are interested.)
    let mut third = connect_from([127, 0, 0, 3], addr);
    assert!(
        !(handshake(&mut third, ih, 3) && admitted(&mut third)),
        "a third peer was taken while both slots were held by young peers"
    );
    // Once they are old enough, a newcomer gets in and the longest-idle (the first) goes.
    let _fourth = wait_for(
        Duration::from_secs(20),
        "a newcomer to take an idle peer's slot",
        || {
            let mut s = connect_from([127, 0, 0, 4], addr);
            (handshake(&mut s, ih, 4) && admitted(&mut s)).then_some(s)
        },
    );
    assert!(closed(&mut first), "the longest-idle peer was not evicted");
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        !closed(&mut second),
        "the younger idle peer was evicted too"
    );
    assert!(seed.try_wait().is_none(), "the seed still runs");
}
