//! The swarm: the connection manager composing the candidate table, dials, handshakes and the
//! duplicate rule. The only type drivers talk to.

use crate::config::{Config, ConfigError, HandshakeMode};
use crate::dedup::{compare_ids, new_replaces_old, Side};
use crate::event::{
    BanReason, ConnInfo, Event, PeerInfo, PeerSource, RejectReason, Stats, Transport,
};
use crate::handshake::{encode_handshake, HandshakeDecoder, HandshakeError, Progress};
use crate::peer::{normalize_addr, PeerKey, PeerStatus, PeerTable};
use crate::registry::{Key, Registry};
use crate::time::Instant;
use crate::{new_map, Map};
use bytes::Bytes;
use core::cmp::Ordering;
use core::time::Duration;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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

/// Something that happened outside the core.
#[derive(Clone, Debug)]
pub enum Input<'a> {
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
    Dial {
        conn: ConnId,
        addr: SocketAddr,
        transport: Transport,
    },
    /// Write `data` to the connection.
    Send { conn: ConnId, data: Bytes },
    /// Close the connection; the core has already forgotten it.
    Close { conn: ConnId },
    /// Tell the application.
    Event(Event),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AttemptId(u64);

/// One dial of a candidate: one transport connection per enabled transport, racing.
#[derive(Debug)]
struct Attempt {
    peer: PeerKey,
    conns: Vec<ConnId>,
    deadline: Instant,
    timed_out: bool,
    /// A uTP connection that connected while TCP was still trying.
    utp_ready: Option<ConnId>,
}

/// Boxed states keep [`Conn`] small: established connections, the many, need none of it.
#[derive(Debug)]
enum ConnState {
    Dialing(AttemptId),
    Handshaking(Box<Handshake>),
    /// Handshake done; the duplicate rule is running right now. Holds the handshake deadline.
    Settling(Instant),
    /// Handshake done, waiting for a crossed connection from the same host to resolve, so
    /// that no `connection` is reported for a connection the rule is about to drop.
    Deferred(Box<Deferred>),
    Established,
}

impl ConnState {
    /// The armed handshake deadline, if any.
    fn deadline(&self) -> Option<Instant> {
        match self {
            ConnState::Handshaking(h) => Some(h.deadline),
            ConnState::Settling(deadline) => Some(*deadline),
            ConnState::Deferred(d) => Some(d.deadline),
            ConnState::Dialing(_) | ConnState::Established => None,
        }
    }
}

#[derive(Debug)]
struct Handshake {
    /// The built-in decoder, or `None` while the application's handshake runs.
    decoder: Option<HandshakeDecoder>,
    deadline: Instant,
}

#[derive(Debug)]
struct Deferred {
    /// Application data that came with the handshake.
    early: Bytes,
    deadline: Instant,
}

/// Kept small: one per held connection.
#[derive(Debug)]
struct Conn {
    info: ConnInfo,
    state: ConnState,
    discovery_key: Option<Box<Bytes>>,
}

impl Conn {
    /// The candidate an outbound connection was dialled for.
    fn peer(&self) -> Option<PeerKey> {
        self.info.initiator.then(|| PeerKey {
            addr: self.info.addr,
            topic: self.info.topic.clone(),
        })
    }

    fn discovery_key(&self) -> Option<&[u8]> {
        self.discovery_key.as_deref().map(|k| &k[..])
    }

    fn side(&self) -> Side {
        Side {
            transport: self.info.transport,
            initiator: self.info.initiator,
        }
    }

    fn is_pending(&self) -> bool {
        matches!(
            self.state,
            ConnState::Dialing(_) | ConnState::Handshaking(_)
        )
    }

    fn reached_handshake(&self) -> bool {
        !matches!(self.state, ConnState::Dialing(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ConnectTimeout(AttemptId),
    UtpGrace(AttemptId),
    Handshake(ConnId),
    Retry(Box<PeerKey>),
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

/// The sans-IO swarm. See the crate docs for the driver loop.
pub struct Swarm {
    config: Config,
    handshake_bytes: Bytes,
    rng: Xoshiro256PlusPlus,
    outputs: VecDeque<Output>,
    /// Ordered, so a timer that is no longer needed (a completed handshake) is removed rather
    /// than left to expire.
    timers: BTreeSet<(Instant, Timer)>,
    conns: Map<ConnId, Conn>,
    attempts: Map<AttemptId, Attempt>,
    peers: PeerTable,
    registry: Registry,
    pending: Map<IpAddr, PendingCounts>,
    deferred: Map<IpAddr, Vec<ConnId>>,
    topics: Map<Bytes, bool>,
    /// Dials in flight plus connections from `handshaking` until closed (Node's
    /// `totalConnections`).
    total: usize,
    established: usize,
    next_id: u64,
    port: Option<u16>,
    stats: Stats,
}

impl Swarm {
    /// A swarm with the given configuration.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let seed = config.seed;
        Ok(Swarm {
            handshake_bytes: encode_handshake(&config.id),
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            config,
            outputs: VecDeque::new(),
            timers: BTreeSet::new(),
            conns: new_map(seed),
            attempts: new_map(seed),
            peers: PeerTable::new(seed),
            registry: Registry::new(seed),
            pending: new_map(seed),
            deferred: new_map(seed),
            topics: new_map(seed),
            total: 0,
            established: 0,
            next_id: 0,
            port: None,
            stats: Stats::default(),
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
        self.topics.iter().map(|(t, a)| (t, *a))
    }

    /// The next output, if any. New outputs appear after any `handle_*` call or command.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next instant at which [`Swarm::handle_timeout`] has work. May be early (a timer
    /// that was cancelled); calling `handle_timeout` then does nothing. Changes after any
    /// `handle_*` call or command.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
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
        match input {
            Input::Listening { port } => {
                self.port = Some(port);
                self.emit(Event::Listening { port });
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
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::ConnectTimeout(attempt) => self.on_connect_timeout(now, attempt),
                Timer::UtpGrace(attempt) => self.on_utp_grace(now, attempt),
                Timer::Handshake(conn) => self.on_handshake_timeout(now, conn),
                Timer::Retry(key) => self.on_retry(now, *key),
            }
        }
    }

    /// Joins `topic`. Discovery (later mechanisms) announces it if `announce` is set and looks
    /// it up either way; rejoining only updates `announce`.
    pub fn join(&mut self, topic: impl Into<Bytes>, announce: bool) {
        self.topics.insert(topic.into(), announce);
    }

    /// Leaves `topic`: it is no longer announced or looked up. Connections stay. Returns
    /// whether the topic was joined.
    pub fn leave(&mut self, topic: &[u8]) -> bool {
        self.topics.remove(topic).is_some()
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
        let remote = normalize_addr(remote);
        let refusal = if !self.whitelisted(remote.ip()) {
            Some(RejectReason::Whitelist)
        } else if self.at_capacity() && !self.may_be_crossing(remote.ip()) {
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
        self.begin_handshake(now, conn);
        Ok(conn)
    }

    /// Completes the handshake of a connection in [`HandshakeMode::External`]: the
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
        if !self.conns.contains_key(&conn) {
            return Err(CommandError::UnknownConnection);
        }
        if matches!(self.conns[&conn].state, ConnState::Dialing(_)) {
            self.outputs.push_back(Output::Close { conn });
            self.on_dial_closed(now, conn);
        } else {
            self.close(now, conn, CloseCause::Local, true);
        }
        Ok(())
    }

    // ----- candidates and dialling -----

    fn discovered(
        &mut self,
        now: Instant,
        topic: Option<Bytes>,
        addr: SocketAddr,
        _source: PeerSource,
    ) {
        let key = PeerKey {
            addr: normalize_addr(addr),
            topic,
        };
        let reason = if !self.whitelisted(key.addr.ip()) {
            Some(RejectReason::Whitelist)
        } else if self.peers.get(&key).is_some_and(|p| p.banned) {
            Some(RejectReason::Banned)
        } else if self.is_duplicate(&key) {
            Some(RejectReason::Duplicate)
        } else if self.peers.get(&key).is_none() && !self.peers.make_room(self.config.max_peers) {
            Some(RejectReason::Full)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.stats.rejected += 1;
            self.emit(Event::PeerRejected {
                addr: key.addr,
                topic: key.topic,
                reason,
            });
            return;
        }
        self.peers.enqueue(key.clone());
        self.peers.update(&key, |p| p.retries = 0);
        self.emit(Event::Peer(self.peers.info(&key)));
        self.kick(now);
    }

    /// Queued, waiting, dialling or connected already, under this topic or another; or the id
    /// this address answered with last time is connected right now.
    fn is_duplicate(&self, key: &PeerKey) -> bool {
        if self.peers.addr_busy(&key.addr) {
            return true;
        }
        self.peers.get(key).is_some_and(|p| {
            p.remote_id
                .as_ref()
                .is_some_and(|id| self.registry.get((id, None), key_of(&self.conns)).is_some())
        })
    }

    fn whitelisted(&self, ip: IpAddr) -> bool {
        self.config.whitelist.is_empty() || self.config.whitelist.contains(&ip)
    }

    fn at_capacity(&self) -> bool {
        self.config.max_connections > 0 && self.total >= self.config.max_connections
    }

    /// An inbound connection from `ip` may be the crossing of one of our pending dials to it;
    /// refusing it could kill both. At most one admission per pending dial.
    fn may_be_crossing(&self, ip: IpAddr) -> bool {
        self.pending.get(&ip).is_some_and(|p| {
            let count = |initiator| {
                [Transport::Tcp, Transport::Utp]
                    .iter()
                    .map(|&transport| {
                        p.0[PendingCounts::slot(Side {
                            transport,
                            initiator,
                        })]
                    })
                    .sum::<u32>()
            };
            count(true) > count(false)
        })
    }

    fn kick(&mut self, now: Instant) {
        while !self.at_capacity() {
            let Some(key) = self.peers.dequeue() else {
                return;
            };
            self.dial(now, key);
        }
    }

    fn dial(&mut self, now: Instant, key: PeerKey) {
        let attempt = AttemptId(self.bump());
        let transports = [
            (self.config.tcp, Transport::Tcp),
            (self.config.utp, Transport::Utp),
        ];
        let mut conns = Vec::with_capacity(2);
        for (_, transport) in transports.into_iter().filter(|(on, _)| *on) {
            let conn = self.next_conn();
            let info = ConnInfo {
                transport,
                initiator: true,
                addr: key.addr,
                topic: key.topic.clone(),
                id: None,
            };
            self.insert_conn(
                conn,
                Conn {
                    info,
                    state: ConnState::Dialing(attempt),
                    discovery_key: None,
                },
            );
            self.outputs.push_back(Output::Dial {
                conn,
                addr: key.addr,
                transport,
            });
            conns.push(conn);
        }
        self.peers.set_status(&key, PeerStatus::Dialing);
        self.total += 1;
        self.stats.dials_attempted += 1;
        self.emit(Event::Connecting(self.peers.info(&key)));
        let deadline = now + self.config.connect_timeout;
        self.arm(deadline, Timer::ConnectTimeout(attempt));
        self.attempts.insert(
            attempt,
            Attempt {
                peer: key,
                conns,
                deadline,
                timed_out: false,
                utp_ready: None,
            },
        );
    }

    fn on_connected(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn {
            state: ConnState::Dialing(attempt_id),
            info,
            ..
        }) = self.conns.get(&conn)
        else {
            return;
        };
        let (attempt_id, transport) = (*attempt_id, info.transport);
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else {
            return;
        };
        let tcp_still_trying = attempt
            .conns
            .iter()
            .any(|c| *c != conn && self.conns[c].info.transport == Transport::Tcp);
        if transport == Transport::Utp && tcp_still_trying {
            attempt.utp_ready = Some(conn);
            self.arm(now + crate::config::UTP_GRACE, Timer::UtpGrace(attempt_id));
            return;
        }
        self.attempt_won(now, attempt_id, conn);
    }

    fn on_utp_grace(&mut self, now: Instant, attempt_id: AttemptId) {
        if let Some(conn) = self.attempts.get(&attempt_id).and_then(|a| a.utp_ready) {
            self.attempt_won(now, attempt_id, conn);
        }
    }

    /// `winner` connected first (or TCP connected): the attempt ends and the others close.
    fn attempt_won(&mut self, now: Instant, attempt_id: AttemptId, winner: ConnId) {
        let Some(attempt) = self.attempts.remove(&attempt_id) else {
            return;
        };
        let timer = (attempt.deadline, Timer::ConnectTimeout(attempt_id));
        self.timers.remove(&timer);
        for loser in attempt.conns.into_iter().filter(|c| *c != winner) {
            self.remove_conn(loser);
            self.outputs.push_back(Output::Close { conn: loser });
        }
        // The attempt's slot in `total` passes to the connection.
        self.begin_handshake(now, winner);
    }

    /// A dialling transport connection failed or closed before connecting.
    fn on_dial_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn {
            state: ConnState::Dialing(attempt_id),
            ..
        }) = self.conns.get(&conn)
        else {
            return;
        };
        let attempt_id = *attempt_id;
        self.remove_conn(conn);
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else {
            return;
        };
        attempt.conns.retain(|c| *c != conn);
        if attempt.utp_ready == Some(conn) {
            attempt.utp_ready = None;
        }
        if let Some(ready) = attempt.utp_ready {
            if attempt.conns.len() == 1 {
                // TCP lost; the connected uTP need not wait out its grace period.
                self.attempt_won(now, attempt_id, ready);
                return;
            }
        }
        if attempt.conns.is_empty() {
            self.attempt_failed(now, attempt_id);
        }
    }

    fn on_connect_timeout(&mut self, now: Instant, attempt_id: AttemptId) {
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else {
            return;
        };
        if let Some(ready) = attempt.utp_ready {
            self.attempt_won(now, attempt_id, ready);
            return;
        }
        attempt.timed_out = true;
        let conns = core::mem::take(&mut attempt.conns);
        for conn in conns {
            self.remove_conn(conn);
            self.outputs.push_back(Output::Close { conn });
        }
        self.attempt_failed(now, attempt_id);
    }

    fn attempt_failed(&mut self, now: Instant, attempt_id: AttemptId) {
        let Some(attempt) = self.attempts.remove(&attempt_id) else {
            return;
        };
        let timer = (attempt.deadline, Timer::ConnectTimeout(attempt_id));
        self.timers.remove(&timer);
        self.total -= 1;
        self.stats.dials_failed += 1;
        self.emit(Event::ConnectFailed {
            peer: self.peers.info(&attempt.peer),
            timed_out: attempt.timed_out,
        });
        self.requeue(now, attempt.peer);
        self.kick(now);
    }

    /// After a failed dial or a lost outbound connection: wait and retry, or drop when the
    /// schedule is exhausted.
    fn requeue(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.banned {
            self.peers.set_status(&key, PeerStatus::Idle);
            return;
        }
        let retries = peer.retries as usize;
        let Some(base) = self.config.retry_schedule.get(retries).copied() else {
            let info = self.peers.info(&key);
            self.peers.remove(&key);
            self.stats.dropped += 1;
            self.emit(Event::Drop(info));
            return;
        };
        let at = now + self.jittered(base);
        self.peers.set_status(&key, PeerStatus::Waiting(at));
        self.peers.update(&key, |p| p.retries += 1);
        self.arm(at, Timer::Retry(Box::new(key)));
    }

    fn jittered(&mut self, base: Duration) -> Duration {
        if self.config.retry_jitter == 0.0 {
            return base;
        }
        // Uniform in [-1, 1).
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        base.mul_f64(1.0 + self.config.retry_jitter * unit)
    }

    fn on_retry(&mut self, now: Instant, key: PeerKey) {
        let due = matches!(
            self.peers.get(&key).map(|p| p.status),
            Some(PeerStatus::Waiting(at)) if at <= now
        );
        if due {
            self.peers.enqueue(key);
            self.kick(now);
        }
    }

    fn ban(&mut self, key: PeerKey, reason: BanReason) {
        if self.peers.get(&key).is_none() {
            self.peers.set_status(&key, PeerStatus::Idle);
        }
        self.peers.update(&key, |p| p.banned = true);
        self.stats.banned += 1;
        let peer = self.peers.info(&key);
        self.emit(Event::PeerBanned { peer, reason });
    }

    // ----- connections and handshakes -----

    fn begin_handshake(&mut self, now: Instant, conn: ConnId) {
        let builtin = self.config.handshake == HandshakeMode::Builtin;
        let decoder = builtin.then(|| HandshakeDecoder::new(self.config.max_id_len));
        let deadline = now + self.config.handshake_timeout;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = ConnState::Handshaking(Box::new(Handshake { decoder, deadline }));
        let info = c.info.clone();
        self.emit(Event::Handshaking { conn, info });
        if builtin {
            self.outputs.push_back(Output::Send {
                conn,
                data: self.handshake_bytes.clone(),
            });
        }
        self.arm(deadline, Timer::Handshake(conn));
    }

    fn on_received(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(Conn {
            state: ConnState::Handshaking(handshake),
            ..
        }) = self.conns.get_mut(&conn)
        else {
            return;
        };
        let Some(decoder) = handshake.decoder.as_mut() else {
            return;
        };
        match decoder.feed(data) {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Complete { consumed }) => {
                let id = Arc::from(decoder.id());
                let early = Bytes::copy_from_slice(&data[consumed..]);
                self.on_handshake(now, conn, id, early);
            }
            Err(error) => self.fail_handshake(now, conn, error),
        }
    }

    fn on_handshake_timeout(&mut self, now: Instant, conn: ConnId) {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Handshaking(_)) => {
                let info = self.conns[&conn].info.clone();
                self.stats.handshakes_failed += 1;
                self.emit(Event::HandshakeTimeout { conn, info });
                self.close(now, conn, CloseCause::Local, true);
            }
            // Waited long enough for a crossing connection: decide now.
            Some(ConnState::Deferred(_)) => {
                let ip = self.conns[&conn].info.addr.ip();
                if let Some(list) = self.deferred.get_mut(&ip) {
                    list.retain(|c| *c != conn);
                }
                let early = self.take_early_data(conn);
                self.resolve(now, conn, early);
            }
            _ => {}
        }
    }

    fn fail_handshake(&mut self, now: Instant, conn: ConnId, error: HandshakeError) {
        let info = self.conns[&conn].info.clone();
        self.stats.handshakes_failed += 1;
        self.emit(Event::HandshakeFailed { conn, info, error });
        self.close(now, conn, CloseCause::Local, true);
    }

    fn on_handshake(&mut self, now: Instant, conn: ConnId, remote_id: Arc<[u8]>, early: Bytes) {
        let local_id = self.config.id.clone();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if compare_ids(&remote_id, &local_id, c.discovery_key()) == Ordering::Equal {
            if let Some(peer) = c.peer() {
                self.ban(peer, BanReason::DetectedSelf);
            }
            self.close(now, conn, CloseCause::Local, true);
            return;
        }
        let ip = c.info.addr.ip();
        let side = c.side();
        let deadline = c.state.deadline().unwrap_or(now);
        c.info.id = Some(remote_id.clone());
        c.state = ConnState::Settling(deadline);
        if let Some(peer) = c.peer() {
            self.peers.update(&peer, |p| {
                p.retries = 0;
                p.remote_id = Some(remote_id.clone());
            });
        }
        self.unpend(ip, side);
        if self.should_defer(conn) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.state = ConnState::Deferred(Box::new(Deferred { early, deadline }));
            }
            self.deferred.entry(ip).or_default().push(conn);
        } else {
            self.resolve(now, conn, early);
        }
        self.recheck_deferred(now, ip);
    }

    /// Whether a still-pending connection from the same host, in the other direction, would
    /// replace `conn` if it turned out to come from the same peer.
    fn should_defer(&self, conn: ConnId) -> bool {
        if self.config.keep_existing_connections {
            return false;
        }
        let c = &self.conns[&conn];
        let Some(pending) = self.pending.get(&c.info.addr.ip()) else {
            return false;
        };
        let remote = c.info.id.as_deref().unwrap_or_default();
        let ord = compare_ids(remote, &self.config.id, c.discovery_key());
        [Transport::Tcp, Transport::Utp]
            .into_iter()
            .any(|transport| {
                let other = Side {
                    transport,
                    initiator: !c.info.initiator,
                };
                pending.0[PendingCounts::slot(other)] > 0
                    && new_replaces_old(c.side(), other, ord, false)
            })
    }

    fn recheck_deferred(&mut self, now: Instant, ip: IpAddr) {
        let Some(list) = self.deferred.remove(&ip) else {
            return;
        };
        let (wait, ready): (Vec<ConnId>, Vec<ConnId>) = list
            .into_iter()
            .filter(|c| {
                matches!(
                    self.conns.get(c).map(|c| &c.state),
                    Some(ConnState::Deferred(_))
                )
            })
            .partition(|c| self.should_defer(*c));
        if !wait.is_empty() {
            self.deferred.insert(ip, wait);
        }
        for conn in ready {
            let early = self.take_early_data(conn);
            self.resolve(now, conn, early);
        }
    }

    /// Moves a deferred connection to `Settling`, returning the data that came with its
    /// handshake.
    fn take_early_data(&mut self, conn: ConnId) -> Bytes {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Bytes::new();
        };
        let deadline = c.state.deadline().unwrap_or_default();
        match core::mem::replace(&mut c.state, ConnState::Settling(deadline)) {
            ConnState::Deferred(deferred) => deferred.early,
            other => {
                c.state = other;
                Bytes::new()
            }
        }
    }

    /// The duplicate rule (PROTOCOLS.md 1.7) for a handshaken connection, then registration.
    fn resolve(&mut self, now: Instant, conn: ConnId, early_data: Bytes) {
        let c = &self.conns[&conn];
        let remote = c.info.id.clone().unwrap_or_default();
        let discovery_key = c.discovery_key.as_deref().cloned();
        let key = (&remote[..], discovery_key.as_deref());
        let info = c.info.clone();
        let side = c.side();
        if let Some(old) = self.registry.get(key, key_of(&self.conns)) {
            let ord = compare_ids(&remote, &self.config.id, key.1);
            let old_side = self.conns[&old].side();
            let keep = self.config.keep_existing_connections;
            if !new_replaces_old(old_side, side, ord, keep) {
                self.stats.redundant += 1;
                self.emit(Event::RedundantConnection { conn, info });
                self.close(now, conn, CloseCause::Local, true);
                return;
            }
            self.stats.redundant += 1;
            self.emit(Event::RedundantConnection {
                conn: old,
                info: info.clone(),
            });
            self.registry.remove(old, key);
            self.close(now, old, CloseCause::Local, true);
        } else if self.config.max_connections > 0 && self.established >= self.config.max_connections
        {
            // Only reachable for an inbound connection admitted as a possible crossing that
            // turned out to be another peer.
            self.stats.rejected += 1;
            self.emit(Event::PeerRejected {
                addr: info.addr,
                topic: info.topic.clone(),
                reason: RejectReason::MaxConnections,
            });
            self.close(now, conn, CloseCause::Local, true);
            return;
        }
        self.registry.insert(conn, key, key_of(&self.conns));
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let deadline = core::mem::replace(&mut c.state, ConnState::Established).deadline();
        if let Some(deadline) = deadline {
            self.timers.remove(&(deadline, Timer::Handshake(conn)));
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if let Some(peer) = c.peer() {
            self.peers.set_status(&peer, PeerStatus::Connected(conn));
        }
        self.established += 1;
        if info.initiator {
            self.stats.outbound_opened += 1;
        } else {
            self.stats.inbound_opened += 1;
        }
        self.emit(Event::Connection {
            conn,
            info,
            early_data,
        });
    }

    /// Forgets a connection that reached the handshake, reports it closed, and redials an
    /// outbound peer whose registered connection the network took away.
    fn close(&mut self, now: Instant, conn: ConnId, cause: CloseCause, tell_driver: bool) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.reached_handshake() {
            return;
        }
        let was_pending = c.is_pending();
        let was_established = matches!(c.state, ConnState::Established);
        if let Some(deadline) = c.state.deadline() {
            self.timers.remove(&(deadline, Timer::Handshake(conn)));
        }
        let ip = c.info.addr.ip();
        let info = c.info.clone();
        let peer = c.peer();
        let was_registered = match &info.id {
            Some(id) => self.registry.remove(conn, (id, c.discovery_key())),
            None => false,
        };
        self.remove_conn(conn);
        if tell_driver {
            self.outputs.push_back(Output::Close { conn });
        }
        self.total -= 1;
        if was_established {
            self.established -= 1;
            if info.initiator {
                self.stats.outbound_closed += 1;
            } else {
                self.stats.inbound_closed += 1;
            }
        }
        self.emit(Event::ConnectionClosed { conn, info });
        if let Some(peer) = peer {
            let connected_here =
                matches!(self.peers.get(&peer), Some(p) if p.status == PeerStatus::Connected(conn));
            let dialling_here = matches!(self.peers.get(&peer), Some(p) if p.status == PeerStatus::Dialing)
                && !was_established;
            if connected_here && was_registered && cause == CloseCause::Remote {
                self.requeue(now, peer);
            } else if connected_here || dialling_here {
                self.peers.set_status(&peer, PeerStatus::Idle);
            }
        }
        if was_pending {
            self.recheck_deferred(now, ip);
        }
        self.kick(now);
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
        }
    }

    fn unpend(&mut self, ip: IpAddr, side: Side) {
        if let Some(counts) = self.pending.get_mut(&ip) {
            let slot = &mut counts.0[PendingCounts::slot(side)];
            *slot = slot.saturating_sub(1);
            if counts.0 == [0; 4] {
                self.pending.remove(&ip);
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
        self.timers.insert((at, timer));
    }

    fn emit(&mut self, event: Event) {
        tracing::debug!(event = event.name(), "swarm event");
        self.outputs.push_back(Output::Event(event));
    }

    /// Peer info for tests and the simulator.
    #[doc(hidden)]
    pub fn peer_info(&self, topic: Option<&[u8]>, addr: SocketAddr) -> Option<PeerInfo> {
        let key = PeerKey {
            addr: normalize_addr(addr),
            topic: topic.map(Bytes::copy_from_slice),
        };
        self.peers.get(&key).map(|_| self.peers.info(&key))
    }
}

/// Reads a registered connection's registry key from the connection table.
fn key_of<'a>(conns: &'a Map<ConnId, Conn>) -> impl Fn(ConnId) -> Option<Key<'a>> + 'a {
    move |conn| {
        let c = conns.get(&conn)?;
        Some((c.info.id.as_deref()?, c.discovery_key()))
    }
}
