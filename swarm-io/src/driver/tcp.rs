//! TCP sockets while the driver holds them: accepting, dialling, the handshake's reads and
//! writes, an application's own handshake, and closing.

use super::{cancellable, Driver, Handshaking, Live, Owner};
use crate::runtime::{Io, Runtime};
use bytes::{Buf, Bytes};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use swarm_core::{CloseCause, ConnId, ConnInfo, Input, Instant, Transport};
use tokio::sync::oneshot;

impl<R: Runtime> Driver<R> {
    pub(super) fn on_accept(&mut self, accepted: io::Result<(TcpStream, SocketAddr)>) {
        let registered = accepted.and_then(|(stream, remote)| Ok((R::register(stream)?, remote)));
        let (stream, remote) = match registered {
            Ok(pair) => pair,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                let pause = std::time::Duration::from_millis(100);
                self.accept_paused_until = Some(std::time::Instant::now() + pause);
                return;
            }
        };
        let now = self.now();
        if let Ok(conn) = self.core.accept(now, remote, Transport::Tcp) {
            // An accepted socket's local port is the listener's: no getsockname per connection.
            let port = self.core.port().unwrap_or_default();
            self.live.insert(conn, Live::new(port, Owner::Driver));
            let hs = Handshaking {
                stream,
                unsent: Bytes::new(),
            };
            self.held.insert(conn, hs);
        }
    }

    pub(super) fn dial(&mut self, conn: ConnId, addr: SocketAddr, transport: Transport) {
        if transport != Transport::Tcp {
            // The core dials uTP itself, over the swarm's UDP socket.
            let now = self.now();
            self.core.handle_input(now, Input::DialFailed { conn });
            return;
        }
        let (cancel, cancelled) = oneshot::channel::<()>();
        self.live.insert(conn, Live::new(0, Owner::Future(cancel)));
        let connect = crate::net::connect::<R>(addr);
        self.dials.push(Box::pin(async move {
            (conn, cancellable(cancelled, connect).await)
        }));
    }

    pub(super) fn on_dialled(
        &mut self,
        conn: ConnId,
        result: Option<io::Result<R::Io<TcpStream>>>,
    ) {
        let now = self.now();
        match result {
            None => {} // cancelled by the core
            Some(Ok(stream)) => {
                let port = stream.get_ref().local_addr().map_or(0, |a| a.port());
                self.live.insert(conn, Live::new(port, Owner::Driver));
                let hs = Handshaking {
                    stream,
                    unsent: Bytes::new(),
                };
                self.held.insert(conn, hs);
                self.core.handle_input(now, Input::Connected { conn });
            }
            Some(Err(e)) => {
                tracing::debug!(?conn, error = %e, "dial failed");
                self.live.remove(&conn);
                self.core.handle_input(now, Input::DialFailed { conn });
            }
        }
    }

    pub(super) fn on_ready(&mut self, conn: ConnId, mut hs: Handshaking<R>, cancelled: bool) {
        if cancelled {
            return;
        }
        let now = self.now();
        if let Some(live) = self.live.get_mut(&conn) {
            live.owner = Owner::Driver;
        }
        if let Err(e) = write_unsent(&mut hs) {
            tracing::debug!(?conn, error = %e, "handshake write failed");
            self.remote_closed(now, conn);
            return;
        }
        while self.core.wants_read(conn) {
            let buf = &mut self.read_buf;
            match hs.stream.try_read_with(|mut s| s.read(buf)) {
                Ok(0) => {
                    self.remote_closed(now, conn);
                    return;
                }
                Ok(n) => {
                    let data = &self.read_buf[..n];
                    self.core.handle_input(now, Input::Received { conn, data });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.remote_closed(now, conn);
                    return;
                }
            }
        }
        self.held.insert(conn, hs);
    }

    /// The network ended a connection (end of stream, reset, I/O error).
    pub(super) fn remote_closed(&mut self, now: Instant, conn: ConnId) {
        let cause = CloseCause::Remote;
        self.core.handle_input(now, Input::Closed { conn, cause });
    }

    pub(super) fn close(&mut self, conn: ConnId) {
        self.held.remove(&conn);
        if let Some(live) = self.live.get_mut(&conn) {
            core::mem::replace(&mut live.owner, Owner::Driver).end();
        }
        // Connections that never reached the handshake get no `connection-closed` event.
        if self.live.get(&conn).is_some_and(|l| !l.reported) {
            self.live.remove(&conn);
        }
    }

    /// Sockets still handshaking (or flushing) go back to a readiness future; the rest stay
    /// parked while the core defers them.
    pub(super) fn rearm_held(&mut self) {
        let core = &self.core;
        let rearm = self
            .held
            .extract_if(|conn, hs| core.wants_read(*conn) || hs.unsent.has_remaining());
        for (conn, hs) in rearm {
            let (cancel, cancelled) = oneshot::channel();
            if let Some(live) = self.live.get_mut(&conn) {
                live.owner = Owner::Future(cancel);
            }
            let reading = core.wants_read(conn);
            self.readiness
                .push(Box::pin(wait_ready::<R>(conn, hs, reading, cancelled)));
        }
    }

    /// Runs the application's handshake on the socket (Node's `stream` option), inside the
    /// driver: its result comes back through `on_handshaken`.
    pub(super) fn start_external(&mut self, conn: ConnId, info: ConnInfo) {
        let Some(handshake) = self.external.clone() else {
            return;
        };
        let Some(hs) = self.held.remove(&conn) else {
            return;
        };
        let stream = match hs.stream.into_inner().and_then(R::handshake_stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(?conn, error = %e, "cannot hand the socket to the handshake");
                let now = self.now();
                self.remote_closed(now, conn);
                return;
            }
        };
        let (cancel, cancelled) = oneshot::channel();
        if let Some(live) = self.live.get_mut(&conn) {
            live.owner = Owner::Future(cancel);
        }
        let work = handshake(stream, info);
        self.handshakes.push(Box::pin(async move {
            (conn, cancellable(cancelled, work).await)
        }));
    }

    pub(super) fn on_handshaken(
        &mut self,
        conn: ConnId,
        result: Option<crate::HandshakeResult<R::HandshakeStream>>,
    ) {
        let Some(result) = result else {
            return; // cancelled by the core
        };
        if let Some(live) = self.live.get_mut(&conn) {
            live.owner = Owner::Driver;
        }
        let now = self.now();
        let taken = result.and_then(|(stream, id, key)| {
            let socket = R::from_handshake_stream(stream)?;
            socket.set_nonblocking(true)?;
            Ok((R::register(socket)?, id, key))
        });
        match taken {
            Ok((stream, id, key)) => {
                let hs = Handshaking {
                    stream,
                    unsent: Bytes::new(),
                };
                self.held.insert(conn, hs);
                if let Err(e) = self.core.complete_handshake(now, conn, &id, key.as_deref()) {
                    tracing::debug!(?conn, error = %e, "external handshake rejected");
                    self.held.remove(&conn);
                    let _ = self.core.disconnect(now, conn);
                }
            }
            Err(e) => {
                tracing::debug!(?conn, error = %e, "external handshake failed");
                self.remote_closed(now, conn);
            }
        }
    }
}

pub(super) fn write_unsent<R: Runtime>(hs: &mut Handshaking<R>) -> io::Result<()> {
    while hs.unsent.has_remaining() {
        let unsent = &hs.unsent;
        match hs.stream.try_write_with(|mut s| s.write(unsent)) {
            Ok(n) => hs.unsent.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn wait_ready<R: Runtime>(
    conn: ConnId,
    hs: Handshaking<R>,
    reading: bool,
    cancelled: oneshot::Receiver<()>,
) -> (ConnId, Handshaking<R>, bool) {
    let writing = !reading || hs.unsent.has_remaining();
    let ready = std::future::poll_fn(|cx| {
        let readable = reading && hs.stream.poll_readable(cx).is_ready();
        let writable = writing && hs.stream.poll_writable(cx).is_ready();
        if readable || writable {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let was_cancelled = cancellable(cancelled, ready).await.is_none();
    (conn, hs, was_cancelled)
}
