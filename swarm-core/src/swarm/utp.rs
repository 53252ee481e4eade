//! uTP inside the swarm: the swarm's UDP port carries uTP next to the DHT and unicast DNS
//! (PROTOCOLS.md 1.11), and uTP connections are dialled, accepted, handshaken and read and
//! written through the core. A driver never dials uTP itself: it only moves datagrams of
//! [`UdpSocket::Swarm`] in and out.
//!
//! # Streams
//!
//! A uTP connection the application owns (after [`Event::Connection`] with
//! `info.transport == Transport::Utp`) is read and written through the swarm, with
//! backpressure both ways:
//!
//! * [`Swarm::stream_read`] copies received bytes in order: `Ok(0)` is end of stream (the
//!   peer's FIN), `Err(WouldBlock)` means nothing now, `Err(Closed)` that the connection was
//!   reset, timed out or released. Unread data stays in a bounded receive buffer whose free
//!   space is the window advertised to the peer, so a reader that stops reading stops the
//!   sender.
//! * [`Swarm::stream_write`] queues what fits in a bounded send buffer and returns how much;
//!   `Err(WouldBlock)` when nothing fits.
//! * [`Swarm::stream_shutdown`] half-closes (FIN after the queued data); reading goes on.
//! * [`Output::StreamReadable`] / [`Output::StreamWritable`] are edge-triggered readiness
//!   notices: after `Event::Connection` read until `WouldBlock` (the event's `early_data`
//!   comes first), then wait for `StreamReadable`; after a short or refused write wait for
//!   `StreamWritable`. Both are also given when the connection ends, so a waiting reader or
//!   writer wakes up to see it.
//! * With [`HandshakeMode::External`] the stream is the application's from
//!   `Event::Handshaking` on (both notices are given then), for its own handshake.
//! * Closing matches TCP: [`Swarm::disconnect`] is the application's close (`CloseCause::Local`,
//!   never redialled; the FIN follows the queued data). A connection the network ends
//!   (both FINs exchanged, reset, timeout) is reported as `ConnectionClosed` like a remote
//!   TCP close, and its buffered data can still be read until the application calls
//!   `disconnect`, which then just releases it.

use super::conn::ConnState;
use super::*;
use crate::config::HandshakeMode;
use crate::utp::conn::CloseReason;
use crate::utp::header::looks_like_utp;
use crate::utp::socket::{ConnHandle, UtpConfig, UtpEvent};

/// Why a stream call did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// Nothing to read, or no room to write, right now: wait for the readiness output.
    WouldBlock,
    /// The connection is reset, timed out, closed by the core, or not a uTP stream.
    Closed,
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StreamError::WouldBlock => "stream would block",
            StreamError::Closed => "stream closed",
        })
    }
}

impl std::error::Error for StreamError {}

/// A uTP connection of the swarm's socket, as long as the swarm or the application holds it.
#[derive(Debug)]
pub(super) struct Stream {
    handle: ConnHandle,
    /// Set once the uTP socket reported the connection ended.
    ended: Option<CloseReason>,
}

/// The uTP side of a swarm: the socket and the two-way map between its handles and ours.
pub(super) struct UtpState {
    pub(super) socket: crate::utp::socket::UtpSocket,
    streams: Map<ConnId, Stream>,
    owners: Map<ConnHandle, ConnId>,
    /// The latest time seen, for output produced outside timed calls.
    now: Instant,
}

/// Chunk size for reading a handshaking stream into the handshake decoder.
const HANDSHAKE_CHUNK: usize = 4096;

impl UtpState {
    pub(super) fn new(seed: u64) -> Self {
        // A distinct stream of randomness from the swarm's own.
        let socket_seed = seed ^ 0x7574_705f_7365_6564;
        UtpState {
            socket: crate::utp::socket::UtpSocket::new(UtpConfig::new(socket_seed)),
            streams: new_map(seed),
            owners: new_map(seed),
            now: Instant::ZERO,
        }
    }

    fn bind(&mut self, conn: ConnId, handle: ConnHandle) {
        self.streams.insert(
            conn,
            Stream {
                handle,
                ended: None,
            },
        );
        self.owners.insert(handle, conn);
    }

    fn unbind(&mut self, conn: ConnId) -> Option<ConnHandle> {
        let stream = self.streams.remove(&conn)?;
        self.owners.remove(&stream.handle);
        Some(stream.handle)
    }
}

impl Swarm {
    /// Notes the time of an input for output produced later without one.
    pub(super) fn utp_tick(&mut self, now: Instant) {
        if let Some(utp) = self.utp.as_mut() {
            utp.now = utp.now.max(now);
        }
    }

    /// Starts the uTP half of a dial; the socket reports the outcome.
    pub(super) fn utp_connect(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) -> bool {
        let Some(utp) = self.utp.as_mut() else {
            return false;
        };
        let handle = utp.socket.connect(now, addr);
        utp.bind(conn, handle);
        true
    }

    /// Writes handshake bytes: into the uTP stream, or as an output for the driver.
    pub(super) fn send_transport(&mut self, conn: ConnId, data: Bytes) {
        if let Some(handle) = self.utp_handle(conn) {
            if let Some(utp) = self.utp.as_mut() {
                // A few dozen bytes into an empty 1 MiB buffer: always fits.
                utp.socket.write(handle, &data);
            }
            return;
        }
        self.outputs.push_back(Output::Send { conn, data });
    }

    /// The core is done with `conn`: a uTP stream gets a graceful close (FIN after queued
    /// data, nothing if not yet established; later data discarded; gone once the peer
    /// finishes too, or after 30 s) and is forgotten; TCP goes to the driver.
    pub(super) fn close_transport(&mut self, conn: ConnId) {
        if let Some(utp) = self.utp.as_mut() {
            if let Some(handle) = utp.unbind(conn) {
                let now = utp.now;
                utp.socket.close_detached(now, handle);
                return;
            }
        }
        self.outputs.push_back(Output::Close { conn });
    }

    fn utp_handle(&self, conn: ConnId) -> Option<ConnHandle> {
        let utp = self.utp.as_ref()?;
        utp.streams.get(&conn).map(|s| s.handle)
    }

    /// Would the uTP socket take this datagram as its own (PROTOCOLS.md 1.11, first rule)?
    pub(super) fn utp_claims(&self, from: SocketAddr, data: &[u8]) -> bool {
        self.utp
            .as_ref()
            .is_some_and(|utp| utp.socket.claims(from, data))
    }

    /// A datagram for the uTP socket: claimed, or uTP-shaped and taken by nothing else (then
    /// the socket answers with a rate-limited RST).
    pub(super) fn on_utp_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !looks_like_utp(data) {
            return;
        }
        if let Some(utp) = self.utp.as_mut() {
            utp.now = utp.now.max(now);
            utp.socket.handle_datagram(now, from, data);
        }
        self.pump_utp();
    }

    pub(super) fn utp_timeout(&self) -> Option<Instant> {
        self.utp.as_ref().and_then(|utp| utp.socket.poll_timeout())
    }

    pub(super) fn handle_utp_timeout(&mut self, now: Instant) {
        if let Some(utp) = self.utp.as_mut() {
            utp.now = utp.now.max(now);
            if utp.socket.poll_timeout().is_some_and(|at| at <= now) {
                utp.socket.handle_timeout(now);
            }
        }
        self.pump_utp();
    }

    /// Turns the socket's events into swarm transitions. Its datagrams are pulled only when
    /// the driver has taken every other output ([`Swarm::poll_output`]), so a batch of
    /// inputs is acked together (libutp's deferred acks) rather than one ack per datagram.
    pub(super) fn pump_utp(&mut self) {
        loop {
            let Some(utp) = self.utp.as_mut() else {
                return;
            };
            let now = utp.now;
            let Some(event) = utp.socket.poll_event() else {
                break;
            };
            self.on_utp_event(now, event);
        }
    }

    /// Moves the socket's pending datagrams to the outputs.
    pub(super) fn flush_utp(&mut self) {
        self.pump_utp();
        let Some(utp) = self.utp.as_mut() else {
            return;
        };
        while let Some((to, data)) = utp.socket.poll_transmit(utp.now) {
            let socket = UdpSocket::Swarm;
            self.outputs
                .push_back(Output::Transmit { socket, to, data });
        }
    }

    fn on_utp_event(&mut self, now: Instant, event: UtpEvent) {
        let handle = match event {
            UtpEvent::Incoming { conn, addr } => {
                self.on_utp_incoming(now, conn, addr);
                return;
            }
            UtpEvent::Connected(h)
            | UtpEvent::Readable(h)
            | UtpEvent::Writable(h)
            | UtpEvent::Closed { conn: h, .. } => h,
        };
        let Some(conn) = self
            .utp
            .as_ref()
            .and_then(|u| u.owners.get(&handle).copied())
        else {
            // Detached and released connections report nothing; ignore any stragglers.
            return;
        };
        match event {
            UtpEvent::Connected(_) => {
                let dialing = matches!(
                    self.conns.get(&conn).map(|c| &c.state),
                    Some(ConnState::Dialing(_))
                );
                if dialing {
                    self.on_connected(now, conn);
                }
            }
            UtpEvent::Readable(_) => self.on_utp_readable(now, conn, handle),
            UtpEvent::Writable(_) => {
                if self.app_owns(conn) {
                    self.outputs.push_back(Output::StreamWritable(conn));
                }
            }
            UtpEvent::Closed { reason, .. } => self.on_utp_closed(now, conn, reason),
            UtpEvent::Incoming { .. } => {}
        }
    }

    fn on_utp_incoming(&mut self, now: Instant, handle: ConnHandle, addr: SocketAddr) {
        match self.admit(now, addr, Transport::Utp) {
            Ok(conn) => {
                if let Some(utp) = self.utp.as_mut() {
                    utp.bind(conn, handle);
                }
                // The 5 s handshake timer starts on the SYN, as in Node.
                self.begin_handshake(now, conn);
            }
            Err(_) => {
                if let Some(utp) = self.utp.as_mut() {
                    utp.socket.release(handle);
                }
            }
        }
    }

    /// Whether the application holds `conn`: after its `connection`, while its own
    /// handshake runs ([`HandshakeMode::External`]), and after the network ended it.
    fn app_owns(&self, conn: ConnId) -> bool {
        let external = self.config.handshake == HandshakeMode::External;
        match self.conns.get(&conn).map(|c| &c.state) {
            None | Some(ConnState::Established) => true,
            Some(ConnState::Dialing(_)) => false,
            Some(ConnState::Handshaking(h)) => h.decoder.is_none(),
            Some(ConnState::Settling(_) | ConnState::Deferred(_)) => external,
        }
    }

    fn on_utp_readable(&mut self, now: Instant, conn: ConnId, handle: ConnHandle) {
        if self.app_owns(conn) {
            self.outputs.push_back(Output::StreamReadable(conn));
            return;
        }
        self.feed_handshake(now, conn, handle);
    }

    /// A uTP stream's handshake began: the built-in one reads what the peer already sent
    /// (it may have arrived while our dial still raced TCP); an external one is the
    /// application's to run, so it hears that it may write and read.
    pub(super) fn utp_handshake_begun(&mut self, now: Instant, conn: ConnId) {
        let Some(handle) = self.utp_handle(conn) else {
            return;
        };
        if self.app_owns(conn) {
            self.outputs.push_back(Output::StreamWritable(conn));
            self.outputs.push_back(Output::StreamReadable(conn));
        } else {
            self.feed_handshake(now, conn, handle);
        }
    }

    fn feed_handshake(&mut self, now: Instant, conn: ConnId, handle: ConnHandle) {
        // Handshaking with the built-in decoder: feed it until it completes or the stream
        // is empty. What follows the handshake stays buffered for the application.
        let mut buf = [0u8; HANDSHAKE_CHUNK];
        while self.wants_read(conn) {
            let Some(utp) = self.utp.as_mut() else {
                return;
            };
            let n = utp.socket.read(handle, &mut buf);
            if n == 0 {
                // End of stream before the handshake: the peer gave up (or lost a race).
                if utp.socket.conn(handle).is_some_and(|c| c.is_eof()) {
                    self.close(now, conn, CloseCause::Remote, true);
                }
                break;
            }
            self.on_received(now, conn, &buf[..n]);
        }
    }

    fn on_utp_closed(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        tracing::debug!(?conn, ?reason, "uTP connection ended");
        if let Some(stream) = self.utp.as_mut().and_then(|u| u.streams.get_mut(&conn)) {
            stream.ended = Some(reason);
        }
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Dialing(_)) => {
                self.forget_stream(conn);
                self.on_dial_closed(now, conn);
            }
            Some(ConnState::Established) => {
                self.outputs.push_back(Output::StreamReadable(conn));
                self.outputs.push_back(Output::StreamWritable(conn));
                self.close(now, conn, CloseCause::Remote, false);
            }
            Some(_) => {
                self.forget_stream(conn);
                self.close(now, conn, CloseCause::Remote, false);
            }
            None => {}
        }
    }

    /// Unbinds and releases a stream nobody will read.
    fn forget_stream(&mut self, conn: ConnId) {
        if let Some(utp) = self.utp.as_mut() {
            if let Some(handle) = utp.unbind(conn) {
                utp.socket.release(handle);
            }
        }
    }

    /// Releases a stream the core already forgot (ended by the network). Returns whether
    /// there was one.
    pub(super) fn release_ended_stream(&mut self, conn: ConnId) -> bool {
        let Some(utp) = self.utp.as_mut() else {
            return false;
        };
        match utp.unbind(conn) {
            Some(handle) => {
                utp.socket.release(handle);
                true
            }
            None => false,
        }
    }

    fn app_stream(&self, conn: ConnId) -> Result<(ConnHandle, Option<CloseReason>), StreamError> {
        if !self.app_owns(conn) {
            // The core still reads it (its handshake) or decides on it: not yet.
            return Err(StreamError::WouldBlock);
        }
        let utp = self.utp.as_ref().ok_or(StreamError::Closed)?;
        let stream = utp.streams.get(&conn).ok_or(StreamError::Closed)?;
        Ok((stream.handle, stream.ended))
    }

    /// Reads from a uTP connection the application owns (see the module docs): `Ok(0)` is
    /// end of stream.
    pub fn stream_read(
        &mut self,
        now: Instant,
        conn: ConnId,
        buf: &mut [u8],
    ) -> Result<usize, StreamError> {
        let (handle, ended) = self.app_stream(conn)?;
        let Some(utp) = self.utp.as_mut() else {
            return Err(StreamError::Closed);
        };
        utp.now = utp.now.max(now);
        let n = utp.socket.read(handle, buf);
        let eof = utp.socket.conn(handle).is_some_and(|c| c.is_eof());
        // Reading may reopen the window: the update goes out with the next outputs.
        self.pump_utp();
        match (n, ended) {
            (n, _) if n > 0 || buf.is_empty() => Ok(n),
            _ if eof => Ok(0),
            (_, Some(CloseReason::Normal)) => Ok(0),
            (_, Some(_)) => Err(StreamError::Closed),
            (_, None) => Err(StreamError::WouldBlock),
        }
    }

    /// Queues bytes on a uTP connection the application owns; returns how many fit.
    pub fn stream_write(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
    ) -> Result<usize, StreamError> {
        let (handle, ended) = self.app_stream(conn)?;
        if ended.is_some() {
            return Err(StreamError::Closed);
        }
        let Some(utp) = self.utp.as_mut() else {
            return Err(StreamError::Closed);
        };
        utp.now = utp.now.max(now);
        if utp
            .socket
            .conn(handle)
            .map_or(true, |c| c.is_write_closed())
        {
            // After our own shutdown, like a write to a shut-down TCP socket.
            return Err(StreamError::Closed);
        }
        let n = utp.socket.write(handle, data);
        self.pump_utp();
        if n == 0 && !data.is_empty() {
            return Err(StreamError::WouldBlock);
        }
        Ok(n)
    }

    /// Half-closes a uTP connection the application owns: a FIN follows the queued data;
    /// the peer's data can still be read.
    pub fn stream_shutdown(&mut self, now: Instant, conn: ConnId) -> Result<(), StreamError> {
        let (handle, _) = self.app_stream(conn)?;
        if let Some(utp) = self.utp.as_mut() {
            utp.now = utp.now.max(now);
            utp.socket.close(handle);
        }
        self.pump_utp();
        Ok(())
    }

    /// Heap bytes a uTP connection holds (its buffers' capacity: received but unread,
    /// queued but unacked); for tests and memory accounting.
    pub fn stream_buffered(&self, conn: ConnId) -> Option<usize> {
        let utp = self.utp.as_ref()?;
        let stream = utp.streams.get(&conn)?;
        utp.socket.conn(stream.handle).map(|c| c.heap_bytes())
    }
}
