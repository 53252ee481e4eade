//! Candidates and dial attempts: discovery into the queue, dialling, TCP/uTP racing,
//! retries and drops.

use super::conn::key_of;
use super::*;
use crate::dedup::Side;
use crate::event::{BanReason, ConnInfo, Event, PeerSource, RejectReason, Transport};
use crate::peer::{normalize_addr, PeerKey, PeerStatus};
use crate::time::Instant;
use bytes::Bytes;
use core::time::Duration;
use rand_core::RngCore;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct AttemptId(u64);

/// One dial of a candidate: one transport connection per enabled transport, racing.
#[derive(Debug)]
pub(super) struct Attempt {
    pub(super) peer: PeerKey,
    pub(super) conns: Vec<ConnId>,
    pub(super) deadline: Instant,
    pub(super) timed_out: bool,
    /// A uTP connection that connected while TCP was still trying.
    pub(super) utp_ready: Option<ConnId>,
}

impl Swarm {
    pub(super) fn discovered(
        &mut self,
        now: Instant,
        topic: Option<Bytes>,
        addr: SocketAddr,
        source: PeerSource,
    ) {
        let key = PeerKey {
            addr: normalize_addr(addr),
            topic,
        };
        // One lookup answers the common case on a busy LAN, a peer rediscovered while queued
        // or connected: a busy entry means a busy address, so the address index is not read.
        let (known, banned, busy) = self
            .peers
            .get(&key)
            .map_or((false, false, false), |p| (true, p.banned, p.is_busy()));
        let reason = if !self.whitelisted(key.addr.ip()) {
            Some(RejectReason::Whitelist)
        } else if banned || self.self_addr(key.addr) {
            Some(RejectReason::Banned)
        } else if busy || self.is_duplicate(&key) {
            Some(RejectReason::Duplicate)
        } else if !known && !self.peers.make_room(self.config.max_peers) {
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
        self.peers.update(&key, |p| {
            p.retries = 0;
            p.source = source;
        });
        self.emit(Event::Peer(self.peers.info(&key)));
        self.kick(now);
    }

    /// Queued, waiting, dialling or connected already, under this topic or another; or the id
    /// this address answered with last time is connected right now.
    pub(super) fn is_duplicate(&self, key: &PeerKey) -> bool {
        if self.peers.addr_busy(&key.addr) {
            return true;
        }
        self.peers.get(key).is_some_and(|p| {
            p.remote_id
                .as_ref()
                .is_some_and(|id| self.registry.get((id, None), key_of(&self.conns)).is_some())
        })
    }

    pub(super) fn whitelisted(&self, ip: IpAddr) -> bool {
        self.config.whitelist.is_empty() || self.config.whitelist.contains(&ip)
    }

    pub(super) fn at_capacity(&self) -> bool {
        self.config.max_connections > 0 && self.total >= self.config.max_connections
    }

    /// An inbound connection from `ip` may be the crossing of one of our pending dials to it;
    /// refusing it could kill both. At most one admission per pending dial.
    pub(super) fn may_be_crossing(&self, ip: IpAddr) -> bool {
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

    pub(super) fn kick(&mut self, now: Instant) {
        while !self.at_capacity() {
            let Some(key) = self.peers.dequeue() else {
                return;
            };
            self.dial(now, key);
        }
    }

    pub(super) fn dial(&mut self, now: Instant, key: PeerKey) {
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
            // uTP runs inside the core when it owns the swarm's UDP socket.
            let in_core = transport == Transport::Utp && self.utp_connect(now, conn, key.addr);
            if !in_core {
                self.outputs.push_back(Output::Dial {
                    conn,
                    addr: key.addr,
                    transport,
                });
            }
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

    pub(super) fn on_connected(&mut self, now: Instant, conn: ConnId) {
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

    pub(super) fn on_utp_grace(&mut self, now: Instant, attempt_id: AttemptId) {
        if let Some(conn) = self.attempts.get(&attempt_id).and_then(|a| a.utp_ready) {
            self.attempt_won(now, attempt_id, conn);
        }
    }

    /// Forgets an attempt and cancels its connect timeout; its connections are the caller's.
    fn end_attempt(&mut self, attempt_id: AttemptId) -> Option<Attempt> {
        let attempt = self.attempts.remove(&attempt_id)?;
        crate::shrink_if_sparse(&mut self.attempts);
        self.timers
            .remove(&(attempt.deadline, Timer::ConnectTimeout(attempt_id)));
        Some(attempt)
    }

    /// Forgets dialling connections and closes their transports.
    fn abandon(&mut self, conns: impl IntoIterator<Item = ConnId>) {
        for conn in conns {
            self.remove_conn(conn);
            self.close_transport(conn);
        }
    }

    /// `winner` connected first (or TCP connected): the attempt ends and the others close.
    pub(super) fn attempt_won(&mut self, now: Instant, attempt_id: AttemptId, winner: ConnId) {
        let Some(attempt) = self.end_attempt(attempt_id) else {
            return;
        };
        self.abandon(attempt.conns.into_iter().filter(|c| *c != winner));
        // The attempt's slot in `total` passes to the connection.
        self.begin_handshake(now, winner);
    }

    /// A dialling transport connection failed or closed before connecting.
    pub(super) fn on_dial_closed(&mut self, now: Instant, conn: ConnId) {
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

    pub(super) fn on_connect_timeout(&mut self, now: Instant, attempt_id: AttemptId) {
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else {
            return;
        };
        if let Some(ready) = attempt.utp_ready {
            self.attempt_won(now, attempt_id, ready);
            return;
        }
        attempt.timed_out = true;
        let conns = core::mem::take(&mut attempt.conns);
        self.abandon(conns);
        self.attempt_failed(now, attempt_id);
    }

    /// At the limit, an inbound connection takes the place of our newest dial that has no
    /// transport connected yet: the dial ends with `connect-failed` and its peer goes back
    /// to the queue, no retry counted. The inbound peer is already connected to us, while a
    /// dial into a busy swarm, where every node's own dials count against its limit, is
    /// likely to be refused. Returns whether a dial made room.
    pub(super) fn yield_dial(&mut self) -> bool {
        // Over the limit (crossings admitted), one dial less would not be below it.
        if self.total > self.config.max_connections {
            return false;
        }
        let newest = self
            .attempts
            .iter()
            .filter(|(_, a)| a.utp_ready.is_none())
            .map(|(id, _)| *id)
            .max();
        let Some(attempt) = newest.and_then(|id| self.end_attempt(id)) else {
            return false;
        };
        self.abandon(attempt.conns);
        self.total -= 1;
        self.stats.dials_yielded += 1;
        self.emit(Event::ConnectFailed {
            peer: self.peers.info(&attempt.peer),
            timed_out: false,
        });
        self.peers.enqueue(attempt.peer);
        true
    }

    pub(super) fn attempt_failed(&mut self, now: Instant, attempt_id: AttemptId) {
        let Some(attempt) = self.end_attempt(attempt_id) else {
            return;
        };
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
    pub(super) fn requeue(&mut self, now: Instant, key: PeerKey) {
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

    pub(super) fn jittered(&mut self, base: Duration) -> Duration {
        if self.config.retry_jitter == 0.0 {
            return base;
        }
        // Uniform in [-1, 1).
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        base.mul_f64(1.0 + self.config.retry_jitter * unit)
    }

    pub(super) fn on_retry(&mut self, now: Instant, key: PeerKey) {
        let due = matches!(
            self.peers.get(&key).map(|p| p.status),
            Some(PeerStatus::Waiting(at)) if at <= now
        );
        if due {
            self.peers.enqueue(key);
            self.kick(now);
        }
    }

    pub(super) fn ban(&mut self, key: PeerKey, reason: BanReason) {
        if self.peers.get(&key).is_none() {
            self.peers.set_status(&key, PeerStatus::Idle);
        }
        self.peers.update(&key, |p| p.banned = true);
        self.stats.banned += 1;
        let peer = self.peers.info(&key);
        self.emit(Event::PeerBanned { peer, reason });
    }
}
