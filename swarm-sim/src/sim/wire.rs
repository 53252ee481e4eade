//! From the network into the cores: packet delivery, the TCP handshake, held bytes.

use super::{Ev, Sim, SimResult};
use crate::network::{EndState, HostId, Packet, PipeId, Side};
use crate::node::HostState;
use std::net::{IpAddr, SocketAddr};
use swarm_core::{CloseCause, ConnId, Input, Transport};

impl Sim {
    pub(super) fn send(&mut self, pipe: PipeId, to: Side, packet: Packet) {
        let bytes = match &packet {
            Packet::Data(d) => d.len(),
            _ => 0,
        };
        let at = self.net.arrival(&mut self.rng, self.now, pipe, to, bytes);
        if self.cfg.partition.is_some() {
            let host = self.net.pipes.get(&pipe).and_then(|p| p.end(to).host);
            if let Some(b) = host.filter(|b| !self.owns(*b)) {
                self.send_remote_packet(at, b, pipe, to, packet);
                return;
            }
        }
        self.queue.push(at, Ev::Packet { pipe, to, packet });
    }

    /// Closes our end of a pipe and tells the other end.
    pub(super) fn close_end(&mut self, pipe: PipeId, side: Side) {
        let Some(p) = self.net.pipes.get_mut(&pipe) else {
            return;
        };
        p.end_mut(side).state = EndState::Closed;
        if p.end(side.other()).state != EndState::Closed {
            self.send(pipe, side.other(), Packet::Close);
        }
        self.net.gc(pipe);
    }

    pub(super) fn deliver(&mut self, pipe_id: PipeId, to: Side, packet: Packet) -> SimResult {
        let Some(pipe) = self.net.pipes.get(&pipe_id) else {
            return Ok(());
        };
        let end = *pipe.end(to);
        let Some(h) = end.host else {
            // Nobody has this address: the packet is lost.
            self.set_end(pipe_id, to, EndState::Closed);
            return Ok(());
        };
        match (packet, end.state) {
            (Packet::Syn, EndState::Pending) => self.on_syn(pipe_id, h)?,
            (Packet::Accept, EndState::Open(conn)) => {
                self.input(h, Input::Connected { conn })?;
            }
            (Packet::Refuse, EndState::Open(conn)) => {
                self.forget(pipe_id, to, h, conn);
                self.input(h, Input::DialFailed { conn })?;
            }
            (Packet::Data(data), EndState::Open(conn)) => {
                self.on_data(pipe_id, to, h, conn, *data)?;
            }
            (Packet::Close, EndState::Open(conn)) => {
                self.forget(pipe_id, to, h, conn);
                let cause = CloseCause::Remote;
                self.input(h, Input::Closed { conn, cause })?;
            }
            (Packet::Close, EndState::Mute) => self.set_end(pipe_id, to, EndState::Closed),
            // Data to a mute host, anything to a closed end.
            _ => {}
        }
        Ok(())
    }

    /// Bytes for the core while it reads them, held while it does not yet, and the
    /// application's once the connection is handed over.
    pub(super) fn on_data(
        &mut self,
        pipe: PipeId,
        to: Side,
        h: HostId,
        conn: ConnId,
        data: bytes::Bytes,
    ) -> SimResult {
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Ok(());
        };
        if node.check.established().contains(&conn) {
            node.app_bytes += data.len() as u64;
            if let Some(p) = self.net.pipes.get_mut(&pipe) {
                p.app_recv[to as usize] += data.len() as u64;
            }
            return Ok(());
        }
        if node.held.contains_key(&conn) || !node.core.wants_read(conn) {
            node.held.entry(conn).or_default().push_back(data);
            return Ok(());
        }
        self.input(h, Input::Received { conn, data: &data })
    }

    pub(super) fn set_end(&mut self, pipe: PipeId, side: Side, state: EndState) {
        if let Some(p) = self.net.pipes.get_mut(&pipe) {
            p.end_mut(side).state = state;
        }
        self.net.gc(pipe);
    }

    /// The network closed `conn`'s end: the core no longer owns it.
    pub(super) fn forget(&mut self, pipe: PipeId, side: Side, h: HostId, conn: ConnId) {
        self.set_end(pipe, side, EndState::Closed);
        if let Some(node) = self.hosts[h].node.as_mut() {
            node.conns.remove(&conn);
            node.held.remove(&conn);
        }
    }

    pub(super) fn on_syn(&mut self, pipe_id: PipeId, h: HostId) -> SimResult {
        let p = &self.net.pipes[&pipe_id];
        let (transport, dst_port) = (p.transport, p.dst_port);
        let dialer = p.end(Side::Dialer).host.expect("dialer has a host");
        let host = &self.hosts[h];
        let utp_off =
            transport == Transport::Utp && host.node.as_ref().is_some_and(|n| !n.core.config().utp);
        if utp_off {
            // Nobody reads that UDP port: the dialer hears nothing.
            self.set_end(pipe_id, Side::Acceptor, EndState::Closed);
            return Ok(());
        }
        let listening = dst_port == host.port;
        match host.state {
            HostState::Running if listening => {
                self.send(pipe_id, Side::Dialer, Packet::Accept);
                let (ip, port) = self.dialer_seen_by(dialer, h, transport);
                let ip = if self.cfg.mapped_inbound {
                    IpAddr::V6(ip.to_ipv6_mapped())
                } else {
                    IpAddr::V4(ip)
                };
                let remote = SocketAddr::new(ip, port);
                let now = self.host_now(h);
                let node = self.hosts[h]
                    .node
                    .as_mut()
                    .expect("running host has a core");
                match node.core.accept(now, remote, transport) {
                    Ok(conn) => {
                        node.conns.insert(conn, pipe_id);
                        self.set_end(pipe_id, Side::Acceptor, EndState::Open(conn));
                    }
                    Err(_) => self.close_end(pipe_id, Side::Acceptor),
                }
                self.after(h)?;
            }
            HostState::Mute if listening => {
                self.set_end(pipe_id, Side::Acceptor, EndState::Mute);
                self.send(pipe_id, Side::Dialer, Packet::Accept);
            }
            HostState::Blackholed => self.set_end(pipe_id, Side::Acceptor, EndState::Closed),
            _ => {
                self.set_end(pipe_id, Side::Acceptor, EndState::Closed);
                self.send(pipe_id, Side::Dialer, Packet::Refuse);
            }
        }
        Ok(())
    }

    /// The source address `acceptor` sees on a connection from `dialer`: its own address on
    /// the same segment or from a public one, its NAT's public address and a fresh port
    /// from behind NAT (uTP shares the swarm socket, so the NAT's mapping of that port).
    fn dialer_seen_by(
        &mut self,
        dialer: HostId,
        acceptor: HostId,
        transport: Transport,
    ) -> (std::net::Ipv4Addr, u16) {
        let seg = self.hosts[dialer].segment;
        let behind_nat = seg != self.hosts[acceptor].segment;
        match self.net.internet.nats.get_mut(&seg).filter(|_| behind_nat) {
            Some(nat) => {
                let port = match transport {
                    Transport::Tcp => nat.fresh_port(),
                    _ => {
                        let to = self.hosts[acceptor].addr();
                        nat.map_out(dialer, self.hosts[dialer].port, to).port()
                    }
                };
                (nat.public_ip, port)
            }
            None => {
                let port = match transport {
                    Transport::Tcp => self.hosts[dialer].ephemeral_port(),
                    _ => self.hosts[dialer].port,
                };
                (self.hosts[dialer].ip, port)
            }
        }
    }

    pub(super) fn input(&mut self, h: HostId, input: Input<'_>) -> SimResult {
        let now = self.host_now(h);
        let measure = self.cfg.measure_core.then(std::time::Instant::now);
        let Some(node) = self.hosts[h].node.as_mut() else {
            return Ok(());
        };
        node.core.handle_input(now, input);
        if let Some(t) = measure {
            self.core_time += t.elapsed();
        }
        self.after(h)
    }
}
