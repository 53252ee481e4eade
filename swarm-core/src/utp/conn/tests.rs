//! Packet-level tests of one connection pair; each libutp rule of PROTOCOLS.md 5.2 is named.

use super::*;

const S: u16 = 0xfffe; // ids and seqs chosen to cross the 16-bit wrap
const X: u16 = 0xfffd;
const Y: u16 = 0xffff;

fn t(ms: u64) -> Instant {
    Instant::from_micros(1_000_000 + ms * 1000)
}

fn parse(b: &Bytes) -> Packet<'_> {
    Packet::parse(b).expect("we emit valid packets")
}

fn drain(c: &mut Conn, now: Instant) -> Vec<Bytes> {
    std::iter::from_fn(|| c.poll_transmit(now)).collect()
}

/// Initiator `a` (id S, seq X) and acceptor `b` (seq Y), handshake done.
fn pair() -> (Conn, Conn) {
    let mut a = Conn::connect(t(0), S, X);
    let syn = drain(&mut a, t(0));
    let mut b = Conn::accept(t(1), &parse(&syn[0]), Y);
    for p in drain(&mut b, t(1)) {
        a.handle_packet(t(2), &p);
    }
    (a, b)
}

/// Delivers everything both ways until quiet, passing each packet through `keep`.
fn shuttle(a: &mut Conn, b: &mut Conn, now: Instant, mut keep: impl FnMut(bool, &Packet) -> bool) {
    loop {
        let (pa, pb) = (drain(a, now), drain(b, now));
        if pa.is_empty() && pb.is_empty() {
            return;
        }
        for p in pa.iter().filter(|p| keep(true, &parse(p))) {
            b.handle_packet(now, p);
        }
        for p in pb.iter().filter(|p| keep(false, &parse(p))) {
            a.handle_packet(now, p);
        }
    }
}

fn read_all(c: &mut Conn) -> Vec<u8> {
    let mut out = vec![0; c.readable_len()];
    let n = c.read(&mut out);
    out.truncate(n);
    out
}

#[test]
fn rule_ids_initiator_receives_on_s_sends_on_s_plus_1_acceptor_reverse() {
    let mut a = Conn::connect(t(0), S, X);
    let syn = drain(&mut a, t(0));
    assert_eq!(syn.len(), 1);
    let p = parse(&syn[0]);
    assert_eq!(
        (p.ty, p.conn_id, p.seq_nr, p.ack_nr),
        (PacketType::Syn, S, X, 0)
    );
    assert_eq!(p.timestamp_diff, 0);
    assert_eq!((a.recv_id(), a.send_id()), (S, S.wrapping_add(1)));
    let mut b = Conn::accept(t(1), &p, Y);
    assert_eq!((b.recv_id(), b.send_id()), (S.wrapping_add(1), S));
    let st = drain(&mut b, t(1));
    let q = parse(&st[0]);
    assert_eq!(
        (q.ty, q.conn_id, q.seq_nr, q.ack_nr),
        (PacketType::State, S, Y, X)
    );
    assert_eq!(b.state(), State::SynRecv);
    a.handle_packet(t(2), &st[0]);
    assert_eq!(a.state(), State::Connected);
}

#[test]
fn rule_initiator_acks_y_minus_1_until_data_and_sends_first_data_at_x_plus_1() {
    let (mut a, mut b) = pair();
    a.write(b"hello");
    let d = drain(&mut a, t(3));
    let p = parse(&d[0]);
    assert_eq!(
        (p.ty, p.seq_nr, p.ack_nr),
        (PacketType::Data, X.wrapping_add(1), Y.wrapping_sub(1))
    );
    b.handle_packet(t(4), &d[0]);
    assert_eq!(b.state(), State::Connected);
    assert_eq!(read_all(&mut b), b"hello");
}

#[test]
fn rule_acceptor_first_data_carries_the_syn_ack_seq_y() {
    let (mut a, mut b) = pair();
    b.write(b"first");
    assert!(drain(&mut b, t(3)).is_empty(), "no data in SYN_RECV");
    // The initiator's confirmation connects the acceptor.
    for p in drain(&mut a, t(3)) {
        b.handle_packet(t(3), &p);
    }
    let d = drain(&mut b, t(3));
    let p = parse(&d[0]);
    assert_eq!((p.ty, p.seq_nr, p.ack_nr), (PacketType::Data, Y, X));
    a.handle_packet(t(4), &d[0]);
    assert_eq!(read_all(&mut a), b"first");
    // Now the initiator acks Y itself.
    let ack = drain(&mut a, t(4));
    assert_eq!(parse(&ack[0]).ack_nr, Y);
}

#[test]
fn rule_packet_with_seq_outside_window_is_dropped_including_its_ack() {
    let (mut a, mut b) = pair();
    a.write(b"x");
    let d = drain(&mut a, t(3));
    b.handle_packet(t(4), &d[0]);
    let mut ack = drain(&mut b, t(4))[0].to_vec();
    // Same ack, seq pushed 1024 past the receiver's ack_nr + 1: a must ignore it all.
    let bad_seq = Y.wrapping_add(1024);
    ack[16..18].copy_from_slice(&bad_seq.to_be_bytes());
    a.handle_packet(t(5), &ack);
    assert!(
        !a.is_flushed(),
        "ack inside an out-of-window packet was used"
    );
    let good_seq = Y.wrapping_add(1023);
    ack[16..18].copy_from_slice(&good_seq.to_be_bytes());
    a.handle_packet(t(5), &ack);
    assert!(a.is_flushed());
}

#[test]
fn rule_ack_for_unsent_data_drops_the_packet() {
    let (mut a, mut b) = pair();
    for p in drain(&mut a, t(2)) {
        b.handle_packet(t(2), &p);
    }
    b.write(b"data");
    let d = drain(&mut b, t(3));
    let mut forged = d[0].to_vec();
    let ahead = X.wrapping_add(5); // a sent only the SYN (X)
    forged[18..20].copy_from_slice(&ahead.to_be_bytes());
    a.handle_packet(t(4), &forged);
    assert_eq!(
        a.readable_len(),
        0,
        "packet acking unsent data was not dropped"
    );
    a.handle_packet(t(4), &d[0]);
    assert_eq!(read_all(&mut a), b"data");
}

#[test]
fn rule_every_sent_seq_stays_within_the_receivers_reorder_window() {
    let (mut a, mut b) = pair();
    a.cc.cwnd = 1 << 20;
    let mut sent = Vec::new();
    for _ in 0..1100 {
        a.write(b"z");
        sent.extend(drain(&mut a, t(3)));
    }
    assert_eq!(a.flight.len(), MAX_FLIGHT);
    a.ack_needed = true;
    sent.extend(drain(&mut a, t(3)));
    // b's ack_nr is still X: every seq, ST_STATE's included, must be in [X+1, X+1024].
    for p in &sent {
        let s = parse(p).seq_nr;
        assert!(
            seq::in_window(s, X.wrapping_add(1), REORDER_MAX),
            "seq {s:#x}"
        );
    }
    for p in &sent {
        b.handle_packet(t(4), p);
    }
    assert_eq!(b.readable_len(), MAX_FLIGHT);
}

#[test]
fn packets_fit_a_1400_byte_udp_payload() {
    let (mut a, mut b) = pair();
    a.cc.cwnd = 1 << 20;
    assert_eq!(a.write(&vec![7u8; 100_000]), 100_000);
    let d = drain(&mut a, t(3));
    assert!(d.iter().all(|p| p.len() <= MAX_PACKET));
    assert_eq!(d[0].len(), MAX_PACKET);
    for p in &d {
        b.handle_packet(t(4), p);
    }
    assert_eq!(b.readable_len(), 100_000);
}

#[test]
fn sack_is_sent_for_gaps_and_three_later_packets_trigger_fast_retransmit() {
    let (mut a, mut b) = pair();
    a.cc.cwnd = 1 << 20;
    a.write(&vec![1u8; MAX_PAYLOAD * 6]);
    let d = drain(&mut a, t(3));
    assert_eq!(d.len(), 6);
    let lost = parse(&d[1]).seq_nr;
    let mut states = Vec::new();
    for (i, p) in d.iter().enumerate() {
        if i != 1 {
            b.handle_packet(t(4), p);
            states.extend(drain(&mut b, t(4)));
        }
    }
    let last = parse(states.last().unwrap());
    assert_eq!(last.ack_nr, parse(&d[0]).seq_nr);
    assert_eq!(
        last.sack,
        Some(&[0b1111, 0, 0, 0][..]),
        "bit i = ack+2+i received"
    );
    let cwnd = a.cwnd();
    for s in &states {
        a.handle_packet(t(5), s);
    }
    let resent = drain(&mut a, t(5));
    assert_eq!(parse(&resent[0]).seq_nr, lost);
    assert!(a.cwnd() < cwnd, "window halved on loss");
    b.handle_packet(t(6), &resent[0]);
    assert_eq!(b.readable_len(), MAX_PAYLOAD * 6);
}

#[test]
fn duplicate_acks_alone_never_resend() {
    let (mut a, mut b) = pair();
    a.write(b"one");
    let d = drain(&mut a, t(3));
    b.handle_packet(t(4), &d[0]);
    let ack = drain(&mut b, t(4));
    a.write(b"two");
    let _two = drain(&mut a, t(5)); // lost
    for _ in 0..5 {
        a.handle_packet(t(6), &ack[0]);
    }
    assert!(drain(&mut a, t(6)).is_empty());
}

#[test]
fn rto_resends_doubles_and_gives_up_at_the_fifth_timeout() {
    let (mut a, _b) = pair();
    assert_eq!(
        a.rto(),
        Duration::from_secs(1),
        "RTT sample from the SYN, 1 s floor"
    );
    a.write(b"lost forever");
    assert_eq!(drain(&mut a, t(10)).len(), 1);
    let mut now = t(10);
    for i in 1..5 {
        now = a.poll_timeout().unwrap();
        a.handle_timeout(now);
        let again = drain(&mut a, now);
        assert_eq!(again.len(), 1, "timeout {i} resends");
        assert_eq!(a.rto(), Duration::from_secs(1 << i));
    }
    assert_eq!(now, t(10) + Duration::from_secs(1 + 2 + 4 + 8));
    now = a.poll_timeout().unwrap();
    a.handle_timeout(now);
    assert_eq!(a.state(), State::Closed(CloseReason::TimedOut));
    assert_eq!(now, t(10) + Duration::from_secs(31));
}

#[test]
fn syn_is_resent_at_3_and_9_seconds_and_times_out_at_21() {
    let mut a = Conn::connect(t(0), S, X);
    drain(&mut a, t(0));
    let mut at = Vec::new();
    while let Some(d) = a.poll_timeout() {
        a.handle_timeout(d);
        if !drain(&mut a, d).is_empty() {
            at.push(d);
        }
        if a.is_closed() {
            at.push(d);
            break;
        }
    }
    assert_eq!(at, vec![t(3000), t(9000), t(21000)]);
    assert_eq!(a.state(), State::Closed(CloseReason::TimedOut));
}

#[test]
fn rst_in_syn_sent_is_refused_established_is_reset_closing_is_normal() {
    let rst = |id: u16| {
        let mut out = BytesMut::new();
        Packet {
            ty: PacketType::Reset,
            conn_id: id,
            timestamp: 0,
            timestamp_diff: 0,
            wnd_size: 0,
            seq_nr: 1,
            ack_nr: 0,
            sack: None,
            payload: &[],
        }
        .emit(&mut out);
        out
    };
    let mut a = Conn::connect(t(0), S, X);
    a.handle_packet(t(1), &rst(S));
    assert_eq!(a.state(), State::Closed(CloseReason::Refused));
    let (mut a, _) = pair();
    a.handle_packet(t(3), &rst(S));
    assert_eq!(a.state(), State::Closed(CloseReason::Reset));
    let (mut a, _) = pair();
    a.close();
    drain(&mut a, t(3));
    a.handle_packet(t(3), &rst(S));
    assert_eq!(a.state(), State::Closed(CloseReason::Normal));
}

#[test]
fn fin_half_close_then_both_directions_done() {
    let (mut a, mut b) = pair();
    a.write(b"request");
    a.close();
    shuttle(&mut a, &mut b, t(3), |_, _| true);
    assert_eq!(a.state(), State::FinSent);
    assert_eq!(read_all(&mut b), b"request");
    assert!(b.is_eof());
    assert_eq!(a.write(b"more"), 0, "no writes after close");
    // b still writes after a's FIN.
    b.write(b"response");
    shuttle(&mut a, &mut b, t(4), |_, _| true);
    assert_eq!(read_all(&mut a), b"response");
    b.close();
    shuttle(&mut a, &mut b, t(5), |_, _| true);
    assert!(a.is_eof());
    assert_eq!(a.state(), State::Closed(CloseReason::Normal));
    assert_eq!(b.state(), State::Closed(CloseReason::Normal));
}

#[test]
fn fin_before_missing_data_waits_for_it() {
    let (mut a, mut b) = pair();
    a.write(b"ab");
    let d = drain(&mut a, t(3));
    a.close();
    let fin = drain(&mut a, t(3));
    b.handle_packet(t(4), &fin[0]);
    assert!(!b.is_eof());
    b.handle_packet(t(4), &d[0]);
    assert_eq!(read_all(&mut b), b"ab");
    assert!(b.is_eof());
}

#[test]
fn keepalive_after_29_s_repeats_the_previous_ack() {
    let (mut a, _b) = pair();
    drain(&mut a, t(3));
    let due = a.poll_timeout().unwrap();
    assert_eq!(
        due,
        t(3) + KEEPALIVE,
        "a last sent its confirming ST_STATE at t(3)"
    );
    a.handle_timeout(due);
    let k = drain(&mut a, due);
    let p = parse(&k[0]);
    assert_eq!((p.ty, p.ack_nr), (PacketType::State, Y.wrapping_sub(2)));
}

#[test]
fn replies_carry_a_real_timestamp_difference() {
    let (mut a, mut b) = pair();
    a.write(b"x");
    let d = drain(&mut a, t(3));
    b.handle_packet(t(53), &d[0]);
    let ack = drain(&mut b, t(53));
    assert_eq!(parse(&ack[0]).timestamp_diff, 50_000);
}

#[test]
fn receive_window_is_free_buffer_space_and_applies_backpressure() {
    let (mut a, mut b) = pair();
    a.cc.cwnd = 1 << 20;
    let data: Vec<u8> = (0..3 * RECV_BUF).map(|i| (i % 251) as u8).collect();
    let mut written = 0;
    let mut got = Vec::new();
    let mut now = t(3);
    for round in 0..200 {
        written += a.write(&data[written..]);
        shuttle(&mut a, &mut b, now, |_, _| true);
        assert!(b.readable_len() <= RECV_BUF);
        assert_eq!(b.recv_window(), RECV_BUF - b.readable_len());
        if round % 3 == 2 {
            got.extend(read_all(&mut b)); // the reader is slow
        }
        now = now + Duration::from_millis(10);
        if let Some(d) = a.poll_timeout().filter(|d| *d <= now) {
            a.handle_timeout(d);
        }
        if got.len() == data.len() {
            break;
        }
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[test]
fn zero_window_is_probed_after_15_s() {
    let (mut a, mut b) = pair();
    a.write(b"x");
    let d = drain(&mut a, t(3));
    b.handle_packet(t(4), &d[0]);
    let mut ack = drain(&mut b, t(4))[0].to_vec();
    ack[12..16].copy_from_slice(&0u32.to_be_bytes());
    a.handle_packet(t(5), &ack);
    a.write(b"y");
    assert!(drain(&mut a, t(5)).is_empty(), "nothing into a zero window");
    let due = a.poll_timeout().unwrap();
    assert_eq!(due, t(5) + ZERO_WINDOW_PROBE);
    a.handle_timeout(due);
    assert_eq!(parse(&drain(&mut a, due)[0]).payload, b"y");
}

#[test]
fn duplicate_syn_is_answered_again_and_acceptor_times_out_when_abandoned() {
    let mut a = Conn::connect(t(0), S, X);
    let syn = drain(&mut a, t(0));
    let mut b = Conn::accept(t(0), &parse(&syn[0]), Y);
    assert_eq!(drain(&mut b, t(0)).len(), 1);
    b.handle_packet(t(100), &syn[0]);
    assert_eq!(drain(&mut b, t(100)).len(), 1);
    let due = b.poll_timeout().unwrap();
    b.handle_timeout(due);
    assert_eq!(b.state(), State::Closed(CloseReason::TimedOut));
}

#[test]
fn close_before_connected_sends_nothing() {
    let mut a = Conn::connect(t(0), S, X);
    a.close();
    assert!(drain(&mut a, t(0)).is_empty());
    assert!(a.is_closed());
}

#[test]
fn sack_masks_of_any_length_are_honoured_without_overreach() {
    let (mut a, mut b) = pair();
    a.cc.cwnd = 1 << 20;
    a.write(&vec![3u8; MAX_PAYLOAD * 8]);
    let d = drain(&mut a, t(3));
    assert_eq!(d.len(), 8);
    // b got everything but the first; a 255-byte mask claims far more than was sent.
    for p in &d[1..] {
        b.handle_packet(t(4), p);
    }
    let mut st = drain(&mut b, t(4)).pop().unwrap().to_vec();
    st.truncate(20);
    st[1] = 1;
    st.extend_from_slice(&[0, 255]);
    st.extend_from_slice(&[0xff; 255]);
    a.handle_packet(t(5), &st);
    assert_eq!(a.flight.iter().filter(|p| p.sacked).count(), 7);
    let resent = drain(&mut a, t(5));
    assert_eq!(parse(&resent[0]).seq_nr, parse(&d[0]).seq_nr);
    b.handle_packet(t(6), &resent[0]);
    shuttle(&mut a, &mut b, t(6), |_, _| true);
    assert!(a.is_flushed());
    assert_eq!(b.readable_len(), MAX_PAYLOAD * 8);
}

#[test]
fn old_duplicate_data_is_acked_again_but_not_delivered_twice() {
    let (mut a, mut b) = pair();
    a.write(b"once");
    let d = drain(&mut a, t(3));
    b.handle_packet(t(4), &d[0]);
    drain(&mut b, t(4)); // this ack is lost
    b.handle_packet(t(5), &d[0]);
    let ack = drain(&mut b, t(5));
    assert_eq!(parse(&ack[0]).ack_nr, parse(&d[0]).seq_nr);
    assert_eq!(read_all(&mut b), b"once");
}

#[test]
fn rule_initiator_confirms_with_state_at_x_plus_1_ack_y_minus_1_and_acceptor_connects() {
    let (mut a, mut b) = pair();
    let c = drain(&mut a, t(3));
    assert_eq!(c.len(), 1);
    let p = parse(&c[0]);
    assert_eq!(
        (p.ty, p.seq_nr, p.ack_nr),
        (PacketType::State, X.wrapping_add(1), Y.wrapping_sub(1))
    );
    b.handle_packet(t(4), &c[0]);
    assert_eq!(b.state(), State::Connected);
    assert!(drain(&mut b, t(4)).is_empty(), "an ack is not acked");
}

/// Fills `b`'s receive buffer from `a` without `b` reading; returns the time reached.
fn fill_receiver(a: &mut Conn, b: &mut Conn) -> Instant {
    let data = vec![7u8; RECV_BUF + 256 * 1024];
    let mut sent = 0;
    let mut now = t(10);
    for _ in 0..20_000 {
        sent += a.write(&data[sent..]);
        shuttle(a, b, now, |_, _| true);
        now = now + Duration::from_millis(5);
        if b.recv_window() == 0 {
            break;
        }
    }
    assert_eq!(b.recv_window(), 0, "receiver full");
    a.write(&data[sent..]);
    assert!(!a.pending.is_empty(), "the sender has more to send");
    now
}

#[test]
fn zero_window_from_a_live_peer_never_times_the_connection_out() {
    let (mut a, mut b) = pair();
    let mut now = fill_receiver(&mut a, &mut b);
    // Ten minutes of a reader that does not read: probes, retransmissions, keep-alives.
    let end = now + Duration::from_secs(600);
    while now < end {
        shuttle(&mut a, &mut b, now, |_, _| true);
        now = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end)
            .max(now + Duration::from_millis(1));
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert!(
        a.is_connected() && b.is_connected(),
        "{:?} {:?}",
        a.state(),
        b.state()
    );
    // Bounded: the buffer and at most the probe slack.
    assert!(b.readable_len() <= RECV_BUF + PROBE_SLACK);
    // Reading resumes the flow.
    let got = read_all(&mut b).len();
    assert!(got >= RECV_BUF);
    shuttle(&mut a, &mut b, now, |_, _| true);
    assert!(
        b.readable_len() > 0,
        "sender resumed after the window reopened"
    );
}

#[test]
fn a_zero_window_probe_into_a_full_buffer_is_acked_within_the_slack() {
    let (mut a, mut b) = pair();
    let now = fill_receiver(&mut a, &mut b);
    let before = b.readable_len();
    let due = a.poll_timeout().unwrap();
    a.handle_timeout(due.max(now));
    shuttle(&mut a, &mut b, due.max(now), |_, _| true);
    assert!(b.readable_len() > before, "probe taken");
    assert!(b.readable_len() <= RECV_BUF + PROBE_SLACK);
}
