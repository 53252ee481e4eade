//! The sending side of a connection: what goes out next (resends, new data, FIN, acks) and
//! how each packet is stamped.

use super::*;

impl Conn {
    pub(super) fn push_packet(&mut self, ty: PacketType, payload: Bytes) {
        self.flight_bytes += payload.len();
        self.flight.push_back(OutPkt {
            ty,
            payload,
            sent_at: Instant::ZERO,
            transmissions: 0,
            need_resend: true,
            sacked: false,
            fast_resent: false,
        });
        self.resend_pending += 1;
        self.seq_nr = self.seq_nr.wrapping_add(1);
    }

    /// May a packet of `len` payload bytes go out now?
    pub(super) fn window_allows(&self, len: usize) -> bool {
        if self.cur_window == 0 {
            // Always keep one packet moving, except into a closed window.
            return self.peer_wnd > 0 || self.state == State::SynSent;
        }
        self.cur_window + len <= self.cc.cwnd.min(self.peer_wnd)
    }

    /// The next datagram to send, if any. New output appears after any `handle_*`, `write`,
    /// `read` or `close`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        let out = self.poll_transmit_inner(now);
        self.debug_check();
        out
    }

    pub(super) fn poll_transmit_inner(&mut self, now: Instant) -> Option<Bytes> {
        if let State::Closed(reason) = self.state {
            // The ack of the peer's FIN still goes out (5.5: "ACK sent at once").
            if reason == CloseReason::Normal && self.ack_needed && self.eof {
                self.ack_needed = false;
                return Some(self.emit(
                    now,
                    PacketType::State,
                    self.seq_nr,
                    self.ack_nr,
                    None,
                    &[],
                ));
            }
            return None;
        }
        // 1. Retransmissions (and a SYN's first transmission), oldest first.
        let first_resend = if self.resend_pending > 0 {
            self.flight.iter().position(|p| p.need_resend)
        } else {
            None
        };
        if let Some(i) = first_resend {
            let len = self.flight[i].payload.len();
            if self.window_allows(len) {
                let seq = self.una().wrapping_add(i as u16);
                let p = &mut self.flight[i];
                p.need_resend = false;
                self.resend_pending -= 1;
                p.transmissions += 1;
                p.sent_at = now;
                self.stats.retransmits += u64::from(p.transmissions > 1);
                let (ty, payload) = (p.ty, p.payload.clone());
                self.cur_window += len;
                return Some(self.emit_sent(now, ty, seq, &payload));
            }
        }
        if self.state == State::SynSent {
            return None;
        }
        // The acceptor's ST_STATE goes before any data, so the initiator connects first.
        if self.state == State::SynRecv && self.ack_needed {
            self.ack_needed = false;
            return Some(self.emit(now, PacketType::State, self.seq_nr, self.ack_nr, None, &[]));
        }
        // Like libutp's acceptor, no data before the initiator's first packet: a libutp
        // initiator that got our data ahead of the reordered ST_STATE would reset its ack_nr
        // behind it on that STATE and stall.
        if self.state == State::SynRecv {
            return None;
        }
        // 2. New data, cut to at most one packet's payload.
        if self.flight.len() < MAX_FLIGHT && !self.pending.is_empty() {
            let mut n = self.pending.len().min(MAX_PAYLOAD);
            if self.cur_window == 0 && self.peer_wnd > 0 {
                n = n.min(self.peer_wnd);
            }
            if self.window_allows(n) {
                let payload = self.pending.take(n);
                return Some(self.send_new(now, PacketType::Data, payload));
            }
        }
        // 3. Our FIN, once everything before it is packetised.
        if self.close_requested
            && !self.fin_sent
            && self.pending.is_empty()
            && self.flight.len() < MAX_FLIGHT
        {
            self.fin_sent = true;
            self.state = State::FinSent;
            return Some(self.send_new(now, PacketType::Fin, Bytes::new()));
        }
        // 4. A bare ack (ST_STATE carries the next seq and does not consume it).
        if self.ack_needed || self.keepalive_due {
            let ack = if self.ack_needed {
                self.ack_nr
            } else {
                // libutp's keep-alive repeats the ack before the current one.
                self.ack_nr.wrapping_sub(1)
            };
            self.ack_needed = false;
            self.keepalive_due = false;
            let mask = self.sack_mask();
            let sack = mask.as_ref().map(|m| &m[..]);
            return Some(self.emit(now, PacketType::State, self.seq_nr, ack, sack, &[]));
        }
        None
    }

    pub(super) fn send_new(&mut self, now: Instant, ty: PacketType, payload: Bytes) -> Bytes {
        let seq = self.seq_nr;
        self.push_packet(ty, payload.clone());
        let p = self.flight.back_mut().expect("just pushed");
        p.need_resend = false;
        self.resend_pending -= 1;
        p.transmissions = 1;
        p.sent_at = now;
        self.cur_window += payload.len();
        self.emit_sent(now, ty, seq, &payload)
    }

    /// Emits a packet that is (re)sent from the flight queue and arms the RTO.
    pub(super) fn emit_sent(
        &mut self,
        now: Instant,
        ty: PacketType,
        seq: u16,
        payload: &[u8],
    ) -> Bytes {
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.cc.rto());
        }
        // Rule: the initiator's SYN carries ack 0; everything else our current ack.
        let ack = if ty == PacketType::Syn {
            0
        } else {
            self.ack_nr
        };
        let out = self.emit(now, ty, seq, ack, None, payload);
        // Data carries the cumulative ack; gaps still need a SACK in an ST_STATE.
        self.ack_needed = self.reorder.len() > 1;
        out
    }

    /// 4 bytes (libutp's size) of "received" bits for `ack_nr + 2 ..`, if anything is missing.
    pub(super) fn sack_mask(&self) -> Option<[u8; 4]> {
        if self.reorder.len() < 2 {
            return None;
        }
        let mut m = [0u8; 4];
        for (i, slot) in self.reorder.iter().skip(1).take(32).enumerate() {
            if slot.is_some() {
                m[i / 8] |= 1 << (i % 8);
            }
        }
        Some(m)
    }

    pub(super) fn emit(
        &mut self,
        now: Instant,
        ty: PacketType,
        seq_nr: u16,
        ack_nr: u16,
        sack: Option<&[u8]>,
        payload: &[u8],
    ) -> Bytes {
        let wnd = self.recv_window();
        self.last_adv_wnd = wnd;
        self.stats.packets_sent += 1;
        self.last_sent = now;
        let conn_id = if ty == PacketType::Syn {
            self.recv_id
        } else {
            self.send_id
        };
        Packet {
            ty,
            conn_id,
            timestamp: micros32(now),
            timestamp_diff: self.reply_micro,
            wnd_size: wnd as u32,
            seq_nr,
            ack_nr,
            sack,
            payload,
        }
        .emit({
            let block = if self.is_connected() { BLOCK } else { 0 };
            refill(&mut self.scratch, HEADER_LEN + 6 + payload.len(), block);
            &mut self.scratch
        });
        self.scratch.split().freeze()
    }
}
