//! Whole-system test support: a real `instream serve` spawned by PID on 127.0.0.1 (port 0
//! first, the same port after a restart), killed on Drop; the CLI run as a subprocess with
//! an isolated config dir; bounded waits with a message. The host agent is
//! `fake_agent.py` beside this file until `instream-peer deploy` exists.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-0123456789";

/// Polls `cond` every 50 ms until it holds or `timeout` passes; panics with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A temp dir with a token file and an inventory of `hosts` hosts spread over `fabrics`
    /// fabrics (host-1 in f1, host-2 in f2, ...).
    pub fn new(hosts: usize, fabrics: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let inv = instream::dispatch::inventory::Inventory::generated(hosts, fabrics);
        std::fs::write(dir.path().join("inventory.toml"), inv.to_toml()).unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn host_root(&self, host: &str) -> PathBuf {
        self.path().join("hosts").join(host)
    }

    /// The version the fake agent last activated on `host`.
    pub fn current(&self, host: &str) -> Option<String> {
        std::fs::read_to_string(self.host_root(host).join("current")).ok()
    }

    pub fn lines_of(&self, host: &str, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.host_root(host).join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts `instream serve` on `listen` (e.g. "127.0.0.1:0") with `env` for the agents.
    pub fn serve(&self, listen: &str, env: &[(&str, String)]) -> Server {
        let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_agent.py");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_instream"));
        cmd.arg("serve")
            .args(["--listen", listen])
            .arg("--db")
            .arg(self.path().join("instream.db"))
            .arg("--inventory")
            .arg(self.path().join("inventory.toml"))
            .arg("--token-file")
            .arg(self.path().join("token"))
            .arg("--hosts-root")
            .arg(self.path().join("hosts"))
            .args(["--agent", "/usr/bin/python3", "--agent-arg"])
            .arg(agent)
            .env("INSTREAM_CONFIG_DIR", self.path().join("config"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path().join("serve.log"))
                    .unwrap(),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn instream serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("instream serve printed no address; log: {}", self.log()));
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log: {}", self.log()))
            .to_string();
        Server { child, url }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("serve.log")).unwrap_or_default()
    }

    /// Runs the CLI against `server` with the test token.
    pub fn cli(&self, server: &Server, args: &[&str]) -> Output {
        self.cli_with(server, TOKEN, args)
    }

    pub fn cli_with(&self, server: &Server, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_instream"))
            .args(args)
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

    /// Publishes a small generated product version through the CLI.
    pub fn publish(&self, server: &Server, product: &str, version: &str) {
        let src = self.path().join(format!("src-{product}-{version}"));
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(
            src.join("bin/app"),
            format!("{product} {version}\n").repeat(1000),
        )
        .unwrap();
        std::fs::write(src.join("README"), "hello").unwrap();
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

    /// Waits until the deployment's state is `state`.
    pub fn wait_state(&self, server: &Server, id: &str, state: &str, timeout: Duration) -> Value {
        wait_for(timeout, &format!("deployment {id} to be {state}"), || {
            let v = self.status_json(server, id);
            (v["state"] == state).then_some(v)
        })
    }
}

pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
