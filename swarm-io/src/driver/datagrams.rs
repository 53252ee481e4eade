//! The UDP sockets: mDNS, the swarm's own port (uTP, DHT, dns-discovery) and the unicast DNS
//! client's socket. Datagrams in go to the core; the core's datagrams out go to the kernel,
//! batched on the swarm socket.

use super::{Driver, Udp, Wake, BATCH};
use crate::batch::Received;
use crate::runtime::{Io, Runtime};
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use swarm_core::{Input, Instant, UdpSocket};

impl<R: Runtime> Driver<R> {
    /// mDNS is best effort, as in Node: without the socket the swarm runs on without it.
    pub(super) fn open_mdns(&mut self) {
        let interfaces = self
            .mdns_interfaces
            .clone()
            .unwrap_or_else(crate::udp::ipv4_interfaces);
        match crate::udp::mdns_socket(&interfaces).and_then(Udp::new) {
            Ok(udp) => self.mdns = Some(udp),
            Err(e) => tracing::warn!(error = %e, "multicast DNS is off: cannot open its socket"),
        }
    }

    /// The next datagram on any of the open UDP sockets.
    pub(super) fn poll_datagrams(&mut self, cx: &mut Context<'_>) -> Poll<Wake<R>> {
        let buf = &mut self.datagram_buf;
        let sockets = [
            (UdpSocket::Mdns, self.mdns.as_mut()),
            (UdpSocket::Swarm, self.swarm_udp.as_mut()),
            (UdpSocket::Dns, self.dns_udp.as_mut()),
        ];
        for (kind, udp) in sockets {
            let Some(Udp { io, batch }) = udp else {
                continue;
            };
            if let Some(batch) = batch {
                if let Poll::Ready(received) = io.poll_read_with(cx, |s| batch.recv(s)) {
                    return Poll::Ready(Wake::Batch(received));
                }
                continue;
            }
            if let Poll::Ready(received) = io.poll_read_with(cx, |s| s.recv_from(buf)) {
                return Poll::Ready(Wake::Datagram(kind, received));
            }
        }
        Poll::Pending
    }

    /// Datagrams already queued on the UDP sockets: one uTP ack then covers many of them,
    /// and the outputs go out as one batch.
    pub(super) fn take_datagrams(&mut self) -> bool {
        let mut taken = false;
        for socket in [UdpSocket::Swarm, UdpSocket::Mdns, UdpSocket::Dns] {
            let udp = match socket {
                UdpSocket::Mdns => self.mdns.as_ref(),
                UdpSocket::Swarm => self.swarm_udp.as_ref(),
                UdpSocket::Dns => self.dns_udp.as_ref(),
            };
            let Some(udp) = udp else { continue };
            if udp.batch.is_some() {
                taken |= self.take_batch();
                continue;
            }
            let buf = &mut self.datagram_buf;
            match udp.io.try_read_with(|s| s.recv_from(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                received => {
                    self.on_datagram(socket, received);
                    taken = true;
                }
            }
        }
        taken
    }

    pub(super) fn on_datagram(
        &mut self,
        socket: UdpSocket,
        received: io::Result<(usize, SocketAddr)>,
    ) {
        match received {
            Ok((len, from)) => {
                let now = self.now();
                let data = &self.datagram_buf[..len];
                self.core
                    .handle_input(now, Input::Datagram { socket, from, data });
            }
            // ICMP errors surface here on Linux; UDP users expect loss, so only log.
            Err(e) => tracing::debug!(?socket, error = %e, "datagram receive failed"),
        }
    }

    /// One receive of the batched swarm socket, then whatever else it holds.
    pub(super) fn on_batch(&mut self, received: io::Result<Received>) {
        let now = self.now();
        self.feed_batch(now, received);
        self.take_batch();
    }

    /// Feeds every datagram of one batched receive to the core.
    fn feed_batch(&mut self, now: Instant, received: io::Result<Received>) {
        let r = match received {
            Ok(r) => r,
            // ICMP errors surface here on Linux; UDP users expect loss, so only log.
            Err(e) => return tracing::debug!(error = %e, "datagram receive failed"),
        };
        let Some(batch) = self.swarm_udp.as_ref().and_then(|u| u.batch.as_ref()) else {
            return;
        };
        let socket = UdpSocket::Swarm;
        let from = r.from;
        for data in batch.received(&r) {
            self.core
                .handle_input(now, Input::Datagram { socket, from, data });
        }
    }

    pub(super) fn transmit(&mut self, socket: UdpSocket, to: SocketAddr, data: bytes::Bytes) {
        let udp = match socket {
            UdpSocket::Mdns => self.mdns.as_mut(),
            UdpSocket::Swarm => self.swarm_udp.as_mut(),
            UdpSocket::Dns => self.dns_udp.as_mut(),
        };
        let Some(udp) = udp else { return };
        if let Some(batch) = udp.batch.as_mut() {
            batch.queue(to, data);
        } else if let Err(e) = udp.io.get_ref().send_to(&data, to) {
            tracing::debug!(?socket, %to, error = %e, "datagram dropped");
        }
    }

    /// Sends the datagrams the batched socket holds (after each round of outputs).
    pub(super) fn flush_batch(&mut self) {
        if let Some(Udp {
            io,
            batch: Some(batch),
        }) = self.swarm_udp.as_mut()
        {
            batch.flush(io.get_ref());
        }
    }

    /// Receives what the batched swarm socket holds (a bounded number of receives, each
    /// possibly many coalesced datagrams) and feeds every datagram to the core.
    pub(super) fn take_batch(&mut self) -> bool {
        let mut taken = false;
        for _ in 0..BATCH {
            let now = self.now();
            let Some(Udp {
                io,
                batch: Some(batch),
            }) = self.swarm_udp.as_mut()
            else {
                return taken;
            };
            let received = io.try_read_with(|s| batch.recv(s));
            match received {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return taken,
                Err(e) => {
                    tracing::debug!(error = %e, "datagram receive failed");
                    return taken;
                }
                received => {
                    taken = true;
                    self.feed_batch(now, received);
                }
            }
        }
        taken
    }
}
