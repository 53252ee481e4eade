//! The application's end of an established connection.

use bytes::{Buf, Bytes};
use std::io;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use swarm_core::{CloseCause, ConnId, ConnInfo};
use tokio::sync::mpsc::UnboundedSender;

use crate::driver::Report;
use crate::runtime::{Io, Runtime};
use crate::stream_bridge::Bridge;
use std::sync::Arc;

/// An established, handshaken connection to a peer: a byte stream for the application.
///
/// Reading yields the application data that followed the remote handshake first. Dropping
/// it closes the connection; the swarm treats that as the application's choice (no redial).
/// The swarm may close it too (a duplicate replaced by a newer connection): reads then see
/// end of stream.
///
/// It implements `futures::io::AsyncRead + AsyncWrite` on every runtime, and tokio's
/// `AsyncRead + AsyncWrite` with the `tokio` feature (swarm-tokio turns it on).
pub struct Connection<R: Runtime> {
    backend: Backend<R>,
    /// Bytes to deliver or send before the stream's own; boxed because it is almost always
    /// empty and there is one `Connection` per held peer.
    carry: Option<Box<Carry>>,
    info: ConnInfo,
    conn: ConnId,
    remote_ended: bool,
    reports: UnboundedSender<Report>,
}

/// Where the bytes go: a TCP socket of our own, or a uTP stream inside the swarm's core.
enum Backend<R: Runtime> {
    Tcp(R::Io<TcpStream>),
    Utp(UtpEnd),
}

struct UtpEnd {
    bridge: Arc<Bridge>,
    local: SocketAddr,
    peer: SocketAddr,
}

struct Carry {
    early_data: Bytes,
    unsent: Bytes,
}

impl<R: Runtime> Connection<R> {
    pub(crate) fn new(
        stream: R::Io<TcpStream>,
        early_data: Bytes,
        unsent: Bytes,
        info: ConnInfo,
        conn: ConnId,
        reports: UnboundedSender<Report>,
    ) -> Self {
        let carry = (!early_data.is_empty() || !unsent.is_empty())
            .then(|| Box::new(Carry { early_data, unsent }));
        Connection {
            backend: Backend::Tcp(stream),
            carry,
            info,
            conn,
            remote_ended: false,
            reports,
        }
    }

    /// A uTP connection whose bytes flow through `bridge` to the driver's core.
    pub(crate) fn utp(
        bridge: Arc<Bridge>,
        local: SocketAddr,
        early_data: Bytes,
        info: ConnInfo,
        conn: ConnId,
        reports: UnboundedSender<Report>,
    ) -> Self {
        let carry = (!early_data.is_empty()).then(|| {
            Box::new(Carry {
                early_data,
                unsent: Bytes::new(),
            })
        });
        let peer = info.addr;
        Connection {
            backend: Backend::Utp(UtpEnd {
                bridge,
                local,
                peer,
            }),
            carry,
            info,
            conn,
            remote_ended: false,
            reports,
        }
    }

    /// What the swarm knows about this connection: transport, direction, address, topic and
    /// the remote peer id.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The remote peer id from the handshake.
    pub fn remote_id(&self) -> &[u8] {
        self.info.id.as_deref().unwrap_or_default()
    }

    /// The swarm's handle of this connection (matches the ids in events).
    pub fn id(&self) -> ConnId {
        self.conn
    }

    /// Our end's socket address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.backend {
            Backend::Tcp(stream) => stream.get_ref().local_addr(),
            Backend::Utp(utp) => Ok(utp.local),
        }
    }

    /// The remote end's socket address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.backend {
            Backend::Tcp(stream) => stream.get_ref().peer_addr(),
            Backend::Utp(utp) => Ok(utp.peer),
        }
    }

    /// Handshake bytes the kernel did not take at once go out before anything else.
    fn poll_flush_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(carry) = self.carry.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let Backend::Tcp(stream) = &mut self.backend else {
            return Poll::Ready(Ok(()));
        };
        while !carry.unsent.is_empty() {
            let unsent = &carry.unsent;
            let n = ready!(stream.poll_write_with(cx, |mut s| s.write(unsent)))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            carry.unsent.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    fn has_unsent(&self) -> bool {
        self.carry.as_ref().is_some_and(|c| !c.unsent.is_empty())
    }

    fn note<T>(&mut self, result: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(_)) = result {
            self.remote_ended = true;
        }
    }

    /// Reads into `buf`; `Ok(0)` is the end of the stream. Early data comes first.
    pub fn poll_read_bytes(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.has_unsent() {
            // Never block a read on the flush: the remote cannot talk before it has our id.
            if let Poll::Ready(Err(e)) = self.poll_flush_unsent(cx) {
                self.remote_ended = true;
                return Poll::Ready(Err(e));
            }
        }
        if let Some(carry) = self.carry.as_mut().filter(|c| !c.early_data.is_empty()) {
            let n = carry.early_data.len().min(buf.len());
            buf[..n].copy_from_slice(&carry.early_data.split_to(n));
            return Poll::Ready(Ok(n));
        }
        let result = match &mut self.backend {
            Backend::Tcp(stream) => stream.poll_read_with(cx, |mut s| s.read(buf)),
            Backend::Utp(utp) => Poll::Ready(Ok(ready!(utp.bridge.poll_read(cx, buf)))),
        };
        if matches!(result, Poll::Ready(Ok(0))) {
            self.remote_ended = true;
        }
        self.note(&result);
        result
    }

    /// Writes from `data`; returns how much was taken.
    pub fn poll_write_bytes(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let flushed = self.poll_flush_unsent(cx);
        self.note(&flushed);
        ready!(flushed)?;
        let result = match &mut self.backend {
            Backend::Tcp(stream) => stream.poll_write_with(cx, |mut s| s.write(data)),
            Backend::Utp(utp) => match ready!(utp.bridge.poll_write(cx, data)) {
                Some(n) => Poll::Ready(Ok(n)),
                None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            },
        };
        self.note(&result);
        result
    }

    fn poll_write_vectored_bytes(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let flushed = self.poll_flush_unsent(cx);
        self.note(&flushed);
        ready!(flushed)?;
        match &mut self.backend {
            Backend::Tcp(stream) => {
                let result = stream.poll_write_with(cx, |mut s| s.write_vectored(bufs));
                self.note(&result);
                result
            }
            Backend::Utp(_) => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                self.poll_write_bytes(cx, first)
            }
        }
    }

    /// Waits until everything written has left for the peer (TCP: taken by the kernel).
    pub fn poll_flush_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush_unsent(cx))?;
        match &mut self.backend {
            Backend::Tcp(_) => Poll::Ready(Ok(())),
            Backend::Utp(utp) => match ready!(utp.bridge.poll_flush(cx)) {
                true => Poll::Ready(Ok(())),
                false => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            },
        }
    }

    /// Ends our direction of the stream (TCP's FIN, uTP's FIN after the queued data).
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush_unsent(cx))?;
        match &mut self.backend {
            Backend::Tcp(stream) => {
                let result = stream.get_ref().shutdown(std::net::Shutdown::Write);
                // Shutting down an already reset socket is no error to the application.
                Poll::Ready(match result {
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                    result => result,
                })
            }
            Backend::Utp(utp) => {
                // Like TCP's: the FIN is queued behind the written data, not awaited.
                utp.bridge.shutdown();
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<R: Runtime> futures_io::AsyncRead for Connection<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_bytes(cx, buf)
    }
}

impl<R: Runtime> futures_io::AsyncWrite for Connection<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_bytes(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_vectored_bytes(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_bytes(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_shutdown(cx)
    }
}

#[cfg(feature = "tokio")]
impl<R: Runtime> tokio::io::AsyncRead for Connection<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = ready!(self
            .get_mut()
            .poll_read_bytes(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio")]
impl<R: Runtime> tokio::io::AsyncWrite for Connection<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_bytes(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_vectored_bytes(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        matches!(self.backend, Backend::Tcp(_))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_bytes(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Connection::poll_shutdown(self.get_mut(), cx)
    }
}

impl<R: Runtime> Drop for Connection<R> {
    fn drop(&mut self) {
        let stream = match &self.backend {
            Backend::Tcp(stream) => stream,
            Backend::Utp(utp) => {
                // The driver sends what is still queued, then closes the stream in the core.
                utp.bridge.drop_app_end();
                return;
            }
        };
        // The driver holds a duplicate of the socket (to close it on the swarm's behalf), so
        // dropping ours alone would not end the connection.
        let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
        let cause = if self.remote_ended {
            CloseCause::Remote
        } else {
            CloseCause::Local
        };
        let _ = self.reports.send(Report::Closed {
            conn: self.conn,
            cause,
        });
    }
}

impl<R: Runtime> std::fmt::Debug for Connection<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("conn", &self.conn)
            .field("info", &self.info)
            .finish()
    }
}
