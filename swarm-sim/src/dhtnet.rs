//! Mainline DHT networks of thousands of real [`DhtNode`]s on the virtual clock: per-datagram
//! latency with jitter, datagram loss, and nodes that crash silently. Only the DHT runs here
//! (no swarm, no TCP), so 10,000 nodes fit in one process and a run takes seconds.
//!
//! A run: nodes join one after another through three bootstrap nodes; the network settles;
//! announcers announce every topic; then a share of the nodes crash and fresh seekers join
//! and look every topic up, one lookup at a time each. A lookup succeeds when it reports at
//! least one announcer that is still alive. Same config, same report (the report carries a
//! hash of every delivered datagram's time, ends and length). `DHTNET_DEBUG=1` prints every
//! failed lookup.

use crate::queue::EventQueue;
use crate::rng::{derive, SimRng};
use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use swarm_core::dht::{DhtConfig, DhtEvent, DhtNode, LookupId, NodeId};
use swarm_core::Instant;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct DhtNetConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Time between two nodes joining.
    pub join_every: Duration,
    /// One-way latency, uniform in this range per datagram (so datagrams also reorder).
    pub latency: (Duration, Duration),
    /// Share of datagrams lost, from the start.
    pub loss: f64,
    /// Share of the nodes (never the bootstrap nodes or seekers) that crash after the
    /// announces, before the lookups.
    pub crash: f64,
    pub topics: usize,
    /// Nodes announcing each topic.
    pub announcers: usize,
    /// Fresh nodes joining after the crashes; each looks every topic up.
    pub seekers: usize,
}

impl DhtNetConfig {
    pub fn new(seed: u64, nodes: usize) -> Self {
        DhtNetConfig {
            seed,
            nodes,
            join_every: Duration::from_millis(20),
            latency: (Duration::from_millis(10), Duration::from_millis(80)),
            loss: 0.0,
            crash: 0.0,
            topics: 10,
            announcers: 3,
            seekers: 20,
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DhtNetReport {
    pub lookups: usize,
    /// Lookups that found at least one live announcer.
    pub succeeded: usize,
    /// Lookups that found every live announcer.
    pub found_all: usize,
    /// Queries the seeker sent per lookup (mean).
    pub queries_per_lookup: f64,
    /// Simulated time from start to the lookup's end, and to its first live announcer.
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub first_peer_ms_p50: f64,
    pub delivered: u64,
    pub lost: u64,
    pub trace_hash: u64,
}

impl DhtNetReport {
    pub fn success_rate(&self) -> f64 {
        self.succeeded as f64 / self.lookups.max(1) as f64
    }
}

enum Event {
    Datagram {
        from: usize,
        to: usize,
        data: Vec<u8>,
    },
    /// The node's deadline may have come (stale entries are skipped).
    Timer(usize),
}

const BOOTSTRAP_NODES: usize = 3;
const PORT: u16 = 6881;

fn addr(i: usize) -> SocketAddrV4 {
    let i = i as u32 + 1;
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | i), PORT)
}

fn index_of(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v4) if v4.port() == PORT => {
            let ip = u32::from(*v4.ip());
            (ip >> 24 == 10).then(|| (ip & 0x00ff_ffff) as usize - 1)
        }
        _ => None,
    }
}

struct Net {
    nodes: Vec<DhtNode>,
    alive: Vec<bool>,
    queue: EventQueue<Event>,
    rng: SimRng,
    now: Instant,
    config: DhtNetConfig,
    sent: Vec<u64>,
    delivered: u64,
    lost: u64,
    hash: u64,
    /// (node, when, event)
    events: Vec<(usize, Instant, DhtEvent)>,
}

impl Net {
    fn add_node(&mut self, i: usize) {
        let mut dht = DhtConfig::new(derive(self.config.seed, &[i as u64, 0xd47]));
        dht.bootstrap = (0..BOOTSTRAP_NODES.min(self.config.nodes))
            .filter(|&b| b != i)
            .map(|b| SocketAddr::V4(addr(b)))
            .collect();
        self.nodes.push(DhtNode::new(dht, self.now));
        self.alive.push(true);
        self.sent.push(0);
    }

    /// Sends what node `i` queued and records its events; arms its timer.
    fn flush(&mut self, i: usize) {
        while let Some((to, data)) = self.nodes[i].poll_transmit() {
            self.sent[i] += 1;
            // An address no node has (yet) swallows the datagram.
            let Some(j) = index_of(to).filter(|&j| j < self.nodes.len()) else {
                continue;
            };
            if self.rng.chance(self.config.loss) {
                self.lost += 1;
                continue;
            }
            let (lo, hi) = self.config.latency;
            let at = self.now + self.rng.duration(lo, hi);
            self.queue.push(
                at,
                Event::Datagram {
                    from: i,
                    to: j,
                    data: data.to_vec(),
                },
            );
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, self.now, e));
        }
        if let Some(t) = self.nodes[i].poll_timeout() {
            self.queue.push(t.max(self.now), Event::Timer(i));
        }
    }

    fn run_until(&mut self, until: Instant) {
        while self.queue.peek_time().is_some_and(|t| t <= until) {
            let Some((at, event)) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(at);
            match event {
                Event::Datagram { from, to, data } => {
                    if !self.alive[to] || !self.alive[from] {
                        continue;
                    }
                    self.delivered += 1;
                    self.hash = crate::rng::mix(
                        self.hash ^ at.as_micros() ^ ((from as u64) << 40) ^ ((to as u64) << 20),
                    ) ^ data.len() as u64;
                    let now = self.now;
                    self.nodes[to].handle_datagram(now, SocketAddr::V4(addr(from)), &data);
                    self.flush(to);
                }
                Event::Timer(i) => {
                    let due = self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now);
                    if self.alive[i] && due {
                        let now = self.now;
                        self.nodes[i].handle_timeout(now);
                        self.flush(i);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs one network (see the module docs).
pub fn run(config: DhtNetConfig) -> DhtNetReport {
    let total = config.nodes + config.seekers;
    let mut net = Net {
        nodes: Vec::with_capacity(total),
        alive: Vec::with_capacity(total),
        queue: EventQueue::default(),
        rng: SimRng::new(derive(config.seed, &[0x6e6574])),
        now: Instant::from_micros(1),
        sent: Vec::with_capacity(total),
        delivered: 0,
        lost: 0,
        hash: 0,
        events: Vec::new(),
        config: config.clone(),
    };
    // Join: one node after another, each bootstrapping through the bootstrap nodes.
    for i in 0..config.nodes {
        net.add_node(i);
        let now = net.now;
        net.nodes[i].bootstrap(now);
        net.flush(i);
        let next = net.now + config.join_every;
        net.run_until(next);
    }
    let settle = net.now + Duration::from_secs(60);
    net.run_until(settle);

    // Announce: each topic from `announcers` distinct nodes past the bootstrap ones.
    let hashes: Vec<NodeId> = (0..config.topics)
        .map(|t| NodeId::sha1(format!("dhtnet-topic-{t}").as_bytes()))
        .collect();
    let mut announcers: Vec<Vec<usize>> = Vec::new();
    let candidates = config.nodes.saturating_sub(BOOTSTRAP_NODES).max(1);
    for (t, hash) in hashes.iter().enumerate() {
        let mut chosen = Vec::new();
        while chosen.len() < config.announcers.min(candidates) {
            let i = BOOTSTRAP_NODES.min(config.nodes - 1) + net.rng.index(candidates);
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        for &i in &chosen {
            let now = net.now;
            net.nodes[i].announce(now, *hash, 7000 + t as u16, false);
            net.flush(i);
        }
        announcers.push(chosen);
    }
    let announced = net.now + Duration::from_secs(30);
    net.run_until(announced);

    // Crash a share of the non-bootstrap nodes, silently.
    let crashes = (config.crash * config.nodes as f64).round() as usize;
    let mut crashed = 0;
    while crashed < crashes.min(candidates) {
        let i = BOOTSTRAP_NODES.min(config.nodes - 1) + net.rng.index(candidates);
        if net.alive[i] {
            net.alive[i] = false;
            crashed += 1;
        }
    }
    let live_peer = |net: &Net, t: usize, a: SocketAddrV4| {
        announcers[t]
            .iter()
            .any(|&i| net.alive[i] && *addr(i).ip() == *a.ip() && a.port() == 7000 + t as u16)
    };

    // Seekers join and look every topic up in turn.
    let first_seeker = config.nodes;
    for s in 0..config.seekers {
        let i = first_seeker + s;
        net.add_node(i);
        let now = net.now;
        net.nodes[i].bootstrap(now);
        net.flush(i);
    }
    let joined = net.now + Duration::from_secs(20);
    net.run_until(joined);
    net.events.clear();
    let (mut lookups, mut succeeded, mut found_all, mut queries) = (0, 0, 0, 0u64);
    let (mut latencies, mut firsts) = (Vec::new(), Vec::new());
    for (t, hash) in hashes.iter().enumerate() {
        let started = net.now;
        let mut running: Vec<(usize, LookupId, u64)> = Vec::new();
        for s in 0..config.seekers {
            let i = first_seeker + s;
            let lookup = net.nodes[i].get_peers(started, *hash);
            running.push((i, lookup, net.sent[i]));
            net.flush(i);
        }
        let deadline = started + Duration::from_secs(60);
        net.run_until(deadline);
        let live_announcers = announcers[t].iter().filter(|&&i| net.alive[i]).count();
        for (i, lookup, sent_before) in running {
            lookups += 1;
            let mut found = Vec::new();
            for (j, at, e) in &net.events {
                if *j != i {
                    continue;
                }
                match e {
                    DhtEvent::Peer {
                        lookup: l, addr: a, ..
                    } if *l == lookup && live_peer(&net, t, *a) => {
                        if found.is_empty() {
                            firsts.push((*at - started).as_secs_f64() * 1000.0);
                        }
                        found.push(*a);
                    }
                    DhtEvent::LookupDone { lookup: l, .. } if *l == lookup => {
                        latencies.push((*at - started).as_secs_f64() * 1000.0);
                    }
                    _ => {}
                }
            }
            found.sort();
            found.dedup();
            if found.is_empty() && std::env::var_os("DHTNET_DEBUG").is_some() {
                eprintln!(
                    "seeker {i} topic {t}: nothing after {} queries, table {}, announcers {:?}",
                    net.sent[i] - sent_before,
                    net.nodes[i].table().len(),
                    announcers[t]
                );
            }
            succeeded += usize::from(!found.is_empty());
            found_all += usize::from(found.len() >= live_announcers);
            queries += net.sent[i] - sent_before;
        }
        net.events.clear();
    }
    latencies.sort_by(f64::total_cmp);
    firsts.sort_by(f64::total_cmp);
    DhtNetReport {
        lookups,
        succeeded,
        found_all,
        queries_per_lookup: queries as f64 / lookups.max(1) as f64,
        latency_ms_p50: percentile(&latencies, 0.5),
        latency_ms_p99: percentile(&latencies, 0.99),
        first_peer_ms_p50: percentile(&firsts, 0.5),
        delivered: net.delivered,
        lost: net.lost,
        trace_hash: net.hash,
    }
}
