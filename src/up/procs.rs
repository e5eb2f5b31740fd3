//! Child processes of `instream up`: each started by PID as the leader of its own process
//! group (so an agent spawned by the control server dies with it), told by the kernel to
//! die if `up` dies first (`PR_SET_PDEATHSIG`), and stopped on drop: SIGTERM to the group,
//! a grace period, then SIGKILL to whatever is left of the group. No orphans.
//!
//! Their output goes to log files; [`Proc::wait_line`] reads a child's pipe until a line
//! announces its address (`listening on ...`), then keeps copying it to the log.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

/// Which output of a child [`Proc::wait_line`] reads (the other goes to the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    None,
    Stdout,
    Stderr,
}

fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the process group we created (the child is its leader).
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

impl Proc {
    /// Starts `cmd` in its own process group; stdout and stderr go to `log`, except the
    /// one `pipe` names, which [`Proc::wait_line`] reads.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path, pipe: Pipe) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = file
            .try_clone()
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(if pipe == Pipe::Stdout {
                Stdio::piped()
            } else {
                file.into()
            })
            .stderr(if pipe == Pipe::Stderr {
                Stdio::piped()
            } else {
                err.into()
            })
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it only sets a flag of the new process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the piped output (see [`Pipe`]) line by line, copying every line to the log,
    /// and returns what `pick` makes of the first line it accepts, within `timeout`.
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        pick: impl Fn(&str) -> Option<String> + Send + 'static,
    ) -> Result<String> {
        let reader: Box<dyn Read + Send> =
            match (self.child.stdout.take(), self.child.stderr.take()) {
                (Some(o), _) => Box::new(o),
                (None, Some(e)) => Box::new(e),
                (None, None) => bail!("{}: no piped output to read", self.name),
            };
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .ok();
            let mut sent = false;
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if let Some(o) = out.as_mut() {
                    let _ = writeln!(o, "{line}");
                }
                if !sent && let Some(v) = pick(&line) {
                    sent = true;
                    let _ = tx.send(v);
                }
            }
        });
        let start = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(v) => return Ok(v),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "{} ended before it was ready; see {}",
                        self.name,
                        self.log.display()
                    )
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!("{} exited ({st}); see {}", self.name, self.log.display());
            }
            if start.elapsed() > timeout {
                bail!(
                    "{} was not ready within {}s; see {}",
                    self.name,
                    timeout.as_secs(),
                    self.log.display()
                );
            }
        }
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to the group.
    pub fn stop(&mut self, grace: Duration) {
        let pid = self.pid();
        if self.alive() {
            signal_group(pid, libc::SIGTERM);
            let start = Instant::now();
            while self.alive() && start.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Members of the group (agents of the control server) may outlive the leader.
        signal_group(pid, libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
