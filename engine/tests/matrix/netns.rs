//! One private network namespace per matrix run: `lo` up, one /32 address per host on it, every
//! process started inside with `ip netns exec`, the namespace deleted on drop.
//!
//! Every byte stays on the namespace's loopback device: nothing is sent to any other address.
//! Each host binds its own address, as real hosts have one each (transmission keeps one peer per
//! address and drops 127.0.0.0/8 peers, so the clients need it).

use std::ffi::OsStr;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

/// Prefix of every namespace this harness creates: `ismx-<pid>`.
const PREFIX: &str = "ismx-";

/// A network namespace we created; deleted (with whatever still runs in it killed by its
/// owners' drops first) when this drops.
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip {}: {e} (install Debian iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes `ismx-<pid>` namespaces whose test process is gone (a run that was SIGKILLed
/// could not clean up after itself). Only our own prefix is touched.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        // `ismx-<pid>` or a host of it, `ismx-<pid>-<host>`.
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| fs::metadata(format!("/proc/{p}")).is_ok());
        if !alive {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Netns {
    /// Creates `ismx-<pid>` with `lo` up and `addrs` on it as /32s.
    pub fn create(addrs: &[Ipv4Addr]) -> Result<Netns, String> {
        remove_stale();
        let name = format!("{PREFIX}{}", std::process::id());
        let _ = ip(&["netns", "del", &name]); // left by an earlier test in this process
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        for a in addrs {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{a}/32"),
                "dev",
                "lo",
            ])?;
        }
        Ok(ns)
    }

    /// A host of its own joined to this namespace by a veth pair, as a machine with two
    /// addresses is joined to its network: `addrs` on its end of the link, a route to
    /// `10.88.0.0/24` through it whose preferred source is `src` (so a socket bound to no
    /// address dials and announces from `src`), and in this namespace a /32 route to each of
    /// `addrs` through the other end. Named `<this>-<suffix>`; deleted (link and all) on drop.
    pub fn create_host(
        &self,
        suffix: &str,
        addrs: &[Ipv4Addr],
        src: Ipv4Addr,
    ) -> Result<Netns, String> {
        let name = format!("{}-{suffix}", self.name);
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let host = Netns { name };
        // Both ends are created inside their namespaces: no name ever exists in the
        // machine's own namespace, so concurrent runs cannot collide.
        let (here, there) = (format!("v{suffix}0"), format!("v{suffix}1"));
        ip(&[
            "link", "add", &here, "netns", &self.name, "type", "veth", "peer", "name", &there,
            "netns", &host.name,
        ])?;
        ip(&["-n", &host.name, "link", "set", "lo", "up"])?;
        ip(&["-n", &host.name, "link", "set", &there, "up"])?;
        ip(&["-n", &self.name, "link", "set", &here, "up"])?;
        for a in addrs {
            let a32 = format!("{a}/32");
            ip(&["-n", &host.name, "addr", "add", &a32, "dev", &there])?;
            // `replace`: the route of an earlier cell's host can outlive its namespace for a
            // moment (the kernel tears a namespace down in the background).
            ip(&["-n", &self.name, "route", "replace", &a32, "dev", &here])?;
        }
        let src = src.to_string();
        ip(&[
            "-n",
            &host.name,
            "route",
            "add",
            "10.88.0.0/24",
            "dev",
            &there,
            "src",
            &src,
        ])?;
        Ok(host)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: arguments and environment are added by the caller. `ip`
    /// execs the program, so the child's PID (and process group) is the program's own.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered the namespace, so sockets it creates live there
    /// (they stay in it when used from any other thread afterwards).
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        enter_named(&self.name, f)
    }

    /// A UDP socket bound to `local` inside the namespace, with a read timeout.
    pub fn udp_socket(&self, local: SocketAddr, timeout: Duration) -> Result<UdpSocket, String> {
        let sock = self
            .enter(move || UdpSocket::bind(local))?
            .map_err(|e| format!("bind UDP {local} in the namespace: {e}"))?;
        sock.set_read_timeout(Some(timeout))
            .map_err(|e| format!("set UDP read timeout: {e}"))?;
        Ok(sock)
    }
}

/// [`Netns::enter`] for the namespace named `name`: for what outlives a borrow of the
/// [`Netns`] (a leecher's completion probe), while the namespace exists.
pub fn enter_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = format!("/var/run/netns/{name}");
    let file = fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a namespace fd we hold open; it changes only this thread,
        // which ends when `f` returns.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "setns into {path}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "the thread inside the namespace panicked".to_string())?
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "interop matrix: could not delete namespace {}: {e}",
                self.name
            );
        }
    }
}
