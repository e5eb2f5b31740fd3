//! A peer that accepts connections and never answers: a raw TCP listener that reads whatever
//! arrives (a BitTorrent handshake, normally) and writes nothing. It records, per connection,
//! what it read and when the other side gave up (EOF or reset).

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One connection the silent peer accepted.
#[derive(Clone, Debug)]
pub struct Silenced {
    /// Bytes the dialler sent (68 for a plain BitTorrent handshake).
    pub received: Vec<u8>,
    /// How long after the accept the dialler closed it; `None` while still open.
    pub closed_after: Option<Duration>,
}

pub struct SilentPeer {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Silenced>>>,
    stop: Arc<AtomicBool>,
}

impl SilentPeer {
    /// Listens on `addr` (port 0: any).
    pub fn start(addr: SocketAddr) -> SilentPeer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (conns, stop) = (conns.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let conns = conns.clone();
                            let slot = {
                                let mut c = conns.lock().unwrap();
                                c.push(Silenced {
                                    received: Vec::new(),
                                    closed_after: None,
                                });
                                c.len() - 1
                            };
                            thread::spawn(move || swallow(stream, &conns, slot));
                        }
                        // Polling the stop flag, not synchronising with anything.
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        SilentPeer { addr, conns, stop }
    }

    pub fn connections(&self) -> Vec<Silenced> {
        self.conns.lock().unwrap().clone()
    }
}

/// Reads until the other side closes; never writes.
fn swallow(mut stream: std::net::TcpStream, conns: &Mutex<Vec<Silenced>>, slot: usize) {
    let accepted = Instant::now();
    let _ = stream.set_nonblocking(false);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => conns.lock().unwrap()[slot]
                .received
                .extend_from_slice(&buf[..n]),
        }
    }
    conns.lock().unwrap()[slot].closed_after = Some(accepted.elapsed());
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
