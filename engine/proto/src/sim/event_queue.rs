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

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

/// Width of a bucket: 64 µs of virtual time.
const BUCKET_NANOS: u64 = 1 << 16;

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
        } else {
            self.later.entry(bucket).or_default().push(entry);
        }
    }

    /// Makes the next bucket current when this one is drained; false when nothing is left.
    fn refill(&mut self) -> bool {
        if !self.current.is_empty() || !self.current_new.is_empty() {
            return true;
        }
        let Some((bucket, mut entries)) = self.later.pop_first() else {
            return false;
        };
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
        fn pops_in_time_then_insertion_order(steps in proptest::collection::vec((0u64..400_000, any::<bool>()), 1..400)) {
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
                    // Small delays too, so that pushes land in the bucket being drained.
                    let delay = if delay % 3 == 0 { delay % 100 } else { delay };
                    q.push(now + delay, p);
                    model.push((now + delay, seq, p));
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
