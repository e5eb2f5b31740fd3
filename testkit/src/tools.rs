//! Running a tool to completion: any command ([`run_ok`]), mktorrent (a torrent we did not
//! write).

use std::path::Path;
use std::process::Command;

use crate::process::describe;

/// Runs a command to completion and panics with its output unless it succeeds.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\nstdout: {}\nstderr: {}",
        describe(out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mktorrent -l piece_log2 [-a announce] -o out path`: a torrent we did not write.
pub fn mktorrent(path: &Path, piece_log2: u32, announce: Option<&str>, out: &Path) {
    let mut cmd = Command::new("mktorrent");
    cmd.arg("-l").arg(piece_log2.to_string());
    if let Some(url) = announce {
        cmd.arg("-a").arg(url);
    }
    cmd.arg("-o").arg(out).arg(path);
    run_ok("mktorrent", &mut cmd);
}
