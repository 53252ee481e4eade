//! An ordered set of `(deadline, what)` that keeps its earliest entry at hand.
//!
//! A driver asks for the next deadline after every input (`poll_timeout`), while the set
//! changes far less often: a datagram that only confirms a known peer adds or removes no
//! timer. Reading the first entry of a `BTreeSet` walks to its leftmost leaf, a cache miss
//! on a cold node; the instant kept here is a field of the owner, already in cache.

use crate::time::Instant;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct Deadlines<T: Ord> {
    set: BTreeSet<(Instant, T)>,
    /// The earliest entry's instant.
    first_at: Option<Instant>,
}

impl<T: Ord> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines {
            set: BTreeSet::new(),
            first_at: None,
        }
    }
}

impl<T: Ord> Deadlines<T> {
    /// The earliest deadline (without touching the tree).
    pub fn first_at(&self) -> Option<Instant> {
        self.first_at
    }

    /// The earliest entry.
    pub fn first(&self) -> Option<&(Instant, T)> {
        self.set.first()
    }

    /// Adds an entry; returns false if it was there already.
    pub fn insert(&mut self, at: Instant, what: T) -> bool {
        if !self.first_at.is_some_and(|f| f <= at) {
            self.first_at = Some(at);
        }
        self.set.insert((at, what))
    }

    /// Removes an entry; returns whether it was there.
    pub fn remove(&mut self, entry: &(Instant, T)) -> bool {
        let removed = self.set.remove(entry);
        if removed && self.first_at == Some(entry.0) {
            self.first_at = self.set.first().map(|(at, _)| *at);
        }
        removed
    }

    /// Removes and returns the earliest entry.
    pub fn pop_first(&mut self) -> Option<(Instant, T)> {
        let popped = self.set.pop_first();
        self.first_at = self.set.first().map(|(at, _)| *at);
        popped
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    quickcheck! {
        /// Any sequence of inserts, removes and pops agrees with a plain `BTreeSet`.
        fn agrees_with_a_btreeset(ops: Vec<(u8, u8, u8)>) -> bool {
            let mut d = Deadlines::default();
            let mut model = BTreeSet::new();
            for (op, at, what) in ops {
                let at = Instant::from_micros(u64::from(at % 16));
                let what = what % 4;
                let ok = match op % 3 {
                    0 => d.insert(at, what) == model.insert((at, what)),
                    1 => d.remove(&(at, what)) == model.remove(&(at, what)),
                    _ => d.pop_first() == model.pop_first(),
                };
                let first_at = model.first().map(|(at, _)| *at);
                if !ok || d.first() != model.first() || d.first_at() != first_at {
                    return false;
                }
                if d.len() != model.len() {
                    return false;
                }
            }
            true
        }
    }
}
