//! Many uTP connections over one UDP port (PROTOCOLS.md 1.11, 5.6), sans-IO.
//!
//! Drive it like a connection: `handle_datagram(now, from, data)` / `handle_timeout(now)` in,
//! then drain `poll_transmit(now)` and `poll_event()`, then sleep until `poll_timeout()`.
//! Application calls (`connect`, `write`, `read`, `close`) can also produce output.

use super::conn::{CloseReason, Conn, State};
use super::header::{looks_like_utp, Packet, PacketType};
use crate::time::Instant;
use crate::{new_map, Map};
use bytes::{Bytes, BytesMut};
use core::time::Duration;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// A connection of this socket, chosen by the socket, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnHandle(pub u64);

/// What the application learns from the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UtpEvent {
    /// A SYN was accepted (half-open until the initiator's first packet).
    Incoming { conn: ConnHandle, addr: SocketAddr },
    /// The handshake completed (outbound: ST_STATE received; inbound: first packet).
    Connected(ConnHandle),
    /// Data or end-of-stream became readable (edge: again after `read` emptied it).
    Readable(ConnHandle),
    /// `write` took less than offered and there is room again.
    Writable(ConnHandle),
    /// The connection ended; buffered data can still be read until `release` or drained.
    Closed {
        conn: ConnHandle,
        reason: CloseReason,
    },
}

/// Limits and the seed of the socket's randomness.
#[derive(Clone, Debug)]
pub struct UtpConfig {
    /// Seeds connection ids and initial sequence numbers (with the caller's entropy).
    pub seed: u64,
    /// Accept incoming SYNs (libutp's firewall is cleared by `listen()`).
    pub listening: bool,
    /// Connections in SYN_RECV at once; further SYNs are dropped silently.
    pub max_half_open: usize,
    /// All connections; libutp refuses SYNs beyond 3000.
    pub max_conns: usize,
}

impl UtpConfig {
    pub fn new(seed: u64) -> Self {
        UtpConfig {
            seed,
            listening: true,
            max_half_open: 64,
            max_conns: 3000,
        }
    }
}

/// Unknown-connection RSTs: one per (id, address, seq) per 10 s, at most this many remembered.
const RST_MEMORY: usize = 1000;
const RST_INTERVAL: Duration = Duration::from_secs(10);
/// A cleanly closed connection stays routable this long, so a FIN resent because our ack
/// was lost is acked again instead of reset.
const LINGER: Duration = Duration::from_secs(10);
/// A detached connection whose peer never finishes its side is forgotten after this long.
const DETACH_TIMEOUT: Duration = Duration::from_secs(30);

struct Entry {
    addr: SocketAddr,
    conn: Conn,
    connected_reported: bool,
    readable_reported: bool,
    write_blocked: bool,
    closed_reported: bool,
    half_open: bool,
    /// Routable until then after a clean close.
    linger_until: Option<Instant>,
    /// Closed by an owner that no longer watches it (`close_detached`): incoming data is
    /// discarded, no events, and it is forgotten at this instant at the latest.
    detached_until: Option<Instant>,
}

/// The multiplexer.
pub struct UtpSocket {
    config: UtpConfig,
    rng: Xoshiro256PlusPlus,
    conns: Map<ConnHandle, Entry>,
    /// Routing: (peer, id on packets to us) and (peer, id on packets from us).
    by_recv: Map<(SocketAddr, u16), ConnHandle>,
    by_send: Map<(SocketAddr, u16), ConnHandle>,
    /// Live handles in creation order, for round-robin output and timers.
    order: Vec<ConnHandle>,
    cursor: usize,
    next_handle: u64,
    half_open: usize,
    events: VecDeque<UtpEvent>,
    resets: VecDeque<(SocketAddr, Bytes)>,
    rst_seen: Map<(u16, SocketAddr, u16), Instant>,
    rst_order: VecDeque<((u16, SocketAddr, u16), Instant)>,
    scratch: BytesMut,
    /// The latest `now` seen, for lingering deadlines set outside timed calls.
    now: Instant,
}

impl UtpSocket {
    pub fn new(config: UtpConfig) -> Self {
        let seed = config.seed;
        UtpSocket {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            conns: new_map(seed),
            by_recv: new_map(seed),
            by_send: new_map(seed),
            order: Vec::new(),
            cursor: 0,
            next_handle: 0,
            half_open: 0,
            events: VecDeque::new(),
            resets: VecDeque::new(),
            rst_seen: new_map(seed),
            rst_order: VecDeque::new(),
            scratch: BytesMut::new(),
            now: Instant::ZERO,
            config,
        }
    }

    /// Accept incoming SYNs from now on (or stop).
    pub fn set_listening(&mut self, listening: bool) {
        self.config.listening = listening;
    }

    /// Connections held (any state, until released).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections in SYN_RECV.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    fn id_in_use(&self, addr: SocketAddr, id: u16) -> bool {
        self.by_recv.contains_key(&(addr, id)) || self.by_send.contains_key(&(addr, id))
    }

    /// Opens a connection to `addr`: a random id `S` such that none of `S-1 ..= S+2` is in
    /// use with that address (so neither our ids nor libutp's RST matching can collide).
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) -> ConnHandle {
        self.now = self.now.max(now);
        let free = |s: &Self, id: u16| {
            (0..4).all(|d| !s.id_in_use(addr, id.wrapping_add(d).wrapping_sub(1)))
        };
        let mut id = self.rng.next_u32() as u16;
        let mut tries = 0u32;
        // Random tries first; a linear walk if the address is crowded.
        while !free(self, id) && tries < 65_536 + 64 {
            id = if tries < 64 {
                self.rng.next_u32() as u16
            } else {
                id.wrapping_add(1)
            };
            tries += 1;
        }
        let isn = self.rng.next_u32() as u16;
        self.insert(addr, Conn::connect(now, id, isn), false)
    }

    fn insert(&mut self, addr: SocketAddr, conn: Conn, half_open: bool) -> ConnHandle {
        let h = ConnHandle(self.next_handle);
        self.next_handle += 1;
        self.by_recv.insert((addr, conn.recv_id()), h);
        self.by_send.insert((addr, conn.send_id()), h);
        self.order.push(h);
        self.half_open += usize::from(half_open);
        self.conns.insert(
            h,
            Entry {
                addr,
                conn,
                connected_reported: false,
                readable_reported: false,
                write_blocked: false,
                closed_reported: false,
                half_open,
                linger_until: None,
                detached_until: None,
            },
        );
        h
    }

    /// Would `handle_datagram` treat this as uTP (PROTOCOLS.md 1.11)? A uTP-shaped header
    /// that belongs to a connection, or a SYN. Other datagrams go to KRPC/DNS first; pass
    /// them here afterwards only if nothing else took them (that answers with a RST).
    pub fn claims(&self, from: SocketAddr, data: &[u8]) -> bool {
        if !looks_like_utp(data) {
            return false;
        }
        let Ok(p) = Packet::parse(data) else {
            return false;
        };
        match p.ty {
            PacketType::Syn => true,
            PacketType::Reset => self.reset_target(from, p.conn_id).is_some(),
            _ => self.by_recv.contains_key(&(from, p.conn_id)),
        }
    }

    /// RSTs carry the id the peer received on, i.e. our send id; fall back to our recv id
    /// (a peer resetting a connection it knows). Never the ±1 neighbours libutp also tries.
    fn reset_target(&self, from: SocketAddr, id: u16) -> Option<ConnHandle> {
        self.by_send
            .get(&(from, id))
            .or_else(|| self.by_recv.get(&(from, id)))
            .copied()
    }

    /// A datagram from `from`. Non-uTP and malformed datagrams are ignored.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        let Ok(p) = Packet::parse(data) else {
            return;
        };
        let target = match p.ty {
            // Never answer a RST with a RST.
            PacketType::Reset => self.reset_target(from, p.conn_id),
            // A SYN's id is the initiator's recv id; ours for it would be id + 1.
            PacketType::Syn => match self.by_recv.get(&(from, p.conn_id.wrapping_add(1))) {
                Some(&h) => Some(h),
                None => {
                    self.accept(now, from, &p);
                    return;
                }
            },
            _ => match self.by_recv.get(&(from, p.conn_id)) {
                Some(&h) => Some(h),
                None => {
                    self.reset_unknown(now, from, &p);
                    return;
                }
            },
        };
        if let Some(h) = target {
            if let Some(e) = self.conns.get_mut(&h) {
                e.conn.handle(now, &p);
            }
            self.update(h);
        }
    }

    fn accept(&mut self, now: Instant, from: SocketAddr, syn: &Packet<'_>) {
        // Dropped silently like libutp: not listening, too many, or our send id would clash.
        if !self.config.listening
            || self.half_open >= self.config.max_half_open
            || self.conns.len() >= self.config.max_conns
            || self.by_send.contains_key(&(from, syn.conn_id))
        {
            return;
        }
        let isn = self.rng.next_u32() as u16;
        let h = self.insert(from, Conn::accept(now, syn, isn), true);
        self.events.push_back(UtpEvent::Incoming {
            conn: h,
            addr: from,
        });
    }

    /// ST_RESET for a non-SYN packet matching no connection, rate-limited (5.6).
    fn reset_unknown(&mut self, now: Instant, from: SocketAddr, p: &Packet<'_>) {
        let key = (p.conn_id, from, p.seq_nr);
        if self
            .rst_seen
            .get(&key)
            .is_some_and(|&t| now - t < RST_INTERVAL)
        {
            return;
        }
        while self.rst_seen.len() >= RST_MEMORY {
            let Some((old, t)) = self.rst_order.pop_front() else {
                break;
            };
            if self.rst_seen.get(&old) == Some(&t) {
                self.rst_seen.remove(&old);
            }
        }
        // Entries refreshed in place leave stale twins in the queue: bound it as well.
        if self.rst_order.len() >= 2 * RST_MEMORY {
            self.rst_order.pop_front();
        }
        self.rst_seen.insert(key, now);
        self.rst_order.push_back((key, now));
        if self.resets.len() >= RST_MEMORY {
            return;
        }
        Packet {
            ty: PacketType::Reset,
            conn_id: p.conn_id,
            timestamp: 0,
            timestamp_diff: 0,
            wnd_size: 0,
            seq_nr: self.rng.next_u32() as u16,
            ack_nr: p.seq_nr,
            sack: None,
            payload: &[],
        }
        .emit({
            super::conn::refill(&mut self.scratch, 20, 20 * 64);
            &mut self.scratch
        });
        self.resets.push_back((from, self.scratch.split().freeze()));
    }

    /// Reports what changed on `h` and unroutes it once closed.
    fn update(&mut self, h: ConnHandle) {
        let Some(e) = self.conns.get_mut(&h) else {
            return;
        };
        if e.half_open && e.conn.state() != State::SynRecv {
            e.half_open = false;
            self.half_open -= 1;
        }
        if e.detached_until.is_some() {
            // Nobody reads it: drop what arrives (the window stays open, so the peer can
            // finish and send its FIN), and report nothing.
            let mut sink = [0u8; 4096];
            while e.conn.read(&mut sink) > 0 {}
            e.readable_reported = true;
            e.connected_reported = true;
            e.write_blocked = false;
            e.closed_reported |= e.conn.is_closed();
            if e.conn.is_closed() && e.linger_until.is_none() {
                if e.conn.state() == State::Closed(CloseReason::Normal) && e.conn.peer_finished() {
                    e.linger_until = Some(self.now + LINGER);
                } else {
                    self.unroute(h);
                }
            }
            return;
        }
        if e.conn.is_connected() && !e.connected_reported {
            e.connected_reported = true;
            self.events.push_back(UtpEvent::Connected(h));
        }
        if (e.conn.readable_len() > 0 || e.conn.is_eof()) && !e.readable_reported {
            e.readable_reported = true;
            self.events.push_back(UtpEvent::Readable(h));
        }
        if e.write_blocked && e.conn.send_capacity() > 0 {
            e.write_blocked = false;
            self.events.push_back(UtpEvent::Writable(h));
        }
        if let State::Closed(reason) = e.conn.state() {
            if !e.closed_reported {
                e.closed_reported = true;
                self.events.push_back(UtpEvent::Closed { conn: h, reason });
                if reason == CloseReason::Normal && e.conn.peer_finished() {
                    e.linger_until = Some(self.now + LINGER);
                } else {
                    // Later packets for it get a RST, as from libutp after it deletes a socket.
                    self.unroute(h);
                }
            }
        }
    }

    /// Graceful close for an owner that forgets the handle now (Node's `destroy()` on a
    /// connected socket): FIN after the queued data, later data discarded, no more events.
    /// The connection goes once both sides finished (after the usual linger), or
    /// `DETACH_TIMEOUT` from now if the peer never finishes its side.
    pub fn close_detached(&mut self, now: Instant, h: ConnHandle) {
        self.now = self.now.max(now);
        let Some(e) = self.conns.get_mut(&h) else {
            return;
        };
        e.conn.close();
        e.detached_until = Some(self.now + DETACH_TIMEOUT);
        self.update(h);
    }

    /// Forgets a connection at once: no FIN, unread data dropped; the peer's next packet
    /// gets a RST. Use `close` for a graceful end.
    pub fn release(&mut self, h: ConnHandle) {
        self.remove(h);
    }

    fn unroute(&mut self, h: ConnHandle) {
        if let Some(e) = self.conns.get(&h) {
            let (addr, r, s) = (e.addr, e.conn.recv_id(), e.conn.send_id());
            if self.by_recv.get(&(addr, r)) == Some(&h) {
                self.by_recv.remove(&(addr, r));
            }
            if self.by_send.get(&(addr, s)) == Some(&h) {
                self.by_send.remove(&(addr, s));
            }
        }
    }

    fn remove(&mut self, h: ConnHandle) {
        self.unroute(h);
        if let Some(e) = self.conns.remove(&h) {
            self.half_open -= usize::from(e.half_open);
            if let Some(i) = self.order.iter().position(|&x| x == h) {
                self.order.remove(i);
                if self.cursor > i {
                    self.cursor -= 1;
                }
            }
        }
    }

    // ------------------------------------------------------------------ application side

    pub fn conn(&self, h: ConnHandle) -> Option<&Conn> {
        self.conns.get(&h).map(|e| &e.conn)
    }

    pub fn state(&self, h: ConnHandle) -> Option<State> {
        self.conn(h).map(Conn::state)
    }

    pub fn peer_addr(&self, h: ConnHandle) -> Option<SocketAddr> {
        self.conns.get(&h).map(|e| e.addr)
    }

    /// Queues what fits; a short count arms a `Writable` event.
    pub fn write(&mut self, h: ConnHandle, data: &[u8]) -> usize {
        let Some(e) = self.conns.get_mut(&h) else {
            return 0;
        };
        let n = e.conn.write(data);
        if n < data.len() && !e.conn.is_closed() {
            e.write_blocked = true;
        }
        n
    }

    /// Reads in order; 0 with `is_eof` means end of stream. Re-arms `Readable` once empty.
    pub fn read(&mut self, h: ConnHandle, buf: &mut [u8]) -> usize {
        let Some(e) = self.conns.get_mut(&h) else {
            return 0;
        };
        let n = e.conn.read(buf);
        if e.conn.readable_len() == 0 && !e.conn.is_eof() {
            e.readable_reported = false;
        }
        n
    }

    /// Half-close (FIN after queued data), or abandon if not yet established.
    pub fn close(&mut self, h: ConnHandle) {
        if let Some(e) = self.conns.get_mut(&h) {
            e.conn.close();
        }
        self.update(h);
    }

    // ------------------------------------------------------------------ output and timers

    /// Next datagram to send, connections served round-robin. Closed connections with
    /// nothing left to read or send are dropped here.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Bytes)> {
        self.now = self.now.max(now);
        if let Some(r) = self.resets.pop_front() {
            return Some(r);
        }
        let mut dead = Vec::new();
        let mut out = None;
        for _ in 0..self.order.len() {
            if self.cursor >= self.order.len() {
                self.cursor = 0;
            }
            let h = self.order[self.cursor];
            self.cursor += 1;
            let Some(e) = self.conns.get_mut(&h) else {
                continue;
            };
            if let Some(b) = e.conn.poll_transmit(now) {
                out = Some((e.addr, b));
                break;
            }
            if e.closed_reported && e.conn.readable_len() == 0 && e.linger_until.is_none() {
                dead.push(h);
            }
        }
        for h in dead {
            self.remove(h);
        }
        out
    }

    pub fn poll_event(&mut self) -> Option<UtpEvent> {
        self.events.pop_front()
    }

    /// Earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .flat_map(|e| [e.conn.poll_timeout(), e.linger_until, e.detached_until])
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let mut expired = Vec::new();
        let mut abandoned = Vec::new();
        for i in 0..self.order.len() {
            let h = self.order[i];
            let Some(e) = self.conns.get_mut(&h) else {
                continue;
            };
            if e.linger_until.is_some_and(|t| t <= now) {
                e.linger_until = None;
                expired.push(h);
            }
            if e.detached_until.is_some_and(|t| t <= now) {
                abandoned.push(h);
                continue;
            }
            if e.conn.poll_timeout().is_some_and(|d| d <= now) {
                e.conn.handle_timeout(now);
                self.update(h);
            }
        }
        for h in abandoned {
            self.remove(h);
        }
        for h in expired {
            self.unroute(h);
            if self
                .conns
                .get(&h)
                .is_some_and(|e| e.conn.readable_len() == 0)
            {
                self.remove(h);
            }
        }
        // RST memory older than the interval is useless.
        while let Some(&(k, t)) = self.rst_order.front() {
            if now - t < RST_INTERVAL {
                break;
            }
            self.rst_order.pop_front();
            if self.rst_seen.get(&k) == Some(&t) {
                self.rst_seen.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests;
