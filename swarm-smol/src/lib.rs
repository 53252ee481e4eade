//! smol adapter for the discovery-swarm compatible swarm, built on async-io's reactor and
//! timers: it runs on smol, on async-std (itself built on async-io) and on any executor.
//!
//! ```no_run
//! use futures_lite::{AsyncWriteExt, StreamExt};
//! use swarm_smol::{SwarmBuilder, SwarmEvent};
//!
//! # async fn run() -> Result<(), swarm_smol::Error> {
//! // The driver is a future: spawn it on the executor of your choice.
//! let (mut swarm, driver) = SwarmBuilder::new().max_connections(16).build_driver()?;
//! smol::spawn(driver).detach();
//! swarm.listen(0).await?;
//! swarm.join("ubuntu-14.04", true);
//! while let Some(event) = swarm.next().await {
//!     if let SwarmEvent::Connection(mut conn) = event {
//!         conn.write_all(b"hello\n").await.ok();
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The swarm itself (driver, builder, connections) is [`swarm_io`], written once for every
//! runtime; this crate lends it async-io's reactor and timers ([`Smol`]).
//! [`SwarmBuilder::build`] spawns the driver on smol's global executor;
//! [`SwarmBuilder::build_driver`] hands it out for any other.

use async_io::Async;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use swarm_io::Socket;

pub use swarm_io::{
    resolve_dns_server, udp, BanReason, ConnId, ConnInfo, Driver, Error, Event, HandshakeError,
    PeerInfo, RejectReason, Stats, SwarmHandle, Transport, MAINLINE_ROUTERS,
};

/// The swarm on async-io.
pub type Swarm = swarm_io::Swarm<Smol>;
/// Options of a swarm on async-io, with discovery-swarm's defaults.
pub type SwarmBuilder = swarm_io::SwarmBuilder<Smol>;
/// Something that happened in a swarm on async-io.
pub type SwarmEvent = swarm_io::SwarmEvent<Smol>;
/// An established connection: `futures::io::AsyncRead + AsyncWrite`.
pub type Connection = swarm_io::Connection<Smol>;
/// The socket an application's own handshake works on.
pub type HandshakeStream = Async<std::net::TcpStream>;
/// What an application's own handshake returns.
pub type HandshakeResult = swarm_io::HandshakeResult<HandshakeStream>;

/// async-io's reactor and timers (smol's, async-std's), lent to the swarm.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

/// A socket registered with async-io's reactor.
pub struct SmolIo<T>(Async<T>);

impl<T: Socket> swarm_io::Io<T> for SmolIo<T> {
    fn get_ref(&self) -> &T {
        self.0.get_ref()
    }

    fn into_inner(self) -> io::Result<T> {
        self.0.into_inner()
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_readable(cx)
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_writable(cx)
    }

    // async-io keeps no readiness flag to clear: an operation is simply tried.
    fn try_read_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        op(self.0.get_ref())
    }

    fn try_write_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        op(self.0.get_ref())
    }
}

/// async-io's timer, whose output (the instant it fired) the swarm does not need.
pub struct SmolTimer(async_io::Timer);

impl std::future::Future for SmolTimer {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl swarm_io::Timer for SmolTimer {
    fn reset(&mut self, at: std::time::Instant) {
        self.0.set_at(at);
    }
}

impl swarm_io::Runtime for Smol {
    type Io<T: Socket> = SmolIo<T>;
    type Timer = SmolTimer;
    type HandshakeStream = HandshakeStream;

    fn register<T: Socket>(socket: T) -> io::Result<SmolIo<T>> {
        Async::new(socket).map(SmolIo)
    }

    fn timer(at: std::time::Instant) -> SmolTimer {
        SmolTimer(async_io::Timer::at(at))
    }

    fn spawn(driver: Driver) {
        smol::spawn(driver).detach();
    }

    fn handshake_stream(socket: std::net::TcpStream) -> io::Result<HandshakeStream> {
        Async::new(socket)
    }

    fn from_handshake_stream(stream: HandshakeStream) -> io::Result<std::net::TcpStream> {
        stream.into_inner()
    }
}
