//! One iterative lookup (BEP 5 / Kademlia): the candidate frontier around a target.
//!
//! Candidates are kept sorted by XOR distance to the target and capped, so a lookup uses
//! bounded memory whatever the replies contain. The lookup queries the closest candidates
//! not yet asked, at most `alpha` at a time, and is done when nothing is in flight and the
//! [`K`] closest live candidates have all answered (or the query budget is spent), so it always
//! terminates.

use super::routing::K;
use super::NodeId;
use std::net::{SocketAddr, SocketAddrV4};

/// Candidates kept per lookup: a wide frontier beyond the K closest, so timeouts near the
/// target do not leave the lookup short of nodes to ask.
pub(crate) const MAX_CANDIDATES: usize = 8 * K;
/// Queries one lookup may send in all; a safety net, normal lookups need a few dozen.
pub(crate) const MAX_QUERIES: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CandState {
    Fresh,
    InFlight,
    /// Answered; the token it handed us, if any.
    Responded(Option<Vec<u8>>),
    Failed,
}

#[derive(Clone, Debug)]
pub(crate) struct Cand {
    pub id: NodeId,
    pub addr: SocketAddrV4,
    pub state: CandState,
}

/// What a lookup is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    FindNode,
    GetPeers,
    Announce { port: u16, implied_port: bool },
}

pub(crate) struct Lookup {
    pub target: NodeId,
    pub kind: Kind,
    pub cands: Vec<Cand>,
    /// Addresses of unknown id (bootstrap nodes) still to ask.
    pub bootstrap: Vec<SocketAddr>,
    /// Every address asked, so no node is asked twice.
    pub asked: Vec<SocketAddr>,
    pub in_flight: usize,
    pub responded: usize,
    /// Peers already reported, to report each once.
    pub peers_seen: Vec<SocketAddrV4>,
    /// Set once announce_peer queries are out: (outstanding, acknowledged).
    pub announcing: Option<(usize, usize)>,
    /// Started by the node itself (bucket refresh): no event when done.
    pub quiet: bool,
}

/// What the node should do next for a lookup.
pub(crate) enum Step {
    Query(SocketAddr, Option<NodeId>),
    Wait,
    Done,
}

impl Lookup {
    pub fn new(target: NodeId, kind: Kind) -> Self {
        Lookup {
            target,
            kind,
            cands: Vec::new(),
            bootstrap: Vec::new(),
            asked: Vec::new(),
            in_flight: 0,
            responded: 0,
            peers_seen: Vec::new(),
            announcing: None,
            quiet: false,
        }
    }

    /// Adds a node learned from the routing table or a reply.
    pub fn add(&mut self, own: &NodeId, id: NodeId, addr: SocketAddrV4) {
        // Addresses no node can answer from are never queried (a reply could list them to
        // make us spray broadcast or multicast traffic).
        let ip = addr.ip();
        if id == *own
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
            || addr.port() == 0
            || self.cands.iter().any(|c| c.id == id || c.addr == addr)
            || self.asked.contains(&SocketAddr::V4(addr))
        {
            return;
        }
        let d = id.distance(&self.target);
        let at = self
            .cands
            .partition_point(|c| c.id.distance(&self.target) < d);
        if at >= MAX_CANDIDATES {
            return;
        }
        self.cands.insert(
            at,
            Cand {
                id,
                addr,
                state: CandState::Fresh,
            },
        );
        // Drop the farthest candidate not yet asked; asked ones stay so their answers and
        // tokens are kept (at most MAX_QUERIES of them).
        if self.cands.len() > MAX_CANDIDATES {
            if let Some(i) = self.cands.iter().rposition(|c| c.state == CandState::Fresh) {
                self.cands.remove(i);
            }
        }
    }

    /// The next query to send, if any; marks it in flight.
    pub fn next(&mut self) -> Step {
        if self.asked.len() < MAX_QUERIES {
            if let Some(addr) = self.bootstrap.pop() {
                self.asked.push(addr);
                self.in_flight += 1;
                return Step::Query(addr, None);
            }
            let mut live = 0;
            for c in self.cands.iter_mut() {
                if live >= K {
                    break;
                }
                match c.state {
                    CandState::Failed => continue,
                    CandState::Fresh => {
                        c.state = CandState::InFlight;
                        self.asked.push(SocketAddr::V4(c.addr));
                        self.in_flight += 1;
                        return Step::Query(SocketAddr::V4(c.addr), Some(c.id));
                    }
                    _ => live += 1,
                }
            }
        }
        if self.in_flight == 0 {
            Step::Done
        } else {
            Step::Wait
        }
    }

    /// A query to `addr` finished: answered with `answer = Some((id, token))`, or failed.
    pub fn finished(
        &mut self,
        own: &NodeId,
        addr: SocketAddr,
        answer: Option<(NodeId, Option<&[u8]>)>,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let pos = self
            .cands
            .iter()
            .position(|c| SocketAddr::V4(c.addr) == addr);
        match (answer, pos) {
            (Some((_, token)), Some(i)) => {
                self.responded += 1;
                self.cands[i].state = CandState::Responded(token.map(<[u8]>::to_vec));
            }
            (Some((id, token)), None) => {
                // A bootstrap node: now that we know its id, rank it.
                self.responded += 1;
                if let SocketAddr::V4(v4) = addr {
                    self.asked.retain(|a| *a != addr);
                    self.add(own, id, v4);
                    self.asked.push(addr);
                    if let Some(c) = self.cands.iter_mut().find(|c| c.addr == v4) {
                        c.state = CandState::Responded(token.map(<[u8]>::to_vec));
                    }
                }
            }
            (None, Some(i)) => self.cands[i].state = CandState::Failed,
            (None, None) => {}
        }
    }

    /// The K closest nodes that answered with a token, for announce_peer.
    pub fn token_holders(&self) -> Vec<(SocketAddrV4, Vec<u8>)> {
        self.cands
            .iter()
            .filter_map(|c| match &c.state {
                CandState::Responded(Some(t)) => Some((c.addr, t.clone())),
                _ => None,
            })
            .take(K)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn id(i: u8) -> NodeId {
        NodeId::sha1(&[i])
    }

    #[test]
    fn terminates_when_the_k_closest_answered() {
        let own = id(0);
        let mut l = Lookup::new(id(200), Kind::GetPeers);
        for i in 1..=40u8 {
            l.add(
                &own,
                id(i),
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 1),
            );
        }
        // Unroutable addresses and our own id are never candidates.
        l.add(&own, id(41), SocketAddrV4::new(Ipv4Addr::BROADCAST, 1));
        l.add(
            &own,
            id(42),
            SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 1),
        );
        l.add(&own, own, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 99), 1));
        assert_eq!(l.cands.len(), 40);
        let mut queried = 0;
        loop {
            match l.next() {
                Step::Query(addr, Some(nid)) => {
                    queried += 1;
                    // Every other node times out.
                    let answer = (queried % 2 == 0).then_some((nid, Some(&b"tok"[..])));
                    l.finished(&own, addr, answer);
                }
                Step::Done => break,
                _ => panic!("nothing in flight"),
            }
        }
        assert!((K..=40).contains(&queried), "{queried}");
        let holders = l.token_holders();
        assert_eq!(holders.len(), K);
        // The K closest live candidates all answered.
        let live: Vec<_> = l
            .cands
            .iter()
            .filter(|c| c.state != CandState::Failed)
            .take(K)
            .collect();
        assert!(live
            .iter()
            .all(|c| matches!(c.state, CandState::Responded(_))));
    }

    #[test]
    fn the_candidate_list_is_capped() {
        let own = id(0);
        let mut l = Lookup::new(id(0), Kind::FindNode);
        for i in 0..2000u32 {
            let nid = NodeId::sha1(&i.to_be_bytes());
            l.add(
                &own,
                nid,
                SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1),
            );
        }
        assert_eq!(l.cands.len(), MAX_CANDIDATES);
        assert!(l
            .cands
            .windows(2)
            .all(|w| w[0].id.distance(&l.target) < w[1].id.distance(&l.target)));
    }
}
