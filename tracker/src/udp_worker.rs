//! One UDP worker: a mio loop over this worker's sockets (one per listen address, each
//! sharing its port with the other workers through SO_REUSEPORT, so the kernel spreads
//! clients over workers), decoding with `proto::tracker::udp`, answering from the shared
//! shards, encoding into one reused buffer. On Linux datagrams move in batches
//! (`udp_batch.rs`: recvmmsg/sendmmsg); elsewhere one per system call.
//!
//! [`Processor::process`] is the whole request → response step without sockets, so tests
//! and benchmarks drive it directly. Invariants: a request whose connection id is wrong or
//! expired gets no answer at all (an answer would let a spoofed source aim our traffic at a
//! victim); an announce or scrape answer is never larger than the request budget allows
//! (`max_numwant` peers, `max_scrape_torrents` entries).

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use proto::tracker::udp::{
    AnnounceInterval, AnnounceResponse, ConnectResponse, FABRIC_SHARE_PARAM, PeerList, Request,
    RequestParseError, Response, ScrapeResponse, TorrentScrapeStats, append_fabric_share,
    encode_error,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::state::{Shared, canonical};
use crate::stats::bump;
use crate::swarm::Announce;

/// Token of the waker that interrupts `poll` at shutdown.
pub(crate) const WAKE_TOKEN: Token = Token(usize::MAX);

/// Largest datagram read: an announce with generous BEP 41 URL data, or a scrape of 74
/// hashes (16 + 74 × 20 = 1,496 bytes), fits with room to spare; a longer datagram is
/// truncated by the kernel and then refused or ignored by the parser.
pub(crate) const RECV_BUF_LEN: usize = 4096;

/// The sans-IO part of a worker: request bytes in, response bytes out.
pub struct Processor {
    shared: Arc<Shared>,
    /// This worker's counters slot (see `Shared::counters`).
    slot: usize,
    rng: SmallRng,
    /// Reused peer lists and output buffer: the hot path allocates nothing.
    peers4: Vec<SocketAddrV4>,
    peers6: Vec<SocketAddrV6>,
    out: Vec<u8>,
}

impl Processor {
    pub(crate) fn new(shared: Arc<Shared>, worker: usize, seed: u64) -> Self {
        Self {
            shared,
            slot: worker + 1,
            rng: SmallRng::seed_from_u64(seed),
            peers4: Vec::new(),
            peers6: Vec::new(),
            out: Vec::with_capacity(2048),
        }
    }

    /// Answers one datagram from `src`; `None` means stay silent.
    pub fn process(&mut self, src: SocketAddr, packet: &[u8]) -> Option<&[u8]> {
        let shared = &*self.shared;
        let st = shared.counters(self.slot);
        let src = canonical(src);
        let now = u64::from(shared.now());
        self.out.clear();
        let request = match Request::parse(packet, shared.config.udp.max_scrape_torrents) {
            Ok(r) => r,
            Err(RequestParseError::Sendable {
                connection_id,
                transaction_id,
                kind,
            }) => {
                if !shared.ids.is_valid(now, src, connection_id) {
                    bump(&st.udp_bad_connection_id);
                    return None;
                }
                bump(&st.udp_error_sent);
                encode_error(transaction_id, &kind.to_string(), &mut self.out);
                return Some(&self.out);
            }
            Err(RequestParseError::Unsendable { .. }) => {
                bump(&st.udp_dropped);
                return None;
            }
        };
        match request {
            Request::Connect(r) => {
                bump(&st.udp_connect);
                Response::Connect(ConnectResponse {
                    transaction_id: r.transaction_id,
                    connection_id: shared.ids.issue(now, src),
                })
                .encode(&mut self.out);
            }
            Request::Announce(r) => {
                crate::test_panic_point("udp-worker");
                if !shared.ids.is_valid(now, src, r.connection_id) {
                    bump(&st.udp_bad_connection_id);
                    return None;
                }
                // The BEP 15 IP field is honoured only when configured (it lets a client
                // list an address it does not hold); either way the entry belongs to the
                // packet's source, so nobody else can take it over (crate::swarm).
                let listed = match src {
                    SocketAddr::V4(_)
                        if shared.config.udp.trust_ip_field && !r.ip_address.is_unspecified() =>
                    {
                        SocketAddr::from((r.ip_address, src.port()))
                    }
                    _ => src,
                };
                let fabric = shared.fabric_of(r.fabric(), listed.ip());
                let interval = AnnounceInterval(shared.swarm.interval);
                let (counts, peers) = match listed {
                    SocketAddr::V4(v4) => {
                        self.peers4.clear();
                        let a = Announce {
                            peer_id: r.peer_id,
                            addr: SocketAddrV4::new(*v4.ip(), r.port),
                            source: src.ip(),
                            left: r.left,
                            event: r.event,
                            fabric,
                            numwant: r.num_want.get(),
                        };
                        let counts =
                            shared.announce(r.info_hash, &a, &mut self.rng, &mut self.peers4);
                        (counts, PeerList::V4(std::mem::take(&mut self.peers4)))
                    }
                    SocketAddr::V6(v6) => {
                        self.peers6.clear();
                        let a = Announce {
                            peer_id: r.peer_id,
                            addr: SocketAddrV6::new(*v6.ip(), r.port, 0, 0),
                            source: src.ip(),
                            left: r.left,
                            event: r.event,
                            fabric,
                            numwant: r.num_want.get(),
                        };
                        let counts =
                            shared.announce(r.info_hash, &a, &mut self.rng, &mut self.peers6);
                        (counts, PeerList::V6(std::mem::take(&mut self.peers6)))
                    }
                };
                match counts {
                    Ok(c) => {
                        bump(&st.udp_announce);
                        let resp = AnnounceResponse {
                            transaction_id: r.transaction_id,
                            interval,
                            leechers: c.leechers,
                            seeders: c.seeders,
                            peers,
                        };
                        resp.encode(&mut self.out);
                        if let Some(share) = c.fabric_share
                            && r.url_param(FABRIC_SHARE_PARAM).is_some()
                        {
                            append_fabric_share(share, &mut self.out);
                        }
                        // Hand the list's allocation back for the next announce.
                        match resp.peers {
                            PeerList::V4(v) => self.peers4 = v,
                            PeerList::V6(v) => self.peers6 = v,
                        }
                    }
                    Err(refused) => {
                        bump(&st.udp_error_sent);
                        encode_error(r.transaction_id, &refused.to_string(), &mut self.out);
                    }
                }
            }
            Request::Scrape(r) => {
                if !shared.ids.is_valid(now, src, r.connection_id) {
                    bump(&st.udp_bad_connection_id);
                    return None;
                }
                bump(&st.udp_scrape);
                let stats = r
                    .info_hashes
                    .iter()
                    .map(|h| {
                        let c = shared.scrape(h);
                        TorrentScrapeStats {
                            seeders: c.seeders,
                            completed: c.completed,
                            leechers: c.leechers,
                        }
                    })
                    .collect();
                Response::Scrape(ScrapeResponse {
                    transaction_id: r.transaction_id,
                    stats,
                })
                .encode(&mut self.out);
            }
        }
        Some(&self.out)
    }
}

/// Runs the worker until `shared.shutdown` is set and the waker fires.
pub(crate) fn run(
    mut processor: Processor,
    mut poll: Poll,
    sockets: Vec<std::net::UdpSocket>,
) -> io::Result<()> {
    let mut sockets: Vec<UdpSocket> = sockets.into_iter().map(UdpSocket::from_std).collect();
    for (i, s) in sockets.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(64);
    #[cfg(target_os = "linux")]
    let (mut rx, mut tx) = (
        crate::udp_batch::RecvBatch::new(),
        crate::udp_batch::SendBatch::new(),
    );
    #[cfg(not(target_os = "linux"))]
    let mut buf = vec![0u8; RECV_BUF_LEN];
    loop {
        match poll.poll(&mut events, Some(Duration::from_secs(1))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if processor.shared.is_shutting_down() {
            return Ok(());
        }
        for ev in events.iter() {
            let Some(socket) = sockets.get(ev.token().0) else {
                continue;
            };
            // Edge-triggered: read until the socket says it is empty.
            #[cfg(target_os = "linux")]
            drain_batched(&mut processor, socket, &mut rx, &mut tx);
            #[cfg(not(target_os = "linux"))]
            drain(&mut processor, socket, &mut buf);
        }
    }
}

/// Answers everything queued on `socket`, [`crate::udp_batch::BATCH`] datagrams per call.
#[cfg(target_os = "linux")]
fn drain_batched(
    processor: &mut Processor,
    socket: &UdpSocket,
    rx: &mut crate::udp_batch::RecvBatch,
    tx: &mut crate::udp_batch::SendBatch,
) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    loop {
        let n = match rx.recv(fd) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ICMP errors of earlier sends surface here; they concern nobody now.
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        for i in 0..n {
            let Some((src, packet)) = rx.request(i) else {
                continue;
            };
            if let Some(reply) = processor.process(src, packet) {
                // Copied: the processor reuses its buffer for the next request.
                tx.push(i, reply);
            }
        }
        let refused = tx.send(fd, rx);
        for _ in 0..refused {
            bump(&processor.shared.counters(processor.slot).udp_send_failed);
        }
        if n < crate::udp_batch::BATCH {
            // A short batch means the queue was empty: no need for an extra EAGAIN call.
            return;
        }
    }
}

/// Answers everything queued on `socket`, one datagram per call (portable fallback).
#[cfg(not(target_os = "linux"))]
fn drain(processor: &mut Processor, socket: &UdpSocket, buf: &mut [u8]) {
    loop {
        let (len, src) = match socket.recv_from(buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        if let Some(resp) = processor.process(src, &buf[..len]) {
            if let Err(e) = socket.send_to(resp, src) {
                bump(&processor.shared.counters(processor.slot).udp_send_failed);
                tracing::debug!(%src, error = %e, "UDP send failed");
            }
        }
    }
}
