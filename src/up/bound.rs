//! The fanout lower bound of `instream up`, measured on the machine it runs on.
//!
//! On one machine every host's bytes cross the same loopback, land on the same disk and are
//! hashed by the same cores, so a fanout of N hosts × F bytes cannot beat the largest of:
//! - N·F over what loopback TCP moves (one connection, a sender and a receiver thread);
//! - N·F over what buffered file writes take in the work directory (what hosts do);
//! - N·F·(1/SHA-1 + 1/BLAKE3) over the available cores: every host checks each piece's
//!   SHA-1 and hashes each piece as its BLAKE3 subtree (the whole-payload digest is folded
//!   from those, `agent::install::FoldedDigest`), and a core hashes at the single-thread
//!   rates measured here, one piece per call as hosts do;
//!
//! - N·F over what these cores can do when each delivered byte costs all of that work at
//!   once: one loopback copy, one file write, one SHA-1 and one BLAKE3, each at the
//!   single-stream rate measured here, shared by the available cores. On one machine the
//!   hosts' copies, writes and hashes all compete for the same cores, so this term is what
//!   usually sets the bound; each rate counts as one core's work, which keeps it a bound.
//!
//! All are measured (best of two short rounds) just before the deployment.
use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

/// Measured throughputs, bytes per second, and the cores hashing may use.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    pub loopback: f64,
    pub disk_write: f64,
    /// SHA-1 on one core.
    pub sha1: f64,
    /// BLAKE3 on one core, one piece's subtree per call (as hosts fold the payload digest).
    pub blake3: f64,
    pub cores: usize,
}

impl Machine {
    /// What N·F is divided by: the slowest of loopback, disk, hashing on all cores, and all
    /// of a byte's work on all cores.
    pub fn rate(&self) -> f64 {
        self.loopback
            .min(self.disk_write)
            .min(self.hash_rate())
            .min(self.cpu_rate())
    }

    /// Bytes per second every core together can copy over loopback, write, SHA-1 and BLAKE3.
    pub fn cpu_rate(&self) -> f64 {
        self.cores.max(1) as f64
            / (1.0 / self.loopback + 1.0 / self.disk_write + 1.0 / self.sha1 + 1.0 / self.blake3)
    }

    /// Bytes per second every core together can both SHA-1 and BLAKE3.
    pub fn hash_rate(&self) -> f64 {
        self.cores.max(1) as f64 / (1.0 / self.sha1 + 1.0 / self.blake3)
    }

    /// Seconds N hosts × `payload` bytes need at best.
    pub fn bound_secs(&self, hosts: u64, payload: u64) -> f64 {
        (hosts as f64 * payload as f64) / self.rate()
    }

    /// Which term sets the bound.
    pub fn limit(&self) -> &'static str {
        let r = self.rate();
        if r == self.cpu_rate() {
            "every byte's copy, write and hashes on the shared cores"
        } else if r == self.hash_rate() {
            "hashing"
        } else if r == self.disk_write {
            "disk writes"
        } else {
            "loopback"
        }
    }
}

/// Bytes pushed through loopback TCP to measure it.
const LOOPBACK_BYTES: u64 = 512 << 20;
/// Bytes written to measure the disk (a host's share of a 256 MiB fanout).
const DISK_BYTES: u64 = 256 << 20;

/// Bytes hashed to measure each hash (in calls of one piece each, as hosts hash them).
const HASH_BYTES: usize = 128 << 20;

/// Rounds of each measurement; the best counts (a bound takes the machine at its best,
/// and one round can hit writeback of someone else's dirty pages).
const ROUNDS: usize = 2;

/// Measures this machine for a payload cut into `piece_len`-byte pieces.
pub fn measure(work: &Path, piece_len: u32) -> Result<Machine> {
    let mut m = Machine {
        loopback: 0.0,
        disk_write: 0.0,
        sha1: 0.0,
        blake3: 0.0,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    };
    for _ in 0..ROUNDS {
        m.loopback = m.loopback.max(loopback()?);
        m.disk_write = m.disk_write.max(disk(work)?);
        let (sha1, blake3) = hashes(piece_len as usize);
        m.sha1 = m.sha1.max(sha1);
        m.blake3 = m.blake3.max(blake3);
    }
    Ok(m)
}

/// SHA-1 and BLAKE3 rates of one core, bytes per second, hashing `piece_len`-byte pieces:
/// SHA-1 per piece, and BLAKE3 per piece as the subtree at that piece's offset.
fn hashes(piece_len: usize) -> (f64, f64) {
    use blake3::hazmat::HasherExt;
    use sha1::Digest;
    // Subtrees are powers of two of chunks (hosts fold only those).
    let piece_len = piece_len
        .next_power_of_two()
        .clamp(blake3::CHUNK_LEN, HASH_BYTES);
    let buf = vec![0x3cu8; piece_len];
    let rounds = HASH_BYTES / buf.len();
    let start = Instant::now();
    let mut sink = 0u8;
    for _ in 0..rounds {
        sink ^= sha1::Sha1::digest(&buf)[0];
    }
    let sha1 = (rounds * buf.len()) as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..rounds {
        let cv = blake3::Hasher::new()
            .set_input_offset((i * buf.len()) as u64)
            .update(&buf)
            .finalize_non_root();
        sink ^= cv[0];
    }
    let blake3 = (rounds * buf.len()) as f64 / start.elapsed().as_secs_f64();
    // Keep the work observable so it is not optimised away.
    std::hint::black_box(sink);
    (sha1, blake3)
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
        // Many cores: the single-stream terms set the bound.
        let mut m = Machine {
            loopback: 4e9,
            disk_write: 1e9,
            sha1: 4e9,
            blake3: 4e9,
            cores: 64,
        };
        assert_eq!(m.rate(), 1e9);
        assert_eq!(m.bound_secs(4, 500_000_000), 2.0);
        assert_eq!(m.limit(), "disk writes");
        // Two cores that SHA-1 and BLAKE3 at 1 GB/s each hash 1 GB/s together.
        m.cores = 2;
        m.disk_write = 4e9;
        m.sha1 = 1e9;
        m.blake3 = 1e9;
        assert!((m.hash_rate() - 1e9).abs() < 1.0);
        // ...but each byte also costs a loopback copy and a write on those two cores:
        // 2 / (1/4 + 1/4 + 1 + 1) GB/s = 0.8 GB/s.
        assert!((m.cpu_rate() - 0.8e9).abs() < 1.0);
        assert!(m.limit().starts_with("every byte"));
        assert!((m.bound_secs(2, 1_000_000_000) - 2.5).abs() < 1e-9);
    }
}
