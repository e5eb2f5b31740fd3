//! Batched datagram I/O for the UDP workers on Linux: `recvmmsg` takes up to [`BATCH`]
//! queued requests in one system call and `sendmmsg` returns all their answers in one.
//!
//! On loopback and on busy servers the kernel's per-call cost dominates a tracker's work
//! (decoding and answering an announce takes well under a microsecond; each system call
//! costs more), so fewer calls is the main lever on responses per core.
//!
//! Invariants: every `msghdr` points into buffers owned by [`Batch`] and rebuilt before each
//! call (so no pointer outlives a move); a reply is sent to exactly the address its request
//! came from; a send the kernel refuses is counted and dropped, never retried in a loop.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call. A closed-loop client has one request in flight per socket,
/// so batches are small under light load and fill up under heavy load.
pub(crate) const BATCH: usize = 32;

/// Receive buffers and source addresses of one batch (about 130 KiB).
pub(crate) struct RecvBatch {
    bufs: Vec<[u8; super::udp_worker::RECV_BUF_LEN]>,
    lens: [usize; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
    addr_lens: [libc::socklen_t; BATCH],
    iovecs: [libc::iovec; BATCH],
    headers: [libc::mmsghdr; BATCH],
}

/// Replies of one batch: bytes, and the index of the request (so of the address) each
/// answers.
pub(crate) struct SendBatch {
    out: Vec<Vec<u8>>,
    out_to: [usize; BATCH],
    queued: usize,
    iovecs: [libc::iovec; BATCH],
    headers: [libc::mmsghdr; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
}

impl RecvBatch {
    pub(crate) fn new() -> Box<Self> {
        // SAFETY: all-zero is a valid value for these plain C structs.
        Box::new(Self {
            bufs: vec![[0u8; super::udp_worker::RECV_BUF_LEN]; BATCH],
            lens: [0; BATCH],
            addrs: unsafe { zeroed() },
            addr_lens: [0; BATCH],
            iovecs: unsafe { zeroed() },
            headers: unsafe { zeroed() },
        })
    }

    /// Receives up to [`BATCH`] datagrams without blocking. `Ok(0)`: nothing queued.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.bufs[i].len(),
            };
            // SAFETY: zeroed msghdr is valid; fields are set below.
            let mut h: libc::msghdr = unsafe { zeroed() };
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            self.headers[i] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        // SAFETY: headers point into self's buffers, valid for the call's duration.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = self.headers[i].msg_len as usize;
            self.addr_lens[i] = self.headers[i].msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// Datagram `i` of the last receive: its source and bytes.
    pub(crate) fn request(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let addr = to_socket_addr(&self.addrs[i])?;
        Some((addr, &self.bufs[i][..self.lens[i]]))
    }
}

impl SendBatch {
    pub(crate) fn new() -> Box<Self> {
        // SAFETY: all-zero is a valid value for these plain C structs.
        Box::new(Self {
            out: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            out_to: [0; BATCH],
            queued: 0,
            iovecs: unsafe { zeroed() },
            headers: unsafe { zeroed() },
            addrs: unsafe { zeroed() },
        })
    }

    /// Queues `reply` as the answer to request `i` of the current receive batch.
    pub(crate) fn push(&mut self, i: usize, reply: &[u8]) {
        let slot = self.queued;
        self.out[slot].clear();
        self.out[slot].extend_from_slice(reply);
        self.out_to[slot] = i;
        self.queued += 1;
    }

    /// Sends the queued replies to the sources recorded in `from`; returns how many the
    /// kernel refused. Empties the queue.
    pub(crate) fn send(&mut self, fd: RawFd, from: &RecvBatch) -> usize {
        let queued = std::mem::take(&mut self.queued);
        for slot in 0..queued {
            let to = self.out_to[slot];
            self.addrs[slot] = from.addrs[to];
            self.iovecs[slot] = libc::iovec {
                iov_base: self.out[slot].as_mut_ptr().cast(),
                iov_len: self.out[slot].len(),
            };
            // SAFETY: zeroed msghdr is valid; fields are set below.
            let mut h: libc::msghdr = unsafe { zeroed() };
            h.msg_name = (&mut self.addrs[slot] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = from.addr_lens[to];
            h.msg_iov = &mut self.iovecs[slot];
            h.msg_iovlen = 1;
            self.headers[slot] = libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            };
        }
        let (mut sent, mut refused) = (0, 0);
        while sent < queued {
            // SAFETY: headers[sent..queued] point into self's buffers.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (queued - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                // The datagram at `sent` was refused (full buffer, unreachable): skip it,
                // so every pass of this loop makes progress.
                refused += 1;
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
        refused
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
