//! The clients under comparison and how to start each one's seed and peer.
//!
//! - instream: `instream-seed serve` and `instream-peer get --json` (docs/ARCHITECTURE.md contract).
//! - libtorrent: tests/reference/lt_peer.py under /usr/bin/python3, with REFERENCE-CLIENTS.md
//!   closed-network settings. Its peers wait for "go" on stdin after setting up, so python's
//!   start-up is not counted against libtorrent; instream peers are timed from their spawn,
//!   start-up included (a bias against instream, never for it).
//!
//! When a peer finished: libtorrent prints a `finished` event with its own timestamp. For
//! instream, [`instream_done_at`] takes, in order: a completion event line, a `*_secs` field
//! of the summary measured from start (`wall_secs` beside `total_secs`), or else the exit
//! time minus `--seed-for`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::netns::Netns;
use super::process::Child;
use super::util::wait_until;

const STARTUP: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Instream,
    Libtorrent,
}

impl ClientKind {
    pub fn parse(s: &str) -> Result<ClientKind, String> {
        match s.trim() {
            "instream" => Ok(ClientKind::Instream),
            "libtorrent" | "lt" => Ok(ClientKind::Libtorrent),
            o => Err(format!("unknown client {o:?} (instream, libtorrent)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Instream => "instream",
            ClientKind::Libtorrent => "libtorrent",
        }
    }
}

/// Where the programs are.
#[derive(Clone, Debug)]
pub struct Tools {
    pub python: PathBuf,
    pub lt_script: PathBuf,
    /// Directory holding instream-seed and instream-peer.
    pub bin_dir: PathBuf,
    /// Copy children's stderr to ours.
    pub echo: bool,
    /// Extra arguments for `instream-seed serve` and `instream-peer get`.
    pub seed_args: Vec<String>,
    pub peer_args: Vec<String>,
}

impl Tools {
    /// Defaults: Debian's python3, the repo's lt_peer.py, our binaries next to this harness
    /// (same target profile dir) unless `bin_dir` is given.
    pub fn locate(bin_dir: Option<PathBuf>, echo: bool) -> Result<Tools> {
        let bin_dir = match bin_dir {
            Some(d) => d,
            None => std::env::current_exe()
                .context("find the harness executable")?
                .parent()
                .context("harness executable has no directory")?
                .to_path_buf(),
        };
        let lt_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/lt_peer.py");
        Ok(Tools {
            python: PathBuf::from("/usr/bin/python3"),
            lt_script,
            bin_dir,
            echo,
            seed_args: Vec::new(),
            peer_args: Vec::new(),
        })
    }

    /// Fails early, with the fix, if a client's programs are missing.
    /// [`Tools::locate`], with the extra instream arguments (space-separated) and every
    /// client of the run checked.
    pub fn for_run(
        bin_dir: Option<PathBuf>,
        verbose: bool,
        seed_args: &str,
        peer_args: &str,
        clients: &[ClientKind],
    ) -> Result<Tools> {
        let mut tools = Tools::locate(bin_dir, verbose)?;
        tools.seed_args = seed_args.split_whitespace().map(String::from).collect();
        tools.peer_args = peer_args.split_whitespace().map(String::from).collect();
        for c in clients {
            tools.check(*c)?;
        }
        Ok(tools)
    }

    pub fn check(&self, kind: ClientKind) -> Result<()> {
        match kind {
            ClientKind::Libtorrent => {
                ensure!(
                    self.lt_script.is_file(),
                    "missing {}",
                    self.lt_script.display()
                );
                let ok = Command::new(&self.python)
                    .args(["-c", "import libtorrent"])
                    .output()
                    .map(|o| o.status.success());
                ensure!(
                    ok.unwrap_or(false),
                    "{} cannot import libtorrent: apt-get install python3-libtorrent",
                    self.python.display()
                );
            }
            ClientKind::Instream => {
                for b in ["instream-seed", "instream-peer"] {
                    ensure!(
                        self.bin_dir.join(b).is_file(),
                        "{} not found in {}: build them with `cargo build --release -p instream-engine -p instream-agent` \
                         (or pass --bin-dir)",
                        b,
                        self.bin_dir.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// A libtorrent seed that has the data in `data_dir`; returns once it listens with the
    /// torrent added.
    pub fn lt_seed(
        &self,
        label: &str,
        torrent: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        ns: Option<&Netns>,
    ) -> Result<Child> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.lt_script)
            .arg("run")
            .arg("--seed")
            .arg("--no-tracker");
        cmd.arg("--torrent")
            .arg(torrent)
            .arg("--data")
            .arg(data_dir);
        cmd.arg("--listen")
            .arg(listen.to_string())
            .args(["--progress-interval", "0"]);
        let mut c = Child::spawn(label, cmd, ns, self.echo)?;
        c.wait_event("ready", STARTUP)?;
        Ok(c)
    }

    /// A libtorrent leecher. With `wait_go` it sets up, prints "ready" and waits for "go" on
    /// stdin before dialling `peers`; otherwise it starts at once. Returns right after the
    /// spawn: the caller waits for "ready" (so several can start in parallel).
    /// `seed_for` < 0 keeps it seeding until terminated.
    #[allow(clippy::too_many_arguments)]
    pub fn lt_peer(
        &self,
        label: &str,
        torrent: &Path,
        out: &Path,
        listen: SocketAddr,
        peers: &[SocketAddr],
        seed_for: f64,
        wait_go: bool,
        ns: Option<&Netns>,
    ) -> Result<Child> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.lt_script).arg("run").arg("--no-tracker");
        if wait_go {
            cmd.arg("--wait-go");
        }
        cmd.arg("--torrent").arg(torrent).arg("--data").arg(out);
        cmd.arg("--listen").arg(listen.to_string()).args([
            "--progress-interval",
            "0",
            "--timeout",
            "0",
        ]);
        cmd.arg("--seed-for").arg(seed_for.to_string());
        for p in peers {
            cmd.arg("--peer").arg(p.to_string());
        }
        Child::spawn(label, cmd, ns, self.echo)
    }

    /// Waits for lt_peer.py's "ready" line.
    pub fn wait_ready(c: &mut Child) -> Result<()> {
        c.wait_event("ready", STARTUP).map(drop)
    }

    /// `instream-seed serve`; returns once it listens on `listen`.
    pub fn instream_seed(
        &self,
        label: &str,
        torrent: &Path,
        data: &Path,
        listen: SocketAddr,
        fabric: Option<&str>,
        ns: Option<&Netns>,
    ) -> Result<Child> {
        let mut cmd = Command::new(self.bin_dir.join("instream-seed"));
        cmd.arg("serve")
            .arg(torrent)
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(listen.to_string());
        if let Some(f) = fabric {
            cmd.arg("--fabric").arg(f);
        }
        cmd.args(&self.seed_args);
        let mut c = Child::spawn(label, cmd, ns, self.echo)?;
        wait_until(STARTUP, &format!("{label} to listen on {listen}"), || {
            if let Some(e) = c.poll_exit() {
                bail!(
                    "{label} ended ({}) before listening\n{}",
                    e.describe(),
                    c.tail()
                );
            }
            Ok(c.listens_on(listen.port()))
        })?;
        Ok(c)
    }

    /// `instream-peer get --json`, started now (the caller's clock starts at this spawn).
    #[allow(clippy::too_many_arguments)]
    pub fn instream_peer(
        &self,
        label: &str,
        torrent: &Path,
        out: &Path,
        listen: SocketAddr,
        peers: &[SocketAddr],
        seed_for: f64,
        fabric: Option<&str>,
        fabric_share: Option<&str>,
        ns: Option<&Netns>,
    ) -> Result<Child> {
        let mut cmd = Command::new(self.bin_dir.join("instream-peer"));
        cmd.arg("get")
            .arg(torrent)
            .arg("--out")
            .arg(out)
            .arg("--json");
        cmd.arg("--listen")
            .arg(listen.to_string())
            .arg("--seed-for")
            .arg(format!("{}", seed_for.max(0.0).round()));
        for p in peers {
            cmd.arg("--peer").arg(p.to_string());
        }
        if let Some(f) = fabric {
            cmd.arg("--fabric").arg(f);
        }
        if let Some(s) = fabric_share {
            cmd.arg("--fabric-share").arg(s);
        }
        cmd.args(&self.peer_args);
        Child::spawn(label, cmd, ns, self.echo)
    }
}

/// How an instream peer's completion time was found (printed with the results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoneSource {
    Event,
    SummarySecs,
    ExitMinusSeedFor,
}

/// When an instream peer had every piece verified, if it can be told yet.
pub fn instream_done_at(c: &Child, seed_for: f64) -> Option<(SystemTime, DoneSource)> {
    const EVENTS: [&str; 5] = ["complete", "completed", "finished", "verified", "done"];
    for (at, v) in c.json() {
        if v.get("event")
            .and_then(Value::as_str)
            .is_some_and(|e| EVENTS.contains(&e))
        {
            let t = v
                .get("t")
                .and_then(Value::as_f64)
                .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t));
            return Some((t.unwrap_or(at), DoneSource::Event));
        }
    }
    let exit = c.exit()?;
    if let Some(s) = summary(c) {
        // instream-peer's `wall_secs` is start -> complete when `total_secs` (start -> exit,
        // seeding included) sits beside it.
        let wall = s.get("total_secs").and(s.get("wall_secs"));
        let named = [
            "download_secs",
            "verified_secs",
            "done_secs",
            "complete_secs",
        ]
        .iter()
        .find_map(|k| s.get(*k));
        if let Some(secs) = named.or(wall).and_then(Value::as_f64) {
            return Some((
                c.spawned_at + Duration::from_secs_f64(secs),
                DoneSource::SummarySecs,
            ));
        }
    }
    Some((
        exit.at - Duration::from_secs_f64(seed_for.max(0.0)),
        DoneSource::ExitMinusSeedFor,
    ))
}

/// The last JSON line with `bytes_downloaded` (instream's --json summary, lt_peer's summary).
pub fn summary(c: &Child) -> Option<Value> {
    c.json()
        .into_iter()
        .rev()
        .map(|(_, v)| v)
        .find(|v| v.get("bytes_downloaded").is_some())
}

/// A numeric summary field, or an error naming it.
pub fn summary_u64(c: &Child, key: &str) -> Result<u64> {
    let s =
        summary(c).with_context(|| format!("{} printed no JSON summary\n{}", c.label, c.tail()))?;
    s.get(key)
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        .with_context(|| format!("{}'s summary has no {key:?}: {s}", c.label))
}

/// Seconds between two wall-clock instants (negative if `b` is before `a`).
pub fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The `t` field of an event as a SystemTime.
pub fn event_time(v: &Value) -> Option<SystemTime> {
    v.get("t")
        .and_then(Value::as_f64)
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t))
}
