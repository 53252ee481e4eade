//! One uTP connection's state machine, sans-IO (BEP 29, PROTOCOLS.md 5.2-5.5).
//!
//! Drive it with `handle_packet(now, datagram)` and `handle_timeout(now)`, then drain
//! `poll_transmit(now)` until `None` after every input, `write` or `read`, and sleep until
//! `poll_timeout()`.

use super::congestion::Congestion;
use super::header::{Packet, PacketType, HEADER_LEN};
use super::seq;
use crate::time::Instant;
use bytes::{Buf, Bytes, BytesMut};
use core::time::Duration;
use std::collections::VecDeque;

/// Largest UDP payload we send: 1,400 bytes (issue 5), two under libutp's 1402 (1500 minus
/// IP/UDP/tunnel overheads); libutp takes datagrams of any size up to 64 KiB.
pub const MAX_PACKET: usize = 1400;
/// Largest data payload per packet.
pub const MAX_PAYLOAD: usize = MAX_PACKET - 20;
/// libutp accepts data at most this many packets ahead of its `ack_nr`.
pub const REORDER_MAX: u16 = 1024;
/// Packets in flight: one less than the peer's reorder window, so even our ST_STATE (which
/// carries the *next* seq) stays inside `[ack_nr+1, ack_nr+1024]` at the peer.
const MAX_FLIGHT: usize = REORDER_MAX as usize - 1;
/// Bytes `write` buffers (queued plus unacknowledged).
pub const SEND_BUF: usize = 1 << 20;
/// Bytes of received data held (readable plus out of order): the advertised window.
pub const RECV_BUF: usize = 1 << 20;
const KEEPALIVE: Duration = Duration::from_secs(29);
/// An acceptor that never hears from its initiator again is dropped (libutp never does,
/// but a bounded half-open table needs it).
const SYN_RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// Peer advertised a zero window: probe after this long.
const ZERO_WINDOW_PROBE: Duration = Duration::from_secs(15);
/// In-order bytes taken beyond a full receive buffer (zero-window probes): bounded memory.
const PROBE_SLACK: usize = 64 * 1024;
/// Consecutive RTOs before giving up: SYN at ~21 s (3, 9, 21), data at the 5th.
const SYN_TIMEOUTS: u32 = 3;
const DATA_TIMEOUTS: u32 = 5;
/// Fast retransmissions per selective ACK (libutp).
const MAX_FAST_RESEND: usize = 4;

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// We sent a SYN and wait for the ST_STATE.
    SynSent,
    /// We answered a SYN and wait for the initiator's first packet.
    SynRecv,
    Connected,
    /// We sent (or queued) our FIN; the peer may still send.
    FinSent,
    Closed(CloseReason),
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both FINs exchanged, or closed locally before it was established.
    Normal,
    /// RST in reply to our SYN (ECONNREFUSED).
    Refused,
    /// RST while established (ECONNRESET).
    Reset,
    /// Too many consecutive retransmission timeouts (ETIMEDOUT).
    TimedOut,
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Datagrams emitted, acks included.
    pub packets_sent: u64,
    /// Data/FIN/SYN packets sent again (by RTO or selective ACK).
    pub retransmits: u64,
    /// Packets declared lost by selective ACK.
    pub fast_retransmits: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
}

/// A packet we sent that is not cumulatively acknowledged yet.
#[derive(Debug)]
struct OutPkt {
    ty: PacketType,
    payload: Bytes,
    sent_at: Instant,
    transmissions: u32,
    /// Waiting to go (again): never sent, timed out, or declared lost by SACK.
    need_resend: bool,
    /// Selectively acknowledged: no longer in flight, never resent.
    sacked: bool,
    /// Already fast-resent once: the next loss of it is the RTO's business.
    fast_resent: bool,
}

impl OutPkt {
    /// Counts against the window: sent, not acknowledged, not queued for resend.
    fn in_flight(&self) -> bool {
        !self.need_resend && !self.sacked
    }
}

/// One connection. Ids and initial sequence numbers come from the caller (the socket owns
/// the randomness).
#[derive(Debug)]
pub struct Conn {
    state: State,
    recv_id: u16,
    send_id: u16,
    /// Next sequence number to send.
    seq_nr: u16,
    /// Last sequence number received in order.
    ack_nr: u16,
    // --- sending
    /// Written, not yet cut into packets.
    pending: send_queue::SendQueue,
    /// Sent, not cumulatively acked: seqs `una .. seq_nr`, contiguous.
    flight: VecDeque<OutPkt>,
    /// Payload bytes in `flight` (for the send-buffer limit).
    flight_bytes: usize,
    /// Payload bytes counting against the window (`OutPkt::in_flight`).
    cur_window: usize,
    /// Packets in `flight` with `need_resend`, so the common case skips the search.
    resend_pending: usize,
    close_requested: bool,
    fin_sent: bool,
    fin_acked: bool,
    peer_wnd: usize,
    zero_wnd_since: Option<Instant>,
    // --- receiving
    /// Slot `i` holds seq `ack_nr + 1 + i` if it arrived early.
    reorder: VecDeque<Option<Bytes>>,
    reorder_bytes: usize,
    readable: VecDeque<Bytes>,
    readable_len: usize,
    peer_fin: Option<u16>,
    eof: bool,
    ack_needed: bool,
    keepalive_due: bool,
    last_adv_wnd: usize,
    // --- timing
    cc: Congestion,
    rto_deadline: Option<Instant>,
    timeouts: u32,
    last_sent: Instant,
    last_recv: Instant,
    /// Our measure of the peer's one-way delay, echoed as `timestamp_difference`.
    reply_micro: u32,
    /// Outgoing datagrams are cut from this block (no allocation per packet).
    scratch: BytesMut,
    /// Received payloads are copied into this block, likewise.
    rx_block: BytesMut,
    stats: ConnStats,
}

/// Makes room for `need` bytes, a block of at least `block` bytes at a time: packets are cut
/// from a block with `split`, and the block is freed once the last of them is dropped.
pub(crate) fn refill(buf: &mut BytesMut, need: usize, block: usize) {
    if buf.capacity() < need {
        *buf = BytesMut::with_capacity(need.max(block));
    }
}

/// Block size for a connection's buffers once it carries data; before that (a SYN flood's
/// half-open connections) each packet gets exactly its size.
const BLOCK: usize = 64 * 1024;

fn micros32(now: Instant) -> u32 {
    now.as_micros() as u32
}

impl Conn {
    fn new(now: Instant, state: State, recv_id: u16, send_id: u16, seq_nr: u16) -> Self {
        Conn {
            state,
            recv_id,
            send_id,
            seq_nr,
            ack_nr: 0,
            pending: send_queue::SendQueue::default(),
            flight: VecDeque::new(),
            flight_bytes: 0,
            cur_window: 0,
            resend_pending: 0,
            close_requested: false,
            fin_sent: false,
            fin_acked: false,
            peer_wnd: RECV_BUF,
            zero_wnd_since: None,
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            readable: VecDeque::new(),
            readable_len: 0,
            peer_fin: None,
            eof: false,
            ack_needed: false,
            keepalive_due: false,
            last_adv_wnd: RECV_BUF,
            cc: Congestion::new(now, MAX_PAYLOAD),
            rto_deadline: None,
            timeouts: 0,
            last_sent: now,
            last_recv: now,
            reply_micro: 0,
            scratch: BytesMut::new(),
            rx_block: BytesMut::new(),
            stats: ConnStats::default(),
        }
    }

    /// An outgoing connection: receives on `id`, sends on `id + 1`, SYN with `seq = isn`.
    pub fn connect(now: Instant, id: u16, isn: u16) -> Self {
        let mut c = Conn::new(now, State::SynSent, id, id.wrapping_add(1), isn);
        c.push_packet(PacketType::Syn, Bytes::new());
        c
    }

    /// An incoming connection for a SYN: receives on `id + 1`, sends on `id`, and answers with
    /// an ST_STATE carrying `seq = isn`, which is also the seq of its first data (5.2).
    pub fn accept(now: Instant, syn: &Packet<'_>, isn: u16) -> Self {
        let id = syn.conn_id;
        let mut c = Conn::new(now, State::SynRecv, id.wrapping_add(1), id, isn);
        c.ack_nr = syn.seq_nr;
        c.peer_wnd = syn.wnd_size as usize;
        if syn.timestamp != 0 {
            c.reply_micro = micros32(now).wrapping_sub(syn.timestamp);
        }
        c.ack_needed = true;
        c
    }

    // ------------------------------------------------------------------ queries

    pub fn state(&self) -> State {
        self.state
    }
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected | State::FinSent)
    }
    /// Id the peer puts on packets to us.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }
    /// Id we put on packets to the peer.
    pub fn send_id(&self) -> u16 {
        self.send_id
    }
    /// Bytes `read` would return now.
    pub fn readable_len(&self) -> usize {
        self.readable_len
    }
    /// The peer's FIN arrived and everything before it was read.
    pub fn is_eof(&self) -> bool {
        self.eof && self.readable_len == 0
    }
    /// Heap bytes held by this connection's buffers (for the SYN-flood bound).
    pub fn heap_bytes(&self) -> usize {
        self.scratch.capacity()
            + self.rx_block.capacity()
            + self.pending.heap_bytes()
            + self.flight.capacity() * core::mem::size_of::<OutPkt>()
            + self.reorder.capacity() * core::mem::size_of::<Option<Bytes>>()
            + self.readable.capacity() * core::mem::size_of::<Bytes>()
    }
    /// The peer's FIN arrived (everything before it too), whether or not all was read.
    pub fn peer_finished(&self) -> bool {
        self.eof
    }
    /// Bytes `write` would accept now.
    /// Our side is closed (`close` was called, or the connection ended): writes take nothing.
    pub fn is_write_closed(&self) -> bool {
        self.close_requested || self.is_closed()
    }

    pub fn send_capacity(&self) -> usize {
        if self.close_requested || self.is_closed() {
            return 0;
        }
        SEND_BUF.saturating_sub(self.pending.len() + self.flight_bytes)
    }
    /// Everything written has been acknowledged.
    pub fn is_flushed(&self) -> bool {
        self.pending.is_empty() && self.flight.is_empty()
    }
    pub fn cwnd(&self) -> usize {
        self.cc.cwnd
    }
    pub fn rtt(&self) -> Option<Duration> {
        self.cc.srtt()
    }
    pub fn rto(&self) -> Duration {
        self.cc.rto()
    }
    pub fn stats(&self) -> ConnStats {
        self.stats
    }
    /// The receive window we advertise: free space in the receive buffer.
    pub fn recv_window(&self) -> usize {
        RECV_BUF.saturating_sub(self.readable_len + self.reorder_bytes)
    }

    // ------------------------------------------------------------------ application side

    /// Queues as much of `data` as the send buffer takes; returns how much.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.send_capacity());
        self.pending.push(&data[..n]);
        n
    }

    /// Copies received bytes in order; 0 means nothing now (see `is_eof`).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.readable.front_mut() else {
                break;
            };
            let k = front.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.readable.pop_front();
            }
            n += k;
        }
        self.readable_len -= n;
        // Reopening a window the sender saw (nearly) closed: tell it now rather than leave
        // it to its 15 s zero-window probe.
        if self.last_adv_wnd < RECV_BUF / 2 && self.recv_window() >= RECV_BUF / 2 {
            self.ack_needed = true;
        }
        n
    }

    /// Half-close: send a FIN after the queued data; reading goes on until the peer's FIN.
    /// Before the connection is established it just ends (no packet, like libutp).
    pub fn close(&mut self) {
        match self.state {
            State::SynSent | State::SynRecv => self.state = State::Closed(CloseReason::Normal),
            State::Connected => self.close_requested = true,
            _ => {}
        }
    }

    // ------------------------------------------------------------------ network side

    /// A datagram addressed to this connection (the socket routed it by id).
    pub fn handle_packet(&mut self, now: Instant, data: &[u8]) {
        if let Ok(p) = Packet::parse(data) {
            self.handle(now, &p);
        }
    }

    /// Like `handle_packet`, for an already parsed packet.
    pub fn handle(&mut self, now: Instant, p: &Packet<'_>) {
        self.handle_inner(now, p);
        self.debug_check();
    }

    fn handle_inner(&mut self, now: Instant, p: &Packet<'_>) {
        if let State::Closed(reason) = self.state {
            // Lingering after a clean close: the peer did not get our ack of its FIN and
            // resends; ack again rather than let it see a RST (libutp would reset).
            if reason == CloseReason::Normal
                && self.eof
                && matches!(p.ty, PacketType::Fin | PacketType::Data)
                && seq::le(p.seq_nr, self.ack_nr)
            {
                self.ack_needed = true;
            }
            return;
        }
        if p.ty == PacketType::Reset {
            let reason = match self.state {
                State::SynSent => CloseReason::Refused,
                // A RST on a closing connection is a normal close (5.5).
                _ if self.close_requested || self.eof => CloseReason::Normal,
                _ => CloseReason::Reset,
            };
            self.state = State::Closed(reason);
            return;
        }
        if p.ty == PacketType::Syn {
            // A repeated SYN means our ST_STATE was lost: answer again.
            if self.state == State::SynRecv && p.seq_nr == self.ack_nr {
                self.ack_needed = true;
            }
            return;
        }
        if self.state == State::SynSent {
            // Only an answer acknowledging our SYN establishes the connection.
            if p.ack_nr != self.una() {
                return;
            }
            // The SYN-ACK's seq is the acceptor's first data seq: ack one before it (5.2).
            self.ack_nr = p.seq_nr.wrapping_sub(1);
        }
        // Rule: a seq outside [ack_nr+1, ack_nr+1024] drops the packet, ack included.
        let off = seq::dist(self.ack_nr.wrapping_add(1), p.seq_nr);
        if off >= REORDER_MAX {
            // An old duplicate: our ack was lost, so repeat it.
            if off >= 0u16.wrapping_sub(REORDER_MAX) && p.ty != PacketType::State {
                self.ack_needed = true;
            }
            return;
        }
        // Rule: an ack for data we never sent drops the packet.
        let una = self.una();
        let newly = seq::dist(una, p.ack_nr.wrapping_add(1)) as usize;
        let ack_valid = newly <= self.flight.len();
        if !ack_valid && seq::lt(self.seq_nr.wrapping_sub(1), p.ack_nr) {
            return;
        }
        self.last_recv = now;
        if p.timestamp != 0 {
            self.reply_micro = micros32(now).wrapping_sub(p.timestamp);
        }
        match self.state {
            State::SynSent => {
                self.state = State::Connected;
                // Confirm at once (seq X+1, ack Y-1: inside libutp's windows, and libutp
                // ignores it), so an acceptor hears from us even if we have nothing to say:
                // ours leaves SYN_RECV on it instead of timing the connection out.
                self.ack_needed = true;
            }
            State::SynRecv => self.state = State::Connected,
            _ => {}
        }
        self.set_peer_wnd(now, p.wnd_size as usize);
        if ack_valid {
            let acked = self.ack_through(now, newly);
            if let Some(mask) = p.sack {
                self.apply_sack(now, p.ack_nr, mask);
            }
            self.cc.on_ack(now, acked, p.timestamp_diff);
        }
        if matches!(p.ty, PacketType::Data | PacketType::Fin) {
            self.receive(p.ty, off, p.payload);
        }
        if self.fin_acked && self.eof {
            self.state = State::Closed(CloseReason::Normal);
        }
    }

    fn una(&self) -> u16 {
        self.seq_nr.wrapping_sub(self.flight.len() as u16)
    }

    fn set_peer_wnd(&mut self, now: Instant, wnd: usize) {
        self.peer_wnd = wnd;
        if wnd == 0 {
            // The peer is alive, only full: an unacked probe is not a dead link.
            self.timeouts = 0;
            self.zero_wnd_since.get_or_insert(now);
        } else {
            self.zero_wnd_since = None;
        }
    }

    /// Pops the `n` oldest packets, now cumulatively acked; returns the newly acked bytes.
    fn ack_through(&mut self, now: Instant, n: usize) -> usize {
        let mut acked = 0;
        for _ in 0..n {
            let Some(p) = self.flight.pop_front() else {
                break;
            };
            self.flight_bytes -= p.payload.len();
            self.resend_pending -= usize::from(p.need_resend);
            if p.in_flight() {
                self.cur_window -= p.payload.len();
            }
            if !p.sacked {
                acked += p.payload.len();
            }
            // Karn: only packets sent once give an unambiguous sample.
            if p.transmissions == 1 && !p.sacked {
                self.cc.on_rtt_sample(now - p.sent_at);
            }
            if p.ty == PacketType::Fin {
                self.fin_acked = true;
            }
        }
        if n > 0 {
            self.timeouts = 0;
            self.rto_deadline = self.outstanding().then(|| now + self.cc.rto());
        }
        acked
    }

    /// The counters agree with the flight queue (checked in debug builds and under fuzzing).
    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            let bytes: usize = self.flight.iter().map(|p| p.payload.len()).sum();
            let window: usize = self
                .flight
                .iter()
                .filter(|p| p.in_flight() && p.transmissions > 0)
                .map(|p| p.payload.len())
                .sum();
            let resend = self.flight.iter().filter(|p| p.need_resend).count();
            assert_eq!(self.flight_bytes, bytes, "flight_bytes");
            assert_eq!(self.cur_window, window, "cur_window");
            assert_eq!(self.resend_pending, resend, "resend_pending");
            assert!(self.flight.len() <= MAX_FLIGHT + 1);
            assert!(self.readable_len + self.reorder_bytes <= RECV_BUF + PROBE_SLACK);
        }
    }

    /// Some packet was sent and is neither acked nor selectively acked.
    fn outstanding(&self) -> bool {
        self.flight.iter().any(|p| !p.sacked && p.transmissions > 0)
    }

    /// Bit `i` of `mask` acknowledges `ack + 2 + i`. A gap with at least three later packets
    /// acknowledged is lost: resend up to four such, halve the window.
    fn apply_sack(&mut self, now: Instant, ack: u16, mask: &[u8]) {
        let una = self.una();
        let base = ack.wrapping_add(2);
        for i in 0..mask.len() * 8 {
            if mask[i / 8] >> (i % 8) & 1 == 0 {
                continue;
            }
            let idx = seq::dist(una, base.wrapping_add(i as u16)) as usize;
            let Some(p) = self.flight.get_mut(idx) else {
                break;
            };
            if !p.sacked && p.transmissions > 0 {
                if p.in_flight() {
                    self.cur_window -= p.payload.len();
                }
                p.sacked = true;
                self.resend_pending -= usize::from(p.need_resend);
                p.need_resend = false;
            }
        }
        let (mut later, mut resent) = (0, 0);
        for p in self.flight.iter_mut().rev() {
            if p.sacked {
                later += 1;
            } else if later >= 3 && !p.fast_resent && p.transmissions > 0 {
                if p.in_flight() {
                    self.cur_window -= p.payload.len();
                }
                self.resend_pending += usize::from(!p.need_resend);
                p.need_resend = true;
                p.fast_resent = true;
                resent += 1;
                self.stats.fast_retransmits += 1;
                if resent == MAX_FAST_RESEND {
                    break;
                }
            }
        }
        if resent > 0 {
            self.cc.on_loss(now);
        }
    }

    /// Data or FIN at `off` packets past the next expected one.
    fn receive(&mut self, ty: PacketType, off: u16, payload: &[u8]) {
        let s = self.ack_nr.wrapping_add(1).wrapping_add(off);
        // After the FIN nothing more is taken (5.5).
        if self.peer_fin.is_some_and(|f| seq::lt(f, s)) || self.eof {
            return;
        }
        self.ack_needed = true;
        // Backpressure: data that does not fit the buffer is dropped unacked. The next
        // in-order packet may overshoot by a little: a zero-window probe that is acked
        // keeps libutp, which never resets its timeout count for a live peer that only
        // advertises a zero window, from giving the connection up.
        let buffered = self.readable_len + self.reorder_bytes;
        let probe = off == 0 && buffered + payload.len() <= RECV_BUF + PROBE_SLACK;
        if payload.len() > self.recv_window() && !probe {
            return;
        }
        if ty == PacketType::Fin {
            self.peer_fin = Some(s);
        }
        let off = usize::from(off);
        if self.reorder.len() <= off {
            self.reorder.resize(off + 1, None);
        }
        if self.reorder[off].is_none() {
            self.reorder_bytes += payload.len();
            refill(&mut self.rx_block, payload.len(), BLOCK);
            self.rx_block.extend_from_slice(payload);
            self.reorder[off] = Some(self.rx_block.split().freeze());
        }
        while let Some(Some(_)) = self.reorder.front() {
            let Some(Some(data)) = self.reorder.pop_front() else {
                break;
            };
            self.ack_nr = self.ack_nr.wrapping_add(1);
            self.reorder_bytes -= data.len();
            self.readable_len += data.len();
            if !data.is_empty() {
                self.readable.push_back(data);
            }
            if self.peer_fin == Some(self.ack_nr) {
                self.eof = true;
                self.reorder.clear();
                self.reorder_bytes = 0;
                break;
            }
        }
    }

    // ------------------------------------------------------------------ timers

    /// The next deadline, if any. `handle_timeout` before it is a no-op.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut t = self.rto_deadline;
        let mut add = |d: Instant| t = Some(t.map_or(d, |t: Instant| t.min(d)));
        match self.state {
            State::SynRecv => add(self.last_recv + SYN_RECV_TIMEOUT),
            State::Connected | State::FinSent => {
                add(self.last_sent + KEEPALIVE);
                if let Some(since) = self.zero_wnd_since {
                    add(since + ZERO_WINDOW_PROBE);
                }
            }
            _ => {}
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_inner(now);
        self.debug_check();
    }

    fn handle_timeout_inner(&mut self, now: Instant) {
        match self.state {
            State::Closed(_) => return,
            State::SynRecv if now >= self.last_recv + SYN_RECV_TIMEOUT => {
                self.state = State::Closed(CloseReason::TimedOut);
                return;
            }
            State::Connected | State::FinSent => {
                if now >= self.last_sent + KEEPALIVE {
                    self.keepalive_due = true;
                }
                if self
                    .zero_wnd_since
                    .is_some_and(|s| now >= s + ZERO_WINDOW_PROBE)
                {
                    // libutp's probe: pretend the peer has room for one packet.
                    self.zero_wnd_since = None;
                    self.peer_wnd = MAX_PAYLOAD;
                }
            }
            _ => {}
        }
        if self.rto_deadline.is_some_and(|d| now >= d) {
            self.timeouts += 1;
            let limit = if self.state == State::SynSent {
                SYN_TIMEOUTS
            } else {
                DATA_TIMEOUTS
            };
            if self.timeouts >= limit {
                self.state = State::Closed(CloseReason::TimedOut);
                return;
            }
            self.stats.timeouts += 1;
            self.cc.on_timeout();
            for p in self.flight.iter_mut().filter(|p| !p.sacked) {
                p.need_resend = true;
            }
            self.resend_pending = self.flight.iter().filter(|p| p.need_resend).count();
            self.cur_window = 0;
            self.rto_deadline = Some(now + self.cc.rto());
        }
    }
}

mod output;
mod send_queue;

#[cfg(test)]
mod tests;
