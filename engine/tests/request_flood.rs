//! Issue 15: peers that ask for everything and never read must not grow the seed's memory.
//!
//! Measured before the fix: 80 connections sending 1024 requests of 16 KiB each and never
//! reading took an `instream-seed` from 5 MiB to 1.3 GiB resident. Now each peer holds at most
//! `max_peer_upload_bytes` (4 MiB by default) of block data, being read plus queued to its
//! socket, so `FLOODERS` such peers cost at most `FLOODERS x 4 MiB` over the seed's baseline:
//! the test allows that plus `SLACK` (allocator rounding, per-connection buffers, the honest
//! peer's traffic). Before the fix the same flood held `FLOODERS x 16 MiB` (640 MiB here).
//! Meanwhile an honest `instream-peer` downloads the whole payload from the same seed.
//!
//! Also here, since it speaks the same raw wire: the request-size rule of issue 9 (128 KiB
//! served whole, larger rejected, never a disconnect), and the extension-handshake bounds
//! of issue 15 (over 16 KiB: disconnected; many small ones: ignored, the peer stays).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use proto::wire::{BlockSpec, Handshake, Message};
use proto::{InfoHash, PeerId};
use support::*;

/// Connections that flood and never read.
const FLOODERS: usize = 40;
/// Requests each flooder sends (the old per-peer request limit).
const REQUESTS: u32 = 1024;
const BLOCK: u32 = 16 * 1024;
const PIECE: u32 = 256 * 1024;
/// 32 MiB: room for 2048 distinct blocks, so every flooder can ask for 1024 different ones.
const PAYLOAD: usize = 32 * 1024 * 1024;
/// The seed's default per-peer bound on upload bytes held.
const PER_PEER: u64 = 4 * 1024 * 1024;
/// Allowance above `FLOODERS x PER_PEER` over the baseline.
const SLACK: u64 = 64 * 1024 * 1024;

fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb * 1024
}

fn info_hash(torrent: &Path) -> InfoHash {
    let bytes = std::fs::read(torrent).expect("read the torrent");
    instream_engine::meta::TorrentMeta::from_torrent_bytes(&bytes)
        .expect("parse the torrent")
        .info_hash
}

/// Handshakes (plaintext, no fast bit: requests over the limit are dropped silently), says
/// interested and sends `REQUESTS` requests for distinct blocks (each flooder starting
/// elsewhere); the caller then keeps the socket open without reading.
/// Fails (`Err`) if the seed does not answer the handshake: it listens before its torrent is
/// registered, so the first flooder retries until it is.
fn flood(seed: SocketAddr, ih: InfoHash, n: usize) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(seed)?;
    s.set_read_timeout(Some(STARTUP_TIMEOUT))?;
    let mut id = [b'F'; 20];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    let mut hs = Handshake::new(ih, PeerId(id));
    hs.reserved = [0; 8];
    s.write_all(&hs.encode())?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)?;
    let mut out = bytes::BytesMut::new();
    Message::Interested.encode(&mut out);
    let blocks = (PAYLOAD as u32) / BLOCK;
    let per_piece = PIECE / BLOCK;
    for k in 0..REQUESTS {
        let b = (k + n as u32 * 97) % blocks;
        Message::Request(BlockSpec {
            index: b / per_piece,
            begin: (b % per_piece) * BLOCK,
            len: BLOCK,
        })
        .encode(&mut out);
    }
    s.write_all(&out)?;
    Ok(s)
}

#[test]
fn r15_peers_that_never_read_hold_at_most_their_bound_and_an_honest_peer_completes() {
    let work = temp_dir();
    let data = work.path().join("src/payload.bin");
    write_payload(&data, PAYLOAD, 15);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let ih = info_hash(&torrent);
    // Every flooder comes from 127.0.0.1: lift the per-IP connection cap (32) above them.
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let (mut seed, seed_addr) =
        instream_serve_with(&torrent, &data, &["--max-connections-per-ip", "64"], &log);
    let baseline = vm_rss(seed.pid());

    let first = wait_for(
        STARTUP_TIMEOUT,
        "the seed to answer a handshake for its torrent",
        || flood(seed_addr, ih, 0).ok(),
    );
    let mut flooders = vec![first];
    for n in 1..FLOODERS {
        flooders.push(flood(seed_addr, ih, n).expect("a flooder connects and sends"));
    }

    let out = work.path().join("out");
    let mut honest = Proc::spawn(
        "instream-peer",
        instream_get_cmd(&torrent, &out, &peer_args(&[seed_addr])),
    );
    let mut peak = baseline;
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    // Sample the seed's memory while the honest peer downloads, then a little longer, so the
    // flooders' reads have all landed (each waits only on the disk, not on the flooder).
    let mut after = None;
    loop {
        peak = peak.max(vm_rss(seed.pid()));
        if let Some(s) = seed.try_wait() {
            panic!(
                "instream-seed exited ({})\n{}",
                describe(s),
                seed.output_tail()
            );
        }
        if after.is_none()
            && let Some(status) = honest.try_wait()
        {
            assert!(
                status.success(),
                "the honest peer failed ({})\n{}",
                describe(status),
                honest.output_tail()
            );
            after = Some(Instant::now());
        }
        if after.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the honest peer did not finish within {TRANSFER_TIMEOUT:?}\n{}",
            honest.output_tail()
        );
        std::thread::sleep(Duration::from_millis(50)); // a sampling interval
    }
    assert_same_file(&data, &out.join("payload.bin"));
    let grown = peak.saturating_sub(baseline);
    let bound = FLOODERS as u64 * PER_PEER + SLACK;
    eprintln!(
        "seed VmRSS: baseline {} MiB, peak {} MiB, grew {} MiB (bound {} MiB) with {FLOODERS} flooders",
        baseline >> 20,
        peak >> 20,
        grown >> 20,
        bound >> 20
    );
    assert!(
        grown <= bound,
        "the seed grew {} MiB with {FLOODERS} non-reading peers (bound {} MiB)",
        grown >> 20,
        bound >> 20
    );
    drop(flooders); // held open, unread, until the measurement is over
}

/// Reads one framed message off a blocking stream (bounded by the codec's frame limit).
fn read_message(s: &mut TcpStream, buf: &mut bytes::BytesMut) -> Message {
    use bytes::Buf;
    loop {
        if let Some(n) = Message::check(buf, proto::wire::MAX_MSG_LEN).expect("a valid frame") {
            let mut frame = buf.split_to(n).freeze();
            frame.advance(4);
            return Message::parse(frame).expect("a valid message");
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = s.read(&mut chunk).expect("read from the seed");
        assert!(n > 0, "the seed closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Issue 9: a request of 128 KiB (the most BEP 3 clients send) is answered with the whole
/// 128 KiB, and one of 128 KiB + 1 is rejected (BEP 6) without closing the connection.
#[test]
fn r9_a_128_kib_request_is_answered_whole_and_a_larger_one_rejected() {
    let work = temp_dir();
    let data = work.path().join("src/payload.bin");
    let payload = write_payload(&data, 4 * 1024 * 1024, 9);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let ih = info_hash(&torrent);
    let (_seed, seed_addr) = instream_serve(&torrent, &data);
    let mut s = wait_for(
        STARTUP_TIMEOUT,
        "the seed to answer a handshake for its torrent",
        || {
            let mut s = TcpStream::connect(seed_addr).ok()?;
            s.set_read_timeout(Some(STARTUP_TIMEOUT)).ok()?;
            s.write_all(&Handshake::new(ih, PeerId([b'R'; 20])).encode())
                .ok()?;
            let mut theirs = [0u8; 68];
            s.read_exact(&mut theirs).ok()?;
            Some(s)
        },
    );
    let mut out = bytes::BytesMut::new();
    Message::Interested.encode(&mut out);
    s.write_all(&out).unwrap();
    let mut buf = bytes::BytesMut::new();
    while read_message(&mut s, &mut buf) != Message::Unchoke {}
    let (index, begin, len) = (3u32, 64 * 1024u32, 128 * 1024u32);
    let mut out = bytes::BytesMut::new();
    Message::Request(BlockSpec { index, begin, len }).encode(&mut out);
    Message::Request(BlockSpec {
        index,
        begin: 0,
        len: len + 1,
    })
    .encode(&mut out);
    s.write_all(&out).unwrap();
    let (mut piece, mut rejected) = (None, false);
    while piece.is_none() || !rejected {
        match read_message(&mut s, &mut buf) {
            Message::Piece {
                index: i,
                begin: b,
                data,
            } => piece = Some((i, b, data)),
            Message::Reject(r) => {
                assert_eq!(r.len, len + 1, "only the oversized request is rejected");
                rejected = true;
            }
            _ => {}
        }
    }
    let (i, b, got) = piece.unwrap();
    assert_eq!((i, b, got.len()), (index, begin, len as usize));
    let at = (index * 256 * 1024 + begin) as usize;
    assert!(
        got[..] == payload[at..at + len as usize],
        "the bytes of the payload"
    );
}

/// Connects, handshakes (extension and fast bits set) and returns the stream.
fn handshaken(seed: SocketAddr, ih: InfoHash, id: u8) -> Option<TcpStream> {
    let mut s = TcpStream::connect(seed).ok()?;
    s.set_read_timeout(Some(STARTUP_TIMEOUT)).ok()?;
    s.write_all(&Handshake::new(ih, PeerId([id; 20])).encode())
        .ok()?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).ok()?;
    Some(s)
}

/// Issue 15: a 512 KiB extension handshake (a legal frame, 32 times the 16 KiB bound) closes
/// the connection without being decoded; twenty small ones are taken (four decoded, the rest
/// ignored) and the peer stays: it is still unchoked when it says it is interested.
#[test]
fn r15_an_oversized_extension_handshake_disconnects_and_many_small_ones_are_tolerated() {
    let work = temp_dir();
    let data = work.path().join("src/payload.bin");
    write_payload(&data, 1024 * 1024, 15);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let ih = info_hash(&torrent);
    let (mut seed, seed_addr) = instream_serve(&torrent, &data);
    let mut big = wait_for(
        STARTUP_TIMEOUT,
        "the seed to answer a handshake for its torrent",
        || handshaken(seed_addr, ih, b'B'),
    );
    let mut out = bytes::BytesMut::new();
    Message::Extended {
        id: 0,
        payload: bytes::Bytes::from(vec![b'x'; 512 * 1024]),
    }
    .encode(&mut out);
    let _ = big.write_all(&out); // the seed may close before reading it all
    let mut sink = [0u8; 64 * 1024];
    let closed = loop {
        match big.read(&mut sink) {
            Ok(0) => break true,
            Ok(_) => continue, // its handshake messages, sent before ours arrived
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
            Err(_) => break true, // reset: closed with our bytes unread
        }
    };
    assert!(
        closed,
        "the seed kept a peer that sent a 512 KiB extension handshake"
    );

    let mut small = handshaken(seed_addr, ih, b'S').expect("a second peer connects");
    let mut out = bytes::BytesMut::new();
    for _ in 0..20 {
        Message::Extended {
            id: 0,
            payload: bytes::Bytes::from_static(b"d1:v4:teste"),
        }
        .encode(&mut out);
    }
    Message::Interested.encode(&mut out);
    small.write_all(&out).unwrap();
    let mut buf = bytes::BytesMut::new();
    while read_message(&mut small, &mut buf) != Message::Unchoke {}
    assert!(seed.try_wait().is_none(), "the seed still runs");
}
