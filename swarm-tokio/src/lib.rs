//! tokio adapter for the discovery-swarm compatible swarm.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use swarm_tokio::{SwarmBuilder, SwarmEvent};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn run() -> Result<(), swarm_tokio::Error> {
//! let mut swarm = SwarmBuilder::new().max_connections(16).build()?;
//! swarm.listen(0).await?;
//! swarm.join("ubuntu-14.04", true);
//! swarm.add_peer(Some("ubuntu-14.04"), "127.0.0.1:7001".parse().unwrap());
//! while let Some(event) = swarm.next().await {
//!     if let SwarmEvent::Connection(mut conn) = event {
//!         conn.write_all(b"hello\n").await.ok();
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The swarm itself (driver, builder, connections) is [`swarm_io`], written once for every
//! runtime; this crate lends it tokio's reactor, timers and executor ([`Tokio`]).
//! [`SwarmBuilder::build`] spawns the driver on the current tokio runtime.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use swarm_io::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub use swarm_io::{
    resolve_dns_server, udp, BanReason, ConnId, ConnInfo, Driver, Error, Event, HandshakeError,
    PeerInfo, RejectReason, Stats, SwarmHandle, Transport, MAINLINE_ROUTERS,
};

/// The swarm on tokio.
pub type Swarm = swarm_io::Swarm<Tokio>;
/// Options of a swarm on tokio, with discovery-swarm's defaults.
pub type SwarmBuilder = swarm_io::SwarmBuilder<Tokio>;
/// Something that happened in a swarm on tokio.
pub type SwarmEvent = swarm_io::SwarmEvent<Tokio>;
/// An established connection: tokio's (and futures') `AsyncRead + AsyncWrite`.
pub type Connection = swarm_io::Connection<Tokio>;
/// What an application's own handshake returns on tokio.
pub type HandshakeResult = swarm_io::HandshakeResult<tokio::net::TcpStream>;

/// tokio's reactor, timers and executor, lent to the swarm.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// A socket registered with tokio's reactor.
pub struct TokioIo<T: AsRawFd>(AsyncFd<T>);

impl<T: Socket> swarm_io::Io<T> for TokioIo<T> {
    fn get_ref(&self) -> &T {
        self.0.get_ref()
    }

    fn into_inner(self) -> io::Result<T> {
        Ok(self.0.into_inner())
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx).map_ok(|_| ())
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_ready(cx).map_ok(|_| ())
    }

    fn try_read_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.0.try_io(Interest::READABLE, op)
    }

    fn try_write_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.0.try_io(Interest::WRITABLE, op)
    }
}

/// tokio's sleep, boxed so that it can be moved and reset.
pub struct TokioTimer(Pin<Box<tokio::time::Sleep>>);

impl std::future::Future for TokioTimer {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl swarm_io::Timer for TokioTimer {
    fn reset(&mut self, at: std::time::Instant) {
        self.0.as_mut().reset(at.into());
    }
}

impl swarm_io::Runtime for Tokio {
    type Io<T: Socket> = TokioIo<T>;
    type Timer = TokioTimer;
    type HandshakeStream = tokio::net::TcpStream;

    fn register<T: Socket>(socket: T) -> io::Result<TokioIo<T>> {
        // SAFETY: every `Socket` the swarm registers is a `std::net` socket, which owns its
        // file descriptor for as long as it lives and always reports that one.
        unsafe { AsyncFd::register(socket) }
            .map(TokioIo)
            .map_err(|e| e.into_parts().1)
    }

    fn timer(at: std::time::Instant) -> TokioTimer {
        TokioTimer(Box::pin(tokio::time::sleep_until(at.into())))
    }

    fn spawn(driver: Driver) {
        tokio::spawn(driver);
    }

    fn handshake_stream(socket: std::net::TcpStream) -> io::Result<tokio::net::TcpStream> {
        tokio::net::TcpStream::from_std(socket)
    }

    fn from_handshake_stream(stream: tokio::net::TcpStream) -> io::Result<std::net::TcpStream> {
        stream.into_std()
    }
}

/// Resolves DHT bootstrap nodes written as `host:port`, each to its first IPv4 address (the
/// DHT socket is IPv4). A name that does not resolve is logged and skipped, as Node skips a
/// router it cannot reach: the swarm goes on with what it has.
pub async fn resolve_bootstrap(names: &[String]) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => match addrs.into_iter().find(SocketAddr::is_ipv4) {
                Some(addr) => found.push(addr),
                None => tracing::warn!(%name, "DHT bootstrap node has no IPv4 address"),
            },
            Err(e) => tracing::warn!(%name, error = %e, "DHT bootstrap node does not resolve"),
        }
    }
    found
}
