//! One exit path for every program (issue 14): `instream`, and the multi-call binary
//! started as `instream-seed`, `instream-peer` and `instream-tracker`, each end a usage
//! error and a run-time failure with exactly one `error: ...` line on stderr, status 2 for
//! usage and 1 for failures (crate `exit`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `name` as a link to the `instream` binary in `dir` (the multi-call dispatch reads argv0).
fn program(dir: &Path, name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_instream"));
    if name == "instream" {
        return bin;
    }
    let link = dir.join(name);
    std::os::unix::fs::symlink(&bin, &link).expect("link the multi-call binary");
    link
}

/// Runs `prog args`, bounded, and returns (status code, stderr).
fn run(prog: &Path, args: &[&str]) -> (Option<i32>, String) {
    let child = Command::new(prog)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the program");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => {
            let out = out.expect("wait for the program");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{} {args:?} did not exit within 30 s", prog.display());
        }
    }
}

fn assert_one_error_line(what: &str, (code, stderr): (Option<i32>, String), want: i32) {
    assert_eq!(code, Some(want), "{what}: status; stderr: {stderr:?}");
    assert!(
        stderr.starts_with("error: ") && stderr.lines().count() == 1,
        "{what}: want one `error:` line, got {stderr:?}"
    );
}

#[test]
fn every_program_fails_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    for name in [
        "instream",
        "instream-seed",
        "instream-peer",
        "instream-tracker",
    ] {
        let prog = program(dir.path(), name);
        assert_one_error_line(
            &format!("{name} --no-such-flag"),
            run(&prog, &["--no-such-flag"]),
            2,
        );
    }
    let seed = dir.path().join("instream-seed");
    assert_one_error_line(
        "instream-seed create of a missing path",
        run(
            &seed,
            &["create", missing, "-o", &format!("{missing}.torrent")],
        ),
        1,
    );
    let peer = dir.path().join("instream-peer");
    assert_one_error_line(
        "instream-peer get of a missing torrent",
        run(
            &peer,
            &["get", &format!("{missing}.torrent"), "--out", missing],
        ),
        1,
    );
    let tracker = dir.path().join("instream-tracker");
    assert_one_error_line(
        "instream-tracker with a missing config",
        run(&tracker, &["--config", missing]),
        1,
    );
}
