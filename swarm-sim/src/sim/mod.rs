//! The simulation: hosts, the network and the event loop driving every core.
//!
//! `mod.rs` builds and runs it; [`wire`] moves packets into cores, [`driver`] carries out
//! their outputs; [`inspect`] answers questions about the state and checks quiescence.

mod actions;
mod datagram;
mod dns_server;
mod driver;
mod inspect;
mod partition;
mod prefetch;
mod route;
mod wire;

use crate::internet::{NatConfig, WanConfig};
use crate::invariants::{NodeCheck, Violation};
use crate::network::{
    EndState, HostId, NetConfig, Network, Packet, PipeId, SegmentConfig, SegmentId, Side,
};
use crate::node::{Host, HostState, Node};
use crate::queue::EventQueue;
use crate::rng::{derive, SimRng};
use crate::trace::Trace;
use core::time::Duration;
pub use partition::{Partition, Remote};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddrV4};
use swarm_core::{CloseCause, Config, ConnId, Event, Input, Instant, Swarm, UdpSocket};

/// Parameters of a run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub net: NetConfig,
    /// Keep the trace lines in memory (the hash is always computed).
    pub keep_trace: bool,
    /// Also require `connected + connecting <= max_connections` (the core admits crossing
    /// inbound connections beyond it, so this is off by default; the peak is reported).
    pub strict_total: bool,
    /// The command that replays this run, printed with every violation.
    pub replay: String,
    /// Timers fire up to this much late (a busy scheduler); 0 = on time.
    pub timer_slack: Duration,
    /// The application writes a few bytes on each new connection (checked to arrive intact
    /// as early data or later reads).
    pub app_data: bool,
    /// Report inbound addresses IPv4-mapped (`::ffff:a.b.c.d`), as a dual-stack listener does.
    pub mapped_inbound: bool,
    /// Keep every core event in memory ([`Sim::log`]); scenarios read it. Off for scale runs,
    /// where it would grow without bound.
    pub keep_log: bool,
    /// Record core events in the trace (and its hash); off for scale runs.
    pub trace_events: bool,
    /// Measure the wall time spent inside the cores (for the simulator's own overhead).
    pub measure_core: bool,
    /// A restarted host keeps its peer id (the same process configuration starting again,
    /// state lost); otherwise each incarnation draws a fresh id.
    pub restart_keeps_id: bool,
    /// Bytes the application writes on each uTP connection the core runs itself
    /// (`utp_in_core`), then shuts its side down; 0 = a greeting of 1-64 bytes with
    /// `app_data`, as on pipes.
    pub utp_payload: u64,
    /// This simulation is one partition of a larger one (see [`Partition`]); `None`: it
    /// runs every host.
    pub partition: Option<Partition>,
    /// Prefetch the state of the deliveries queued next (see `sim/prefetch.rs`) when there
    /// are at least this many hosts: below that, their state stays in the caches and the
    /// hints only cost instructions (3.7% more at 100 nodes). Hints never change the run.
    pub prefetch_min_hosts: usize,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            net: NetConfig::default(),
            keep_trace: false,
            strict_total: false,
            replay: format!("cargo run -p swarm-sim --release -- --seed {seed}"),
            timer_slack: Duration::ZERO,
            app_data: true,
            mapped_inbound: false,
            prefetch_min_hosts: 512,
            restart_keeps_id: false,
            measure_core: false,
            keep_log: true,
            trace_events: true,
            utp_payload: 0,
            partition: None,
        }
    }
}

/// An address as a table key: IPv4-mapped IPv6 as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    route::to_v4(ip)
}

/// The public address of `segment`'s NAT.
pub fn nat_public_ip(segment: SegmentId) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(100, 64, (segment >> 8) as u8, segment as u8)
}

/// Something a scenario schedules for later.
#[derive(Clone, Debug)]
pub enum Action {
    AddPeer {
        from: HostId,
        to: HostId,
    },
    RemovePeer {
        from: HostId,
        to: HostId,
    },
    /// Kill the core (its sockets are reset) and leave the host in the given state.
    Crash {
        host: HostId,
        then: HostState,
    },
    /// Start a fresh core (new id, no state) on the host.
    Restart {
        host: HostId,
    },
    /// Tear down a random established pipe.
    ResetRandom,
    /// The application closes a random established connection (with `disconnect` or by
    /// dropping the stream).
    DisconnectRandom,
    /// `disconnect` a random connection of any node, in whatever state (dialling,
    /// handshaking, waiting for the duplicate rule, established).
    DisconnectAny,
    /// Cut a host off the network for a while (packets wait, as TCP retransmits).
    Isolate {
        host: HostId,
        duration: Duration,
    },
    /// The host's core joins `topic` (announcing it if `announce`).
    Join {
        host: HostId,
        topic: bytes::Bytes,
        announce: bool,
    },
    /// The host's core leaves `topic`.
    Leave {
        host: HostId,
        topic: bytes::Bytes,
    },
    /// Call `handle_timeout` on a host's core now, whether or not a timer is due (an early
    /// wake-up must be harmless).
    Poke {
        host: HostId,
    },
    /// Cut traffic from segment `from` to segment `to` (and back unless `one_way`) for
    /// `duration`: datagrams are lost, TCP packets wait for the heal.
    Partition {
        from: SegmentId,
        to: SegmentId,
        one_way: bool,
        duration: Duration,
    },
    /// The host's monotonic clock jumps forward by `by`.
    ClockStep {
        host: HostId,
        by: Duration,
    },
    /// Faults stop: partitions heal, LAN and WAN loss, duplication, reordering and the
    /// bandwidth limit are switched off.
    Calm,
}

/// A datagram's bytes, shared by its copies in the queue. Not `Bytes`: a multicast on a
/// segment of 50 is 50 queued copies, and `Bytes` counts them with atomic increments and
/// decrements (8% of a 10,000-node run); the simulator is single-threaded.
type Payload = std::rc::Rc<[u8]>;

/// What the queue holds: kept to 32 bytes, as a busy network queues and pops one for every
/// multicast copy, and the queue's memory traffic is a large part of a step (padded to 128
/// bytes, steady minutes at 3,000 nodes took 23% longer; from 64 down to 32, 5% shorter).
enum Ev {
    Packet {
        pipe: PipeId,
        to: Side,
        packet: Packet,
    },
    Timer {
        host: HostId,
        gen: u64,
    },
    Datagram {
        host: HostId,
        socket: UdpSocket,
        /// Every simulated host and NAT is IPv4: 8 bytes here rather than `SocketAddr`'s 32
        /// (see `Ev`).
        from: SocketAddrV4,
        data: Payload,
    },
    /// Boxed: rare, and the largest inline.
    Action(Box<Action>),
}

/// How many steps were of each kind of event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepKinds {
    /// TCP pipe segments, connects, accepts, refusals and closes.
    pub packets: u64,
    /// Core timers fired (including stale ones, which cost a queue pop and nothing else).
    pub timers: u64,
    /// Datagrams arriving at a host (delivered or dropped there).
    pub datagrams: u64,
    /// Scheduled actions: joins, crashes, faults.
    pub actions: u64,
}

/// One core event, as logged.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub at: Instant,
    pub host: HostId,
    pub incarnation: u32,
    pub event: Event,
}

/// An established connection as both ends see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    pub pipe: PipeId,
    pub dialer: (HostId, ConnId),
    pub acceptor: (HostId, ConnId),
}

/// The simulator.
pub struct Sim {
    cfg: SimConfig,
    /// Events for hosts another partition runs, by partition, in the order they arose.
    outbox: Vec<Vec<Remote>>,
    now: Instant,
    queue: EventQueue<Ev>,
    rng: SimRng,
    net: Network,
    hosts: Vec<Host>,
    /// Looked up for every dial and unicast datagram, never walked: a B-tree of 10,000
    /// addresses was several cache misses a lookup.
    by_ip: hashbrown::HashMap<IpAddr, HostId, foldhash::fast::FixedState>,
    trace: Trace,
    log: Vec<LogEntry>,
    steps: u64,
    /// Steps by kind, for the scale report.
    step_kinds: StepKinds,
    /// Where in a host's record a datagram's handling reads (see `prefetch`).
    host_lines: prefetch::HostLines,
    /// Named instants a scenario measured (e.g. when a mesh converged).
    marks: Vec<(&'static str, Instant)>,
    /// Named figures a scenario measured (e.g. pairs NAT keeps apart).
    counts: Vec<(&'static str, usize)>,
    /// The hosts on each segment (multicast fan-out without scanning every host).
    members: Vec<Vec<HostId>>,
    /// What each host receives datagrams on, by host (see `datagram::Sockets`).
    sockets: Vec<datagram::Sockets>,
    /// Wall time spent inside cores, if measured.
    core_time: core::time::Duration,
}

type SimResult<T = ()> = Result<T, Violation>;

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let mut sim = Sim {
            now: Instant::ZERO,
            queue: EventQueue::default(),
            rng: SimRng::new(derive(cfg.seed, &[0])),
            net: Network::with_seed(cfg.net.clone(), derive(cfg.seed, &[5])),
            hosts: Vec::new(),
            by_ip: Default::default(),
            trace: Trace::new(cfg.keep_trace),
            log: Vec::new(),
            steps: 0,
            step_kinds: StepKinds::default(),
            host_lines: prefetch::HostLines::default(),
            marks: Vec::new(),
            counts: Vec::new(),
            core_time: Duration::ZERO,
            members: vec![Vec::new()],
            sockets: Vec::new(),
            outbox: Vec::new(),
            cfg,
        };
        if let Some(p) = sim.cfg.partition {
            assert!(p.index < p.count, "partition {} of {}", p.index, p.count);
            sim.net.number_pipes(p.index as u64, p.count as u64);
            sim.outbox = (0..p.count).map(|_| Vec::new()).collect();
        }
        sim
    }

    /// A configuration template for [`Sim::add_node`]: discovery-swarm's defaults.
    pub fn node_config() -> Config {
        Config::new(vec![0u8; 32], 0)
    }

    // ----- building -----

    /// Adds a host running a core built from `template` (its id and seed are replaced by
    /// values derived from the run seed) and starts it.
    pub fn add_node(&mut self, template: Config) -> HostId {
        let h = self.push_host(HostState::Running, Some(template));
        self.start(h);
        h
    }

    /// Adds a LAN segment (multicast domain); hosts start on segment 0, which is lossless.
    pub fn add_segment(&mut self, cfg: SegmentConfig) -> SegmentId {
        self.net.segments.push(cfg);
        self.members.push(Vec::new());
        self.net.segments.len() - 1
    }

    /// Changes a segment's loss and duplication odds (segment 0 included).
    pub fn set_segment(&mut self, segment: SegmentId, cfg: SegmentConfig) {
        self.net.segments[segment] = cfg;
    }

    /// Adds a host on `segment` running a core built from `template`, and starts it.
    pub fn add_node_on(&mut self, segment: SegmentId, template: Config) -> HostId {
        assert!(segment < self.net.segments.len(), "no segment {segment}");
        let h = self.push_host(HostState::Running, Some(template));
        self.hosts[h].segment = segment;
        self.net.host_segment[h] = segment;
        self.members[0].retain(|m| *m != h);
        self.members[segment].push(h);
        if !self.owns(h) {
            // Another partition runs it (and starts it, and restarts it).
            self.hosts[h].template = None;
        }
        self.start(h);
        h
    }

    /// Puts `segment` (not 0) behind a NAT; its public address is `100.64.0.<segment>`.
    pub fn add_nat(&mut self, segment: SegmentId, cfg: NatConfig) {
        assert!(segment > 0, "segment 0 is the public internet");
        // Routing into a NAT reads its mappings, which the NAT's own partition changes.
        assert!(self.cfg.partition.is_none(), "no NAT in a partitioned run");
        self.net
            .internet
            .add_nat(segment, cfg, nat_public_ip(segment));
    }

    /// Sets the wide-area link parameters.
    pub fn set_wan(&mut self, wan: WanConfig) {
        self.net.internet.wan = wan;
    }

    /// The public address of `segment`'s NAT, if it has one.
    pub fn nat_ip(&self, segment: SegmentId) -> Option<IpAddr> {
        let nat = self.net.internet.nats.get(&segment)?;
        Some(IpAddr::V4(nat.public_ip))
    }

    /// Adds a host without a core in the given state (`Mute`, `Refusing` or `Blackholed`).
    pub fn add_host(&mut self, state: HostState) -> HostId {
        assert_ne!(state, HostState::Running, "use add_node for a running host");
        self.push_host(state, None)
    }

    fn push_host(&mut self, state: HostState, template: Option<Config>) -> HostId {
        let h = self.hosts.len();
        let host = Host::new(h, state, template);
        self.net.host_segment.push(host.segment);
        self.members[host.segment].push(h);
        self.sockets.push(datagram::Sockets::of(&host));
        self.by_ip.insert(IpAddr::V4(host.ip), h);
        self.hosts.push(host);
        h
    }

    fn start(&mut self, h: HostId) {
        if !self.owns(h) {
            return;
        }
        let seed = self.cfg.seed;
        let host = &mut self.hosts[h];
        let mut config = host
            .template
            .as_deref()
            .cloned()
            .expect("host has no core template");
        host.incarnation += 1;
        let inc = u64::from(host.incarnation);
        let id_len = config.id.len().max(1);
        let id_inc = if self.cfg.restart_keeps_id { 1 } else { inc };
        config.id = SimRng::new(derive(seed, &[1, h as u64, id_inc]))
            .bytes(id_len)
            .into();
        config.seed = derive(seed, &[2, h as u64, inc]);
        if let Some(dht) = config.dht.as_mut() {
            // Each host its own DHT node id (the template's is shared).
            let fresh = swarm_core::dht::DhtConfig::new(derive(seed, &[4, h as u64, id_inc]));
            dht.id = fresh.id;
            dht.seed = fresh.seed;
        }
        if let Some(mdns) = config.mdns.as_mut() {
            // Each incarnation its own token secret and round jitter, and its LAN address.
            let mut rng = SimRng::new(derive(seed, &[3, h as u64, inc]));
            mdns.secret.copy_from_slice(&rng.bytes(32));
            mdns.seed = rng.next_u64();
            mdns.local_ip = Some(host.ip);
        }
        let mut core = Swarm::new(config).expect("invalid node configuration");
        let now = self.now + host.clock_offset;
        core.handle_input(now, Input::Listening { port: host.port });
        // The application joins its topics again.
        for (topic, announce) in &host.topics {
            core.join(now, topic.clone(), *announce);
        }
        let check = NodeCheck::new(&core, self.cfg.strict_total);
        host.node = Some(Box::new(Node {
            mdns: core.config().mdns.is_some(),
            core,
            conns: BTreeMap::new(),
            armed: None,
            queued_at: None,
            app_bytes: 0,
            held: BTreeMap::new(),
            utp_apps: BTreeMap::new(),
            check,
        }));
        host.state = HostState::Running;
        self.sockets[h] = datagram::Sockets::of(host);
        self.sim_line(format!("start n{h} inc={inc}"));
        // Cannot fail: only events of a fresh core are checked.
        self.after(h).expect("fresh core broke an invariant");
    }

    /// Schedules `action` at `at` (not before now). A partition keeps only the actions on
    /// its own hosts.
    pub fn schedule(&mut self, at: Instant, action: Action) {
        if self.cfg.partition.is_some() && !self.owns(partition::action_host(&action)) {
            return;
        }
        self.queue
            .push(at.max(self.now), Ev::Action(Box::new(action)));
    }

    // ----- commands (applied now) -----

    /// `from` learns `to`'s address (no topic), as `add_peer` or rediscovery would.
    pub fn add_peer(&mut self, from: HostId, to: HostId) -> SimResult {
        let addr = self.addr(to);
        self.with_core(from, |core, now| core.add_peer(now, None, addr))
    }

    /// `from` bans `to`'s address.
    pub fn remove_peer(&mut self, from: HostId, to: HostId) -> SimResult {
        let addr = self.addr(to);
        self.with_core(from, |core, _| core.remove_peer(None, addr))
    }

    /// The application on `host` closes `conn`.
    pub fn disconnect(&mut self, host: HostId, conn: ConnId) -> SimResult {
        self.with_core(host, |core, now| {
            let _ = core.disconnect(now, conn);
        })
    }

    /// The application on `host` drops `conn`'s stream: the socket closes and the driver
    /// reports `Closed { cause: Local }`.
    pub fn drop_stream(&mut self, h: HostId, conn: ConnId) -> SimResult {
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Ok(());
        };
        let Some(pipe) = node.conns.remove(&conn) else {
            return Ok(());
        };
        if let Some(side) = self.net.pipes.get(&pipe).and_then(|p| p.side_of(h, conn)) {
            self.close_end(pipe, side);
        }
        let cause = CloseCause::Local;
        self.input(h, Input::Closed { conn, cause })
    }

    /// Runs `f` on a running host's core, then drains its outputs. No-op if it is down.
    pub fn with_core(&mut self, h: HostId, f: impl FnOnce(&mut Swarm, Instant)) -> SimResult {
        let now = self.host_now(h);
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Ok(());
        };
        f(&mut node.core, now);
        self.after(h)
    }

    /// Kills the core on `h`: the OS resets its connections (peers see them close after the
    /// link latency), and the host stays in `then` (`Refusing`, `Blackholed` or `Mute`).
    pub fn crash(&mut self, h: HostId, then: HostState) {
        assert_ne!(then, HostState::Running, "a crashed host is not running");
        let ends: Vec<(PipeId, Side)> = self
            .net
            .pipes
            .in_order()
            .into_iter()
            .flat_map(|(id, p)| {
                [Side::Dialer, Side::Acceptor]
                    .into_iter()
                    .filter_map(move |s| {
                        let e = p.end(s);
                        let live = matches!(e.state, EndState::Open(_) | EndState::Mute);
                        (e.host == Some(h) && live).then_some((id, s))
                    })
            })
            .collect();
        for (pipe, side) in ends {
            self.close_end(pipe, side);
        }
        let host = &mut self.hosts[h];
        host.node = None;
        host.state = then;
        host.timer_gen += 1;
        self.sockets[h] = datagram::Sockets::of(host);
        self.sim_line(format!("crash n{h} then={}", then.as_str()));
    }

    /// Starts a fresh core on a crashed host.
    pub fn restart(&mut self, h: HostId) {
        if self.hosts[h].node.is_none() {
            self.start(h);
        }
    }

    /// Tears down an established pipe: both ends see it close after the link latency.
    pub fn reset_pipe(&mut self, pipe: PipeId) {
        let Some(p) = self.net.pipes.get(&pipe) else {
            return;
        };
        if !p.is_established() {
            return;
        }
        self.sim_line(format!("reset pipe {}", pipe.0));
        for to in [Side::Dialer, Side::Acceptor] {
            self.send(pipe, to, Packet::Close);
        }
    }

    /// Resets a random established pipe; returns it.
    pub fn reset_random(&mut self) -> Option<PipeId> {
        let live: Vec<PipeId> = self
            .net
            .pipes
            .in_order()
            .into_iter()
            .filter(|(_, p)| p.is_established())
            .map(|(id, _)| id)
            .collect();
        if live.is_empty() {
            return None;
        }
        let pipe = live[self.rng.index(live.len())];
        self.reset_pipe(pipe);
        Some(pipe)
    }

    // ----- running -----

    /// Processes the next queued event. Returns false if the queue was empty.
    pub fn step(&mut self) -> SimResult<bool> {
        let Some((at, ev)) = self.queue.pop() else {
            return Ok(false);
        };
        self.now = self.now.max(at);
        self.steps += 1;
        self.prefetch_ahead();
        let kinds = &mut self.step_kinds;
        match ev {
            Ev::Packet { pipe, to, packet } => {
                kinds.packets += 1;
                self.deliver(pipe, to, packet)?
            }
            Ev::Timer { host, gen } => {
                kinds.timers += 1;
                self.fire_timer(host, gen)?
            }
            Ev::Datagram {
                host,
                socket,
                from,
                data,
            } => {
                kinds.datagrams += 1;
                self.on_datagram(host, socket, from, data)?
            }
            Ev::Action(action) => {
                kinds.actions += 1;
                self.apply(*action)?
            }
        }
        Ok(true)
    }

    /// Runs every event due up to and including `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) -> SimResult {
        while self.queue.peek_time().is_some_and(|at| at <= t) {
            self.step()?;
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) -> SimResult {
        self.run_until(self.now + d)
    }

    /// Runs until nothing is left to happen (no packet in flight, no timer armed), then
    /// checks the quiescence invariants. Fails if that takes longer than `limit`.
    pub fn run_to_quiescence(&mut self, limit: Duration) -> SimResult {
        let deadline = self.now + limit;
        while let Some(at) = self.queue.peek_time() {
            if at > deadline {
                return Err(self.violation(format!(
                    "not quiescent within {limit:?}: {} events pending",
                    self.queue.len()
                )));
            }
            self.step()?;
        }
        self.check_quiescence()
    }

    fn fire_timer(&mut self, h: HostId, gen: u64) -> SimResult {
        if self.hosts[h].dns.is_some() {
            return self.fire_dns_timer(h, gen);
        }
        if self.hosts[h].timer_gen != gen {
            return Ok(());
        }
        let now = self.host_now(h);
        let measure = self.cfg.measure_core.then(std::time::Instant::now);
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Ok(());
        };
        node.armed = None;
        node.queued_at = None;
        node.core.handle_timeout(now);
        if let Some(t) = measure {
            self.core_time += t.elapsed();
        }
        self.after(h)
    }

    /// Wall time spent inside the cores' `handle_*` calls (with `measure_core`).
    pub fn core_time(&self) -> Duration {
        self.core_time
    }

    /// Records a named figure for the report.
    pub fn mark_count(&mut self, name: &'static str, n: usize) {
        self.counts.push((name, n));
    }

    /// The figures the scenario recorded.
    pub fn counts(&self) -> &[(&'static str, usize)] {
        &self.counts
    }

    /// Records a named instant for the report.
    pub fn mark(&mut self, name: &'static str, at: Instant) {
        self.marks.push((name, at));
    }

    /// The time on `h`'s own clock.
    pub fn host_now(&self, h: HostId) -> Instant {
        self.now + self.hosts[h].clock_offset
    }

    fn node_mut(&mut self, h: HostId) -> &mut Node {
        self.hosts[h].node.as_mut().expect("running host")
    }

    /// Adds a scenario's line to the trace (what the run is about, readable).
    pub fn note(&mut self, what: String) {
        self.sim_line(what);
    }

    fn sim_line(&mut self, what: String) {
        self.trace.record(self.now, "sim", &what);
    }

    /// A failure at the current time, carrying the seed and replay command.
    pub fn violation(&self, message: String) -> Violation {
        Violation {
            seed: self.cfg.seed,
            at: self.now,
            message,
            replay: self.cfg.replay.clone(),
            trace: self
                .trace
                .lines()
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// See [`Ev`].
    #[test]
    fn a_queued_event_is_small() {
        let size = core::mem::size_of::<Ev>();
        assert!(size <= 32, "{size} bytes");
    }
}
