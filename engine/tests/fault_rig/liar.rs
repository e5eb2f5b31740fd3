//! A lying peer on a raw socket (BEP 3 by hand): it claims every piece (full bitfield),
//! unchokes at once and answers every request with random bytes of the asked length. It counts
//! what it served and how each connection ended.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the liar did, over all its connections.
#[derive(Clone, Debug, Default)]
pub struct LiarCounts {
    pub connections: u64,
    /// 16 KiB (or shorter) blocks of random bytes sent.
    pub blocks_served: u64,
    /// Distinct pieces it sent blocks of.
    pub pieces_touched: std::collections::BTreeSet<u32>,
    /// Connections the other side closed (a ban looks like this).
    pub closed_by_remote: u64,
}

pub struct Liar {
    pub addr: SocketAddr,
    counts: Arc<Mutex<LiarCounts>>,
    stop: Arc<AtomicBool>,
}

impl Liar {
    /// Serves `info_hash` as if it had all `num_pieces` pieces, on `addr` (port 0: any).
    pub fn start(addr: SocketAddr, info_hash: [u8; 20], num_pieces: u32) -> Liar {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let counts = Arc::new(Mutex::new(LiarCounts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (counts, stop) = (counts.clone(), stop.clone());
            thread::spawn(move || {
                let mut seed = 0x5eed_u64;
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            counts.lock().unwrap().connections += 1;
                            let counts = counts.clone();
                            seed += 1;
                            thread::spawn(move || {
                                use std::io::ErrorKind::*;
                                let remote_closed =
                                    match lie(stream, &info_hash, num_pieces, &counts, seed) {
                                        Ok(()) => true,
                                        Err(e) => {
                                            matches!(
                                                e.kind(),
                                                UnexpectedEof | ConnectionReset | BrokenPipe
                                            )
                                        }
                                    };
                                if remote_closed {
                                    counts.lock().unwrap().closed_by_remote += 1;
                                }
                            });
                        }
                        // Polling the stop flag, not synchronising with anything.
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Liar { addr, counts, stop }
    }

    pub fn counts(&self) -> LiarCounts {
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One connection, until the other side closes it (an EOF or reset error) or it breaks.
fn lie(
    mut s: TcpStream,
    info_hash: &[u8; 20],
    num_pieces: u32,
    counts: &Mutex<LiarCounts>,
    mut rng: u64,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)?;
    if theirs[28..48] != info_hash[..] {
        return Err(std::io::Error::other("wrong info-hash"));
    }
    let mut hs = Vec::with_capacity(68);
    hs.push(19u8); // pstrlen
    hs.extend_from_slice(b"BitTorrent protocol"); // pstr
    hs.extend_from_slice(&[0u8; 8]); // reserved: no extensions
    hs.extend_from_slice(info_hash); // info_hash
    hs.extend_from_slice(b"-LI0001-liar-liar-00"); // peer_id
    s.write_all(&hs)?;

    // bitfield: every piece, spare bits of the last byte clear (BEP 3).
    let mut bits = vec![0xffu8; num_pieces.div_ceil(8) as usize];
    let spare = bits.len() * 8 - num_pieces as usize;
    if let Some(last) = bits.last_mut() {
        *last = 0xffu8 << spare;
    }
    let mut msg = ((1 + bits.len()) as u32).to_be_bytes().to_vec(); // length
    msg.push(5); // id: bitfield
    msg.extend_from_slice(&bits);
    msg.extend_from_slice(&1u32.to_be_bytes()); // length
    msg.push(1); // id: unchoke
    s.write_all(&msg)?;

    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            continue; // keep-alive
        }
        if len > 1 << 20 {
            return Err(std::io::Error::other("message too long"));
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        if body[0] == 6 && len == 13 {
            // request: index, begin, length -> piece of random bytes
            let index = u32::from_be_bytes(body[1..5].try_into().unwrap());
            let begin = u32::from_be_bytes(body[5..9].try_into().unwrap());
            let want = u32::from_be_bytes(body[9..13].try_into().unwrap()) as usize;
            let mut piece = ((9 + want) as u32).to_be_bytes().to_vec(); // length
            piece.push(7); // id: piece
            piece.extend_from_slice(&index.to_be_bytes()); // index
            piece.extend_from_slice(&begin.to_be_bytes()); // begin
            for _ in 0..want {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                piece.push(rng as u8); // block: lies
            }
            s.write_all(&piece)?;
            let mut c = counts.lock().unwrap();
            c.blocks_served += 1;
            c.pieces_touched.insert(index);
        }
    }
}
