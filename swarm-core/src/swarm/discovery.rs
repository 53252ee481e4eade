//! Topics and the discovery mechanisms that serve them (what Node calls discovery-channel):
//! multicast DNS on the LAN, unicast dns-discovery servers and the Mainline DHT.

use super::*;
use crate::dht::{DhtEvent, LookupId, NodeId};
use crate::dnsd::{DnsClient, DnsClientConfig, DnsEvent, WhoamiResult};
use crate::mdns::MdnsEvent;
use core::time::Duration;
use rand_core::RngCore;

/// Node's DHT round: every `[10 min, 15 min)`, fresh jitter each time.
const DHT_INTERVAL: Duration = Duration::from_secs(600);
const DHT_JITTER_MS: u64 = 300_000;

/// A joined topic.
#[derive(Debug)]
pub(super) struct Topic {
    pub(super) announce: bool,
    /// The topic's key as a DHT info-hash; `None` when the key is empty (no DHT for it).
    pub(super) info_hash: Option<NodeId>,
    /// When the next DHT round is due, if one is scheduled.
    pub(super) next_dht_round: Option<Instant>,
    /// First round still running: mDNS's, and the DHT's (its lookup).
    first_mdns: bool,
    first_dht: Option<LookupId>,
    /// `joined` was reported (Node's join callback fires once).
    joined_reported: bool,
}

impl Swarm {
    pub(super) fn join_topic(&mut self, now: Instant, topic: Bytes, announce: bool) {
        let info_hash = self.config.topic_hash.key(&topic).map(|key| {
            // Keys are at most 20 bytes; a shorter raw key is zero-padded to an info-hash.
            let mut id = [0u8; 20];
            id[..key.len()].copy_from_slice(&key);
            NodeId(id)
        });
        if let Some(hash) = info_hash {
            self.topic_by_hash.insert(hash, topic.clone());
        }
        let entry = self.topics.entry(topic.clone()).or_insert(Topic {
            announce,
            info_hash,
            next_dht_round: None,
            first_mdns: false,
            first_dht: None,
            joined_reported: false,
        });
        entry.announce = announce;
        let start_dht = entry.next_dht_round.is_none();
        if let Some(port) = self.port {
            if let Some(mdns) = self.mdns.as_mut() {
                mdns.join(topic.clone(), announce, port);
                mdns.handle_timeout(now);
            }
            if let Some(dns) = self.dns.as_mut() {
                dns.join(now, topic.clone(), announce, port);
            }
            if start_dht {
                self.start_first_round(now, topic);
            }
        }
        self.pump_discovery(now);
    }

    pub(super) fn leave_topic(&mut self, topic: &[u8]) -> bool {
        let Some(left) = self.topics.remove(topic) else {
            return false;
        };
        if let Some(hash) = left.info_hash {
            self.topic_by_hash.remove(&hash);
        }
        if let Some(mdns) = self.mdns.as_mut() {
            mdns.leave(topic);
        }
        if let Some(dns) = self.dns.as_mut() {
            // Its unannounces go out at the next `handle_timeout` (due at once).
            dns.leave(topic);
        }
        true
    }

    /// Listening: the DHT can announce our port now. Bootstraps and starts every topic.
    pub(super) fn start_discovery(&mut self, now: Instant) {
        if let Some(dht) = self.dht.as_mut() {
            dht.bootstrap(now);
        }
        let topics: Vec<(Bytes, bool)> = self
            .topics
            .iter()
            .map(|(t, s)| (t.clone(), s.announce))
            .collect();
        for (topic, announce) in topics {
            if let (Some(mdns), Some(port)) = (self.mdns.as_mut(), self.port) {
                mdns.join(topic.clone(), announce, port);
            }
            if let (Some(dns), Some(port)) = (self.dns.as_mut(), self.port) {
                dns.join(now, topic.clone(), announce, port);
            }
            self.start_first_round(now, topic);
        }
        if let Some(mdns) = self.mdns.as_mut() {
            mdns.handle_timeout(now);
        }
        if let Some(dns) = self.dns.as_mut() {
            dns.start(now);
        }
        self.pump_discovery(now);
    }

    /// The first round of every mechanism for `topic`; `joined` is reported when all are done
    /// (at once when no mechanism is on).
    fn start_first_round(&mut self, now: Instant, topic: Bytes) {
        let lookup = self.dht_round(now, topic.clone());
        let mdns = self.mdns.is_some();
        if let Some(state) = self.topics.get_mut(&topic) {
            state.first_mdns = mdns;
            state.first_dht = lookup;
        }
        self.report_joined_if_done(topic);
    }

    fn report_joined_if_done(&mut self, topic: Bytes) {
        let Some(state) = self.topics.get_mut(&topic) else {
            return;
        };
        if state.joined_reported || state.first_mdns || state.first_dht.is_some() {
            return;
        }
        state.joined_reported = true;
        self.emit(Event::Joined { topic });
    }

    /// One DHT round for `topic` (an announce, which looks up too, or a lookup), and the
    /// next one scheduled. Returns the lookup, if the DHT is on.
    pub(super) fn dht_round(&mut self, now: Instant, topic: Bytes) -> Option<LookupId> {
        let (Some(dht), Some(port)) = (self.dht.as_mut(), self.port) else {
            return None;
        };
        let state = self.topics.get_mut(&topic)?;
        let lookup = if state.announce {
            dht.announce(now, state.info_hash?, port, false)
        } else {
            dht.get_peers(now, state.info_hash?)
        };
        let interval = match self.config.dht_interval {
            Some(fixed) => fixed,
            None => DHT_INTERVAL + Duration::from_millis(self.rng.next_u64() % DHT_JITTER_MS),
        };
        let at = now + interval;
        state.next_dht_round = Some(at);
        self.arm(at, Timer::DhtRound(topic));
        Some(lookup)
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

    /// Routes a datagram on the swarm's UDP port, in the order of PROTOCOLS.md 1.11: uTP that
    /// belongs to a connection (or a SYN); else KRPC if it is a bencoded dictionary, and the
    /// DNS client sees it too, as Node's (a DNS id may start with `d`; the client takes only
    /// answers to its own queries and pushes from its servers); a uTP-shaped leftover that
    /// neither took goes to the uTP socket (a rate-limited RST).
    pub(super) fn on_swarm_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.utp_claims(from, data) {
            self.on_utp_datagram(now, from, data);
            return;
        }
        // The DHT reads it once, and says whether it was a bencoded dictionary.
        let mut taken = false;
        if let Some(dht) = self.dht.as_mut() {
            taken = dht.handle_datagram(now, from, data);
        }
        taken |= self.on_dns_datagram(now, from, data);
        if !taken {
            self.on_utp_datagram(now, from, data);
        }
    }

    /// A datagram for the unicast dns-discovery client (its own socket, or the swarm's);
    /// returns whether the client took it.
    pub(super) fn on_dns_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        let taken = match self.dns.as_mut() {
            Some(dns) => dns.handle_datagram(now, from, data),
            None => false,
        };
        self.pump_discovery(now);
        taken
    }

    /// Our own address as the servers see it: whoami's confirmed `host:port` (Node bans it
    /// for every topic), and, beyond Node, our public host with our listening port (what the
    /// servers list back for our own announce when the DNS socket is not the swarm's), so we
    /// do not dial ourselves only to detect it at the handshake.
    pub(super) fn self_addr(&self, addr: SocketAddr) -> bool {
        let Some(me) = self.public_addr() else {
            return false;
        };
        let SocketAddr::V4(addr) = addr else {
            return false;
        };
        addr.ip() == me.ip()
            && ((me.port() != 0 && addr.port() == me.port()) || Some(addr.port()) == self.port)
    }

    /// Our public address as the dns-discovery servers see it (port 0: not confirmed).
    pub fn public_addr(&self) -> Option<std::net::SocketAddrV4> {
        self.dns.as_deref().and_then(DnsClient::public_addr)
    }

    /// A multicast DNS datagram (port 5353: other mDNS traffic is skipped by the engine).
    pub(super) fn on_mdns_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if let Some(mdns) = self.mdns.as_mut() {
            mdns.handle_datagram(now, from, data);
        }
        self.pump(now, Pumped::MdnsOnly);
    }

    pub(super) fn discovery_timeout(&self) -> Option<Instant> {
        let dht = self.dht.as_ref().and_then(|dht| dht.poll_timeout());
        let mdns = self.mdns.as_ref().and_then(|mdns| mdns.poll_timeout());
        let dns = self.dns.as_deref().and_then(DnsClient::poll_timeout);
        Instant::earliest(dht, Instant::earliest(mdns, dns))
    }

    pub(super) fn handle_discovery_timeout(&mut self, now: Instant) {
        if let Some(dht) = self.dht.as_mut() {
            if dht.poll_timeout().is_some_and(|at| at <= now) {
                dht.handle_timeout(now);
            }
        }
        if let Some(mdns) = self.mdns.as_mut() {
            if mdns.poll_timeout().is_some_and(|at| at <= now) {
                mdns.handle_timeout(now);
            }
        }
        if let Some(dns) = self.dns.as_mut() {
            if dns.poll_timeout().is_some_and(|at| at <= now) {
                dns.handle_timeout(now);
            }
        }
        self.pump_discovery(now);
    }

    /// Moves the mechanisms' datagrams to the outputs and their peers into the dial path.
    pub(super) fn pump_discovery(&mut self, now: Instant) {
        self.pump(now, Pumped::All);
    }

    /// Moves the engines' datagrams to the outputs and acts on their events; with
    /// `Pumped::MdnsOnly`, the mDNS engine's alone: after an mDNS datagram, which no other
    /// engine reads. Their queues were emptied by the pump after whatever last filled them,
    /// and reading them is, at 10,000 simulated nodes, a cache miss each on every LAN
    /// datagram.
    fn pump(&mut self, now: Instant, which: Pumped) {
        let mut found = Vec::new();
        let mut first_rounds: Vec<(Bytes, Option<LookupId>)> = Vec::new();
        if let Some(mdns) = self.mdns.as_mut() {
            while let Some((to, data)) = mdns.poll_transmit() {
                let socket = UdpSocket::Mdns;
                self.outputs
                    .push_back(Output::Transmit { socket, to, data });
            }
            while let Some(event) = mdns.poll_event() {
                match event {
                    MdnsEvent::Peer { topic, addr } => {
                        push_found(&mut found, &mut self.found, (topic, addr, PeerSource::Dns))
                    }
                    MdnsEvent::FirstRound { topic } => first_rounds.push((topic, None)),
                }
            }
        }
        if which == Pumped::MdnsOnly {
            debug_assert!(!self.dns.as_deref().is_some_and(DnsClient::has_output));
            debug_assert!(!self
                .dht
                .as_ref()
                .is_some_and(crate::dht::DhtNode::has_output));
        } else {
            self.pump_dns_and_dht(&mut found, &mut first_rounds);
        }
        self.act_on_discovery(now, &mut found, first_rounds);
        if (1..=FOUND_KEPT).contains(&found.capacity()) {
            self.found = found;
        }
    }

    /// The unicast DNS client's and the DHT's part of [`pump`](Self::pump).
    fn pump_dns_and_dht(
        &mut self,
        found: &mut Vec<Found>,
        first_rounds: &mut Vec<(Bytes, Option<LookupId>)>,
    ) {
        if let Some(dns) = self.dns.as_mut() {
            // With uTP on, the DNS client shares the swarm socket, as Node's (PROTOCOLS.md 1.11).
            let socket = if self.config.utp {
                UdpSocket::Swarm
            } else {
                UdpSocket::Dns
            };
            while let Some((to, data)) = dns.poll_transmit() {
                self.outputs
                    .push_back(Output::Transmit { socket, to, data });
            }
            while let Some(event) = dns.poll_event() {
                match event {
                    DnsEvent::Peer { topic, addr } => {
                        push_found(found, &mut self.found, (topic, addr, PeerSource::Dns))
                    }
                    DnsEvent::Whoami(WhoamiResult::Found(me)) => {
                        tracing::debug!(%me, "whoami: our public address");
                    }
                    DnsEvent::Whoami(WhoamiResult::Failed) => tracing::debug!("whoami failed"),
                }
            }
        }
        if let Some(dht) = self.dht.as_mut() {
            while let Some((to, data)) = dht.poll_transmit() {
                let socket = UdpSocket::Swarm;
                self.outputs
                    .push_back(Output::Transmit { socket, to, data });
            }
            while let Some(event) = dht.poll_event() {
                match event {
                    DhtEvent::Peer {
                        info_hash, addr, ..
                    } => {
                        if let Some(topic) = self.topic_by_hash.get(&info_hash) {
                            let peer = (topic.clone(), SocketAddr::V4(addr), PeerSource::Dht);
                            push_found(found, &mut self.found, peer);
                        }
                    }
                    DhtEvent::LookupDone { lookup, target, .. }
                    | DhtEvent::AnnounceDone {
                        lookup,
                        info_hash: target,
                        ..
                    } => {
                        if let Some(topic) = self.topic_by_hash.get(&target) {
                            first_rounds.push((topic.clone(), Some(lookup)));
                        }
                    }
                }
            }
        }
    }

    /// Acts on what the engines reported: first rounds done, then peers found.
    fn act_on_discovery(
        &mut self,
        now: Instant,
        found: &mut Vec<Found>,
        first_rounds: Vec<(Bytes, Option<LookupId>)>,
    ) {
        for (topic, lookup) in first_rounds {
            if let Some(state) = self.topics.get_mut(&topic) {
                match lookup {
                    None => state.first_mdns = false,
                    Some(id) if state.first_dht == Some(id) => state.first_dht = None,
                    Some(_) => continue,
                }
                self.report_joined_if_done(topic);
            }
        }
        for (topic, addr, source) in found.drain(..) {
            if self.topics.contains_key(&topic) {
                self.discovered(now, Some(topic), addr, source);
            }
        }
    }
}

/// The unicast dns-discovery client of a configuration, if it names servers. With uTP on it
/// shares the swarm socket and announces the port the servers see (Node's `impliedPort`).
pub(super) fn dns_client(config: &Config) -> Option<DnsClient> {
    if config.dns_servers.is_empty() {
        return None;
    }
    let mut dns = DnsClientConfig::new(config.dns_servers.clone(), config.seed);
    dns.hash = config.topic_hash.clone();
    dns.implied_port = config.utp;
    Some(DnsClient::new(dns))
}

/// A peer an engine found: its topic, address and source. A pump collects them before
/// acting on any (acting reenters the engines), in a vector the swarm keeps: joining a busy
/// topic finds peers in most pumps, and a fresh vector each time was the core's most
/// frequent allocation.
pub(super) type Found = (Bytes, SocketAddr, PeerSource);

/// Adds a found peer, the first one of a pump into the kept vector. Only then is the kept
/// vector touched: nearly every pump finds nothing, and at 10,000 simulated nodes reading
/// the field is a cache miss of its own.
fn push_found(found: &mut Vec<Found>, kept: &mut Vec<Found>, peer: Found) {
    if found.capacity() == 0 {
        *found = core::mem::take(kept);
    }
    found.push(peer);
}

/// The room for found peers kept between pumps; a burst beyond it gives its room back.
pub(super) const FOUND_KEPT: usize = 64;

/// Which engines [`Swarm::pump`] polls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pumped {
    All,
    MdnsOnly,
}
