//! transmission-cli 3.00, headless. Its closed-network settings go in `settings.json` in its
//! config dir (`-g`); it binds its peer sockets to `bind-address-ipv4`. It drops peers on
//! 127.0.0.0/8 and keeps one peer per address, so it needs the namespace's own addresses. It
//! never exits by itself: as a leecher its finish script (`-f`) leaves a marker file, and the
//! harness stops it.

use std::fs;
use std::path::Path;

use serde_json::json;

use super::{Client, Done, Host, Running};
use crate::matrix::trackers::Proto;
use crate::support::Proc;

pub struct Transmission;

impl Transmission {
    fn run(&self, host: &Host, torrent: &Path, dir: &Path, seed: bool) -> Running {
        let cfg = host.dir.join("transmission");
        fs::create_dir_all(&cfg).expect("create transmission's config dir");
        let settings = json!({
            "dht-enabled": false,
            "lpd-enabled": false,
            "pex-enabled": false,
            "utp-enabled": false,
            "port-forwarding-enabled": false,
            "blocklist-enabled": false,
            "rpc-enabled": false,
            "bind-address-ipv4": host.ip().to_string(),
            "peer-port": host.addr.port(),
            "peer-port-random-on-start": false,
            "speed-limit-up-enabled": false,
            "speed-limit-down-enabled": false,
            "alt-speed-enabled": false,
            "ratio-limit-enabled": false,
            "idle-seeding-limit-enabled": false,
            "download-dir": dir,
            "incomplete-dir-enabled": false,
            "watch-dir-enabled": false,
            "start-added-torrents": true,
            "message-level": 2,
        });
        fs::write(
            cfg.join("settings.json"),
            serde_json::to_string_pretty(&settings).unwrap(),
        )
        .expect("write transmission's settings.json");

        let mut cmd = host.ns.command("transmission-cli");
        cmd.arg("-g")
            .arg(&cfg)
            .arg("-w")
            .arg(dir)
            .arg("-p")
            .arg(host.addr.port().to_string())
            .args(["-D", "-U", "-M", "-B"]);
        let done = if seed {
            // Check the data first, then seed until stopped.
            cmd.arg("-v");
            Done::Exit
        } else {
            let marker = host.dir.join("transmission.finished");
            let script = host.dir.join("transmission-finished.sh");
            fs::write(
                &script,
                format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
            )
            .expect("write transmission's finish script");
            set_executable(&script);
            cmd.arg("-f").arg(&script);
            Done::Marker(marker)
        };
        cmd.arg(torrent);
        let label = if seed {
            "transmission-seed"
        } else {
            "transmission-leech"
        };
        Running {
            proc: Proc::spawn(label, cmd),
            done,
            logs: Vec::new(),
        }
    }
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .expect("make the finish script executable");
}

impl Client for Transmission {
    fn name(&self) -> &'static str {
        "transmission"
    }

    fn version(&self) -> Result<String, String> {
        // "transmission-cli 3.00 (bb6b5a062e)"
        let v = super::first_line_of("transmission-cli", &["--version"], "transmission-cli")?;
        Ok(v.split(" (").next().unwrap_or(&v).to_string())
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
