//! libtorrent (python3-libtorrent, Debian) swarms finish a download with instream-tracker
//! as their only source of peers: once over UDP (with BEP 41 URL data carrying a fabric),
//! once over HTTP. The torrent is made by mktorrent; the files are compared byte for byte.

mod support;

use std::path::Path;
use std::process::Command;

use proto::InfoHash;
use rand::{RngCore, SeedableRng};
use support::*;

const LEECHERS: usize = 3;

fn swarm_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lt_swarm.py")
}

fn run_swarm(announce_url: impl Fn(&TestTracker) -> String, proto_name: &str) {
    let mut c = loopback_config();
    c.swarm.announce_interval_secs = 5;
    let t = TestTracker::start(c, None); // whitelist mode: nothing served until registered
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut payload = vec![0u8; 3 * 1024 * 1024 + 12345];
    rand::rngs::SmallRng::seed_from_u64(11).fill_bytes(&mut payload);
    std::fs::write(data.join("payload.bin"), &payload).unwrap();

    let torrent = dir.path().join("t.torrent");
    let out = Command::new("mktorrent")
        .args(["-l", "18", "-a", &announce_url(&t), "-o"])
        .arg(&torrent)
        .arg(data.join("payload.bin"))
        .output()
        .expect("mktorrent is installed (apt-get install mktorrent)");
    assert!(
        out.status.success(),
        "mktorrent: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new("/usr/bin/python3")
        .arg(swarm_script())
        .arg("info-hash")
        .arg(&torrent)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "info-hash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash =
        InfoHash::from_hex(String::from_utf8_lossy(&out.stdout).trim()).expect("hex info-hash");
    assert!(t.handle.register(hash));

    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(swarm_script())
        .args([
            "run",
            "--leechers",
            &LEECHERS.to_string(),
            "--timeout",
            "90",
            "--torrent",
        ])
        .arg(&torrent)
        .arg("--data")
        .arg(&data)
        .arg("--work")
        .arg(&work)
        .output()
        .expect("run /usr/bin/python3 (python3-libtorrent)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{proto_name} swarm did not finish: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..LEECHERS {
        let got = std::fs::read(work.join(format!("leecher-{i}/payload.bin"))).unwrap();
        assert!(got == payload, "leecher {i} has different bytes");
    }
    let s = t.handle.stats();
    let announces = if proto_name == "UDP" {
        s.udp_announce
    } else {
        s.http_announce
    };
    assert!(announces >= (LEECHERS + 1) as u64, "{proto_name}: {s:?}");
}

#[test]
fn libtorrent_swarm_over_udp() {
    run_swarm(|t| format!("udp://{}/announce?fabric=f1", t.udp), "UDP");
}

#[test]
fn libtorrent_swarm_over_http() {
    run_swarm(|t| format!("http://{}/announce", t.http), "HTTP");
}
