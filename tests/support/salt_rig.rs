//! A real Salt installation on loopback for the Salt dispatcher's tests: one salt-master,
//! salt-api (rest_cherrypy, no TLS, `sharedsecret` eauth) and N salt-minions with custom
//! grains, all rooted in one temporary directory and run from a PyPI venv.
//!
//! Every daemon leads its own process group (so its forked workers, and the agents a
//! minion's `cmd.run` jobs start, are in it); [`SaltRig`]'s `Drop` stops the groups by PID,
//! minions first, also when the test panics. Salt cannot bind port 0, so the ports are
//! picked free just before start (`testkit::free_ports`).
//!
//! The venv is `venv-salt-VERSION` in the CI cache ([`crate::support::ci_cache`]; `.ci/run` creates it; `INSTREAM_SALT_VENV` points
//! elsewhere); if it is missing it is created here with `python3 -m venv` and pip (about
//! 1.5 min, needs PyPI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Proc, free_ports, poll_until};
use testkit::describe;

pub const SALT_VERSION: &str = "3008.4";
pub const CHERRYPY_VERSION: &str = "18.10.0";
pub const SALT_USER: &str = "instream";
pub const SALT_SECRET: &str = "salt-shared-secret-for-tests";

/// A minion: id, fabric grain, osmajorrelease grain.
pub type MinionSpec<'a> = (&'a str, &'a str, &'a str);

pub struct SaltRig {
    /// Root of everything Salt writes.
    pub dir: tempfile::TempDir,
    pub api_url: String,
    /// File holding [`SALT_SECRET`].
    pub secret_file: PathBuf,
    minions: Vec<String>,
    /// The daemons in start order, each labelled with its name.
    procs: Vec<Proc>,
}

/// The venv with salt and cherrypy, created if missing.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("INSTREAM_SALT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::support::ci_cache().join(format!("venv-salt-{SALT_VERSION}")));
    let ready = |v: &Path| {
        Command::new(v.join("bin/python"))
            .args([
                "-c",
                &format!("import salt.version, cherrypy; assert salt.version.__version__ == {SALT_VERSION:?}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&venv) {
        return venv;
    }
    eprintln!(
        "creating the salt venv {} (salt=={SALT_VERSION} from PyPI, about 1.5 min)",
        venv.display()
    );
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e} (is python3 installed?)"));
        assert!(
            out.status.success(),
            "{what} failed (python3-venv and PyPI access are needed; .ci/run installs both):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            &format!("salt=={SALT_VERSION}"),
            &format!("cherrypy=={CHERRYPY_VERSION}"),
        ]),
        "pip install salt",
    );
    assert!(ready(&venv), "{} has no usable salt", venv.display());
    venv
}

fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl SaltRig {
    /// Starts master, salt-api and `minions`, and waits (bounded) until salt-api logs in
    /// and every minion answers `test.ping` through it.
    pub fn start(minions: &[MinionSpec]) -> SaltRig {
        let venv = venv();
        let t0 = Instant::now();
        // Short path: Salt's unix sockets live under it (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("salt")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let [publish, ret, api] = free_ports(3)[..] else {
            unreachable!("free_ports(3) gives three ports")
        };
        let user = user_name();
        std::fs::create_dir_all(d.join("etc/master")).unwrap();
        std::fs::create_dir_all(d.join("logs")).unwrap();
        std::fs::write(
            d.join("etc/master/master"),
            format!(
                "root_dir: {root}/root/master
user: {user}
interface: 127.0.0.1
ipv6: False
publish_port: {publish}
ret_port: {ret}
auto_accept: True
worker_threads: 2
log_level_logfile: info
enable_fqdns_grains: False
netapi_enable_clients: [local, local_async, runner]
sharedsecret: {SALT_SECRET}
external_auth:
  sharedsecret:
    {SALT_USER}:
      - '.*'
      - '@runner'
      - '@jobs'
rest_cherrypy:
  host: 127.0.0.1
  port: {api}
  disable_ssl: True
",
                root = d.display()
            ),
        )
        .unwrap();
        for (id, fabric, osmr) in minions {
            std::fs::create_dir_all(d.join("etc").join(id)).unwrap();
            std::fs::write(
                d.join("etc").join(id).join("minion"),
                format!(
                    "id: {id}
root_dir: {root}/root/{id}
user: {user}
master: 127.0.0.1
master_port: {ret}
publish_port: {publish}
ipv6: False
log_level_logfile: info
acceptance_wait_time: 1
acceptance_wait_time_max: 2
random_reauth_delay: 0
recon_default: 200
recon_max: 2000
enable_fqdns_grains: False
enable_gpu_grains: False
grains:
  fabric: {fabric}
  osmajorrelease: {osmr}
",
                    root = d.display()
                ),
            )
            .unwrap();
        }
        let secret_file = d.join("salt.secret");
        std::fs::write(&secret_file, format!("{SALT_SECRET}\n")).unwrap();

        let mut rig = SaltRig {
            api_url: format!("http://127.0.0.1:{api}"),
            secret_file,
            minions: minions.iter().map(|m| m.0.to_string()).collect(),
            procs: Vec::new(),
            dir,
        };
        let bin = venv.join("bin");
        let master_cfg = rig.dir.path().join("etc/master");
        rig.spawn("master", bin.join("salt-master"), &master_cfg);
        rig.spawn("api", bin.join("salt-api"), &master_cfg);
        for (id, _, _) in minions {
            let cfg = rig.dir.path().join("etc").join(id);
            rig.spawn(&format!("minion-{id}"), bin.join("salt-minion"), &cfg);
        }
        rig.wait_ready(Duration::from_secs(90));
        eprintln!(
            "salt master, salt-api and {} minions ready in {:.1?}",
            minions.len(),
            t0.elapsed()
        );
        rig
    }

    fn spawn(&mut self, name: &str, program: PathBuf, config_dir: &Path) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.path().join(format!("logs/{name}.out"))).unwrap();
        let child = Command::new(&program)
            .arg("-c")
            .arg(config_dir)
            .args(["-l", "warning"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        self.procs.push(Proc::adopt(name, child));
    }

    /// Logs in to salt-api; `None` while it is not up (or refuses).
    pub fn token(&self) -> Option<String> {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/login", self.api_url))
            .header("Accept", "application/json")
            .json(&serde_json::json!({"username": SALT_USER, "password": SALT_SECRET, "eauth": "sharedsecret"}))
            .timeout(Duration::from_secs(10))
            .send()
            .ok()?;
        let v: serde_json::Value = resp.json().ok()?;
        v["return"][0]["token"].as_str().map(str::to_string)
    }

    /// Posts one lowstate chunk with `token`; the first element of `return`.
    pub fn call(&self, token: &str, chunk: serde_json::Value) -> Option<serde_json::Value> {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/", self.api_url))
            .header("Accept", "application/json")
            .header("X-Auth-Token", token)
            .json(&serde_json::json!([chunk]))
            .timeout(Duration::from_secs(30))
            .send()
            .ok()?;
        let v: serde_json::Value = resp.json().ok()?;
        Some(v["return"][0].clone())
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let mut token = None;
        let mut answering = Vec::new();
        let mut want = self.minions.clone();
        want.sort();
        // A ping round trip takes up to its 3 s timeout: poll every 500 ms at most.
        let ready = poll_until(timeout, Duration::from_millis(500), || {
            let exited = self.procs.iter_mut().find_map(|p| {
                p.try_wait()
                    .map(|st| format!("{} ({})", p.label(), describe(st)))
            });
            if let Some(which) = exited {
                return Err(which);
            }
            if token.is_none() {
                token = self.token();
            }
            if let Some(t) = &token {
                let ping = serde_json::json!({"client": "local", "tgt": "*", "fun": "test.ping", "timeout": 3});
                if let Some(r) = self.call(t, ping).and_then(|r| r.as_object().cloned()) {
                    answering = r
                        .iter()
                        .filter(|(_, v)| **v == serde_json::Value::Bool(true))
                        .map(|(k, _)| k.clone())
                        .collect();
                    answering.sort();
                    if answering == want {
                        return Ok(Some(()));
                    }
                }
            }
            Ok(None)
        });
        match ready {
            Ok(Some(())) => {}
            Err(which) => panic!("salt {which} exited during start\n{}", self.logs()),
            Ok(None) => panic!(
                "salt not ready after {timeout:?}: salt-api login {}, minions answering {answering:?} of {want:?}\n{}",
                if token.is_some() { "ok" } else { "failing" },
                self.logs()
            ),
        }
    }

    /// The last lines of every daemon's output and log, for failure messages.
    pub fn logs(&self) -> String {
        let d = self.dir.path();
        let mut files: Vec<PathBuf> = std::fs::read_dir(d.join("logs"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.push(d.join("root/master/var/log/salt/master"));
        files.push(d.join("root/master/var/log/salt/api"));
        for m in &self.minions {
            files.push(d.join(format!("root/{m}/var/log/salt/minion")));
        }
        let mut out = String::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!("--- {}\n{}\n", f.display(), tail.join("\n")));
        }
        out
    }
}

impl Drop for SaltRig {
    fn drop(&mut self) {
        // Minions (and the agents their jobs run) first, master last: SIGTERM to each
        // daemon's group, up to 5 s, then SIGKILL to what is left (forked workers).
        for p in self.procs.iter_mut().rev() {
            p.stop(Duration::from_secs(5));
        }
    }
}
