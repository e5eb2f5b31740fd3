//! Issue 9: aria2c 1.36, downloading from `instream-seed`, sends have-none, then `have`s, then
//! from time to time a full bitfield again. instream used to close the connection on the
//! second bitfield ("second bitfield") and the download stalled; now the new bitfield
//! replaces the old piece set and aria2c finishes, byte for byte.
//!
//! aria2c finds the seed through opentracker over HTTP (its UDP tracker client needs DHT).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use support::*;

fn info_hash(torrent: &Path) -> proto::InfoHash {
    let bytes = std::fs::read(torrent).expect("read the torrent");
    instream_engine::meta::TorrentMeta::from_torrent_bytes(&bytes)
        .expect("parse the torrent")
        .info_hash
}

/// True once opentracker's HTTP scrape counts a peer (the seed) for `ih`.
fn tracker_has_seed(port: u16, ih: &proto::InfoHash) -> bool {
    let escaped: String = ih.0.iter().map(|b| format!("%{b:02x}")).collect();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let req = format!("GET /scrape?info_hash={escaped} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    // Any peer counts: the seed may announce `left` > 0 in its first announce.
    let count = |key: &str| {
        text.split(key)
            .nth(1)
            .and_then(|rest| rest.split('e').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    count("8:completei") + count("10:incompletei") > 0
}

#[test]
fn r9_aria2c_downloads_from_instream_seed() {
    let work = temp_dir();
    let data = work.path().join("src/payload.bin");
    // Enough pieces that aria2c announces many of them before it repeats its bitfield.
    write_payload(&data, 24 * 1024 * 1024 + 4321, 9);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/announce");
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", std::slice::from_ref(&url), &torrent);
    let ih = info_hash(&torrent);
    let _tracker = Opentracker::start(port, &[&ih.to_string()]);
    let (mut seed, _) = instream_serve(&torrent, &data);
    // aria2c asks the tracker once and then waits its interval: the seed must be known first.
    wait_for(STARTUP_TIMEOUT, "opentracker to list instream-seed", || {
        tracker_has_seed(port, &ih)
    });

    let out = work.path().join("aria2-out");
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--seed-time=0",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        &format!("--listen-port={}", free_port()),
    ])
    .arg("-d")
    .arg(&out)
    .arg(&torrent);
    let mut aria = Proc::spawn("aria2c", cmd);
    aria.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&data, &out.join("payload.bin"));
    assert!(
        seed.try_wait().is_none(),
        "instream-seed died during the transfer\n{}",
        seed.output_tail()
    );
}
