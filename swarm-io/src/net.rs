//! Binding, dialling and accepting with plain non-blocking `std` sockets, registered with the
//! runtime's reactor: the same system calls whatever runtime the swarm runs on.

use crate::runtime::{Io, Runtime};
use socket2::{Domain, Protocol, SockAddr, Type};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};

/// The listener, the swarm's UDP socket (uTP, DHT) when asked for, and the port they share.
pub(crate) type Bound<R> = (<R as Runtime>::Io<TcpListener>, Option<UdpSocket>, u16);

/// Binds TCP, and with `with_udp` UDP on the same port number, as Node does: when the UDP
/// port is taken and any port would do, both are tried again on a fresh port.
pub(crate) fn bind<R: Runtime>(port: u16, with_udp: bool) -> io::Result<Bound<R>> {
    const ATTEMPTS: usize = 16;
    for _ in 0..ATTEMPTS {
        let listener = bind_tcp(port)?;
        let bound = listener.local_addr()?.port();
        if !with_udp {
            return Ok((R::register(listener)?, None, bound));
        }
        match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, bound)) {
            Ok(udp) => {
                widen_buffers(&udp);
                return Ok((R::register(listener)?, Some(udp), bound));
            }
            Err(e) if port != 0 => return Err(e),
            Err(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both TCP and UDP",
    ))
}

/// Dual-stack like Node (`::`), falling back to IPv4 where IPv6 is unavailable.
fn bind_tcp(port: u16) -> io::Result<TcpListener> {
    let listener = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(listener) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
        Err(_) => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Kernel buffers for the swarm's UDP socket. One uTP connection keeps up to its 1 MiB window
/// in flight; the default receive buffer (about 200 KiB, ~90 full datagrams) overflows on
/// the first burst, and each loss costs a retransmission round. The kernel caps the request
/// at `net.core.rmem_max`/`wmem_max`; best effort.
fn widen_buffers(udp: &UdpSocket) {
    const UDP_BUFFER: usize = 4 << 20;
    let socket = socket2::SockRef::from(udp);
    if let Err(e) = socket.set_recv_buffer_size(UDP_BUFFER) {
        tracing::debug!(error = %e, "cannot widen the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(UDP_BUFFER) {
        tracing::debug!(error = %e, "cannot widen the UDP send buffer");
    }
}

/// The unicast DNS client's socket: IPv4 (dns-discovery is), any port.
pub(crate) fn dns_socket() -> io::Result<UdpSocket> {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
}

/// A TCP connection to `addr`, once the kernel has it established.
pub(crate) async fn connect<R: Runtime>(addr: SocketAddr) -> io::Result<R::Io<TcpStream>> {
    let socket = socket2::Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let io = R::register(TcpStream::from(socket))?;
    // Writable means connected or failed; SO_ERROR tells which.
    std::future::poll_fn(|cx| {
        io.poll_write_with(cx, |stream| match stream.take_error()? {
            Some(e) => Err(e),
            None => match stream.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) => Err(e),
            },
        })
    })
    .await?;
    Ok(io)
}

/// One connection from the listener's queue, already non-blocking.
pub(crate) fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, remote) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok((stream, remote))
}
