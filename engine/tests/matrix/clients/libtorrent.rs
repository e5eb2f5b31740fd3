//! libtorrent-rasterbar through python3-libtorrent and tests/reference/lt_peer.py, which
//! already sets the closed-network flags (no DHT, LSD, UPnP, NAT-PMP; uTP off) and binds both
//! its listen and its outgoing sockets to `--listen`'s address.

use std::path::Path;

use super::{Client, Host, Running};
use crate::matrix::trackers::Proto;
use crate::support::{PYTHON, Proc, reference_script};

pub struct Libtorrent;

/// libtorrent as the baseline cells' seed: it also accepts MSE with an RC4 payload, so every
/// client reaches it with its default settings (transmission 3.00 offers RC4 only, and the
/// script's default, plaintext payloads only, turns it away).
pub struct ReferenceSeed;

impl Libtorrent {
    fn run(&self, host: &Host, torrent: &Path, data: &Path, seed: bool) -> Running {
        self.run_with(host, torrent, data, seed, &[])
    }

    fn run_with(
        &self,
        host: &Host,
        torrent: &Path,
        data: &Path,
        seed: bool,
        extra: &[&str],
    ) -> Running {
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
            .arg(host.timeout_secs.to_string())
            .args(extra);
        // On a two-address host it still binds everything to its listen address: with
        // `--outgoing` set to the other address (`outgoing_interfaces`), libtorrent 2.0.8
        // resets every incoming connection right after the peer's handshake, before any
        // alert, whoever dials it (seen in the matrix; qBittorrent, on the same library
        // with one bind address, passes).
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

impl Client for ReferenceSeed {
    fn name(&self) -> &'static str {
        "libtorrent"
    }

    fn version(&self) -> Result<String, String> {
        Libtorrent.version()
    }

    fn protocols(&self) -> &'static [Proto] {
        Libtorrent.protocols()
    }

    fn seed(&self, host: &Host, torrent: &Path, data_dir: &Path) -> Running {
        Libtorrent.run_with(
            host,
            torrent,
            data_dir,
            true,
            &["--encryption", "accept-any"],
        )
    }

    fn leech(&self, host: &Host, torrent: &Path, out_dir: &Path) -> Running {
        Libtorrent.leech(host, torrent, out_dir)
    }
}
