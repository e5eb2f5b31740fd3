//! BEP 15 connection ids that cost no per-client state.
//!
//! An id is the first 8 bytes of a keyed BLAKE3 hash of (time window, client IP address).
//! It is accepted in the window it was issued in and the next one, so it lives between one
//! and two windows. The port is left out on purpose: libtorrent shares one connection id
//! among all sessions of a process (a static cache keyed by tracker address), and NATs may
//! change a client's port between its connect and its announce; opentracker and aquatic
//! bind ids to the IP alone for the same reasons. The key is random per process: a restarted tracker simply makes its
//! clients connect again, which BEP 15 clients do on their own.

use std::net::{IpAddr, SocketAddr};

use proto::tracker::udp::ConnectionId;

/// Issues and checks connection ids. Cheap to share: it holds only a key.
#[derive(Clone)]
pub struct ConnectionIds {
    key: [u8; 32],
    window_secs: u64,
}

impl std::fmt::Debug for ConnectionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ConnectionIds")
            .field("window_secs", &self.window_secs)
            .finish_non_exhaustive()
    }
}

impl ConnectionIds {
    /// `window_secs` must be at least 1.
    pub fn new(key: [u8; 32], window_secs: u64) -> Self {
        Self {
            key,
            window_secs: window_secs.max(1),
        }
    }

    fn id_for(&self, window: u64, addr: SocketAddr) -> ConnectionId {
        // window 8 + IPv6 (or v4-mapped) address 16.
        let mut input = [0u8; 8 + 16];
        input[..8].copy_from_slice(&window.to_le_bytes());
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        input[8..24].copy_from_slice(&ip.octets());
        let hash = blake3::keyed_hash(&self.key, &input);
        let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("8 bytes");
        ConnectionId(u64::from_le_bytes(bytes))
    }

    /// The id to hand to `addr` at `now_secs` (any monotonic seconds counter).
    pub fn issue(&self, now_secs: u64, addr: SocketAddr) -> ConnectionId {
        self.id_for(now_secs / self.window_secs, addr)
    }

    /// Whether `id` was issued to `addr` in this window or the previous one.
    pub fn is_valid(&self, now_secs: u64, addr: SocketAddr, id: ConnectionId) -> bool {
        let window = now_secs / self.window_secs;
        self.id_for(window, addr) == id || (window > 0 && self.id_for(window - 1, addr) == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> ConnectionIds {
        ConnectionIds::new([42; 32], 120)
    }

    #[test]
    fn valid_in_its_window_and_the_next() {
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let id = ids().issue(130, a);
        assert!(ids().is_valid(130, a, id));
        assert!(ids().is_valid(239, a, id), "end of the same window");
        assert!(ids().is_valid(240, a, id), "start of the next window");
        assert!(ids().is_valid(359, a, id), "end of the next window");
        assert!(!ids().is_valid(360, a, id), "two windows later: expired");
        assert!(!ids().is_valid(0, a, id), "not valid before it was issued");
    }

    #[test]
    fn bound_to_the_ip_and_the_key() {
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let same_ip: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let c: SocketAddr = "[::1]:4000".parse().unwrap();
        let id = ids().issue(10, a);
        assert!(
            ids().is_valid(10, same_ip, id),
            "another port of the same host"
        );
        assert!(!ids().is_valid(10, b, id));
        assert!(!ids().is_valid(10, c, id));
        assert!(!ConnectionIds::new([43; 32], 120).is_valid(10, a, id));
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        assert!(!format!("{:?}", ids()).contains("42"));
    }
}
