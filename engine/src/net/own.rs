//! Our own addresses, as the edge sees them (issue 9): the listen address, every local
//! address when the listener is bound to the wildcard, and the `--announce-ip`. A tracker
//! (or a `--peer` list) may hand any of them back; the torrent task checks each dial
//! against [`OwnAddresses::contains`] and tells the machine `Input::OwnAddress` instead of
//! dialling, so it never dials itself. A dial that still reaches us (NAT, a relay) is caught
//! by the peer id in the handshake, with the same outcome.
//!
//! Also here: which local IP outgoing sockets (peer dials, tracker announces) bind to, so
//! that a host with several addresses is seen at the address peers must dial.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// The addresses at which we would reach ourselves.
#[derive(Debug, Default)]
pub struct OwnAddresses {
    listen: Option<SocketAddr>,
    announce_ip: Option<IpAddr>,
    /// IP -> "is one of this host's addresses", for a wildcard listener.
    local: Mutex<HashMap<IpAddr, bool>>,
}

/// An IPv4-mapped IPv6 address as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// True if `ip` is one of this host's addresses: the kernel lets a socket bind to it only
/// then (the same answer `getifaddrs` gives, for one address, without a walk of the
/// interfaces; every 127/8 address is local on Linux).
fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_unspecified() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl OwnAddresses {
    /// Ours when listening on `listen` (`None`: not listening, so nothing dials back to us)
    /// and announcing `announce_ip` to trackers.
    pub fn new(listen: Option<SocketAddr>, announce_ip: Option<IpAddr>) -> Self {
        Self {
            listen,
            announce_ip: announce_ip.map(canonical),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// True if dialling `addr` would reach our own listener.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let Some(listen) = self.listen else {
            return false;
        };
        if addr.port() != listen.port() {
            return false;
        }
        let ip = canonical(addr.ip());
        if Some(ip) == self.announce_ip {
            return true;
        }
        let ours = canonical(listen.ip());
        if !ours.is_unspecified() {
            return ip == ours || ip.is_unspecified();
        }
        // A wildcard listener owns the port on every local address (nobody else on this
        // host can hold it on a specific one).
        *self
            .local
            .lock()
            .expect("own addresses lock")
            .entry(ip)
            .or_insert_with(|| is_local_ip(ip))
    }

    /// The listen IP when it is a specific address (outgoing sockets bind to it).
    pub fn bind_ip(&self) -> Option<IpAddr> {
        self.listen
            .map(|l| l.ip())
            .filter(|ip| !ip.is_unspecified())
    }
}

/// The local address an outgoing socket to `dest` should bind to, given the configured
/// source IP: that IP when it can reach `dest` (same family; a loopback address only to a
/// loopback destination and the other way round), else `None` (let the kernel choose).
pub fn source_for(local: Option<IpAddr>, dest: SocketAddr) -> Option<SocketAddr> {
    let ip = local?;
    let dest = canonical(dest.ip());
    let same_family = ip.is_ipv4() == dest.is_ipv4();
    (same_family && !ip.is_unspecified() && ip.is_loopback() == dest.is_loopback())
        .then_some(SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_specific_listener_owns_its_address_and_the_announce_ip() {
        let own = OwnAddresses::new(
            Some(a("127.0.0.1:7000")),
            Some("192.0.2.7".parse().unwrap()),
        );
        assert!(own.contains(a("127.0.0.1:7000")));
        assert!(own.contains(a("192.0.2.7:7000")));
        assert!(own.contains(a("[::ffff:127.0.0.1]:7000")));
        assert!(!own.contains(a("127.0.0.1:7001")), "another port");
        assert!(
            !own.contains(a("127.0.0.2:7000")),
            "another local address, not ours"
        );
        assert_eq!(own.bind_ip(), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_wildcard_listener_owns_its_port_on_every_local_address() {
        let own = OwnAddresses::new(Some(a("0.0.0.0:7000")), None);
        assert!(own.contains(a("127.0.0.1:7000")));
        assert!(own.contains(a("127.3.4.5:7000")));
        assert!(own.contains(a("0.0.0.0:7000")));
        // TEST-NET-3: never a local address here.
        assert!(!own.contains(a("203.0.113.9:7000")));
        assert!(!own.contains(a("127.0.0.1:7001")));
        assert_eq!(own.bind_ip(), None);
    }

    #[test]
    fn nothing_is_ours_without_a_listener() {
        assert!(!OwnAddresses::new(None, None).contains(a("127.0.0.1:7000")));
    }

    #[test]
    fn sockets_bind_to_the_source_only_where_it_can_reach() {
        let ip = Some("10.77.0.2".parse().unwrap());
        assert_eq!(source_for(ip, a("10.77.0.1:6969")), Some(a("10.77.0.2:0")));
        assert_eq!(source_for(ip, a("127.0.0.1:6969")), None);
        assert_eq!(source_for(ip, a("[::1]:6969")), None);
        assert_eq!(source_for(None, a("10.77.0.1:6969")), None);
        let lo = Some("127.0.0.1".parse().unwrap());
        assert_eq!(source_for(lo, a("127.0.0.1:6969")), Some(a("127.0.0.1:0")));
        assert_eq!(source_for(lo, a("10.77.0.1:6969")), None);
    }
}
