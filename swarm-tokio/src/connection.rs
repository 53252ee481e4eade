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
use crate::stream_bridge::Bridge;
use std::sync::Arc;

/// An established, handshaken connection to a peer: a byte stream for the application.
///
/// Reading yields the application data that followed the remote handshake first. Dropping
/// it closes the connection; the swarm treats that as the application's choice (no redial).
/// The swarm may close it too (a duplicate replaced by a newer connection): reads then see
/// end of stream.
pub struct Connection {
    backend: Backend,
    /// Bytes to deliver or send before the stream's own; boxed because it is almost always
    /// empty and there is one `Connection` per held peer.
    carry: Option<Box<Carry>>,
    info: ConnInfo,
    conn: ConnId,
    remote_ended: bool,
    reports: UnboundedSender<Report>,
}

/// Where the bytes go: a TCP socket of our own, or a uTP stream inside the swarm's core.
enum Backend {
    Tcp(TcpStream),
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
            Backend::Tcp(stream) => stream.local_addr(),
            Backend::Utp(utp) => Ok(utp.local),
        }
    }

    /// The remote end's socket address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.backend {
            Backend::Tcp(stream) => stream.peer_addr(),
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
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, &carry.unsent))?;
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
        let stream = match &mut this.backend {
            Backend::Tcp(stream) => stream,
            Backend::Utp(utp) => {
                let n = ready!(utp.bridge.poll_read(cx, buf.initialize_unfilled()));
                buf.advance(n);
                if n == 0 && buf.remaining() > 0 {
                    this.remote_ended = true;
                }
                return Poll::Ready(Ok(()));
            }
        };
        let before = buf.filled().len();
        let result = Pin::new(stream).poll_read(cx, buf);
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
        let result = match &mut this.backend {
            Backend::Tcp(stream) => Pin::new(stream).poll_write(cx, data),
            Backend::Utp(utp) => match ready!(utp.bridge.poll_write(cx, data)) {
                Some(n) => Poll::Ready(Ok(n)),
                None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            },
        };
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
        match &mut this.backend {
            Backend::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Backend::Utp(_) => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                Pin::new(this).poll_write(cx, first)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.backend {
            Backend::Tcp(stream) => stream.is_write_vectored(),
            Backend::Utp(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_unsent(cx))?;
        match &mut this.backend {
            Backend::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Backend::Utp(utp) => match ready!(utp.bridge.poll_flush(cx)) {
                true => Poll::Ready(Ok(())),
                false => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            },
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_unsent(cx))?;
        match &mut this.backend {
            Backend::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Backend::Utp(utp) => {
                // Like TCP's: the FIN is queued behind the written data, not awaited.
                utp.bridge.shutdown();
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl Drop for Connection {
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
        let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
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
