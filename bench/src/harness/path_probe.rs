//! Measures what a path between two hosts of a [`Topology`] really does, before a test or a
//! benchmark trusts it: numbered UDP probes from host `a` to an echo on host `b` give the
//! round-trip time (median of the echoed probes) and the one-way loss `a` -> `b` (probes the
//! echo never saw).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use super::topology::{Topology, host_addr};

/// What [`probe`] measured.
#[derive(Clone, Debug)]
pub struct PathReport {
    pub sent: u64,
    /// Probes that reached the echo.
    pub arrived: u64,
    /// Probes whose echo came back.
    pub echoed: u64,
    /// Median round trip of the echoed probes.
    pub rtt_median: Duration,
}

impl PathReport {
    /// Share of probes lost on the way from `a` to `b`.
    pub fn one_way_loss(&self) -> f64 {
        1.0 - self.arrived as f64 / self.sent as f64
    }
}

/// Sends `count` probes, one per millisecond, from host `a` to host `b` (UDP port 9 on each
/// host's address), and waits a second after the last for stragglers.
pub fn probe(topo: &Topology, a: usize, b: usize, count: u64) -> Result<PathReport> {
    ensure!(count > 0, "no probes to send");
    let (from, to) = (
        SocketAddr::from((host_addr(a), 9)),
        SocketAddr::from((host_addr(b), 9)),
    );
    let echo = topo.host_ns(b).enter(move || UdpSocket::bind(to))??;
    let sock = topo.host_ns(a).enter(move || UdpSocket::bind(from))??;
    // Room for seconds of probes, so a test machine's scheduling stalls are not "loss".
    for s in [&echo, &sock] {
        set_rcvbuf(s, 4 << 20).context("size a probe socket's receive buffer")?;
    }
    echo.set_read_timeout(Some(Duration::from_millis(50)))?;
    sock.set_read_timeout(Some(Duration::from_micros(500)))?;

    let arrived = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let echo_thread = {
        let (arrived, stop) = (arrived.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, src)) = echo.recv_from(&mut buf) {
                    arrived.fetch_add(1, Ordering::Relaxed);
                    let _ = echo.send_to(&buf[..n], src);
                }
            }
        })
    };

    let start = Instant::now();
    let mut sent_at = Vec::with_capacity(count as usize);
    let mut rtts = Vec::new();
    let take = |sock: &UdpSocket, sent_at: &[Duration], rtts: &mut Vec<Duration>| {
        let mut buf = [0u8; 64];
        while let Ok(n) = sock.recv(&mut buf) {
            if n == 8 {
                let i = u64::from_be_bytes(buf[..8].try_into().unwrap()) as usize;
                if let Some(t) = sent_at.get(i) {
                    rtts.push(start.elapsed() - *t);
                }
            }
        }
    };
    for i in 0..count {
        sent_at.push(start.elapsed());
        sock.send_to(&i.to_be_bytes(), to)
            .with_context(|| format!("send a probe to {to}"))?;
        // Pacing, not synchronisation: one probe per millisecond, reading echoes in between.
        let next = start + Duration::from_millis(i + 1);
        while Instant::now() < next {
            take(&sock, &sent_at, &mut rtts);
        }
    }
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        take(&sock, &sent_at, &mut rtts);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = echo_thread.join();
    ensure!(!rtts.is_empty(), "no probe from {from} to {to} came back");
    rtts.sort();
    Ok(PathReport {
        sent: count,
        arrived: arrived.load(Ordering::Relaxed),
        echoed: rtts.len() as u64,
        rtt_median: rtts[rtts.len() / 2],
    })
}

fn set_rcvbuf(sock: &UdpSocket, bytes: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt(2) with an int value of its own size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
