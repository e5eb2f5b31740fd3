//! The simulator's event queue: events in order of (virtual time, insertion), for a clock
//! that never goes back (nothing is scheduled before the event being handled).
//!
//! A run of 1000 hosts keeps about 200,000 events waiting and handles millions; one binary
//! heap over all of them spent most of its time in cache misses. Here time is cut into
//! buckets of [`BUCKET_NANOS`]: only the bucket being drained is a heap, later buckets are
//! plain vectors in a `BTreeMap`, heapified when their turn comes. Almost every push and pop
//! touches a small heap that stays in cache.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Width of a bucket: 64 µs of virtual time.
const BUCKET_NANOS: u64 = 1 << 16;

/// (time in nanoseconds, insertion number, payload).
type Entry = (u64, u64, u32);

/// A monotone priority queue of `u32` payloads.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    /// The bucket being drained (all entries have its bucket number).
    current: BinaryHeap<Reverse<Entry>>,
    current_bucket: u64,
    later: BTreeMap<u64, Vec<Entry>>,
    seq: u64,
    len: usize,
}

impl EventQueue {
    /// Queues `payload` at `nanos`, after everything already queued for the same time.
    /// `nanos` must not be before the last popped time.
    pub(crate) fn push(&mut self, nanos: u64, payload: u32) {
        self.seq += 1;
        self.len += 1;
        let entry = (nanos, self.seq, payload);
        let bucket = nanos / BUCKET_NANOS;
        if bucket <= self.current_bucket {
            // Never before the clock, so at worst inside the bucket being drained.
            self.current.push(Reverse(entry));
        } else {
            self.later.entry(bucket).or_default().push(entry);
        }
    }

    /// The time of the earliest entry, without taking it.
    pub(crate) fn peek_time(&mut self) -> Option<u64> {
        if self.current.is_empty() {
            let (bucket, entries) = self.later.pop_first()?;
            self.current_bucket = bucket;
            self.current = entries.into_iter().map(Reverse).collect();
        }
        self.current.peek().map(|Reverse((nanos, _, _))| *nanos)
    }

    /// The earliest entry: (time in nanoseconds, payload).
    pub(crate) fn pop(&mut self) -> Option<(u64, u32)> {
        if self.current.is_empty() {
            let (bucket, entries) = self.later.pop_first()?;
            self.current_bucket = bucket;
            self.current = entries.into_iter().map(Reverse).collect();
        }
        let Reverse((nanos, _, payload)) = self.current.pop()?;
        self.len -= 1;
        Some((nanos, payload))
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
                    q.push(now + delay, p);
                    model.push((now + delay, seq, p));
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
