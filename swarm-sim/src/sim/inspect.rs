//! Questions about the simulation's state, and the quiescence check.

use super::{Link, LogEntry, Sim, SimResult};
use crate::invariants::NodeCheck;
use crate::network::{DatagramStats, EndState, HostId, SegmentId, Side};
use crate::node::HostState;
use crate::trace::Trace;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use swarm_core::{Event, Instant, Swarm};

impl Sim {
    /// At quiescence: nothing in flight on any node, every open end belongs to an
    /// established connection both cores agree on, and at most one per pair of hosts.
    pub fn check_quiescence(&self) -> SimResult {
        for (h, host) in self.hosts.iter().enumerate() {
            if let Some(node) = &host.node {
                node.check
                    .check_quiescent()
                    .map_err(|m| self.violation(format!("n{h}: {m}")))?;
            }
        }
        let mut pairs = BTreeMap::new();
        for (id, pipe) in self.net.pipes.in_order() {
            if pipe.remote.is_some() {
                // Half of a pipe between partitions: the other half is not here to compare.
                continue;
            }
            let mut ends = Vec::new();
            for side in [Side::Dialer, Side::Acceptor] {
                let e = pipe.end(side);
                if let (EndState::Open(conn), Some(h)) = (e.state, e.host) {
                    let node = self.hosts[h]
                        .node
                        .as_ref()
                        .expect("open end on a running host");
                    if !node.check.established().contains(&conn) {
                        return Err(self.violation(format!(
                            "n{h}: c{} is open but not established at quiescence",
                            conn.0
                        )));
                    }
                    ends.push(h);
                }
            }
            if ends.len() == 1 && pipe.end(Side::Acceptor).state != EndState::Mute {
                return Err(self.violation(format!(
                    "pipe {}: n{} kept a connection its peer closed",
                    id.0, ends[0]
                )));
            }
            if let [a, b] = ends[..] {
                if pipe.app_recv != pipe.app_sent {
                    return Err(self.violation(format!(
                        "pipe {}: application data sent {:?}, received {:?}",
                        id.0, pipe.app_sent, pipe.app_recv
                    )));
                }
                let n = pairs.entry((a.min(b), a.max(b))).or_insert(0);
                *n += 1;
                if *n > 1 {
                    return Err(
                        self.violation(format!("n{a} and n{b} kept {n} connections at quiescence"))
                    );
                }
            }
        }
        Ok(())
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Pipes this simulation holds (in a partition, its copies of pipes between partitions
    /// included).
    pub fn live_pipes(&self) -> usize {
        self.net.pipes.len()
    }

    /// Connection ends the running cores hold on pipes.
    pub fn open_ends(&self) -> usize {
        let nodes = self.hosts.iter().filter_map(|h| h.node.as_ref());
        nodes.map(|n| n.conns.len()).sum()
    }

    pub fn step_kinds(&self) -> super::StepKinds {
        self.step_kinds
    }

    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    pub fn addr(&self, h: HostId) -> SocketAddr {
        self.hosts[h].addr()
    }

    pub fn state(&self, h: HostId) -> HostState {
        self.hosts[h].state
    }

    /// The running core on `h`, if any.
    pub fn core(&self, h: HostId) -> Option<&Swarm> {
        self.hosts[h].node.as_ref().map(|n| &n.core)
    }

    /// The invariant checker's view of `h`'s current incarnation.
    pub fn check(&self, h: HostId) -> Option<&NodeCheck> {
        self.hosts[h].node.as_ref().map(|n| &n.check)
    }

    /// Bytes the application on `h` received (and held) after its connections were handed
    /// over.
    pub fn app_bytes(&self, h: HostId) -> u64 {
        self.hosts[h].node.as_ref().map_or(0, |n| n.app_bytes)
    }

    /// Every core event so far.
    /// The application's view of each uTP stream the core on `h` runs itself.
    pub fn utp_apps(
        &self,
        h: HostId,
    ) -> Option<&std::collections::BTreeMap<swarm_core::ConnId, crate::node::UtpApp>> {
        self.hosts[h].node.as_ref().map(|n| &n.utp_apps)
    }

    /// The address of host `h`.
    pub fn host_ip(&self, h: HostId) -> std::net::Ipv4Addr {
        self.hosts[h].ip
    }

    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }

    /// `h`'s events (every incarnation) with their times.
    pub fn events(&self, h: HostId) -> impl Iterator<Item = (Instant, &Event)> {
        self.log
            .iter()
            .filter(move |e| e.host == h)
            .map(|e| (e.at, &e.event))
    }

    /// The instants the scenario marked.
    pub fn marks(&self) -> &[(&'static str, Instant)] {
        &self.marks
    }

    /// Datagram counters so far.
    pub fn datagrams(&self) -> DatagramStats {
        self.net.datagrams
    }

    /// The LAN segment `h` is on.
    pub fn segment(&self, h: HostId) -> SegmentId {
        self.hosts[h].segment
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Connections established at both ends right now (both cores reported `connection`
    /// and neither end closed).
    pub fn links(&self) -> Vec<Link> {
        let established = |h: Option<HostId>, state: EndState| match (h, state) {
            (Some(h), EndState::Open(c)) => self.hosts[h]
                .node
                .as_ref()
                .filter(|n| n.check.established().contains(&c))
                .map(|_| (h, c)),
            _ => None,
        };
        self.net
            .pipes
            .in_order()
            .into_iter()
            .filter_map(|(id, p)| {
                let d = p.end(Side::Dialer);
                let a = p.end(Side::Acceptor);
                Some(Link {
                    pipe: id,
                    dialer: established(d.host, d.state)?,
                    acceptor: established(a.host, a.state)?,
                })
            })
            .collect()
    }

    /// The pairs of hosts with an established connection.
    pub fn connected_pairs(&self) -> BTreeSet<(HostId, HostId)> {
        self.links()
            .iter()
            .map(|l| {
                let (a, b) = (l.dialer.0, l.acceptor.0);
                (a.min(b), a.max(b))
            })
            .collect()
    }
}
