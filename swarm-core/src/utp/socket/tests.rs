//! Socket tests on a simulated clock and an in-memory lossy link: no sockets, no sleeps.

use super::*;
use crate::utp::conn::CloseReason;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

fn t(ms: u64) -> Instant {
    Instant::from_micros(1_000_000 + ms * 1000)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn packet(ty: PacketType, conn_id: u16, seq_nr: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    Packet {
        ty,
        conn_id,
        timestamp: 1,
        timestamp_diff: 0,
        wnd_size: 1 << 20,
        seq_nr,
        ack_nr: 0,
        sack: None,
        payload: &[],
    }
    .emit(&mut out);
    out.to_vec()
}

fn drain(s: &mut UtpSocket, now: Instant) -> Vec<(SocketAddr, Bytes)> {
    std::iter::from_fn(|| s.poll_transmit(now)).collect()
}

fn events(s: &mut UtpSocket) -> Vec<UtpEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Link faults, seeded.
#[derive(Clone, Copy)]
struct Faults {
    loss: f64,
    dup: f64,
    /// Uniform extra delay on top of the base; packets overtake each other.
    jitter_ms: u64,
    /// Bottleneck a -> b in bytes per second (a FIFO queue in front of the link), if any.
    rate: Option<u64>,
}

const CLEAN: Faults = Faults {
    loss: 0.0,
    dup: 0.0,
    jitter_ms: 0,
    rate: None,
};

/// (arrival, tiebreak, to_b, from, datagram)
type InFlight = (Instant, u64, bool, SocketAddr, Bytes);

/// Two sockets over an in-memory link with 20 ms base one-way delay.
struct Net {
    a: UtpSocket,
    b: UtpSocket,
    now: Instant,
    faults: Faults,
    rng: Xoshiro256PlusPlus,
    queue: BinaryHeap<Reverse<InFlight>>,
    n: u64,
    datagrams: u64,
    /// When the bottleneck finishes sending what is queued.
    link_free: Instant,
    /// Queueing delays (µs) seen at the bottleneck, in order.
    queue_delays: Vec<u64>,
}

const A: u16 = 1000;
const B: u16 = 2000;

impl Net {
    fn new(seed: u64, faults: Faults) -> Self {
        let mut ca = UtpConfig::new(seed);
        ca.listening = false;
        Net {
            a: UtpSocket::new(ca),
            b: UtpSocket::new(UtpConfig::new(seed ^ 0x5555)),
            now: t(0),
            faults,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(31)),
            queue: BinaryHeap::new(),
            n: 0,
            datagrams: 0,
            link_free: t(0),
            queue_delays: Vec::new(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 + f64::EPSILON < p
    }

    fn send_all(&mut self) {
        for to_b in [true, false] {
            let (sock, from) = if to_b {
                (&mut self.a, addr(A))
            } else {
                (&mut self.b, addr(B))
            };
            let out = drain(sock, self.now);
            for (dst, d) in out {
                assert!(d.len() <= crate::utp::conn::MAX_PACKET);
                assert_eq!(dst, if to_b { addr(B) } else { addr(A) });
                self.datagrams += 1;
                if self.chance(self.faults.loss) {
                    continue;
                }
                let mut depart = self.now;
                if let (Some(rate), true) = (self.faults.rate, to_b) {
                    depart = self.now.max(self.link_free)
                        + Duration::from_micros(d.len() as u64 * 1_000_000 / rate);
                    self.link_free = depart;
                    self.queue_delays
                        .push((depart - self.now).as_micros() as u64);
                }
                let copies = if self.chance(self.faults.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let jitter = if self.faults.jitter_ms > 0 {
                        self.rng.next_u64() % (self.faults.jitter_ms * 1000)
                    } else {
                        0
                    };
                    let at = depart + Duration::from_micros(20_000 + jitter);
                    self.n += 1;
                    self.queue
                        .push(Reverse((at, self.n, to_b, from, d.clone())));
                }
            }
        }
    }

    /// Sends what is pending, then advances to the next arrival or timer and applies it.
    /// Returns false when nothing at all is scheduled.
    fn step(&mut self) -> bool {
        self.send_all();
        let next = [
            self.queue.peek().map(|Reverse(x)| x.0),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(Reverse(x)) = self.queue.peek() {
            if x.0 > self.now {
                break;
            }
            let Reverse((_, _, to_b, from, d)) = self.queue.pop().unwrap();
            let s = if to_b { &mut self.b } else { &mut self.a };
            s.handle_datagram(self.now, from, &d);
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        true
    }

    /// Connects a -> b and returns (a's handle, b's handle).
    fn connect(&mut self) -> (ConnHandle, ConnHandle) {
        let ha = self.a.connect(self.now, addr(B));
        for _ in 0..100 {
            self.step();
            if self.a.conn(ha).unwrap().is_connected() {
                break;
            }
        }
        let hb = events(&mut self.b)
            .into_iter()
            .find_map(|e| match e {
                UtpEvent::Incoming { conn, .. } => Some(conn),
                _ => None,
            })
            .expect("incoming");
        assert!(events(&mut self.a).contains(&UtpEvent::Connected(ha)));
        (ha, hb)
    }
}

/// Moves `data` a -> b (and a smaller stream b -> a), closes both; checks integrity.
/// Returns simulated seconds.
fn transfer(seed: u64, faults: Faults, len: usize) -> f64 {
    let mut net = Net::new(seed, faults);
    let start = net.now;
    let (ha, hb) = net.connect();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4093) as u8).collect();
    let back: Vec<u8> = (0..len / 16).map(|i| (i * 13) as u8).collect();
    let (mut sent, mut sent_back) = (0, 0);
    let (mut got, mut got_back) = (Vec::new(), Vec::new());
    let (mut a_closed, mut b_closed) = (false, false);
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = None;
    for _ in 0..5_000_000 {
        sent += net.a.write(ha, &data[sent..]);
        sent_back += net.b.write(hb, &back[sent_back..]);
        if sent == data.len() && !a_closed {
            net.a.close(ha);
            a_closed = true;
        }
        loop {
            let n = net.b.read(hb, &mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        loop {
            let n = net.a.read(ha, &mut buf);
            if n == 0 {
                break;
            }
            got_back.extend_from_slice(&buf[..n]);
        }
        let b_eof = net.b.conn(hb).map_or(true, |c| c.is_eof());
        if b_eof && sent_back == back.len() && !b_closed {
            net.b.close(hb);
            b_closed = true;
        }
        if let Some(c) = net.a.conn(ha) {
            last = Some((c.stats(), c.cwnd()));
        }
        let done = |s: &UtpSocket, h| s.state(h).map_or(true, |st| matches!(st, State::Closed(_)));
        if done(&net.a, ha) && done(&net.b, hb) {
            break;
        }
        assert!(
            net.now < start + Duration::from_secs(600),
            "stalled (seed {seed})"
        );
        if !net.step() {
            break;
        }
    }
    eprintln!("seed {seed}: sender {last:?}");
    assert_eq!(got.len(), data.len(), "seed {seed}");
    assert!(got == data, "corrupt a->b stream, seed {seed}");
    assert!(got_back == back, "corrupt b->a stream, seed {seed}");
    let ea = events(&mut net.a);
    let eb = events(&mut net.b);
    for (ev, h) in [(ea, ha), (eb, hb)] {
        assert!(
            ev.contains(&UtpEvent::Closed {
                conn: h,
                reason: CloseReason::Normal
            }),
            "seed {seed}: {ev:?}"
        );
    }
    (net.now - start).as_secs_f64()
}

#[test]
fn transfer_clean_link() {
    let wall = std::time::Instant::now();
    let sim = transfer(1, CLEAN, 16 << 20);
    let wall = wall.elapsed().as_secs_f64();
    eprintln!(
        "clean: 16 MiB in {sim:.1} s simulated ({:.1} MiB/s simulated), {:.1} MiB/s of simulated transfer per wall second",
        16.0 / sim,
        16.0 / wall
    );
}

#[test]
fn transfer_4_mib_with_loss_reordering_duplication_across_seeds() {
    let faults = Faults {
        loss: 0.05,
        dup: 0.02,
        jitter_ms: 15,
        rate: None,
    };
    // UTP_SEEDS=N widens the sweep (default 4).
    let seeds = std::env::var("UTP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for seed in 0..seeds {
        let wall = std::time::Instant::now();
        let sim = transfer(seed, faults, 4 << 20);
        let wall = wall.elapsed().as_secs_f64();
        eprintln!(
            "seed {seed}: 4 MiB in {sim:.1} s simulated, {wall:.2} s wall, {:.1} MiB/s of simulated transfer per wall second",
            4.0 / wall
        );
    }
}

#[test]
fn ledbat_fills_a_bottleneck_and_holds_queueing_delay_near_the_100_ms_target() {
    let rate = 1 << 20; // 1 MiB/s
    let mut net = Net::new(
        11,
        Faults {
            rate: Some(rate),
            ..CLEAN
        },
    );
    let (ha, hb) = net.connect();
    let start = net.now;
    let data = vec![0x33u8; 8 << 20];
    let mut sent = 0;
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < data.len() {
        sent += net.a.write(ha, &data[sent..]);
        while let n @ 1.. = net.b.read(hb, &mut buf) {
            got += n;
        }
        assert!(net.step());
        assert!(net.now < start + Duration::from_secs(60), "stalled");
    }
    let secs = (net.now - start).as_secs_f64();
    let tail = &net.queue_delays[net.queue_delays.len() / 2..];
    let avg_ms = tail.iter().sum::<u64>() as f64 / tail.len() as f64 / 1000.0;
    let max_ms = *tail.iter().max().unwrap() as f64 / 1000.0;
    let share = data.len() as f64 / secs / rate as f64;
    eprintln!(
        "bottleneck 1 MiB/s: {:.0}% utilisation, queueing delay avg {avg_ms:.0} ms, max {max_ms:.0} ms (second half)",
        share * 100.0
    );
    assert!(share > 0.8, "LEDBAT left the link idle: {share}");
    assert!(
        (20.0..=150.0).contains(&avg_ms),
        "queueing delay {avg_ms} ms"
    );
}

#[test]
fn connect_ids_are_never_adjacent_to_ids_in_use_with_that_address() {
    let mut s = UtpSocket::new(UtpConfig::new(9));
    let hs: Vec<_> = (0..2000).map(|_| s.connect(t(0), addr(B))).collect();
    let mut used = std::collections::HashSet::new();
    for h in &hs {
        let id = s.conn(*h).unwrap().recv_id();
        // {S, S+1, S+2} pairwise disjoint <=> no two ids within 2 of each other.
        for d in 0..3u16 {
            assert!(
                used.insert(id.wrapping_add(d)),
                "id {id:#x} adjacent to another"
            );
        }
    }
    // Another address may reuse them.
    let other = s.connect(t(0), addr(B + 1));
    assert!(s.conn(other).is_some());
}

#[test]
fn node_style_first_syn_is_accepted_and_answered_with_state_on_the_same_id() {
    let mut s = UtpSocket::new(UtpConfig::new(3));
    s.handle_datagram(t(0), addr(A), &packet(PacketType::Syn, 0x4567, 0x23c6));
    let out = drain(&mut s, t(0));
    let p = Packet::parse(&out[0].1).unwrap();
    assert_eq!(
        (p.ty, p.conn_id, p.ack_nr),
        (PacketType::State, 0x4567, 0x23c6)
    );
    assert!(matches!(events(&mut s)[..], [UtpEvent::Incoming { .. }]));
    assert_eq!(s.half_open(), 1);
}

#[test]
fn rst_for_unknown_connection_at_most_once_per_id_addr_seq_per_10_s() {
    let mut s = UtpSocket::new(UtpConfig::new(3));
    let data = packet(PacketType::Data, 77, 5);
    s.handle_datagram(t(0), addr(A), &data);
    s.handle_datagram(t(1), addr(A), &data);
    let out = drain(&mut s, t(1));
    assert_eq!(out.len(), 1);
    let p = Packet::parse(&out[0].1).unwrap();
    assert_eq!(
        (p.ty, p.conn_id, p.ack_nr, p.wnd_size),
        (PacketType::Reset, 77, 5, 0)
    );
    assert_eq!((p.timestamp, p.timestamp_diff), (0, 0));
    // A different seq or address is a different key; after 10 s the same key again.
    s.handle_datagram(t(2), addr(A), &packet(PacketType::Data, 77, 6));
    s.handle_datagram(t(2), addr(B), &data);
    assert_eq!(drain(&mut s, t(2)).len(), 2);
    s.handle_datagram(t(10_001), addr(A), &data);
    assert_eq!(drain(&mut s, t(10_001)).len(), 1);
    // A RST is never answered; the memory stays bounded.
    s.handle_datagram(t(10_002), addr(A), &packet(PacketType::Reset, 1, 1));
    assert!(drain(&mut s, t(10_002)).is_empty());
    for i in 0..5000u16 {
        s.handle_datagram(t(10_003), addr(A), &packet(PacketType::State, i, i));
    }
    assert!(s.rst_seen.len() <= RST_MEMORY);
    assert!(s.rst_order.len() <= 2 * RST_MEMORY);
}

#[test]
fn rst_matches_our_send_id_from_the_same_address_only() {
    let mut net = Net::new(5, CLEAN);
    let (ha, _) = net.connect();
    let send = net.a.conn(ha).unwrap().send_id();
    net.a
        .handle_datagram(net.now, addr(B + 1), &packet(PacketType::Reset, send, 1));
    assert!(
        net.a.conn(ha).unwrap().is_connected(),
        "RST from another address"
    );
    net.a.handle_datagram(
        net.now,
        addr(B),
        &packet(PacketType::Reset, send.wrapping_add(1), 1),
    );
    assert!(
        net.a.conn(ha).unwrap().is_connected(),
        "RST for a neighbouring id"
    );
    net.a
        .handle_datagram(net.now, addr(B), &packet(PacketType::Reset, send, 1));
    assert_eq!(net.a.state(ha), Some(State::Closed(CloseReason::Reset)));
    assert!(events(&mut net.a).contains(&UtpEvent::Closed {
        conn: ha,
        reason: CloseReason::Reset
    }));
}

#[test]
fn rst_to_a_syn_is_connection_refused() {
    let mut net = Net::new(6, CLEAN);
    net.b.set_listening(false);
    let ha = net.a.connect(net.now, addr(B));
    net.step();
    net.step();
    assert!(
        net.a.conn(ha).unwrap().state() == State::SynSent,
        "unlistened SYN is dropped"
    );
    let id = net.a.conn(ha).unwrap().recv_id();
    net.a
        .handle_datagram(net.now, addr(B), &packet(PacketType::Reset, id, 1));
    assert_eq!(net.a.state(ha), Some(State::Closed(CloseReason::Refused)));
}

#[test]
fn syn_flood_is_bounded_and_half_open_connections_expire() {
    let mut s = UtpSocket::new(UtpConfig::new(3));
    for i in 0..20_000u32 {
        let from = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 4000 + (i % 7) as u16));
        s.handle_datagram(t(0), from, &packet(PacketType::Syn, i as u16, 1));
    }
    assert_eq!(s.len(), 64);
    assert_eq!(s.half_open(), 64);
    drain(&mut s, t(0));
    // A half-open connection is a small state: its struct plus at most one small buffer.
    let size = core::mem::size_of::<Conn>();
    let heap: usize = s.conns.values().map(|e| e.conn.heap_bytes()).max().unwrap();
    eprintln!("half-open connection: {size} bytes + {heap} heap bytes");
    assert!(size < 1024 && heap <= 64, "{size} + {heap}");
    let due = s.poll_timeout().unwrap();
    s.handle_timeout(due);
    drain(&mut s, due);
    assert_eq!((s.len(), s.half_open()), (0, 0));
}

#[test]
fn half_close_through_the_socket() {
    let mut net = Net::new(8, CLEAN);
    let (ha, hb) = net.connect();
    net.a.write(ha, b"question");
    net.a.close(ha);
    for _ in 0..20 {
        net.step();
    }
    let mut buf = [0u8; 64];
    assert_eq!(net.b.read(hb, &mut buf), 8);
    assert!(net.b.conn(hb).unwrap().is_eof());
    net.b.write(hb, b"answer");
    net.b.close(hb);
    for _ in 0..20 {
        net.step();
    }
    assert_eq!(net.a.read(ha, &mut buf), 6);
    assert_eq!(&buf[..6], b"answer");
    assert!(events(&mut net.b).contains(&UtpEvent::Closed {
        conn: hb,
        reason: CloseReason::Normal
    }));
}

#[test]
fn claims_follows_pr_1_11() {
    let mut net = Net::new(4, CLEAN);
    let (ha, _) = net.connect();
    let recv = net.a.conn(ha).unwrap().recv_id();
    assert!(net.a.claims(addr(B), &packet(PacketType::State, recv, 1)));
    assert!(net.a.claims(addr(B), &packet(PacketType::Syn, 9, 1)));
    assert!(!net
        .a
        .claims(addr(B), &packet(PacketType::State, recv.wrapping_add(7), 1)));
    assert!(!net
        .a
        .claims(addr(B + 1), &packet(PacketType::State, recv, 1)));
    assert!(!net.a.claims(
        addr(B),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    ));
}

#[test]
fn rst_carrying_our_recv_id_also_resets_when_no_send_id_matches() {
    let mut net = Net::new(12, CLEAN);
    let (ha, _) = net.connect();
    let recv = net.a.conn(ha).unwrap().recv_id();
    net.a
        .handle_datagram(net.now, addr(B), &packet(PacketType::Reset, recv, 1));
    assert_eq!(net.a.state(ha), Some(State::Closed(CloseReason::Reset)));
    // Unrouted now: the peer's next packet for it gets a RST.
    net.a
        .handle_datagram(net.now, addr(B), &packet(PacketType::State, recv, 1));
    let out = drain(&mut net.a, net.now);
    assert!(out
        .iter()
        .any(|(_, d)| Packet::parse(d).unwrap().ty == PacketType::Reset));
}

#[test]
fn lost_ack_of_the_last_fin_is_repeated_while_lingering_not_answered_with_rst() {
    let mut net = Net::new(13, CLEAN);
    let (ha, hb) = net.connect();
    net.a.close(ha);
    for _ in 0..10 {
        net.step();
    }
    assert!(net.b.conn(hb).unwrap().is_eof());
    net.b.close(hb);
    let now = net.now;
    let fin = drain(&mut net.b, now);
    assert_eq!(Packet::parse(&fin[0].1).unwrap().ty, PacketType::Fin);
    net.a.handle_datagram(now, addr(B), &fin[0].1);
    assert_eq!(net.a.state(ha), Some(State::Closed(CloseReason::Normal)));
    let lost = drain(&mut net.a, now);
    assert_eq!(Packet::parse(&lost[0].1).unwrap().ty, PacketType::State);
    // b's RTO resends the FIN; a, closed but lingering, acks it again.
    let due = net.b.poll_timeout().unwrap();
    net.b.handle_timeout(due);
    let again = drain(&mut net.b, due);
    net.a.handle_datagram(due, addr(B), &again[0].1);
    let reply = drain(&mut net.a, due);
    assert_eq!(Packet::parse(&reply[0].1).unwrap().ty, PacketType::State);
    net.b.handle_datagram(due, addr(A), &reply[0].1);
    assert_eq!(net.b.state(hb), Some(State::Closed(CloseReason::Normal)));
    // The linger ends; then a's entry is gone and a FIN would meet a RST.
    let end = net.a.poll_timeout().unwrap();
    assert!(end <= due + LINGER);
    net.a.handle_timeout(end);
    assert!(net.a.is_empty());
    net.a.handle_datagram(end, addr(B), &again[0].1);
    let rst = drain(&mut net.a, end);
    assert_eq!(Packet::parse(&rst[0].1).unwrap().ty, PacketType::Reset);
}

#[test]
fn eight_connections_share_one_port_under_loss_each_stream_intact() {
    let mut net = Net::new(
        21,
        Faults {
            loss: 0.05,
            dup: 0.02,
            jitter_ms: 10,
            rate: None,
        },
    );
    let len = 256 * 1024;
    let ours: Vec<ConnHandle> = (0..8).map(|_| net.a.connect(net.now, addr(B))).collect();
    let stream = |k: usize| -> Vec<u8> { (0..len).map(|i| (i * (k + 3) + k) as u8).collect() };
    let data: Vec<Vec<u8>> = (0..8).map(stream).collect();
    let mut sent = [0usize; 8];
    // b's handle -> (stream index, bytes received)
    let mut theirs: std::collections::HashMap<ConnHandle, (usize, Vec<u8>)> = Default::default();
    let mut buf = vec![0u8; 1 << 16];
    while theirs.len() < 8 || theirs.values().any(|(_, got)| got.len() < len) {
        for (k, &h) in ours.iter().enumerate() {
            sent[k] += net.a.write(h, &data[k][sent[k]..]);
        }
        while let Some(e) = net.b.poll_event() {
            if let UtpEvent::Incoming { conn, .. } = e {
                // Our recv id is the initiator's send id: pair the two ends.
                let id = net.b.conn(conn).unwrap().send_id();
                let k = ours
                    .iter()
                    .position(|&h| net.a.conn(h).unwrap().recv_id() == id)
                    .unwrap();
                theirs.insert(conn, (k, Vec::new()));
            }
        }
        for (h, (_, got)) in theirs.iter_mut() {
            while let n @ 1.. = net.b.read(*h, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert!(net.step());
        assert!(net.now < t(600_000), "stalled");
    }
    for (k, got) in theirs.values() {
        assert!(*got == data[*k], "stream {k} corrupted");
    }
}

#[test]
fn idle_connection_stays_up_for_ten_minutes_on_keepalives() {
    let mut net = Net::new(22, CLEAN);
    let (ha, hb) = net.connect();
    let start = net.now;
    let before = net.datagrams;
    while net.now < start + Duration::from_secs(600) {
        assert!(net.step(), "no timer left: keep-alives stopped");
    }
    let keepalives = net.datagrams - before;
    // One per side every 29 s, nothing else.
    assert!((40..=44).contains(&keepalives), "{keepalives} datagrams");
    assert!(net.a.conn(ha).unwrap().is_connected());
    assert!(net.b.conn(hb).unwrap().is_connected());
    net.a.write(ha, b"still here");
    for _ in 0..5 {
        net.step();
    }
    let mut buf = [0u8; 16];
    assert_eq!(net.b.read(hb, &mut buf), 10);
}

#[test]
fn a_detached_close_sends_fin_discards_data_and_forgets_the_connection() {
    let mut net = Net::new(21, CLEAN);
    let (ha, hb) = net.connect();
    net.a.write(ha, b"bye");
    let now = net.now;
    net.a.close_detached(now, ha);
    // The peer still sends: discarded on our side, never reported.
    net.b.write(hb, &[9u8; 10_000]);
    for _ in 0..50 {
        net.step();
    }
    let mut buf = [0u8; 16];
    assert_eq!(
        net.b.read(hb, &mut buf),
        3,
        "our queued data went out before the FIN"
    );
    assert!(net.b.conn(hb).unwrap().is_eof());
    assert!(events(&mut net.a)
        .iter()
        .all(|e| !matches!(e, UtpEvent::Readable(_))));
    // The peer never finishes its side: we forget the connection after the detach timeout.
    let end = net.now + DETACH_TIMEOUT + Duration::from_secs(1);
    while net.now < end && net.step() {}
    assert!(net.a.conn(ha).is_none(), "forgotten");
}

#[test]
fn a_detached_close_goes_at_once_when_the_peer_finishes_too() {
    let mut net = Net::new(22, CLEAN);
    let (ha, hb) = net.connect();
    let now = net.now;
    net.a.close_detached(now, ha);
    for _ in 0..20 {
        net.step();
    }
    net.b.close(hb);
    let end = net.now + LINGER + Duration::from_secs(1);
    while net.now < end && net.step() {}
    assert!(
        net.a.conn(ha).is_none(),
        "gone well before the detach timeout"
    );
    let closed = UtpEvent::Closed {
        conn: hb,
        reason: CloseReason::Normal,
    };
    assert!(
        events(&mut net.b).contains(&closed),
        "a clean close at the peer"
    );
}
