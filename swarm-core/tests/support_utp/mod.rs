//! The in-process network of `swarm_utp*.rs`: swarms wired back to back, datagrams passed
//! directly on a simulated clock, TCP a modelled pipe with a chosen connect delay.
#![allow(dead_code)]

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::{
    CloseCause, Config, ConnId, Event, Input, Instant, Output, StreamError, Swarm, Transport,
    UdpSocket,
};

pub const TOPIC: &[u8] = b"utp-topic";

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000))
}

pub fn id(i: usize) -> Vec<u8> {
    vec![0x10 + i as u8; 32]
}

/// What happens to a TCP dial in the model.
#[derive(Clone, Copy, Debug)]
pub enum TcpModel {
    /// Connects after this long.
    ConnectAfter(Duration),
    /// Never answers (a dropped SYN): the swarm's connect timeout ends it.
    Silent,
}

pub struct Node {
    pub swarm: Swarm,
    pub events: Vec<(Instant, Event)>,
    pub readable: Vec<ConnId>,
    pub writable: Vec<ConnId>,
}

#[derive(Debug)]
pub enum Ev {
    Datagram {
        to: usize,
        from: SocketAddr,
        data: Bytes,
    },
    TcpConnect {
        node: usize,
        conn: ConnId,
        target: usize,
    },
    TcpData {
        node: usize,
        conn: ConnId,
        data: Bytes,
    },
    TcpClosed {
        node: usize,
        conn: ConnId,
    },
}

pub struct Net {
    pub nodes: Vec<Node>,
    pub now: Instant,
    pub queue: BTreeMap<(Instant, u64), Ev>,
    pub seq: u64,
    pub delay: Duration,
    /// How each node's TCP dials fare.
    pub tcp: Vec<TcpModel>,
    /// Chance that a datagram is lost, from a seeded generator.
    pub loss: f64,
    pub rng: u64,
    /// TCP pipes: (node, conn) -> (node, conn).
    pub pipes: HashMap<(usize, ConnId), (usize, ConnId)>,
    pub datagrams: u64,
}

impl Net {
    pub fn new(configs: Vec<Config>, delay: Duration, tcp: TcpModel) -> Self {
        let now = Instant::from_micros(1_000_000);
        let tcp = vec![tcp; configs.len()];
        let mut net = Net {
            nodes: configs
                .into_iter()
                .map(|c| Node {
                    swarm: Swarm::new(c).unwrap(),
                    events: Vec::new(),
                    readable: Vec::new(),
                    writable: Vec::new(),
                })
                .collect(),
            now,
            queue: BTreeMap::new(),
            seq: 0,
            delay,
            tcp,
            loss: 0.0,
            rng: 0x1234_5678,
            pipes: HashMap::new(),
            datagrams: 0,
        };
        for i in 0..net.nodes.len() {
            let port = addr(i).port();
            net.nodes[i]
                .swarm
                .handle_input(now, Input::Listening { port });
            net.drain(i);
        }
        net
    }

    pub fn utp_only(n: usize) -> Self {
        let configs = (0..n).map(|i| config(i, false, true)).collect();
        Net::new(configs, Duration::from_millis(10), TcpModel::Silent)
    }

    pub fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    pub fn node_of(&self, a: SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| addr(i).ip() == a.ip())
    }

    /// Carries out node `i`'s outputs.
    pub fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].swarm.poll_output() {
            match out {
                Output::Transmit {
                    socket: UdpSocket::Swarm,
                    to,
                    data,
                } => {
                    assert!(data.len() <= 1400, "datagram of {} bytes", data.len());
                    self.datagrams += 1;
                    // SplitMix64 step: deterministic loss.
                    self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = self.rng;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    let lost = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 <= self.loss;
                    if lost {
                        continue;
                    }
                    if let Some(to) = self.node_of(to) {
                        let at = self.now + self.delay;
                        let from = addr(i);
                        self.push(at, Ev::Datagram { to, from, data });
                    }
                }
                Output::Transmit { .. } => {}
                Output::Dial {
                    conn,
                    addr: to,
                    transport,
                } => {
                    assert_eq!(transport, Transport::Tcp, "uTP is dialled by the core");
                    if let (TcpModel::ConnectAfter(d), Some(target)) =
                        (self.tcp[i], self.node_of(to))
                    {
                        let at = self.now + d;
                        self.push(
                            at,
                            Ev::TcpConnect {
                                node: i,
                                conn,
                                target,
                            },
                        );
                    }
                }
                Output::Send { conn, data } => {
                    if let Some(&(node, conn)) = self.pipes.get(&(i, conn)) {
                        let at = self.now + self.delay;
                        self.push(at, Ev::TcpData { node, conn, data });
                    }
                }
                Output::Close { conn } => {
                    if let Some((node, conn)) = self.pipes.remove(&(i, conn)) {
                        self.pipes.remove(&(node, conn));
                        let at = self.now + self.delay;
                        self.push(at, Ev::TcpClosed { node, conn });
                    }
                }
                Output::StreamReadable(conn) => self.nodes[i].readable.push(conn),
                Output::StreamWritable(conn) => self.nodes[i].writable.push(conn),
                Output::Event(e) => {
                    let now = self.now;
                    self.nodes[i].events.push((now, e));
                }
            }
        }
    }

    pub fn apply(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Datagram { to, from, data } => {
                let socket = UdpSocket::Swarm;
                let input = Input::Datagram {
                    socket,
                    from,
                    data: &data,
                };
                self.nodes[to].swarm.handle_input(now, input);
                self.drain(to);
            }
            Ev::TcpConnect { node, conn, target } => {
                let from = SocketAddr::new(addr(node).ip(), 40_000 + conn.0 as u16);
                let accepted = self.nodes[target].swarm.accept(now, from, Transport::Tcp);
                match accepted {
                    Ok(remote) => {
                        self.pipes.insert((node, conn), (target, remote));
                        self.pipes.insert((target, remote), (node, conn));
                        self.drain(target);
                        self.nodes[node]
                            .swarm
                            .handle_input(now, Input::Connected { conn });
                    }
                    Err(_) => {
                        self.drain(target);
                        self.nodes[node]
                            .swarm
                            .handle_input(now, Input::DialFailed { conn })
                    }
                }
                self.drain(node);
            }
            Ev::TcpData { node, conn, data } => {
                if self.nodes[node].swarm.wants_read(conn) {
                    let input = Input::Received { conn, data: &data };
                    self.nodes[node].swarm.handle_input(now, input);
                    self.drain(node);
                }
            }
            Ev::TcpClosed { node, conn } => {
                let cause = CloseCause::Remote;
                self.nodes[node]
                    .swarm
                    .handle_input(now, Input::Closed { conn, cause });
                self.drain(node);
            }
        }
    }

    /// Advances to the next datagram or timer and applies everything due. False when idle.
    pub fn step(&mut self) -> bool {
        let next_ev = self.queue.keys().next().map(|k| k.0);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.swarm.poll_timeout())
            .min();
        let Some(next) = [next_ev, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let ev = entry.remove();
            self.apply(ev);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .swarm
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                self.nodes[i].swarm.handle_timeout(now);
                self.drain(i);
            }
        }
        true
    }

    /// Steps until `done` holds or `limit` of simulated time passes.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    pub fn add_peer(&mut self, from: usize, to: usize) {
        let now = self.now;
        self.nodes[from].swarm.add_peer(now, Some(TOPIC), addr(to));
        self.drain(from);
    }

    /// The connections node `i` reported, in order.
    pub fn connections(&self, i: usize) -> Vec<(ConnId, Transport, bool, Bytes)> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Connection {
                    conn,
                    info,
                    early_data,
                } => Some((*conn, info.transport, info.initiator, early_data.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every event, for debugging a failing test.
    pub fn dump(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            for (t, e) in &node.events {
                eprintln!(
                    "node {i} at {:?}: {e:?}",
                    *t - Instant::from_micros(1_000_000)
                );
            }
        }
    }

    pub fn event_count(&self, i: usize, name: &str) -> usize {
        let events = &self.nodes[i].events;
        events.iter().filter(|(_, e)| e.name() == name).count()
    }

    pub fn write(&mut self, i: usize, conn: ConnId, data: &[u8]) -> Result<usize, StreamError> {
        let now = self.now;
        let r = self.nodes[i].swarm.stream_write(now, conn, data);
        self.drain(i);
        r
    }

    pub fn read(&mut self, i: usize, conn: ConnId, buf: &mut [u8]) -> Result<usize, StreamError> {
        let now = self.now;
        let r = self.nodes[i].swarm.stream_read(now, conn, buf);
        self.drain(i);
        r
    }

    /// Reads everything available now into `into`; returns whether end of stream was seen.
    pub fn read_available(&mut self, i: usize, conn: ConnId, into: &mut Vec<u8>) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.read(i, conn, &mut buf) {
                Ok(0) => return true,
                Ok(n) => into.extend_from_slice(&buf[..n]),
                Err(StreamError::WouldBlock) => return false,
                Err(e) => panic!("read on {conn:?} at node {i}: {e}"),
            }
        }
    }
}

pub fn config(i: usize, tcp: bool, utp: bool) -> Config {
    let mut c = Config::new(id(i), 100 + i as u64);
    c.tcp = tcp;
    c.utp = utp;
    c.utp_in_core = true;
    c.crossing_grace = Duration::ZERO;
    c
}

pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ salt)
        .collect()
}

/// Connects node 0 to node 1 over uTP only and returns (0's conn, 1's conn).
pub fn connect_pair(net: &mut Net) -> (ConnId, ConnId) {
    net.add_peer(0, 1);
    let ok = net.run_until(Duration::from_secs(10), |n| {
        !n.connections(0).is_empty() && !n.connections(1).is_empty()
    });
    assert!(ok, "no connection within 10 s");
    let (a, b) = (net.connections(0)[0].clone(), net.connections(1)[0].clone());
    assert_eq!((a.1, a.2), (Transport::Utp, true));
    assert_eq!((b.1, b.2), (Transport::Utp, false));
    (a.0, b.0)
}

/// Moves `data` from `src` to `dst` through the streams, reading as readiness says.
pub fn transfer(net: &mut Net, src: (usize, ConnId), dst: (usize, ConnId), data: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut sent = 0;
    let ok = net.run_until(Duration::from_secs(120), |n| {
        while sent < data.len() {
            match n.write(src.0, src.1, &data[sent..]) {
                Ok(k) => sent += k,
                Err(StreamError::WouldBlock) => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        n.read_available(dst.0, dst.1, &mut got);
        got.len() >= data.len()
    });
    assert!(
        ok,
        "transfer stalled at {} of {} bytes",
        got.len(),
        data.len()
    );
    got
}
