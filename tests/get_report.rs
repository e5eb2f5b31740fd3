//! `instream-peer get --report URL` (the contract's bare download, reporting like `deploy`):
//! against a real `instream serve`, one host's download posts downloading -> verifying ->
//! success, a timed-out download and a missing torrent post failures with their reasons, and
//! the server stores them all. The hosts' own agents are the fake one told to stay silent, so every event
//! of theirs comes from `get`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Env, Proc, engine_bin, poll_for};

const T: Duration = Duration::from_secs(90);

/// `instream-seed serve TORRENT --data DATA` on 127.0.0.1:0 without trackers; its address.
fn seed(torrent: &Path, data: &Path) -> (Proc, String) {
    let mut child = Command::new(engine_bin("instream-seed"))
        .arg("serve")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--no-tracker"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn instream-seed");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening ") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("instream-seed printed no `listening` line within 30s");
    (Proc::adopt("instream-seed", child), addr)
}

/// Runs `instream-peer get ... --report` for `host` with `extra`; its exit status and
/// stderr, within [`T`].
fn get_reporting(
    env: &Env,
    torrent: &Path,
    url: &str,
    id: &str,
    host: &str,
    extra: &[&str],
) -> (bool, String) {
    let mut child = Command::new(engine_bin("instream-peer"))
        .arg("get")
        .arg(torrent)
        .arg("--out")
        .arg(env.path().join(format!("out-{host}")))
        .args(["--no-tracker", "--fabric", "f1", "--report", url])
        .args(["--deployment", id, "--host", host, "--token-file"])
        .arg(env.path().join("token"))
        .args(["--progress-every", "0.1", "--report-for", "30"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn instream-peer get");
    let status = poll_for(T, Duration::from_millis(50), || child.try_wait().unwrap())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("instream-peer get --report did not exit within {T:?}");
        });
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), err)
}

#[test]
fn get_report_posts_this_hosts_events_and_the_server_stores_them() {
    let env = Env::new(3, 1);
    let srv = env.serve(
        "127.0.0.1:0",
        &[("FAKE_AGENT_SILENT", "host-1,host-2,host-3".into())],
    );
    env.publish(&srv, "app", "1");
    let id = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1", "-H", "*"]);

    let data = env.path().join("payload");
    let payload: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&data, &payload).unwrap();
    let torrent = env.path().join("app.torrent");
    let made = Command::new(engine_bin("instream-seed"))
        .arg("create")
        .arg(&data)
        .args(["--piece-size", "64KiB", "-o"])
        .arg(&torrent)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let (_seed, addr) = seed(&torrent, &data);

    let (ok, err) = get_reporting(&env, &torrent, &srv.url, &id, "host-1", &["--peer", &addr]);
    assert!(ok, "get --report failed: {err}");
    // No peer at all: times out, and says so.
    let (ok, err) = get_reporting(&env, &torrent, &srv.url, &id, "host-2", &["--timeout", "1"]);
    assert!(!ok && err.contains("timed out"), "{err}");
    // No torrent: fails before any download, and says so too.
    let missing = env.path().join("missing.torrent");
    let (ok, err) = get_reporting(&env, &missing, &srv.url, &id, "host-3", &[]);
    assert!(!ok && err.contains("missing.torrent"), "{err}");

    let success = env.hosts_json(&srv, &id, "success");
    assert_eq!(success.len(), 1, "{success:?}");
    assert_eq!(success[0]["host"], "host-1");
    assert_eq!(success[0]["bytes"], payload.len() as u64);
    let mut failure = env.hosts_json(&srv, &id, "failure");
    failure.sort_by_key(|h| h["host"].as_str().unwrap_or_default().to_string());
    assert_eq!(failure.len(), 2, "{failure:?}");
    assert_eq!(failure[0]["host"], "host-2");
    let reason = failure[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timed out before completion"), "{reason}");
    assert_eq!(failure[1]["host"], "host-3");
    let reason = failure[1]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("missing.torrent"), "{reason}");

    // Every event was stored, none refused: host-1 sent downloading (at the start, and with
    // bytes if a progress tick saw them), verifying, success; host-2 downloading, failure;
    // host-3 failure.
    let (_, metrics) = srv.http("GET", "/metrics", Some(support::TOKEN), None);
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(counter("instream_events_stored_total") >= 6, "{metrics}");
    assert_eq!(counter("instream_events_rejected_total"), 0, "{metrics}");
    let v: Value = env.status_json(&srv, &id);
    assert_eq!(v["progress"]["success"], 1, "{v}");
}

#[test]
fn report_flags_that_do_not_go_together_fail_in_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["--report", "http://127.0.0.1:1"][..],
            "--report needs --deployment ID and --token-file FILE",
        ),
        (
            &["--host", "h"][..],
            "--deployment, --host and --token-file go with --report URL",
        ),
    ] {
        let out = Command::new(engine_bin("instream-peer"))
            .args(["get", "x.torrent", "--out"])
            .arg(dir.path())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.trim(), format!("error: {says}"), "{args:?}");
    }
}
