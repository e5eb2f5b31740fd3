//! aria2c 1.36. Its UDP tracker client rides on the DHT socket, so with DHT off (closed
//! network) it announces over HTTP only. It tries an MSE handshake first, then plaintext.

use std::path::Path;

use super::{Client, Host, Running};
use crate::matrix::trackers::Proto;
use crate::support::Proc;

pub struct Aria2;

impl Aria2 {
    fn run(&self, host: &Host, torrent: &Path, dir: &Path, seed: bool) -> Running {
        let log = host.dir.join("aria2.log");
        let mut cmd = host.ns.command("aria2c");
        // Closed network: no DHT, LPD or PEX; one address (sockets bound to it and announced).
        cmd.args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            "--file-allocation=none",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "--summary-interval=0",
            "--console-log-level=notice",
            "--log-level=info",
        ])
        .arg(format!("--log={}", log.display()))
        .arg(format!("--listen-port={}", host.addr.port()))
        .arg(format!("--bt-external-ip={}", host.ip()));
        if host.second.is_none() {
            cmd.arg(format!("--interface={}", host.ip()));
        }
        // else: `--interface` would bind its dials and announces to the listen address too;
        // without it aria2 listens on every address of its host, dials and announces from
        // the other one, and tells the tracker `ip=` its address.
        cmd.arg(format!("--stop={}", host.timeout_secs))
            .arg("-d")
            .arg(dir);
        if seed {
            // The data is there: no hash check first; seed until killed (ratio 0 = no limit).
            cmd.args(["--bt-seed-unverified=true", "--seed-ratio=0.0"]);
        } else {
            // Exit 0 as soon as the download is complete and verified.
            cmd.args(["--seed-time=0", "--bt-hash-check-seed=true"]);
        }
        cmd.arg(torrent);
        let label = if seed { "aria2-seed" } else { "aria2-leech" };
        Running {
            proc: Proc::spawn(label, cmd),
            done: super::Done::Exit,
            logs: vec![log],
        }
    }
}

impl Client for Aria2 {
    fn name(&self) -> &'static str {
        "aria2"
    }

    fn version(&self) -> Result<String, String> {
        // "aria2 version 1.36.0"
        let v = super::first_line_of("aria2c", &["--version"], "aria2")?;
        Ok(v.replace(" version", ""))
    }

    fn protocols(&self) -> &'static [Proto] {
        &[Proto::Http]
    }

    fn seed(&self, host: &Host, torrent: &Path, data_dir: &Path) -> Running {
        self.run(host, torrent, data_dir, true)
    }

    fn leech(&self, host: &Host, torrent: &Path, out_dir: &Path) -> Running {
        self.run(host, torrent, out_dir, false)
    }
}
