//! From the cores into the network: outputs, events, timers and the application.

use super::{Ev, LogEntry, Sim, SimResult};
use crate::network::{EndState, HostId, Packet, PipeId, Side};
use crate::node::{utp_pattern, UtpApp};
use crate::trace::describe;
use core::time::Duration;
use swarm_core::{ConnId, Event, Input, Instant, Output};

impl Sim {
    /// Drains `h`'s outputs, checks its invariants and re-arms its timer.
    pub(super) fn after(&mut self, h: HostId) -> SimResult {
        loop {
            while let Some(output) = self.hosts[h]
                .node
                .as_mut()
                .and_then(|n| n.core.poll_output())
            {
                self.on_output(h, output)?;
            }
            if !self.feed_held(h) {
                break;
            }
        }
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Ok(());
        };
        let counters = node.check.check_counters(&node.core);
        counters.map_err(|m| self.violation(format!("n{h}: {m}")))?;
        self.arm(h);
        Ok(())
    }

    pub(super) fn on_output(&mut self, h: HostId, output: Output) -> SimResult {
        let node = self.node_mut(h);
        match output {
            Output::Dial {
                conn,
                addr,
                transport,
            } => {
                node.check.on_dial(conn);
                let (target, refused) = self.route_dial(h, addr);
                let pipe = self.net.open(h, conn, target, addr.port(), transport);
                self.node_mut(h).conns.insert(conn, pipe);
                if refused {
                    // A NAT answers the SYN with a RST.
                    self.set_end(pipe, Side::Acceptor, EndState::Closed);
                    self.send(pipe, Side::Dialer, Packet::Refuse);
                } else {
                    self.send(pipe, Side::Acceptor, Packet::Syn);
                }
            }
            Output::Transmit { socket, to, data } => self.transmit(h, socket, to, data),
            Output::Send { conn, data } => {
                if let Some(&pipe) = node.conns.get(&conn) {
                    self.send_data(h, conn, pipe, data);
                }
            }
            Output::Close { conn } => {
                node.held.remove(&conn);
                let Some(pipe) = node.conns.remove(&conn) else {
                    return Ok(());
                };
                if let Some(side) = self.net.pipes.get(&pipe).and_then(|p| p.side_of(h, conn)) {
                    self.close_end(pipe, side);
                }
            }
            Output::Event(event) => self.on_event(h, event)?,
            Output::StreamReadable(conn) | Output::StreamWritable(conn) => {
                self.pump_utp_app(h, conn)?
            }
        }
        Ok(())
    }

    /// Feeds one held chunk to a connection that wants to read again. Returns whether it did.
    pub(super) fn feed_held(&mut self, h: HostId) -> bool {
        let now = self.host_now(h);
        let Some(node) = self.hosts[h].node.as_mut() else {
            return false;
        };
        let Some(conn) = node.held.keys().copied().find(|c| node.core.wants_read(*c)) else {
            return false;
        };
        let queue = node.held.get_mut(&conn).expect("held");
        let data = queue.pop_front().unwrap_or_default();
        if queue.is_empty() {
            node.held.remove(&conn);
        }
        node.core
            .handle_input(now, Input::Received { conn, data: &data });
        true
    }

    pub(super) fn send_data(&mut self, h: HostId, conn: ConnId, pipe: PipeId, data: bytes::Bytes) {
        let Some(side) = self.net.pipes.get(&pipe).and_then(|p| p.side_of(h, conn)) else {
            return;
        };
        let mut rest = data;
        while !rest.is_empty() {
            let max = self.net.cfg.max_chunk.max(1).min(rest.len());
            let n = if self.net.cfg.random_chunks {
                self.rng.range(1, max as u64) as usize
            } else {
                max
            };
            let chunk = rest.split_to(n);
            self.send(pipe, side.other(), Packet::Data(Box::new(chunk)));
        }
    }

    pub(super) fn on_event(&mut self, h: HostId, event: Event) -> SimResult {
        if self.cfg.trace_events {
            self.trace
                .record(self.now, &format!("n{h}"), &describe(&event));
        }
        let checked = self.node_mut(h).check.on_event(&event);
        checked.map_err(|m| self.violation(format!("n{h}: {m}")))?;
        if let Event::Connection {
            conn,
            info,
            early_data,
        } = &event
        {
            let piped = self.hosts[h]
                .node
                .as_ref()
                .is_some_and(|n| n.conns.contains_key(conn));
            if piped {
                self.check_connection(h, *conn, info.id.as_deref())?;
                self.app_start(h, *conn, early_data.len());
            } else {
                self.check_utp_connection(h, *conn, info)?;
                self.utp_app_start(h, *conn, early_data)?;
            }
        }
        if self.cfg.keep_log {
            self.log.push(LogEntry {
                at: self.now,
                host: h,
                incarnation: self.hosts[h].incarnation,
                event,
            });
        }
        Ok(())
    }

    /// A `connection` is never to ourselves, and names the id of whoever holds the other end.
    pub(super) fn check_connection(&self, h: HostId, conn: ConnId, id: Option<&[u8]>) -> SimResult {
        let node = self.hosts[h]
            .node
            .as_ref()
            .expect("event from a running node");
        let pipe = node.conns.get(&conn).and_then(|p| self.net.pipes.get(p));
        let Some(pipe) = pipe else {
            return Err(self.violation(format!("n{h}: connection c{} has no pipe", conn.0)));
        };
        let side = pipe.side_of(h, conn).expect("open end");
        let other = pipe.end(side.other());
        if other.host == Some(h) {
            return Err(self.violation(format!("n{h}: connection c{} to itself", conn.0)));
        }
        let remote = other.host.and_then(|o| self.hosts[o].node.as_ref());
        if let (EndState::Open(_), Some(remote)) = (other.state, remote) {
            if id != Some(remote.core.id().as_ref()) {
                return Err(self.violation(format!(
                    "n{h}: connection c{} reports an id that is not its peer's",
                    conn.0
                )));
            }
        }
        Ok(())
    }

    /// A `connection` over the core's own uTP: never to ourselves, and naming the id of the
    /// host at its address (when that host is reachable directly, not behind a NAT).
    fn check_utp_connection(
        &self,
        h: HostId,
        conn: ConnId,
        info: &swarm_core::ConnInfo,
    ) -> SimResult {
        let ip = super::canonical_ip(info.addr.ip());
        if info.transport != swarm_core::Transport::Utp {
            return Err(self.violation(format!("n{h}: connection c{} has no pipe", conn.0)));
        }
        let Some(&o) = self.by_ip.get(&ip) else {
            return Ok(());
        };
        if o == h {
            return Err(self.violation(format!("n{h}: connection c{} to itself", conn.0)));
        }
        let remote = self.hosts[o].node.as_ref().map(|n| n.core.id().clone());
        if remote.is_some_and(|id| info.id.as_deref() != Some(id.as_ref())) {
            return Err(self.violation(format!(
                "n{h}: uTP connection c{} reports an id that is not its peer's",
                conn.0
            )));
        }
        Ok(())
    }

    /// The application takes over a uTP connection run by the core: checks the early data,
    /// and starts writing its payload (keeping the connection open: a swarm redials a peer
    /// whose connection ended).
    fn utp_app_start(&mut self, h: HostId, conn: ConnId, early: &[u8]) -> SimResult {
        let to_write = match (self.cfg.utp_payload, self.cfg.app_data) {
            (0, true) => self.rng.range(1, 64),
            (0, false) => 0,
            (n, _) => n,
        };
        let app = UtpApp {
            to_write,
            ..UtpApp::default()
        };
        self.node_mut(h).utp_apps.insert(conn, app);
        self.utp_app_read(h, conn, early)?;
        self.pump_utp_app(h, conn)
    }

    /// Bytes the application read from a uTP stream: each must be the pattern's.
    fn utp_app_read(&mut self, h: HostId, conn: ConnId, data: &[u8]) -> SimResult {
        let Some(app) = self.node_mut(h).utp_apps.get_mut(&conn) else {
            return Ok(());
        };
        let start = app.read;
        app.read += data.len() as u64;
        let bad = data
            .iter()
            .enumerate()
            .find(|(i, b)| **b != utp_pattern(start + *i as u64));
        if let Some((i, _)) = bad {
            let at = start + i as u64;
            return Err(
                self.violation(format!("n{h}: uTP stream c{} corrupt at byte {at}", conn.0))
            );
        }
        Ok(())
    }

    /// Reads what a uTP stream holds and writes what fits, as an application would on the
    /// core's readable/writable signals.
    pub(super) fn pump_utp_app(&mut self, h: HostId, conn: ConnId) -> SimResult {
        let now = self.host_now(h);
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(node) = self.hosts[h].node.as_mut() else {
                return Ok(());
            };
            if !node.utp_apps.contains_key(&conn) {
                return Ok(());
            }
            match node.core.stream_read(now, conn, &mut buf) {
                Ok(0) => {
                    if let Some(app) = node.utp_apps.get_mut(&conn) {
                        app.ended = true;
                    }
                    break;
                }
                Ok(n) => self.utp_app_read(h, conn, &buf[..n])?,
                Err(_) => break,
            }
        }
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Ok(());
        };
        let Some(app) = node.utp_apps.get(&conn).cloned() else {
            return Ok(());
        };
        let mut written = app.written;
        while written < app.to_write {
            let n = (app.to_write - written).min(buf.len() as u64) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = utp_pattern(written + i as u64);
            }
            match node.core.stream_write(now, conn, &buf[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => written += k as u64,
            }
        }
        if let Some(app) = node.utp_apps.get_mut(&conn) {
            app.written = written;
        }
        Ok(())
    }

    /// The application takes over a new connection: it counts the early data and writes a
    /// greeting of random length.
    pub(super) fn app_start(&mut self, h: HostId, conn: ConnId, early: usize) {
        let Some(&pipe) = self.hosts[h].node.as_ref().and_then(|n| n.conns.get(&conn)) else {
            return;
        };
        let Some(side) = self.net.pipes.get(&pipe).and_then(|p| p.side_of(h, conn)) else {
            return;
        };
        let len = if self.cfg.app_data {
            self.rng.range(1, 64) as usize
        } else {
            0
        };
        let held: u64 = self
            .node_mut(h)
            .held
            .remove(&conn)
            .into_iter()
            .flatten()
            .map(|b| b.len() as u64)
            .sum();
        self.node_mut(h).app_bytes += held;
        let p = self.net.pipes.get_mut(&pipe).expect("pipe");
        p.app_recv[side as usize] += early as u64 + held;
        p.app_sent[side.other() as usize] += len as u64;
        if len > 0 {
            let data = bytes::Bytes::from(self.rng.bytes(len));
            self.send_data(h, conn, pipe, data);
        }
    }

    pub(super) fn arm(&mut self, h: HostId) {
        let now = self.now;
        let host = &mut self.hosts[h];
        let offset = host.clock_offset;
        let Some(node) = host.node.as_mut() else {
            return;
        };
        let deadline = node.core.poll_timeout();
        if deadline == node.armed {
            return;
        }
        node.armed = deadline;
        // No deadline: a queued wake-up may stay; an early `handle_timeout` is harmless.
        let Some(at) = deadline else {
            return;
        };
        // The deadline is on the host's clock.
        let at = Instant::from_micros(at.as_micros().saturating_sub(offset.as_micros() as u64));
        let late = if self.cfg.timer_slack.is_zero() {
            Duration::ZERO
        } else {
            self.rng.duration(Duration::ZERO, self.cfg.timer_slack)
        };
        let at = at.max(now) + late;
        // A wake-up at or before `at` is queued already: it fires, and re-arms for this
        // deadline. Only an earlier deadline queues a new event (and makes the old one
        // stale), so the queue does not fill with stale timers as deadlines move.
        if node.queued_at.is_some_and(|q| q <= at) {
            return;
        }
        node.queued_at = Some(at);
        host.timer_gen += 1;
        let gen = host.timer_gen;
        self.queue.push(at, Ev::Timer { host: h, gen });
    }
}
