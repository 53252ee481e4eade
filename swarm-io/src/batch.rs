//! Batched datagrams on the swarm's UDP socket, through quinn-udp: a run of equal-sized
//! datagrams to one peer leaves in one GSO send (`UDP_SEGMENT`: one system call and one trip
//! through the stack for up to ~45 uTP packets), and GRO hands a run that arrived together
//! back in one receive. Per-datagram kernel work was 76-83% of a uTP transfer's CPU.
//! Where the kernel offers neither, quinn-udp falls back to one datagram per call.

use bytes::Bytes;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

/// The largest UDP payload one GSO send may carry in all.
const MAX_BATCH_BYTES: usize = 65_000;
/// A GRO receive's buffer: a whole coalesced run.
const RECV_BUF: usize = 64 * 1024;

pub(crate) struct Batcher {
    state: UdpSocketState,
    outbox: Vec<(SocketAddr, Bytes)>,
    gso: Vec<u8>,
    recv_buf: Vec<u8>,
}

/// One receive: the sender, and the datagrams (split at `stride`) in `Batcher::received`.
pub(crate) struct Received {
    pub from: SocketAddr,
    pub len: usize,
    pub stride: usize,
}

impl Batcher {
    pub(crate) fn new(socket: &std::net::UdpSocket) -> io::Result<Batcher> {
        Ok(Batcher {
            state: UdpSocketState::new(UdpSockRef::from(socket))?,
            outbox: Vec::new(),
            gso: Vec::with_capacity(MAX_BATCH_BYTES),
            recv_buf: vec![0; RECV_BUF],
        })
    }

    /// Holds a datagram until [`Batcher::flush`].
    pub(crate) fn queue(&mut self, to: SocketAddr, data: Bytes) {
        self.outbox.push((to, data));
    }

    /// Sends everything queued, in order: each run of datagrams to one address whose sizes
    /// are all equal (the last may be shorter) goes out as one segmented send.
    pub(crate) fn flush(&mut self, socket: &std::net::UdpSocket) {
        let max_segments = self.state.max_gso_segments().max(1);
        let mut i = 0;
        while i < self.outbox.len() {
            let (to, first) = &self.outbox[i];
            let size = first.len();
            let mut end = i + 1;
            let mut total = size;
            if size > 0 {
                while end < self.outbox.len()
                    && end - i < max_segments
                    && total + self.outbox[end].1.len() <= MAX_BATCH_BYTES
                    && self.outbox[end].0 == *to
                    && self.outbox[end].1.len() <= size
                    && self.outbox[end - 1].1.len() == size
                {
                    total += self.outbox[end].1.len();
                    end += 1;
                }
            }
            let (contents, segment_size) = if end - i == 1 {
                (&first[..], None)
            } else {
                self.gso.clear();
                for (_, data) in &self.outbox[i..end] {
                    self.gso.extend_from_slice(data);
                }
                (&self.gso[..], Some(size))
            };
            let transmit = Transmit {
                destination: *to,
                ecn: None,
                contents,
                segment_size,
                src_ip: None,
            };
            if let Err(e) = self.state.try_send(UdpSockRef::from(socket), &transmit) {
                // A full buffer drops them, as any datagram may be lost; uTP resends.
                tracing::debug!(%to, datagrams = end - i, error = %e, "datagrams dropped");
            }
            i = end;
        }
        self.outbox.clear();
    }

    /// One receive from a non-blocking socket (`WouldBlock` when there is nothing).
    pub(crate) fn recv(&mut self, socket: &std::net::UdpSocket) -> io::Result<Received> {
        let mut meta = [RecvMeta::default()];
        let mut bufs = [IoSliceMut::new(&mut self.recv_buf)];
        self.state
            .recv(UdpSockRef::from(socket), &mut bufs, &mut meta)?;
        let meta = meta[0];
        Ok(Received {
            from: meta.addr,
            len: meta.len,
            stride: meta.stride.max(1),
        })
    }

    /// The datagrams of the last receive.
    pub(crate) fn received(&self, r: &Received) -> impl Iterator<Item = &[u8]> {
        self.recv_buf[..r.len].chunks(r.stride)
    }
}
