//! A child process for a test: its own process group (SIGKILLed and reaped on drop, by the
//! [`ProcGroup`] core it wraps), its output collected line by line, bounded waits for its
//! exit or its JSON events. Unlike the core, it panics with the process's output on any
//! failure, as a test should.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::group::ProcGroup;
use crate::wait::wait_for;

/// One child process in its own process group, with its output collected line by line.
pub struct Proc {
    label: String,
    group: ProcGroup,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The stdout and stderr reader threads; finished once their pipe reached EOF.
    readers: Vec<thread::JoinHandle<()>>,
}

fn collect_lines(
    src: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    echo: Option<String>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        // A line ends at '\n' or at '\r': a progress line that a program rewrites in place
        // (transmission-cli) arrives as one line per update instead of one line at exit.
        let mut reader = BufReader::new(src);
        let mut line = Vec::new();
        let flush = |line: &mut Vec<u8>| {
            if line.is_empty() {
                return;
            }
            let text = String::from_utf8_lossy(line).into_owned();
            line.clear();
            if let Some(label) = &echo {
                eprintln!("[{label}] {text}");
            }
            sink.lock().unwrap().push(text);
        };
        loop {
            let buf = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(buf) => buf,
            };
            let n = buf.len();
            for &b in buf {
                if b == b'\n' || b == b'\r' {
                    flush(&mut line);
                } else {
                    line.push(b);
                }
            }
            reader.consume(n);
        }
        flush(&mut line);
    })
}

impl Proc {
    /// Spawns `cmd` with piped stdin/stdout/stderr in a new process group. Set
    /// `INSTREAM_TEST_ECHO=1` to see every line as it arrives.
    pub fn spawn(label: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let group =
            ProcGroup::spawn(&mut cmd).unwrap_or_else(|e| panic!("spawn {label} ({cmd:?}): {e}"));
        Proc::with_group(label, group)
    }

    /// Takes over a child the caller spawned its own way (a log file for its output, its
    /// stdout read by the caller): the stdout and stderr it still has piped are collected,
    /// and it is killed on drop like any `Proc` (with its process group if it leads one).
    pub fn adopt(label: &str, child: Child) -> Proc {
        Proc::with_group(label, ProcGroup::adopt(child))
    }

    fn with_group(label: &str, mut group: ProcGroup) -> Proc {
        let echo = std::env::var_os("INSTREAM_TEST_ECHO").map(|_| label.to_string());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = group.child_mut().stdout.take() {
            readers.push(collect_lines(out, stdout.clone(), echo.clone()));
        }
        if let Some(err) = group.child_mut().stderr.take() {
            readers.push(collect_lines(err, stderr.clone(), echo));
        }
        Proc {
            label: label.to_string(),
            group,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.group.pid()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stdout and stderr reached end of file, so every line the process (and
    /// anything it started) wrote is collected; panics after `timeout`.
    pub fn wait_output_closed(&self, timeout: Duration) {
        let what = format!("{} to close its stdout and stderr", self.label);
        wait_for(timeout, &what, || {
            self.readers.iter().all(thread::JoinHandle::is_finished)
        });
    }

    /// Every stdout line that parses as a JSON object.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The first JSON line whose `event` is `event`, if printed yet.
    pub fn event(&self, event: &str) -> Option<Value> {
        self.json_lines().into_iter().find(|v| v["event"] == event)
    }

    /// Waits for a JSON line with this `event`; fails early if the process exits without it.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        let what = format!("{} to print event {event:?}", self.label);
        wait_for(timeout, &what, || {
            if let Some(v) = self.event(event) {
                return Some(v);
            }
            if let Some(status) = self.try_wait() {
                // Output readers may lag the exit by a moment: look once more.
                thread::sleep(Duration::from_millis(50));
                if let Some(v) = self.event(event) {
                    return Some(v);
                }
                panic!(
                    "{} exited ({status}) before event {event:?}\n{}",
                    self.label,
                    self.output_tail()
                );
            }
            None
        })
    }

    /// Writes one line to the child's stdin (e.g. "go" to lt_peer.py --wait-go).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.group.child_mut().stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("write to {} stdin: {e}", self.label));
    }

    /// Non-blocking: the exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        match self.group.try_wait() {
            Ok(ended) => ended.map(|e| e.status),
            Err(e) => panic!("wait for {}: {e}", self.label),
        }
    }

    /// Waits for the process to exit by itself; panics (with its output) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(s) = self.try_wait() {
                // Let the reader threads drain the pipes (they end at EOF).
                thread::sleep(Duration::from_millis(20));
                return s;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {} to exit\n{}",
                    self.label,
                    self.output_tail()
                );
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Waits for exit and asserts status 0.
    pub fn wait_success(&mut self, timeout: Duration) {
        let s = self.wait_exit(timeout);
        assert!(
            s.success(),
            "{} failed: {s}\n{}",
            self.label,
            self.output_tail()
        );
    }

    /// Sends `sig` to the whole process group (nothing once the leader was reaped).
    pub fn signal(&self, sig: i32) {
        self.group.signal(sig);
    }

    /// SIGKILLs the process group and reaps the leader.
    pub fn kill(&mut self) -> ExitStatus {
        match self.group.kill() {
            Ok(e) => e.status,
            Err(e) => panic!("reap {}: {e}", self.label),
        }
    }

    /// SIGKILLs the leader alone, as a crash of that process would; the rest of its group
    /// lives on (a control server's agents, as on real hosts).
    pub fn kill_leader(&mut self) -> ExitStatus {
        match self.group.kill_leader() {
            Ok(e) => e.status,
            Err(e) => panic!("reap {}: {e}", self.label),
        }
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to whatever
    /// is left of the group (a daemon's forked workers) and reap; never panics on a slow
    /// exit, so it suits a `Drop`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.group.stop(grace).ok().map(|e| e.status)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.try_wait() {
            return s;
        }
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// The last lines of stdout and stderr, for failure messages.
    pub fn output_tail(&self) -> String {
        let tail = |v: &Arc<Mutex<Vec<String>>>| {
            let v = v.lock().unwrap();
            v[v.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- {} stdout (tail) ---\n{}\n--- {} stderr (tail) ---\n{}",
            self.label,
            tail(&self.stdout),
            self.label,
            tail(&self.stderr)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.try_wait().is_none();
        if was_running {
            self.kill();
        }
        if thread::panicking() {
            eprintln!(
                "{} ({}):\n{}",
                self.label,
                if was_running {
                    "killed at test end".to_string()
                } else {
                    format!("{:?}", self.group.ended().map(|e| e.status))
                },
                self.output_tail()
            );
        }
    }
}

/// Describes how a process ended, e.g. "exit 0" or "signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status}"),
    }
}
