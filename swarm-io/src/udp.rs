//! UDP sockets of a swarm. Plain `std` + `socket2`, no runtime: any adapter can register them.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

/// The mDNS group and port.
pub const MDNS_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// The IPv4 addresses of this host's interfaces, loopback included.
pub fn ipv4_interfaces() -> Vec<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|iface| match iface.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Binds the multicast DNS socket the way Node's multicast-dns does (PROTOCOLS.md 3.2), so it
/// can share port 5353 with Node peers and other mDNS software on the host: SO_REUSEADDR (and
/// SO_REUSEPORT), multicast loopback on (peers on this host hear each other), TTL 255, the
/// group joined on each of `interfaces`, outgoing interface the first non-loopback one.
pub fn mdns_socket(interfaces: &[Ipv4Addr]) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MDNS_GROUP.port());
    socket.bind(&SocketAddr::V4(any).into())?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(255)?;
    let mut joined = 0;
    for ip in interfaces {
        match socket.join_multicast_v4(MDNS_GROUP.ip(), ip) {
            Ok(()) => joined += 1,
            Err(e) => tracing::debug!(%ip, error = %e, "cannot join the mDNS group"),
        }
    }
    if joined == 0 {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "no interface could join the mDNS group",
        ));
    }
    let outgoing = interfaces
        .iter()
        .find(|ip| !ip.is_loopback())
        .unwrap_or(&Ipv4Addr::LOCALHOST);
    socket.set_multicast_if_v4(outgoing)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
