//! What a DHT node keeps between runs: its id (other nodes' tables know it by that id) and
//! the contacts it had, so the next start needs no bootstrap router.
//!
//! Stored as one bencoded dictionary in the wire's own compact node form,
//! `d2:id20:<id>5:nodes<26 bytes per contact>e`, parsed as strictly as any datagram: a
//! damaged or hostile file is rejected with a typed error, never trusted.

use super::bencode::{self, Limits};
use super::krpc::{compact_nodes, push_compact_node, COMPACT_NODE_LEN};
use super::{NodeId, MAX_RESTORED};
use core::fmt;
use std::net::SocketAddrV4;

/// A node's id and saved contacts. Put them back with [`super::DhtConfig`]'s `id` and
/// `contacts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtState {
    pub id: NodeId,
    pub contacts: Vec<(NodeId, SocketAddrV4)>,
}

/// Why saved state was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    Bencode(bencode::DecodeError),
    /// Not a dictionary with a 20-byte `id` and a `nodes` string of whole 26-byte entries.
    Shape,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Bencode(e) => write!(f, "DHT state is not bencode: {e}"),
            StateError::Shape => write!(f, "DHT state lacks a 20-byte id or whole nodes"),
        }
    }
}

impl std::error::Error for StateError {}

impl DhtState {
    /// At most [`MAX_RESTORED`] contacts, in the given order.
    pub fn encode(&self) -> Vec<u8> {
        let contacts = &self.contacts[..self.contacts.len().min(MAX_RESTORED)];
        let mut nodes = Vec::with_capacity(contacts.len() * COMPACT_NODE_LEN);
        for (id, addr) in contacts {
            push_compact_node(&mut nodes, id, *addr);
        }
        let mut out = Vec::with_capacity(nodes.len() + 40);
        out.extend_from_slice(b"d2:id");
        bencode::bytes(&mut out, &self.id.0);
        out.extend_from_slice(b"5:nodes");
        bencode::bytes(&mut out, &nodes);
        out.push(b'e');
        out
    }

    /// The inverse of [`DhtState::encode`]; contacts beyond [`MAX_RESTORED`] and those with
    /// port 0 are dropped.
    pub fn decode(data: &[u8]) -> Result<DhtState, StateError> {
        let limits = Limits {
            max_depth: 2,
            max_items: 8,
        };
        let value = bencode::parse(data, limits).map_err(StateError::Bencode)?;
        let id = value
            .get(b"id")
            .and_then(|v| v.as_bytes())
            .and_then(NodeId::from_slice)
            .ok_or(StateError::Shape)?;
        let nodes = value
            .get(b"nodes")
            .and_then(|v| v.as_bytes())
            .filter(|n| n.len() % COMPACT_NODE_LEN == 0)
            .ok_or(StateError::Shape)?;
        let contacts = compact_nodes(nodes).take(MAX_RESTORED).collect();
        Ok(DhtState { id, contacts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn state(n: usize) -> DhtState {
        DhtState {
            id: NodeId([7; 20]),
            contacts: (0..n)
                .map(|i| {
                    let addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, (i / 250) as u8, 1), 6881);
                    (NodeId([(i % 256) as u8; 20]), addr)
                })
                .collect(),
        }
    }

    #[test]
    fn saved_state_reads_back_identically() {
        for n in [0, 1, 300] {
            let s = state(n);
            assert_eq!(DhtState::decode(&s.encode()), Ok(s));
        }
    }

    #[test]
    fn at_most_max_restored_contacts_are_written() {
        let s = state(MAX_RESTORED + 10);
        let back = DhtState::decode(&s.encode()).unwrap();
        assert_eq!(back.contacts.len(), MAX_RESTORED);
        assert_eq!(back.contacts[..], s.contacts[..MAX_RESTORED]);
    }

    #[test]
    fn damaged_state_is_rejected_not_trusted() {
        let good = state(3).encode();
        assert!(matches!(
            DhtState::decode(&good[..good.len() - 1]),
            Err(StateError::Bencode(_))
        ));
        assert_eq!(DhtState::decode(b"d2:id3:abce"), Err(StateError::Shape));
        assert_eq!(DhtState::decode(b"le"), Err(StateError::Shape));
        // A nodes string cut inside an entry.
        let mut cut = b"d2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes25:".to_vec();
        cut.extend_from_slice(&[1; 25]);
        cut.push(b'e');
        assert_eq!(DhtState::decode(&cut), Err(StateError::Shape));
        assert!(DhtState::decode(b"").is_err());
    }
}
