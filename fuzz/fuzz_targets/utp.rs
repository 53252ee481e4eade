//! Arbitrary datagrams into the uTP header parser and into two live sockets with a real
//! connection between them; checks the invariants after every step.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::utp::header::Packet;
use swarm_core::utp::socket::{ConnHandle, UtpConfig, UtpSocket};
use swarm_core::Instant;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes into socket b (true) or a, from the peer's address (or a stranger's).
    Raw(bool, bool, Vec<u8>),
    /// A captured datagram with one byte overwritten, delivered to the other side.
    Mutate(u8, u8, u8),
    /// Deliver (true) or drop the oldest captured datagram.
    Deliver(bool),
    Advance(u16),
    Write(bool, u16),
    Read(bool),
    Close(bool),
}

struct H {
    a: UtpSocket,
    b: UtpSocket,
    ha: ConnHandle,
    hb: Option<ConnHandle>,
    now: Instant,
    /// (to_b, datagram) captured from poll_transmit, oldest first.
    wire: Vec<(bool, Vec<u8>)>,
}

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

impl H {
    fn drain(&mut self) {
        for to_b in [true, false] {
            let s = if to_b { &mut self.a } else { &mut self.b };
            while let Some((_, d)) = s.poll_transmit(self.now) {
                assert!(d.len() <= 1400);
                if self.wire.len() < 4096 {
                    self.wire.push((to_b, d.to_vec()));
                }
            }
            while let Some(e) = s.poll_event() {
                if let swarm_core::utp::socket::UtpEvent::Incoming { conn, .. } = e {
                    if !to_b {
                        self.hb = Some(conn);
                    }
                }
            }
            assert!(s.half_open() <= 64);
        }
    }

    fn deliver(&mut self, to_b: bool, d: &[u8], stranger: bool) {
        let from = match (to_b, stranger) {
            (_, true) => addr(9),
            (true, false) => addr(1),
            (false, false) => addr(2),
        };
        let s = if to_b { &mut self.b } else { &mut self.a };
        s.handle_datagram(self.now, from, d);
    }

    fn sock(&mut self, b: bool) -> (&mut UtpSocket, Option<ConnHandle>) {
        if b {
            (&mut self.b, self.hb)
        } else {
            (&mut self.a, Some(self.ha))
        }
    }
}

fuzz_target!(|input: (Vec<u8>, Vec<Op>)| {
    let (raw, ops) = input;
    if let Ok(p) = Packet::parse(&raw) {
        let mut out = BytesMut::new();
        p.emit(&mut out);
        assert_eq!(Packet::parse(&out), Ok(p));
    }
    let mut ca = UtpConfig::new(1);
    ca.listening = false;
    let mut a = UtpSocket::new(ca);
    let now = Instant::from_micros(1_000_000);
    let ha = a.connect(now, addr(2));
    let mut h = H {
        a,
        b: UtpSocket::new(UtpConfig::new(2)),
        ha,
        hb: None,
        now,
        wire: Vec::new(),
    };
    h.drain();
    let mut buf = vec![0u8; 4096];
    for op in ops.into_iter().take(512) {
        match op {
            Op::Raw(to_b, stranger, d) => h.deliver(to_b, &d, stranger),
            Op::Mutate(i, at, byte) => {
                if !h.wire.is_empty() {
                    let (to_b, mut d) = h.wire[usize::from(i) % h.wire.len()].clone();
                    let k = usize::from(at) % d.len();
                    d[k] = byte;
                    h.deliver(to_b, &d, false);
                }
            }
            Op::Deliver(deliver) => {
                if !h.wire.is_empty() {
                    let (to_b, d) = h.wire.remove(0);
                    if deliver {
                        h.deliver(to_b, &d, false);
                    }
                }
            }
            Op::Advance(ms) => {
                h.now = h.now + Duration::from_millis(u64::from(ms));
                h.a.handle_timeout(h.now);
                h.b.handle_timeout(h.now);
                h.drain();
                // No timer is left in the past after handle_timeout and a drain.
                for s in [&h.a, &h.b] {
                    if let Some(t) = s.poll_timeout() {
                        assert!(t > h.now, "timer {t:?} not after {:?}", h.now);
                    }
                }
            }
            Op::Write(b, n) => {
                let (s, c) = h.sock(b);
                if let Some(c) = c {
                    let data = vec![0x5a; usize::from(n)];
                    let k = s.write(c, &data);
                    assert!(k <= data.len());
                }
            }
            Op::Read(b) => {
                let (s, c) = h.sock(b);
                if let Some(c) = c {
                    let n = s.read(c, &mut buf);
                    assert!(n <= buf.len());
                    if let Some(conn) = s.conn(c) {
                        // The receive buffer, plus the slack for acked zero-window probes.
                        assert!(conn.readable_len() <= (1 << 20) + 64 * 1024);
                        assert!(conn.recv_window() <= 1 << 20);
                    }
                }
            }
            Op::Close(b) => {
                let (s, c) = h.sock(b);
                if let Some(c) = c {
                    s.close(c);
                }
            }
        }
        h.drain();
    }
});
