//! The virtual clock's event queue: entries ordered by (time, sequence number), so two
//! entries due at the same instant run in the order they were scheduled.
//!
//! A calendar queue: the near future is a ring of ~1 ms buckets filled unsorted in O(1);
//! a bucket is sorted only when the clock reaches it. Entries beyond the ring's horizon
//! (timers minutes away) wait in a binary heap and move into the ring as it comes near.
//! Millions of in-flight datagrams then cost a push onto a short vector each, instead of a
//! sift through a heap that does not fit in the cache.

use core::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use swarm_core::Instant;

/// Bucket width: 2^10 µs.
const BUCKET_SHIFT: u32 = 10;
/// Buckets in the ring (a horizon of ~4.2 s).
const RING: u64 = 4096;

/// Buckets this far ahead of the clock, or nearer, are filled in a drained bucket's vector
/// (the next milliseconds, where a busy network's datagrams land); farther ones, which
/// collect a few timers each, start from an empty one. Lending the drained vectors to every
/// bucket left each of the hundreds of far buckets holding room for a busy millisecond's
/// datagrams: 680,000 entries of room for 12,000 queued, at 3,000 nodes.
const LENT_AHEAD: u64 = 64;
/// Drained vectors kept for lending: one for each bucket within `LENT_AHEAD`.
const SPARE_KEPT: usize = LENT_AHEAD as usize;

/// An entry; `seq` makes every key unique, so any sort gives the same order.
struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (Instant, u64) {
        (self.at, self.seq)
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
    /// Reversed, so the max-heap pops the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

fn bucket_of(at: Instant) -> u64 {
    at.as_micros() >> BUCKET_SHIFT
}

/// A priority queue of scheduled items.
pub struct EventQueue<T> {
    /// The entries of bucket `now_bucket` (and any pushed for earlier times), sorted
    /// latest first so the earliest pops off the end.
    current: Vec<Entry<T>>,
    now_bucket: u64,
    /// Buckets `now_bucket + 1 ..= now_bucket + RING - 1`, slot = bucket % RING, unsorted.
    ring: Vec<Vec<Entry<T>>>,
    in_ring: usize,
    /// Emptied bucket vectors, the latest last: a bucket's first entry takes one. Its
    /// memory was just read (popped), so writing into it finds it in the cache; a ring slot's
    /// own vector, last written a lap (seconds) ago, would be evicted by then, and every
    /// entry pushed a write miss.
    spare: Vec<Vec<Entry<T>>>,
    /// Entries at or beyond `now_bucket + RING`.
    far: BinaryHeap<Entry<T>>,
    next_seq: u64,
    /// Room for [`sort_latest_first`]'s keys, kept between buckets.
    keys: Vec<u32>,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue {
            current: Vec::new(),
            now_bucket: 0,
            ring: (0..RING).map(|_| Vec::new()).collect(),
            in_ring: 0,
            spare: Vec::new(),
            far: BinaryHeap::new(),
            next_seq: 0,
            keys: Vec::new(),
        }
    }
}

impl<T> EventQueue<T> {
    /// Schedules `item` at `at`.
    pub fn push(&mut self, at: Instant, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.place(Entry { at, seq, item });
    }

    fn place(&mut self, e: Entry<T>) {
        let b = bucket_of(e.at);
        if b <= self.now_bucket {
            // Every entry elsewhere is in a later bucket, so this one belongs here.
            let key = e.key();
            let i = self.current.partition_point(|x| x.key() > key);
            self.current.insert(i, e);
        } else if b < self.now_bucket + RING {
            let bucket = &mut self.ring[(b % RING) as usize];
            if bucket.capacity() == 0 && b - self.now_bucket <= LENT_AHEAD {
                *bucket = self.spare.pop().unwrap_or_default();
            }
            bucket.push(e);
            self.in_ring += 1;
        } else {
            self.far.push(e);
        }
    }

    /// Makes `current` hold the earliest entries, if there are any.
    fn advance(&mut self) {
        while self.current.is_empty() {
            if self.in_ring == 0 {
                let Some(first) = self.far.peek() else {
                    return;
                };
                // Nothing nearer: jump straight to the far entries' first bucket.
                self.now_bucket = self.now_bucket.max(bucket_of(first.at) - 1);
            }
            self.now_bucket += 1;
            while self
                .far
                .peek()
                .is_some_and(|e| bucket_of(e.at) < self.now_bucket + RING)
            {
                let e = self.far.pop().expect("peeked");
                self.place(e);
            }
            let slot = &mut self.ring[(self.now_bucket % RING) as usize];
            if !slot.is_empty() {
                self.in_ring -= slot.len();
                if self.current.is_empty() {
                    let drained = core::mem::replace(&mut self.current, core::mem::take(slot));
                    if drained.capacity() > 0 && self.spare.len() < SPARE_KEPT {
                        self.spare.push(drained);
                    }
                } else {
                    // Far entries that landed in this very bucket after a jump.
                    self.current.append(slot);
                }
                sort_latest_first(&mut self.current, self.now_bucket, &mut self.keys);
            }
        }
    }

    /// The time of the earliest entry.
    pub fn peek_time(&mut self) -> Option<Instant> {
        self.advance();
        self.current.last().map(|e| e.at)
    }

    /// Removes the earliest entry.
    pub fn pop(&mut self) -> Option<(Instant, T)> {
        self.advance();
        self.current.pop().map(|e| (e.at, e.item))
    }

    /// The item `n` places after the earliest, if the current bucket holds it (for
    /// prefetching: an entry beyond the bucket may still be preceded by new ones).
    pub fn ahead(&self, n: usize) -> Option<&T> {
        let len = self.current.len();
        len.checked_sub(n + 1).map(|i| &self.current[i].item)
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.in_ring + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bucket vectors holding memory, in the ring or spare.
    #[cfg(test)]
    fn held_buffers(&self) -> usize {
        let held = |v: &Vec<Entry<T>>| v.capacity() > 0;
        self.ring.iter().filter(|v| held(v)).count() + self.spare.len()
    }

    /// Entries the ring's and the spare vectors have room for.
    #[cfg(test)]
    fn held_room(&self) -> usize {
        let room = |v: &Vec<Entry<T>>| v.capacity();
        self.ring.iter().map(room).sum::<usize>() + self.spare.iter().map(room).sum::<usize>()
    }
}

/// Bits of a sort key that hold an entry's position in its bucket.
const POSITION_BITS: u32 = 32 - BUCKET_SHIFT;
/// Marks a position whose entry is in place while a permutation is applied.
const PLACED: u32 = 1 << (POSITION_BITS - 1);

/// Sorts `bucket`'s entries by (time, seq), latest first.
///
/// A ring slot receives its entries as they are pushed, so in sequence order; then the
/// order is by time alone, ties kept where they are. That is a sort of packed 32-bit keys
/// (time within the bucket, position) and one pass of swaps along the permutation's
/// cycles, where a comparison sort would move each 80-byte entry about log n times (the
/// sort was 6% of a busy network's run). Entries out of sequence order (moved in from the
/// far heap) take the comparison sort; the order is the same either way.
fn sort_latest_first<T>(entries: &mut [Entry<T>], bucket: u64, keys: &mut Vec<u32>) {
    let start = bucket << BUCKET_SHIFT;
    keys.clear();
    let by_key = |entries: &mut [Entry<T>]| entries.sort_unstable_by_key(|e| Reverse(e.key()));
    let in_sequence = entries.windows(2).all(|w| w[0].seq < w[1].seq);
    if !in_sequence || entries.len() >= PLACED as usize {
        return by_key(entries);
    }
    for (position, e) in entries.iter().enumerate() {
        let offset = e.at.as_micros().wrapping_sub(start);
        if offset >= 1 << BUCKET_SHIFT {
            return by_key(entries);
        }
        keys.push((offset as u32) << POSITION_BITS | position as u32);
    }
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let position_mask = (1 << POSITION_BITS) - 1;
    for key in keys.iter_mut() {
        *key &= position_mask;
    }
    // keys[i] now names the entry that belongs at i. Walk each cycle, carrying its first
    // entry along: each swap puts one entry where it belongs.
    for first in 0..keys.len() {
        let mut at = first;
        while keys[at] & PLACED == 0 {
            let from = keys[at] as usize;
            keys[at] |= PLACED;
            if from == first {
                break;
            }
            entries.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SimRng;

    #[test]
    fn orders_by_time_then_sequence() {
        let mut q = EventQueue::default();
        let t = Instant::from_micros;
        q.push(t(5), "c");
        q.push(t(1), "a");
        q.push(t(5), "d");
        q.push(t(1), "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn ahead_names_the_next_entries_of_the_current_bucket() {
        let mut q = EventQueue::default();
        let t = Instant::from_micros;
        for (at, x) in [(3, "c"), (1, "a"), (2, "b"), (5_000, "far")] {
            q.push(t(at), x);
        }
        assert_eq!(q.pop(), Some((t(1), "a")));
        assert_eq!(q.ahead(0), Some(&"b"));
        assert_eq!(q.ahead(1), Some(&"c"));
        // Beyond the bucket, something may still be queued in front of it.
        assert_eq!(q.ahead(2), None);
    }

    /// The packed-key sort against the comparison sort: one bucket's entries in sequence
    /// order with many equal times, entries out of sequence order, and one from another
    /// bucket.
    #[test]
    fn bucket_sort_orders_as_the_comparison_sort() {
        let mut rng = SimRng::new(3);
        let mut keys = Vec::new();
        for case in 0..300u64 {
            let bucket = 1 + rng.range(0, 1_000);
            let start = bucket << BUCKET_SHIFT;
            let n = rng.range(0, 600) as usize;
            let spread = [0, 3, 1023][case as usize % 3];
            let mut entries: Vec<Entry<u64>> = (0..n as u64)
                .map(|seq| Entry {
                    at: Instant::from_micros(start + rng.range(0, spread)),
                    seq: seq * 2,
                    item: seq,
                })
                .collect();
            match case % 5 {
                3 if n > 1 => entries.swap(0, n - 1),
                4 if n > 0 => entries[n / 2].at = Instant::from_micros(start - 1),
                _ => {}
            }
            let mut want: Vec<(Instant, u64)> = entries.iter().map(Entry::key).collect();
            want.sort_unstable_by_key(|k| Reverse(*k));
            sort_latest_first(&mut entries, bucket, &mut keys);
            let got: Vec<(Instant, u64)> = entries.iter().map(Entry::key).collect();
            assert_eq!(got, want, "case {case}");
            assert!(
                entries.iter().all(|e| e.item * 2 == e.seq),
                "items moved with keys"
            );
        }
    }

    /// A steady stream of near events walks the whole ring every 4 s; the buckets' memory
    /// is handed on from each drained bucket to the next one filled, so only about as many
    /// vectors as there are buckets in use at once hold memory, not one per ring slot.
    #[test]
    fn drained_buckets_lend_their_memory_to_the_next() {
        let mut q = EventQueue::default();
        let mut rng = SimRng::new(7);
        let mut now = 0u64;
        for i in 0..100_000u64 {
            q.push(Instant::from_micros(now + rng.range(0, 3_000)), i);
            let (at, _) = q.pop().expect("pushed");
            now = at.as_micros();
        }
        assert!(now > (3 * RING) << BUCKET_SHIFT, "several laps of the ring");
        assert!(q.held_buffers() <= 8, "{} buffers held", q.held_buffers());
    }

    /// Bursts of datagrams a millisecond apart, each followed by a timer somewhere in the
    /// next four seconds: the timers' buckets are not handed the bursts' vectors, so the room
    /// held stays near what is queued rather than a burst's worth in every bucket.
    #[test]
    fn far_buckets_do_not_keep_a_bursts_room() {
        let mut q = EventQueue::default();
        let mut rng = SimRng::new(5);
        let mut now = 0u64;
        for i in 0..20_000u64 {
            for _ in 0..500 {
                q.push(Instant::from_micros(now + 1_000 + rng.range(0, 500)), i);
            }
            q.push(Instant::from_micros(now + rng.range(100_000, 4_000_000)), i);
            while q.peek_time().is_some_and(|t| t.as_micros() <= now + 1_000) {
                q.pop();
            }
            now += 1_000;
        }
        let (room, queued) = (q.held_room(), q.len());
        assert!(room < 100_000, "room for {room} entries, {queued} queued");
    }

    /// Against a binary heap of (time, seq): interleaved pushes (near, far, at the current
    /// time, before the queue's bucket after a peek) and pops give the same sequence.
    #[test]
    fn matches_a_heap_under_random_use() {
        for seed in 0..200 {
            let mut rng = SimRng::new(seed);
            let mut q = EventQueue::default();
            let mut model = BinaryHeap::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            for _ in 0..2_000 {
                match rng.range(0, 9) {
                    0..=4 => {
                        let delay = match rng.range(0, 3) {
                            0 => 0,
                            1 => rng.range(0, 2_000),
                            2 => rng.range(0, 200_000),
                            _ => rng.range(0, 600_000_000),
                        };
                        q.push(Instant::from_micros(now + delay), seq);
                        model.push(core::cmp::Reverse((now + delay, seq)));
                        seq += 1;
                    }
                    5 => {
                        // A peek may move the queue's bucket past `now`; later pushes at
                        // `now` must still come first.
                        let want = model.peek().map(|r| Instant::from_micros(r.0 .0));
                        assert_eq!(q.peek_time(), want, "seed {seed}");
                        if let Some(w) = want {
                            now = now.max(w.as_micros().saturating_sub(rng.range(0, 3_000)));
                        }
                    }
                    _ => {
                        let got = q.pop().map(|(at, s)| (at.as_micros(), s));
                        let want = model.pop().map(|r| r.0);
                        assert_eq!(got, want, "seed {seed}");
                        if let Some((at, _)) = got {
                            now = now.max(at);
                        }
                    }
                }
                assert_eq!(q.len(), model.len());
            }
            while let Some(want) = model.pop() {
                let got = q.pop().map(|(at, s)| (at.as_micros(), s));
                assert_eq!(got, Some(want.0), "seed {seed}");
            }
            assert!(q.pop().is_none() && q.is_empty());
        }
    }
}
