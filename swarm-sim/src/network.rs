//! The TCP model: reliable, ordered pipes between hosts with per-link latency and jitter.
//!
//! A pipe has two ends, the dialer's and the acceptor's. Everything sent towards one end
//! (the SYN, the accept or refusal, data, the close) is a [`Packet`] whose arrival time never
//! precedes that of an earlier packet in the same direction, so a later send never overtakes
//! an earlier one.

use crate::internet::Internet;
use crate::rng::{Modulus, SimRng};
use bytes::Bytes;
use core::time::Duration;
use std::collections::BTreeMap;
use swarm_core::{ConnId, Instant, Transport};

/// Index of a host in the simulation.
pub type HostId = usize;

/// Handle of a simulated transport connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipeId(pub u64);

/// One end of a pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Dialer = 0,
    Acceptor = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Dialer => Side::Acceptor,
            Side::Acceptor => Side::Dialer,
        }
    }
}

/// State of one end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndState {
    /// The acceptor's end before the SYN arrived.
    Pending,
    /// Owned by a core under this handle.
    Open(ConnId),
    /// Accepted by a host without a core that never sends and ignores what it receives.
    Mute,
    Closed,
}

#[derive(Clone, Copy, Debug)]
pub struct End {
    /// `None` for an address no host owns (a blackhole).
    pub host: Option<HostId>,
    pub state: EndState,
}

/// What travels through a pipe.
#[derive(Clone, Debug)]
pub enum Packet {
    /// Connection request, towards the acceptor.
    Syn,
    /// The acceptor took the connection, towards the dialer.
    Accept,
    /// Nobody listens (RST on SYN), towards the dialer.
    Refuse,
    /// Boxed, so a queued packet is 16 bytes rather than 40 (see the simulator's `Ev`).
    Data(Box<Bytes>),
    /// FIN or RST: the receiving core sees `Closed { cause: Remote }`.
    Close,
}

impl Packet {
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Syn => "syn",
            Packet::Accept => "accept",
            Packet::Refuse => "refuse",
            Packet::Data(_) => "data",
            Packet::Close => "close",
        }
    }
}

/// A simulated transport connection.
#[derive(Clone, Debug)]
pub struct Pipe {
    pub transport: Transport,
    /// The port the dialer asked for.
    pub dst_port: u16,
    pub ends: [End; 2],
    /// In a partitioned run, the end whose host another partition runs: this is one of the
    /// pipe's two copies, and that end's state here is only what it was when it was copied.
    pub remote: Option<Side>,
    latency: Duration,
    last_arrival: [Instant; 2],
    /// Application bytes sent towards each side after `connection`.
    pub app_sent: [u64; 2],
    /// Application bytes each side's application got (early data and later reads).
    pub app_recv: [u64; 2],
}

impl Pipe {
    pub fn end(&self, side: Side) -> &End {
        &self.ends[side as usize]
    }

    pub fn end_mut(&mut self, side: Side) -> &mut End {
        &mut self.ends[side as usize]
    }

    /// Which side `host` holds as `conn`.
    pub fn side_of(&self, host: HostId, conn: ConnId) -> Option<Side> {
        [Side::Dialer, Side::Acceptor].into_iter().find(|s| {
            let e = self.end(*s);
            e.host == Some(host) && e.state == EndState::Open(conn)
        })
    }

    /// Every end this copy owns is closed (a remote end's copy is never updated).
    pub fn is_done(&self) -> bool {
        [Side::Dialer, Side::Acceptor]
            .into_iter()
            .all(|s| self.end(s).state == EndState::Closed || self.remote == Some(s))
    }

    /// Both ends are held by a core or a mute host.
    pub fn is_established(&self) -> bool {
        self.ends
            .iter()
            .all(|e| matches!(e.state, EndState::Open(_) | EndState::Mute))
    }
}

/// The live pipes by id. A hash table: a 10,000-node run keeps over 300,000 of them and
/// looks one up several times per packet, which a `BTreeMap` paid for with a cache miss per
/// level. Where a walk's order reaches the trace or a report, [`in_order`](Self::in_order)
/// sorts by id.
#[derive(Default)]
pub struct PipeTable(hashbrown::HashMap<PipeId, Pipe, foldhash::fast::FixedState>);

impl PipeTable {
    pub fn get(&self, id: &PipeId) -> Option<&Pipe> {
        self.0.get(id)
    }

    pub fn get_mut(&mut self, id: &PipeId) -> Option<&mut Pipe> {
        self.0.get_mut(id)
    }

    pub(crate) fn insert(&mut self, id: PipeId, pipe: Pipe) {
        self.0.insert(id, pipe);
    }

    fn remove(&mut self, id: &PipeId) {
        self.0.remove(id);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every pipe, by id.
    pub fn in_order(&self) -> Vec<(PipeId, &Pipe)> {
        let mut all: Vec<_> = self.0.iter().map(|(id, p)| (*id, p)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }
}

impl core::ops::Index<&PipeId> for PipeTable {
    type Output = Pipe;

    fn index(&self, id: &PipeId) -> &Pipe {
        &self.0[id]
    }
}

/// Network parameters.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Range of each link's one-way base latency (drawn once per pair of hosts).
    pub latency: (Duration, Duration),
    /// Extra delay drawn per packet in `[0, jitter]` (order is still kept per direction).
    pub jitter: Duration,
    /// One-way latency of a host to itself.
    pub loopback: Duration,
    /// Sent data is split into chunks of at most `max_chunk` bytes.
    pub max_chunk: usize,
    /// Chunks have random lengths in `1..=max_chunk` (every decoder sees its input cut
    /// anywhere); otherwise each write goes as a TCP stack sends it, in whole segments of
    /// `max_chunk` and a last one with the rest.
    pub random_chunks: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: (Duration::from_millis(1), Duration::from_millis(80)),
            jitter: Duration::from_millis(20),
            loopback: Duration::from_micros(50),
            max_chunk: 16,
            random_chunks: true,
        }
    }
}

/// Index of a LAN segment (multicast domain); segment 0 always exists.
pub type SegmentId = usize;

/// A LAN segment: a multicast reaches every host on it; each delivery of a datagram to a
/// host other than its sender is lost with `loss` and doubled with `duplicate` (multicast
/// loopback to the sender is never lost).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SegmentConfig {
    pub loss: f64,
    pub duplicate: f64,
}

/// Datagram counters over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramStats {
    /// `Transmit` outputs.
    pub sent: u64,
    /// Copies handed to a core.
    pub delivered: u64,
    /// Copies dropped by a segment's loss.
    pub lost: u64,
    /// Extra copies made by a segment's duplication.
    pub duplicated: u64,
    /// Datagrams nobody could receive (no such host, no core, no socket on that port).
    pub unroutable: u64,
}

/// The pipe table, link latencies and LAN segments.
#[derive(Default)]
pub struct Network {
    pub cfg: NetConfig,
    pub pipes: PipeTable,
    pub segments: Vec<SegmentConfig>,
    pub datagrams: DatagramStats,
    /// The routed internet between segments.
    pub internet: Internet,
    /// The segment each host is on.
    pub host_segment: Vec<SegmentId>,
    /// Seeds each link's base latency (a hash of the pair: no table to grow with N²).
    pub latency_seed: u64,
    /// The spans a LAN datagram's delay is drawn from, as of construction (a changed
    /// config is still right, by division).
    lan_spans: LanSpans,
    /// Hosts cut off from the network until the given instant: their packets wait (TCP
    /// retransmits) and arrive no earlier than that plus the link latency.
    isolated: BTreeMap<HostId, Instant>,
    next_pipe: u64,
    /// Pipe ids go up by this much (a partitioned run's partitions number their pipes
    /// apart: partition `i` of `n` hands out `i, i + n, ...`).
    pipe_stride: u64,
}

/// The moduli of a LAN link's latency range and of its jitter range.
#[derive(Default)]
struct LanSpans {
    latency: Modulus,
    jitter: Modulus,
}

impl LanSpans {
    fn of(cfg: &NetConfig) -> Self {
        let (lo, hi) = (micros(cfg.latency.0), micros(cfg.latency.1));
        LanSpans {
            latency: Modulus::new(hi.saturating_sub(lo).saturating_add(1)),
            jitter: Modulus::new(micros(cfg.jitter).saturating_add(1)),
        }
    }
}

impl Network {
    pub fn new(cfg: NetConfig) -> Self {
        Network {
            lan_spans: LanSpans::of(&cfg),
            cfg,
            segments: vec![SegmentConfig::default()],
            ..Network::default()
        }
    }

    /// A network whose link latencies are drawn from `latency_seed`.
    pub fn with_seed(cfg: NetConfig, latency_seed: u64) -> Self {
        Network {
            latency_seed,
            ..Network::new(cfg)
        }
    }

    /// The one-way delay of a datagram from `a` to `b`, in µs: the link latency plus fresh
    /// jitter (datagrams may overtake each other). In whole µs rather than `Duration`s, whose
    /// conversions cost more than the rest of a multicast copy.
    pub fn datagram_delay_us(&mut self, rng: &mut SimRng, a: HostId, b: HostId) -> u64 {
        let jitter = rng.range_by(0, micros(self.cfg.jitter), &self.lan_spans.jitter);
        self.link_latency_us(a, b) + jitter
    }

    fn link_latency(&self, a: HostId, b: HostId) -> Duration {
        Duration::from_micros(self.link_latency_us(a, b))
    }

    fn link_latency_us(&self, a: HostId, b: HostId) -> u64 {
        if a == b {
            return micros(self.cfg.loopback);
        }
        let lan = self.segment(a) == self.segment(b);
        let (lo, hi) = if lan {
            self.cfg.latency
        } else {
            self.internet.wan.latency
        };
        let (lo, hi) = (micros(lo), micros(hi));
        if hi <= lo {
            return lo;
        }
        let pair = crate::rng::derive(self.latency_seed, &[a.min(b) as u64, a.max(b) as u64]);
        let width = hi - lo + 1;
        lo + if lan {
            self.lan_spans.latency.rem(pair, width)
        } else {
            pair % width
        }
    }

    /// Opens a pipe from `dialer` (holding `conn`) towards `acceptor`.
    pub fn open(
        &mut self,
        dialer: HostId,
        conn: ConnId,
        acceptor: Option<HostId>,
        dst_port: u16,
        transport: Transport,
    ) -> PipeId {
        let latency = match acceptor {
            Some(b) => self.link_latency(dialer, b),
            None => self.cfg.latency.1,
        };
        let id = PipeId(self.next_pipe);
        self.next_pipe += self.pipe_stride.max(1);
        let pipe = Pipe {
            transport,
            dst_port,
            ends: [
                End {
                    host: Some(dialer),
                    state: EndState::Open(conn),
                },
                End {
                    host: acceptor,
                    state: EndState::Pending,
                },
            ],
            remote: None,
            latency,
            last_arrival: [Instant::ZERO; 2],
            app_sent: [0; 2],
            app_recv: [0; 2],
        };
        self.pipes.insert(id, pipe);
        id
    }

    /// Numbers this network's pipes `first, first + stride, ...`.
    pub fn number_pipes(&mut self, first: u64, stride: u64) {
        self.next_pipe = first;
        self.pipe_stride = stride;
    }

    /// The segment of `h` (0 for a host the table does not know yet).
    pub fn segment(&self, h: HostId) -> SegmentId {
        self.host_segment.get(h).copied().unwrap_or(0)
    }

    /// The arrival time of `bytes` sent now towards side `to`: uplink queueing, link
    /// latency plus jitter, never before the previous packet in that direction. While a
    /// host is isolated or a partition cuts the direction, packets wait (TCP retransmits)
    /// and arrive no earlier than the heal plus the latency.
    pub fn arrival(
        &mut self,
        rng: &mut SimRng,
        now: Instant,
        pipe: PipeId,
        to: Side,
        bytes: usize,
    ) -> Instant {
        let jitter = rng.duration(Duration::ZERO, self.cfg.jitter);
        let Some(p) = self.pipes.get(&pipe) else {
            return now;
        };
        let (from_host, to_host) = (p.end(to.other()).host, p.end(to).host);
        let sent = match from_host {
            Some(h) => self.internet.departure(h, bytes, now),
            None => now,
        };
        let partition = match (from_host, to_host) {
            (Some(a), Some(b)) => {
                let (sa, sb) = (self.segment(a), self.segment(b));
                self.internet.blocked_until(sa, sb, now)
            }
            _ => None,
        };
        let Some(p) = self.pipes.get_mut(&pipe) else {
            return now;
        };
        let cut = p
            .ends
            .iter()
            .filter_map(|e| e.host.and_then(|h| self.isolated.get(&h)))
            .chain(partition.as_ref())
            .max()
            .map_or(sent, |until| (*until).max(sent));
        let at = (cut + p.latency + jitter).max(p.last_arrival[to as usize]);
        p.last_arrival[to as usize] = at;
        at
    }

    /// Whether `host` is cut off at `now` (its datagrams are lost).
    pub fn is_isolated(&self, host: HostId, now: Instant) -> bool {
        self.isolated.get(&host).is_some_and(|until| *until > now)
    }

    /// Cuts `host` off until `until` (extending an earlier cut).
    pub fn isolate(&mut self, host: HostId, until: Instant) {
        let t = self.isolated.entry(host).or_insert(until);
        *t = (*t).max(until);
    }

    /// Forgets a pipe once both ends are closed.
    pub fn gc(&mut self, pipe: PipeId) {
        if self.pipes.get(&pipe).is_some_and(Pipe::is_done) {
            self.pipes.remove(&pipe);
        }
    }
}

/// `d` in whole µs, as the virtual clock counts.
pub(crate) fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}
