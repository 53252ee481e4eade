//! The routed internet between LAN segments: wide-area links with their own latency, jitter,
//! loss, duplication, reordering and uplink bandwidth; partitions between segments (both
//! ways or one way) that heal at a given instant; and NAT in front of a segment.
//!
//! Hosts on one segment reach each other directly by their (private) addresses. A host on a
//! segment behind NAT reaches the rest of the internet through its segment's public address:
//! every datagram it sends outward gets a public source port from the NAT (one per local
//! port with endpoint-independent mapping, one per local port *and destination* with a
//! symmetric NAT), and only replies the NAT's filter lets back in reach it. Unsolicited TCP
//! connections to the public address are refused or dropped, as the NAT is configured.

use crate::network::{HostId, SegmentId};
use core::time::Duration;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use swarm_core::Instant;

/// Wide-area link parameters (between different segments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WanConfig {
    /// Range of each host pair's one-way base latency across the internet.
    pub latency: (Duration, Duration),
    /// Extra delay per datagram in `[0, jitter]`.
    pub jitter: Duration,
    /// Odds that a datagram crossing the internet is lost.
    pub loss: f64,
    /// Odds that it arrives twice.
    pub duplicate: f64,
    /// Odds that it is held back by up to `reorder_delay` (so later ones overtake it).
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Each host's uplink in bytes per second (datagrams and TCP data queue behind each
    /// other); `None` = unlimited.
    pub uplink: Option<u64>,
}

impl Default for WanConfig {
    fn default() -> Self {
        WanConfig {
            latency: (Duration::from_millis(10), Duration::from_millis(150)),
            jitter: Duration::from_millis(10),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(200),
            uplink: None,
        }
    }
}

impl WanConfig {
    /// The same links with every fault off (no loss, duplication, reordering or
    /// bandwidth limit).
    pub fn calm(self) -> Self {
        WanConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            uplink: None,
            ..self
        }
    }
}

/// How a NAT maps and filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// One public port per local port, whatever the destination; anyone may send to it
    /// ("full cone"): a peer that learns the mapped address can reach the host.
    EndpointIndependent,
    /// One public port per local port and destination; only that destination may answer.
    Symmetric,
}

impl NatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NatKind::EndpointIndependent => "endpoint-independent",
            NatKind::Symmetric => "symmetric",
        }
    }
}

/// A NAT in front of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    pub kind: NatKind,
    /// Unsolicited inbound TCP gets a RST (true) or silence (false).
    pub refuse_inbound: bool,
}

/// A mapping's local end and, for a symmetric NAT, the one remote allowed to answer.
type MappingKey = (HostId, u16, Option<SocketAddr>);

/// A NAT's state: its public address and mappings.
#[derive(Debug)]
pub struct Nat {
    pub cfg: NatConfig,
    pub public_ip: Ipv4Addr,
    next_port: u16,
    outbound: BTreeMap<MappingKey, u16>,
    inbound: BTreeMap<u16, MappingKey>,
}

/// Public ports a NAT hands out, from here up (wrapping back to here).
const NAT_FIRST_PORT: u16 = 20_000;

impl Nat {
    pub fn new(cfg: NatConfig, public_ip: Ipv4Addr) -> Self {
        Nat {
            cfg,
            public_ip,
            next_port: NAT_FIRST_PORT,
            outbound: BTreeMap::new(),
            inbound: BTreeMap::new(),
        }
    }

    /// A fresh public port (TCP connections get one each).
    pub fn fresh_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = port.checked_add(1).unwrap_or(NAT_FIRST_PORT);
        port
    }

    /// The public source address of a datagram from `host:port` to `to`.
    pub fn map_out(&mut self, host: HostId, port: u16, to: SocketAddr) -> SocketAddrV4 {
        let remote = match self.cfg.kind {
            NatKind::EndpointIndependent => None,
            NatKind::Symmetric => Some(to),
        };
        let key = (host, port, remote);
        let public = match self.outbound.get(&key) {
            Some(p) => *p,
            None => {
                let p = self.fresh_port();
                self.outbound.insert(key, p);
                self.inbound.insert(p, key);
                p
            }
        };
        SocketAddrV4::new(self.public_ip, public)
    }

    /// Where a datagram from `from` to public port `port` goes, if the filter lets it in.
    pub fn map_in(&self, port: u16, from: SocketAddr) -> Option<(HostId, u16)> {
        let (host, local, remote) = *self.inbound.get(&port)?;
        match remote {
            Some(r) if r != from => None,
            _ => Some((host, local)),
        }
    }

    /// Mappings held (bounded by the ports a NAT has).
    pub fn mappings(&self) -> usize {
        self.outbound.len()
    }
}

/// The internet: WAN links, NATs and partitions.
#[derive(Debug, Default)]
pub struct Internet {
    pub wan: WanConfig,
    pub nats: BTreeMap<SegmentId, Nat>,
    pub by_public_ip: BTreeMap<IpAddr, SegmentId>,
    /// Directed segment pairs cut until the given instant.
    blocked: BTreeMap<(SegmentId, SegmentId), Instant>,
    /// When each host's uplink is free again.
    uplink_free: BTreeMap<HostId, Instant>,
}

impl Internet {
    /// Puts `segment` behind a NAT with the public address `public_ip`.
    pub fn add_nat(&mut self, segment: SegmentId, cfg: NatConfig, public_ip: Ipv4Addr) {
        self.by_public_ip.insert(IpAddr::V4(public_ip), segment);
        self.nats.insert(segment, Nat::new(cfg, public_ip));
    }

    /// Cuts traffic from segment `from` to segment `to` until `until`.
    pub fn block(&mut self, from: SegmentId, to: SegmentId, until: Instant) {
        let t = self.blocked.entry((from, to)).or_insert(until);
        *t = (*t).max(until);
    }

    /// Ends every partition now.
    pub fn heal_all(&mut self) {
        self.blocked.clear();
    }

    /// Until when traffic from `from` to `to` is cut, if it is at `now`.
    pub fn blocked_until(&self, from: SegmentId, to: SegmentId, now: Instant) -> Option<Instant> {
        if from == to {
            return None;
        }
        self.blocked.get(&(from, to)).copied().filter(|t| *t > now)
    }

    /// When `bytes` sent by `host` at `now` have left its uplink.
    pub fn departure(&mut self, host: HostId, bytes: usize, now: Instant) -> Instant {
        let Some(rate) = self.wan.uplink.filter(|r| *r > 0) else {
            return now;
        };
        let free = self.uplink_free.get(&host).copied().unwrap_or(now).max(now);
        let micros = (bytes as u64).saturating_mul(1_000_000) / rate;
        let done = free + Duration::from_micros(micros);
        self.uplink_free.insert(host, done);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([100, 64, 0, last], port))
    }

    #[test]
    fn endpoint_independent_nat_reuses_the_mapping_and_admits_anyone() {
        let cfg = NatConfig {
            kind: NatKind::EndpointIndependent,
            refuse_inbound: false,
        };
        let mut nat = Nat::new(cfg, Ipv4Addr::new(100, 64, 1, 1));
        let a = nat.map_out(3, 7000, addr(9, 1));
        assert_eq!(nat.map_out(3, 7000, addr(8, 1)), a);
        assert_eq!(nat.map_in(a.port(), addr(7, 7)), Some((3, 7000)));
        assert_eq!(nat.map_in(a.port() + 1, addr(7, 7)), None);
    }

    #[test]
    fn symmetric_nat_maps_per_destination_and_filters_others() {
        let cfg = NatConfig {
            kind: NatKind::Symmetric,
            refuse_inbound: true,
        };
        let mut nat = Nat::new(cfg, Ipv4Addr::new(100, 64, 1, 1));
        let a = nat.map_out(3, 7000, addr(9, 1));
        let b = nat.map_out(3, 7000, addr(8, 1));
        assert_ne!(a, b);
        assert_eq!(nat.map_in(a.port(), addr(9, 1)), Some((3, 7000)));
        assert_eq!(nat.map_in(a.port(), addr(8, 1)), None);
    }

    #[test]
    fn partitions_are_directed_and_heal() {
        let mut net = Internet::default();
        net.block(1, 2, Instant::from_micros(10));
        assert!(net.blocked_until(1, 2, Instant::ZERO).is_some());
        assert!(net.blocked_until(2, 1, Instant::ZERO).is_none());
        assert!(net.blocked_until(1, 2, Instant::from_micros(10)).is_none());
    }

    #[test]
    fn uplink_queues_bytes() {
        let mut net = Internet::default();
        net.wan.uplink = Some(1000);
        let t0 = Instant::ZERO;
        assert_eq!(net.departure(0, 500, t0), Instant::from_micros(500_000));
        assert_eq!(net.departure(0, 500, t0), Instant::from_micros(1_000_000));
        assert_eq!(net.departure(1, 1, t0), Instant::from_micros(1_000));
    }
}
