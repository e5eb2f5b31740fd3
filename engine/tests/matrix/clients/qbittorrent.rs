//! qBittorrent 4.5 (`qbittorrent-nox`, Debian's; the client most people run), driven through
//! its Web API as its users' scripts do. Its profile (`--profile DIR`) holds a
//! `qBittorrent.conf` written here: the closed-network settings, TCP only, its peer sockets on
//! the host's address (`Session\InterfaceAddress`), the legal notice accepted, and the Web UI
//! on the namespace's 127.0.0.1 with a known user and password (PBKDF2 hash below). The harness
//! logs in, adds the torrent with a multipart `torrents/add` (the seed skips its hash check),
//! and as a leecher asks `torrents/info` until the torrent is complete. It uses
//! libtorrent-rasterbar underneath, with qBittorrent's own settings (MSE preferred, its own
//! choker and queueing), so it differs from the libtorrent cells in what it sends.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use super::{Client, Done, Host, Running};
use crate::matrix::trackers::Proto;
use crate::matrix::webapi::{self, Body};
use crate::support::{Proc, STARTUP_TIMEOUT, poll_until};

pub struct Qbittorrent;

const USER: &str = "admin";
const PASSWORD: &str = "instream-matrix";
/// `WebUI\Password_PBKDF2` for [`PASSWORD`]: PBKDF2-HMAC-SHA512, 100,000 rounds, 64-byte key,
/// salt `instream-matrix!`, as `@ByteArray(base64(salt):base64(key))`. Made with
/// `hashlib.pbkdf2_hmac('sha512', b'instream-matrix', b'instream-matrix!', 100000, 64)`.
const PASSWORD_PBKDF2: &str = "@ByteArray(aW5zdHJlYW0tbWF0cml4IQ==:mw2RnwDoRO3XPkUzzU8I2btWV8ktB+MBTHpYcs2NoQDcoC4ZJcC/pIRi+3La5ZwiTHQo4xBnrEpwurHORIJKKQ==)";

/// A logged-in Web API session.
struct Api {
    ns: String,
    addr: SocketAddr,
    cookie: String,
}

impl Api {
    /// Logs in, retrying until the Web UI listens (bounded by [`STARTUP_TIMEOUT`]).
    fn login(ns: &str, addr: SocketAddr, proc: &mut Proc) -> Result<Api, String> {
        let mut last = String::from("no answer yet");
        let api = poll_until(STARTUP_TIMEOUT, Duration::from_millis(100), || {
            if let Some(s) = proc.try_wait() {
                return Err(format!(
                    "qbittorrent-nox exited ({s}) before its Web UI answered"
                ));
            }
            let form = [("username", USER), ("password", PASSWORD)];
            last = match webapi::request(
                ns,
                addr,
                "POST",
                "/api/v2/auth/login",
                None,
                Body::Form(&form),
            ) {
                Ok(a) if a.status == 200 && a.text() == "Ok." => {
                    let cookie = a
                        .header("set-cookie")
                        .and_then(|c| c.split(';').next())
                        .ok_or("the login answer has no cookie")?
                        .to_string();
                    return Ok(Some(Api {
                        ns: ns.to_string(),
                        addr,
                        cookie,
                    }));
                }
                Ok(a) => format!("login answered {} {:?}", a.status, a.text()),
                Err(e) => e,
            };
            Ok(None)
        })?;
        api.ok_or_else(|| {
            format!(
                "qbittorrent-nox's Web UI on {addr} did not log us in within \
                 {STARTUP_TIMEOUT:?}: {last}"
            )
        })
    }

    fn call(&self, method: &str, path: &str, body: Body) -> Result<String, String> {
        let a = webapi::request(&self.ns, self.addr, method, path, Some(&self.cookie), body)?;
        if a.status != 200 {
            return Err(format!(
                "{method} {path} answered {} {:?}",
                a.status,
                a.text()
            ));
        }
        Ok(a.text())
    }

    fn add(&self, torrent: &Path, save: &Path, seed: bool) -> Result<(), String> {
        let bytes = fs::read(torrent).map_err(|e| format!("read {}: {e}", torrent.display()))?;
        let save = save.to_str().ok_or("a save path that is not UTF-8")?;
        let skip = if seed { "true" } else { "false" };
        let fields = [
            ("savepath", save),
            ("skip_checking", skip),
            ("paused", "false"),
        ];
        let answer = self.call(
            "POST",
            "/api/v2/torrents/add",
            Body::Multipart {
                fields: &fields,
                file: ("torrents", "t.torrent", &bytes),
            },
        )?;
        if answer.trim() != "Ok." {
            return Err(format!("torrents/add answered {answer:?}"));
        }
        Ok(())
    }

    /// True once the (only) torrent is complete: every piece verified, and qBittorrent has
    /// moved it to an upload state.
    fn complete(&self) -> Result<bool, String> {
        let text = self.call("GET", "/api/v2/torrents/info", Body::None)?;
        let list: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("torrents/info: {e}: {text:?}"))?;
        let Some(t) = list.as_array().and_then(|a| a.first()) else {
            return Ok(false);
        };
        let progress = t["progress"].as_f64().unwrap_or(0.0);
        let state = t["state"].as_str().unwrap_or("");
        Ok(progress >= 1.0 && state.ends_with("UP"))
    }
}

impl Qbittorrent {
    fn run(&self, host: &Host, torrent: &Path, dir: &Path, seed: bool) -> Running {
        let profile = host.dir.join("qbt");
        let config = profile.join("qBittorrent/config");
        fs::create_dir_all(&config).expect("create qBittorrent's config dir");
        let web = SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            host.addr.port() + 10_000,
        ));
        let conf = format!(
            "[LegalNotice]\n\
             Accepted=true\n\
             \n\
             [BitTorrent]\n\
             Session\\DHTEnabled=false\n\
             Session\\LSDEnabled=false\n\
             Session\\PeXEnabled=false\n\
             Session\\BTProtocol=TCP\n\
             Session\\Port={port}\n\
             Session\\UseRandomPort=false\n\
             Session\\InterfaceAddress={ip}\n\
             Session\\QueueingSystemEnabled=false\n\
             Session\\GlobalMaxRatio=-1\n\
             Session\\DefaultSavePath={dir}\n\
             Session\\TempPathEnabled=false\n\
             Session\\AddExtensionToIncompleteFiles=false\n\
             Session\\Preallocation=false\n\
             \n\
             [Preferences]\n\
             Connection\\UPnP=false\n\
             WebUI\\Address={web_ip}\n\
             WebUI\\Port={web_port}\n\
             WebUI\\UseUPnP=false\n\
             WebUI\\Username={USER}\n\
             WebUI\\Password_PBKDF2=\"{PASSWORD_PBKDF2}\"\n\
             WebUI\\LocalHostAuth=true\n\
             WebUI\\CSRFProtection=false\n\
             WebUI\\HostHeaderValidation=false\n",
            port = host.addr.port(),
            ip = host.ip(),
            dir = dir.display(),
            web_ip = web.ip(),
            web_port = web.port(),
        );
        fs::write(config.join("qBittorrent.conf"), conf).expect("write qBittorrent.conf");

        let mut cmd = host.ns.command("qbittorrent-nox");
        cmd.arg(format!("--profile={}", profile.display()));
        let label = if seed {
            "qbittorrent-seed"
        } else {
            "qbittorrent-leech"
        };
        let mut proc = Proc::spawn(label, cmd);
        let api = Api::login(host.ns.name(), web, &mut proc)
            .and_then(|api| api.add(torrent, dir, seed).map(|()| api))
            .unwrap_or_else(|e| panic!("drive qbittorrent-nox: {e}\n{}", proc.output_tail()));
        Running {
            proc,
            done: if seed {
                Done::Exit
            } else {
                Done::Probe(Box::new(move || api.complete()))
            },
            logs: vec![profile.join("qBittorrent/data/logs/qbittorrent.log")],
        }
    }
}

impl Client for Qbittorrent {
    fn name(&self) -> &'static str {
        "qbittorrent"
    }

    fn version(&self) -> Result<String, String> {
        // "qBittorrent v4.5.2"
        let v = super::first_line_of("qbittorrent-nox", &["--version"], "qbittorrent-nox")?;
        Ok(v.replace(" v", " "))
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
