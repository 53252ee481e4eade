//! Arbitrary operation sequences against one `Swarm`, checking its invariants after each.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::handshake::encode_handshake;
use swarm_core::{
    CloseCause, Config, ConnId, Event, HandshakeMode, Input, Instant, Output, PeerSource, Swarm,
    Transport,
};

/// A few hosts; 10.0.0.2 appears twice as the same host (plain and IPv4-mapped).
const ADDRS: [&str; 6] = [
    "127.0.0.1:7001",
    "127.0.0.1:7002",
    "10.0.0.2:7001",
    "[::ffff:10.0.0.2]:7001",
    "10.0.0.3:7003",
    "[::1]:7001",
];
const TOPICS: [Option<&[u8]>; 3] = [None, Some(b"a"), Some(b"b")];

#[derive(Arbitrary, Debug)]
struct Setup {
    max_connections: u8,
    keep_existing: bool,
    transports: u8,
    external: bool,
    id: Vec<u8>,
    seed: u64,
    jitter: u8,
    /// In ms; `None` keeps the default.
    connect_timeout: Option<u16>,
    handshake_timeout: Option<u16>,
}

/// A connection: one the core issued (counting back from the newest, wrapping), or any id.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Conn {
    Issued(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum RemoteId {
    Local,
    /// One of a few fixed ids, so that duplicates happen.
    Known(u8),
    Any(Vec<u8>),
}

/// A candidate: indices into `ADDRS` and `TOPICS`, wrapping.
#[derive(Arbitrary, Debug)]
struct Peer {
    addr: u8,
    topic: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Advance the clock by this many ms and run the due timers.
    Advance(u16),
    AddPeer(Peer),
    Discovered(Peer),
    RemovePeer(Peer),
    /// Inbound from an `ADDRS` entry, over uTP if set.
    Accept(u8, bool),
    Connected(Conn),
    DialFailed(Conn),
    Received(Conn, Vec<u8>),
    /// A well-formed handshake followed by application bytes.
    Handshake(Conn, RemoteId, Vec<u8>),
    /// Closed by the network if set, else locally.
    Closed(Conn, bool),
    Disconnect(Conn),
    /// With an optional discovery key.
    CompleteHandshake(Conn, RemoteId, Option<u8>),
}

/// What the events said about one connection.
#[derive(Default)]
struct Seen {
    handshaking: bool,
    connection: bool,
    closed: bool,
}

struct Harness {
    swarm: Swarm,
    local_id: Vec<u8>,
    max: usize,
    now: Instant,
    issued: Vec<ConnId>,
    seen: HashMap<ConnId, Seen>,
}

impl Harness {
    fn conn(&self, conn: Conn) -> ConnId {
        match conn {
            Conn::Issued(i) if !self.issued.is_empty() => {
                self.issued[self.issued.len() - 1 - usize::from(i) % self.issued.len()]
            }
            Conn::Issued(i) => ConnId(u64::from(i)),
            Conn::Raw(raw) => ConnId(raw),
        }
    }

    fn remote_id(&self, id: RemoteId) -> Vec<u8> {
        match id {
            RemoteId::Local => self.local_id.clone(),
            RemoteId::Known(k) => vec![k % 4 + 1; 32],
            RemoteId::Any(id) => id,
        }
    }

    fn apply(&mut self, op: Op) {
        let addr = |i: u8| {
            ADDRS[usize::from(i) % ADDRS.len()]
                .parse::<SocketAddr>()
                .unwrap()
        };
        let topic = |i: u8| TOPICS[usize::from(i) % TOPICS.len()];
        let now = self.now;
        match op {
            Op::Advance(ms) => {
                self.now = now + Duration::from_millis(u64::from(ms));
                self.swarm.handle_timeout(self.now);
                if let Some(next) = self.swarm.poll_timeout() {
                    assert!(
                        next > self.now,
                        "timer at {next:?} left after handle_timeout({:?})",
                        self.now
                    );
                }
            }
            Op::AddPeer(p) => self.swarm.add_peer(now, topic(p.topic), addr(p.addr)),
            Op::Discovered(p) => self.input(Input::Discovered {
                topic: topic(p.topic).unwrap_or(b"d"),
                addr: addr(p.addr),
                source: PeerSource::Dht,
            }),
            Op::RemovePeer(p) => self.swarm.remove_peer(topic(p.topic), addr(p.addr)),
            Op::Accept(a, utp) => {
                let transport = if utp { Transport::Utp } else { Transport::Tcp };
                if let Ok(conn) = self.swarm.accept(now, addr(a), transport) {
                    self.issue(conn);
                }
            }
            Op::Connected(c) => self.input(Input::Connected { conn: self.conn(c) }),
            Op::DialFailed(c) => self.input(Input::DialFailed { conn: self.conn(c) }),
            Op::Received(c, data) => self.input(Input::Received {
                conn: self.conn(c),
                data: &data,
            }),
            Op::Handshake(conn, id, trailing) => {
                let mut data = encode_handshake(&self.remote_id(id)).to_vec();
                data.extend_from_slice(&trailing);
                self.input(Input::Received {
                    conn: self.conn(conn),
                    data: &data,
                });
            }
            Op::Closed(conn, remote) => {
                let cause = if remote {
                    CloseCause::Remote
                } else {
                    CloseCause::Local
                };
                self.input(Input::Closed {
                    conn: self.conn(conn),
                    cause,
                });
            }
            Op::Disconnect(c) => {
                let conn = self.conn(c);
                let known = self.swarm.conn_info(conn).is_some();
                assert_eq!(self.swarm.disconnect(now, conn).is_ok(), known);
            }
            Op::CompleteHandshake(conn, id, key) => {
                let id = self.remote_id(id);
                let key = key.map(|k| [k % 2]);
                let _ = self.swarm.complete_handshake(
                    now,
                    self.conn(conn),
                    &id,
                    key.as_ref().map(|k| &k[..]),
                );
            }
        }
        self.drain();
        self.check();
    }

    fn input(&mut self, input: Input<'_>) {
        self.swarm.handle_input(self.now, input);
    }

    fn issue(&mut self, conn: ConnId) {
        assert!(!self.issued.contains(&conn), "{conn:?} issued twice");
        self.issued.push(conn);
    }

    fn drain(&mut self) {
        while let Some(output) = self.swarm.poll_output() {
            match output {
                Output::Dial { conn, .. } => self.issue(conn),
                Output::Send { conn, .. } | Output::Close { conn } => {
                    assert!(self.issued.contains(&conn), "output for unissued {conn:?}");
                }
                Output::Event(event) => self.event(event),
                Output::Transmit { .. } => {}
                Output::StreamReadable(_) | Output::StreamWritable(_) => {}
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Handshaking { conn, .. } => {
                let seen = self.seen.entry(conn).or_default();
                assert!(!seen.handshaking, "{conn:?} handshaking twice");
                seen.handshaking = true;
            }
            Event::Connection { conn, info, .. } => {
                assert_ne!(
                    info.id.as_deref(),
                    Some(&self.local_id[..]),
                    "connection to ourselves"
                );
                assert!(info.id.is_some(), "connection without id");
                let seen = self.seen.entry(conn).or_default();
                assert!(seen.handshaking, "{conn:?} connection before handshaking");
                assert!(!seen.connection, "{conn:?} connection twice");
                assert!(!seen.closed, "{conn:?} connection after connection-closed");
                seen.connection = true;
            }
            Event::ConnectionClosed { conn, .. } => {
                let seen = self.seen.entry(conn).or_default();
                assert!(seen.handshaking, "{conn:?} closed without handshaking");
                assert!(!seen.closed, "{conn:?} connection-closed twice");
                seen.closed = true;
            }
            _ => {}
        }
    }

    fn check(&self) {
        let connected = self.swarm.connected();
        if self.max > 0 {
            assert!(
                connected <= self.max,
                "connected {connected} > max {}",
                self.max
            );
        }
        let _ = self.swarm.connecting(); // must not underflow
        let open = self
            .seen
            .values()
            .filter(|s| s.connection && !s.closed)
            .count();
        assert_eq!(connected, open, "connected() disagrees with the events");
    }
}

fuzz_target!(|input: (Setup, Vec<Op>)| {
    let (setup, ops) = input;
    let mut id = setup.id;
    id.truncate(40);
    if id.is_empty() {
        id.push(0);
    }
    let mut config = Config::new(id.clone(), setup.seed)
        .with_max_connections(usize::from(setup.max_connections % 6))
        .with_keep_existing_connections(setup.keep_existing)
        .with_retry_jitter(f64::from(setup.jitter) / 256.0)
        .with_handshake(if setup.external {
            HandshakeMode::External
        } else {
            HandshakeMode::Builtin
        });
    config.tcp = setup.transports % 3 != 1;
    config.utp = setup.transports % 3 != 0;
    if let Some(ms) = setup.connect_timeout {
        config.connect_timeout = Duration::from_millis(u64::from(ms));
    }
    if let Some(ms) = setup.handshake_timeout {
        config.handshake_timeout = Duration::from_millis(u64::from(ms));
    }
    let max = config.max_connections;
    let mut h = Harness {
        swarm: Swarm::new(config).expect("valid config"),
        local_id: id,
        max,
        now: Instant::ZERO,
        issued: Vec::new(),
        seen: HashMap::new(),
    };
    for op in ops {
        h.apply(op);
    }
    // Closing everything leaves nothing connected, each connection closed exactly once.
    for conn in h.issued.clone() {
        let _ = h.swarm.disconnect(h.now, conn);
        h.drain();
        h.check();
    }
    assert_eq!(h.swarm.connected(), 0);
    assert!(h.seen.values().all(|s| !s.connection || s.closed));
});
