//! What an async runtime lends the swarm: readiness of the swarm's `std` sockets, a timer and
//! a way to run the driver. Everything else (binding, connecting, the driver's loop, the
//! application's connection type) is written once, in this crate, over these.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A socket type the swarm registers with a runtime's reactor: the `std::net` sockets.
pub trait Socket: AsFd + AsRawFd + Send + Sync + Unpin + 'static {}
impl<T: AsFd + AsRawFd + Send + Sync + Unpin + 'static> Socket for T {}

/// An async runtime the swarm can run on (implemented by swarm-tokio and swarm-smol).
pub trait Runtime: Send + Sync + Sized + 'static {
    /// A non-blocking socket registered with the runtime's reactor.
    type Io<T: Socket>: Io<T>;
    /// A timer that can be moved to another deadline.
    type Timer: Timer;
    /// The socket type an application's own handshake works on
    /// ([`crate::SwarmBuilder::external_handshake`]).
    type HandshakeStream: Send + 'static;

    /// Registers a non-blocking socket.
    fn register<T: Socket>(socket: T) -> io::Result<Self::Io<T>>;
    /// A timer that fires at `at`.
    fn timer(at: std::time::Instant) -> Self::Timer;
    /// Runs the swarm's driver in the background ([`crate::SwarmBuilder::build`]).
    fn spawn(driver: crate::Driver);
    /// Hands a socket to an application's handshake.
    fn handshake_stream(socket: std::net::TcpStream) -> io::Result<Self::HandshakeStream>;
    /// Takes the socket back after the application's handshake.
    fn from_handshake_stream(stream: Self::HandshakeStream) -> io::Result<std::net::TcpStream>;
}

/// A registered socket. The `try_*` methods run one non-blocking operation; when it returns
/// `WouldBlock` the readiness it was tried on is cleared, so the next `poll_*able` waits for
/// the reactor's next notice.
pub trait Io<T>: Send + Sync + Unpin + 'static {
    fn get_ref(&self) -> &T;
    /// Deregisters the socket and hands it back.
    fn into_inner(self) -> io::Result<T>;
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_read_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R>;
    fn try_write_with<R>(&self, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R>;

    /// Runs `op` until it does not block, waiting for readability in between.
    fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match self.try_read_with(&mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(self.poll_readable(cx))?,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Runs `op` until it does not block, waiting for writability in between.
    fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match self.try_write_with(&mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(self.poll_writable(cx))?,
                result => return Poll::Ready(result),
            }
        }
    }
}

/// A timer: a future that completes at its deadline and can be moved.
pub trait Timer: Future<Output = ()> + Send + Unpin + 'static {
    fn reset(&mut self, at: std::time::Instant);
}

/// The swarm's driver: one future that owns the core and every socket the application does
/// not hold. [`crate::SwarmBuilder::build_driver`] hands it out to be run on any executor
/// whose reactor the runtime's sockets use.
pub struct Driver(pub(crate) Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver")
    }
}
