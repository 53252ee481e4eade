//! The swarm: the connection manager composing the candidate table, dials, handshakes and the
//! duplicate rule. The only type drivers talk to. Split by concern: `dial` (candidates and
//! dial attempts), `conn` (handshakes, the duplicate rule, closing).

mod conn;
mod dial;
mod discovery;
mod utp;

use crate::config::{Config, ConfigError};
use crate::dedup::Side;
use crate::event::{BanReason, ConnInfo, Event, PeerSource, RejectReason, Stats, Transport};
use crate::handshake::encode_handshake;
use crate::peer::{normalize_addr, PeerKey, PeerTable};
use crate::registry::Registry;
use crate::time::Instant;
use crate::{new_map, Map};
use bytes::Bytes;
use conn::{Conn, ConnState};
use dial::{Attempt, AttemptId};
use discovery::Topic;
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
pub use utp::StreamError;

/// Handle of one transport connection, chosen by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who ended a connection, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The application closed or dropped it: not a failure, never redialled.
    Local,
    /// End of stream, reset or I/O error from the network.
    Remote,
}

/// The UDP sockets a swarm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UdpSocket {
    /// Multicast DNS: port 5353, the mDNS group joined.
    Mdns,
    /// The swarm's own port (the TCP port's number): uTP, the DHT, and unicast DNS when uTP
    /// is on.
    Swarm,
    /// Unicast DNS when uTP is off: its own socket on a random port (PROTOCOLS.md 1.11).
    Dns,
}

/// Something that happened outside the core.
#[derive(Clone, Debug)]
pub enum Input<'a> {
    /// A datagram arrived on one of the swarm's UDP sockets.
    Datagram {
        socket: UdpSocket,
        from: SocketAddr,
        data: &'a [u8],
    },
    /// The listener is bound.
    Listening { port: u16 },
    /// An outbound transport connection requested by [`Output::Dial`] is established.
    Connected { conn: ConnId },
    /// An outbound transport connection could not be established.
    DialFailed { conn: ConnId },
    /// Bytes arrived on a connection that is still handshaking ([`Swarm::wants_read`]).
    Received { conn: ConnId, data: &'a [u8] },
    /// A connection is gone (not reported for connections the core closed itself).
    Closed { conn: ConnId, cause: CloseCause },
    /// A discovery mechanism found `addr` for `topic`.
    Discovered {
        topic: &'a [u8],
        addr: SocketAddr,
        source: PeerSource,
    },
}

/// Something the driver must do, or tell the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a transport connection to `addr`; answer with `Connected` or `DialFailed`.
    /// Only TCP when the core runs uTP itself (`Config::utp_in_core`).
    Dial {
        conn: ConnId,
        addr: SocketAddr,
        transport: Transport,
    },
    /// Write `data` to the connection.
    Send { conn: ConnId, data: Bytes },
    /// Close the connection; the core has already forgotten it.
    Close { conn: ConnId },
    /// Send a datagram; UDP may drop it, and the protocols above expect that.
    Transmit {
        socket: UdpSocket,
        to: SocketAddr,
        data: Bytes,
    },
    /// Tell the application.
    Event(Event),
    /// A uTP stream the application owns has data, end of stream or an error to read
    /// ([`Swarm::stream_read`]). Edge-triggered: given again only after a read found nothing.
    StreamReadable(ConnId),
    /// A uTP stream whose write was short or refused has room again, or ended.
    StreamWritable(ConnId),
}

/// Errors of the commands that name a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// No such connection (never existed, or already closed).
    UnknownConnection,
    /// The connection is not waiting for an external handshake.
    NotHandshaking,
    /// The reported remote id is empty or longer than the cap.
    BadId,
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CommandError::UnknownConnection => "unknown connection",
            CommandError::NotHandshaking => "connection is not handshaking",
            CommandError::BadId => "remote id is empty or too long",
        })
    }
}

impl std::error::Error for CommandError {}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ConnectTimeout(AttemptId),
    UtpGrace(AttemptId),
    Handshake(ConnId),
    Retry(Box<PeerKey>),
    DhtRound(Bytes),
}

/// Pending (id not yet known) connections per host, by transport and direction, so the
/// deferral check costs O(1) however many connections are held.
#[derive(Clone, Copy, Debug, Default)]
struct PendingCounts([u32; 4]);

impl PendingCounts {
    fn slot(side: Side) -> usize {
        usize::from(side.transport == Transport::Utp) * 2 + usize::from(side.initiator)
    }
}

/// Outputs whose room the queue keeps once drained. A DHT lookup that reports hundreds of
/// peers queues an event for each at once; keeping that room for good cost a simulated
/// 1,000-node swarm 28 KB a node, an eighth of its memory.
const OUTPUTS_KEPT: usize = 32;

/// The sans-IO swarm. See the crate docs for the driver loop.
///
/// Fields in a fixed order, what handling a datagram reads first: on a host running
/// thousands of swarms (the simulator at 10,000 nodes) each datagram finds its swarm
/// evicted from the caches, and the lines it reads are its cost. Left to the compiler, the
/// few fields a repeated mDNS answer reads were spread over 20 of the swarm's 60 lines.
#[repr(C)]
pub struct Swarm {
    /// Ordered, so a timer that is no longer needed (a completed handshake) is removed rather
    /// than left to expire.
    timers: crate::deadlines::Deadlines<Timer>,
    outputs: VecDeque<Output>,
    /// Dials in flight plus connections from `handshaking` until closed (Node's
    /// `totalConnections`).
    total: usize,
    established: usize,
    /// Room for the peers one pump finds, kept between pumps (see [`discovery::Found`]).
    found: Vec<discovery::Found>,
    /// The uTP socket on the swarm port and its streams, when uTP is enabled (boxed: every
    /// input asks whether it is there, and inline it would push the rest apart).
    utp: Option<Box<utp::UtpState>>,
    /// Unicast dns-discovery servers, when configured (boxed, as `utp`).
    dns: Option<Box<crate::dnsd::DnsClient>>,
    /// Multicast DNS discovery, when enabled.
    mdns: Option<crate::mdns::MdnsDiscovery>,
    /// The Mainline DHT node, when enabled.
    dht: Option<crate::dht::DhtNode>,
    peers: PeerTable,
    config: Config,
    handshake_bytes: Bytes,
    rng: Xoshiro256PlusPlus,
    conns: Map<ConnId, Conn>,
    attempts: Map<AttemptId, Attempt>,
    registry: Registry,
    pending: Map<IpAddr, PendingCounts>,
    deferred: Map<IpAddr, Vec<ConnId>>,
    topics: Map<Bytes, Topic>,
    topic_by_hash: Map<crate::dht::NodeId, Bytes>,
    next_id: u64,
    port: Option<u16>,
    stats: Stats,
}

impl Swarm {
    /// A swarm with the given configuration.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let seed = config.seed;
        let dht = config
            .dht
            .clone()
            .map(|dht| crate::dht::DhtNode::new(dht, Instant::ZERO));
        let mdns = config.mdns.clone().map(|mut mdns| {
            mdns.hash = config.topic_hash.clone();
            crate::mdns::MdnsDiscovery::new(mdns)
        });
        let utp = (config.utp && config.utp_in_core).then(|| Box::new(utp::UtpState::new(seed)));
        let dns = discovery::dns_client(&config).map(Box::new);
        Ok(Swarm {
            handshake_bytes: encode_handshake(&config.id),
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            config,
            outputs: VecDeque::new(),
            timers: Default::default(),
            conns: new_map(seed),
            attempts: new_map(seed),
            peers: PeerTable::new(seed),
            registry: Registry::new(seed),
            pending: new_map(seed),
            deferred: new_map(seed),
            topics: new_map(seed),
            topic_by_hash: new_map(seed),
            dht,
            mdns,
            utp,
            dns,
            total: 0,
            established: 0,
            next_id: 0,
            port: None,
            stats: Stats::default(),
            found: Vec::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Our peer id.
    pub fn id(&self) -> &Bytes {
        &self.config.id
    }

    /// Established connections (Node's `connected`).
    pub fn connected(&self) -> usize {
        self.established
    }

    /// Dials in flight and connections still handshaking (Node's `connecting`).
    pub fn connecting(&self) -> usize {
        self.total - self.established
    }

    /// Candidates waiting in the dial queue (Node's `queued`).
    pub fn queued(&self) -> usize {
        self.peers.queued()
    }

    /// Candidate peers remembered (queued, waiting, dialling, connected, idle or banned).
    pub fn known_peers(&self) -> usize {
        self.peers.len()
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The listening port the driver reported, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Joined topics and whether each is announced.
    pub fn topics(&self) -> impl Iterator<Item = (&Bytes, bool)> {
        self.topics.iter().map(|(t, state)| (t, state.announce))
    }

    /// The next output, if any. New outputs appear after any `handle_*` call or command.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() && self.utp.is_some() {
            // uTP datagrams go last, after the whole batch of inputs and commands.
            self.flush_utp();
        }
        let next = self.outputs.pop_front();
        if next.is_none() && self.outputs.capacity() > OUTPUTS_KEPT {
            self.outputs.shrink_to(OUTPUTS_KEPT);
        }
        next
    }

    /// The next instant at which [`Swarm::handle_timeout`] has work. May be early (a timer
    /// that was cancelled); calling `handle_timeout` then does nothing. Changes after any
    /// `handle_*` call or command.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.first_at();
        Instant::earliest(
            own,
            Instant::earliest(self.discovery_timeout(), self.utp_timeout()),
        )
    }

    /// Where the state lies, in the swarm itself, that handling a datagram on `socket`
    /// reads, for a driver that knows its next inputs before it hands them in (a
    /// simulator's event queue, a batch of received datagrams) and wants to prefetch that
    /// memory while it works on earlier ones: `line` is called with an address in each
    /// cache line to fetch. The addresses are of fields, the same for every swarm relative
    /// to its own address. A hint only: nothing is read through them, and ignoring them
    /// changes nothing. [`datagram_table_hints`](Self::datagram_table_hints) names what the
    /// swarm's pointers lead to.
    ///
    /// Why: on a host running thousands of swarms (the simulator at 10,000 nodes), each
    /// datagram finds its swarm's state evicted since the previous one, and reading it is a
    /// chain of cache misses that prefetching ahead overlaps.
    pub fn datagram_hints(&self, socket: UdpSocket, mut line: impl FnMut(*const u8)) {
        // What every input and the driver's `poll_output`/`poll_timeout` that follow read:
        // the swarm's head, its tables' counts, the engines' next deadlines.
        crate::lines_between(&self.timers, &self.mdns, &mut line);
        line(crate::line_of(&self.peers));
        line(crate::line_of(&self.mdns));
        if let Some(dht) = &self.dht {
            dht.timer_hints(&mut line);
        }
        if let (UdpSocket::Mdns, Some(mdns)) = (socket, &self.mdns) {
            mdns.datagram_hints(&mut line);
        }
    }

    /// The other half of [`datagram_hints`](Self::datagram_hints): lines outside the swarm
    /// that handling a datagram from `from` on `socket` reads, found through its pointers
    /// (so best asked once the swarm's own lines are in cache).
    pub fn datagram_table_hints(
        &self,
        socket: UdpSocket,
        from: SocketAddr,
        mut line: impl FnMut(*const u8),
    ) {
        if let (UdpSocket::Mdns, Some(mdns)) = (socket, &self.mdns) {
            mdns.table_hints(from, &mut line);
        }
    }

    /// Whether the driver should read from `conn` and pass the bytes in as
    /// [`Input::Received`]: true only while the built-in handshake is incomplete. After that
    /// the stream belongs to the application.
    pub fn wants_read(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(&c.state, ConnState::Handshaking(h) if h.decoder.is_some()))
    }

    /// The current information about a live connection.
    pub fn conn_info(&self, conn: ConnId) -> Option<&ConnInfo> {
        self.conns.get(&conn).map(|c| &c.info)
    }

    /// Applies one input.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        self.utp_tick(now);
        match input {
            Input::Listening { port } => {
                self.port = Some(port);
                self.emit(Event::Listening { port });
                self.start_discovery(now);
            }
            Input::Connected { conn } => self.on_connected(now, conn),
            Input::DialFailed { conn } => self.on_dial_closed(now, conn),
            Input::Received { conn, data } => self.on_received(now, conn, data),
            Input::Closed { conn, cause } => {
                if matches!(
                    self.conns.get(&conn).map(|c| &c.state),
                    Some(ConnState::Dialing(_))
                ) {
                    self.on_dial_closed(now, conn);
                } else {
                    self.close(now, conn, cause, false);
                }
            }
            Input::Discovered {
                topic,
                addr,
                source,
            } => {
                let topic = Bytes::copy_from_slice(topic);
                self.discovered(now, Some(topic), addr, source);
            }
            Input::Datagram { socket, from, data } => self.on_datagram(now, socket, from, data),
        }
        self.pump_utp();
    }

    /// Routes a datagram to the protocol that owns it.
    fn on_datagram(&mut self, now: Instant, socket: UdpSocket, from: SocketAddr, data: &[u8]) {
        match socket {
            UdpSocket::Swarm => self.on_swarm_datagram(now, from, data),
            UdpSocket::Mdns => self.on_mdns_datagram(now, from, data),
            UdpSocket::Dns => {
                self.on_dns_datagram(now, from, data);
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.utp_tick(now);
        while self.timers.first_at().is_some_and(|at| at <= now) {
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::ConnectTimeout(attempt) => self.on_connect_timeout(now, attempt),
                Timer::UtpGrace(attempt) => self.on_utp_grace(now, attempt),
                Timer::Handshake(conn) => self.on_handshake_timeout(now, conn),
                Timer::Retry(key) => self.on_retry(now, *key),
                Timer::DhtRound(topic) => self.on_dht_round(now, topic),
            }
        }
        self.handle_discovery_timeout(now);
        self.handle_utp_timeout(now);
    }

    /// Joins `topic`: discovery announces it if `announce` is set and looks it up either way,
    /// now if listening, else once listening; rejoining only updates `announce`.
    pub fn join(&mut self, now: Instant, topic: impl Into<Bytes>, announce: bool) {
        self.join_topic(now, topic.into(), announce);
    }

    /// Leaves `topic`: it is no longer announced or looked up, whether or not it was
    /// announced. Connections stay. Returns whether the topic was joined.
    pub fn leave(&mut self, topic: &[u8]) -> bool {
        self.leave_topic(topic)
    }

    /// The DHT's id and the contacts worth saving for the next run (restore them with
    /// [`crate::dht::DhtConfig`]'s `id` and `contacts`); `None` without the DHT.
    pub fn dht_state(&self, now: Instant) -> Option<crate::dht::DhtState> {
        self.dht.as_ref().map(|dht| crate::dht::DhtState {
            id: dht.id(),
            contacts: dht.contacts(now),
        })
    }

    /// Adds DHT bootstrap nodes after start (a driver resolving router names does this when
    /// the names resolve): bootstraps through them and runs every joined topic's DHT round
    /// again at once, since earlier rounds may have had no node to ask.
    pub fn add_dht_bootstrap(&mut self, now: Instant, addrs: &[SocketAddr]) {
        let Some(dht) = self.dht.as_mut() else {
            return;
        };
        dht.add_bootstrap(now, addrs.iter().copied());
        if self.port.is_some() {
            let topics: Vec<Bytes> = self.topics.keys().cloned().collect();
            for topic in topics {
                self.dht_round(now, topic);
            }
        }
        self.pump_discovery(now);
    }

    /// Adds a candidate peer by hand; it takes the same path as a discovered one.
    pub fn add_peer(&mut self, now: Instant, topic: Option<&[u8]>, addr: SocketAddr) {
        self.discovered(
            now,
            topic.map(Bytes::copy_from_slice),
            addr,
            PeerSource::Manual,
        );
    }

    /// Bans a candidate (Node's `removePeer`): it is never dialled again; existing connections
    /// are not touched.
    pub fn remove_peer(&mut self, topic: Option<&[u8]>, addr: SocketAddr) {
        let key = PeerKey {
            addr: normalize_addr(addr),
            topic: topic.map(Bytes::copy_from_slice),
        };
        self.ban(key, BanReason::Application);
    }

    /// Decides on an inbound transport connection from `remote`. On `Ok` the connection is
    /// handshaking under the returned handle; on `Err` the driver closes it.
    pub fn accept(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        transport: Transport,
    ) -> Result<ConnId, RejectReason> {
        let conn = self.admit(now, remote, transport)?;
        self.begin_handshake(now, conn);
        Ok(conn)
    }

    /// The admission half of [`Swarm::accept`]: the connection is held, its handshake not
    /// begun.
    fn admit(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        transport: Transport,
    ) -> Result<ConnId, RejectReason> {
        let remote = normalize_addr(remote);
        let refusal = if !self.whitelisted(remote.ip()) {
            Some(RejectReason::Whitelist)
        } else if self.at_capacity() && !self.may_be_crossing(remote.ip()) && !self.yield_dial() {
            Some(RejectReason::MaxConnections)
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.stats.inbound_refused += 1;
            self.emit(Event::PeerRejected {
                addr: remote,
                topic: None,
                reason,
            });
            return Err(reason);
        }
        let conn = self.next_conn();
        let info = ConnInfo {
            transport,
            initiator: false,
            addr: remote,
            topic: None,
            id: None,
        };
        self.insert_conn(
            conn,
            Conn {
                info,
                state: ConnState::Settling(now),
                discovery_key: None,
            },
        );
        self.total += 1;
        self.stats.inbound_accepted += 1;
        Ok(conn)
    }

    /// Completes the handshake of a connection in [`HandshakeMode::External`](crate::HandshakeMode::External): the
    /// application's protocol reported the remote id and optional discovery key.
    pub fn complete_handshake(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote_id: &[u8],
        discovery_key: Option<&[u8]>,
    ) -> Result<(), CommandError> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(CommandError::UnknownConnection)?;
        if !matches!(&c.state, ConnState::Handshaking(h) if h.decoder.is_none()) {
            return Err(CommandError::NotHandshaking);
        }
        if remote_id.is_empty() || remote_id.len() > self.config.max_id_len {
            return Err(CommandError::BadId);
        }
        c.discovery_key = discovery_key.map(|k| Box::new(Bytes::copy_from_slice(k)));
        self.on_handshake(now, conn, Arc::from(remote_id), Bytes::new());
        Ok(())
    }

    /// Closes a connection at the application's request. Not a failure: never redialled.
    pub fn disconnect(&mut self, now: Instant, conn: ConnId) -> Result<(), CommandError> {
        self.utp_tick(now);
        if !self.conns.contains_key(&conn) {
            // A uTP stream the network ended, still held for its buffered data.
            if self.release_ended_stream(conn) {
                return Ok(());
            }
            return Err(CommandError::UnknownConnection);
        }
        if matches!(self.conns[&conn].state, ConnState::Dialing(_)) {
            self.close_transport(conn);
            self.on_dial_closed(now, conn);
        } else {
            self.close(now, conn, CloseCause::Local, true);
        }
        Ok(())
    }

    // ----- bookkeeping -----

    fn insert_conn(&mut self, conn: ConnId, c: Conn) {
        let counts = self.pending.entry(c.info.addr.ip()).or_default();
        counts.0[PendingCounts::slot(c.side())] += 1;
        self.conns.insert(conn, c);
    }

    /// Drops a connection's state; the caller handles counters and events.
    fn remove_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if c.is_pending() {
                self.unpend(c.info.addr.ip(), c.side());
            }
            crate::shrink_if_sparse(&mut self.conns);
        }
    }

    fn unpend(&mut self, ip: IpAddr, side: Side) {
        if let Some(counts) = self.pending.get_mut(&ip) {
            let slot = &mut counts.0[PendingCounts::slot(side)];
            *slot = slot.saturating_sub(1);
            if counts.0 == [0; 4] {
                self.pending.remove(&ip);
                crate::shrink_if_sparse(&mut self.pending);
            }
        }
    }

    fn next_conn(&mut self) -> ConnId {
        ConnId(self.bump())
    }

    fn bump(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn arm(&mut self, at: Instant, timer: Timer) {
        self.timers.insert(at, timer);
    }

    fn emit(&mut self, event: Event) {
        tracing::debug!(event = event.name(), "swarm event");
        self.outputs.push_back(Output::Event(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_outputs_does_not_keep_its_room_once_drained() {
        let mut swarm = Swarm::new(Config::new(vec![7; 32], 1)).expect("valid config");
        let now = Instant::from_micros(0);
        for i in 0..200u16 {
            swarm.add_peer(now, None, SocketAddr::from(([10, 0, 1, 1], 1000 + i)));
        }
        let burst = swarm.outputs.len();
        assert!(burst > 4 * OUTPUTS_KEPT, "only {burst} outputs queued");
        let drained = std::iter::from_fn(|| swarm.poll_output()).count();
        assert_eq!(drained, burst);
        assert!(swarm.outputs.capacity() <= OUTPUTS_KEPT);
    }

    /// An mDNS answer naming `n` peers of "ubuntu-14.04" (the Mainline name of the topic).
    fn answer_naming(n: u16) -> Vec<u8> {
        use crate::mdns::{txt, wire};
        let name = b"30b411f5ef231e34acc17e0065a8fed2d72116fd.dns-discovery.local";
        let entries: Vec<std::net::SocketAddrV4> = (0..n)
            .map(|i| std::net::SocketAddrV4::new([10, 1, (i >> 8) as u8, i as u8].into(), 9000))
            .collect();
        let mut w = wire::Writer::default();
        w.start(
            wire::FLAGS_RESPONSE,
            0,
            txt::answer_count(entries.len()) as u16,
        );
        txt::write_peer_answers(&mut w, name, "token", &entries);
        w.finish().to_vec()
    }

    /// The peers a pump found are acted on, and their vector is kept for the next pump
    /// unless a burst grew it past `FOUND_KEPT`.
    #[test]
    fn found_peers_keep_their_room_up_to_a_bound() {
        let mut swarm = Swarm::new(Config::new(vec![7; 32], 1).with_mdns()).expect("valid");
        let now = Instant::from_micros(0);
        swarm.handle_input(now, Input::Listening { port: 7001 });
        swarm.join(now, &b"ubuntu-14.04"[..], true);
        std::iter::from_fn(|| swarm.poll_output()).for_each(drop);
        let from = SocketAddr::from(([10, 0, 0, 2], 5353));
        let socket = UdpSocket::Mdns;
        let data = &answer_naming(10)[..];
        swarm.handle_input(now, Input::Datagram { socket, from, data });
        assert_eq!(swarm.known_peers(), 10);
        let kept = swarm.found.capacity();
        assert!((10..=discovery::FOUND_KEPT).contains(&kept), "{kept} kept");
        let data = &answer_naming(120)[..];
        swarm.handle_input(now, Input::Datagram { socket, from, data });
        assert_eq!(swarm.known_peers(), 120);
        assert!(swarm.found.capacity() <= discovery::FOUND_KEPT);
    }

    /// The lines an mDNS datagram's hints name in the swarm (with the DHT on, as the
    /// simulator's scale runs): the hot-first layout keeps them to a handful of runs of
    /// lines. Left to the compiler, the same fields were spread over 20 lines.
    #[test]
    fn an_mdns_datagram_reads_few_lines_of_the_swarm() {
        let bootstrap = vec![SocketAddr::from(([10, 0, 0, 1], 6881))];
        let config = Config::new(vec![7; 32], 1).with_mdns().with_dht(bootstrap);
        let swarm = Box::new(Swarm::new(config).expect("valid"));
        let base = crate::line_of(&*swarm) as usize;
        let size = core::mem::size_of::<Swarm>();
        let mut lines = Vec::new();
        swarm.datagram_hints(UdpSocket::Mdns, |p| {
            let offset = (p as usize).wrapping_sub(base);
            assert!(
                offset < size,
                "a hint at {offset}, outside the swarm's {size} bytes"
            );
            // Wherever the swarm starts within a line, no run of hinted bytes spans more
            // lines than this counts plus one.
            lines.push(offset / 64);
        });
        lines.sort_unstable();
        lines.dedup();
        assert!(lines.len() <= 12, "{} lines: {lines:?}", lines.len());
        // The engines come right after the swarm's own head.
        let (mdns, dht) = (crate::line_of(&swarm.mdns), crate::line_of(&swarm.dht));
        assert!((mdns as usize - base) <= 128 && dht > mdns);
    }
}
