//! The `instream-tracker` binary: the contract flags (docs/ARCHITECTURE.md), `--print-config`, one-line errors,
//! SIGHUP reloading the whitelist, SIGTERM ending it cleanly.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use proto::InfoHash;
use proto::tracker::udp::Response;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_instream-tracker");

#[test]
fn print_config_is_the_commented_default() {
    let out = Command::new(BIN).arg("--print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# Worker threads"), "commented");
    let parsed: instream_tracker::Config = toml::from_str(&text).unwrap();
    assert_eq!(parsed, instream_tracker::Config::default());
}

#[test]
fn help_lists_the_contract_flags() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--udp",
        "--http",
        "--fabric-map",
        "--whitelist",
        "--open",
        "--config",
        "--print-config",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn errors_are_one_line_and_nonzero() {
    let out = Command::new(BIN)
        .args([
            "--udp",
            "127.0.0.1:0",
            "--http",
            "none",
            "--whitelist",
            "/nonexistent/wl.txt",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("/nonexistent/wl.txt"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["--whitelist", "x", "--open"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[udp]\nworkerz = 1\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("workerz"),
        "unknown keys are refused"
    );
}

#[test]
fn sighup_reloads_the_whitelist_and_sigterm_stops() {
    let dir = tempfile::tempdir().unwrap();
    let wl = dir.path().join("wl.txt");
    let h = InfoHash([0x66; 20]);
    std::fs::write(&wl, "# empty at first\n").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--udp",
        "127.0.0.1:0",
        "--http",
        "none",
        "--workers",
        "2",
        "--whitelist",
    ])
    .arg(&wl);
    let mut child = Proc::spawn("instream-tracker", cmd);
    let addr: SocketAddr = wait_for(
        Duration::from_secs(10),
        "a 'UDP tracker listening' log line",
        || {
            let lines = child.stderr_lines();
            let line = lines.iter().find(|l| l.contains("UDP tracker listening"))?;
            let a = line.split("addr=").nth(1).expect("addr= field");
            Some(a.split_whitespace().next().unwrap().parse().unwrap())
        },
    );
    let mut cl = UdpClient::new(addr);
    let announce_ok = |cl: &mut UdpClient| {
        let cid = cl.connect();
        let tid = cl.tid();
        cl.send(&announce(cid, tid, h, 1, 1, 1, None));
        matches!(cl.recv(), Response::Announce(_))
    };
    assert!(!announce_ok(&mut cl), "not listed yet");
    std::fs::write(&wl, format!("{}\n", h.to_hex())).unwrap();
    child.signal(libc::SIGHUP);
    wait_for(
        Duration::from_secs(10),
        "the reloaded whitelist to serve the hash",
        || announce_ok(&mut cl),
    );

    child.signal(libc::SIGTERM);
    let status = child.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM is a clean stop");
}
