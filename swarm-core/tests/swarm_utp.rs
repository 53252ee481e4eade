//! uTP composed into the swarm: several `Swarm`s wired back to back in-process, datagrams
//! passed directly on a simulated clock. TCP, where a test needs it, is a modelled pipe with a
//! chosen connect delay.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::{
    CloseCause, Config, ConnId, Event, Input, Instant, Output, StreamError, Swarm, Transport,
    UdpSocket,
};

const TOPIC: &[u8] = b"utp-topic";

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000))
}

fn id(i: usize) -> Vec<u8> {
    vec![0x10 + i as u8; 32]
}

/// What happens to a TCP dial in the model.
#[derive(Clone, Copy, Debug)]
enum TcpModel {
    /// Connects after this long.
    ConnectAfter(Duration),
    /// Never answers (a dropped SYN): the swarm's connect timeout ends it.
    Silent,
}

struct Node {
    swarm: Swarm,
    events: Vec<(Instant, Event)>,
    readable: Vec<ConnId>,
    writable: Vec<ConnId>,
}

#[derive(Debug)]
enum Ev {
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

struct Net {
    nodes: Vec<Node>,
    now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    delay: Duration,
    /// How each node's TCP dials fare.
    tcp: Vec<TcpModel>,
    /// Chance that a datagram is lost, from a seeded generator.
    loss: f64,
    rng: u64,
    /// TCP pipes: (node, conn) -> (node, conn).
    pipes: HashMap<(usize, ConnId), (usize, ConnId)>,
    datagrams: u64,
}

impl Net {
    fn new(configs: Vec<Config>, delay: Duration, tcp: TcpModel) -> Self {
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

    fn utp_only(n: usize) -> Self {
        let configs = (0..n).map(|i| config(i, false, true)).collect();
        Net::new(configs, Duration::from_millis(10), TcpModel::Silent)
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn node_of(&self, a: SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| addr(i).ip() == a.ip())
    }

    /// Carries out node `i`'s outputs.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].swarm.poll_output() {
            match out {
                Output::Transmit {
                    socket: UdpSocket::Swarm,
                    to,
                    data,
                } => {
                    assert!(data.len() <= 1400 + 2, "datagram of {} bytes", data.len());
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

    fn apply(&mut self, ev: Ev) {
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
    fn step(&mut self) -> bool {
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
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
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

    fn add_peer(&mut self, from: usize, to: usize) {
        let now = self.now;
        self.nodes[from].swarm.add_peer(now, Some(TOPIC), addr(to));
        self.drain(from);
    }

    /// The connections node `i` reported, in order.
    fn connections(&self, i: usize) -> Vec<(ConnId, Transport, bool, Bytes)> {
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
    #[allow(dead_code)]
    fn dump(&self) {
        for (i, node) in self.nodes.iter().enumerate() {
            for (t, e) in &node.events {
                eprintln!(
                    "node {i} at {:?}: {e:?}",
                    *t - Instant::from_micros(1_000_000)
                );
            }
        }
    }

    fn event_count(&self, i: usize, name: &str) -> usize {
        let events = &self.nodes[i].events;
        events.iter().filter(|(_, e)| e.name() == name).count()
    }

    fn write(&mut self, i: usize, conn: ConnId, data: &[u8]) -> Result<usize, StreamError> {
        let now = self.now;
        let r = self.nodes[i].swarm.stream_write(now, conn, data);
        self.drain(i);
        r
    }

    fn read(&mut self, i: usize, conn: ConnId, buf: &mut [u8]) -> Result<usize, StreamError> {
        let now = self.now;
        let r = self.nodes[i].swarm.stream_read(now, conn, buf);
        self.drain(i);
        r
    }

    /// Reads everything available now into `into`; returns whether end of stream was seen.
    fn read_available(&mut self, i: usize, conn: ConnId, into: &mut Vec<u8>) -> bool {
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

fn config(i: usize, tcp: bool, utp: bool) -> Config {
    let mut c = Config::new(id(i), 100 + i as u64);
    c.tcp = tcp;
    c.utp = utp;
    c.utp_in_core = true;
    c.crossing_grace = Duration::ZERO;
    c
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ salt)
        .collect()
}

/// Connects node 0 to node 1 over uTP only and returns (0's conn, 1's conn).
fn connect_pair(net: &mut Net) -> (ConnId, ConnId) {
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
fn transfer(net: &mut Net, src: (usize, ConnId), dst: (usize, ConnId), data: &[u8]) -> Vec<u8> {
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

#[test]
fn utp_only_swarms_connect_and_exchange_data_both_ways() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    assert_eq!(net.nodes[0].swarm.connected(), 1);
    assert_eq!(net.nodes[1].swarm.connected(), 1);
    let there = transfer(&mut net, (0, a), (1, b), b"hello from the dialler");
    assert_eq!(there, b"hello from the dialler");
    let back = transfer(&mut net, (1, b), (0, a), b"and back from the acceptor");
    assert_eq!(back, b"and back from the acceptor");
}

#[test]
fn utp_only_dial_works_from_either_side() {
    let mut net = Net::utp_only(2);
    net.add_peer(1, 0);
    let ok = net.run_until(Duration::from_secs(10), |n| {
        !n.connections(0).is_empty() && !n.connections(1).is_empty()
    });
    assert!(ok);
    assert!(net.connections(1)[0].2, "node 1 dialled");
    assert!(!net.connections(0)[0].2);
}

#[test]
fn crossed_utp_dials_leave_one_connection_that_carries_data() {
    let mut net = Net::utp_only(2);
    net.add_peer(0, 1);
    net.add_peer(1, 0);
    net.run_until(Duration::from_secs(15), |_| false);
    for i in 0..2 {
        assert_eq!(net.nodes[i].swarm.connected(), 1, "node {i}");
        assert_eq!(net.nodes[i].swarm.connecting(), 0, "node {i}");
    }
    let live = |n: &Net, i: usize| {
        n.connections(i)
            .into_iter()
            .map(|c| c.0)
            .find(|c| n.nodes[i].swarm.conn_info(*c).is_some())
            .expect("a live connection")
    };
    let (a, b) = (live(&net, 0), live(&net, 1));
    let got = transfer(&mut net, (0, a), (1, b), b"over the kept connection");
    assert_eq!(got, b"over the kept connection");
}

#[test]
fn tcp_wins_the_race_when_it_connects_within_500_ms_of_utp() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    // uTP connects after one round trip (20 ms); TCP 300 ms later: within the grace.
    let tcp = TcpModel::ConnectAfter(Duration::from_millis(320));
    let mut net = Net::new(configs, Duration::from_millis(10), tcp);
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(10), |_| false);
    let conns = net.connections(0);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].1, Transport::Tcp);
    assert_eq!(net.nodes[0].swarm.connected(), 1);
    // The losing uTP connection was abandoned at both ends.
    assert_eq!(net.nodes[1].swarm.connected(), 1);
    assert_eq!(net.connections(1)[0].1, Transport::Tcp);
}

#[test]
fn utp_wins_the_race_when_tcp_has_not_connected_500_ms_after_it() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    let start = net.now;
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(10), |_| false);
    let conns = net.connections(0);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].1, Transport::Utp);
    let handshaking_at = net.nodes[0]
        .events
        .iter()
        .find(|(_, e)| e.name() == "handshaking")
        .map(|(t, _)| *t)
        .unwrap();
    // uTP connected after 20 ms; the handshake began only after the 500 ms grace.
    assert!(handshaking_at - start >= Duration::from_millis(520));
    assert!(handshaking_at - start < Duration::from_millis(600));
    assert_eq!(net.nodes[1].swarm.connected(), 1);
}

#[test]
fn a_late_tcp_loses_to_utp_after_the_grace() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    let tcp = TcpModel::ConnectAfter(Duration::from_millis(900));
    let mut net = Net::new(configs, Duration::from_millis(10), tcp);
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(10), |_| false);
    assert_eq!(net.connections(0)[0].1, Transport::Utp);
    assert_eq!(net.nodes[0].swarm.connected(), 1);
}

#[test]
fn one_mib_arrives_intact() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    let data = pattern(1 << 20, 0x5a);
    let got = transfer(&mut net, (0, a), (1, b), &data);
    assert!(got == data, "1 MiB corrupted");
}

#[test]
fn half_close_delivers_eof_and_the_other_direction_goes_on() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    let request = pattern(50_000, 1);
    let mut sent = net.write(0, a, &request).unwrap();
    while sent < request.len() {
        net.step();
        sent += net.write(0, a, &request[sent..]).unwrap_or(0);
    }
    let now = net.now;
    net.nodes[0].swarm.stream_shutdown(now, a).unwrap();
    net.drain(0);
    let mut got = Vec::new();
    let eof = net.run_until(Duration::from_secs(10), |n| {
        n.read_available(1, b, &mut got)
    });
    assert!(eof, "no end of stream");
    assert!(got == request);
    // Writing after our own shutdown is refused; the peer can still answer.
    let reply = transfer(&mut net, (1, b), (0, a), b"reply after the half-close");
    assert_eq!(reply, b"reply after the half-close");
    let now = net.now;
    net.nodes[1].swarm.stream_shutdown(now, b).unwrap();
    net.drain(1);
    let mut rest = Vec::new();
    assert!(net.run_until(Duration::from_secs(10), |n| n
        .read_available(0, a, &mut rest)));
    // Both directions done: each side reports the connection closed, not redialled at once.
    assert!(net.run_until(Duration::from_secs(30), |n| {
        n.event_count(0, "connection-closed") == 1 && n.event_count(1, "connection-closed") == 1
    }));
    let now = net.now;
    assert!(net.nodes[0].swarm.disconnect(now, a).is_ok(), "releases");
}

#[test]
fn a_reader_that_stops_reading_stops_the_writer_with_bounded_memory() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    let data = pattern(8 << 20, 3);
    let mut sent = 0;
    net.run_until(Duration::from_secs(60), |n| {
        while sent < data.len() {
            match n.write(0, a, &data[sent..]) {
                Ok(k) => sent += k,
                Err(_) => break,
            }
        }
        false
    });
    // Nobody read: the writer stopped well short of 8 MiB, held by the two bounded buffers.
    assert!(sent < 3 << 20, "writer accepted {sent} bytes");
    assert_eq!(net.write(0, a, b"x"), Err(StreamError::WouldBlock));
    let held = net.nodes[1].swarm.stream_buffered(b).unwrap()
        + net.nodes[0].swarm.stream_buffered(a).unwrap();
    assert!(held < 4 << 20, "{held} bytes buffered");
    // Reading resumes the flow; the stream arrives intact.
    net.nodes[0].writable.clear();
    let mut got = Vec::new();
    let ok = net.run_until(Duration::from_secs(120), |n| {
        n.read_available(1, b, &mut got);
        if n.nodes[0].writable.contains(&a) || sent < data.len() {
            while sent < data.len() {
                match n.write(0, a, &data[sent..]) {
                    Ok(k) => sent += k,
                    Err(_) => break,
                }
            }
        }
        got.len() == data.len()
    });
    assert!(ok, "stalled at {} bytes", got.len());
    assert!(got == data);
}

#[test]
fn inbound_utp_respects_the_whitelist() {
    let mut configs = vec![config(0, false, true), config(1, false, true)];
    configs[1].whitelist = vec![addr(5).ip()];
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(5), |_| false);
    assert!(net.connections(0).is_empty());
    assert!(net.connections(1).is_empty());
    assert!(net.event_count(1, "peer-rejected") >= 1);
    assert!(net.event_count(0, "connect-failed") >= 1);
}

#[test]
fn inbound_utp_respects_max_connections() {
    let mut configs: Vec<Config> = (0..3).map(|i| config(i, false, true)).collect();
    configs[2] = configs[2].clone().with_max_connections(1);
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    net.add_peer(0, 2);
    net.run_until(Duration::from_secs(2), |_| false);
    net.add_peer(1, 2);
    net.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(net.nodes[2].swarm.connected(), 1);
    assert_eq!(net.connections(1).len(), 0);
}

#[test]
fn application_disconnect_is_local_and_the_peer_sees_end_of_stream() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    net.write(0, a, b"last words").unwrap();
    let now = net.now;
    net.nodes[0].swarm.disconnect(now, a).unwrap();
    net.drain(0);
    assert_eq!(net.event_count(0, "connection-closed"), 1);
    let mut got = Vec::new();
    assert!(net.run_until(Duration::from_secs(10), |n| n
        .read_available(1, b, &mut got)));
    assert_eq!(got, b"last words");
    let now = net.now;
    assert_eq!(
        net.nodes[0].swarm.stream_read(now, a, &mut [0u8; 8]),
        Err(StreamError::Closed)
    );
    // The dialler does not redial after its own close.
    net.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(net.event_count(0, "connecting"), 1);
}

// ----------------------------------------------------------------- the shared UDP port

fn transmits(s: &mut Swarm) -> Vec<(SocketAddr, Bytes)> {
    std::iter::from_fn(|| s.poll_output())
        .filter_map(|o| match o {
            Output::Transmit {
                socket: UdpSocket::Swarm,
                to,
                data,
            } => Some((to, data)),
            _ => None,
        })
        .collect()
}

fn datagram(s: &mut Swarm, now: Instant, from: SocketAddr, data: &[u8]) {
    let socket = UdpSocket::Swarm;
    s.handle_input(now, Input::Datagram { socket, from, data });
}

fn utp_swarm_with_dht() -> (Swarm, Instant) {
    let c = config(0, false, true).with_dht(vec![addr(9)]);
    let mut s = Swarm::new(c).unwrap();
    let now = Instant::from_micros(1_000_000);
    s.handle_input(now, Input::Listening { port: 7000 });
    transmits(&mut s);
    (s, now)
}

#[test]
fn krpc_on_the_shared_port_reaches_the_dht_with_utp_on() {
    let (mut s, now) = utp_swarm_with_dht();
    let stranger = addr(5);
    let mut ping = b"d1:ad2:id20:".to_vec();
    ping.extend_from_slice(&[7u8; 20]);
    ping.extend_from_slice(b"e1:q4:ping1:t2:aa1:y1:qe");
    datagram(&mut s, now, stranger, &ping);
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, stranger);
    assert!(out[0].1.starts_with(b"d1:rd2:id20:"), "a KRPC reply");
}

#[test]
fn utp_shaped_leftovers_get_one_rate_limited_reset() {
    let (mut s, now) = utp_swarm_with_dht();
    let stranger = addr(5);
    // ST_DATA (type 0, version 1) for a connection id nobody uses.
    let mut data = vec![0x01, 0, 0x12, 0x34];
    data.extend_from_slice(&[0; 12]);
    data.extend_from_slice(&[0x00, 0x05, 0x00, 0x01]);
    data.extend_from_slice(b"payload");
    datagram(&mut s, now, stranger, &data);
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1[0], 0x31, "ST_RESET");
    assert_eq!(&out[0].1[2..4], &[0x12, 0x34]);
    datagram(&mut s, now + Duration::from_secs(1), stranger, &data);
    assert!(
        transmits(&mut s).is_empty(),
        "the same packet again within 10 s: no RST"
    );
}

#[test]
fn datagrams_that_are_neither_utp_krpc_nor_dns_are_dropped_silently() {
    let (mut s, now) = utp_swarm_with_dht();
    for junk in [
        &b"d-not-bencode"[..],
        b"",
        b"\x64\x01\x02",
        &[0x41, 0x07, 0, 0],
    ] {
        datagram(&mut s, now, addr(5), junk);
    }
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn a_swarm_without_utp_ignores_syns() {
    let c = config(0, true, false);
    let mut s = Swarm::new(c).unwrap();
    let now = Instant::from_micros(1_000_000);
    s.handle_input(now, Input::Listening { port: 7000 });
    let mut syn = vec![0x41, 0, 0x45, 0x67];
    syn.extend_from_slice(&[0; 12]);
    syn.extend_from_slice(&[0x23, 0xc6, 0, 0]);
    datagram(&mut s, now, addr(5), &syn);
    assert!(transmits(&mut s).is_empty());
    assert_eq!(s.connecting(), 0);
}

#[test]
fn an_inbound_syn_is_a_handshaking_connection_at_once() {
    let (mut s, now) = utp_swarm_with_dht();
    let mut syn = vec![0x41, 0, 0x45, 0x67];
    syn.extend_from_slice(&[0; 8]);
    syn.extend_from_slice(&(1u32 << 20).to_be_bytes());
    syn.extend_from_slice(&[0x23, 0xc6, 0, 0]);
    datagram(&mut s, now, addr(5), &syn);
    assert_eq!(s.connecting(), 1);
    let out: Vec<_> = transmits(&mut s)
        .into_iter()
        .filter(|(to, _)| *to == addr(5))
        .collect();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1[0], 0x21, "ST_STATE answers the SYN");
    assert_eq!(&out[0].1[2..4], &[0x45, 0x67]);
    // Nobody follows up: the 5 s handshake timer ends it.
    s.handle_timeout(now + Duration::from_secs(6));
    assert_eq!(s.connecting(), 0);
}

#[test]
fn the_duplicate_rule_keeps_tcp_over_utp_between_the_same_peers() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    // Node 0's TCP dials connect; node 1's never do, so its dial ends up on uTP.
    net.tcp[0] = TcpModel::ConnectAfter(Duration::from_millis(5));
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(2), |_| false);
    net.add_peer(1, 0);
    net.run_until(Duration::from_secs(10), |_| false);
    for i in 0..2 {
        assert_eq!(net.nodes[i].swarm.connected(), 1, "node {i}");
        let live: Vec<_> = net
            .connections(i)
            .into_iter()
            .filter(|c| net.nodes[i].swarm.conn_info(c.0).is_some())
            .collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1, Transport::Tcp, "node {i} kept TCP");
    }
    // Node 1's uTP connection completed its handshake and lost to the registered TCP one
    // before any `connection` was reported for it.
    let lost = net.nodes[1].events.iter().any(|(_, e)| {
        matches!(e, Event::RedundantConnection { info, .. }
            if info.transport == Transport::Utp && info.initiator)
    });
    assert!(lost, "node 1's uTP dial was resolved by the rule");
}

#[test]
fn utp_only_swarms_connect_and_transfer_under_loss_across_seeds() {
    for seed in 0..10u64 {
        let mut net = Net::utp_only(2);
        net.loss = 0.05;
        net.rng = seed;
        let (a, b) = connect_pair(&mut net);
        let data = pattern(256 * 1024, seed as u8);
        let got = transfer(&mut net, (0, a), (1, b), &data);
        assert!(got == data, "seed {seed}: corrupted");
    }
}
