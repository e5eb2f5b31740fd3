//! The simulator's event queue: events in order of (virtual time, insertion), for a clock
//! that never goes back (nothing is scheduled before the event being handled).
//!
//! A run of 10,000 hosts keeps millions of events waiting and handles hundreds of millions;
//! one binary heap over all of them, or a heap of indices into a slab of events, spent most
//! of its time in cache misses. Here time is cut into buckets of [`BUCKET_NANOS`], and the
//! events themselves (not indices) sit in their bucket's vector: a push appends to a vector,
//! and a bucket, when its turn comes, is sorted once and then drained front to back, so
//! almost every access is sequential. Events pushed into the bucket being drained (those due
//! at once) go to a small heap beside it.
//!
//! The buckets of the next [`RING`] (about a second of virtual time, where nearly every event
//! lands: message latencies, transfers, ticks) sit in a ring indexed by bucket number, with
//! a bitmap of the occupied ones; only later buckets (announces, long queues) go to an
//! ordered map. A push is then an index and an append, not a tree search (which was half
//! of a push). Each ring slot holds one bucket at a time: a slot's bucket is drained before
//! the ring reaches the bucket one turn later.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

/// Width of a bucket: 64 µs of virtual time.
const BUCKET_NANOS: u64 = 1 << 16;
/// Buckets in the ring: 2^14 x 64 µs, about 1.07 s.
const RING: u64 = 1 << 14;

/// A ring index or size (below [`RING`]) as a `usize`.
#[allow(clippy::cast_possible_truncation)]
fn small(x: u64) -> usize {
    debug_assert!(x <= RING);
    x as usize
}

/// An event with its time in nanoseconds and insertion number, ordered by those two only.
#[derive(Debug)]
struct Entry<T> {
    nanos: u64,
    seq: u64,
    event: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (u64, u64) {
        (self.nanos, self.seq)
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// A monotone priority queue of events.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    /// The bucket being drained, sorted latest first (popped from the end).
    current: Vec<Entry<T>>,
    /// Events pushed into the bucket being drained after it was sorted.
    current_new: BinaryHeap<Reverse<Entry<T>>>,
    current_bucket: u64,
    /// Buckets `current_bucket + 1 ..= current_bucket + RING - 1`, at `bucket % RING`
    /// (allocated at the first push).
    ring: Vec<Vec<Entry<T>>>,
    /// Bit `s` of word `s / 64`: ring slot `s` is not empty.
    occupied: Vec<u64>,
    /// Entries in the ring.
    ring_len: usize,
    /// Buckets beyond the ring when they were pushed to.
    later: BTreeMap<u64, Vec<Entry<T>>>,
    seq: u64,
    len: usize,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self {
            current: Vec::new(),
            current_new: BinaryHeap::new(),
            current_bucket: 0,
            ring: Vec::new(),
            occupied: Vec::new(),
            ring_len: 0,
            later: BTreeMap::new(),
            seq: 0,
            len: 0,
        }
    }
}

impl<T> EventQueue<T> {
    /// Queues `event` at `nanos`, after everything already queued for the same time.
    /// `nanos` must not be before the last popped time.
    pub(crate) fn push(&mut self, nanos: u64, event: T) {
        self.seq += 1;
        self.len += 1;
        let entry = Entry {
            nanos,
            seq: self.seq,
            event,
        };
        let bucket = nanos / BUCKET_NANOS;
        if bucket <= self.current_bucket {
            // Never before the clock, so at worst inside the bucket being drained.
            self.current_new.push(Reverse(entry));
        } else if bucket - self.current_bucket < RING {
            if self.ring.is_empty() {
                self.ring.resize_with(small(RING), Vec::new);
                self.occupied = vec![0; small(RING / 64)];
            }
            let slot = small(bucket % RING);
            self.ring[slot].push(entry);
            self.occupied[slot / 64] |= 1 << (slot % 64);
            self.ring_len += 1;
        } else {
            self.later.entry(bucket).or_default().push(entry);
        }
    }

    /// The earliest bucket in the ring, if any.
    fn first_in_ring(&self) -> Option<u64> {
        if self.ring_len == 0 {
            return None;
        }
        // Slots from the one after the current bucket's, once round.
        let start = (self.current_bucket + 1) % RING;
        let words = self.occupied.len() as u64;
        let (w0, b0) = (start / 64, start % 64);
        for k in 0..=words {
            let w = (w0 + k) % words;
            let mut bits = self.occupied[small(w)];
            if k == 0 {
                bits &= !0 << b0; // the first word from `start` on
            } else if k == words {
                bits &= !(!0 << b0); // and its bits before `start`, last
            }
            if bits != 0 {
                let slot = w * 64 + u64::from(bits.trailing_zeros());
                // Slot distance ahead of the current bucket: 1..RING.
                let ahead = (slot + RING - self.current_bucket % RING) % RING;
                return Some(self.current_bucket + ahead);
            }
        }
        debug_assert!(false, "ring_len > 0 but no slot occupied");
        None
    }

    /// Makes the next bucket current when this one is drained; false when nothing is left.
    fn refill(&mut self) -> bool {
        if !self.current.is_empty() || !self.current_new.is_empty() {
            return true;
        }
        let ring = self.first_in_ring();
        let far = self.later.first_key_value().map(|(b, _)| *b);
        let bucket = match (ring, far) {
            (Some(r), Some(f)) => r.min(f),
            (Some(r), None) => r,
            (None, Some(f)) => f,
            (None, None) => return false,
        };
        // The slot is left without room: a ring of slots each keeping the largest bucket's
        // room held a gigabyte at 1,000 hosts.
        let mut entries = Vec::new();
        if ring == Some(bucket) {
            let slot = small(bucket % RING);
            entries = std::mem::take(&mut self.ring[slot]);
            self.occupied[slot / 64] &= !(1 << (slot % 64));
            self.ring_len -= entries.len();
        }
        // A bucket pushed to while beyond the ring and again once inside it has entries in
        // both places.
        if far == Some(bucket)
            && let Some(mut more) = self.later.remove(&bucket)
        {
            entries.append(&mut more);
        }
        self.current_bucket = bucket;
        // Latest first, so that the earliest pops off the end. Keys are unique (seq).
        entries.sort_unstable_by_key(|e| Reverse(e.key()));
        self.current = entries;
        true
    }

    /// True if the earliest event is at the end of `current` rather than in `current_new`.
    fn earliest_in_current(&self) -> bool {
        match (self.current.last(), self.current_new.peek()) {
            (Some(a), Some(Reverse(b))) => a.key() < b.key(),
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The time of the earliest entry, without taking it.
    pub(crate) fn peek_time(&mut self) -> Option<u64> {
        if !self.refill() {
            return None;
        }
        if self.earliest_in_current() {
            self.current.last().map(|e| e.nanos)
        } else {
            self.current_new.peek().map(|Reverse(e)| e.nanos)
        }
    }

    /// The earliest entry: (time in nanoseconds, event).
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        if !self.refill() {
            return None;
        }
        let e = if self.earliest_in_current() {
            self.current.pop()?
        } else {
            self.current_new.pop()?.0
        };
        self.len -= 1;
        Some((e.nanos, e.event))
    }

    /// Entries waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a sorted list: pops come in (time, insertion) order, whatever mix of
        /// near and far times is pushed while popping.
        #[test]
        fn pops_in_time_then_insertion_order(steps in proptest::collection::vec((0u64..400_000, any::<bool>()), 1..600)) {
            let mut q = EventQueue::default();
            let mut model: Vec<(u64, u64, u32)> = Vec::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            for (i, (delay, pop)) in steps.into_iter().enumerate() {
                if pop {
                    model.sort();
                    let want = (!model.is_empty()).then(|| model.remove(0));
                    let got = q.pop();
                    prop_assert_eq!(got, want.map(|(t, _, p)| (t, p)));
                    if let Some((t, _)) = got {
                        now = t;
                    }
                } else {
                    seq += 1;
                    let p = u32::try_from(i).unwrap();
                    // Small delays too, so that pushes land in the bucket being drained, and
                    // long ones (up to two turns of the ring), so that some go beyond it.
                    let delay = match delay % 3 {
                        0 => delay % 100,
                        1 => delay * 5_000,
                        _ => delay,
                    };
                    q.push(now + delay, p);
                    model.push((now + delay, seq, p));
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
