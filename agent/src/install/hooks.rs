//! Running one product hook: `<version>/.instream/hooks/<name>` in its own process group,
//! killed with its group after a timeout, with a clean environment (`PATH`, `LANG`, the
//! `INSTREAM_*` variables of the activation, and whatever the agent's environment holds
//! under names starting with [`PASS_PREFIX`]: a hook never sees the agent's credentials or
//! settings), its
//! stdout and stderr echoed to ours, and its last stderr line kept as the failure reason.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Longest hook stderr line kept as a failure reason.
const MAX_REASON: usize = 512;

/// Variables of the agent's environment whose names start with this reach the hooks, name
/// unchanged: the way an operator hands a hook a setting (`INSTREAM_HOOK_PROXY=...`).
pub const PASS_PREFIX: &str = "INSTREAM_HOOK_";

/// `PATH` for hooks: the agent's own is not passed on (it may point into a test's or an
/// operator's directories); this is Debian's default for root.
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How one hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// The manifest does not list this hook: nothing ran.
    NotShipped,
    /// Exit status 0.
    Ok,
    /// Non-zero exit, signal, timeout, or could not start: the reason.
    Failed(String),
}

/// Runs `<dir>/.instream/hooks/<hook>` with `vars`, killing its process group after
/// `timeout`. Its stdout goes to our stderr; its stderr is echoed there too and its last
/// non-empty line becomes the failure reason.
pub fn run_hook(dir: &Path, hook: &str, vars: &[(&str, &str)], timeout: Duration) -> HookOutcome {
    run_hook_reporting(dir, hook, vars, timeout, false).0
}

/// [`run_hook`] that also hands back the hook's last output line (stdout's, else
/// stderr's): what a `status` or `check` service command reports when the hook succeeds.
pub fn run_hook_output(
    dir: &Path,
    hook: &str,
    vars: &[(&str, &str)],
    timeout: Duration,
) -> (HookOutcome, Option<String>) {
    run_hook_reporting(dir, hook, vars, timeout, true)
}

fn run_hook_reporting(
    dir: &Path,
    hook: &str,
    vars: &[(&str, &str)],
    timeout: Duration,
    capture_stdout: bool,
) -> (HookOutcome, Option<String>) {
    let path = dir.join(".instream/hooks").join(hook);
    if !path.is_file() {
        let why = format!("{hook} hook is listed but {} is missing", path.display());
        return (HookOutcome::Failed(why), None);
    }
    let stdout = if capture_stdout {
        Stdio::piped()
    } else {
        dup_stderr().unwrap_or_else(|_| Stdio::null())
    };
    let mut cmd = Command::new(&path);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0)
        .env_clear()
        .env("PATH", HOOK_PATH)
        .env("LANG", "C.UTF-8")
        .envs(
            std::env::vars_os()
                .filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with(PASS_PREFIX))),
        );
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                HookOutcome::Failed(format!("cannot run {hook} hook: {e}")),
                None,
            );
        }
    };
    let pid = child.id();
    let stderr = child.stderr.take().expect("piped stderr");
    let name = hook.to_string();
    let reader = std::thread::spawn(move || last_line(stderr, &name));
    let out_reader = child.stdout.take().map(|out| {
        let name = hook.to_string();
        std::thread::spawn(move || last_line(out, &name))
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(s) => s,
        Err(_) => {
            // SAFETY: signalling the process group the hook leads (setpgid above).
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            let _ = rx.recv();
            let _ = reader.join();
            let why = format!("{hook} hook timed out after {}s", timeout.as_secs_f64());
            return (HookOutcome::Failed(why), None);
        }
    };
    // The group may hold children that keep stderr open (a daemon started by `start`):
    // do not wait for them to close it.
    let last = join_with_timeout(reader, Duration::from_millis(500)).flatten();
    let last_out = out_reader
        .and_then(|r| join_with_timeout(r, Duration::from_millis(500)))
        .flatten();
    let output = last_out.or_else(|| last.clone());
    let outcome = match status {
        Ok(s) if s.success() => HookOutcome::Ok,
        Ok(s) => {
            HookOutcome::Failed(last.unwrap_or_else(|| format!("{hook} hook exited with {s}")))
        }
        Err(e) => HookOutcome::Failed(format!("wait for {hook} hook: {e}")),
    };
    (outcome, output)
}

fn dup_stderr() -> io::Result<Stdio> {
    use std::os::fd::AsFd;
    Ok(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?))
}

fn last_line(output: impl Read, hook: &str) -> Option<String> {
    let mut last = None;
    for line in BufReader::new(output).lines() {
        let Ok(line) = line else { break };
        // Not eprintln!: on a full disk the agent's log cannot take the line, and a panic here
        // would stop draining the hook's pipe until the hook times out.
        let _ = writeln!(io::stderr(), "[hook {hook}] {line}");
        let t = line.trim();
        if !t.is_empty() {
            let mut cut = t.len().min(MAX_REASON);
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            last = Some(t[..cut].to_string());
        }
    }
    last
}

fn join_with_timeout<T: Send + 'static>(
    h: std::thread::JoinHandle<T>,
    within: Duration,
) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    while !h.is_finished() {
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().ok()
}
