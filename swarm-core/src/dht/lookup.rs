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
        if id == *own
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
