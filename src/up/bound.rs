//! The fanout lower bound of `instream up`, measured on the machine it runs on.
//!
//! On one machine every host's bytes cross the same loopback and land on the same disk, so
//! a fanout of N hosts × F bytes cannot beat N·F divided by the slower of what loopback
//! TCP moves (one connection, a sender and a receiver thread: both cores busy) and what
//! buffered file writes take in the work directory (what hosts do). Both are measured (best
//! of two short rounds) just before the deployment; SHA-1 and BLAKE3 checks, which the
//! hosts also pay, are not counted, so the bound stays a bound.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

/// Measured throughputs, bytes per second.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    pub loopback: f64,
    pub disk_write: f64,
}

impl Machine {
    /// The slower of the two: what N·F is divided by.
    pub fn rate(&self) -> f64 {
        self.loopback.min(self.disk_write)
    }

    /// Seconds N hosts × `payload` bytes need at best.
    pub fn bound_secs(&self, hosts: u64, payload: u64) -> f64 {
        (hosts as f64 * payload as f64) / self.rate()
    }
}

/// Bytes pushed through loopback TCP to measure it.
const LOOPBACK_BYTES: u64 = 512 << 20;
/// Bytes written to measure the disk (a host's share of a 256 MiB fanout).
const DISK_BYTES: u64 = 256 << 20;

/// Rounds of each measurement; the best counts (a bound takes the machine at its best,
/// and one round can hit writeback of someone else's dirty pages).
const ROUNDS: usize = 2;

pub fn measure(work: &Path) -> Result<Machine> {
    let mut m = Machine {
        loopback: 0.0,
        disk_write: 0.0,
    };
    for _ in 0..ROUNDS {
        m.loopback = m.loopback.max(loopback()?);
        m.disk_write = m.disk_write.max(disk(work)?);
    }
    Ok(m)
}

fn loopback() -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind loopback socket")?;
    let addr = listener.local_addr().context("read loopback address")?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut s = std::net::TcpStream::connect(addr).context("connect over loopback")?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < LOOPBACK_BYTES {
        s.write_all(&buf).context("send over loopback")?;
        sent += buf.len() as u64;
    }
    drop(s);
    let got = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("loopback receiver panicked"))?
        .context("receive over loopback")?;
    Ok(got as f64 / start.elapsed().as_secs_f64())
}

fn disk(work: &Path) -> Result<f64> {
    let path = work.join(".disk-probe");
    let buf = vec![0xa5u8; 1 << 20];
    let start = Instant::now();
    {
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let mut left = DISK_BYTES;
        while left > 0 {
            f.write_all(&buf)
                .with_context(|| format!("write {}", path.display()))?;
            left -= buf.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok(DISK_BYTES as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_divides_by_the_slower_rate() {
        let m = Machine {
            loopback: 4e9,
            disk_write: 1e9,
        };
        assert_eq!(m.rate(), 1e9);
        assert_eq!(m.bound_secs(4, 500_000_000), 2.0);
    }
}
