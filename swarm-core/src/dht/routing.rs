//! The routing table of BEP 5: K-buckets over the 160-bit XOR metric.
//!
//! Buckets are kept as a list indexed by the length of the prefix a contact shares with our
//! id; the last bucket holds every contact sharing at least its index bits. Splitting the last
//! bucket is exactly "split only the bucket containing our id", so the table holds at most
//! 160 buckets of [`K`] contacts and one pending newcomer each: bounded memory whatever ids a
//! sender invents. Contacts are also capped per IP address, so one host cannot fill the
//! table with fake ids.

use super::NodeId;
use crate::time::Instant;
use crate::{new_map, Map};
use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Contacts per bucket. BEP 5's 8 rather than Node's 20: `find_node` and `get_peers` replies
/// then carry 8 compact nodes (208 bytes), which fits one small datagram and keeps our reply
/// to an unauthenticated query close to the size of the query (no amplification); 8 is what
/// libtorrent and most of the public network use, and Node peers, which query the 20 closest
/// they know, still reach the nodes we announce to. A lookup still collects a wider frontier
/// (see the node), so fewer contacts per bucket costs us no lookup accuracy.
pub const K: usize = 8;
/// BEP 5: a node is good if it answered us within the last 15 minutes.
pub const FRESHNESS: Duration = Duration::from_secs(15 * 60);
/// Queries in a row a contact failed before it is bad. Not 1: without retransmission a
/// single lost datagram would otherwise evict a healthy node.
pub const MAX_FAILS: u8 = 2;

/// How we heard from a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// It answered one of our queries: reachable at that address.
    Response,
    /// It queried us.
    Query,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Good,
    Questionable,
    Bad,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub id: NodeId,
    pub addr: SocketAddrV4,
    last_response: Option<Instant>,
    last_query: Option<Instant>,
    fails: u8,
}

impl Contact {
    fn new(now: Instant, id: NodeId, addr: SocketAddrV4, seen: Seen) -> Contact {
        let mut c = Contact {
            id,
            addr,
            last_response: None,
            last_query: None,
            fails: 0,
        };
        c.touch(now, seen);
        c
    }

    fn touch(&mut self, now: Instant, seen: Seen) {
        match seen {
            Seen::Response => {
                self.last_response = Some(now);
                self.fails = 0;
            }
            Seen::Query => self.last_query = Some(now),
        }
    }

    /// BEP 5's states: good if it answered within 15 min, or ever answered and queried us
    /// within 15 min; bad after [`MAX_FAILS`] unanswered queries in a row.
    pub fn state(&self, now: Instant) -> NodeState {
        let fresh = |t: Option<Instant>| t.is_some_and(|t| now - t < FRESHNESS);
        if self.fails >= MAX_FAILS {
            NodeState::Bad
        } else if fresh(self.last_response)
            || (self.last_response.is_some() && fresh(self.last_query))
        {
            NodeState::Good
        } else {
            NodeState::Questionable
        }
    }

    fn last_active(&self) -> Instant {
        self.last_response.max(self.last_query).unwrap_or_default()
    }
}

/// What [`RoutingTable::heard_from`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    Added,
    /// Already known at that address: its state was refreshed.
    Refreshed,
    /// The bucket is full of good nodes, or the sender is not acceptable.
    Dropped,
    /// The bucket is full but holds this questionable contact: ping it, and the newcomer
    /// (held as the bucket's pending contact) replaces it if it turns bad.
    Ping(NodeId, SocketAddrV4),
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    contacts: Vec<Contact>,
    pending: Option<Contact>,
    /// Last time a contact was added, answered us, or the bucket was refreshed.
    changed: Instant,
}

/// See the module docs.
pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
    per_ip: Map<Ipv4Addr, u16>,
    max_per_ip: u16,
}

impl RoutingTable {
    pub fn new(own: NodeId, seed: u64, max_per_ip: u16) -> Self {
        RoutingTable {
            own,
            buckets: vec![Bucket::default()],
            per_ip: new_map(seed),
            max_per_ip: max_per_ip.max(1),
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// Contacts held (pending ones excluded).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.contacts.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Buckets holding fewer than [`K`] contacts, the last (our own) excepted.
    pub fn short_buckets(&self) -> Vec<usize> {
        let last = self.buckets.len() - 1;
        (0..last)
            .filter(|&i| self.buckets[i].contacts.len() < K)
            .collect()
    }

    fn index(&self, id: &NodeId) -> usize {
        self.own.common_prefix_len(id).min(self.buckets.len() - 1)
    }

    pub fn get(&self, id: &NodeId) -> Option<&Contact> {
        self.buckets[self.index(id)]
            .contacts
            .iter()
            .find(|c| c.id == *id)
    }

    /// Records that `id` at `addr` answered us or queried us, inserting it if there is room.
    pub fn heard_from(
        &mut self,
        now: Instant,
        id: NodeId,
        addr: SocketAddrV4,
        seen: Seen,
    ) -> Insert {
        if id == self.own || addr.port() == 0 || addr.ip().is_unspecified() {
            return Insert::Dropped;
        }
        loop {
            let last = self.buckets.len() - 1;
            let i = self.index(&id);
            let bucket = &mut self.buckets[i];
            if let Some(c) = bucket.contacts.iter_mut().find(|c| c.id == id) {
                // A known id at a new address is ignored: moving it would let anyone hijack
                // a contact by sending one datagram with its id.
                if c.addr != addr {
                    return Insert::Dropped;
                }
                c.touch(now, seen);
                if seen == Seen::Response {
                    bucket.changed = now;
                }
                return Insert::Refreshed;
            }
            if self.per_ip.get(addr.ip()).copied().unwrap_or(0) >= self.max_per_ip {
                return Insert::Dropped;
            }
            let bucket = &mut self.buckets[i];
            let newcomer = Contact::new(now, id, addr, seen);
            if bucket.contacts.len() < K {
                bucket.contacts.push(newcomer);
            } else if let Some(bad) = bucket
                .contacts
                .iter()
                .position(|c| c.state(now) == NodeState::Bad)
            {
                let old = core::mem::replace(&mut bucket.contacts[bad], newcomer);
                self.release_ip(old.addr);
            } else if i == last && last < 159 {
                self.split();
                continue;
            } else {
                if bucket.pending.is_some() {
                    return Insert::Dropped;
                }
                let Some(oldest) = bucket
                    .contacts
                    .iter()
                    .filter(|c| c.state(now) == NodeState::Questionable)
                    .min_by_key(|c| c.last_active())
                else {
                    return Insert::Dropped;
                };
                let ping = Insert::Ping(oldest.id, oldest.addr);
                bucket.pending = Some(newcomer);
                return ping;
            }
            *self.per_ip.entry(*addr.ip()).or_insert(0) += 1;
            self.buckets[i].changed = now;
            return Insert::Added;
        }
    }

    /// A query to `id` went unanswered. A contact that becomes bad is replaced by its
    /// bucket's pending newcomer, if any.
    pub fn failed(&mut self, now: Instant, id: &NodeId) {
        let i = self.index(id);
        let bucket = &mut self.buckets[i];
        let Some(pos) = bucket.contacts.iter().position(|c| c.id == *id) else {
            return;
        };
        let c = &mut bucket.contacts[pos];
        c.fails = c.fails.saturating_add(1);
        if c.state(now) == NodeState::Bad {
            if let Some(newcomer) = bucket.pending.take() {
                let addr = newcomer.addr;
                let old = core::mem::replace(&mut bucket.contacts[pos], newcomer);
                self.release_ip(old.addr);
                *self.per_ip.entry(*addr.ip()).or_insert(0) += 1;
            }
        }
    }

    /// The ping-before-evict probe of `id` was answered: the newcomer waiting on it is
    /// dropped (BEP 5 keeps good old nodes).
    pub fn ping_answered(&mut self, id: &NodeId) {
        let i = self.index(id);
        self.buckets[i].pending = None;
    }

    /// Makes sure the contact is counted bad after a ping timeout, so the pending newcomer
    /// takes its place even if it had failed fewer than [`MAX_FAILS`] times before.
    pub fn ping_failed(&mut self, now: Instant, id: &NodeId) {
        while self.get(id).is_some_and(|c| c.state(now) != NodeState::Bad) {
            self.failed(now, id);
        }
    }

    fn release_ip(&mut self, addr: SocketAddrV4) {
        if let Some(n) = self.per_ip.get_mut(addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(addr.ip());
            }
        }
    }

    fn split(&mut self) {
        let last = self.buckets.len() - 1;
        let old = core::mem::take(&mut self.buckets[last].contacts);
        self.buckets[last].pending = None;
        let own = self.own;
        let (far, near): (Vec<_>, Vec<_>) = old
            .into_iter()
            .partition(|c| own.common_prefix_len(&c.id) == last);
        self.buckets[last].contacts = far;
        let changed = self.buckets[last].changed;
        self.buckets.push(Bucket {
            contacts: near,
            pending: None,
            changed,
        });
    }

    /// Up to `n` contacts that are not bad, closest to `target` first.
    pub fn closest(&self, now: Instant, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut all: Vec<((u64, u64, u32), &Contact)> = Vec::new();
        for group in self.groups_by_distance(target) {
            let contacts = self.buckets[group].iter().flat_map(|b| b.contacts.iter());
            all.extend(
                contacts
                    .filter(|c| c.state(now) != NodeState::Bad)
                    .map(|c| (c.id.distance_key(target), c)),
            );
            if all.len() >= n {
                break;
            }
        }
        keep_smallest(&mut all, n, |(d, _)| *d);
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, c)| c.clone()).collect()
    }

    /// What we tell others: the closest contacts that ever answered us, topped up with
    /// unverified ones only when there are fewer than `n` of those. Distance comes first
    /// among verified contacts (BEP 5's "closest good nodes" read literally, good-first,
    /// would hand out a young table's few good contacts, all near our own id, for every
    /// target, and lookups through us would stop converging); an address that merely sent us
    /// a (possibly spoofed) query is still never handed out while verified ones exist.
    pub fn closest_good(&self, now: Instant, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut out = Vec::new();
        self.each_closest_good(now, target, n, |c| out.push(c.clone()));
        out
    }

    /// [`closest_good`](Self::closest_good)'s contacts, nearest first, handed to `f` rather
    /// than cloned into a vector: every `find_node` and `get_peers` a node answers asks for
    /// them, and building them took six allocations.
    pub fn each_closest_good(
        &self,
        now: Instant,
        target: &NodeId,
        n: usize,
        mut f: impl FnMut(&Contact),
    ) {
        // Enough for the first group or two, which is where `n` good ones are nearly always
        // found: one allocation rather than a vector doubling its way up.
        let mut all: Vec<(bool, (u64, u64, u32), &Contact)> =
            Vec::with_capacity(n.saturating_mul(4).min(1024));
        let mut verified = 0;
        for group in self.groups_by_distance(target) {
            let contacts = self.buckets[group].iter().flat_map(|b| b.contacts.iter());
            for c in contacts.filter(|c| c.state(now) != NodeState::Bad) {
                let unverified = c.last_response.is_none();
                verified += usize::from(!unverified);
                all.push((unverified, c.id.distance_key(target), c));
            }
            if verified >= n {
                break;
            }
        }
        keep_smallest(&mut all, n, |(q, d, _)| (*q, *d));
        all.sort_unstable_by_key(|(_, d, _)| *d);
        all.into_iter().for_each(|(_, _, c)| f(c));
    }

    /// The buckets in groups, nearest to `target` first: every contact of a group is
    /// closer to `target` than any contact of a later group. Bucket `i` below the last holds
    /// the ids sharing exactly `i` leading bits with ours; with `b` the target's bucket,
    /// bucket `b`'s contacts share more than `b` bits with the target, those of every bucket
    /// after it exactly `b`, and those of a bucket `j < b` exactly `j`. So a query reads
    /// the few buckets it needs instead of the whole table.
    fn groups_by_distance(
        &self,
        target: &NodeId,
    ) -> impl Iterator<Item = core::ops::RangeInclusive<usize>> {
        let last = self.buckets.len() - 1;
        let b = self.index(target);
        let after = (b < last).then(|| b + 1..=last);
        core::iter::once(b..=b)
            .chain(after)
            .chain((0..b).rev().map(|j| j..=j))
    }

    /// Buckets unchanged for [`FRESHNESS`] (BEP 5 asks to refresh them with a lookup of a
    /// random id in their range); each is marked refreshed as it is returned.
    pub fn take_stale(&mut self, now: Instant, max: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if out.len() < max && now - b.changed >= FRESHNESS {
                b.changed = now;
                out.push(i);
            }
        }
        out
    }

    /// A random id that falls in bucket `i`: our first `i` bits, then (except for the last
    /// bucket, which holds everything closer) bit `i` flipped, then `random` bits.
    pub fn random_id_in(&self, i: usize, random: [u8; 20]) -> NodeId {
        let mut id = random;
        let own = self.own.0;
        for bit in 0..i.min(160) {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            id[byte] = (id[byte] & !mask) | (own[byte] & mask);
        }
        if i + 1 < self.buckets.len() {
            let (byte, mask) = (i / 8, 0x80u8 >> (i % 8));
            id[byte] = (id[byte] & !mask) | (!own[byte] & mask);
        }
        NodeId(id)
    }

    /// Every contact, for tests and statistics.
    pub fn iter(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flat_map(|b| b.contacts.iter())
    }
}

/// Keeps the `n` smallest elements by `key`, in no particular order: linear time, where a
/// full sort per query was the responder's main cost.
fn keep_smallest<T, K: Ord>(items: &mut Vec<T>, n: usize, mut key: impl FnMut(&T) -> K) {
    if n == 0 {
        items.clear();
    } else if items.len() > n {
        items.select_nth_unstable_by_key(n - 1, &mut key);
        items.truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_with_prefix(own: &NodeId, cpl: usize, salt: u8) -> NodeId {
        let mut id = *own;
        id.0[cpl / 8] ^= 0x80 >> (cpl % 8);
        id.0[19] ^= salt.wrapping_add(1);
        if cpl >= 152 {
            id.0[19] = own.0[19] ^ (0x80 >> (cpl % 8));
        }
        id
    }

    fn addr(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 6881)
    }

    const T0: Instant = Instant::ZERO;

    #[test]
    fn splits_only_own_bucket_and_stays_bounded() {
        let own = NodeId([0x55; 20]);
        let mut table = RoutingTable::new(own, 1, 1);
        // 20 far nodes (prefix 0) fill bucket 0 only to K.
        for s in 0..20 {
            table.heard_from(
                T0,
                id_with_prefix(&own, 0, s),
                addr(u32::from(s)),
                Seen::Response,
            );
        }
        assert_eq!(table.len(), K);
        // Close nodes make the table split towards our id.
        for cpl in 1..40 {
            table.heard_from(
                T0,
                id_with_prefix(&own, cpl, 0),
                addr(1000 + cpl as u32),
                Seen::Response,
            );
        }
        assert!(table.bucket_count() > 30);
        assert!(table.len() <= K * table.bucket_count());
        for (i, b) in table
            .buckets
            .iter()
            .enumerate()
            .take(table.bucket_count() - 1)
        {
            assert!(b.contacts.iter().all(|c| own.common_prefix_len(&c.id) == i));
        }
    }

    #[test]
    fn poisoning_from_one_ip_is_capped() {
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 1, 2);
        for i in 0..5000u32 {
            let mut id = [0xff; 20];
            id[..4].copy_from_slice(&i.to_be_bytes());
            table.heard_from(
                T0,
                NodeId(id),
                SocketAddrV4::new(Ipv4Addr::new(6, 6, 6, 6), 1 + i as u16),
                Seen::Query,
            );
        }
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn ping_before_evict() {
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 1, 1);
        // Bucket 0 (ids starting with bit 1) is not ours, so it never splits.
        let far = |s: u8| {
            let mut id = [0u8; 20];
            id[0] = 0x80;
            id[19] = s;
            NodeId(id)
        };
        for s in 0..K as u8 {
            table.heard_from(T0, far(s), addr(u32::from(s)), Seen::Response);
        }
        // Still good: a newcomer is dropped.
        let later = T0 + Duration::from_secs(60);
        assert_eq!(
            table.heard_from(later, far(100), addr(100), Seen::Response),
            Insert::Dropped
        );
        // After 15 minutes they are questionable: ping the least recently seen.
        let stale = T0 + FRESHNESS + Duration::from_secs(1);
        table.heard_from(stale, far(1), addr(1), Seen::Response);
        let Insert::Ping(victim, _) = table.heard_from(stale, far(100), addr(100), Seen::Response)
        else {
            panic!("expected a ping");
        };
        assert_ne!(victim, far(1));
        // Only one newcomer waits per bucket.
        assert_eq!(
            table.heard_from(stale, far(101), addr(101), Seen::Response),
            Insert::Dropped
        );
        table.ping_failed(stale, &victim);
        assert!(table.get(&victim).is_none());
        assert!(table.get(&far(100)).is_some());
        assert_eq!(table.len(), K);
    }

    #[test]
    fn closest_is_exact_and_capped() {
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 1, 1);
        for i in 0..200u32 {
            let id = NodeId::sha1(&i.to_be_bytes());
            table.heard_from(T0, id, addr(i), Seen::Response);
        }
        let target = NodeId::sha1(b"target");
        let got = table.closest(T0, &target, K);
        assert_eq!(got.len(), K);
        let mut all: Vec<_> = table.iter().map(|c| c.id.distance(&target)).collect();
        all.sort();
        let got: Vec<_> = got.iter().map(|c| c.id.distance(&target)).collect();
        assert_eq!(got, all[..K]);
    }

    #[test]
    fn stale_buckets_and_ids_in_range() {
        let own = NodeId([0x3c; 20]);
        let mut table = RoutingTable::new(own, 1, 1);
        for i in 0..300u32 {
            table.heard_from(T0, NodeId::sha1(&i.to_be_bytes()), addr(i), Seen::Response);
        }
        let n = table.bucket_count();
        assert!(n > 3);
        for i in 0..n {
            let id = table.random_id_in(i, [0xa5; 20]);
            assert_eq!(table.index(&id), i);
            let id = table.random_id_in(i, [0x00; 20]);
            assert_eq!(table.index(&id), i);
        }
        assert!(table
            .take_stale(T0 + Duration::from_secs(60), 100)
            .is_empty());
        let later = T0 + FRESHNESS;
        assert_eq!(table.take_stale(later, 2), [0, 1]);
        assert_eq!(table.take_stale(later, 100).len(), n - 2);
        assert!(table.take_stale(later, 100).is_empty());
    }

    #[test]
    fn replies_prefer_good_contacts() {
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 1, 1);
        for i in 0..40u32 {
            let seen = if i % 2 == 0 {
                Seen::Response
            } else {
                Seen::Query
            };
            table.heard_from(T0, NodeId::sha1(&i.to_be_bytes()), addr(i), seen);
        }
        let target = NodeId::sha1(b"t");
        let good = table.closest_good(T0, &target, K);
        assert_eq!(good.len(), K);
        assert!(good.iter().all(|c| c.state(T0) == NodeState::Good));
        assert!(good
            .windows(2)
            .all(|w| w[0].id.distance(&target) < w[1].id.distance(&target)));
        // Topped up with questionable contacts when good ones run short.
        assert_eq!(table.closest_good(T0, &target, 100).len(), table.len());
    }

    #[test]
    fn known_id_is_not_moved() {
        let own = NodeId([0; 20]);
        let mut table = RoutingTable::new(own, 1, 1);
        let id = NodeId([9; 20]);
        assert_eq!(
            table.heard_from(T0, id, addr(1), Seen::Query),
            Insert::Added
        );
        assert_eq!(
            table.heard_from(T0, id, addr(2), Seen::Response),
            Insert::Dropped
        );
        assert_eq!(table.get(&id).unwrap().addr, addr(1));
        assert_eq!(table.get(&id).unwrap().state(T0), NodeState::Questionable);
        table.heard_from(T0, id, addr(1), Seen::Response);
        assert_eq!(table.get(&id).unwrap().state(T0), NodeState::Good);
    }

    /// Reading only the nearest buckets gives what a scan of the whole table gives, for
    /// targets in every bucket (our own id and ids sharing long prefixes with it included),
    /// with bad, unverified and verified contacts mixed.
    #[test]
    fn nearest_buckets_give_the_full_scans_answer() {
        let own = NodeId::sha1(b"own");
        let mut table = RoutingTable::new(own, 1, 1);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for i in 0..400u32 {
            let id = if i % 3 == 0 {
                id_with_prefix(&own, (next() % 40) as usize, i as u8)
            } else {
                NodeId::sha1(&i.to_be_bytes())
            };
            let seen = if i % 4 == 0 {
                Seen::Query
            } else {
                Seen::Response
            };
            table.heard_from(T0, id, addr(i), seen);
            if i % 7 == 0 {
                for _ in 0..MAX_FAILS {
                    table.failed(T0, &id);
                }
            }
        }
        assert!(table.bucket_count() > 8);
        let mut targets = vec![own];
        targets.extend((0..60).map(|c| id_with_prefix(&own, c, 3)));
        targets.extend((0..40u32).map(|i| NodeId::sha1(&(i + 9000).to_be_bytes())));
        for target in &targets {
            for n in [0, 1, 8, K, 300] {
                let mut all: Vec<_> = table
                    .iter()
                    .filter(|c| c.state(T0) != NodeState::Bad)
                    .collect();
                all.sort_by_key(|c| c.id.distance_key(target));
                let want: Vec<_> = all.iter().take(n).map(|c| c.id).collect();
                let got: Vec<_> = table.closest(T0, target, n).iter().map(|c| c.id).collect();
                assert_eq!(got, want, "closest n={n}");
                all.sort_by_key(|c| (c.last_response.is_none(), c.id.distance_key(target)));
                let mut want: Vec<_> = all.iter().take(n).copied().collect();
                want.sort_by_key(|c| c.id.distance_key(target));
                let want: Vec<_> = want.iter().map(|c| c.id).collect();
                let got: Vec<_> = table
                    .closest_good(T0, target, n)
                    .iter()
                    .map(|c| c.id)
                    .collect();
                assert_eq!(got, want, "closest_good n={n}");
            }
        }
    }
}
