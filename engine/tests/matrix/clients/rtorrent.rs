//! rtorrent 0.9.8 (libtorrent-rakshasa, an implementation independent of libtorrent-rasterbar),
//! headless through `system.daemon.set`. Everything goes in an option file imported with
//! `-n -o import=FILE` (no `~/.rtorrent.rc`): its own session dir, the host's address for
//! binding (`network.bind_address`) and announcing (`network.local_address`), a fixed port,
//! no DHT or PEX. It checks existing data before seeding, never exits by itself, and as a
//! leecher runs `touch MARKER` on `event.download.finished`; the harness stops it.

use std::fs;
use std::path::Path;

use super::{Client, Done, Host, Running};
use crate::matrix::trackers::Proto;
use crate::support::Proc;

pub struct Rtorrent;

impl Rtorrent {
    fn run(&self, host: &Host, torrent: &Path, dir: &Path, seed: bool) -> Running {
        let session = host.dir.join("rtorrent-session");
        fs::create_dir_all(&session).expect("create rtorrent's session dir");
        let log = host.dir.join("rtorrent.log");
        let marker = host.dir.join("rtorrent.finished");
        let ip = host.ip();
        let port = host.addr.port();
        // Values with paths are quoted: rtorrent's option parser splits on commas and spaces.
        let mut rc = format!(
            "directory.default.set = \"{dir}\"\n\
             session.path.set = \"{session}\"\n\
             network.port_range.set = {port}-{port}\n\
             network.port_random.set = no\n\
             network.bind_address.set = {ip}\n\
             network.local_address.set = {ip}\n\
             dht.mode.set = disable\n\
             protocol.pex.set = no\n\
             trackers.use_udp.set = yes\n\
             throttle.global_up.max_rate.set = 0\n\
             throttle.global_down.max_rate.set = 0\n\
             system.daemon.set = true\n\
             log.open_file = \"main\", \"{log}\"\n\
             log.add_output = \"info\", \"main\"\n",
            dir = dir.display(),
            session = session.display(),
            log = log.display(),
        );
        if !seed {
            rc.push_str(&format!(
                "method.set_key = event.download.finished, instream_marker, \
                 \"execute.nothrow = touch, \\\"{}\\\"\"\n",
                marker.display()
            ));
        }
        rc.push_str(&format!("load.start_verbose = \"{}\"\n", torrent.display()));
        let rc_path = host.dir.join("rtorrent.rc");
        fs::write(&rc_path, rc).expect("write rtorrent's option file");

        let mut cmd = host.ns.command("rtorrent");
        cmd.arg("-n")
            .arg("-o")
            .arg(format!("import={}", rc_path.display()));
        let label = if seed {
            "rtorrent-seed"
        } else {
            "rtorrent-leech"
        };
        Running {
            proc: Proc::spawn(label, cmd),
            done: if seed {
                Done::Exit
            } else {
                Done::Marker(marker)
            },
            logs: vec![log],
        }
    }
}

impl Client for Rtorrent {
    fn name(&self) -> &'static str {
        "rtorrent"
    }

    fn version(&self) -> Result<String, String> {
        // `rtorrent -h` prints "Rakshasa's BitTorrent client version 0.9.8." first and exits 0.
        let line = super::first_line_of("rtorrent", &["-h"], "rtorrent")?;
        let version = line
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_string();
        if version.is_empty() {
            return Err(format!("rtorrent -h: no version in {line:?}"));
        }
        Ok(format!("rtorrent {version}"))
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
