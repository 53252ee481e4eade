//! The dns-discovery server engine (Node's `listen` mode, PROTOCOLS.md 3.3), sans-IO: answers
//! probes and lookups, applies announces, unannounces and subscriptions carried in TXT
//! records with a valid token, and pushes SRV records to subscribers of a name when a new
//! peer announces it.

use super::store::{Store, StoreConfig};
use super::{
    parse_port, query_id, split_name, Schedule, TxtData, DOMAIN, FLAGS_QUERY, FLAGS_RESPONSE,
    TOKEN_TICK,
};
use crate::mdns::limit::{Limiter, Rate};
use crate::mdns::txt;
use crate::mdns::wire::{self, Message, RData, Section, WireError, Writer, TYPE_TXT};
use crate::time::Instant;
use crate::{new_map, Map};
use bytes::Bytes;
use core::fmt;
use core::time::Duration;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

/// Subscribers pushed to per new announce (Node: 16).
pub const PUSH_FANOUT: usize = 16;
/// Peers listed in a lookup answer: what fits one TXT string (Node lists up to 100 and
/// corrupts the record beyond 31).
pub const MAX_LISTED: usize = txt::PEERS_PER_STRING;
/// Questions answered per query; the rest are echoed unanswered (Node's clients ask one).
const MAX_ANSWERED: usize = 4;
/// Datagrams waiting for the driver; beyond this, new ones are dropped and counted.
const MAX_TRANSMITS: usize = 4096;
/// How often expired peers are purged when the stores have a TTL.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// Settings of [`DnsServer`].
#[derive(Clone, Debug)]
pub struct DnsServerConfig {
    /// Seed of the secrets and of every random choice. 32 random bytes outside simulations.
    pub seed: [u8; 32],
    /// The authoritative domain (Node's `domain`).
    pub domain: String,
    /// Announced peers (Node: `limit` 10,000, no TTL).
    pub store: StoreConfig,
    /// Subscribers (Node: TTL 60 s).
    pub push: StoreConfig,
    /// Requests accepted per source IP: burst and per second (`per_sec` 0 = no limit).
    pub burst: u32,
    pub per_sec: u32,
    /// Pushes tracked for retransmission at once; beyond, a push is sent once.
    pub max_pending_pushes: usize,
}

impl DnsServerConfig {
    /// Node's defaults, and 256 requests burst / 64 per second per source IP.
    pub fn new(seed: [u8; 32]) -> Self {
        DnsServerConfig {
            seed,
            domain: DOMAIN.to_owned(),
            store: StoreConfig::default(),
            push: StoreConfig {
                ttl_secs: 60,
                ..StoreConfig::default()
            },
            burst: 256,
            per_sec: 64,
            max_pending_pushes: 4096,
        }
    }

    /// A deterministic configuration for tests and simulations.
    pub fn from_seed(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        Xoshiro256PlusPlus::seed_from_u64(seed).fill_bytes(&mut bytes);
        Self::new(bytes)
    }
}

/// Why (part of) a datagram was not served. Never sent to anyone; for logs, counters, tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Not IPv4 (dns-discovery stores IPv4 only).
    NotIpv4,
    /// The source is over its rate.
    RateLimited,
    /// The packet did not decode (truncated, bad or looping name, oversized name).
    Malformed(WireError),
    /// A TXT record carried no token, or one that is not the current or previous secret's
    /// for the source address (spoofed, or older than two rotations).
    InvalidToken,
    /// A TXT record's `announce`/`unannounce` is not a port.
    MalformedTxt,
    /// A response that answers no push of ours.
    UnexpectedResponse,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotIpv4 => f.write_str("not an IPv4 source"),
            RequestError::RateLimited => f.write_str("source over its rate limit"),
            RequestError::Malformed(e) => write!(f, "malformed DNS packet: {e:?}"),
            RequestError::InvalidToken => f.write_str("missing, spoofed or stale token"),
            RequestError::MalformedTxt => f.write_str("malformed TXT value"),
            RequestError::UnexpectedResponse => f.write_str("response to no query of ours"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsServerStats {
    pub requests: u64,
    pub responses_sent: u64,
    pub probes: u64,
    pub lookups: u64,
    pub announces: u64,
    pub unannounces: u64,
    pub pushes_sent: u64,
    pub push_resends: u64,
    pub pushes_failed: u64,
    pub rate_limited: u64,
    pub malformed: u64,
    pub invalid_tokens: u64,
    pub malformed_txt: u64,
    /// Datagrams or pushes dropped by a cap.
    pub dropped: u64,
}

struct PendingPush {
    to: SocketAddr,
    data: Bytes,
    sent: Instant,
    resent: usize,
    deadline: Instant,
}

/// What a question gets, decided before the records of the same query apply (Node answers
/// first).
enum Answer {
    Probe(usize),
    Peers(usize, Vec<SocketAddrV4>),
}

/// The server engine. Inputs: [`handle_datagram`](Self::handle_datagram),
/// [`handle_timeout`](Self::handle_timeout); outputs: [`poll_transmit`](Self::poll_transmit),
/// [`poll_timeout`](Self::poll_timeout).
pub struct DnsServer {
    config: DnsServerConfig,
    rng: Xoshiro256PlusPlus,
    /// `[previous, current]`.
    secrets: [[u8; 32]; 2],
    next_rotation: Instant,
    next_purge: Instant,
    domain_store: Store,
    push_store: Store,
    limiter: Option<Limiter>,
    pushes: Map<u16, PendingPush>,
    deadlines: BTreeSet<(Instant, u16)>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    writer: Writer,
    stats: DnsServerStats,
}

impl DnsServer {
    pub fn new(config: DnsServerConfig, now: Instant) -> Self {
        let mut rng = Xoshiro256PlusPlus::from_seed(config.seed);
        let mut secrets = [[0u8; 32]; 2];
        rng.fill_bytes(&mut secrets[0]);
        rng.fill_bytes(&mut secrets[1]);
        let map_seed = rng.next_u64();
        let limiter = (config.per_sec != 0).then(|| {
            let per_source = Rate {
                burst: config.burst,
                per_sec: config.per_sec,
            };
            let global = Rate {
                burst: u32::MAX / 2,
                per_sec: 1_000_000,
            };
            Limiter::new(map_seed, per_source, global)
        });
        DnsServer {
            secrets,
            next_rotation: now + TOKEN_TICK,
            next_purge: now + PURGE_EVERY,
            domain_store: Store::new(config.store, map_seed, now),
            push_store: Store::new(config.push, map_seed ^ 1, now),
            limiter,
            pushes: new_map(map_seed),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            writer: Writer::default(),
            stats: DnsServerStats::default(),
            rng,
            config,
        }
    }

    pub fn stats(&self) -> DnsServerStats {
        self.stats
    }

    /// Peers and names in the domain store.
    pub fn stored_peers(&self) -> usize {
        self.domain_store.len()
    }

    pub fn stored_names(&self) -> usize {
        self.domain_store.names()
    }

    pub fn subscribers(&self) -> usize {
        self.push_store.len()
    }

    /// Approximate heap bytes of both stores.
    pub fn store_bytes(&self) -> usize {
        self.domain_store.heap_bytes() + self.push_store.heap_bytes()
    }

    /// The token a client at `ip` gets now (for tests and tools).
    pub fn token_for(&self, ip: Ipv4Addr) -> String {
        txt::token(&self.secrets[1], ip)
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let push = self.deadlines.first().map(|(at, _)| *at);
        let purge = (self.config.store.ttl_secs != 0 || self.config.push.ttl_secs != 0)
            .then_some(self.next_purge);
        [Some(self.next_rotation), push, purge]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_rotation {
            // Tokens stay valid for one more tick (the previous secret is still accepted).
            self.secrets[0] = self.secrets[1];
            self.rng.fill_bytes(&mut self.secrets[1]);
            self.next_rotation = now + TOKEN_TICK;
            tracing::debug!("dns-discovery server secrets rotated");
        }
        if now >= self.next_purge {
            self.domain_store.purge(now);
            self.push_store.purge(now);
            self.next_purge = now + PURGE_EVERY;
        }
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(p) = self.pushes.get_mut(&id) else {
                continue;
            };
            if p.deadline != at {
                continue;
            }
            let (_, resend) = Schedule::Short.next(p.sent, p.resent);
            if resend {
                p.resent += 1;
                let (next, _) = Schedule::Short.next(p.sent, p.resent);
                p.deadline = next;
                let (to, data) = (p.to, p.data.clone());
                self.deadlines.insert((next, id));
                self.stats.push_resends += 1;
                self.push_transmit(to, data);
            } else {
                self.pushes.remove(&id);
                self.stats.pushes_failed += 1;
            }
        }
    }

    /// One datagram from a server socket. Every valid query gets one response (possibly with
    /// no answers), as Node's; the error says what was not served.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), RequestError> {
        let Some(ip) = ipv4_of(from.ip()) else {
            return Err(RequestError::NotIpv4);
        };
        if let Some(limiter) = self.limiter.as_mut() {
            if !limiter.allow(now, ip) {
                self.stats.rate_limited += 1;
                return Err(RequestError::RateLimited);
            }
        }
        let msg = match wire::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(RequestError::Malformed(e));
            }
        };
        if msg.is_response() {
            return self.on_push_answer(from, msg.id);
        }
        self.stats.requests += 1;
        let current = txt::token(&self.secrets[1], ip);
        let token_ok = self.token_in(&msg, ip, &current);
        let answers = self.plan_answers(now, &msg, token_ok);
        let result = self.apply_records(now, from, ip, &msg, &current);
        self.respond(from, ip, &msg, &answers, &current);
        result
    }

    /// Whether a TXT record of the query carries a valid token for `ip`.
    fn token_in(&self, msg: &Message<'_>, ip: Ipv4Addr, current: &str) -> bool {
        msg.records.iter().any(|r| match &r.data {
            RData::Txt(raw) if r.section != Section::Authority => TxtData::parse(raw)
                .token
                .is_some_and(|t| self.token_valid(t, ip, current)),
            _ => false,
        })
    }

    fn token_valid(&self, token: &[u8], ip: Ipv4Addr, current: &str) -> bool {
        token.len() == current.len()
            && (token == current.as_bytes() || token == txt::token(&self.secrets[0], ip).as_bytes())
    }

    fn plan_answers(&mut self, now: Instant, msg: &Message<'_>, token_ok: bool) -> Vec<Answer> {
        let mut answers = Vec::new();
        for (i, q) in msg.questions.iter().enumerate().take(MAX_ANSWERED) {
            if q.qtype != TYPE_TXT {
                continue;
            }
            let Some((id, domain)) = split_name(&q.name) else {
                continue;
            };
            if domain != self.config.domain.as_bytes() {
                continue;
            }
            if id.is_empty() {
                self.stats.probes += 1;
                answers.push(Answer::Probe(i));
                continue;
            }
            self.stats.lookups += 1;
            let mut peers = Vec::new();
            if token_ok {
                self.domain_store
                    .get(now, id, MAX_LISTED, &mut self.rng, &mut peers);
            }
            answers.push(Answer::Peers(i, peers));
        }
        answers
    }

    fn apply_records(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ip: Ipv4Addr,
        msg: &Message<'_>,
        current: &str,
    ) -> Result<(), RequestError> {
        let mut result = Ok(());
        for record in &msg.records {
            let RData::Txt(raw) = &record.data else {
                continue;
            };
            if record.section == Section::Authority {
                continue;
            }
            let Some((id, _)) = split_name(&record.name).filter(|(id, _)| !id.is_empty()) else {
                continue;
            };
            let data = TxtData::parse(raw);
            if !data.token.is_some_and(|t| self.token_valid(t, ip, current)) {
                self.stats.invalid_tokens += 1;
                result = result.and(Err(RequestError::InvalidToken));
                continue;
            }
            let announce = data.announce.map(parse_port).transpose();
            let unannounce = data.unannounce.map(parse_port).transpose();
            let (Ok(announce), Ok(unannounce)) = (announce, unannounce) else {
                self.stats.malformed_txt += 1;
                result = result.and(Err(RequestError::MalformedTxt));
                continue;
            };
            if let Some(port) = announce {
                self.stats.announces += 1;
                let port = if port == 0 { from.port() } else { port };
                let peer = SocketAddrV4::new(ip, port);
                if self.domain_store.add(now, id, peer) {
                    self.push(now, id, peer);
                }
            }
            if let Some(port) = unannounce {
                self.stats.unannounces += 1;
                let port = if port == 0 { from.port() } else { port };
                self.domain_store.remove(id, SocketAddrV4::new(ip, port));
            }
            let subscriber = SocketAddrV4::new(ip, from.port());
            if data.subscribe {
                self.push_store.add(now, id, subscriber);
            } else {
                self.push_store.remove(id, subscriber);
            }
        }
        result
    }

    fn respond(
        &mut self,
        to: SocketAddr,
        ip: Ipv4Addr,
        msg: &Message<'_>,
        answers: &[Answer],
        token: &str,
    ) {
        let an: usize = answers.len();
        let w = &mut self.writer;
        w.start_message(
            msg.id,
            FLAGS_RESPONSE,
            [msg.questions.len() as u16, an as u16, 0],
        );
        for q in &msg.questions {
            w.question(&q.name, q.qtype, q.qclass);
        }
        let t = format!("token={token}");
        for answer in answers {
            match answer {
                Answer::Probe(i) => {
                    let host = format!("host={ip}");
                    let port = format!("port={}", to.port());
                    let name = &msg.questions[*i].name;
                    w.txt(name, &[t.as_bytes(), host.as_bytes(), port.as_bytes()]);
                }
                Answer::Peers(i, peers) => {
                    let name = &msg.questions[*i].name;
                    if peers.is_empty() {
                        w.txt(name, &[t.as_bytes()]);
                    } else {
                        let p = txt::peers_string(peers);
                        w.txt(name, &[t.as_bytes(), p.as_bytes()]);
                    }
                }
            }
        }
        let packet = w.finish();
        self.stats.responses_sent += 1;
        self.push_transmit(to, packet);
    }

    /// SRV `<id>.<domain>` -> `peer` to up to 16 random subscribers of `id`, each resent on
    /// the short schedule until it answers.
    fn push(&mut self, now: Instant, id: &[u8], peer: SocketAddrV4) {
        let mut subs = Vec::new();
        self.push_store
            .get(now, id, PUSH_FANOUT, &mut self.rng, &mut subs);
        if subs.is_empty() {
            return;
        }
        let mut name = Vec::with_capacity(id.len() + 1 + self.config.domain.len());
        name.extend_from_slice(id);
        name.push(b'.');
        name.extend_from_slice(self.config.domain.as_bytes());
        for sub in subs {
            let qid = loop {
                let qid = query_id(&mut self.rng);
                if !self.pushes.contains_key(&qid) {
                    break qid;
                }
            };
            self.writer.start_message(qid, FLAGS_QUERY, [0, 0, 1]);
            self.writer.srv(&name, peer.port(), *peer.ip());
            let data = self.writer.finish();
            let to = SocketAddr::V4(sub);
            if self.pushes.len() < self.config.max_pending_pushes {
                let (deadline, _) = Schedule::Short.next(now, 0);
                self.pushes.insert(
                    qid,
                    PendingPush {
                        to,
                        data: data.clone(),
                        sent: now,
                        resent: 0,
                        deadline,
                    },
                );
                self.deadlines.insert((deadline, qid));
            }
            self.stats.pushes_sent += 1;
            self.push_transmit(to, data);
        }
    }

    fn on_push_answer(&mut self, from: SocketAddr, id: u16) -> Result<(), RequestError> {
        match self.pushes.get(&id) {
            Some(p) if p.to == from => {
                let p = self.pushes.remove(&id);
                if let Some(p) = p {
                    self.deadlines.remove(&(p.deadline, id));
                }
                Ok(())
            }
            _ => Err(RequestError::UnexpectedResponse),
        }
    }

    fn push_transmit(&mut self, to: SocketAddr, data: Bytes) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.dropped += 1;
            return;
        }
        self.transmits.push_back((to, data));
    }
}

pub(crate) fn ipv4_of(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}
