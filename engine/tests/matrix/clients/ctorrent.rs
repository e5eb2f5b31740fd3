//! Enhanced CTorrent dnh3.3.2 (Debian `ctorrent`), an implementation of its own: no extension
//! protocol, no Fast extension, no MSE, HTTP trackers only. It listens on `-i ADDR`, announces
//! `-I ADDR`, keeps its piece bitfield in `-b FILE` (in the host's dir: the default sits next to
//! the torrent, which both hosts share) and writes the single file to `-s PATH`. A leecher with
//! `-e 0` exits 0 once the download is complete and checked; a seed (`-f`: trust the data, skip
//! the check) runs until stopped.

use std::path::Path;

use super::{Client, Host, Running};
use crate::matrix::trackers::Proto;
use crate::support::{Proc, torrent_info};

pub struct Ctorrent;

impl Ctorrent {
    fn run(&self, host: &Host, torrent: &Path, dir: &Path, seed: bool) -> Running {
        let name = torrent_info(torrent).name;
        let mut cmd = host.ns.command("ctorrent");
        cmd.arg("-i")
            .arg(host.ip().to_string())
            .arg("-I")
            .arg(host.ip().to_string())
            .arg("-p")
            .arg(host.addr.port().to_string())
            .arg("-b")
            .arg(host.dir.join("ctorrent.bf"))
            .arg("-s")
            .arg(dir.join(name));
        if seed {
            cmd.args(["-f", "-e", "24"]);
        } else {
            cmd.args(["-e", "0"]);
        }
        cmd.arg(torrent);
        let label = if seed {
            "ctorrent-seed"
        } else {
            "ctorrent-leech"
        };
        Running::exits(Proc::spawn(label, cmd))
    }
}

impl Client for Ctorrent {
    fn name(&self) -> &'static str {
        "ctorrent"
    }

    fn version(&self) -> Result<String, String> {
        // `ctorrent -h` prints "Enhanced CTorrent dnh3.3.2   Original code ..." first, and
        // exits 1 (it has no version flag).
        let out = std::process::Command::new("ctorrent")
            .arg("-h")
            .output()
            .map_err(|e| format!("ctorrent: {e} (install Debian ctorrent)"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let line = text.lines().next().unwrap_or("");
        let version = line
            .split_whitespace()
            .nth(2)
            .ok_or_else(|| format!("ctorrent -h: no version in {line:?}"))?;
        Ok(format!("ctorrent {version}"))
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
