//! Peers we know of and may dial: discovered addresses, dial state, back-off after failures,
//! bans, and our own addresses. Incoming connections are not recorded here (their source
//! port is ephemeral).
//!
//! Invariant: an address marked as our own ([`AddressBook::mark_own`]: the edge recognised
//! one of its listen or announce addresses, or a handshake carried our peer id) is never
//! handed out by [`AddressBook::next_dials`] again, whoever lists it later (issue 9: a
//! tracker handing a seed its own address made it dial itself every few seconds).
//!
//! Bounds: at most [`MAX_ADDRESSES`] known addresses; at the cap a new one takes the place
//! of an address that failed [`MAX_DIAL_FAILURES`] dials in a row, or is not recorded (a
//! tracker lists it again later); bans and own addresses are capped FIFOs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::bounded::{Fifo, MAX_BANS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialState {
    Idle,
    Connecting,
    Connected,
}

#[derive(Debug)]
struct Entry {
    state: DialState,
    failures: u32,
    retry_at: Instant,
}

/// Known peer addresses and their dial state.
#[derive(Debug)]
pub(crate) struct AddressBook {
    entries: HashMap<SocketAddr, Entry>,
    banned: Fifo<SocketAddr, ()>,
    own: Fifo<SocketAddr, ()>,
    half_open: usize,
}

impl Default for AddressBook {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            banned: Fifo::new(MAX_BANS),
            own: Fifo::new(MAX_OWN),
            half_open: 0,
        }
    }
}

/// Most addresses known at once (a tracker reply carries at most a few hundred).
pub(crate) const MAX_ADDRESSES: usize = 8192;
/// Failed dials in a row after which an address may make room for a new one (about four
/// minutes of back-off).
pub(crate) const MAX_DIAL_FAILURES: u32 = 10;
/// Most addresses remembered as our own.
const MAX_OWN: usize = 256;

/// First retry after a failed dial; doubles per failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl AddressBook {
    pub(crate) fn add(&mut self, addr: SocketAddr, now: Instant) {
        if self.banned.contains(&addr) || self.own.contains(&addr) {
            return;
        }
        if self.entries.len() >= MAX_ADDRESSES
            && !self.entries.contains_key(&addr)
            && !self.forget_a_dead_address()
        {
            return;
        }
        self.entries.entry(addr).or_insert(Entry {
            state: DialState::Idle,
            failures: 0,
            retry_at: now,
        });
    }

    pub(crate) fn ban(&mut self, addr: SocketAddr) {
        self.banned.insert(addr, ());
        self.forget(addr);
    }

    /// `addr` is ours: forget it and never dial it again. Returns false if it was already
    /// known to be ours.
    pub(crate) fn mark_own(&mut self, addr: SocketAddr) -> bool {
        self.forget(addr);
        self.own.insert(addr, ())
    }

    fn forget(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.remove(&addr)
            && e.state == DialState::Connecting
        {
            self.half_open -= 1;
        }
    }

    /// Makes room at the cap: forgets one idle address that failed
    /// [`MAX_DIAL_FAILURES`] dials in a row, if there is one (a scan, but only when full).
    fn forget_a_dead_address(&mut self) -> bool {
        let dead = self
            .entries
            .iter()
            .find(|(_, e)| e.state == DialState::Idle && e.failures >= MAX_DIAL_FAILURES)
            .map(|(a, _)| *a);
        dead.is_some_and(|a| self.entries.remove(&a).is_some())
    }

    pub(crate) fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.banned.contains(addr)
    }

    pub(crate) fn half_open(&self) -> usize {
        self.half_open
    }

    /// Addresses to dial now, at most `max`; they move to the connecting state.
    pub(crate) fn next_dials(&mut self, now: Instant, max: usize, out: &mut Vec<SocketAddr>) {
        if max == 0 {
            return;
        }
        let mut ready: Vec<(&SocketAddr, &mut Entry)> = self
            .entries
            .iter_mut()
            .filter(|(_, e)| e.state == DialState::Idle && e.retry_at <= now)
            .collect();
        // Deterministic order (fewest failures, then address) keeps simulations reproducible.
        ready.sort_by(|a, b| (a.1.failures, a.0).cmp(&(b.1.failures, b.0)));
        for (addr, e) in ready.into_iter().take(max) {
            e.state = DialState::Connecting;
            self.half_open += 1;
            out.push(*addr);
        }
    }

    pub(crate) fn connected(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            if e.state == DialState::Connecting {
                self.half_open -= 1;
            }
            e.state = DialState::Connected;
            e.failures = 0;
        }
    }

    pub(crate) fn failed(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            if e.state == DialState::Connecting {
                self.half_open -= 1;
            }
            e.state = DialState::Idle;
            e.failures += 1;
            let backoff = BASE_BACKOFF
                .saturating_mul(1 << e.failures.min(7))
                .min(MAX_BACKOFF);
            e.retry_at = now + backoff;
        }
    }

    /// A connection we dialled ended; it may be dialled again after a pause.
    pub(crate) fn disconnected(&mut self, addr: SocketAddr, now: Instant, pause: Duration) {
        if let Some(e) = self.entries.get_mut(&addr) {
            if e.state == DialState::Connecting {
                self.half_open -= 1;
            }
            e.state = DialState::Idle;
            e.retry_at = now + pause;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_dials_back_off_and_banned_addresses_are_never_dialled() {
        let t0 = Instant::now();
        let a: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        let mut book = AddressBook::default();
        book.add(a, t0);
        book.add(b, t0);
        book.ban(b);
        book.add(b, t0);
        let mut out = Vec::new();
        book.next_dials(t0, 10, &mut out);
        assert_eq!(out, vec![a]);
        assert_eq!(book.half_open(), 1);
        book.failed(a, t0);
        assert_eq!(book.half_open(), 0);
        out.clear();
        book.next_dials(t0 + Duration::from_millis(100), 10, &mut out);
        assert!(out.is_empty(), "still backing off");
        book.next_dials(t0 + Duration::from_secs(2), 10, &mut out);
        assert_eq!(out, vec![a]);
    }

    #[test]
    fn r9_an_address_marked_as_ours_is_never_dialled_again() {
        let t0 = Instant::now();
        let me: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let mut book = AddressBook::default();
        book.add(me, t0);
        let mut out = Vec::new();
        book.next_dials(t0, 10, &mut out);
        assert_eq!(out, vec![me]);
        // The dial reached ourselves: the edge says so instead of reporting a failure.
        assert!(book.mark_own(me));
        assert!(!book.mark_own(me), "already known");
        assert_eq!(book.half_open(), 0);
        // A tracker lists us again, much later.
        book.add(me, t0 + Duration::from_secs(600));
        out.clear();
        book.next_dials(t0 + Duration::from_secs(3600), 10, &mut out);
        assert!(out.is_empty(), "dialled ourselves again: {out:?}");
    }

    #[test]
    fn at_the_cap_a_new_address_replaces_a_dead_one_or_is_not_recorded() {
        let t0 = Instant::now();
        let addr = |n: usize| {
            let [.., hi, lo] = u32::try_from(n).unwrap().to_be_bytes();
            SocketAddr::from(([10, 1, hi, lo], 6881))
        };
        let mut book = AddressBook::default();
        for n in 0..MAX_ADDRESSES {
            book.add(addr(n), t0);
        }
        let extra: SocketAddr = "10.9.9.9:6881".parse().unwrap();
        book.add(extra, t0);
        assert_eq!(book.entries.len(), MAX_ADDRESSES);
        assert!(!book.entries.contains_key(&extra), "no room: not recorded");
        // Address 0 keeps failing; once it is dead, the newcomer takes its place.
        for _ in 0..MAX_DIAL_FAILURES {
            book.entries.get_mut(&addr(0)).unwrap().state = DialState::Connecting;
            book.half_open += 1;
            book.failed(addr(0), t0);
        }
        book.add(extra, t0);
        assert_eq!(book.entries.len(), MAX_ADDRESSES);
        assert!(book.entries.contains_key(&extra));
        assert!(!book.entries.contains_key(&addr(0)));
        assert_eq!(book.half_open(), 0);
    }
}
