//! [`DhtNode`]: a sans-IO Mainline DHT node, requester and responder.

use super::krpc::{self, Body, Query, Response};
use super::lookup::{Kind, Lookup, Step};
use super::routing::{Insert, NodeState, RoutingTable, Seen, K};
use super::tokens::{PeerStore, StoreLimits, Tokens};
use super::NodeId;
use crate::peer::normalize_addr;
use crate::time::Instant;
use crate::{new_map, Map};
use bytes::Bytes;
use core::time::Duration;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

/// Bootstrap nodes kept at most (a handful of routers is the norm).
pub const MAX_BOOTSTRAP: usize = 32;

/// Configuration of a [`DhtNode`]. Nothing here reaches the network by default: the
/// bootstrap list is empty unless the caller fills it.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Our node id (random from the seed by default).
    pub id: NodeId,
    /// Seeds every random choice (transaction ids, token secrets, map order).
    pub seed: u64,
    /// Nodes to ask when the routing table is short of contacts.
    pub bootstrap: Vec<SocketAddr>,
    /// Queries in flight per lookup. BEP 5 / Kademlia suggest 3; Node uses 16. 4 converges
    /// in as few rounds on small networks and sends fewer wasted queries on large ones.
    pub alpha: usize,
    /// Queries in flight for the whole node; lookups wait for a slot beyond it.
    pub max_in_flight: usize,
    /// A query unanswered after this fails (never retransmitted).
    pub query_timeout: Duration,
    /// Queries accepted per second from one IP, and the burst allowed above that rate.
    pub queries_per_sec: u32,
    pub query_burst: u32,
    /// IPs tracked by the rate limiter; beyond it, queries from new IPs are dropped until
    /// idle entries are swept.
    pub max_rate_sources: usize,
    /// Routing-table contacts per IP address.
    pub max_contacts_per_ip: u16,
    /// Peers returned in one `get_peers` reply (keeps it under ~500 bytes).
    pub max_values: usize,
    pub store: StoreLimits,
    /// Contacts saved from an earlier run ([`DhtNode::contacts`]), put in the routing table
    /// as questionable at start: the first lookups then need no bootstrap node, and those
    /// that stopped answering age out like any other contact. At most [`MAX_RESTORED`].
    pub contacts: Vec<(NodeId, SocketAddrV4)>,
}

impl DhtConfig {
    /// Defaults with an id drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x6468_7420_6964);
        let mut id = [0u8; 20];
        rng.fill_bytes(&mut id);
        DhtConfig {
            id: NodeId(id),
            seed,
            bootstrap: Vec::new(),
            alpha: 4,
            max_in_flight: 64,
            query_timeout: Duration::from_secs(2),
            queries_per_sec: 20,
            query_burst: 50,
            max_rate_sources: 4096,
            max_contacts_per_ip: 4,
            max_values: 50,
            store: StoreLimits::default(),
            contacts: Vec::new(),
        }
    }
}

/// Handle of a lookup or announce started on a [`DhtNode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What a [`DhtNode`] tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhtEvent {
    /// A peer for `info_hash`, found by a `get_peers` lookup or announce (each reported once
    /// per lookup).
    Peer {
        lookup: LookupId,
        info_hash: NodeId,
        addr: SocketAddrV4,
    },
    /// A `find_node` or `get_peers` lookup finished; `responded` nodes answered.
    LookupDone {
        lookup: LookupId,
        target: NodeId,
        responded: usize,
    },
    /// An announce finished: `acked` of the closest token holders stored us (0: failed).
    AnnounceDone {
        lookup: LookupId,
        info_hash: NodeId,
        acked: usize,
    },
}

#[derive(Clone, Copy, Debug)]
enum Purpose {
    Lookup(u64),
    Announce(u64),
    /// Ping-before-evict probe of a questionable contact.
    Probe,
    /// A node that only queried us was added: one ping makes it good (and so handed out to
    /// others) or shows it unreachable, as libtorrent does for nodes it hears about.
    Verify,
}

#[derive(Clone, Debug)]
struct Pending {
    addr: SocketAddr,
    node: Option<NodeId>,
    deadline: Instant,
    purpose: Purpose,
}

/// Lookups (announces included) running at once; one started beyond it ends at once, as
/// failed. Bounds memory, and keeps in-flight queries (at most 8 announces per lookup plus
/// the lookup and probe slots) far below the 65,535 transaction ids.
pub const MAX_LOOKUPS: usize = 1024;
/// Housekeeping (peer expiry, rate-table sweep) runs this often.
const MAINTENANCE: Duration = Duration::from_secs(60);
/// First delay before bootstrapping again when a lookup leaves the table short of K
/// contacts; it doubles up to [`REBOOTSTRAP_MAX`], so an unreachable network is not hammered.
const REBOOTSTRAP_MIN: Duration = Duration::from_secs(15);
const REBOOTSTRAP_MAX: Duration = Duration::from_secs(5 * 60);
/// Verification pings of nodes that queried us: rate and burst (see `DhtNode::heard_from`).
const VERIFY_PER_SEC: u64 = 10;
const VERIFY_BURST: u32 = 20;
/// Saved contacts taken back at start: more than a full table's worth near our id would only
/// be dropped by the per-bucket limit.
pub const MAX_RESTORED: usize = 1024;

/// A sans-IO Mainline DHT node (BEP 5).
///
/// Drive it like the swarm: pass every UDP datagram to [`DhtNode::handle_datagram`], call
/// [`DhtNode::handle_timeout`] when [`DhtNode::poll_timeout`] is reached, and after each call
/// drain [`DhtNode::poll_transmit`] (datagrams to send) and [`DhtNode::poll_event`].
#[repr(C)]
pub struct DhtNode {
    // What `poll_timeout` reads after every input of the swarm first (see `Swarm`'s layout);
    // `rebootstrap_at`'s tag is the largest niche, where `Option<DhtNode>` keeps its own.
    rebootstrap_at: Option<Instant>,
    next_maintenance: Instant,
    deadlines: crate::deadlines::Deadlines<u16>,
    tokens: Tokens,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<DhtEvent>,
    config: DhtConfig,
    rng: Xoshiro256PlusPlus,
    table: RoutingTable,
    store: PeerStore,
    /// Per-IP "theoretical arrival time" of the GCRA rate limiter.
    rate: Map<IpAddr, Instant>,
    next_t: u16,
    pending: Map<u16, Pending>,
    lookups: BTreeMap<u64, Lookup>,
    next_lookup: u64,
    rebootstrap_delay: Duration,
    verify_tat: Instant,
    buf: Vec<u8>,
}

impl DhtNode {
    pub fn new(config: DhtConfig, now: Instant) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let tokens = Tokens::new(now, &mut rng);
        let seed = config.seed;
        let mut table = RoutingTable::new(config.id, seed, config.max_contacts_per_ip);
        for (id, addr) in config.contacts.iter().take(MAX_RESTORED) {
            // Never answered us in this run: questionable until it does.
            table.heard_from(now, *id, *addr, Seen::Query);
        }
        DhtNode {
            table,
            store: PeerStore::new(config.store, seed),
            tokens,
            next_t: rng.next_u32() as u16,
            rng,
            rate: new_map(seed),
            pending: new_map(seed),
            deadlines: Default::default(),
            lookups: BTreeMap::new(),
            next_lookup: 0,
            next_maintenance: now + MAINTENANCE,
            rebootstrap_at: None,
            rebootstrap_delay: REBOOTSTRAP_MIN,
            verify_tat: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            buf: Vec::with_capacity(512),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The routing table (read-only).
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Contacts worth keeping for the next run (see [`DhtConfig::contacts`]): every one that
    /// is not bad, those that answered us recently first.
    pub fn contacts(&self, now: Instant) -> Vec<(NodeId, SocketAddrV4)> {
        let mut all: Vec<_> = self
            .table
            .iter()
            .map(|c| (c.state(now), c))
            .filter(|(state, _)| *state != NodeState::Bad)
            .collect();
        all.sort_by_key(|(state, _)| *state != NodeState::Good);
        all.into_iter().map(|(_, c)| (c.id, c.addr)).collect()
    }

    /// Peers held for others.
    pub fn stored_peers(&self) -> usize {
        self.store.len()
    }

    /// Queries we are waiting on.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Starts a `find_node` lookup of our own id: fills the routing table, from the
    /// bootstrap list when it is empty.
    pub fn bootstrap(&mut self, now: Instant) -> LookupId {
        self.start(now, self.config.id, Kind::FindNode, false)
    }

    /// Adds bootstrap nodes learnt after start (e.g. router names the driver resolved later)
    /// and bootstraps through them. At most [`MAX_BOOTSTRAP`] are kept.
    pub fn add_bootstrap(
        &mut self,
        now: Instant,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> LookupId {
        for addr in addrs {
            let addr = normalize_addr(addr);
            if self.config.bootstrap.len() < MAX_BOOTSTRAP && !self.config.bootstrap.contains(&addr)
            {
                self.config.bootstrap.push(addr);
            }
        }
        self.bootstrap(now)
    }

    /// Starts a `find_node` lookup of `target`.
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> LookupId {
        self.start(now, target, Kind::FindNode, false)
    }

    /// Starts a `get_peers` lookup; peers come as [`DhtEvent::Peer`], then `LookupDone`.
    pub fn get_peers(&mut self, now: Instant, info_hash: NodeId) -> LookupId {
        self.start(now, info_hash, Kind::GetPeers, false)
    }

    /// Looks `info_hash` up, then announces `port` (or, with `implied_port` or port 0, the
    /// source port of our datagrams) to the K closest nodes that gave us a token.
    pub fn announce(
        &mut self,
        now: Instant,
        info_hash: NodeId,
        port: u16,
        implied_port: bool,
    ) -> LookupId {
        let implied_port = implied_port || port == 0;
        self.start(now, info_hash, Kind::Announce { port, implied_port }, false)
    }

    fn start(&mut self, now: Instant, target: NodeId, kind: Kind, quiet: bool) -> LookupId {
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let mut lookup = Lookup::new(target, kind);
        lookup.quiet = quiet;
        if self.lookups.len() >= MAX_LOOKUPS {
            // Ends at once with nobody asked.
            self.lookups.insert(lid, lookup);
            self.finish(now, lid);
            return LookupId(lid);
        }
        let own = self.config.id;
        let known = self
            .table
            .closest(now, &target, super::lookup::MAX_CANDIDATES);
        for c in &known {
            lookup.add(&own, c.id, c.addr);
        }
        if known.len() < K {
            lookup.bootstrap = self
                .config
                .bootstrap
                .iter()
                .rev()
                .map(|a| normalize_addr(*a))
                .collect();
        }
        if kind != Kind::FindNode {
            // Peers announced to us count too (Node reports them first).
            for addr in self.store.peers(now, &target, usize::MAX, 0) {
                lookup.peers_seen.push(addr);
                self.events.push_back(DhtEvent::Peer {
                    lookup: LookupId(lid),
                    info_hash: target,
                    addr,
                });
            }
        }
        self.lookups.insert(lid, lookup);
        self.advance(now, lid);
        LookupId(lid)
    }

    /// Next datagram to send. New ones appear after any `handle_*` call or command.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    /// Next event. New ones appear after any `handle_*` call or command.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// Whether a datagram or an event waits to be polled.
    pub fn has_output(&self) -> bool {
        !self.transmits.is_empty() || !self.events.is_empty()
    }

    /// When [`DhtNode::handle_timeout`] next has work: a query deadline, token rotation or
    /// housekeeping. Changes after any `handle_*` call or command.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.tokens.next_rotation().min(self.next_maintenance);
        if let Some(d) = self.deadlines.first_at() {
            t = t.min(d);
        }
        if let Some(r) = self.rebootstrap_at {
            t = t.min(r);
        }
        Some(t)
    }

    /// See [`Swarm::datagram_hints`](crate::Swarm::datagram_hints): the fields
    /// [`poll_timeout`](Self::poll_timeout) reads.
    pub(crate) fn timer_hints(&self, line: &mut impl FnMut(*const u8)) {
        crate::lines_between(self, &self.transmits, line);
    }

    /// Expires queries, rotates token secrets and runs housekeeping due by `now`; calling it
    /// early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, t)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(p) = self.pending.remove(&t) {
                self.resolve(now, p, None, false);
            }
        }
        self.tokens.rotate(now, &mut self.rng);
        if self.rebootstrap_at.is_some_and(|t| t <= now) {
            self.rebootstrap_at = None;
            if self.table.len() < K {
                // Quiet: the application did not ask for this one.
                self.start(now, self.config.id, Kind::FindNode, true);
            }
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE;
            self.store.expire(now);
            self.rate.retain(|_, tat| *tat > now);
            self.refresh_buckets(now);
        }
    }

    /// BEP 5 bucket refresh: a quiet `find_node` of a random id in each bucket unchanged for
    /// 15 minutes, a few per housekeeping round so they do not all go out at once.
    fn refresh_buckets(&mut self, now: Instant) {
        if self.table.is_empty() {
            return;
        }
        for i in self.table.take_stale(now, 4) {
            let mut random = [0u8; 20];
            self.rng.fill_bytes(&mut random);
            let target = self.table.random_id_in(i, random);
            self.start(now, target, Kind::FindNode, true);
        }
    }

    /// After a lookup of our own id (joining, or bootstrapping again): Kademlia's join step
    /// of refreshing every bucket farther than our closest neighbours, here those short of
    /// K contacts. The self-lookup alone leaves far buckets with one or two contacts met on
    /// the way in, and lookups through such thin tables stall in the wrong region.
    fn fill_buckets(&mut self, now: Instant) {
        if self.table.is_empty() {
            return;
        }
        for i in self.table.short_buckets() {
            let mut random = [0u8; 20];
            self.rng.fill_bytes(&mut random);
            let target = self.table.random_id_in(i, random);
            self.start(now, target, Kind::FindNode, true);
        }
    }

    /// Handles one UDP datagram from `from`. Malformed or unsolicited input is dropped
    /// (queries that are recognisably queries get a 203/204 error). Returns whether it was
    /// KRPC at all (a bencoded dictionary): a datagram that was not may be another
    /// protocol's on a shared port, and was left alone.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        let from = normalize_addr(from);
        let msg = match krpc::parse(data) {
            Ok(msg) => msg,
            Err(e) => {
                if !e.is_dict() {
                    return false;
                }
                if let (Some(code), Some(t)) = (e.reply_code(), e.query_t) {
                    if self.allow(now, from.ip()) {
                        let message: &[u8] = if code == krpc::ERROR_METHOD_UNKNOWN {
                            b"Method Unknown"
                        } else {
                            b"Protocol Error"
                        };
                        self.send_error(from, t, code, message);
                    }
                }
                return true;
            }
        };
        match msg.body {
            Body::Query {
                id,
                read_only,
                query,
            } => self.handle_query(now, from, msg.t, id, read_only, query),
            Body::Response(r) => self.handle_reply(now, from, msg.t, Some(r)),
            // An error reply gives the lookup nothing, but the node is alive.
            Body::Error { .. } => self.handle_reply(now, from, msg.t, None),
        }
        true
    }

    /// GCRA: each query pushes the IP's theoretical arrival time one interval later; more
    /// than `burst` intervals ahead of now is over the limit.
    fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let interval =
            Duration::from_micros(1_000_000 / u64::from(self.config.queries_per_sec.max(1)));
        let tolerance = interval * self.config.query_burst;
        if !self.rate.contains_key(&ip) && self.rate.len() >= self.config.max_rate_sources {
            self.rate.retain(|_, tat| *tat > now);
            if self.rate.len() >= self.config.max_rate_sources {
                return false;
            }
        }
        let tat = self.rate.entry(ip).or_insert(now);
        let start = (*tat).max(now);
        if start - now > tolerance {
            return false;
        }
        *tat = start + interval;
        true
    }

    fn handle_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        t: &[u8],
        id: NodeId,
        read_only: bool,
        query: Query<'_>,
    ) {
        if id == self.config.id || from.port() == 0 || !self.allow(now, from.ip()) {
            return;
        }
        if let (false, SocketAddr::V4(v4)) = (read_only, from) {
            self.heard_from(now, id, v4, Seen::Query);
        }
        let own = self.config.id;
        self.buf.clear();
        match query {
            Query::Ping => krpc::emit_response(&mut self.buf, t, &own, None, None, &[]),
            Query::FindNode { target } => {
                let nodes = self.compact_closest(now, &target);
                krpc::emit_response(&mut self.buf, t, &own, Some(&nodes), None, &[]);
            }
            Query::GetPeers { info_hash } => {
                let token = self.tokens.token(from.ip());
                let offset = self.rng.next_u32() as usize;
                let values = self
                    .store
                    .peers(now, &info_hash, self.config.max_values, offset);
                let nodes = if values.is_empty() {
                    Some(self.compact_closest(now, &info_hash))
                } else {
                    None
                };
                krpc::emit_response(
                    &mut self.buf,
                    t,
                    &own,
                    nodes.as_deref(),
                    Some(&token),
                    &values,
                );
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.validate(from.ip(), token) {
                    return self.send_error(from, t, krpc::ERROR_PROTOCOL, b"bad token");
                }
                let port = if implied_port {
                    Some(i64::from(from.port()))
                } else {
                    port
                };
                let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0)
                else {
                    return self.send_error(from, t, krpc::ERROR_PROTOCOL, b"invalid port");
                };
                // Only IPv4 peers can be served as 6-byte values.
                if let IpAddr::V4(ip) = from.ip() {
                    if !self
                        .store
                        .announce(now, info_hash, SocketAddrV4::new(ip, port))
                    {
                        return self.send_error(from, t, krpc::ERROR_SERVER, b"peer store full");
                    }
                }
                krpc::emit_response(&mut self.buf, t, &own, None, None, &[]);
            }
        }
        self.transmits
            .push_back((from, Bytes::copy_from_slice(&self.buf)));
    }

    fn compact_closest(&self, now: Instant, target: &NodeId) -> Vec<u8> {
        let mut out = Vec::with_capacity(K * krpc::COMPACT_NODE_LEN);
        self.table.each_closest_good(now, target, K, |c| {
            krpc::push_compact_node(&mut out, &c.id, c.addr);
        });
        out
    }

    fn send_error(&mut self, to: SocketAddr, t: &[u8], code: i64, message: &[u8]) {
        self.buf.clear();
        krpc::emit_error(&mut self.buf, t, code, message);
        self.transmits
            .push_back((to, Bytes::copy_from_slice(&self.buf)));
    }

    fn heard_from(&mut self, now: Instant, id: NodeId, addr: SocketAddrV4, seen: Seen) {
        match self.table.heard_from(now, id, addr, seen) {
            Insert::Ping(victim, victim_addr) => self.send_query(
                now,
                SocketAddr::V4(victim_addr),
                Some(victim),
                Purpose::Probe,
                &Query::Ping,
            ),
            Insert::Added if seen == Seen::Query && self.verify_allowed(now) => self.send_query(
                now,
                SocketAddr::V4(addr),
                Some(id),
                Purpose::Verify,
                &Query::Ping,
            ),
            _ => {}
        }
    }

    /// Verification pings go out at most [`VERIFY_PER_SEC`] a second (burst
    /// [`VERIFY_BURST`]): queries from spoofed addresses cannot turn us into a ping cannon.
    fn verify_allowed(&mut self, now: Instant) -> bool {
        let interval = Duration::from_micros(1_000_000 / VERIFY_PER_SEC);
        let start = self.verify_tat.max(now);
        if start - now > interval * VERIFY_BURST {
            return false;
        }
        self.verify_tat = start + interval;
        true
    }

    /// A response (`Some`) or error (`None`) with transaction id `t` from `from`. Only
    /// replies matching a query we sent to that exact address are used.
    fn handle_reply(&mut self, now: Instant, from: SocketAddr, t: &[u8], r: Option<Response<'_>>) {
        let Ok(key) = <[u8; 2]>::try_from(t).map(u16::from_be_bytes) else {
            return;
        };
        if !self.pending.get(&key).is_some_and(|p| p.addr == from) {
            return;
        }
        let p = self.pending.remove(&key).expect("checked above");
        self.deadlines.remove(&(p.deadline, key));
        // A reply from an unexpected id counts as a failure, as in Node: the contact we
        // meant is no longer at that address.
        let alive = r.is_none();
        let r = r.filter(|r| p.node.map_or(true, |id| id == r.id) && r.id != self.config.id);
        self.resolve(now, p, r.as_ref(), alive);
    }

    /// Ends a query: answered (`r`), refused with an error (`alive`), or lost.
    fn resolve(&mut self, now: Instant, p: Pending, r: Option<&Response<'_>>, alive: bool) {
        match (r, p.node) {
            (Some(r), _) => {
                if let SocketAddr::V4(v4) = p.addr {
                    self.heard_from(now, r.id, v4, Seen::Response);
                }
                if matches!(p.purpose, Purpose::Probe) {
                    self.table.ping_answered(&r.id);
                }
            }
            (None, Some(id)) if alive => {
                if matches!(p.purpose, Purpose::Probe) {
                    self.table.ping_answered(&id);
                }
            }
            (None, Some(id)) if matches!(p.purpose, Purpose::Probe) => {
                self.table.ping_failed(now, &id)
            }
            (None, Some(id)) => self.table.failed(now, &id),
            (None, None) => {}
        }
        match p.purpose {
            Purpose::Probe | Purpose::Verify => {}
            Purpose::Lookup(lid) => {
                let own = self.config.id;
                let Some(lookup) = self.lookups.get_mut(&lid) else {
                    return;
                };
                lookup.finished(&own, p.addr, r.map(|r| (r.id, r.token)));
                if let Some(r) = r {
                    for (id, addr) in krpc::compact_nodes(r.nodes) {
                        lookup.add(&own, id, addr);
                    }
                    if lookup.kind != Kind::FindNode {
                        for &addr in &r.values {
                            if addr.port() != 0
                                && !lookup.peers_seen.contains(&addr)
                                && lookup.peers_seen.len() < 4096
                            {
                                lookup.peers_seen.push(addr);
                                self.events.push_back(DhtEvent::Peer {
                                    lookup: LookupId(lid),
                                    info_hash: lookup.target,
                                    addr,
                                });
                            }
                        }
                    }
                }
                self.advance(now, lid);
            }
            Purpose::Announce(lid) => {
                let Some(lookup) = self.lookups.get_mut(&lid) else {
                    return;
                };
                if let Some((outstanding, acked)) = &mut lookup.announcing {
                    *outstanding -= 1;
                    *acked += usize::from(r.is_some());
                    if *outstanding == 0 {
                        let acked = *acked;
                        let info_hash = lookup.target;
                        self.lookups.remove(&lid);
                        self.events.push_back(DhtEvent::AnnounceDone {
                            lookup: LookupId(lid),
                            info_hash,
                            acked,
                        });
                    }
                }
            }
        }
        // A freed slot may let other lookups go on.
        if self.pending.len() + 1 == self.config.max_in_flight {
            let waiting: Vec<u64> = self.lookups.keys().copied().collect();
            for lid in waiting {
                self.advance(now, lid);
            }
        }
    }

    /// Sends the lookup's next queries; finishes it when done.
    fn advance(&mut self, now: Instant, lid: u64) {
        loop {
            let Some(lookup) = self.lookups.get_mut(&lid) else {
                return;
            };
            if lookup.announcing.is_some() {
                return;
            }
            if lookup.in_flight >= self.config.alpha.max(1)
                || self.pending.len() >= self.config.max_in_flight
            {
                return;
            }
            match lookup.next() {
                Step::Query(addr, node) => {
                    let target = lookup.target;
                    let query = match lookup.kind {
                        Kind::FindNode => Query::FindNode { target },
                        _ => Query::GetPeers { info_hash: target },
                    };
                    self.send_query(now, addr, node, Purpose::Lookup(lid), &query);
                }
                Step::Wait => return,
                Step::Done => return self.finish(now, lid),
            }
        }
    }

    fn finish(&mut self, now: Instant, lid: u64) {
        let Some(lookup) = self.lookups.get_mut(&lid) else {
            return;
        };
        let (target, responded) = (lookup.target, lookup.responded);
        if self.table.len() >= K {
            self.rebootstrap_delay = REBOOTSTRAP_MIN;
        } else if self.rebootstrap_at.is_none() && !self.config.bootstrap.is_empty() {
            self.rebootstrap_at = Some(now + self.rebootstrap_delay);
            self.rebootstrap_delay = (self.rebootstrap_delay * 2).min(REBOOTSTRAP_MAX);
        }
        let Kind::Announce { port, implied_port } = lookup.kind else {
            let quiet = lookup.quiet;
            self.lookups.remove(&lid);
            if target == self.config.id {
                self.fill_buckets(now);
            }
            if quiet {
                return;
            }
            self.events.push_back(DhtEvent::LookupDone {
                lookup: LookupId(lid),
                target,
                responded,
            });
            return;
        };
        let holders = lookup.token_holders();
        lookup.announcing = Some((holders.len(), 0));
        if holders.is_empty() {
            self.lookups.remove(&lid);
            self.events.push_back(DhtEvent::AnnounceDone {
                lookup: LookupId(lid),
                info_hash: target,
                acked: 0,
            });
            return;
        }
        for (addr, token) in holders {
            let query = Query::AnnouncePeer {
                info_hash: target,
                port: Some(i64::from(port)),
                implied_port,
                token: &token,
            };
            self.send_query(
                now,
                SocketAddr::V4(addr),
                None,
                Purpose::Announce(lid),
                &query,
            );
        }
    }

    fn send_query(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        node: Option<NodeId>,
        purpose: Purpose,
        query: &Query<'_>,
    ) {
        // Transaction ids: a wrapping counter from a seeded start, skipping ids in use (fewer
        // than 65,535 are, see MAX_LOOKUPS).
        let mut t = self.next_t;
        while self.pending.contains_key(&t) {
            t = t.wrapping_add(1);
        }
        self.next_t = t.wrapping_add(1);
        let deadline = now + self.config.query_timeout;
        self.pending.insert(
            t,
            Pending {
                addr,
                node,
                deadline,
                purpose,
            },
        );
        self.deadlines.insert(deadline, t);
        self.buf.clear();
        krpc::emit_query(&mut self.buf, &t.to_be_bytes(), &self.config.id, query);
        self.transmits
            .push_back((addr, Bytes::copy_from_slice(&self.buf)));
    }
}
