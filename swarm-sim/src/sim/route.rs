//! Where an address leads: the LAN, the internet (through NATs) or nowhere.

use super::Sim;
use crate::network::HostId;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

/// Where a unicast datagram goes.
pub(super) enum Route {
    /// To host `to`, port `port`, appearing to come from `from` (after the sender's NAT).
    Host {
        to: HostId,
        port: u16,
        from: SocketAddrV4,
    },
    /// No host gets it: a private address from outside its segment, a NAT's filter, an
    /// address nobody has.
    Nowhere,
}

impl Sim {
    /// The route of a datagram `h` sends from its port `port` to `to`.
    pub(super) fn route_datagram(&mut self, h: HostId, port: u16, to: SocketAddr) -> Route {
        let seg = self.hosts[h].segment;
        let private = SocketAddrV4::new(self.hosts[h].ip, port);
        let ip = to_v4(to.ip());
        if let Some(&b) = self.by_ip.get(&ip) {
            let bseg = self.hosts[b].segment;
            if bseg == seg {
                let from = private;
                return Route::Host {
                    to: b,
                    port: to.port(),
                    from,
                };
            }
            if self.net.internet.nats.contains_key(&bseg) {
                return Route::Nowhere;
            }
            let from = self.source_nat(h, port, to);
            return Route::Host {
                to: b,
                port: to.port(),
                from,
            };
        }
        let Some(&bseg) = self.net.internet.by_public_ip.get(&ip) else {
            return Route::Nowhere;
        };
        if bseg == seg {
            // No hairpinning.
            return Route::Nowhere;
        }
        let from = self.source_nat(h, port, to);
        let nat = &self.net.internet.nats[&bseg];
        match nat.map_in(to.port(), SocketAddr::V4(from)) {
            Some((b, port)) => Route::Host { to: b, port, from },
            None => Route::Nowhere,
        }
    }

    /// `h`'s address as the internet sees a datagram from its `port` to `to`.
    fn source_nat(&mut self, h: HostId, port: u16, to: SocketAddr) -> SocketAddrV4 {
        let seg = self.hosts[h].segment;
        match self.net.internet.nats.get_mut(&seg) {
            Some(nat) => nat.map_out(h, port, to),
            None => SocketAddrV4::new(self.hosts[h].ip, port),
        }
    }

    /// Where a TCP (or uTP) connection from `h` to `addr` goes: the host, if any, and
    /// whether the SYN is answered with a RST by a NAT (no host and no RST: a blackhole).
    pub(super) fn route_dial(&mut self, h: HostId, addr: SocketAddr) -> (Option<HostId>, bool) {
        let seg = self.hosts[h].segment;
        let ip = to_v4(addr.ip());
        if let Some(&b) = self.by_ip.get(&ip) {
            let bseg = self.hosts[b].segment;
            let private = self.net.internet.nats.contains_key(&bseg);
            return if bseg == seg || !private {
                (Some(b), false)
            } else {
                (None, false)
            };
        }
        match self.net.internet.by_public_ip.get(&ip) {
            Some(bseg) if *bseg != seg => {
                let nat = &self.net.internet.nats[bseg];
                (None, nat.cfg.refuse_inbound)
            }
            _ => (None, false),
        }
    }
}

pub(super) fn to_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
