//! Topics and the discovery mechanisms that serve them (what Node calls discovery-channel).
//! The Mainline DHT is composed in; mDNS and unicast DNS plug in the same way.

use super::*;
use crate::dht::{DhtEvent, NodeId};
use core::time::Duration;
use rand_core::RngCore;

/// Node's DHT round: every `[10 min, 15 min)`, fresh jitter each time.
const DHT_INTERVAL: Duration = Duration::from_secs(600);
const DHT_JITTER_MS: u64 = 300_000;

/// A joined topic.
#[derive(Debug)]
pub(super) struct Topic {
    pub(super) announce: bool,
    pub(super) info_hash: NodeId,
    /// When the next DHT round is due, if one is scheduled.
    pub(super) next_dht_round: Option<Instant>,
}

impl Swarm {
    pub(super) fn join_topic(&mut self, now: Instant, topic: Bytes, announce: bool) {
        let info_hash = NodeId::sha1(&topic);
        self.topic_by_hash.insert(info_hash, topic.clone());
        let entry = self.topics.entry(topic.clone()).or_insert(Topic {
            announce,
            info_hash,
            next_dht_round: None,
        });
        entry.announce = announce;
        if entry.next_dht_round.is_none() && self.port.is_some() {
            self.dht_round(now, topic);
        }
        self.pump_discovery(now);
    }

    pub(super) fn leave_topic(&mut self, topic: &[u8]) -> bool {
        let Some(left) = self.topics.remove(topic) else {
            return false;
        };
        self.topic_by_hash.remove(&left.info_hash);
        true
    }

    /// Listening: the DHT can announce our port now. Bootstraps and starts every topic.
    pub(super) fn start_discovery(&mut self, now: Instant) {
        if let Some(dht) = self.dht.as_mut() {
            dht.bootstrap(now);
        }
        let topics: Vec<Bytes> = self.topics.keys().cloned().collect();
        for topic in topics {
            self.dht_round(now, topic);
        }
        self.pump_discovery(now);
    }

    /// One DHT round for `topic` (an announce, which looks up too, or a lookup), and the
    /// next one scheduled.
    pub(super) fn dht_round(&mut self, now: Instant, topic: Bytes) {
        let (Some(dht), Some(port)) = (self.dht.as_mut(), self.port) else {
            return;
        };
        let Some(state) = self.topics.get_mut(&topic) else {
            return;
        };
        if state.announce {
            dht.announce(now, state.info_hash, port, false);
        } else {
            dht.get_peers(now, state.info_hash);
        }
        let interval = match self.config.dht_interval {
            Some(fixed) => fixed,
            None => DHT_INTERVAL + Duration::from_millis(self.rng.next_u64() % DHT_JITTER_MS),
        };
        let at = now + interval;
        state.next_dht_round = Some(at);
        self.arm(at, Timer::DhtRound(topic));
    }

    pub(super) fn on_dht_round(&mut self, now: Instant, topic: Bytes) {
        let due = self
            .topics
            .get(&topic)
            .and_then(|t| t.next_dht_round)
            .is_some_and(|at| at <= now);
        if due {
            self.dht_round(now, topic);
        }
    }

    /// Routes a datagram on the swarm's UDP port. KRPC is a bencoded dictionary, which starts
    /// with `d` and is never a uTP header (PROTOCOLS.md 1.11).
    pub(super) fn on_swarm_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if data.first() == Some(&b'd') {
            if let Some(dht) = self.dht.as_mut() {
                dht.handle_datagram(now, from, data);
            }
        }
        self.pump_discovery(now);
    }

    pub(super) fn discovery_timeout(&self) -> Option<Instant> {
        self.dht.as_ref().and_then(|dht| dht.poll_timeout())
    }

    pub(super) fn handle_discovery_timeout(&mut self, now: Instant) {
        if let Some(dht) = self.dht.as_mut() {
            if dht.poll_timeout().is_some_and(|at| at <= now) {
                dht.handle_timeout(now);
            }
        }
        self.pump_discovery(now);
    }

    /// Moves the mechanisms' datagrams to the outputs and their peers into the dial path.
    pub(super) fn pump_discovery(&mut self, now: Instant) {
        let Some(dht) = self.dht.as_mut() else {
            return;
        };
        while let Some((to, data)) = dht.poll_transmit() {
            let socket = UdpSocket::Swarm;
            self.outputs
                .push_back(Output::Transmit { socket, to, data });
        }
        let mut found = Vec::new();
        while let Some(event) = dht.poll_event() {
            if let DhtEvent::Peer {
                info_hash, addr, ..
            } = event
            {
                found.push((info_hash, addr));
            }
        }
        for (info_hash, addr) in found {
            if let Some(topic) = self.topic_by_hash.get(&info_hash).cloned() {
                self.discovered(now, Some(topic), SocketAddr::V4(addr), PeerSource::Dht);
            }
        }
    }
}
