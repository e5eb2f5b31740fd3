//! One host's disk fills up during a deployment: that host fails with a reason that names
//! the disk, keeps its previous version active (its service untouched), leaves nothing in
//! staging or in its download directory, and every other host succeeds.
//!
//! The full disk is real: host-2's data root is a small tmpfs (needs root: skipped
//! otherwise, failed under CI, which runs as root), filled after version 1 is installed on
//! it.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{Env, wait_for};

const T: Duration = Duration::from_secs(90);

/// A tmpfs mounted for the test, unmounted (lazily, so open files cannot block it) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount a tmpfs at {}", at.display());
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(path: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_full_disk_fails_only_its_host_and_keeps_the_old_version() {
    if !testkit::needs_root("mounting a small tmpfs as a full disk") {
        return;
    }
    let env = Env::fleet(3, 1);
    let small = Tmpfs::mount(env.host_root("host-2"), "8m");
    let srv = env.serve("127.0.0.1:0", &[]);
    env.publish(&srv, "app", "1");
    env.publish(&srv, "app", "2");
    let first = env.deploy(&srv, &["-p", "app", "-v", "1", "-f", "f1", "-H", "*"]);
    env.wait_state(&srv, &first, "done", T);
    assert_eq!(env.current("host-2").as_deref(), Some("1"));

    // Leave about 300 KiB: less than version 2's 1.3 MiB payload.
    let free = free_bytes(&small.0);
    let filler = small.0.join("filler");
    std::fs::write(&filler, vec![0u8; free.saturating_sub(300 * 1024) as usize]).unwrap();

    let id = env.deploy(&srv, &["-p", "app", "-v", "2", "-f", "f1", "-H", "*"]);
    let failed = wait_for(T, "host-2 to fail", || {
        env.hosts_json(&srv, &id, "failure")
            .into_iter()
            .find(|h| h["host"] == "host-2")
    });
    let reason = failed["reason"].as_str().unwrap_or_default().to_string();
    eprintln!("host-2 failed: {reason}");
    assert!(
        reason.contains("No space left on device"),
        "the reason names the full disk: {failed}"
    );
    for host in ["host-1", "host-3"] {
        wait_for(T, &format!("{host} to succeed"), || {
            env.hosts_json(&srv, &id, "success")
                .iter()
                .any(|h| h["host"] == host)
                .then_some(())
        });
        assert_eq!(env.current(host).as_deref(), Some("2"), "{host}");
    }
    assert_eq!(
        env.current("host-2").as_deref(),
        Some("1"),
        "host-2 keeps the version it had"
    );
    assert_eq!(
        env.history("host-2"),
        ["1"],
        "its service was never stopped"
    );
    let app = env.host_root("host-2").join("products/app");
    let leftovers = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // The agent exits after reporting; give it the moment it needs to clean up.
    wait_for(T, "host-2's download and staging to be removed", || {
        (leftovers(app.join("staging")).is_empty()
            && leftovers(env.host_root("host-2").join("downloads")).is_empty())
        .then_some(())
    });
    assert!(
        !app.join("versions/2").exists(),
        "no half-installed version 2"
    );
    drop(srv);
    support::reliability_row(
        "one host's disk full during download",
        "that host fails naming the path and ENOSPC, keeps its old version active; the others succeed",
        "nothing: staging and downloads removed",
    );
}
