//! Candidate peers: the seen/banned table, the dial queue and retry bookkeeping.

use crate::event::{PeerInfo, PeerSource};
use crate::time::Instant;
use crate::{new_map, ConnId, Map};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Maps IPv4-mapped IPv6 addresses to IPv4, so one host has one key.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// [`normalize_ip`] for a socket address.
pub fn normalize_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(normalize_ip(addr.ip()), addr.port())
}

/// Node's "long id": a peer is an address found for a topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PeerKey {
    pub addr: SocketAddr,
    pub topic: Option<Bytes>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerStatus {
    /// Known, not queued, not connected: rediscovery queues it again.
    Idle,
    /// In the dial queue.
    Queued,
    /// Waiting out a retry delay until the instant given.
    Waiting(Instant),
    /// A dial attempt or its handshake is in flight.
    Dialing,
    /// Its outbound connection is the registered one for its remote id.
    Connected(ConnId),
}

#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub retries: u32,
    pub status: PeerStatus,
    pub banned: bool,
    /// The id this address answered with last time, so a connected peer is not redialled.
    pub remote_id: Option<Arc<[u8]>>,
    /// How it was last found.
    pub source: PeerSource,
}

impl Peer {
    /// Queued, waiting, dialling or connected: its address then counts as busy
    /// ([`PeerTable::addr_busy`]).
    pub fn is_busy(&self) -> bool {
        is_busy(self.status)
    }
}

/// Queued peers whose room the dial queue keeps once it is empty. Joining a busy topic
/// queues hundreds of candidates at once while every slot is taken; keeping that room for
/// good cost a simulated 1,000-node swarm 10 KB a node.
const QUEUE_KEPT: usize = 16;

/// The candidate table and the dial queue. `len` first: the simulator's invariant check
/// reads it after every input, and nothing else here (see [`Swarm`](crate::Swarm)'s layout).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct PeerTable {
    len: usize,
    /// The peers, by the topic they were found under (a node has a few topics and hundreds
    /// of peers under each, so a topic is held once, not in every key: the table was the
    /// largest part of a simulated node, ~100 bytes an entry, and each lookup hashed and
    /// compared the topic's bytes). Tables are dropped once empty.
    topics: Vec<TopicPeers>,
    /// Where each topic's table is in `topics`, for a node with more than a few topics (an
    /// application may join one per feed, thousands).
    index: Map<Option<Bytes>, usize>,
    queue: VecDeque<PeerKey>,
    /// Peers per address that are queued, waiting, dialling or connected (any topic).
    busy_addrs: Map<SocketAddr, u32>,
    seed: u64,
}

#[derive(Debug)]
struct TopicPeers {
    topic: Option<Bytes>,
    peers: Map<SocketAddr, Peer>,
}

/// The same topic: the same buffer (a topic's `Bytes` are clones of the joined one), else
/// the same bytes.
fn same_topic(a: &Option<Bytes>, b: &Option<Bytes>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b,
        _ => false,
    }
}

/// Topics found by comparing each (nearly always the same buffer) rather than by hashing.
const FEW_TOPICS: usize = 4;

fn is_busy(status: PeerStatus) -> bool {
    !matches!(status, PeerStatus::Idle)
}

impl PeerTable {
    pub fn new(seed: u64) -> Self {
        PeerTable {
            topics: Vec::new(),
            index: new_map(seed),
            len: 0,
            queue: VecDeque::new(),
            busy_addrs: new_map(seed),
            seed,
        }
    }

    fn topic_index(&self, topic: &Option<Bytes>) -> Option<usize> {
        if self.topics.len() <= FEW_TOPICS {
            self.topics.iter().position(|t| same_topic(&t.topic, topic))
        } else {
            self.index.get(topic).copied()
        }
    }

    fn peers_of(&self, topic: &Option<Bytes>) -> Option<&Map<SocketAddr, Peer>> {
        self.topic_index(topic).map(|i| &self.topics[i].peers)
    }

    pub fn get(&self, key: &PeerKey) -> Option<&Peer> {
        self.peers_of(&key.topic)?.get(&key.addr)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn addr_busy(&self, addr: &SocketAddr) -> bool {
        self.busy_addrs.get(addr).is_some_and(|n| *n > 0)
    }

    pub fn info(&self, key: &PeerKey) -> PeerInfo {
        PeerInfo {
            addr: key.addr,
            topic: key.topic.clone(),
            retries: self.get(key).map_or(0, |p| p.retries),
        }
    }

    /// Inserts or updates a peer, keeping the busy index right.
    pub fn set_status(&mut self, key: &PeerKey, status: PeerStatus) {
        let i = match self.topic_index(&key.topic) {
            Some(i) => i,
            None => {
                self.topics.push(TopicPeers {
                    topic: key.topic.clone(),
                    peers: new_map(self.seed),
                });
                self.index.insert(key.topic.clone(), self.topics.len() - 1);
                self.topics.len() - 1
            }
        };
        let peers = &mut self.topics[i].peers;
        let before = peers.len();
        let peer = peers.entry(key.addr).or_insert(Peer {
            retries: 0,
            status: PeerStatus::Idle,
            banned: false,
            remote_id: None,
            source: PeerSource::Manual,
        });
        let was_busy = is_busy(peer.status);
        peer.status = status;
        self.len += peers.len() - before;
        match (was_busy, is_busy(status)) {
            (false, true) => *self.busy_addrs.entry(key.addr).or_insert(0) += 1,
            (true, false) => self.release_addr(key.addr),
            _ => {}
        }
    }

    fn release_addr(&mut self, addr: SocketAddr) {
        if let Some(count) = self.busy_addrs.get_mut(&addr) {
            *count -= 1;
            if *count == 0 {
                self.busy_addrs.remove(&addr);
            }
        }
    }

    pub fn enqueue(&mut self, key: PeerKey) {
        self.set_status(&key, PeerStatus::Queued);
        self.queue.push_back(key);
    }

    /// The next queued peer that is still queued and not banned.
    pub fn dequeue(&mut self) -> Option<PeerKey> {
        while let Some(key) = self.queue.pop_front() {
            match self.get(&key) {
                Some(peer) if peer.status == PeerStatus::Queued && !peer.banned => {
                    return Some(key)
                }
                Some(peer) if peer.status == PeerStatus::Queued => {
                    self.set_status(&key, PeerStatus::Idle)
                }
                _ => {}
            }
        }
        if self.queue.capacity() > QUEUE_KEPT {
            self.queue.shrink_to(QUEUE_KEPT);
        }
        None
    }

    pub fn update(&mut self, key: &PeerKey, f: impl FnOnce(&mut Peer)) {
        let Some(i) = self.topic_index(&key.topic) else {
            return;
        };
        if let Some(peer) = self.topics[i].peers.get_mut(&key.addr) {
            f(peer);
        }
    }

    pub fn remove(&mut self, key: &PeerKey) {
        let Some(i) = self.topic_index(&key.topic) else {
            return;
        };
        if let Some(peer) = self.remove_at(i, &key.addr) {
            if is_busy(peer.status) {
                self.release_addr(key.addr);
            }
        }
    }

    /// Removes a peer of the `i`th topic, and the topic's table once it is empty.
    fn remove_at(&mut self, i: usize, addr: &SocketAddr) -> Option<Peer> {
        let peer = self.topics[i].peers.remove(addr)?;
        self.len -= 1;
        if self.topics[i].peers.is_empty() {
            let gone = self.topics.swap_remove(i);
            self.index.remove(&gone.topic);
            if let Some(moved) = self.topics.get(i) {
                self.index.insert(moved.topic.clone(), i);
            }
        }
        Some(peer)
    }

    /// Forgets idle, unbanned peers until the table has room for one more under `cap`.
    /// Returns false if it is still full (everything left is busy or banned).
    pub fn make_room(&mut self, cap: usize) -> bool {
        if self.len < cap {
            return true;
        }
        let excess = self.len + 1 - cap;
        let victims: Vec<PeerKey> = self
            .topics
            .iter()
            .flat_map(|t| t.peers.iter().map(move |(addr, p)| (&t.topic, addr, p)))
            .filter(|(_, _, p)| p.status == PeerStatus::Idle && !p.banned)
            .map(|(topic, addr, _)| PeerKey {
                addr: *addr,
                topic: topic.clone(),
            })
            .take(excess)
            .collect();
        for key in &victims {
            if let Some(i) = self.topic_index(&key.topic) {
                self.remove_at(i, &key.addr);
            }
        }
        self.len < cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn key(port: u16) -> PeerKey {
        PeerKey {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            topic: None,
        }
    }

    #[test]
    fn normalizes_ipv4_mapped() {
        let mapped = SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x7f00, 1])),
            7,
        );
        assert_eq!(
            normalize_addr(mapped),
            SocketAddr::from(([127, 0, 0, 1], 7))
        );
    }

    #[test]
    fn busy_index_follows_status() {
        let mut table = PeerTable::new(1);
        table.enqueue(key(1));
        assert!(table.addr_busy(&key(1).addr));
        assert_eq!(table.dequeue(), Some(key(1)));
        table.set_status(&key(1), PeerStatus::Dialing);
        assert!(table.addr_busy(&key(1).addr));
        table.set_status(&key(1), PeerStatus::Idle);
        assert!(!table.addr_busy(&key(1).addr));
        table.remove(&key(1));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn dequeue_skips_banned_and_stale_entries() {
        let mut table = PeerTable::new(1);
        table.enqueue(key(1));
        table.enqueue(key(2));
        table.update(&key(1), |p| p.banned = true);
        assert_eq!(table.dequeue(), Some(key(2)));
        assert_eq!(table.dequeue(), None);
        assert!(!table.addr_busy(&key(1).addr));
    }

    #[test]
    fn an_emptied_queue_gives_back_its_room_and_keeps_its_order() {
        let mut table = PeerTable::new(1);
        for port in 1..=300 {
            table.enqueue(key(port));
        }
        for port in 1..=300 {
            assert_eq!(table.dequeue(), Some(key(port)));
        }
        assert_eq!(table.dequeue(), None);
        assert!(table.queue.capacity() <= QUEUE_KEPT);
        table.enqueue(key(7));
        assert_eq!(table.dequeue(), Some(key(7)));
    }

    /// One address under two topics (and none) is three peers; a topic's table goes once
    /// its last peer does; a topic given as another buffer with the same bytes is the same.
    #[test]
    fn peers_are_kept_per_topic() {
        let mut table = PeerTable::new(1);
        let a = Some(Bytes::from_static(b"topic-a"));
        let b = Some(Bytes::from_static(b"topic-b"));
        let under = |topic: &Option<Bytes>| PeerKey {
            topic: topic.clone(),
            ..key(1)
        };
        table.enqueue(under(&a));
        table.set_status(&under(&b), PeerStatus::Idle);
        table.set_status(&key(1), PeerStatus::Dialing);
        assert_eq!(table.len(), 3);
        assert_eq!(table.topics.len(), 3);
        let copy = PeerKey {
            topic: Some(Bytes::copy_from_slice(b"topic-b")),
            ..key(1)
        };
        assert_eq!(table.get(&copy).map(|p| p.status), Some(PeerStatus::Idle));
        table.remove(&copy);
        assert!(table.get(&under(&b)).is_none());
        assert_eq!((table.len(), table.topics.len()), (2, 2));
        assert_eq!(table.dequeue(), Some(under(&a)));
        table.set_status(&under(&a), PeerStatus::Idle);
        assert!(table.make_room(2), "the idle peer under topic a goes");
        assert_eq!((table.len(), table.topics.len()), (1, 1));
        assert!(
            table.addr_busy(&key(1).addr),
            "still dialled without a topic"
        );
    }

    /// Many topics (looked up through the index), tables dropped from the middle: every
    /// peer is still found under its own topic and no other.
    #[test]
    fn many_topics_keep_their_peers_apart() {
        let mut table = PeerTable::new(1);
        let topic = |t: u16| Some(Bytes::from(format!("topic-{t}")));
        let under = |t: u16, port: u16| PeerKey {
            topic: topic(t),
            ..key(port)
        };
        for t in 0..40 {
            for port in 0..=t % 3 {
                table.set_status(&under(t, port), PeerStatus::Idle);
            }
        }
        for t in (0..40).step_by(5) {
            for port in 0..=t % 3 {
                table.remove(&under(t, port));
            }
        }
        for t in 0..40 {
            for port in 0..4 {
                let kept = t % 5 != 0 && port <= t % 3;
                assert_eq!(table.get(&under(t, port)).is_some(), kept, "{t}/{port}");
            }
        }
        assert_eq!(table.topics.len(), 32);
        assert_eq!(
            table.len(),
            table.topics.iter().map(|t| t.peers.len()).sum::<usize>()
        );
    }

    #[test]
    fn make_room_evicts_only_idle_peers() {
        let mut table = PeerTable::new(1);
        table.enqueue(key(1));
        table.set_status(&key(2), PeerStatus::Idle);
        assert!(table.make_room(2));
        assert_eq!(table.len(), 1);
        assert!(!table.make_room(1));
    }
}
