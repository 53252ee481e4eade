//! Connections: handshakes, the duplicate rule with its deferral, and closing.

use super::*;
use crate::config::HandshakeMode;
use crate::dedup::{compare_ids, new_replaces_old, Side};
use crate::event::{BanReason, ConnInfo, Event, RejectReason, Transport};
use crate::handshake::{HandshakeDecoder, HandshakeError, Progress};
use crate::peer::{PeerKey, PeerStatus};
use crate::registry::Key;
use crate::time::Instant;
use crate::Map;
use bytes::Bytes;
use core::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

/// Boxed states keep [`Conn`] small: established connections, the many, need none of it.
#[derive(Debug)]
pub(super) enum ConnState {
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
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            ConnState::Handshaking(h) => Some(h.deadline),
            ConnState::Settling(deadline) => Some(*deadline),
            ConnState::Deferred(d) => Some(d.deadline),
            ConnState::Dialing(_) | ConnState::Established => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Handshake {
    /// The built-in decoder, or `None` while the application's handshake runs.
    pub(super) decoder: Option<HandshakeDecoder>,
    pub(super) deadline: Instant,
}

#[derive(Debug)]
pub(super) struct Deferred {
    /// Application data that came with the handshake.
    pub(super) early: Bytes,
    pub(super) deadline: Instant,
    /// Held for the crossing grace (see [`Swarm::wants_grace`]), not for a pending connection.
    pub(super) grace: bool,
}

/// Kept small: one per held connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) info: ConnInfo,
    pub(super) state: ConnState,
    pub(super) discovery_key: Option<Box<Bytes>>,
}

impl Conn {
    /// The candidate an outbound connection was dialled for.
    pub(super) fn peer(&self) -> Option<PeerKey> {
        self.info.initiator.then(|| PeerKey {
            addr: self.info.addr,
            topic: self.info.topic.clone(),
        })
    }

    pub(super) fn discovery_key(&self) -> Option<&[u8]> {
        self.discovery_key.as_deref().map(|k| &k[..])
    }

    pub(super) fn side(&self) -> Side {
        Side {
            transport: self.info.transport,
            initiator: self.info.initiator,
        }
    }

    pub(super) fn is_pending(&self) -> bool {
        matches!(
            self.state,
            ConnState::Dialing(_) | ConnState::Handshaking(_)
        )
    }

    pub(super) fn reached_handshake(&self) -> bool {
        !matches!(self.state, ConnState::Dialing(_))
    }
}

impl Swarm {
    pub(super) fn begin_handshake(&mut self, now: Instant, conn: ConnId) {
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
            self.send_transport(conn, self.handshake_bytes.clone());
        }
        self.arm(deadline, Timer::Handshake(conn));
        self.utp_handshake_begun(now, conn);
    }

    pub(super) fn on_received(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
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

    pub(super) fn on_handshake_timeout(&mut self, now: Instant, conn: ConnId) {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Handshaking(_)) => {
                let info = self.conns[&conn].info.clone();
                self.stats.handshakes_failed += 1;
                self.emit(Event::HandshakeTimeout { conn, info });
                self.close(now, conn, CloseCause::Local, true);
            }
            // Waited long enough for a crossing connection: decide now. (A grace timer that
            // fires while a connection from that host is still pending keeps waiting, up to
            // the handshake deadline.)
            Some(ConnState::Deferred(d)) => {
                if now < d.deadline && self.should_defer(conn) {
                    return;
                }
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

    pub(super) fn fail_handshake(&mut self, now: Instant, conn: ConnId, error: HandshakeError) {
        let info = self.conns[&conn].info.clone();
        self.stats.handshakes_failed += 1;
        self.emit(Event::HandshakeFailed { conn, info, error });
        self.close(now, conn, CloseCause::Local, true);
    }

    pub(super) fn on_handshake(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote_id: Arc<[u8]>,
        early: Bytes,
    ) {
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
        let pending = self.should_defer(conn);
        let grace = self.wants_grace(conn);
        if pending || grace {
            if let Some(c) = self.conns.get_mut(&conn) {
                let deferred = Deferred {
                    early,
                    deadline,
                    grace,
                };
                c.state = ConnState::Deferred(Box::new(deferred));
            }
            if grace {
                let until = (now + self.config.crossing_grace).min(deadline);
                self.arm(until, Timer::Handshake(conn));
            }
            self.deferred.entry(ip).or_default().push(conn);
        } else {
            self.resolve(now, conn, early);
        }
        self.recheck_deferred(now, ip);
    }

    /// With multicast DNS, discovery is symmetric: when one side's connection completes, the
    /// other side's crossing dial is usually on its way. If that crossing connection would win
    /// the rule (ours is a dial to a smaller id, or an inbound one from a larger id, whose
    /// dial we are about to make), holding ours back briefly means the pair is reported once.
    fn wants_grace(&self, conn: ConnId) -> bool {
        if self.config.crossing_grace.is_zero() || self.config.keep_existing_connections {
            return false;
        }
        let c = &self.conns[&conn];
        let remote = c.info.id.as_deref().unwrap_or_default();
        let ord = compare_ids(remote, &self.config.id, c.discovery_key());
        match c.peer() {
            Some(peer) => {
                let found_by_mdns = self
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.source == PeerSource::Dns);
                found_by_mdns && ord == Ordering::Less
            }
            None => self.mdns.is_some() && !self.topics.is_empty() && ord == Ordering::Greater,
        }
    }

    /// A connection held for the crossing grace waits until the crossing one is registered.
    fn still_in_grace(&self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        let ConnState::Deferred(d) = &c.state else {
            return false;
        };
        let registered = c.info.id.as_deref().is_some_and(|id| {
            self.registry
                .get((id, c.discovery_key()), key_of(&self.conns))
                .is_some()
        });
        d.grace && !registered
    }

    /// Whether a still-pending connection from the same host, in the other direction, would
    /// replace `conn` if it turned out to come from the same peer.
    pub(super) fn should_defer(&self, conn: ConnId) -> bool {
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

    pub(super) fn recheck_deferred(&mut self, now: Instant, ip: IpAddr) {
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
            .partition(|c| self.still_in_grace(*c) || self.should_defer(*c));
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
    pub(super) fn take_early_data(&mut self, conn: ConnId) -> Bytes {
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
    pub(super) fn resolve(&mut self, now: Instant, conn: ConnId, early_data: Bytes) {
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
    pub(super) fn close(
        &mut self,
        now: Instant,
        conn: ConnId,
        cause: CloseCause,
        tell_driver: bool,
    ) {
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
            self.close_transport(conn);
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
}

/// Reads a registered connection's registry key from the connection table.
pub(super) fn key_of<'a>(conns: &'a Map<ConnId, Conn>) -> impl Fn(ConnId) -> Option<Key<'a>> + 'a {
    move |conn| {
        let c = conns.get(&conn)?;
        Some((c.info.id.as_deref()?, c.discovery_key()))
    }
}
