//! uTP over a hostile simulated link, deterministic per seed: loss, reordering, duplication
//! and delay spikes (a seed sweep, every stream intact), and LEDBAT against a loss-based
//! AIMD flow sharing a drop-tail bottleneck (uTP must yield).
//!
//! `UTP_LOSSY_SEEDS=N` changes the sweep (default 50).

use bytes::Bytes;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::utp::conn::{CloseReason, State};
use swarm_core::utp::socket::{ConnHandle, UtpConfig, UtpEvent, UtpSocket};
use swarm_core::Instant;

fn a_addr() -> SocketAddr {
    "10.0.0.1:7000".parse().unwrap()
}

fn b_addr() -> SocketAddr {
    "10.0.0.2:7000".parse().unwrap()
}

struct Rng(Xoshiro256PlusPlus);

impl Rng {
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo * 1000 + self.0.next_u64() % ((hi - lo) * 1000).max(1))
    }
}

/// The hostile link: both directions suffer the same faults.
struct Faults {
    loss: f64,
    dup: f64,
    /// Per-datagram extra delay, uniform in [0, jitter): reorders datagrams.
    jitter_ms: u64,
    /// Chance per datagram of starting a spike: every datagram sent in the next
    /// `spike_len` is held an extra `spike_delay`.
    spike_chance: f64,
    spike_len: Duration,
    spike_delay: Duration,
}

const HOSTILE: Faults = Faults {
    loss: 0.05,
    dup: 0.03,
    jitter_ms: 30,
    spike_chance: 0.002,
    spike_len: Duration::from_millis(300),
    spike_delay: Duration::from_millis(700),
};

type Arrival = Reverse<(Instant, u64, bool, Bytes)>;

struct Link {
    a: UtpSocket,
    b: UtpSocket,
    now: Instant,
    rng: Rng,
    faults: Faults,
    queue: BinaryHeap<Arrival>,
    n: u64,
    spike_until: Instant,
    datagrams: u64,
}

impl Link {
    fn new(seed: u64, faults: Faults) -> Self {
        Link {
            a: UtpSocket::new(UtpConfig::new(seed)),
            b: UtpSocket::new(UtpConfig::new(seed ^ 0xb0b)),
            now: Instant::from_micros(1_000_000),
            rng: Rng(Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(0x9e37))),
            faults,
            queue: BinaryHeap::new(),
            n: 0,
            spike_until: Instant::ZERO,
            datagrams: 0,
        }
    }

    fn send_all(&mut self) {
        for to_b in [true, false] {
            loop {
                let sock = if to_b { &mut self.a } else { &mut self.b };
                let Some((_, data)) = sock.poll_transmit(self.now) else {
                    break;
                };
                assert!(data.len() <= 1400);
                self.datagrams += 1;
                if self.rng.chance(self.faults.spike_chance) {
                    self.spike_until = self.now + self.faults.spike_len;
                }
                if self.rng.chance(self.faults.loss) {
                    continue;
                }
                let copies = if self.rng.chance(self.faults.dup) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut delay =
                        Duration::from_millis(20) + self.rng.ms(0, self.faults.jitter_ms);
                    if self.now < self.spike_until {
                        delay += self.faults.spike_delay;
                    }
                    self.n += 1;
                    let at = self.now + delay;
                    self.queue.push(Reverse((at, self.n, to_b, data.clone())));
                }
            }
        }
    }

    /// Sends what is pending, advances to the next arrival or timer, applies it.
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
        while self.queue.peek().is_some_and(|Reverse(x)| x.0 <= self.now) {
            let Some(Reverse((_, _, to_b, data))) = self.queue.pop() else {
                break;
            };
            if to_b {
                self.b.handle_datagram(self.now, a_addr(), &data);
            } else {
                self.a.handle_datagram(self.now, b_addr(), &data);
            }
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        true
    }
}

fn incoming(s: &mut UtpSocket) -> Option<ConnHandle> {
    std::iter::from_fn(|| s.poll_event()).find_map(|e| match e {
        UtpEvent::Incoming { conn, .. } => Some(conn),
        _ => None,
    })
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Both directions at once, both closed by FIN; returns simulated seconds.
fn hostile_transfer(seed: u64, len: usize) -> f64 {
    let mut link = Link::new(seed, HOSTILE);
    let start = link.now;
    let ha = link.a.connect(link.now, b_addr());
    let mut hb = None;
    while hb.is_none() {
        assert!(link.step(), "seed {seed}: idle before the SYN arrived");
        hb = incoming(&mut link.b);
        assert!(
            link.now < start + Duration::from_secs(30),
            "seed {seed}: no SYN"
        );
    }
    let hb = hb.unwrap();
    let (there, back) = (pattern(len, seed), pattern(len / 4, !seed));
    let (mut sent, mut sent_back) = (0, 0);
    let (mut got, mut got_back) = (Vec::new(), Vec::new());
    let (mut a_fin, mut b_fin) = (false, false);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        sent += link.a.write(ha, &there[sent..]);
        sent_back += link.b.write(hb, &back[sent_back..]);
        // Closing before established abandons silently (libutp): only close once connected.
        let a_up = link.a.conn(ha).is_some_and(|c| c.is_connected());
        if sent == there.len() && a_up && !a_fin {
            link.a.close(ha);
            a_fin = true;
        }
        let b_up = link.b.conn(hb).is_some_and(|c| c.is_connected());
        if sent_back == back.len() && b_up && !b_fin {
            link.b.close(hb);
            b_fin = true;
        }
        while let n @ 1.. = link.b.read(hb, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        while let n @ 1.. = link.a.read(ha, &mut buf) {
            got_back.extend_from_slice(&buf[..n]);
        }
        let closed =
            |s: &UtpSocket, h| s.state(h).map_or(true, |st| matches!(st, State::Closed(_)));
        if closed(&link.a, ha) && closed(&link.b, hb) {
            break;
        }
        assert!(
            link.now < start + Duration::from_secs(900),
            "seed {seed}: stalled at {} / {} bytes",
            got.len(),
            there.len()
        );
        if !link.step() {
            break;
        }
    }
    for (side, s, h) in [("a", &link.a, ha), ("b", &link.b, hb)] {
        let state = s.state(h);
        let normal = state.map_or(true, |st| st == State::Closed(CloseReason::Normal));
        assert!(
            normal,
            "seed {seed}: {side} ended {state:?} at {:?}, {} / {} and {} / {} bytes, fins {a_fin} {b_fin}",
            link.now - start,
            got.len(),
            there.len(),
            got_back.len(),
            back.len()
        );
    }
    assert!(
        got == there,
        "seed {seed}: a->b stream corrupt ({} bytes)",
        got.len()
    );
    assert!(got_back == back, "seed {seed}: b->a stream corrupt");
    (link.now - start).as_secs_f64()
}

#[test]
fn transfers_survive_loss_reordering_duplication_and_delay_spikes_across_seeds() {
    let seeds: u64 = std::env::var("UTP_LOSSY_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut worst: f64 = 0.0;
    for seed in 0..seeds {
        worst = worst.max(hostile_transfer(seed, 1 << 20));
    }
    eprintln!("{seeds} seeds: 1 MiB + 256 KiB each, slowest {worst:.1} s simulated");
}

// ----------------------------------------------------------------- LEDBAT against AIMD

/// A drop-tail bottleneck shared by the uTP flow (a -> b) and an AIMD flow; acks return
/// on an uncongested path.
struct Bottleneck {
    rate: u64,
    capacity: usize,
    queue: VecDeque<(Flow, Bytes)>,
    queued: usize,
    busy_until: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Flow {
    Utp,
    Aimd,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// The head of the bottleneck queue finished transmitting.
    Dequeue,
    /// A datagram reaches b (uTP) or the AIMD sink.
    Deliver(Flow, Bytes),
    /// A datagram from b reaches a.
    Back(Bytes),
    /// An AIMD ack (true) or loss notice (false) reaches the AIMD sender.
    AimdFeedback(bool),
}

/// A loss-based TCP-like sender: slow start, +1 packet per window of acks, halve on loss
/// (at most once per RTT).
struct Aimd {
    cwnd: f64,
    ssthresh: f64,
    in_flight: usize,
    last_cut: Instant,
    delivered: u64,
}

const PROP: Duration = Duration::from_millis(20);
const AIMD_PACKET: usize = 1400;

fn ledbat_share(seed: u64, rate: u64, queue_ms: u64, secs: u64) -> (f64, f64) {
    let capacity = (rate * queue_ms / 1000) as usize;
    let mut rng = Rng(Xoshiro256PlusPlus::seed_from_u64(seed));
    let mut a = UtpSocket::new(UtpConfig::new(seed));
    let mut b = UtpSocket::new(UtpConfig::new(seed + 1));
    let mut now = Instant::from_micros(1_000_000);
    let mut link = Bottleneck {
        rate,
        capacity,
        queue: VecDeque::new(),
        queued: 0,
        busy_until: now,
    };
    let mut events: BinaryHeap<Reverse<(Instant, u64, Ev)>> = BinaryHeap::new();
    let mut n = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, at: Instant, ev: Ev| {
        n += 1;
        events.push(Reverse((at, n, ev)));
    };
    let mut aimd = Aimd {
        cwnd: 2.0,
        ssthresh: f64::MAX,
        in_flight: 0,
        last_cut: now,
        delivered: 0,
    };
    let ha = a.connect(now, b_addr());
    let mut hb = None;
    let data = vec![0x5au8; 64 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let start = now;
    let warmup = start + Duration::from_secs(10);
    let end = start + Duration::from_secs(secs);
    let (mut utp_at_warmup, mut aimd_at_warmup) = (None, None);
    let mut utp_delivered = 0u64;
    // Enqueue at the bottleneck, drop-tail; returns whether it was taken.
    let enqueue = |link: &mut Bottleneck,
                   events: &mut BinaryHeap<_>,
                   push: &mut dyn FnMut(&mut BinaryHeap<_>, Instant, Ev),
                   now: Instant,
                   flow: Flow,
                   data: Bytes|
     -> bool {
        if link.queued + data.len() > link.capacity {
            return false;
        }
        if link.queue.is_empty() {
            let done = now.max(link.busy_until)
                + Duration::from_micros(data.len() as u64 * 1_000_000 / link.rate);
            link.busy_until = done;
            push(events, done, Ev::Dequeue);
        }
        link.queued += data.len();
        link.queue.push_back((flow, data));
        true
    };
    while now < end {
        if now >= warmup && utp_at_warmup.is_none() {
            utp_at_warmup = Some(utp_delivered);
            aimd_at_warmup = Some(aimd.delivered);
        }
        // Senders: uTP always has data, AIMD fills its window.
        a.write(ha, &data);
        while let Some((_, d)) = a.poll_transmit(now) {
            enqueue(&mut link, &mut events, &mut push, now, Flow::Utp, d);
        }
        while let Some((_, d)) = b.poll_transmit(now) {
            push(&mut events, now + PROP, Ev::Back(d));
        }
        if now >= start + Duration::from_secs(1) {
            while (aimd.in_flight as f64) < aimd.cwnd.floor() {
                aimd.in_flight += 1;
                let packet = Bytes::from(vec![0u8; AIMD_PACKET]);
                if !enqueue(&mut link, &mut events, &mut push, now, Flow::Aimd, packet) {
                    // The sender learns of the drop about one RTT later (dup acks).
                    push(&mut events, now + 2 * PROP, Ev::AimdFeedback(false));
                }
            }
        }
        if let Some(hb) = hb {
            while let k @ 1.. = b.read(hb, &mut buf) {
                utp_delivered += k as u64;
            }
        }
        let next = [
            events.peek().map(|Reverse(e)| e.0),
            a.poll_timeout(),
            b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(end);
        now = now.max(next);
        while events.peek().is_some_and(|Reverse(e)| e.0 <= now) {
            let Some(Reverse((_, _, ev))) = events.pop() else {
                break;
            };
            match ev {
                Ev::Dequeue => {
                    if let Some((flow, d)) = link.queue.pop_front() {
                        link.queued -= d.len();
                        push(&mut events, now + PROP, Ev::Deliver(flow, d));
                    }
                    if let Some((_, d)) = link.queue.front() {
                        let done =
                            now + Duration::from_micros(d.len() as u64 * 1_000_000 / link.rate);
                        link.busy_until = done;
                        push(&mut events, done, Ev::Dequeue);
                    }
                }
                Ev::Deliver(Flow::Utp, d) => {
                    b.handle_datagram(now, a_addr(), &d);
                    if hb.is_none() {
                        hb = incoming(&mut b);
                    }
                }
                Ev::Deliver(Flow::Aimd, _) => {
                    aimd.delivered += AIMD_PACKET as u64;
                    // A little jitter on the ack path keeps the two flows from phase-locking.
                    let at = now + PROP + rng.ms(0, 2);
                    push(&mut events, at, Ev::AimdFeedback(true));
                }
                Ev::Back(d) => a.handle_datagram(now, b_addr(), &d),
                Ev::AimdFeedback(acked) => {
                    aimd.in_flight = aimd.in_flight.saturating_sub(1);
                    if acked {
                        aimd.cwnd += if aimd.cwnd < aimd.ssthresh {
                            1.0
                        } else {
                            1.0 / aimd.cwnd
                        };
                    } else if now - aimd.last_cut > 2 * PROP + Duration::from_millis(queue_ms) {
                        aimd.cwnd = (aimd.cwnd / 2.0).max(2.0);
                        aimd.ssthresh = aimd.cwnd;
                        aimd.last_cut = now;
                    }
                }
            }
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert!(
        a.state(ha).is_some_and(|s| s == State::Connected),
        "uTP flow died"
    );
    let utp = (utp_delivered - utp_at_warmup.unwrap_or(0)) as f64;
    let tcp = (aimd.delivered - aimd_at_warmup.unwrap_or(0)) as f64;
    let measured = (end - warmup).as_secs_f64();
    let utilisation = (utp + tcp) / measured / rate as f64;
    (utp / (utp + tcp), utilisation)
}

#[test]
fn ledbat_yields_to_a_loss_based_aimd_flow_on_a_shared_bottleneck() {
    // 1 MiB/s bottleneck with 300 ms of drop-tail buffer: the AIMD flow fills the queue far
    // past LEDBAT's 100 ms target, so uTP must back off.
    for seed in [1, 2, 3] {
        let (share, utilisation) = ledbat_share(seed, 1 << 20, 300, 70);
        eprintln!(
            "seed {seed}: uTP share {:.1}% of the bottleneck's deliveries, link {:.0}% used",
            share * 100.0,
            utilisation * 100.0
        );
        assert!(share < 0.5, "uTP did not yield: {share}");
        assert!(utilisation > 0.8, "link under-used: {utilisation}");
    }
    // For the record: a buffer shallower than the target (50 ms) hides the AIMD flow's queue
    // from LEDBAT, which then competes on loss alone.
    let (share, utilisation) = ledbat_share(1, 1 << 20, 50, 70);
    eprintln!(
        "50 ms buffer: uTP share {:.1}%, link {:.0}% used",
        share * 100.0,
        utilisation * 100.0
    );
}
