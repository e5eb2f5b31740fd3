//! A userspace delay line: what `tc netem delay D loss P` does on a link, for this kernel,
//! which has no `sch_netem` (docs/RELIABILITY.md).
//!
//! It joins two interfaces of one namespace with AF_PACKET sockets. Frames that arrive on
//! `from` are dropped with probability `loss`, held `delay`, and sent out of `to`; frames that
//! arrive on `to` go out of `from` at once. The sockets carry a virtio-net header
//! (`PACKET_VNET_HDR`), so checksum offload and GSO frames pass through unchanged (without it a
//! frame with a partial checksum would arrive corrupt). Real loss is per packet: the host side
//! of an impaired link is set to `gso_max_segs 1` (see topology.rs), so each frame is one.
//!
//! Invariants: the held frames are a bounded FIFO ([`QUEUE_FRAMES`]; a full queue drops, like a
//! qdisc's limit, and is counted); delay is constant, so FIFO order is deadline order; the
//! threads end within [`POLL`] of the line being dropped.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::netns::Netns;

/// `<linux/if_packet.h>`: the socket option that adds a `struct virtio_net_hdr` before every
/// frame read or written (not in the libc crate).
const PACKET_VNET_HDR: libc::c_int = 15;
/// Most frames held at once per direction: 50 ms of a 400 Mbit/s link in 1500-byte frames is
/// about 1,700.
pub const QUEUE_FRAMES: usize = 8192;
/// Largest frame read: a 64 KiB GSO frame plus its headers and the virtio-net header.
const FRAME_BUF: usize = 65536 + 1024;
/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What a link does to the frames a host sends: netem's `delay` and `loss`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// One-way delay added to every frame.
    pub delay: Duration,
    /// Share of frames dropped, 0.0..=1.0.
    pub loss: f64,
}

/// Frame counts of one delay line.
#[derive(Debug, Default)]
pub struct LineStats {
    /// Frames sent on after their delay.
    pub delayed: AtomicU64,
    /// Frames dropped as `loss`.
    pub lost: AtomicU64,
    /// Frames dropped because the queue was full.
    pub overflowed: AtomicU64,
    /// Frames passed straight back (`to` -> `from`).
    pub returned: AtomicU64,
}

/// A running delay line; its threads stop (and its sockets close) on drop.
pub struct DelayLine {
    pub stats: Arc<LineStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct Held {
    frames: Mutex<VecDeque<(Instant, Vec<u8>)>>,
    ready: Condvar,
}

impl DelayLine {
    /// Starts forwarding between `from` and `to` (interfaces of `ns`, both up) with `imp`
    /// applied to `from` -> `to`; `seed` fixes which frames are lost.
    pub fn start(
        ns: &Netns,
        from: &str,
        to: &str,
        imp: Impairment,
        seed: u64,
    ) -> Result<DelayLine> {
        let (a, b) = {
            let (f, t) = (from.to_string(), to.to_string());
            ns.enter(move || -> io::Result<(OwnedFd, OwnedFd)> {
                Ok((packet_socket(&f)?, packet_socket(&t)?))
            })?
            .with_context(|| format!("open packet sockets on {from} and {to} in {}", ns.name()))?
        };
        let (a, b) = (Arc::new(a), Arc::new(b));
        let stats = Arc::new(LineStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Held {
            frames: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        });
        let name = |what: &str| format!("delay-{from}-{what}");
        let mut threads = Vec::new();
        {
            let (a, held, stats, stop) = (a.clone(), held.clone(), stats.clone(), stop.clone());
            threads.push(
                thread::Builder::new()
                    .name(name("in"))
                    .spawn(move || take_in(&a, &held, &stats, &stop, imp, seed))?,
            );
        }
        {
            let (b, held, stats, stop) = (b.clone(), held.clone(), stats.clone(), stop.clone());
            threads.push(
                thread::Builder::new()
                    .name(name("out"))
                    .spawn(move || give_out(&b, &held, &stats, &stop))?,
            );
        }
        {
            let (stats, stop) = (stats.clone(), stop.clone());
            threads.push(
                thread::Builder::new()
                    .name(name("back"))
                    .spawn(move || pass_back(&b, &a, &stats, &stop))?,
            );
        }
        Ok(DelayLine {
            stats,
            stop,
            threads,
        })
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Reads `from`, drops `imp.loss` of the frames, queues the rest with their deadline.
fn take_in(
    from: &OwnedFd,
    held: &Held,
    stats: &LineStats,
    stop: &AtomicBool,
    imp: Impairment,
    seed: u64,
) {
    // splitmix64 of the seed: neighbouring seeds give unrelated streams, never zero.
    let mut rng = {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    };
    let mut buf = vec![0u8; FRAME_BUF];
    // Compared against the top 53 bits of the generator, as a uniform draw in [0, 1).
    let threshold = (imp.loss.clamp(0.0, 1.0) * (1u64 << 53) as f64) as u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(n) = recv(from, &mut buf) else {
            continue;
        };
        // xorshift64: cheap and deterministic per seed.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if rng >> 11 < threshold {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut q = held.frames.lock().unwrap();
        if q.len() >= QUEUE_FRAMES {
            stats.overflowed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        q.push_back((Instant::now() + imp.delay, buf[..n].to_vec()));
        held.ready.notify_one();
    }
    held.ready.notify_one();
}

/// Sends each queued frame out of `to` once its deadline has passed.
fn give_out(to: &OwnedFd, held: &Held, stats: &LineStats, stop: &AtomicBool) {
    loop {
        let (due, frame) = {
            let mut q = held.frames.lock().unwrap();
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(f) = q.pop_front() {
                    break f;
                }
                q = held.ready.wait_timeout(q, POLL).unwrap().0;
            }
        };
        // The delay itself: the frame is held until its deadline.
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        send(to, &frame);
        stats.delayed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Frames towards the host: straight from `to` back out of `from`.
fn pass_back(to: &OwnedFd, from: &OwnedFd, stats: &LineStats, stop: &AtomicBool) {
    let mut buf = vec![0u8; FRAME_BUF];
    while !stop.load(Ordering::Relaxed) {
        if let Some(n) = recv(to, &mut buf) {
            send(from, &buf[..n]);
            stats.returned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One frame (virtio-net header included), or `None` on timeout, truncation or error.
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: recv(2) into a buffer we own, at most its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
        )
    };
    // With MSG_TRUNC the length is the frame's real one: a longer frame is dropped, not cut.
    (n > 0 && (n as usize) <= buf.len()).then_some(n as usize)
}

/// Sends one frame on the interface the socket is bound to; a failure is a lost frame.
fn send(fd: &OwnedFd, frame: &[u8]) {
    // SAFETY: send(2) from a buffer we own.
    unsafe {
        libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0);
    }
}

fn setsockopt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: setsockopt(2) with a value buffer of the given length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An AF_PACKET socket bound to `ifname` (in the calling thread's namespace) that sees every
/// frame arriving on it, not those sent from it, with virtio-net headers.
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2); the descriptor is owned by the OwnedFd at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(all),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one = 1i32.to_ne_bytes();
    setsockopt(&fd, libc::SOL_PACKET, PACKET_VNET_HDR, &one)?;
    // Frames this socket (or the other direction's) sends on the interface are not input.
    setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)?;
    let rcvbuf = (8i32 << 20).to_ne_bytes();
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf)?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: POLL.as_micros() as libc::suseconds_t,
    };
    // SAFETY: timeval is plain data; viewed as its bytes for setsockopt.
    let tv_bytes = unsafe {
        std::slice::from_raw_parts(
            (&tv as *const libc::timeval).cast::<u8>(),
            std::mem::size_of::<libc::timeval>(),
        )
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv_bytes)?;
    let cname = CString::new(ifname).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: if_nametoindex(3) on a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = all;
    sll.sll_ifindex = index as libc::c_int;
    // SAFETY: bind(2) with a sockaddr_ll of its own size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
