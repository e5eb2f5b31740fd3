//! Network namespaces and `tc` shaping through the `ip` and `tc` commands (iproute2).
//!
//! Every namespace the harness makes is named `isb<pid>-<role>`: the pid makes names unique
//! per run and lets a later run delete what a killed run left behind ([`remove_stale`]).
//! A [`Netns`] deletes its namespace on drop; deleting a namespace deletes the veth ends in it.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// Prefix of every namespace name the harness creates.
pub const PREFIX: &str = "isb";

/// Runs `ip ARGS...` and fails with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// Runs `tc ARGS...` and fails with its stderr.
pub fn tc(args: &[&str]) -> Result<()> {
    run("tc", args)
}

fn run(prog: &str, args: &[&str]) -> Result<()> {
    let o = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("run {prog} (apt-get install iproute2)"))?;
    ensure!(
        o.status.success(),
        "{prog} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(())
}

/// One named network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn create(name: &str) -> Result<Netns> {
        ip(&["netns", "add", name]).with_context(|| format!("create network namespace {name}"))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file that `setns(2)` takes.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread that has entered the namespace, so sockets it opens live there
    /// (and stay there when other threads use them).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        use std::os::fd::AsRawFd;
        let path = self.path();
        let file = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        std::thread::spawn(move || {
            // SAFETY: setns(2) on a namespace file we hold open; it moves only this thread,
            // which ends when `f` returns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("enter {}", path.display()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a thread inside a network namespace panicked"))?
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Shapes the egress of `dev` in this namespace to `mbit` with a token bucket.
    ///
    /// The bucket holds 2 ms of traffic (at least 32 KiB, so GSO-sized packets pass) and the
    /// queue 25 ms: long enough not to drop a TCP window at these rates, short enough that
    /// shaping, not queueing, sets the pace.
    pub fn shape_egress(&self, dev: &str, mbit: f64) -> Result<()> {
        let bytes_per_sec = mbit * 1e6 / 8.0;
        let burst = ((bytes_per_sec * 0.002) as u64).max(32 * 1024);
        tc(&[
            "-n",
            &self.name,
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            &format!("{}kbit", (mbit * 1000.0).round() as u64),
            "burst",
            &burst.to_string(),
            "latency",
            "25ms",
        ])
        .with_context(|| format!("shape {dev} in {} to {mbit} Mbit/s", self.name))
    }

    /// Gives unshaped `dev` a plain FIFO root qdisc (veths have none), so that
    /// [`Self::egress_bytes`] can count what it sends.
    pub fn count_egress(&self, dev: &str) -> Result<()> {
        tc(&[
            "-n", &self.name, "qdisc", "replace", "dev", dev, "root", "pfifo", "limit", "10000",
        ])
        .with_context(|| format!("put a FIFO on {dev} in {}", self.name))
    }

    /// Bytes sent so far through the root qdisc of `dev` (wire bytes: headers and
    /// retransmissions included).
    pub fn egress_bytes(&self, dev: &str) -> Result<u64> {
        let o = Command::new("tc")
            .args(["-n", &self.name, "-s", "-j", "qdisc", "show", "dev", dev])
            .output()
            .context("run tc")?;
        ensure!(
            o.status.success(),
            "tc -s qdisc show dev {dev}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).context("parse tc -j output")?;
        v.as_array()
            .and_then(|qs| qs.iter().find(|q| q["root"] == true))
            .and_then(|q| q["bytes"].as_u64())
            .with_context(|| format!("no root qdisc byte count for {dev}: {v}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Deletes namespaces named `isb<pid>-...` whose pid is no longer running (left by a harness
/// that was SIGKILLed). Returns how many it deleted.
pub fn remove_stale() -> usize {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() && ip(&["netns", "del", &name]).is_ok() {
            removed += 1;
        }
    }
    removed
}
