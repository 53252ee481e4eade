//! Safety invariants, checked from each node's event stream and counters after every step,
//! and the quiescence checks that need the whole network (in `sim.rs`).

use bytes::Bytes;
use core::fmt;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use swarm_core::{ConnId, Event, Instant, Swarm, Transport};

/// A broken invariant, with what is needed to replay the run.
#[derive(Clone, Debug)]
pub struct Violation {
    pub seed: u64,
    pub at: Instant,
    pub message: String,
    /// The one-line command that replays this run.
    pub replay: String,
    /// The trace up to the failure, if the run kept its lines.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant violated at t={}: {}\n  seed: {}\n  replay: {}",
            crate::trace::fmt_time(self.at).trim_start(),
            self.message,
            self.seed,
            self.replay
        )
    }
}

impl std::error::Error for Violation {}

type PeerKey = (SocketAddr, Option<Bytes>);

/// The checker's tables are looked up on every dial and connection event, and only ever
/// counted, never walked in order: hash tables (a fixed hasher, so runs repeat) rather than
/// B-trees, which compare a peer key (address and topic bytes) at every level.
type Table<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;
type Set<K> = hashbrown::HashSet<K, foldhash::fast::FixedState>;

struct Attempt {
    peer: PeerKey,
    conns: Vec<ConnId>,
    /// Dials the core runs itself and never outputs (its own uTP): counted as pending,
    /// since the core admits a crossing connection for each of them.
    unseen: usize,
}

/// What one incarnation of a node has shown so far, to check its event stream against.
#[derive(Default)]
#[repr(C)]
pub struct NodeCheck {
    /// The core's (connected, connecting, known peers) at the last check that passed, while
    /// no dial or event has come since. The check reads only those and this checker's own
    /// state, so with both unchanged it would pass again; it runs after every step, and
    /// most steps (a repeated mDNS answer) change neither, so this saves reading the
    /// checker's tables, a handful of cache misses per step at 10,000 nodes. First, as the
    /// one field those steps read.
    passed_with: Option<(usize, usize, usize)>,
    max_connections: usize,
    max_peers: usize,
    whitelist: Vec<IpAddr>,
    strict_total: bool,
    /// The core runs uTP itself: its uTP dials produce no `Dial` output, so they are only
    /// seen as the attempt's outbound uTP handshake.
    utp_in_core: bool,
    /// Dials output since the last `connecting`.
    dialled: Vec<ConnId>,
    attempts: Table<u64, Attempt>,
    /// `attempts` by peer (at most one each: a second concurrent dial is a violation).
    attempt_by_peer: Table<PeerKey, u64>,
    attempt_of: Table<ConnId, u64>,
    next_attempt: u64,
    handshaking: Set<ConnId>,
    /// Direction and remote IP of every handshaking or established connection.
    handshake_ends: Table<ConnId, (bool, IpAddr)>,
    /// Inbound connections admitted while the limit was reached (possible crossings).
    over_cap: Set<ConnId>,
    established: BTreeSet<ConnId>,
    banned: Set<PeerKey>,
    /// Highest `connected + connecting` seen.
    pub peak_total: usize,
    /// `connection` events so far.
    pub connections: u64,
}

impl NodeCheck {
    pub fn new(core: &Swarm, strict_total: bool) -> Self {
        NodeCheck {
            max_connections: core.config().max_connections,
            max_peers: core.config().max_peers,
            whitelist: core.config().whitelist.clone(),
            strict_total,
            utp_in_core: core.config().utp && core.config().utp_in_core,
            ..NodeCheck::default()
        }
    }

    /// Established connections, as the events tell.
    pub fn established(&self) -> &BTreeSet<ConnId> {
        &self.established
    }

    /// The core asked to dial `conn`.
    pub fn on_dial(&mut self, conn: ConnId) {
        self.passed_with = None;
        self.dialled.push(conn);
    }

    /// Checks one event against the history and records it.
    pub fn on_event(&mut self, event: &Event) -> Result<(), String> {
        // Only the events that change what `check_counters` reads forget its last pass; the
        // rest (`peer`, `peer-rejected`, on a busy LAN most events) leave it standing.
        if matches!(
            event,
            Event::PeerBanned { .. }
                | Event::Connecting(_)
                | Event::ConnectFailed { .. }
                | Event::Handshaking { .. }
                | Event::Connection { .. }
                | Event::ConnectionClosed { .. }
        ) {
            self.passed_with = None;
        }
        match event {
            Event::PeerBanned { peer, .. } => {
                self.banned.insert((peer.addr, peer.topic.clone()));
            }
            Event::Connecting(peer) => {
                let key = (peer.addr, peer.topic.clone());
                if self.banned.contains(&key) {
                    return Err(format!("connecting to banned peer {}", peer.addr));
                }
                if self.attempt_by_peer.contains_key(&key) {
                    return Err(format!("second concurrent dial of {}", peer.addr));
                }
                let conns = core::mem::take(&mut self.dialled);
                if conns.is_empty() && !self.utp_in_core {
                    return Err(format!("connecting to {} without a dial", peer.addr));
                }
                let id = self.next_attempt;
                self.next_attempt += 1;
                for c in &conns {
                    self.attempt_of.insert(*c, id);
                }
                let unseen = usize::from(self.utp_in_core);
                self.attempt_by_peer.insert(key.clone(), id);
                let attempt = Attempt {
                    peer: key,
                    conns,
                    unseen,
                };
                self.attempts.insert(id, attempt);
            }
            Event::ConnectFailed { peer, .. } => {
                let key = (peer.addr, peer.topic.clone());
                let Some(&id) = self.attempt_by_peer.get(&key) else {
                    return Err(format!(
                        "connect-failed for {} without an open dial",
                        peer.addr
                    ));
                };
                self.end_attempt(id);
            }
            Event::Handshaking { conn, info } => {
                if info.initiator {
                    let in_core = self.utp_in_core && info.transport == Transport::Utp;
                    let attempt = self.attempt_of.get(conn).copied().or_else(|| {
                        let to = (info.addr, info.topic.clone());
                        let found = self.attempt_by_peer.get(&to).copied();
                        found.filter(|_| in_core)
                    });
                    let Some(id) = attempt else {
                        return Err(format!(
                            "outbound handshaking c{} without an open dial",
                            conn.0
                        ));
                    };
                    self.end_attempt(id);
                }
                let ip = crate::sim::canonical_ip(info.addr.ip());
                let total = self.attempts.len() + self.handshaking.len() + self.established.len();
                if !info.initiator && self.max_connections > 0 && total >= self.max_connections {
                    // Admitted beyond the limit: only as the possible crossing of one of
                    // our dials to that IP, one admission per dialling connection.
                    // (An admission whose handshake completed no longer uses up its dial:
                    // the core counts pending connections only. So a peer dialling over TCP
                    // and uTP can get a second admission; see the report to the lead.)
                    let dialling = self.outbound_to(ip);
                    let admitted = self
                        .over_cap
                        .iter()
                        .filter(|c| self.handshaking.contains(*c))
                        .filter(|c| self.handshake_ends.get(*c).is_some_and(|e| e.1 == ip))
                        .count();
                    if admitted >= dialling {
                        return Err(format!(
                            "inbound c{} from {ip} admitted at max_connections {} with {dialling} \
                             dials to it and {admitted} crossings admitted",
                            conn.0, self.max_connections
                        ));
                    }
                    self.over_cap.insert(*conn);
                }
                if !self.handshaking.insert(*conn) || self.established.contains(conn) {
                    return Err(format!("handshaking twice for c{}", conn.0));
                }
                self.handshake_ends.insert(*conn, (info.initiator, ip));
            }
            Event::Connection { conn, info, .. } => {
                if !self.handshaking.remove(conn) {
                    return Err(format!(
                        "connection c{} without handshaking, or twice",
                        conn.0
                    ));
                }
                if !self.whitelist.is_empty() && !self.whitelist.contains(&info.addr.ip()) {
                    return Err(format!(
                        "connection c{} from non-whitelisted {}",
                        conn.0, info.addr
                    ));
                }
                self.established.insert(*conn);
                self.connections += 1;
            }
            Event::ConnectionClosed { conn, .. } => {
                self.handshake_ends.remove(conn);
                self.over_cap.remove(conn);
                let known = self.handshaking.remove(conn) || self.established.remove(conn);
                if !known {
                    let c = conn.0;
                    return Err(format!("connection-closed c{c} twice or never handshaking"));
                }
            }
            Event::HandshakeTimeout { conn, .. }
            | Event::HandshakeFailed { conn, .. }
            | Event::RedundantConnection { conn, .. } => {
                let known = self.handshaking.contains(conn) || self.established.contains(conn);
                if !known {
                    return Err(format!("{} for unknown c{}", event.name(), conn.0));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end_attempt(&mut self, id: u64) {
        if let Some(a) = self.attempts.remove(&id) {
            self.attempt_by_peer.remove(&a.peer);
            for c in a.conns {
                self.attempt_of.remove(&c);
            }
        }
        // A hash table keeps its peak size; once a node's dials have all ended (after its
        // join storm, for good) the memory is given back, as a B-tree would.
        if self.attempts.is_empty() {
            self.attempts.shrink_to_fit();
            self.attempt_by_peer.shrink_to_fit();
            self.attempt_of.shrink_to_fit();
        }
    }

    /// The core's counters agree with its events, and the limits hold.
    pub fn check_counters(&mut self, core: &Swarm) -> Result<(), String> {
        let seen = (core.connected(), core.connecting(), core.known_peers());
        if self.passed_with == Some(seen) {
            return Ok(());
        }
        self.check_counters_against(seen)?;
        self.passed_with = Some(seen);
        Ok(())
    }

    fn check_counters_against(
        &mut self,
        (connected, connecting, known): (usize, usize, usize),
    ) -> Result<(), String> {
        if connected != self.established.len() {
            return Err(format!(
                "connected() = {connected} but {} connections are open by the events",
                self.established.len()
            ));
        }
        let pending = self.attempts.len() + self.handshaking.len();
        if connecting != pending {
            return Err(format!(
                "connecting() = {connecting} but the events show {} dials and {} handshakes",
                self.attempts.len(),
                self.handshaking.len()
            ));
        }
        if !self.dialled.is_empty() {
            return Err("dial output without a connecting event".into());
        }
        self.peak_total = self.peak_total.max(connected + connecting);
        let max = self.max_connections;
        if max > 0 && connected > max {
            return Err(format!(
                "connected() = {connected} exceeds max_connections {max}"
            ));
        }
        // Pending dials count against the limit, but an inbound connection from the IP of
        // one of our own pending dials is admitted beyond it (at most one per dialling
        // connection, checked at `handshaking`): it may be that dial's crossing, and
        // refusing it could kill both (Node admits every inbound connection). Such an
        // admission may stay beyond the limit until it closes; nothing else may.
        let crossings = self.over_cap.len();
        if max > 0 && self.strict_total && connected + connecting > max + crossings {
            return Err(format!(
                "connected + connecting = {} exceeds max_connections {max} \
                 (+{crossings} crossing admissions)",
                connected + connecting
            ));
        }
        // Memory stays bounded: the peer table by its cap (banned entries are kept beyond
        // it, one per ban), and at most one dial per known peer.
        if self.max_peers > 0 && known > self.max_peers + self.banned.len() {
            return Err(format!(
                "{known} known peers exceed max_peers {} (+{} bans)",
                self.max_peers,
                self.banned.len()
            ));
        }
        if self.attempts.len() > known {
            return Err(format!(
                "{} dials in flight for {known} known peers",
                self.attempts.len()
            ));
        }
        Ok(())
    }

    /// Our dialling connections and outbound connections to `ip`.
    fn outbound_to(&self, ip: IpAddr) -> usize {
        let dials: usize = self
            .attempts
            .values()
            .filter(|a| crate::sim::canonical_ip(a.peer.0.ip()) == ip)
            .map(|a| a.conns.len() + a.unseen)
            .sum();
        let conns = self
            .handshake_ends
            .iter()
            .filter(|(c, e)| **e == (true, ip) && self.handshaking.contains(*c));
        dials + conns.count()
    }

    /// Nothing may be left in flight once the network is quiet.
    pub fn check_quiescent(&self) -> Result<(), String> {
        if let Some(a) = self.attempts.values().next() {
            return Err(format!("dial of {} never ended", a.peer.0));
        }
        if let Some(c) = self.handshaking.iter().next() {
            return Err(format!("c{} still handshaking at quiescence", c.0));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::{ConnInfo, PeerInfo, Transport};

    fn info(initiator: bool) -> ConnInfo {
        ConnInfo {
            transport: Transport::Tcp,
            initiator,
            addr: SocketAddr::from(([10, 0, 0, 2], 7000)),
            topic: None,
            id: None,
        }
    }

    fn peer() -> PeerInfo {
        PeerInfo {
            addr: SocketAddr::from(([10, 0, 0, 2], 7000)),
            topic: None,
            retries: 0,
        }
    }

    fn connection(conn: ConnId) -> Event {
        Event::Connection {
            conn,
            info: info(true),
            early_data: Bytes::new(),
        }
    }

    #[test]
    fn accepts_a_well_formed_dial() {
        let mut check = NodeCheck::default();
        let c = ConnId(1);
        check.on_dial(c);
        check.on_event(&Event::Connecting(peer())).unwrap();
        let info = info(true);
        check
            .on_event(&Event::Handshaking {
                conn: c,
                info: info.clone(),
            })
            .unwrap();
        check.on_event(&connection(c)).unwrap();
        check
            .on_event(&Event::ConnectionClosed { conn: c, info })
            .unwrap();
        check.check_quiescent().unwrap();
    }

    /// A check that passed is only skipped while nothing it reads has changed: a dial or an
    /// event since, or other counters in the core, and it runs in full again.
    #[test]
    fn counters_are_checked_again_after_any_change() {
        let core = Swarm::new(swarm_core::Config::new(vec![1u8; 32], 0)).unwrap();
        let mut check = NodeCheck::new(&core, true);
        check.check_counters(&core).unwrap();
        check.check_counters(&core).unwrap();
        // A dial output with no `connecting` event, the core's counters as they were.
        check.on_dial(ConnId(1));
        assert!(check.check_counters(&core).is_err());
        // The core reports nothing in flight, but the events say one dial is.
        let mut check = NodeCheck::new(&core, true);
        check.check_counters(&core).unwrap();
        check.on_dial(ConnId(1));
        check.on_event(&Event::Connecting(peer())).unwrap();
        assert!(check.check_counters(&core).is_err());
        assert!(
            check.check_counters(&core).is_err(),
            "a failed check is not remembered"
        );
        // The core starts a dial, and the checker hears nothing of it.
        let mut core = Swarm::new(swarm_core::Config::new(vec![1u8; 32], 0)).unwrap();
        let mut check = NodeCheck::new(&core, true);
        let now = swarm_core::Instant::ZERO;
        core.handle_input(now, swarm_core::Input::Listening { port: 7000 });
        check.check_counters(&core).unwrap();
        core.add_peer(now, None, SocketAddr::from(([10, 0, 0, 2], 7000)));
        assert_eq!(core.connecting(), 1);
        assert!(check.check_counters(&core).is_err());
    }

    #[test]
    fn rejects_broken_event_streams() {
        let c = ConnId(1);
        // `connection` without `handshaking`.
        assert!(NodeCheck::default().on_event(&connection(c)).is_err());
        // `connect-failed` without `connecting`.
        let failed = Event::ConnectFailed {
            peer: peer(),
            timed_out: false,
        };
        assert!(NodeCheck::default().on_event(&failed).is_err());
        // Two outcomes for one dial.
        let mut check = NodeCheck::default();
        check.on_dial(c);
        check.on_event(&Event::Connecting(peer())).unwrap();
        check
            .on_event(&Event::Handshaking {
                conn: c,
                info: info(true),
            })
            .unwrap();
        assert!(check.on_event(&failed).is_err());
        // `connection-closed` twice.
        let closed = Event::ConnectionClosed {
            conn: c,
            info: info(true),
        };
        check.on_event(&closed).unwrap();
        assert!(check.on_event(&closed).is_err());
        // A dial left open at quiescence; dialling a banned peer.
        let mut check = NodeCheck::default();
        check.on_dial(c);
        check.on_event(&Event::Connecting(peer())).unwrap();
        assert!(check.check_quiescent().is_err());
        let mut check = NodeCheck::default();
        let reason = swarm_core::BanReason::Application;
        check
            .on_event(&Event::PeerBanned {
                peer: peer(),
                reason,
            })
            .unwrap();
        check.on_dial(c);
        assert!(check.on_event(&Event::Connecting(peer())).is_err());
    }
}
