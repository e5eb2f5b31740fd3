//! libtorrent-rasterbar through python3-libtorrent and tests/reference/lt_peer.py, which
//! already sets the closed-network flags (no DHT, LSD, UPnP, NAT-PMP; uTP off) and binds both
//! its listen and its outgoing sockets to `--listen`'s address.

use std::path::Path;

use super::{Client, Host, Running};
use crate::matrix::trackers::Proto;
use crate::support::{PYTHON, Proc, reference_script};

pub struct Libtorrent;

impl Libtorrent {
    fn run(&self, host: &Host, torrent: &Path, data: &Path, seed: bool) -> Running {
        let mut cmd = host.ns.command(PYTHON);
        cmd.arg(reference_script("lt_peer.py"))
            .arg("run")
            .arg("--torrent")
            .arg(torrent)
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(host.addr.to_string())
            .arg("--timeout")
            .arg(host.timeout_secs.to_string());
        if seed {
            cmd.arg("--seed").args(["--progress-interval", "0"]);
        } else {
            // A leecher's progress every 2 s shows in a failure's tail; it exits 0 once
            // every piece is hash-checked (--seed-for defaults to 0 for a leecher).
            cmd.args(["--progress-interval", "2"]);
        }
        let label = if seed {
            "libtorrent-seed"
        } else {
            "libtorrent-leech"
        };
        Running::exits(Proc::spawn(label, cmd))
    }
}

impl Client for Libtorrent {
    fn name(&self) -> &'static str {
        "libtorrent"
    }

    fn version(&self) -> Result<String, String> {
        let v = super::first_line_of(
            PYTHON,
            &["-c", "import libtorrent; print(libtorrent.__version__)"],
            "python3-libtorrent",
        )?;
        Ok(format!("libtorrent {v}"))
    }

    fn protocols(&self) -> &'static [Proto] {
        &[Proto::Udp, Proto::Http]
    }

    fn seed(&self, host: &Host, torrent: &Path, data_dir: &Path) -> Running {
        self.run(host, torrent, data_dir, true)
    }

    fn leech(&self, host: &Host, torrent: &Path, out_dir: &Path) -> Running {
        self.run(host, torrent, out_dir, false)
    }
}
