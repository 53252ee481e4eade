//! Datagrams: a multicast to the mDNS group reaches every host on the sender's LAN segment
//! (the sender too: multicast loopback is on); a unicast is routed (see `route`): on the
//! segment directly, across the internet through NATs, partitions and the WAN's loss,
//! duplication, reordering and uplink queueing. Each copy to another host is lost or
//! doubled with its segments' odds. Any socket's datagrams take this path (mDNS, the DHT,
//! and uTP or unicast DNS when they use the swarm socket).

use super::route::Route;
use super::{Ev, Payload, Sim, SimResult};
use crate::network::{micros, HostId, SegmentConfig};
use crate::node::Host;
use crate::node::MDNS_PORT;
use bytes::Bytes;
use std::net::{SocketAddr, SocketAddrV4};
use swarm_core::mdns::MDNS_GROUP;
use swarm_core::{Input, Instant, UdpSocket};

impl Sim {
    /// Carries out `h`'s `Output::Transmit`.
    pub(super) fn transmit(&mut self, h: HostId, socket: UdpSocket, to: SocketAddr, data: Bytes) {
        // The DNS client's socket is modelled on the swarm port's number (the adapter binds
        // its own when uTP is off; replies reach the client through the swarm socket too).
        let port = match socket {
            UdpSocket::Mdns => MDNS_PORT,
            UdpSocket::Swarm | UdpSocket::Dns => self.hosts[h].port,
        };
        self.transmit_from(h, port, to, data);
    }

    /// Sends a datagram from `h`'s UDP `port`.
    pub(super) fn transmit_from(&mut self, h: HostId, port: u16, to: SocketAddr, data: Bytes) {
        self.net.datagrams.sent += 1;
        if self.net.is_isolated(h, self.now) {
            self.net.datagrams.lost += 1;
            return;
        }
        let data = Payload::from(&data[..]);
        if to == SocketAddr::V4(MDNS_GROUP) {
            let segment = self.hosts[h].segment;
            if self.members[segment].is_empty() {
                self.net.datagrams.unroutable += 1;
                return;
            }
            let from = SocketAddrV4::new(self.hosts[h].ip, port);
            let sent = self.net.internet.departure(h, data.len(), self.now);
            self.multicast(h, sent, segment, from, &data);
        } else if to.ip().is_multicast() {
            self.net.datagrams.unroutable += 1; // no other group is joined
        } else {
            match self.route_datagram(h, port, to) {
                Route::Host { to, port, from } => {
                    let sent = self.net.internet.departure(h, data.len(), self.now);
                    self.send_copies(h, sent, to, port, from, &data);
                }
                Route::Nowhere => self.net.datagrams.unroutable += 1,
            }
        }
    }

    /// Queues the copies of a datagram `h` sent at `sent` that reach `b`'s `port`.
    fn send_copies(
        &mut self,
        h: HostId,
        sent: Instant,
        b: HostId,
        port: u16,
        from: SocketAddrV4,
        data: &Payload,
    ) {
        // `None`: another partition's host, whose owner finds the socket when copies arrive.
        let socket = if self.owns(b) {
            let Some(socket) = self.receiving_socket(b, port) else {
                self.net.datagrams.unroutable += 1;
                return;
            };
            Some(socket)
        } else {
            None
        };
        for _ in 0..self.copies(h, b) {
            let at = Instant::from_micros(sent.as_micros() + self.datagram_delay_us(h, b));
            match socket {
                Some(socket) => self.queue_copy(at, b, socket, from, data),
                None => self.send_remote_datagram(at, b, port, from, data),
            }
        }
    }

    /// Queues one copy of a datagram for `b`'s `socket`, arriving at `at`.
    fn queue_copy(
        &mut self,
        at: Instant,
        b: HostId,
        socket: UdpSocket,
        from: SocketAddrV4,
        data: &Payload,
    ) {
        let ev = Ev::Datagram {
            host: b,
            socket,
            from,
            data: data.clone(),
        };
        self.queue.push(at, ev);
    }

    /// Queues the copies of a multicast `h` sent at `sent` to every member of its
    /// `segment`, as [`send_copies`](Self::send_copies) to each would, drawing the same
    /// numbers, with what is the same for every member read once: the members share the
    /// segment's odds and, partitions being made of segments, the sender's partition. A
    /// copy per member is most of a busy LAN's events.
    fn multicast(
        &mut self,
        h: HostId,
        sent: Instant,
        segment: usize,
        from: SocketAddrV4,
        data: &Payload,
    ) {
        let odds = self.net.segments[segment];
        // By index: each copy draws from the simulation's RNG, which the member list
        // shares a borrow with.
        for i in 0..self.members[segment].len() {
            let b = self.members[segment][i];
            let Some(socket) = self.receiving_socket(b, MDNS_PORT) else {
                self.net.datagrams.unroutable += 1;
                continue;
            };
            let copies = if b == h { 1 } else { self.lan_copies(odds) };
            for _ in 0..copies {
                let delay = self.net.datagram_delay_us(&mut self.rng, h, b);
                let at = Instant::from_micros(sent.as_micros() + delay);
                self.queue_copy(at, b, socket, from, data);
            }
        }
    }

    /// One copy's delay in µs: the link latency plus jitter; across the internet sometimes
    /// held back (reordered).
    fn datagram_delay_us(&mut self, a: HostId, b: HostId) -> u64 {
        let mut delay = self.net.datagram_delay_us(&mut self.rng, a, b);
        if self.net.segment(a) != self.net.segment(b) {
            let wan = self.net.internet.wan;
            delay += self.rng.range(0, micros(wan.jitter));
            if wan.reorder > 0.0 && self.rng.chance(wan.reorder) {
                delay += self.rng.range(0, micros(wan.reorder_delay));
            }
        }
        delay
    }

    /// The socket of `b` bound to `port`, if it has one.
    pub(super) fn receiving_socket(&self, b: HostId, port: u16) -> Option<UdpSocket> {
        let socket = self.sockets[b].receiving(port);
        debug_assert_eq!(socket, Sockets::of(&self.hosts[b]).receiving(port), "n{b}");
        socket
    }

    /// How many copies of a datagram from `a` reach `b`: 0 (lost), 1 or 2 (duplicated).
    /// Crossing into another segment adds that segment's odds. Loopback is exact.
    fn copies(&mut self, a: HostId, b: HostId) -> usize {
        if a == b {
            return 1;
        }
        let (sa, sb) = (self.net.segment(a), self.net.segment(b));
        // The sender's segment, and the receiver's if it is another one.
        let segments = [
            Some(self.net.segments[sa]),
            (sb != sa).then(|| self.net.segments[sb]),
        ];
        let mut copies = 1;
        if sb != sa {
            let (from, to) = (sa, sb);
            if self
                .net
                .internet
                .blocked_until(from, to, self.now)
                .is_some()
            {
                self.net.datagrams.lost += 1;
                return 0;
            }
            let wan = self.net.internet.wan;
            if wan.loss > 0.0 && self.rng.chance(wan.loss) {
                self.net.datagrams.lost += 1;
                return 0;
            }
            if wan.duplicate > 0.0 && self.rng.chance(wan.duplicate) {
                self.net.datagrams.duplicated += 1;
                copies = 2;
            }
        }
        for s in segments.into_iter().flatten() {
            match self.lan_copies(s) {
                0 => return 0,
                n => copies = copies.max(n),
            }
        }
        copies
    }

    /// How many copies a segment with odds `s` lets through: 0 (lost), 1 or 2 (duplicated).
    fn lan_copies(&mut self, s: SegmentConfig) -> usize {
        if s.loss > 0.0 && self.rng.chance(s.loss) {
            self.net.datagrams.lost += 1;
            return 0;
        }
        if s.duplicate > 0.0 && self.rng.chance(s.duplicate) {
            self.net.datagrams.duplicated += 1;
            return 2;
        }
        1
    }

    /// A datagram arrives at `h`.
    pub(super) fn on_datagram(
        &mut self,
        h: HostId,
        socket: UdpSocket,
        from: SocketAddrV4,
        data: Payload,
    ) -> SimResult {
        let from = SocketAddr::V4(from);
        if self.net.is_isolated(h, self.now) {
            self.net.datagrams.lost += 1;
            return Ok(());
        }
        if self.hosts[h].dns.is_some() {
            self.on_dns_server_datagram(h, from, &data);
            return Ok(());
        }
        if self.hosts[h].node.is_none() {
            self.net.datagrams.unroutable += 1;
            return Ok(());
        }
        self.net.datagrams.delivered += 1;
        let data = &data[..];
        self.input(h, Input::Datagram { socket, from, data })
    }
}

/// What a host receives datagrams on, kept apart from its record: a multicast reaches 50
/// hosts, and reading this in each host's record (several kilobytes, with its core) was
/// a cache miss per copy at 10,000 nodes. Set again whenever a core starts or stops and
/// when a dns-discovery server is added, the only changes to what it mirrors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sockets {
    /// A dns-discovery server's one port.
    dns: Option<u16>,
    core: bool,
    mdns: bool,
    port: u16,
}

impl Sockets {
    pub(super) fn of(host: &Host) -> Sockets {
        Sockets {
            dns: host.dns.as_ref().map(|d| d.port),
            core: host.node.is_some(),
            mdns: host.node.as_ref().is_some_and(|n| n.mdns),
            port: host.port,
        }
    }

    fn receiving(self, port: u16) -> Option<UdpSocket> {
        if let Some(dns) = self.dns {
            // A server host: its one socket (the tag is only carried to `on_datagram`).
            return (port == dns).then_some(UdpSocket::Dns);
        }
        if !self.core {
            None
        } else if port == MDNS_PORT && self.mdns {
            Some(UdpSocket::Mdns)
        } else if port == self.port {
            Some(UdpSocket::Swarm)
        } else {
            None
        }
    }
}
