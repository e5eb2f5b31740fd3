//! Whole-system test support: real processes spawned by PID and killed on Drop, bound to
//! 127.0.0.1 port 0 (the same port after a restart), the CLI run as a subprocess with an
//! isolated config dir, bounded waits with a message (the process handle, its process-group
//! kill, the waits and the ports are `testkit`'s, re-exported here).
//!
//! Two kinds of environment:
//! - [`Env::fleet`]: the real system. `instream-tracker` (admin token), an origin
//!   (`instream-seed serve --watch`), and `instream serve` whose local dispatcher runs the
//!   real host agent, `instream-peer deploy`, per host; the publisher key lives in the
//!   isolated config dir and the server trusts it.
//! - [`Env::new`]: control-server tests that need hosts that misbehave on purpose (never
//!   answer, ...): the agent is `fake_agent.py` beside this file.
//!
//! The engine binaries are built by `cargo build -p instream-engine -p instream-tracker
//! --bins` once per test process (a no-op when `cargo test --workspace` already built them),
//! so `cargo test -p instream` works on its own too.
#![allow(dead_code)]

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Each test file uses a different subset.
#[allow(unused_imports)]
pub use testkit::{Proc, free_port, free_ports, needs_root, poll_for, poll_until, wait_for};

pub const TOKEN: &str = "test-token-0123456789";
pub const TRACKER_TOKEN: &str = "tracker-token-0123456789";

/// Where `.ci/run` keeps the tools the tests use (salt venv, Kafka broker), outside any
/// clone: `$INSTREAM_CI_CACHE`, or /var/cache/instream-ci.
pub fn ci_cache() -> PathBuf {
    std::env::var_os("INSTREAM_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/instream-ci"))
}

/// Writes a credential file as the programs require them: mode 0600.
pub fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Records one row of docs/RELIABILITY.md's table, written by a fault test once it has
/// passed: what was done to the system, how the deployment ended, what was lost. `cargo run
/// -p instream-bench --bin reliability_table` puts the rows into docs/RELIABILITY.md.
pub fn reliability_row(fault: &str, outcome: &str, lost: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    std::fs::create_dir_all(&dir).expect("create the reliability row directory");
    let slug: String = fault
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    std::fs::write(
        dir.join(format!("{slug}.md")),
        format!("| {fault} | {outcome} | {lost} |\n"),
    )
    .expect("write a reliability row");
}

/// The directory holding `instream` (target/debug or target/release).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_instream"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Path of an engine or tracker program: a link named after it to `instream`, which is
/// every program when started under its name (see `src/main.rs`), so the tests run exactly
/// the code this test build compiled. Links are made by rename, so parallel test processes
/// never see a half-made one.
pub fn engine_bin(name: &str) -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_instream"));
    let dir = bin_dir().join("multicall");
    std::fs::create_dir_all(&dir).expect("create the multi-call link directory");
    let link = dir.join(name);
    if std::fs::read_link(&link).ok().as_deref() != Some(exe) {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(exe, &tmp).expect("link a program name to instream");
        std::fs::rename(&tmp, &link).expect("move the program link into place");
    }
    link
}

/// How long a program may take to print the line that says where it listens.
const START: Duration = Duration::from_secs(30);

/// Waits (bounded) for the first line of `lines` that `pick` accepts; panics early, with
/// `log`, if `proc` exits first.
fn first_line(
    proc: &mut Proc,
    lines: fn(&Proc) -> Vec<String>,
    log: impl Fn() -> String,
    pick: impl Fn(&str) -> Option<String>,
) -> String {
    let what = format!("{} to say where it listens", proc.label());
    wait_for(START, &what, || {
        if let Some(v) = lines(proc).iter().find_map(|l| pick(l)) {
            return Some(v);
        }
        if let Some(st) = proc.try_wait() {
            panic!(
                "{} exited ({st}) before starting; log:\n{}",
                proc.label(),
                log()
            );
        }
        None
    })
}

/// Tracker and origin of a real fleet.
pub struct Fleet {
    pub tracker_url: String,
    pub origin_dir: PathBuf,
    _tracker: Proc,
    _origin: Proc,
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub fleet: Option<Fleet>,
    /// Process groups of the control servers killed alone ([`Server::kill9`]): their agents
    /// live on, as on real hosts, until the `Env` drops.
    crashed: Arc<Mutex<Vec<u32>>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        // Every other server's group went with its `Server`.
        for pgid in self.crashed.lock().unwrap().iter() {
            testkit::kill_group(*pgid);
        }
    }
}

impl Env {
    fn base(hosts: usize, fabrics: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("token"), &format!("{TOKEN}\n"));
        let inv = instream::dispatch::inventory::Inventory::generated(hosts, fabrics);
        std::fs::write(dir.path().join("inventory.toml"), inv.to_toml()).unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        dir
    }

    /// A control server whose hosts are simulated by `fake_agent.py` (see the header).
    pub fn new(hosts: usize, fabrics: usize) -> Self {
        Self {
            dir: Self::base(hosts, fabrics),
            fleet: None,
            crashed: Arc::default(),
        }
    }

    /// The real system: tracker, origin, and (with [`Env::serve`]) a control server whose
    /// agents are `instream-peer deploy`. Hosts are host-1 in f1, host-2 in f2, ...
    pub fn fleet(hosts: usize, fabrics: usize) -> Self {
        let dir = Self::base(hosts, fabrics);
        let p = dir.path();
        write_private(&p.join("tracker.token"), &format!("{TRACKER_TOKEN}\n"));
        instream::cli::publish::load_or_create_key(&p.join("config/publisher.key")).unwrap();

        let mut cmd = Command::new(engine_bin("instream-tracker"));
        cmd.args(["--udp", "none", "--http", "127.0.0.1:0", "--interval", "1"])
            .arg("--admin-token-file")
            .arg(p.join("tracker.token"))
            .env("RUST_LOG", "info");
        let mut tracker = Proc::spawn("instream-tracker", cmd);
        let addr = first_line(&mut tracker, Proc::stderr_lines, String::new, |l| {
            l.contains("HTTP tracker listening")
                .then(|| l.split("addr=").nth(1))
                .flatten()
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        });

        let origin_dir = p.join("origin");
        let log = std::fs::File::create(p.join("origin.log")).unwrap();
        let origin = Proc::adopt(
            "instream-seed",
            Command::new(engine_bin("instream-seed"))
                .args(["serve", "--listen", "127.0.0.1:0", "--watch"])
                .arg(&origin_dir)
                .env("RUST_LOG", "info")
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn instream-seed"),
        );
        Self {
            dir,
            fleet: Some(Fleet {
                tracker_url: format!("http://{addr}/announce"),
                origin_dir,
                _tracker: tracker,
                _origin: origin,
            }),
            crashed: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn host_root(&self, host: &str) -> PathBuf {
        self.path().join("hosts").join(host)
    }

    /// The version active on `host`: the real agent's `current` link of product `app`,
    /// or the fake agent's `current` file.
    pub fn current(&self, host: &str) -> Option<String> {
        if self.fleet.is_some() {
            std::fs::read_link(self.host_root(host).join("products/app/current"))
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        } else {
            std::fs::read_to_string(self.host_root(host).join("current")).ok()
        }
    }

    /// Versions `app` was started at on `host`, in order (its `start` hook's log for the
    /// real agent; the fake agent's `history` file).
    pub fn history(&self, host: &str) -> Vec<String> {
        let file = if self.fleet.is_some() {
            self.host_root(host).join("products/app/history")
        } else {
            self.host_root(host).join("history")
        };
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn lines_of(&self, host: &str, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.host_root(host).join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts `instream serve` on `listen` (e.g. "127.0.0.1:0") with `env` for the agents
    /// (and through them, the hooks). The server leads its own process group, so its
    /// agents die with the test.
    pub fn serve(&self, listen: &str, env: &[(&str, String)]) -> Server {
        self.serve_with_args(listen, env, &[])
    }

    /// [`Env::serve`] with extra `serve` arguments (e.g. `--reporter kafka --kafka ...`),
    /// plain HTTP (`--insecure-http`).
    pub fn serve_with_args(&self, listen: &str, env: &[(&str, String)], args: &[String]) -> Server {
        self.serve_inner(listen, env, args, None)
    }

    /// [`Env::serve_with_args`] over TLS: `serve --tls-cert --tls-key` from `tls`, whose CA
    /// the agents (`--agent-ca`) and [`Env::cli`] (`INSTREAM_CA`) check the server with.
    pub fn serve_tls(
        &self,
        tls: &instream::up::ca::LocalCa,
        env: &[(&str, String)],
        args: &[String],
    ) -> Server {
        self.serve_inner("127.0.0.1:0", env, args, Some(tls))
    }

    fn serve_inner(
        &self,
        listen: &str,
        env: &[(&str, String)],
        args: &[String],
        tls: Option<&instream::up::ca::LocalCa>,
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_instream"));
        cmd.arg("serve").args(args);
        match tls {
            Some(t) => cmd
                .arg("--tls-cert")
                .arg(&t.cert)
                .arg("--tls-key")
                .arg(&t.key)
                .arg("--agent-ca")
                .arg(&t.ca),
            None => cmd.arg("--insecure-http"),
        };
        cmd.args(["--listen", listen])
            .arg("--db")
            .arg(self.path().join("instream.db"))
            .arg("--inventory")
            .arg(self.path().join("inventory.toml"))
            .arg("--token-file")
            .arg(self.path().join("token"))
            .arg("--hosts-root")
            .arg(self.path().join("hosts"))
            .env("INSTREAM_CONFIG_DIR", self.path().join("config"))
            .env("RUST_LOG", "info")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path().join("serve.log"))
                    .unwrap(),
            );
        match &self.fleet {
            Some(f) => {
                cmd.arg("--agent")
                    .arg(engine_bin("instream-peer"))
                    .arg("--trusted-key")
                    .arg(self.path().join("config/publisher.pub"))
                    .args(["--tracker", &f.tracker_url])
                    .arg("--tracker-token-file")
                    .arg(self.path().join("tracker.token"))
                    .arg("--origin-dir")
                    .arg(&f.origin_dir)
                    .args(["--agent-seed-for", "2"]);
            }
            None => {
                let agent =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_agent.py");
                cmd.args(["--agent", "/usr/bin/python3", "--agent-arg"])
                    .arg(agent);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::adopt("instream serve", cmd.spawn().expect("spawn instream serve"));
        let line = first_line(
            &mut proc,
            Proc::stdout_lines,
            || self.log(),
            |l| Some(l.to_string()),
        );
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log: {}", self.log()))
            .to_string();
        Server {
            proc,
            url,
            ca: tls.map(|t| t.ca.clone()),
            crashed: self.crashed.clone(),
            killed_alone: false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("serve.log")).unwrap_or_default()
    }

    /// Every host's agent log, for failure messages.
    pub fn agent_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.path().join("hosts")) {
            for e in rd.flatten() {
                let log = std::fs::read_to_string(e.path().join("agent.log")).unwrap_or_default();
                out.push_str(&format!("--- {}\n{log}", e.file_name().to_string_lossy()));
            }
        }
        out
    }

    /// Runs the CLI against `server` with the test token.
    pub fn cli(&self, server: &Server, args: &[&str]) -> Output {
        self.cli_with(server, TOKEN, args)
    }

    pub fn cli_with(&self, server: &Server, token: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_instream"));
        match &server.ca {
            Some(ca) => cmd.env("INSTREAM_CA", ca),
            None => cmd.env_remove("INSTREAM_CA"),
        };
        cmd.args(args)
            .env("INSTREAM_SERVER", &server.url)
            .env("INSTREAM_TOKEN", token)
            .env("INSTREAM_CONFIG_DIR", self.path().join("config"))
            .stdin(Stdio::null())
            .output()
            .expect("run instream")
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn ok(&self, server: &Server, args: &[&str]) -> String {
        let out = self.cli(server, args);
        assert!(
            out.status.success(),
            "instream {args:?} failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI and expects failure with one `error: ` line; returns that line.
    pub fn fails(&self, server: &Server, args: &[&str]) -> String {
        let out = self.cli(server, args);
        assert!(!out.status.success(), "instream {args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one-line error expected, got {err:?}");
        assert!(lines[0].starts_with("error: "), "{err:?}");
        lines[0].to_string()
    }

    /// Publishes a small generated version of `product` whose hooks: `start` appends the
    /// version to `products/<product>/history` (and, if `$INSTREAM_HOOK_GATE` is set, first waits up to
    /// 60 s for that file), `health` runs `health` (a shell snippet; default: healthy).
    pub fn publish_with(&self, server: &Server, product: &str, version: &str, health: &str) {
        let src = self.path().join(format!("src-{product}-{version}"));
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::create_dir_all(src.join(".instream/hooks")).unwrap();
        // About 1.3 MiB: several pieces, so hosts really trade through the swarm.
        std::fs::write(
            src.join("bin/app"),
            format!("{product} {version}\n").repeat(200_000),
        )
        .unwrap();
        std::fs::write(src.join("README"), "hello").unwrap();
        let start = "#!/bin/sh\n\
             if [ -n \"$INSTREAM_HOOK_GATE\" ]; then i=0; while [ ! -f \"$INSTREAM_HOOK_GATE\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi\n\
             echo \"$INSTREAM_VERSION\" >> ../../history\n";
        for (name, body) in [
            ("start", start.to_string()),
            ("health", format!("#!/bin/sh\n{health}\n")),
        ] {
            let p = src.join(".instream/hooks").join(name);
            std::fs::write(&p, body).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = self.ok(
            server,
            &[
                "publish",
                "-p",
                product,
                "-v",
                version,
                src.to_str().unwrap(),
            ],
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "registered", "{out}");
    }

    /// [`Env::publish_with`] a healthy version.
    pub fn publish(&self, server: &Server, product: &str, version: &str) {
        self.publish_with(server, product, version, "exit 0");
    }

    /// Submits a deployment; returns its id (checking the contract output).
    pub fn deploy(&self, server: &Server, args: &[&str]) -> String {
        let mut all = vec!["deploy"];
        all.extend_from_slice(args);
        let out = self.ok(server, &all);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["status"], "submitted");
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(
            out.trim(),
            format!("{{\"status\":\"submitted\",\"id\":\"{id}\"}}")
        );
        id
    }

    /// The deployment as `status --json` prints it.
    pub fn status_json(&self, server: &Server, id: &str) -> Value {
        let out = self.ok(server, &["status", "-t", id, "--json"]);
        serde_json::from_str(&out).unwrap()
    }

    /// Hosts of a deployment in one state (`success`, `failure`, `pending`), as JSON.
    pub fn hosts_json(&self, server: &Server, id: &str, state: &str) -> Vec<Value> {
        let out = self.ok(server, &["status", "-t", id, "-m", state, "--json"]);
        serde_json::from_str(&out).unwrap()
    }

    /// Waits until the deployment's state is `state`.
    pub fn wait_state(&self, server: &Server, id: &str, state: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let got = poll_for(timeout, Duration::from_millis(100), || {
            last = self.status_json(server, id);
            (last["state"] == state).then(|| last.clone())
        });
        got.unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for deployment {id} to be {state}; it is {last}\nagents:\n{}",
                self.agent_logs()
            )
        })
    }
}

/// `instream serve`, leading its own process group (its agents are members): the group is
/// SIGKILLed when it drops, whether the server still runs or exited by itself;
/// [`Server::kill9`] kills the server alone and leaves the group to the `Env`.
pub struct Server {
    proc: Proc,
    crashed: Arc<Mutex<Vec<u32>>>,
    killed_alone: bool,
    pub url: String,
    /// The CA of its TLS certificate (`None`: plain HTTP).
    pub ca: Option<PathBuf>,
}

impl Server {
    pub fn addr(&self) -> String {
        let url = self.url.as_str();
        url.strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url)
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits up to `within` for the server to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        self.proc.wait_exit(within)
    }

    /// SIGKILL, as a crash would (its agents live on, as on real hosts, until the `Env`
    /// drops).
    pub fn kill9(mut self) {
        self.proc.kill_leader();
        self.crashed.lock().unwrap().push(self.proc.pid());
        self.killed_alone = true;
    }

    /// A raw HTTP request with an optional token: (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let client = reqwest::blocking::Client::new();
        let mut req = match method {
            "GET" => client.get(format!("{}{path}", self.url)),
            "POST" => client.post(format!("{}{path}", self.url)),
            m => panic!("method {m}"),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().expect("HTTP request");
        let status = resp.status().as_u16();
        (status, resp.text().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.killed_alone {
            return;
        }
        if self.proc.try_wait().is_none() {
            self.proc.kill();
        } else {
            // Exited by itself: its agents may live on in its group.
            testkit::kill_group(self.proc.pid());
        }
    }
}
