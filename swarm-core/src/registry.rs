//! The registered connection per remote id (Node's `peersIds`).
//!
//! It stores only connection handles: the key (remote id and optional discovery key) is read
//! from the connection itself, so a held connection costs a handle here, not a copy of its id.

use crate::ConnId;
use core::hash::BuildHasher;
use foldhash::fast::FixedState;
use hashbrown::HashTable;

/// A remote id and the optional discovery key that joins it in comparisons.
pub(crate) type Key<'a> = (&'a [u8], Option<&'a [u8]>);

pub(crate) struct Registry {
    table: HashTable<ConnId>,
    hasher: FixedState,
}

fn hash(hasher: &FixedState, key: Key<'_>) -> u64 {
    hasher.hash_one(key)
}

impl Registry {
    pub fn new(seed: u64) -> Self {
        Registry {
            table: HashTable::new(),
            hasher: FixedState::with_seed(seed),
        }
    }

    /// The connection registered for `key`; `key_of` reads a registered connection's key.
    pub fn get<'a>(
        &self,
        key: Key<'_>,
        key_of: impl Fn(ConnId) -> Option<Key<'a>>,
    ) -> Option<ConnId> {
        self.table
            .find(hash(&self.hasher, key), |c| key_of(*c) == Some(key))
            .copied()
    }

    /// Registers `conn` under `key`; the caller has checked that nothing is registered there.
    pub fn insert<'a>(
        &mut self,
        conn: ConnId,
        key: Key<'_>,
        key_of: impl Fn(ConnId) -> Option<Key<'a>>,
    ) {
        let hasher = self.hasher;
        let rehash = move |c: &ConnId| key_of(*c).map_or(0, |k| hash(&hasher, k));
        self.table
            .insert_unique(hash(&self.hasher, key), conn, rehash);
    }

    /// Unregisters `conn` if it is the connection registered under `key`.
    pub fn remove(&mut self, conn: ConnId, key: Key<'_>) -> bool {
        match self
            .table
            .find_entry(hash(&self.hasher, key), |c| *c == conn)
        {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_in_the_connections() {
        let ids: [&[u8]; 3] = [b"a", b"b", b"c"];
        let key_of = |c: ConnId| Some((ids[c.0 as usize], None));
        let mut registry = Registry::new(1);
        for n in 0..3 {
            registry.insert(ConnId(n), (ids[n as usize], None), key_of);
        }
        assert_eq!(registry.get((b"b", None), key_of), Some(ConnId(1)));
        assert_eq!(registry.get((b"b", Some(b"k")), key_of), None);
        assert!(!registry.remove(ConnId(0), (b"b", None)));
        assert!(registry.remove(ConnId(1), (b"b", None)));
        assert_eq!(registry.get((b"b", None), key_of), None);
        assert_eq!(registry.get((b"c", None), key_of), Some(ConnId(2)));
    }
}
