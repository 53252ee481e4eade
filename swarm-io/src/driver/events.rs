//! Events out of the core: connections handed to the application (TCP sockets, or uTP
//! streams through a bridge the driver services), and the rest passed on as they are.

use super::{Driver, Owner, Report};
use crate::connection::Connection;
use crate::runtime::{Io, Runtime};
use crate::stream_bridge::{Bridge, INBOUND_CAP};
use crate::SwarmEvent;
use bytes::{Buf, Bytes};
use std::net::SocketAddr;
use swarm_core::{ConnId, Event, Transport};

impl<R: Runtime> Driver<R> {
    pub(super) fn on_event(&mut self, event: Event) {
        let local_port = event_conn(&event)
            .and_then(|c| self.live.get(&c))
            .map(|l| l.local_port)
            .filter(|p| *p != 0);
        match event {
            Event::Connection {
                conn,
                info,
                early_data,
            } if info.transport == Transport::Utp => self.start_stream(conn, info, early_data),
            Event::Connection {
                conn,
                info,
                early_data,
            } => {
                let Some(hs) = self.held.remove(&conn) else {
                    tracing::warn!(?conn, "connection without a socket");
                    return;
                };
                if let Some(live) = self.live.get_mut(&conn) {
                    if let Ok(socket) = hs.stream.get_ref().try_clone() {
                        live.owner = Owner::Application(socket);
                    }
                }
                let connection = Connection::new(
                    hs.stream,
                    early_data,
                    hs.unsent,
                    info,
                    conn,
                    self.report_tx.clone(),
                );
                self.publish_counters();
                let _ = self.events.send(SwarmEvent::Connection(connection));
            }
            event => {
                match &event {
                    Event::Handshaking { conn, info } => {
                        if let Some(live) = self.live.get_mut(conn) {
                            live.reported = true;
                        }
                        self.start_external(*conn, info.clone());
                    }
                    Event::ConnectionClosed { conn, .. } => {
                        self.live.remove(conn);
                    }
                    _ => {}
                }
                self.publish_counters();
                let _ = self.events.send(SwarmEvent::Event { event, local_port });
            }
        }
    }

    /// Hands a uTP connection to the application: its bytes go through a bridge the driver
    /// services on the core's readiness notices and on the application's pokes.
    fn start_stream(&mut self, conn: ConnId, info: swarm_core::ConnInfo, early_data: Bytes) {
        let reports = self.report_tx.clone();
        let bridge = Bridge::new(Box::new(move || {
            let _ = reports.send(Report::Stream(conn));
        }));
        let port = self.core.port().unwrap_or_default();
        let local = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port));
        let connection = Connection::utp(
            bridge.clone(),
            local,
            early_data,
            info,
            conn,
            self.report_tx.clone(),
        );
        self.utp_streams.insert(conn, bridge);
        self.pump_stream(conn);
        self.publish_counters();
        let _ = self.events.send(SwarmEvent::Connection(connection));
    }

    /// Moves bytes between a uTP connection's bridge and the core, as far as both allow.
    pub(super) fn pump_stream(&mut self, conn: ConnId) {
        use swarm_core::StreamError;
        let Some(bridge) = self.utp_streams.get(&conn).cloned() else {
            return;
        };
        let now = self.now();
        let mut state = bridge.lock();
        Bridge::clear_poke(&mut state);
        while !state.outbound.is_empty() && !state.closed {
            match self.core.stream_write(now, conn, &state.outbound) {
                Ok(n) => state.outbound.advance(n),
                Err(StreamError::WouldBlock) => break,
                Err(_) => state.closed = true,
            }
        }
        if state.closed {
            state.outbound.clear();
        }
        if state.shutdown && !state.dropped && state.outbound.is_empty() && !state.closed {
            // Idempotent in the core: the FIN is queued once.
            let _ = self.core.stream_shutdown(now, conn);
        }
        while !state.dropped && !state.eof && !state.closed && state.inbound.len() < INBOUND_CAP {
            let room = (INBOUND_CAP - state.inbound.len()).min(self.datagram_buf.len());
            match self
                .core
                .stream_read(now, conn, &mut self.datagram_buf[..room])
            {
                Ok(0) => state.eof = true,
                Ok(n) => state.inbound.extend_from_slice(&self.datagram_buf[..n]),
                Err(StreamError::WouldBlock) => break,
                Err(_) => state.closed = true,
            }
        }
        Bridge::wake(&mut state);
        let released = state.dropped && (state.outbound.is_empty() || state.closed);
        drop(state);
        if released {
            // The FIN follows what the core still has queued.
            self.utp_streams.remove(&conn);
            let _ = self.core.disconnect(now, conn);
        }
    }
}

fn event_conn(event: &Event) -> Option<ConnId> {
    match event {
        Event::Handshaking { conn, .. }
        | Event::HandshakeTimeout { conn, .. }
        | Event::HandshakeFailed { conn, .. }
        | Event::Connection { conn, .. }
        | Event::RedundantConnection { conn, .. }
        | Event::ConnectionClosed { conn, .. } => Some(*conn),
        _ => None,
    }
}
