//! Child processes of a benchmark round: spawned (optionally inside a network namespace) in
//! their own process group, their stdout lines timestamped on arrival, their CPU time and
//! memory read from `/proc` while they run and from `wait4(2)`'s rusage when they end.
//!
//! A [`Child`] SIGKILLs its process group and reaps it on drop, so an error anywhere in a
//! round leaves no process behind. That core (the group spawn, group signals, the `wait4`
//! reap with rusage, the kill on drop) is `testkit::ProcGroup`, shared with the tests'
//! `Proc`; what stays here is what only a measurement needs and the tests' panicking
//! handle cannot give: errors instead of panics, arrival times on every stdout line, CPU and
//! memory sampled from /proc, and the spawn inside a network namespace.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use testkit::{Ended, ProcGroup};

use super::netns::Netns;
use super::util::wait_until;

/// One stdout line and when the harness read it.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: SystemTime,
    pub text: String,
}

/// How a child ended.
#[derive(Clone, Debug)]
pub struct Exit {
    /// Exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: SystemTime,
    /// User + system CPU seconds over the child's whole life (all threads).
    pub cpu_secs: f64,
    /// Peak resident set (includes mapped file pages), KiB.
    pub max_rss_kib: u64,
}

impl Exit {
    fn from_ended(e: &Ended) -> Exit {
        Exit {
            code: e.status.code(),
            signal: e.status.signal(),
            at: e.at,
            cpu_secs: e.cpu_secs,
            max_rss_kib: e.max_rss_kib,
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => "unknown".into(),
        }
    }
}

/// Memory figures read from /proc/PID/status, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    /// VmHWM: peak resident set, file-backed pages included.
    pub peak_rss_kib: u64,
    /// RssAnon: anonymous resident memory now (heap, stacks; not the mmapped payload).
    pub anon_kib: u64,
}

pub struct Child {
    pub label: String,
    pub spawned_at: SystemTime,
    group: ProcGroup,
    lines: Arc<Mutex<Vec<Line>>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    exit: Option<Exit>,
    /// Highest RssAnon seen by [`Child::sample_mem`].
    pub peak_anon_kib: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

impl Child {
    /// Spawns `cmd` in a new process group, inside `netns` if given. With `echo`, stderr lines
    /// are copied to our stderr prefixed with the label.
    pub fn spawn(
        label: &str,
        mut cmd: Command,
        netns: Option<&Netns>,
        echo: bool,
    ) -> Result<Child> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let ns_file = match netns {
            Some(ns) => Some(
                fs::File::open(ns.path())
                    .with_context(|| format!("open namespace {}", ns.name()))?,
            ),
            None => None,
        };
        if let Some(f) = &ns_file {
            let fd = f.as_raw_fd();
            // SAFETY: setns(2) is async-signal-safe, and the fd stays open in the parent until
            // spawn returns (the child's copy is closed by exec through O_CLOEXEC).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let spawned_at = SystemTime::now();
        let mut group =
            ProcGroup::spawn(&mut cmd).with_context(|| format!("spawn {label}: {cmd:?}"))?;
        drop(ns_file);
        let child = group.child_mut();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        {
            let lines = lines.clone();
            let out = child.stdout.take().unwrap();
            thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(text) = l else { break };
                    lines.lock().unwrap().push(Line {
                        at: SystemTime::now(),
                        text,
                    });
                }
            });
        }
        {
            let tail = stderr_tail.clone();
            let err = child.stderr.take().unwrap();
            let label = label.to_string();
            thread::spawn(move || {
                for l in BufReader::new(err).lines() {
                    let Ok(text) = l else { break };
                    if echo {
                        eprintln!("[{label}] {text}");
                    }
                    let mut t = tail.lock().unwrap();
                    if t.len() == 30 {
                        t.pop_front();
                    }
                    t.push_back(text);
                }
            });
        }
        Ok(Child {
            label: label.to_string(),
            spawned_at,
            group,
            lines,
            stderr_tail,
            exit: None,
            peak_anon_kib: 0,
        })
    }

    pub fn pid(&self) -> u32 {
        self.group.pid()
    }

    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap().clone()
    }

    /// Stdout lines that are JSON objects, with their arrival time.
    pub fn json(&self) -> Vec<(SystemTime, Value)> {
        self.lines()
            .into_iter()
            .filter_map(|l| {
                serde_json::from_str::<Value>(&l.text)
                    .ok()
                    .filter(Value::is_object)
                    .map(|v| (l.at, v))
            })
            .collect()
    }

    /// The first JSON line whose `event` field is `name`.
    pub fn event(&self, name: &str) -> Option<Value> {
        self.json()
            .into_iter()
            .map(|(_, v)| v)
            .find(|v| v["event"] == name)
    }

    /// Last lines of stdout and stderr, for error messages.
    pub fn tail(&self) -> String {
        let out = self.lines();
        let out: Vec<String> = out[out.len().saturating_sub(10)..]
            .iter()
            .map(|l| l.text.clone())
            .collect();
        let err: Vec<String> = self.stderr_tail.lock().unwrap().iter().cloned().collect();
        format!(
            "{} stdout:\n  {}\n{} stderr:\n  {}",
            self.label,
            out.join("\n  "),
            self.label,
            err.join("\n  ")
        )
    }

    /// Reaps the child if it has exited (non-blocking).
    pub fn poll_exit(&mut self) -> Option<&Exit> {
        if self.exit.is_none() {
            // A wait4 error (ECHILD) cannot happen for our own unreaped child; if it did,
            // the child counts as running and the round's own timeout ends it.
            if let Ok(Some(e)) = self.group.try_wait() {
                self.exit = Some(Exit::from_ended(e));
            }
        }
        self.exit.as_ref()
    }

    pub fn exit(&self) -> Option<&Exit> {
        self.exit.as_ref()
    }

    /// CPU seconds used so far: from /proc while running, from rusage once reaped.
    pub fn cpu_secs(&mut self) -> f64 {
        if let Some(e) = self.poll_exit() {
            return e.cpu_secs;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid())) else {
            return 0.0;
        };
        // Fields after "(comm) ": state is index 0, utime 11, stime 12 (proc(5) fields 14, 15).
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / clock_ticks()
    }

    /// Reads VmHWM and RssAnon and keeps the highest RssAnon seen.
    pub fn sample_mem(&mut self) -> Mem {
        let Ok(status) = fs::read_to_string(format!("/proc/{}/status", self.pid())) else {
            return Mem::default();
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let m = Mem {
            peak_rss_kib: field("VmHWM:"),
            anon_kib: field("RssAnon:"),
        };
        self.peak_anon_kib = self.peak_anon_kib.max(m.anon_kib);
        m
    }

    /// True when some socket of this process's network namespace listens on TCP `port`.
    pub fn listens_on(&self, port: u16) -> bool {
        testkit::listening_in(self.pid(), port)
    }

    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .group
            .child_mut()
            .stdin
            .as_mut()
            .context("stdin not piped")?;
        writeln!(stdin, "{line}").with_context(|| format!("write to {}", self.label))?;
        stdin.flush()?;
        Ok(())
    }

    /// Signals the process group (nothing once the child was reaped).
    pub fn signal(&self, sig: libc::c_int) {
        self.group.signal(sig);
    }

    /// Waits for an event line named `event`; fails if the child exits first.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<Value> {
        let mut found = None;
        wait_until(
            timeout,
            &format!("{} to print {event:?}", self.label),
            || {
                if let Some(v) = self.event(event) {
                    found = Some(v);
                    return Ok(true);
                }
                if let Some(e) = self.poll_exit() {
                    let d = e.describe();
                    bail!(
                        "{} ended ({d}) before printing {event:?}\n{}",
                        self.label,
                        self.tail()
                    );
                }
                Ok(false)
            },
        )?;
        Ok(found.unwrap())
    }

    /// Waits for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Exit> {
        wait_until(timeout, &format!("{} to exit", self.label), || {
            Ok(self.poll_exit().is_some())
        })
        .with_context(|| self.tail())?;
        // Let the stdout reader reach EOF so the last line (a summary) is in.
        thread::sleep(Duration::from_millis(20));
        Ok(self.exit.clone().unwrap())
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL.
    pub fn terminate(&mut self, timeout: Duration) -> Exit {
        if self.poll_exit().is_none() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(timeout).is_err() {
                self.kill();
            }
        }
        self.exit.clone().unwrap()
    }

    pub fn kill(&mut self) {
        if self.poll_exit().is_none()
            && let Ok(e) = self.group.kill()
        {
            self.exit = Some(Exit::from_ended(e));
        }
    }
}
// No Drop here: the `ProcGroup` SIGKILLs the group and reaps the child when it drops.
