//! The application's end of an established connection.

use bytes::{Buf, Bytes};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use swarm_core::{CloseCause, ConnId, ConnInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;

use crate::driver::Report;

/// An established, handshaken connection to a peer: a byte stream for the application.
///
/// Reading yields the application data that followed the remote handshake first. Dropping
/// it closes the connection; the swarm treats that as the application's choice (no redial).
/// The swarm may close it too (a duplicate replaced by a newer connection): reads then see
/// end of stream.
pub struct Connection {
    stream: TcpStream,
    /// Bytes to deliver or send before the stream's own; boxed because it is almost always
    /// empty and there is one `Connection` per held peer.
    carry: Option<Box<Carry>>,
    info: ConnInfo,
    conn: ConnId,
    remote_ended: bool,
    reports: UnboundedSender<Report>,
}

struct Carry {
    early_data: Bytes,
    unsent: Bytes,
}

impl Connection {
    pub(crate) fn new(
        stream: TcpStream,
        early_data: Bytes,
        unsent: Bytes,
        info: ConnInfo,
        conn: ConnId,
        reports: UnboundedSender<Report>,
    ) -> Self {
        let carry = (!early_data.is_empty() || !unsent.is_empty())
            .then(|| Box::new(Carry { early_data, unsent }));
        Connection {
            stream,
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
        self.stream.local_addr()
    }

    /// The remote end's socket address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Handshake bytes the kernel did not take at once go out before anything else.
    fn poll_flush_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(carry) = self.carry.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while !carry.unsent.is_empty() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &carry.unsent))?;
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
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.has_unsent() {
            // Never block a read on the flush: the remote cannot talk before it has our id.
            if let Poll::Ready(Err(e)) = this.poll_flush_unsent(cx) {
                this.remote_ended = true;
                return Poll::Ready(Err(e));
            }
        }
        if let Some(carry) = this.carry.as_mut().filter(|c| !c.early_data.is_empty()) {
            let n = carry.early_data.len().min(buf.remaining());
            buf.put_slice(&carry.early_data.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            this.remote_ended = true;
        }
        this.note(&result);
        result
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let flushed = this.poll_flush_unsent(cx);
        this.note(&flushed);
        ready!(flushed)?;
        let result = Pin::new(&mut this.stream).poll_write(cx, data);
        this.note(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let flushed = this.poll_flush_unsent(cx);
        this.note(&flushed);
        ready!(flushed)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_unsent(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_unsent(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The driver holds a duplicate of the socket (to close it on the swarm's behalf), so
        // dropping ours alone would not end the connection.
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both);
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

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("conn", &self.conn)
            .field("info", &self.info)
            .finish()
    }
}
