//! The server's stores (Node's `store.js`): name -> peers (`ip:port`), with an overall peer
//! limit, optional per-name and name caps, and an optional TTL. The domain store holds
//! announced peers, the push store subscribers.
//!
//! Compact on purpose (the benchmark target is a tenth of Node's bytes per peer): a peer is
//! 12 bytes in its name's vector; names are kept in a hash map plus an ordered index for the
//! least-recently-used order.

use crate::time::Instant;
use crate::{new_map, Map};
use rand_core::RngCore;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// A stored name. dns-discovery ids are 40 lowercase hex characters: those are kept inline
/// as their 20 bytes (no allocation, no pointer to chase on lookup); anything else as bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Hex([u8; 20]),
    Other(Arc<[u8]>),
}

/// A borrowed [`Key`] for lookups; hashes exactly as the owned one.
#[derive(Hash)]
enum KeyRef<'a> {
    Hex([u8; 20]),
    Other(&'a [u8]),
}

impl<'a> KeyRef<'a> {
    fn new(name: &'a [u8]) -> Self {
        match hex20(name) {
            Some(bytes) => KeyRef::Hex(bytes),
            None => KeyRef::Other(name),
        }
    }

    fn to_owned(&self) -> Key {
        match self {
            KeyRef::Hex(b) => Key::Hex(*b),
            KeyRef::Other(n) => Key::Other(Arc::from(*n)),
        }
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        match (self, key) {
            (KeyRef::Hex(a), Key::Hex(b)) => a == b,
            (KeyRef::Other(a), Key::Other(b)) => *a == &b[..],
            _ => false,
        }
    }
}

/// The 20 bytes of exactly 40 lowercase hex digits (upper case stays distinct: Node compares
/// names case-sensitively).
fn hex20(name: &[u8]) -> Option<[u8; 20]> {
    if name.len() != 40 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 20];
    for (i, pair) in name.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// Limits of a [`Store`]. Node's defaults: 10,000 peers in all, no per-name or name cap, no
/// TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Peers in all; at the limit, adding evicts the oldest peer of the least recently used
    /// name.
    pub limit: usize,
    /// Peers per name (0 = no cap); at the cap the name's oldest peer goes.
    pub max_per_name: usize,
    /// Names (0 = no cap beyond `limit`); at the cap the least recently used name goes.
    pub max_names: usize,
    /// Seconds a peer lives without being added again (0 = forever).
    pub ttl_secs: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            limit: 10_000,
            max_per_name: 0,
            max_names: 0,
            ttl_secs: 0,
        }
    }
}

/// 12 bytes: address and the second (since the store's start) it was last added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    ip: u32,
    stamp: u32,
    port: u16,
}

impl Entry {
    fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip), self.port)
    }
}

#[derive(Debug)]
struct Record {
    peers: Vec<Entry>,
    /// Key in `lru`.
    used: u64,
}

/// Name -> peers, bounded. See [`StoreConfig`].
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    epoch: Instant,
    records: Map<Key, Record>,
    /// Use counter -> name; the first entry is the least recently used name.
    lru: BTreeMap<u64, Key>,
    clock: u64,
    used: usize,
}

impl Store {
    pub fn new(config: StoreConfig, seed: u64, epoch: Instant) -> Self {
        Store {
            config,
            epoch,
            records: new_map(seed),
            lru: BTreeMap::new(),
            clock: 0,
            used: 0,
        }
    }

    /// Peers stored.
    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Names stored.
    pub fn names(&self) -> usize {
        self.records.len()
    }

    fn stamp(&self, now: Instant) -> u32 {
        (now - self.epoch).as_secs().min(u64::from(u32::MAX)) as u32
    }

    /// Marks `name` as just used and returns its record.
    fn touch(&mut self, name: &[u8]) -> Option<&mut Record> {
        self.clock += 1;
        let clock = self.clock;
        let (key, record) = self.records.get_key_value_mut(&KeyRef::new(name))?;
        if let Some(k) = self.lru.remove(&record.used) {
            debug_assert!(k == *key);
        }
        record.used = clock;
        self.lru.insert(clock, key.clone());
        Some(record)
    }

    fn drop_name(&mut self, name: &Key) {
        if let Some(record) = self.records.remove(name) {
            self.lru.remove(&record.used);
            self.used -= record.peers.len();
        }
    }

    /// Adds (or refreshes) `addr` under `name`; true if it is new.
    pub fn add(&mut self, now: Instant, name: &[u8], addr: SocketAddrV4) -> bool {
        let stamp = self.stamp(now);
        let entry = Entry {
            ip: u32::from(*addr.ip()),
            port: addr.port(),
            stamp,
        };
        if let Some(record) = self.touch(name) {
            if let Some(e) = record
                .peers
                .iter_mut()
                .find(|e| e.ip == entry.ip && e.port == entry.port)
            {
                e.stamp = stamp;
                return false;
            }
        }
        if self.used >= self.config.limit.max(1) {
            self.evict();
        }
        let lookup = KeyRef::new(name);
        if !self.records.contains_key(&lookup) {
            if self.config.max_names != 0 && self.records.len() >= self.config.max_names {
                if let Some(oldest) = self.lru.first_key_value().map(|(_, n)| n.clone()) {
                    self.drop_name(&oldest);
                }
            }
            self.clock += 1;
            let key = lookup.to_owned();
            self.lru.insert(self.clock, key.clone());
            let record = Record {
                peers: Vec::with_capacity(1),
                used: self.clock,
            };
            self.records.insert(key, record);
        }
        let cap = self.config.max_per_name;
        let Some(record) = self.records.get_mut(&lookup) else {
            return false;
        };
        if cap != 0 && record.peers.len() >= cap {
            if let Some(i) = oldest(&record.peers) {
                record.peers.swap_remove(i);
                self.used -= 1;
            }
        }
        record.peers.push(entry);
        self.used += 1;
        true
    }

    /// Evicts the oldest peer of the least recently used name (Node's `evict`).
    fn evict(&mut self) {
        let Some((_, name)) = self.lru.first_key_value() else {
            return;
        };
        let name = name.clone();
        let Some(record) = self.records.get_mut(&name) else {
            return;
        };
        if let Some(i) = oldest(&record.peers) {
            record.peers.swap_remove(i);
            self.used -= 1;
        }
        if record.peers.is_empty() {
            self.drop_name(&name);
        }
    }

    /// Removes `addr` from `name`; true if it was there.
    pub fn remove(&mut self, name: &[u8], addr: SocketAddrV4) -> bool {
        let lookup = KeyRef::new(name);
        let Some(record) = self.records.get_mut(&lookup) else {
            return false;
        };
        let (ip, port) = (u32::from(*addr.ip()), addr.port());
        let Some(i) = record
            .peers
            .iter()
            .position(|e| e.ip == ip && e.port == port)
        else {
            return false;
        };
        record.peers.swap_remove(i);
        self.used -= 1;
        if record.peers.is_empty() {
            let key = lookup.to_owned();
            self.drop_name(&key);
        }
        true
    }

    /// Up to `max` live peers of `name` from a random starting point (Node picks a random
    /// sample); marks the name used.
    pub fn get(
        &mut self,
        now: Instant,
        name: &[u8],
        max: usize,
        rng: &mut impl RngCore,
        out: &mut Vec<SocketAddrV4>,
    ) {
        let stamp = self.stamp(now);
        let ttl = self.config.ttl_secs;
        let Some(record) = self.touch(name) else {
            return;
        };
        let n = record.peers.len();
        if n == 0 {
            return;
        }
        let start = (rng.next_u64() % n as u64) as usize;
        for k in 0..n {
            if out.len() >= max {
                break;
            }
            let e = &record.peers[(start + k) % n];
            if ttl == 0 || stamp.saturating_sub(e.stamp) <= ttl {
                out.push(e.addr());
            }
        }
    }

    /// Drops expired peers (and names left empty). Cost: one pass over the store.
    pub fn purge(&mut self, now: Instant) {
        if self.config.ttl_secs == 0 {
            return;
        }
        let stamp = self.stamp(now);
        let mut emptied = Vec::new();
        let mut removed = 0;
        let ttl = self.config.ttl_secs;
        for (name, record) in self.records.iter_mut() {
            let before = record.peers.len();
            record
                .peers
                .retain(|e| stamp.saturating_sub(e.stamp) <= ttl);
            removed += before - record.peers.len();
            if record.peers.is_empty() {
                emptied.push(name.clone());
            }
        }
        self.used -= removed;
        for name in emptied {
            self.drop_name(&name);
        }
    }

    /// Approximate heap bytes held (for reports; the benchmark measures the process).
    pub fn heap_bytes(&self) -> usize {
        let per_name =
            core::mem::size_of::<(Key, Record)>() + core::mem::size_of::<(u64, Key)>() + 16;
        self.records
            .iter()
            .map(|(k, r)| {
                let key = match k {
                    Key::Hex(_) => 0,
                    Key::Other(n) => 16 + n.len(),
                };
                per_name + key + r.peers.capacity() * core::mem::size_of::<Entry>()
            })
            .sum()
    }
}

fn oldest(peers: &[Entry]) -> Option<usize> {
    peers
        .iter()
        .enumerate()
        .min_by_key(|(_, e)| e.stamp)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use std::time::Duration;

    fn addr(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1000)
    }

    #[test]
    fn entry_is_twelve_bytes() {
        assert_eq!(core::mem::size_of::<Entry>(), 12);
    }

    #[test]
    fn add_remove_get() {
        let t = Instant::ZERO;
        let mut s = Store::new(StoreConfig::default(), 1, t);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        assert!(s.add(t, b"a", addr(1)));
        assert!(!s.add(t, b"a", addr(1)));
        assert!(s.add(t, b"a", addr(2)));
        let mut out = Vec::new();
        s.get(t, b"a", 10, &mut rng, &mut out);
        out.sort();
        assert_eq!(out, [addr(1), addr(2)]);
        assert!(s.remove(b"a", addr(1)));
        assert!(!s.remove(b"a", addr(1)));
        assert!(s.remove(b"a", addr(2)));
        assert_eq!((s.len(), s.names()), (0, 0));
    }

    #[test]
    fn hex_and_other_names_are_distinct_keys() {
        let t = Instant::ZERO;
        let mut s = Store::new(StoreConfig::default(), 1, t);
        let lower = b"00112233445566778899aabbccddeeff00112233";
        let upper = b"00112233445566778899AABBCCDDEEFF00112233";
        assert!(s.add(t, lower, addr(1)));
        assert!(s.add(t, upper, addr(1)));
        assert!(s.add(t, b"short", addr(1)));
        assert!(!s.add(t, lower, addr(1)));
        assert_eq!(s.names(), 3);
        assert!(s.remove(upper, addr(1)));
        assert!(s.remove(b"short", addr(1)));
        assert!(s.remove(lower, addr(1)));
        assert_eq!((s.len(), s.names()), (0, 0));
    }

    #[test]
    fn limit_evicts_oldest_peer_of_least_recent_name() {
        let t = Instant::ZERO;
        let config = StoreConfig {
            limit: 3,
            ..StoreConfig::default()
        };
        let mut s = Store::new(config, 1, t);
        s.add(t, b"old", addr(1));
        s.add(t + Duration::from_secs(1), b"old", addr(2));
        s.add(t + Duration::from_secs(2), b"new", addr(3));
        s.add(t + Duration::from_secs(3), b"new", addr(4));
        assert_eq!(s.len(), 3);
        assert!(!s.remove(b"old", addr(1)), "oldest of the LRU name evicted");
        assert!(s.remove(b"old", addr(2)));
    }

    #[test]
    fn ttl_and_caps() {
        let t = Instant::ZERO;
        let config = StoreConfig {
            limit: 100,
            max_per_name: 2,
            max_names: 2,
            ttl_secs: 60,
        };
        let mut s = Store::new(config, 1, t);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        for i in 0..5 {
            s.add(t + Duration::from_secs(i), b"a", addr(i as u32));
        }
        assert_eq!(s.len(), 2);
        s.add(t, b"b", addr(9));
        s.add(t, b"c", addr(9));
        assert_eq!(s.names(), 2);
        let later = t + Duration::from_secs(200);
        let mut out = Vec::new();
        s.get(later, b"c", 10, &mut rng, &mut out);
        assert!(out.is_empty());
        s.purge(later);
        assert_eq!((s.len(), s.names()), (0, 0));
    }
}
