//! Ports in tests: free ones for programs that cannot bind port 0 and report it; whether a
//! port listens, read from /proc without connecting (a probe connection would show up as a
//! peer in the program under test).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// A port free for both TCP and UDP on 127.0.0.1 right now (for programs that cannot be
/// told to bind port 0 and report it, such as opentracker).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a TCP probe socket");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP after 50 tries");
}

/// A free 127.0.0.1 address for a program's `--listen`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// `n` free 127.0.0.1 addresses on distinct ports, for peers that must know each other's
/// addresses before any of them starts.
pub fn distinct_addrs(n: usize) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let a = free_addr();
        if seen.insert(a.port()) {
            out.push(a);
        }
    }
    out
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

/// True when a TCP socket listens on `port` in the network namespace of process `pid`
/// (its /proc/PID/net/tcp). Unlike a probe connection, this is invisible to the program.
pub fn listening_in(pid: u32, port: u16) -> bool {
    let needle = format!(":{port:04X}");
    fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // cols[1] = local addr:port (hex), cols[3] = state, 0A = LISTEN
            cols.len() > 3 && cols[1].ends_with(&needle) && cols[3] == "0A"
        })
}
