//! Ports in tests: free ones for programs that cannot bind port 0 and report it; whether a
//! port listens, read from /proc without connecting (a probe connection would show up as a
//! peer in the program under test).

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// A port free for both TCP and UDP on 127.0.0.1 right now (for programs that cannot be
/// told to bind port 0 and report it, such as opentracker).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports, each free for both TCP and UDP on 127.0.0.1 right now: all are held
/// until all are picked, so none is handed out twice (a daemon with several listeners, such
/// as a Salt master, or peers that must know each other's addresses before any starts).
pub fn free_ports(n: usize) -> Vec<u16> {
    try_free_ports(n).unwrap_or_else(|e| panic!("find {n} free TCP+UDP ports: {e}"))
}

/// [`free_ports`] returning the error, for the benchmark harness.
pub fn try_free_ports(n: usize) -> io::Result<Vec<u16>> {
    let mut held = Vec::with_capacity(n);
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        if tries > 50 + 2 * n {
            return Err(io::Error::other(format!(
                "only {} of {n} ports free for both TCP and UDP after {} tries",
                held.len(),
                tries - 1
            )));
        }
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        // The kernel does not hand out a TCP port still held, so ports are distinct.
        if let Ok(udp) = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) {
            held.push((port, tcp, udp));
        }
    }
    Ok(held.into_iter().map(|(port, ..)| port).collect())
}

/// A free 127.0.0.1 address for a program's `--listen`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// `n` free 127.0.0.1 addresses on distinct ports, for peers that must know each other's
/// addresses before any of them starts.
pub fn distinct_addrs(n: usize) -> Vec<SocketAddr> {
    free_ports(n)
        .into_iter()
        .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
        .collect()
}

/// True when some socket listens on TCP `port` (read from /proc/net/tcp{,6}). Unlike a probe
/// connection, this does not show up as a peer in the program under test.
pub fn is_listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // cols[1] = local addr:port (hex), cols[3] = state, 0A = LISTEN
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&needle) && cols[3] == "0A"
            })
    })
}

/// True when a TCP socket (IPv4 or IPv6) listens on `port` in the network namespace of
/// process `pid` (its /proc/PID/net/tcp{,6}). Unlike a probe connection, this is invisible
/// to the program.
pub fn listening_in(pid: u32, port: u16) -> bool {
    let needle = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // cols[1] = local addr:port (hex), cols[3] = state, 0A = LISTEN
                cols.len() > 3 && cols[1].ends_with(&needle) && cols[3] == "0A"
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(8);
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), 8, "{ports:?}");
        assert!(!ports.contains(&0), "{ports:?}");
    }
}
