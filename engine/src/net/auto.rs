//! When a TCP connection to an instream peer moves to QUIC: the rule behind
//! `--transport auto` (and `quic`'s second chance), as a pure function of what the
//! connection knows once the peer's BEP 10 handshake has arrived.
//!
//! Measured (docs/QUIC.md; `harness swarm --transports tcp,quic,auto`): QUIC costs 1.3-2.8×
//! TCP's CPU per byte and is slower on clean and on merely narrow links; it was faster only
//! on 30 ms round trips with 1 % loss, and only with BBR, whose pacing does not back off on
//! every random loss as CUBIC does. Loss alone hurts TCP little at LAN round trips (CUBIC
//! regrows its window in a few round trips), so the round trip is what tells the two cases
//! apart at connect time. The rule, under `auto`:
//! - **one end decides**: the one with the lower peer id, as for crossing dials
//!   (`proto::torrent`), so the two ends never both dial QUIC for one pair; and only for a
//!   peer that announced a QUIC port (instream peers do; other clients never do, and stay on
//!   TCP);
//! - only a peer in **another fabric** moves: both ends must name their fabric (`--fabric`,
//!   sent in BEP 10) and the names must differ; one data center is a LAN, and without
//!   names nothing moves;
//! - and only when TCP's smallest round-trip sample is at least [`SLOW_PATH_RTT`] (a
//!   WAN-like path, where QUIC with BBR measured better).
//!
//! Why the fabric test and not the round trip alone: measured on one clean 400 Mbit/s
//! fabric under load, 20 of 128 connections saw a first round trip of 10 ms or more (a
//! SYN-ACK waiting behind a busy uplink's 25 ms queue) and moved for nothing.
//!
//! Under `quic` a TCP connection (a fallback) moves whenever the peer announced a QUIC port
//! (the first dial may have gone to the TCP port number), the same end deciding. Under
//! `tcp` nothing moves.
//!
//! Moving is a QUIC dial to the announced port; if its handshake is not done within the
//! dial timeout (1 s: UDP blocked), the TCP connection simply goes on, so a blocked UDP path
//! costs nothing but the attempt. When the QUIC connection is up, both ends close the TCP
//! one (same peer id, QUIC preferred: `driver`).

use std::time::Duration;

use super::Transport;

/// Smallest TCP round trip at which `auto` moves a connection to QUIC. A LAN round trip is
/// well under a millisecond; a cross-region one is tens of milliseconds. The gap between
/// them is wide, but a SYN-ACK that waited in a busy uplink's queue can take up to that
/// queue's length (25 ms in the benchmark's shaping), which is why a peer of our own fabric
/// (or of no named fabric) never moves whatever it measured.
pub const SLOW_PATH_RTT: Duration = Duration::from_millis(10);

/// What a TCP connection knows when the peer's extension handshake arrives.
#[derive(Debug, Clone, Copy)]
pub struct PathFacts<'a> {
    /// Our peer id is the lower of the two: this end decides.
    pub we_decide: bool,
    /// The QUIC port the peer announced (`None`: not an instream peer, or no QUIC there).
    pub quic_port: Option<u16>,
    /// TCP's smallest round-trip sample (`None`: unknown).
    pub min_rtt: Option<Duration>,
    /// Our fabric and the peer's, where known.
    pub our_fabric: Option<&'a str>,
    /// The fabric the peer announced.
    pub their_fabric: Option<&'a str>,
}

/// True if the connection should move to QUIC (see the module header).
pub fn moves_to_quic(transport: Transport, f: &PathFacts<'_>) -> bool {
    if !f.we_decide || f.quic_port.is_none() {
        return false;
    }
    match transport {
        Transport::Tcp => false,
        Transport::Quic => true,
        Transport::Auto => {
            let other_fabric =
                matches!((f.our_fabric, f.their_fabric), (Some(a), Some(b)) if a != b);
            other_fabric && f.min_rtt.is_some_and(|r| r >= SLOW_PATH_RTT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(rtt_ms: u64) -> PathFacts<'static> {
        PathFacts {
            we_decide: true,
            quic_port: Some(6881),
            min_rtt: Some(Duration::from_millis(rtt_ms)),
            our_fabric: Some("f1"),
            their_fabric: Some("f2"),
        }
    }

    #[test]
    fn auto_moves_only_slow_paths_to_other_fabrics_of_instream_peers_and_one_end_decides() {
        let a = Transport::Auto;
        assert!(moves_to_quic(a, &facts(30)), "30 ms across fabrics moves");
        assert!(moves_to_quic(a, &facts(10)), "the threshold itself moves");
        assert!(
            !moves_to_quic(a, &facts(1)),
            "a LAN round trip stays on TCP"
        );
        let same = PathFacts {
            their_fabric: Some("f1"),
            ..facts(30)
        };
        assert!(!moves_to_quic(a, &same), "our own fabric stays on TCP");
        let unknown = PathFacts {
            our_fabric: None,
            their_fabric: None,
            ..facts(30)
        };
        assert!(
            !moves_to_quic(a, &unknown),
            "no fabric names: nothing moves"
        );
        let theirs_unknown = PathFacts {
            their_fabric: None,
            ..facts(30)
        };
        assert!(!moves_to_quic(a, &theirs_unknown), "one name is not enough");
        let libtorrent = PathFacts {
            quic_port: None,
            ..facts(30)
        };
        assert!(!moves_to_quic(a, &libtorrent), "no QUIC port: not ours");
        let other_end = PathFacts {
            we_decide: false,
            ..facts(30)
        };
        assert!(!moves_to_quic(a, &other_end), "the lower peer id decides");
        let no_rtt = PathFacts {
            min_rtt: None,
            ..facts(30)
        };
        assert!(!moves_to_quic(a, &no_rtt), "unmeasured stays on TCP");
    }

    #[test]
    fn quic_moves_every_dialled_instream_peer_and_tcp_none() {
        assert!(moves_to_quic(Transport::Quic, &facts(0)));
        let other_end = PathFacts {
            we_decide: false,
            ..facts(0)
        };
        assert!(!moves_to_quic(Transport::Quic, &other_end));
        assert!(!moves_to_quic(Transport::Tcp, &facts(30)));
        let libtorrent = PathFacts {
            quic_port: None,
            ..facts(30)
        };
        assert!(!moves_to_quic(Transport::Quic, &libtorrent));
    }
}
