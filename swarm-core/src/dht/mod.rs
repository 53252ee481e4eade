//! Mainline DHT (BEP 5), sans-IO: bencode and KRPC codecs, the routing table, announce
//! tokens and the peer store, and [`DhtNode`], which composes them.
//!
//! Wire behaviour follows BEP 5 and interoperates with Node's `bittorrent-dht` 7.10 (see
//! PROTOCOLS.md section 4); where Node departs from BEP 5 we accept what it sends but behave
//! as BEP 5 asks (K closest nodes only, error replies, expiring peers).
//!
//! Driving a node (the adapter owns the UDP socket and the timer):
//!
//! ```
//! use swarm_core::dht::{DhtConfig, DhtEvent, DhtNode, NodeId};
//! use swarm_core::Instant;
//!
//! let mut config = DhtConfig::new(42);
//! config.bootstrap = vec!["127.0.0.1:6881".parse().unwrap()]; // never a default here
//! let now = Instant::ZERO;
//! let mut dht = DhtNode::new(config, now);
//! dht.bootstrap(now);
//! let topic = NodeId::sha1(b"my topic"); // info-hash of a topic, as discovery-channel does
//! dht.announce(now, topic, 7001, false);
//! // Loop: on a datagram `dht.handle_datagram(now, from, &buf)`; when the deadline from
//! // `dht.poll_timeout()` passes, `dht.handle_timeout(now)`; after either, drain:
//! while let Some((to, datagram)) = dht.poll_transmit() {
//!     let _ = (to, datagram); // socket.send_to(&datagram, to)
//! }
//! while let Some(event) = dht.poll_event() {
//!     if let DhtEvent::Peer { info_hash, addr, .. } = event {
//!         let _ = (info_hash, addr); // a peer for the topic
//!     }
//! }
//! ```

pub mod bencode;
pub mod krpc;
mod lookup;
mod node;
pub mod routing;
mod state;
pub mod tokens;

pub use node::{DhtConfig, DhtEvent, DhtNode, LookupId, MAX_BOOTSTRAP, MAX_LOOKUPS, MAX_RESTORED};
pub use state::{DhtState, StateError};

use core::fmt;

/// A 160-bit node id or info-hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    /// Exact XOR distance; compares as a big-endian 160-bit number.
    pub fn distance(&self, other: &NodeId) -> NodeId {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        NodeId(d)
    }

    /// The XOR distance as integers that compare like the big-endian 160-bit number: the
    /// same order as [`NodeId::distance`], without a byte-wise comparison per step.
    pub fn distance_key(&self, other: &NodeId) -> (u64, u64, u32) {
        let word = |range: core::ops::Range<usize>| {
            let mut x = 0u64;
            for i in range {
                x = (x << 8) | u64::from(self.0[i] ^ other.0[i]);
            }
            x
        };
        (word(0..8), word(8..16), word(16..20) as u32)
    }

    /// Leading bits shared with `other` (160 when equal).
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        160
    }

    /// SHA-1 of `data`: the info-hash of a topic (PROTOCOLS.md section 2).
    pub fn sha1(data: &[u8]) -> NodeId {
        use sha1::Digest;
        NodeId(sha1::Sha1::digest(data).into())
    }

    pub fn from_slice(b: &[u8]) -> Option<NodeId> {
        b.try_into().ok().map(NodeId)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_hash_matches_node() {
        // PROTOCOLS.md section 2, verified against Node.
        let h = NodeId::sha1(b"ubuntu-14.04");
        let hex: String = h.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "30b411f5ef231e34acc17e0065a8fed2d72116fd");
    }

    #[test]
    fn distance_key_orders_like_distance() {
        let ids: Vec<NodeId> = (0u8..40)
            .map(|i| NodeId([i.wrapping_mul(37) ^ 0x5a; 20]))
            .collect();
        let mut by_key = ids.clone();
        let mut by_distance = ids.clone();
        let target = NodeId([0x33; 20]);
        by_key.sort_by_key(|n| n.distance_key(&target));
        by_distance.sort_by_key(|n| n.distance(&target));
        assert_eq!(by_key, by_distance);
    }

    #[test]
    fn distance_and_prefix() {
        let a = NodeId([0; 20]);
        let mut b = NodeId([0; 20]);
        b.0[2] = 0b0001_0000;
        assert_eq!(a.common_prefix_len(&b), 19);
        assert_eq!(a.common_prefix_len(&a), 160);
        assert_eq!(a.distance(&b), b);
        assert!(a.distance(&b) > a.distance(&a));
    }
}
