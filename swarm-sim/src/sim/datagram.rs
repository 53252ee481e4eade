//! Datagrams: a multicast to the mDNS group reaches every host on the sender's LAN segment
//! (the sender too: multicast loopback is on), a unicast reaches the one host with that
//! address. Each copy to another host is lost or doubled with its segments' odds.

use super::{Ev, Sim, SimResult};
use crate::network::HostId;
use crate::node::MDNS_PORT;
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use swarm_core::mdns::MDNS_GROUP;
use swarm_core::{Input, UdpSocket};

impl Sim {
    /// Carries out `h`'s `Output::Transmit`.
    pub(super) fn transmit(&mut self, h: HostId, socket: UdpSocket, to: SocketAddr, data: Bytes) {
        self.net.datagrams.sent += 1;
        let port = match socket {
            UdpSocket::Mdns => MDNS_PORT,
            UdpSocket::Swarm | UdpSocket::Dns => self.hosts[h].port,
        };
        let from = SocketAddr::new(IpAddr::V4(self.hosts[h].ip), port);
        if self.net.is_isolated(h, self.now) {
            self.net.datagrams.lost += 1;
            return;
        }
        let targets: Vec<HostId> = if to == SocketAddr::V4(MDNS_GROUP) {
            let segment = self.hosts[h].segment;
            (0..self.hosts.len())
                .filter(|o| self.hosts[*o].segment == segment)
                .collect()
        } else if to.ip().is_multicast() {
            Vec::new() // no other group is joined
        } else {
            let ip = to_v4(to.ip());
            self.by_ip.get(&ip).copied().into_iter().collect()
        };
        if targets.is_empty() {
            self.net.datagrams.unroutable += 1;
        }
        for b in targets {
            let Some(socket) = self.receiving_socket(b, to.port()) else {
                self.net.datagrams.unroutable += 1;
                continue;
            };
            for _ in 0..self.copies(h, b) {
                let at = self.now + self.net.datagram_delay(&mut self.rng, h, b);
                let data = data.clone();
                let ev = Ev::Datagram {
                    host: b,
                    socket,
                    from,
                    data,
                };
                self.queue.push(at, ev);
            }
        }
    }

    /// The socket of `b` bound to `port`, if it has one.
    fn receiving_socket(&self, b: HostId, port: u16) -> Option<UdpSocket> {
        let host = &self.hosts[b];
        let node = host.node.as_ref()?;
        if port == MDNS_PORT && node.core.config().mdns.is_some() {
            Some(UdpSocket::Mdns)
        } else if port == host.port {
            Some(UdpSocket::Swarm)
        } else {
            None
        }
    }

    /// How many copies of a datagram from `a` reach `b`: 0 (lost), 1 or 2 (duplicated).
    /// Crossing into another segment adds that segment's odds. Loopback is exact.
    fn copies(&mut self, a: HostId, b: HostId) -> usize {
        if a == b {
            return 1;
        }
        let (sa, sb) = (self.hosts[a].segment, self.hosts[b].segment);
        let mut segments = vec![self.net.segments[sa]];
        if sb != sa {
            segments.push(self.net.segments[sb]);
        }
        let mut copies = 1;
        for s in segments {
            if s.loss > 0.0 && self.rng.chance(s.loss) {
                self.net.datagrams.lost += 1;
                return 0;
            }
            if s.duplicate > 0.0 && self.rng.chance(s.duplicate) {
                self.net.datagrams.duplicated += 1;
                copies = 2;
            }
        }
        copies
    }

    /// A datagram arrives at `h`.
    pub(super) fn on_datagram(
        &mut self,
        h: HostId,
        socket: UdpSocket,
        from: SocketAddr,
        data: Bytes,
    ) -> SimResult {
        if self.net.is_isolated(h, self.now) {
            self.net.datagrams.lost += 1;
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

fn to_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
