//! Hosts and the nodes (core incarnations) running on them.

use crate::invariants::NodeCheck;
use crate::network::{PipeId, SegmentId};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use swarm_core::{Config, ConnId, Instant, Swarm};

/// The port every simulated host listens on.
pub const LISTEN_PORT: u16 = 7000;
/// The multicast DNS port.
pub const MDNS_PORT: u16 = 5353;

/// What a host does with an incoming connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostState {
    /// A core runs and listens.
    Running,
    /// Accepts connections, never sends, ignores what it receives.
    Mute,
    /// Up but not listening: connects are refused (RST) after a round trip.
    Refusing,
    /// Unreachable: connects are never answered, so the dialer's connect timeout fires.
    Blackholed,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Running => "running",
            HostState::Mute => "mute",
            HostState::Refusing => "refusing",
            HostState::Blackholed => "blackholed",
        }
    }
}

/// One incarnation of a core on a host.
#[repr(C)]
pub struct Node {
    // What every step reads first (see `Swarm`'s layout), then the core, whose own first
    // lines are what a datagram reads.
    /// The deadline a timer event is queued for.
    pub armed: Option<Instant>,
    /// When the live timer event (if any) is queued to fire, in simulation time.
    pub queued_at: Option<Instant>,
    /// Bytes left unread while the core did not want them (`wants_read` false before the
    /// handshake, e.g. a uTP connection waiting out its grace period, or a handshaken one
    /// waiting for the duplicate rule): like a socket buffer, fed in once it does, or handed
    /// to the application with the connection.
    pub held: BTreeMap<ConnId, VecDeque<Bytes>>,
    /// The core has an mDNS socket (kept here so a multicast's fan-out does not touch every
    /// member's core).
    pub mdns: bool,
    pub core: Swarm,
    pub check: NodeCheck,
    /// The pipe behind each of the core's connections.
    pub conns: BTreeMap<ConnId, PipeId>,
    /// Bytes that arrived after the core handed the stream to the application (held).
    pub app_bytes: u64,
    /// The application's side of each uTP connection the core runs itself.
    pub utp_apps: BTreeMap<ConnId, UtpApp>,
}

/// What the application wrote to and read from one uTP stream. Every stream carries the
/// same bytes (byte `i` is `i % 251`), so the reader checks each byte without coordination.
#[derive(Clone, Debug, Default)]
pub struct UtpApp {
    /// Bytes to write in all.
    pub to_write: u64,
    pub written: u64,
    pub read: u64,
    /// The peer's end of stream was read.
    pub ended: bool,
}

/// The byte at `offset` of every simulated uTP stream.
pub fn utp_pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// A dns-discovery server engine running on a host, and the port it answers on.
pub struct DnsHost {
    pub server: swarm_core::dnsd::DnsServer,
    pub port: u16,
    pub incarnation: u64,
}

/// The address of the host with this index: `10.x.y.z`, from `10.0.0.1` up.
pub fn host_ip(index: usize) -> Ipv4Addr {
    let n = index as u32 + 1;
    Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// A simulated machine with one address.
///
/// Line-aligned, with what every delivery to the host reads (its core, its DNS server, its
/// clock, its timer generation) in the first line: at 10,000 nodes each delivery finds the
/// record evicted, and a second line is a second miss.
#[repr(C, align(64))]
pub struct Host {
    /// Boxed, as are the template and the DNS server: a partition keeps a record of every
    /// host of the network and runs only its own, and with them inline each record took
    /// 5.8 KB (58 MB per partition at 10,000 hosts, nearly all of it for hosts other
    /// partitions run).
    pub node: Option<Box<Node>>,
    /// A dns-discovery server instead of a core (see `Sim::add_dns_server`).
    pub dns: Option<Box<DnsHost>>,
    /// How far the host's monotonic clock is ahead of the simulation's (clock steps only
    /// go forward: a monotonic clock never runs back, but a paused VM or a suspended
    /// process sees it jump).
    pub clock_offset: core::time::Duration,
    /// Bumped whenever a new timer event is queued; older ones are stale.
    pub timer_gen: u64,
    /// The LAN segment (multicast domain) the host is on.
    pub segment: SegmentId,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub state: HostState,
    /// The configuration each incarnation starts from (id and seed are replaced).
    pub template: Option<Box<Config>>,
    /// How many cores have been started here.
    pub incarnation: u32,
    /// The topics the application joined (with `announce`), joined again after a restart.
    pub topics: Vec<(Bytes, bool)>,
    next_ephemeral: u16,
}

impl Host {
    pub fn new(index: usize, state: HostState, template: Option<Config>) -> Self {
        Host {
            ip: host_ip(index),
            port: LISTEN_PORT,
            state,
            segment: 0,
            template: template.map(Box::new),
            node: None,
            incarnation: 0,
            timer_gen: 0,
            clock_offset: core::time::Duration::ZERO,
            topics: Vec::new(),
            dns: None,
            next_ephemeral: 49152,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), self.port)
    }

    /// A fresh source port for an outbound TCP connection.
    pub fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_ephemeral;
        self.next_ephemeral = if port == u16::MAX { 49152 } else { port + 1 };
        port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every partition holds a record of every host, and runs a few of them: the core
    /// stays out of the record, so the others cost a partition little.
    #[test]
    fn a_host_record_without_its_core_is_small() {
        let size = core::mem::size_of::<Host>();
        assert!(size <= 128, "{size} bytes");
    }

    /// See [`Host`]: what a delivery reads, in its first line.
    #[test]
    fn a_delivery_reads_one_line_of_the_host_record() {
        use core::mem::{offset_of, size_of};
        let ends = [
            offset_of!(Host, node) + size_of::<Option<Box<Node>>>(),
            offset_of!(Host, dns) + size_of::<Option<Box<DnsHost>>>(),
            offset_of!(Host, clock_offset) + size_of::<core::time::Duration>(),
            offset_of!(Host, timer_gen) + size_of::<u64>(),
            offset_of!(Host, state) + size_of::<HostState>(),
        ];
        assert!(ends.iter().all(|&end| end <= 64), "{ends:?}");
        assert_eq!(core::mem::align_of::<Host>(), 64);
    }
}
