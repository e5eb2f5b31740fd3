//! The process-group core that both the tests' [`Proc`](crate::Proc) and the benchmark
//! harness's `Child` wrap: spawn a child as the leader of a new process group, signal the
//! whole group, reap the leader with `wait4(2)` (so its CPU time and peak memory come with
//! its exit status), and SIGKILL the group and reap the leader on drop, so nothing is left
//! running after an error anywhere.
//!
//! It returns errors instead of panicking: the harness reports them as `anyhow` errors, the
//! tests' wrapper turns them into panics. Invariant: the leader is reaped at most once, by
//! `wait4` here (never by `std::process::Child::wait`), and once it is reaped no signal is
//! sent to its pid or group, since the pid may be reused.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How the leader ended, from `wait4(2)`.
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    pub status: ExitStatus,
    /// When it was reaped.
    pub at: SystemTime,
    /// User + system CPU seconds over the leader's whole life (all its threads).
    pub cpu_secs: f64,
    /// Peak resident set, KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
}

/// A child leading its own process group; the group is SIGKILLed and the leader reaped on
/// drop.
pub struct ProcGroup {
    child: Child,
    ended: Option<Ended>,
}

impl ProcGroup {
    /// Spawns `cmd` as the leader of a new process group (its stdio as `cmd` sets it).
    pub fn spawn(cmd: &mut Command) -> io::Result<ProcGroup> {
        cmd.process_group(0);
        Ok(ProcGroup::adopt(cmd.spawn()?))
    }

    /// Takes over a child spawned elsewhere; its group is signalled if it leads one, the
    /// child itself in any case.
    pub fn adopt(child: Child) -> ProcGroup {
        ProcGroup { child, ended: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The std handle, to take its piped stdin, stdout or stderr. Do not wait on it: the
    /// leader is reaped here.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// How the leader ended, if it was reaped.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    /// Non-blocking: reaps the leader if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<&Ended>> {
        if self.ended.is_none() {
            self.reap(libc::WNOHANG)?;
        }
        Ok(self.ended.as_ref())
    }

    /// Sends `sig` to the group (and the leader, which may lead none) unless it was reaped.
    pub fn signal(&self, sig: libc::c_int) {
        if self.ended.is_some() {
            return;
        }
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on the group this child leads and on the child, both still
        // unreaped, so neither id can have been reused.
        unsafe {
            libc::kill(-pid, sig);
            libc::kill(pid, sig);
        }
    }

    /// SIGKILLs the group and reaps the leader (blocking: SIGKILL cannot be ignored).
    pub fn kill(&mut self) -> io::Result<&Ended> {
        if self.try_wait()?.is_none() {
            self.signal(libc::SIGKILL);
            self.reap(0)?;
        }
        Ok(self.ended.as_ref().expect("reaped"))
    }

    /// SIGKILLs the leader alone and reaps it, as a crash of that one process would: the
    /// rest of its group lives on (see [`kill_group`] for a later sweep).
    pub fn kill_leader(&mut self) -> io::Result<&Ended> {
        if self.try_wait()?.is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGKILL) };
            self.reap(0)?;
        }
        Ok(self.ended.as_ref().expect("reaped"))
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to what is
    /// left of the group (forked workers outlive their leader's exit) and reap.
    pub fn stop(&mut self, grace: Duration) -> io::Result<&Ended> {
        if self.try_wait()?.is_none() {
            let pid = self.pid() as libc::pid_t;
            self.signal(libc::SIGTERM);
            let start = Instant::now();
            while self.try_wait()?.is_none() && start.elapsed() < grace {
                // A poll interval for the leader's exit, bounded by `grace`.
                thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: the group may outlive its reaped leader; its id stays in use (and
            // cannot be reused) while any member lives.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            self.kill()?;
        }
        Ok(self.ended.as_ref().expect("reaped"))
    }

    fn reap(&mut self, flags: libc::c_int) -> io::Result<()> {
        let pid = self.pid() as libc::pid_t;
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = loop {
            // SAFETY: wait4 on our own child's pid with valid out-pointers.
            let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
            if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break r;
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r == pid {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            self.ended = Some(Ended {
                status: ExitStatus::from_raw(status),
                at: SystemTime::now(),
                cpu_secs: tv(ru.ru_utime) + tv(ru.ru_stime),
                max_rss_kib: ru.ru_maxrss as u64,
            });
        }
        Ok(())
    }
}

/// SIGKILLs process group `pgid` (a no-op when it has no members left): the sweep for a group
/// whose leader was killed alone ([`ProcGroup::kill_leader`]) and whose members lived on.
pub fn kill_group(pgid: u32) {
    // SAFETY: kill(2) on a process group; a group id stays in use while any member lives.
    unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
}

impl Drop for ProcGroup {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn dropping_the_group_kills_the_grandchildren_too() {
        // The shell prints its background child's pid, then waits forever.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 600 & echo $!; wait"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        let mut g = ProcGroup::spawn(&mut cmd).unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(g.child_mut().stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(alive(grandchild));
        drop(g);
        // The grandchild is not ours to reap: it is gone once init reaps it.
        crate::wait_for(Duration::from_secs(10), "the grandchild to die", || {
            !alive(grandchild)
                || std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
    }

    #[test]
    fn an_exit_is_reaped_once_with_its_status_and_cpu_time() {
        let mut g = ProcGroup::spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        let e = crate::wait_for(Duration::from_secs(10), "sh to exit", || {
            g.try_wait().unwrap().copied()
        });
        assert_eq!(e.status.code(), Some(3));
        assert!(e.cpu_secs >= 0.0);
        // Killing or stopping an ended group changes nothing and sends nothing.
        assert_eq!(g.kill().unwrap().status.code(), Some(3));
        assert_eq!(g.stop(Duration::ZERO).unwrap().status.code(), Some(3));
    }

    #[test]
    fn stop_ends_a_process_that_ignores_sigterm() {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        // SAFETY: signal(2) is async-signal-safe; an ignored disposition survives exec, so
        // the process ignores SIGTERM from its first instruction (no race with a trap).
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut g = ProcGroup::spawn(&mut cmd).unwrap();
        let e = g.stop(Duration::from_millis(200)).unwrap();
        assert_eq!(e.status.signal(), Some(libc::SIGKILL));
    }
}
