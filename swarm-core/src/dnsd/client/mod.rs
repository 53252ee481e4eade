//! The unicast dns-discovery client of a swarm (Node's `DNSDiscovery` with `servers`, minus
//! multicast, which `mdns` does), sans-IO.
//!
//! Per joined topic a round runs at once and then every 60-70 s: to every server, an announce
//! (`subscribe`, `token`, `announce=<port>`) or a lookup (`subscribe`, `token`). A server we
//! hold no token for is probed first (and on its secondary port if the primary fails); tokens
//! are refreshed from every answer and dropped when not refreshed across two 5-minute ticks.
//! `leave` sends `unannounce`. SRV pushes from a server become peers. [`DnsClient::start`]
//! also runs whoami.

use super::whoami::{Whoami, WhoamiResult};
use super::{
    parse_port, query_id, split_name, Schedule, TxtData, DOMAIN, FLAGS_QUERY, FLAGS_RESPONSE,
    TOKEN_TICK,
};
use crate::mdns::topic::{hex_id, KeyHash};
use crate::mdns::txt;
use crate::mdns::wire::{self, Message, RData, Section, Writer, TYPE_TXT};
use crate::time::Instant;
use crate::{new_map, Map};
use bytes::Bytes;
use core::time::Duration;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use super::server::ipv4_of;

mod receive;

const MAX_PENDING: usize = 4096;
const MAX_TRANSMITS: usize = 1024;
const MAX_EVENTS: usize = 1024;
/// Requests waiting for a server's token.
const MAX_WAITING: usize = 1024;
/// Peers taken from one datagram.
const MAX_PEERS_PER_DATAGRAM: usize = 128;

/// A configured server, resolved: where to send, and the port to try if a probe there fails
/// (which then becomes the port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    pub addr: SocketAddr,
    pub secondary: Option<u16>,
}

impl ServerAddr {
    pub fn new(addr: SocketAddr) -> Self {
        ServerAddr {
            addr,
            secondary: None,
        }
    }
}

/// Settings of [`DnsClient`].
#[derive(Clone, Debug)]
pub struct DnsClientConfig {
    pub servers: Vec<ServerAddr>,
    pub seed: u64,
    /// Topic to key (discovery-channel's `hash` option).
    pub hash: KeyHash,
    /// A fixed round interval (Node's `dns.interval`); `None` = uniform in [60 s, 70 s).
    pub interval: Option<Duration>,
    /// Announce the port the server sees (whoami's, else `announce=0`: the source port)
    /// instead of the given one, and wait for whoami before the first round. Node does this
    /// when the DNS socket is the uTP socket (`impliedPort`).
    pub implied_port: bool,
    pub domain: String,
}

impl DnsClientConfig {
    pub fn new(servers: Vec<ServerAddr>, seed: u64) -> Self {
        DnsClientConfig {
            servers,
            seed,
            hash: KeyHash::Sha1,
            interval: None,
            implied_port: false,
            domain: DOMAIN.to_owned(),
        }
    }
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsEvent {
    /// A server says `addr` announces `topic`.
    Peer { topic: Bytes, addr: SocketAddr },
    /// whoami finished.
    Whoami(WhoamiResult),
}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsClientStats {
    pub queries_sent: u64,
    pub resends: u64,
    /// Queries (probes included) that got no answer.
    pub failed: u64,
    pub responses: u64,
    pub pushes: u64,
    /// Datagrams on the socket that were not ours (unknown id or sender, undecodable).
    pub ignored: u64,
    /// Requests, datagrams or events dropped by a cap.
    pub dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lookup,
    Announce(u16),
    Unannounce(u16),
}

#[derive(Clone, Debug)]
struct Request {
    /// The topic whose peers the answer carries (None after `leave`).
    topic: Option<Bytes>,
    name: Arc<str>,
    kind: Kind,
}

#[derive(Debug)]
enum What {
    Probe { whoami: bool, secondary: bool },
    Send(Request),
}

#[derive(Debug)]
struct Pending {
    server: usize,
    to: SocketAddr,
    data: Bytes,
    sent: Instant,
    resent: usize,
    schedule: Schedule,
    deadline: Instant,
    what: What,
}

#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    secondary: Option<u16>,
    token: Option<String>,
    token_tick: u64,
    /// A token probe is in flight.
    probing: bool,
    waiting: Vec<Request>,
}

#[derive(Debug)]
struct Joined {
    name: Arc<str>,
    announce: Option<u16>,
    next_round: Instant,
}

/// The client. Inputs: [`start`](Self::start), [`join`](Self::join), [`leave`](Self::leave),
/// [`handle_datagram`](Self::handle_datagram), [`handle_timeout`](Self::handle_timeout).
/// Outputs: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
/// [`poll_timeout`](Self::poll_timeout).
pub struct DnsClient {
    config: DnsClientConfig,
    rng: Xoshiro256PlusPlus,
    servers: Vec<Server>,
    joined: Map<Bytes, Joined>,
    /// Id label (hex) -> topic.
    ids: Map<Arc<str>, Bytes>,
    pending: Map<u16, Pending>,
    deadlines: BTreeSet<(Instant, u16)>,
    started: bool,
    tick: u64,
    next_tick: Instant,
    whoami: Option<Whoami>,
    public: Option<SocketAddrV4>,
    /// Unannounces of left topics, sent at the next `handle_timeout`.
    unannounces: Vec<Request>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<DnsEvent>,
    writer: Writer,
    stats: DnsClientStats,
}

impl DnsClient {
    pub fn new(config: DnsClientConfig) -> Self {
        let seed = config.seed;
        let servers = config
            .servers
            .iter()
            .map(|s| Server {
                addr: s.addr,
                secondary: s.secondary,
                token: None,
                token_tick: 0,
                probing: false,
                waiting: Vec::new(),
            })
            .collect();
        DnsClient {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x646e_7364),
            servers,
            joined: new_map(seed),
            ids: new_map(seed),
            pending: new_map(seed),
            deadlines: BTreeSet::new(),
            started: false,
            tick: 1,
            next_tick: Instant::ZERO,
            whoami: None,
            public: None,
            unannounces: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            writer: Writer::default(),
            stats: DnsClientStats::default(),
            config,
        }
    }

    pub fn stats(&self) -> DnsClientStats {
        self.stats
    }

    /// Our public address as whoami found it (port 0: not confirmed).
    pub fn public_addr(&self) -> Option<SocketAddrV4> {
        self.public
    }

    /// Whether a token is held for each server, in configuration order.
    pub fn tokens(&self) -> impl Iterator<Item = bool> + '_ {
        self.servers.iter().map(|s| s.token.is_some())
    }

    /// Where each server is sent to now (the secondary port after a fallback).
    pub fn server_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.servers.iter().map(|s| s.addr)
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DnsEvent> {
        self.events.pop_front()
    }

    /// Whether a datagram or an event waits to be polled.
    pub fn has_output(&self) -> bool {
        !self.transmits.is_empty() || !self.events.is_empty()
    }

    fn rounds_blocked(&self) -> bool {
        !self.started
            || (self.config.implied_port && self.whoami.as_ref().is_some_and(|w| !w.is_done()))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.started {
            return None;
        }
        let pending = self.deadlines.first().map(|(at, _)| *at);
        let round = if self.rounds_blocked() {
            None
        } else {
            self.joined.values().map(|j| j.next_round).min()
        };
        let unannounce = (!self.unannounces.is_empty()).then_some(Instant::ZERO);
        [pending, round, Some(self.next_tick), unannounce]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts rounds and the token tick, and runs whoami (when servers are configured).
    pub fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        self.next_tick = now + TOKEN_TICK;
        if !self.servers.is_empty() {
            self.whoami = Some(Whoami::new(self.servers.len()));
            for i in 0..self.servers.len() {
                self.probe(now, i, true, false);
            }
        }
        self.handle_timeout(now);
    }

    /// Joins `topic`; its first round is due at once (once started). Rejoining updates
    /// `announce`/`port` and keeps the schedule. False if the topic has no key.
    pub fn join(&mut self, now: Instant, topic: Bytes, announce: bool, port: u16) -> bool {
        let announce = announce.then_some(port);
        if let Some(j) = self.joined.get_mut(&topic) {
            j.announce = announce;
            return true;
        }
        let Some(key) = self.config.hash.key(&topic) else {
            return false;
        };
        let id: Arc<str> = Arc::from(hex_id(&key));
        let name: Arc<str> = Arc::from(format!("{id}.{}", self.config.domain));
        self.ids.insert(id, topic.clone());
        let joined = Joined {
            name,
            announce,
            next_round: now,
        };
        self.joined.insert(topic, joined);
        if self.started {
            self.handle_timeout(now);
        }
        true
    }

    /// Leaves `topic`: no more rounds; an announced topic is unannounced at every server, at
    /// the next [`handle_timeout`](Self::handle_timeout) (due at once: `poll_timeout` says so).
    pub fn leave(&mut self, topic: &[u8]) -> bool {
        let Some(j) = self.joined.remove(topic) else {
            return false;
        };
        self.ids.retain(|_, t| t.as_ref() != topic);
        if let (Some(port), true) = (j.announce, self.started) {
            let port = self.announce_port(port);
            if self.unannounces.len() < MAX_WAITING {
                self.unannounces.push(Request {
                    topic: None,
                    name: j.name,
                    kind: Kind::Unannounce(port),
                });
            } else {
                self.stats.dropped += 1;
            }
        }
        true
    }

    /// Node's `publicPort || (impliedPort ? 0 : port)`.
    fn announce_port(&self, port: u16) -> u16 {
        if self.config.implied_port {
            self.public.map_or(0, |p| p.port())
        } else {
            port
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.started {
            return;
        }
        if now >= self.next_tick {
            for s in &mut self.servers {
                if s.token_tick < self.tick {
                    s.token = None;
                    s.token_tick = 0;
                }
            }
            self.tick += 1;
            self.next_tick = now + TOKEN_TICK;
        }
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            self.on_deadline(now, id, at);
        }
        for request in std::mem::take(&mut self.unannounces) {
            for i in 0..self.servers.len() {
                self.send(now, i, request.clone());
            }
        }
        if !self.rounds_blocked() {
            self.run_rounds(now);
        }
    }

    fn run_rounds(&mut self, now: Instant) {
        let due: Vec<Bytes> = self
            .joined
            .iter()
            .filter(|(_, j)| j.next_round <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for topic in due {
            let interval = self
                .config
                .interval
                .unwrap_or_else(|| Duration::from_millis(60_000 + self.rng.next_u64() % 10_000));
            let Some(j) = self.joined.get_mut(&topic) else {
                continue;
            };
            j.next_round = now + interval;
            let kind = match j.announce {
                Some(port) => Kind::Announce(port),
                None => Kind::Lookup,
            };
            let name = j.name.clone();
            let kind = match kind {
                Kind::Announce(port) => Kind::Announce(self.announce_port(port)),
                other => other,
            };
            for i in 0..self.servers.len() {
                let request = Request {
                    topic: Some(topic.clone()),
                    name: name.clone(),
                    kind,
                };
                self.send(now, i, request);
            }
        }
    }

    /// Sends `request` to server `i` now if we hold its token, else after a probe.
    fn send(&mut self, now: Instant, i: usize, request: Request) {
        let Some(token) = self.servers[i].token.clone() else {
            let s = &mut self.servers[i];
            if s.waiting.len() >= MAX_WAITING {
                self.stats.dropped += 1;
            } else {
                s.waiting.push(request);
            }
            if !self.servers[i].probing {
                self.probe(now, i, false, false);
            }
            return;
        };
        let name = request.name.as_bytes();
        let t = format!("token={token}").into_bytes();
        let sub = b"subscribe=true".to_vec();
        // Key order as Node's encodeTxt writes them.
        let strings: Vec<Vec<u8>> = match request.kind {
            Kind::Lookup => vec![sub, t],
            Kind::Announce(port) => vec![sub, t, format!("announce={port}").into_bytes()],
            Kind::Unannounce(port) => vec![t, format!("unannounce={port}").into_bytes()],
        };
        let refs: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
        let Some(id) = self.free_id() else {
            self.stats.dropped += 1;
            return;
        };
        self.writer.start_message(id, FLAGS_QUERY, [1, 0, 1]);
        self.writer.question(name, TYPE_TXT, wire::CLASS_IN);
        self.writer.txt(name, &refs);
        let data = self.writer.finish();
        let to = self.servers[i].addr;
        self.track(now, id, i, to, data, Schedule::Default, What::Send(request));
    }

    /// Probes server `i` (a TXT question for the bare domain) on its port, or its secondary.
    fn probe(&mut self, now: Instant, i: usize, whoami: bool, secondary: bool) {
        let s = &mut self.servers[i];
        let to = match (secondary, s.secondary) {
            (true, Some(port)) => SocketAddr::new(s.addr.ip(), port),
            _ => s.addr,
        };
        if !whoami {
            s.probing = true;
        }
        let Some(id) = self.free_id() else {
            self.stats.dropped += 1;
            self.probe_failed(now, i, whoami);
            return;
        };
        self.writer.start_message(id, FLAGS_QUERY, [1, 0, 0]);
        self.writer
            .question(self.config.domain.as_bytes(), TYPE_TXT, wire::CLASS_IN);
        let data = self.writer.finish();
        let schedule = if whoami {
            Schedule::Short
        } else {
            Schedule::Default
        };
        let what = What::Probe { whoami, secondary };
        self.track(now, id, i, to, data, schedule, what);
    }

    fn free_id(&mut self) -> Option<u16> {
        if self.pending.len() >= MAX_PENDING {
            return None;
        }
        loop {
            let id = query_id(&mut self.rng);
            if !self.pending.contains_key(&id) {
                return Some(id);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        now: Instant,
        id: u16,
        server: usize,
        to: SocketAddr,
        data: Bytes,
        schedule: Schedule,
        what: What,
    ) {
        let (deadline, _) = schedule.next(now, 0);
        self.deadlines.insert((deadline, id));
        self.push_transmit(to, data.clone());
        self.stats.queries_sent += 1;
        let pending = Pending {
            server,
            to,
            data,
            sent: now,
            resent: 0,
            schedule,
            deadline,
            what,
        };
        self.pending.insert(id, pending);
    }

    fn on_deadline(&mut self, now: Instant, id: u16, at: Instant) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        if p.deadline != at {
            return;
        }
        let (_, resend) = p.schedule.next(p.sent, p.resent);
        if resend {
            p.resent += 1;
            let (next, _) = p.schedule.next(p.sent, p.resent);
            p.deadline = next;
            let (to, data) = (p.to, p.data.clone());
            self.deadlines.insert((next, id));
            self.stats.resends += 1;
            self.push_transmit(to, data);
            return;
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.stats.failed += 1;
        match p.what {
            What::Probe { whoami, secondary } => {
                if !secondary && self.servers[p.server].secondary.is_some() {
                    tracing::debug!(server = %p.to, "dns-discovery probe failed; trying the secondary port");
                    self.probe(now, p.server, whoami, true);
                } else {
                    tracing::debug!(server = %p.to, "dns-discovery probe failed");
                    self.probe_failed(now, p.server, whoami);
                }
            }
            What::Send(_) => tracing::debug!(server = %p.to, "dns-discovery query failed"),
        }
    }

    fn probe_failed(&mut self, _now: Instant, i: usize, whoami: bool) {
        if whoami {
            let ip = ipv4_of(self.servers[i].addr.ip()).unwrap_or(Ipv4Addr::UNSPECIFIED);
            self.whoami_step(ip, None);
        } else {
            let s = &mut self.servers[i];
            s.probing = false;
            self.stats.dropped += s.waiting.len() as u64;
            s.waiting.clear();
        }
    }

    fn whoami_step(&mut self, server: Ipv4Addr, seen: Option<SocketAddrV4>) {
        let Some(result) = self.whoami.as_mut().and_then(|w| w.on_probe(server, seen)) else {
            return;
        };
        if let WhoamiResult::Found(me) = result {
            self.public = Some(me);
        }
        tracing::debug!(?result, "dns-discovery whoami");
        self.push_event(DnsEvent::Whoami(result));
    }

    fn push_transmit(&mut self, to: SocketAddr, data: Bytes) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.dropped += 1;
            return;
        }
        self.transmits.push_back((to, data));
    }

    fn push_event(&mut self, event: DnsEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.dropped += 1;
            return;
        }
        self.events.push_back(event);
    }
}

impl core::fmt::Debug for DnsClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DnsClient")
            .field("servers", &self.servers.len())
            .field("topics", &self.joined.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}
