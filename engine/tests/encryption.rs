//! MSE/PE (Message Stream Encryption) against real clients, on 127.0.0.1: libtorrent with
//! MSE forced (RC4 payload, then either payload offered), aria2c (which tries MSE first), and
//! instream-peer against instream-seed both under `--encryption require`. The seed logs each
//! incoming MSE handshake with its payload method (debug, `instream_engine::net`), which is
//! how the tests see the method chosen and that no attempt failed first. Every download is
//! compared byte for byte with the original.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use support::*;

/// Not a multiple of the piece or block length.
const LEN: usize = 3 * 1024 * 1024 + 4321;
/// Logs that show the handshakes (see the module header).
const NET_LOG: &str =
    "info,instream_engine::net=debug,instream_engine::announce=debug,instream_engine::driver=debug";

/// `instream-seed serve` with `extra` arguments and the network log, waited on until it
/// listens.
fn serve(torrent: &Path, data: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    support::instream_serve_with(torrent, data, extra, NET_LOG)
}

/// Stderr lines of `p` containing `needle`.
fn log_lines(p: &Proc, needle: &str) -> Vec<String> {
    p.stderr_lines()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

/// The seed saw at least one MSE handshake, each with `method`, and no failed handshake.
fn assert_seed_saw_mse(seed: &Proc, method: &str) {
    let mse = log_lines(seed, "incoming MSE handshake");
    assert!(
        !mse.is_empty(),
        "the seed logged no MSE handshake\n{}",
        seed.output_tail()
    );
    for l in &mse {
        assert!(
            l.contains(&format!("method={method}")),
            "expected {method}: {l}"
        );
    }
    // (The seed may dial itself through the tracker's list: that is not a failed attempt.)
    let failed: Vec<_> = log_lines(seed, "incoming handshake failed")
        .into_iter()
        .filter(|l| !l.contains("connected to ourselves"))
        .collect();
    assert!(
        failed.is_empty(),
        "a handshake failed before the MSE one succeeded: {failed:?}"
    );
}

fn payload(work: &Path, seed: u64) -> std::path::PathBuf {
    let data = work.join("src/payload.bin");
    write_payload(&data, LEN, seed);
    data
}

/// libtorrent (`lt_peer.py --encryption MODE`) downloads from an instream seed.
fn libtorrent_leeches_with(mode: &str, seed_method: &str) {
    let work = temp_dir();
    let data = payload(work.path(), 11);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let info = torrent_info(&torrent);
    let (seed, seed_addr) = serve(&torrent, &data, &[]);

    let out = work.path().join("lt-out");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(reference_script("lt_peer.py"))
        .arg("run")
        .arg("--torrent")
        .arg(&torrent)
        .arg("--data")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--no-tracker"])
        .args(["--progress-interval", "2"])
        .args(["--encryption", mode])
        .args(["--timeout", &TRANSFER_TIMEOUT.as_secs().to_string()])
        .arg("--peer")
        .arg(seed_addr.to_string());
    let mut leecher = Proc::spawn(&format!("libtorrent ({mode})"), cmd);
    leecher.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&data, &out.join(&info.name));
    assert_seed_saw_mse(&seed, seed_method);
}

#[test]
fn libtorrent_with_mse_forced_and_rc4_only_downloads_over_rc4() {
    libtorrent_leeches_with("forced-rc4", "Rc4");
}

#[test]
fn libtorrent_with_mse_forced_offering_plaintext_gets_a_plaintext_payload() {
    libtorrent_leeches_with("forced-both", "Plaintext");
}

/// Waits until the seed's first announce was answered (so the tracker lists it).
fn wait_for_announce(seed: &Proc) {
    wait_for(
        STARTUP_TIMEOUT,
        "the seed's announce to be answered",
        || !log_lines(seed, "peers from tracker").is_empty(),
    );
}

/// aria2c (which opens with MSE) downloads from an instream seed found through opentracker.
fn aria2_leeches_with(extra: &[&str], seed_method: &str) {
    let work = temp_dir();
    let data = payload(work.path(), 12);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/announce");
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", std::slice::from_ref(&url), &torrent);
    let info = torrent_info(&torrent);
    let _tracker = Opentracker::start(port, &[&info.info_hash]);
    let (seed, _) = serve(&torrent, &data, &[]);
    wait_for_announce(&seed);

    let out = work.path().join("aria2-out");
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--seed-time=0",
        "--file-allocation=none",
        "--console-log-level=warn",
        "--summary-interval=0",
    ])
    .arg(format!("--listen-port={}", free_port()))
    .args(extra)
    .arg("-d")
    .arg(&out)
    .arg(&torrent);
    let mut leecher = Proc::spawn("aria2c", cmd);
    // Fail fast, and say why, if the seed drops aria2 for its wire habits (see
    // REFERENCE-CLIENTS.md: it re-sends full bitfields) rather than for the handshake.
    wait_for(TRANSFER_TIMEOUT, "aria2c to finish", || {
        let dropped = log_lines(&seed, "ProtocolViolation");
        assert!(
            dropped.is_empty(),
            "the seed dropped aria2c after the handshake: {dropped:?}"
        );
        leecher.try_wait().is_some()
    });
    leecher.wait_success(STARTUP_TIMEOUT);
    assert_same_file(&data, &out.join(&info.name));
    assert_seed_saw_mse(&seed, seed_method);
}

#[test]
fn aria2c_connects_with_mse_on_the_first_attempt() {
    aria2_leeches_with(&[], "Plaintext");
}

#[test]
fn aria2c_requiring_rc4_downloads_over_rc4() {
    aria2_leeches_with(
        &["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"],
        "Rc4",
    );
}

#[test]
fn instream_peer_requiring_encryption_downloads_from_a_seed_requiring_it() {
    let work = temp_dir();
    let data = payload(work.path(), 13);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let info = torrent_info(&torrent);
    let (seed, seed_addr) = serve(&torrent, &data, &["--encryption", "require"]);

    let out = work.path().join("out");
    let mut extra = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--no-tracker".into(),
    ];
    extra.extend(["--encryption".into(), "require".into()]);
    extra.extend(peer_args(&[seed_addr]));
    let mut cmd = instream_get_cmd(&torrent, &out, &extra);
    cmd.env("RUST_LOG", NET_LOG);
    let mut peer = Proc::spawn("instream-peer (require)", cmd);
    peer.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&data, &out.join(&info.name));
    assert_seed_saw_mse(&seed, "Rc4");
    let out_mse = log_lines(&peer, "outgoing MSE handshake");
    assert!(
        !out_mse.is_empty() && out_mse.iter().all(|l| l.contains("method=Rc4")),
        "the peer's MSE dials: {out_mse:?}"
    );
}

#[test]
fn a_seed_requiring_encryption_refuses_a_plaintext_peer() {
    let work = temp_dir();
    let data = payload(work.path(), 14);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let (seed, seed_addr) = serve(&torrent, &data, &["--encryption", "require"]);

    let out = work.path().join("out");
    let mut extra = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--no-tracker".into(),
    ];
    extra.extend(["--timeout".into(), "5".into()]);
    extra.extend(peer_args(&[seed_addr]));
    let mut peer = Proc::spawn(
        "instream-peer (plaintext)",
        instream_get_cmd(&torrent, &out, &extra),
    );
    let status = peer.wait_exit(TRANSFER_TIMEOUT);
    assert!(
        !status.success(),
        "a plaintext peer downloaded from a require seed"
    );
    wait_for(
        STARTUP_TIMEOUT,
        "the seed to log the refused plaintext handshake",
        || !log_lines(&seed, "plaintext handshake refused").is_empty(),
    );
}

#[test]
fn instream_peer_preferring_encryption_downloads_from_a_plaintext_seed() {
    let work = temp_dir();
    let data = payload(work.path(), 15);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let info = torrent_info(&torrent);
    let (seed, seed_addr) = serve(&torrent, &data, &[]);

    let out = work.path().join("out");
    let mut extra = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--no-tracker".into(),
    ];
    extra.extend(["--encryption".into(), "prefer".into()]);
    extra.extend(peer_args(&[seed_addr]));
    let mut peer = Proc::spawn(
        "instream-peer (prefer)",
        instream_get_cmd(&torrent, &out, &extra),
    );
    peer.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&data, &out.join(&info.name));
    // Both allow plaintext: MSE with a plaintext payload, the cheap choice.
    assert_seed_saw_mse(&seed, "Plaintext");
}

#[test]
fn instream_peer_preferring_encryption_retries_in_plaintext_when_the_peer_drops_mse() {
    let work = temp_dir();
    let src = work.path().join("src");
    let data = payload(work.path(), 16);
    let torrent = work.path().join("t.torrent");
    instream_create(&data, "256KiB", &[], &torrent);
    let info = torrent_info(&torrent);

    // A libtorrent seed with MSE disabled drops an encrypted handshake.
    let mut cmd = Command::new(PYTHON);
    cmd.arg(reference_script("lt_peer.py"))
        .arg("run")
        .arg("--torrent")
        .arg(&torrent)
        .arg("--data")
        .arg(&src)
        .args(["--listen", "127.0.0.1:0", "--no-tracker", "--seed"])
        .args(["--progress-interval", "0", "--encryption", "disabled"]);
    let mut seed = Proc::spawn("libtorrent seed (no MSE)", cmd);
    let ready = seed.wait_event("ready", STARTUP_TIMEOUT);
    let port = ready["listen_port"].as_u64().expect("ready.listen_port") as u16;
    let seed_addr = SocketAddr::from(([127, 0, 0, 1], port));

    let out = work.path().join("out");
    let mut extra = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--no-tracker".into(),
    ];
    extra.extend(["--encryption".into(), "prefer".into()]);
    extra.extend(peer_args(&[seed_addr]));
    let mut cmd = instream_get_cmd(&torrent, &out, &extra);
    cmd.env("RUST_LOG", NET_LOG);
    let mut peer = Proc::spawn("instream-peer (prefer)", cmd);
    peer.wait_success(TRANSFER_TIMEOUT);
    assert_same_file(&data, &out.join(&info.name));
    assert!(
        !log_lines(&peer, "retrying in plaintext").is_empty(),
        "the peer never fell back to plaintext\n{}",
        peer.output_tail()
    );
    assert!(seed.try_wait().is_none(), "libtorrent seed died");
}
