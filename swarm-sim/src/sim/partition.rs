//! One partition of a simulation split by LAN segment (see [`crate::parallel`]).
//!
//! A partition runs the hosts of its segments and keeps every other host as a skeleton
//! (address, segment, port) to route to. Whatever one of its hosts sends to a host of
//! another partition goes to the outbox with its arrival time, already drawn from this
//! partition's generator (loss, duplication, latency, jitter); the runner hands it over
//! before the receiving partition's clock reaches that time. A TCP pipe between partitions
//! exists twice, one copy per end: its SYN carries the copy for the acceptor's side, and each
//! copy is dropped once its own end has closed.

use super::{Action, Ev, Payload, Sim};
use crate::network::{HostId, Packet, Pipe, PipeId, Side};
use core::time::Duration;
use std::net::SocketAddrV4;
use swarm_core::Instant;

/// Which share of a partitioned run a [`Sim`] runs: the hosts on the segments `s` with
/// `s % count == index`. Every partition is built alike (the same hosts, segments and
/// schedule); each starts only its own cores and keeps only the actions on its own hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub index: usize,
    pub count: usize,
}

/// An event for a host that another partition runs.
pub struct Remote {
    at: Instant,
    what: RemoteEvent,
}

enum RemoteEvent {
    /// A datagram for `host`'s UDP `port`; which socket takes it is decided there.
    Datagram {
        host: HostId,
        port: u16,
        from: SocketAddrV4,
        data: Box<[u8]>,
    },
    /// A pipe packet; a SYN brings the receiving side's copy of the pipe.
    Packet {
        pipe: PipeId,
        to: Side,
        packet: Packet,
        opened: Option<Box<Pipe>>,
    },
}

/// The host an action acts on. Actions whose effect reaches across partitions (random
/// picks among all links or connections, partitions between segments, faults that change
/// how other hosts' packets travel) are not supported in a partitioned run.
pub(super) fn action_host(action: &Action) -> HostId {
    match action {
        Action::AddPeer { from, .. } | Action::RemovePeer { from, .. } => *from,
        Action::Crash { host, .. }
        | Action::Restart { host }
        | Action::Join { host, .. }
        | Action::Leave { host, .. }
        | Action::Poke { host }
        | Action::ClockStep { host, .. } => *host,
        other => panic!("{other:?} is not supported in a partitioned run"),
    }
}

impl Sim {
    /// Whether this simulation runs `h` (always, unless it is one partition of a larger one).
    pub fn owns(&self, h: HostId) -> bool {
        match self.cfg.partition {
            None => true,
            Some(p) => self.partition_of(h) == p.index,
        }
    }

    fn partition_of(&self, h: HostId) -> usize {
        self.cfg
            .partition
            .map_or(0, |p| self.net.segment(h) % p.count)
    }

    /// How far ahead of another partition's clock this one may run: nothing crosses between
    /// segments faster than the WAN's base latency.
    pub fn lookahead(&self) -> Duration {
        self.net.internet.wan.latency.0
    }

    /// The events sent to other partitions' hosts since the last call, by partition.
    pub fn take_outbox(&mut self) -> Vec<Vec<Remote>> {
        self.outbox.iter_mut().map(core::mem::take).collect()
    }

    /// Queues events another partition's hosts sent to this one's. Handed over in a fixed
    /// order (by sending partition, then as they arose), they keep the run deterministic.
    pub fn receive(&mut self, events: Vec<Remote>) {
        for Remote { at, what } in events {
            // The lookahead promises this; an event in this partition's past would be run
            // late, out of order, without anything noticing.
            assert!(
                at > self.now,
                "an event from another partition is due at {at:?}, before now {:?}",
                self.now
            );
            match what {
                RemoteEvent::Datagram {
                    host,
                    port,
                    from,
                    data,
                } => match self.receiving_socket(host, port) {
                    Some(socket) => {
                        let data = Payload::from(data);
                        let ev = Ev::Datagram {
                            host,
                            socket,
                            from,
                            data,
                        };
                        self.queue.push(at, ev);
                    }
                    None => self.net.datagrams.unroutable += 1,
                },
                RemoteEvent::Packet {
                    pipe,
                    to,
                    packet,
                    opened,
                } => {
                    if let Some(copy) = opened {
                        self.net.pipes.insert(pipe, *copy);
                    }
                    self.queue.push(at, Ev::Packet { pipe, to, packet });
                }
            }
        }
    }

    pub(super) fn send_remote_datagram(
        &mut self,
        at: Instant,
        host: HostId,
        port: u16,
        from: SocketAddrV4,
        data: &[u8],
    ) {
        let what = RemoteEvent::Datagram {
            host,
            port,
            from,
            data: data.into(),
        };
        let p = self.partition_of(host);
        self.outbox[p].push(Remote { at, what });
    }

    /// Sends `packet` to the other partition's end of `pipe`, which runs `host`.
    pub(super) fn send_remote_packet(
        &mut self,
        at: Instant,
        host: HostId,
        pipe: PipeId,
        to: Side,
        packet: Packet,
    ) {
        let mut opened = None;
        if matches!(packet, Packet::Syn) {
            if let Some(p) = self.net.pipes.get_mut(&pipe) {
                p.remote = Some(to);
                let mut copy = p.clone();
                copy.remote = Some(to.other());
                opened = Some(Box::new(copy));
            }
        }
        let what = RemoteEvent::Packet {
            pipe,
            to,
            packet,
            opened,
        };
        let p = self.partition_of(host);
        self.outbox[p].push(Remote { at, what });
    }
}
