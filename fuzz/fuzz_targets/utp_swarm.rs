//! Two uTP-only swarms wired back to back, the dialler's connection under way, and arbitrary
//! datagrams on the swarm port (uTP, KRPC, DNS-shaped or garbage, from the peer or a
//! stranger) mixed with captured ones replayed, mutated or dropped, timers and stream calls.
//! Nothing may panic and the counters must stay consistent.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::{Config, ConnId, Event, Input, Instant, Output, Swarm, UdpSocket};

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes to swarm b (true) or a, from the peer's address or a stranger's.
    Raw(bool, bool, Vec<u8>),
    /// A captured datagram with one byte overwritten.
    Mutate(u8, u8, u8),
    /// Deliver (true) or drop the oldest captured datagram.
    Deliver(bool),
    Advance(u16),
    Write(bool, u16),
    Read(bool),
    Shutdown(bool),
    Disconnect(bool),
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], 7000))
}

struct H {
    swarms: [Swarm; 2],
    conns: [Vec<ConnId>; 2],
    now: Instant,
    /// (to index, datagram) captured from the outputs, oldest first.
    wire: Vec<(usize, Vec<u8>)>,
}

impl H {
    fn drain(&mut self) {
        for i in 0..2 {
            while let Some(out) = self.swarms[i].poll_output() {
                match out {
                    Output::Transmit {
                        socket: UdpSocket::Swarm,
                        to,
                        data,
                    } => {
                        assert!(data.len() <= 1400, "datagram of {} bytes", data.len());
                        let to = usize::from(to == addr(2));
                        if self.wire.len() < 4096 {
                            self.wire.push((to, data.to_vec()));
                        }
                    }
                    Output::Dial { transport, .. } => {
                        panic!("uTP-only swarm asked the driver to dial {transport:?}")
                    }
                    Output::Event(Event::Connection { conn, .. }) => self.conns[i].push(conn),
                    _ => {}
                }
            }
            let s = &self.swarms[i];
            assert!(s.connected() <= 2);
        }
    }

    fn deliver(&mut self, to: usize, data: &[u8], stranger: bool) {
        let from = if stranger {
            addr(9)
        } else {
            addr(if to == 1 { 1 } else { 2 })
        };
        let input = Input::Datagram {
            socket: UdpSocket::Swarm,
            from,
            data,
        };
        self.swarms[to].handle_input(self.now, input);
    }
}

fn config(id: u8, seed: u64) -> Config {
    let mut c = Config::new(vec![id; 32], seed);
    c.tcp = false;
    c.utp = true;
    c.utp_in_core = true;
    c
}

fuzz_target!(|ops: Vec<Op>| {
    let now = Instant::from_micros(1_000_000);
    let a = Swarm::new(config(1, 1)).unwrap();
    // b also runs a DHT, so KRPC-shaped datagrams take that path.
    let b = Swarm::new(config(2, 2).with_dht(vec![addr(3)])).unwrap();
    let mut h = H {
        swarms: [a, b],
        conns: [Vec::new(), Vec::new()],
        now,
        wire: Vec::new(),
    };
    for s in &mut h.swarms {
        s.handle_input(now, Input::Listening { port: 7000 });
    }
    h.swarms[0].add_peer(now, Some(b"t"), addr(2));
    h.drain();
    let mut buf = vec![0u8; 4096];
    for op in ops.into_iter().take(512) {
        match op {
            Op::Raw(to_b, stranger, d) => h.deliver(usize::from(to_b), &d, stranger),
            Op::Mutate(i, at, byte) => {
                if !h.wire.is_empty() {
                    let (to, mut d) = h.wire[usize::from(i) % h.wire.len()].clone();
                    if !d.is_empty() {
                        let k = usize::from(at) % d.len();
                        d[k] = byte;
                    }
                    h.deliver(to, &d, false);
                }
            }
            Op::Deliver(deliver) => {
                if !h.wire.is_empty() {
                    let (to, d) = h.wire.remove(0);
                    if deliver {
                        h.deliver(to, &d, false);
                    }
                }
            }
            Op::Advance(ms) => {
                h.now = h.now + Duration::from_millis(u64::from(ms));
                for s in &mut h.swarms {
                    if s.poll_timeout().is_some_and(|t| t <= h.now) {
                        s.handle_timeout(h.now);
                    }
                }
            }
            Op::Write(b, n) => {
                let i = usize::from(b);
                if let Some(&c) = h.conns[i].last() {
                    let data = vec![0x5a; usize::from(n)];
                    if let Ok(k) = h.swarms[i].stream_write(h.now, c, &data) {
                        assert!(k <= data.len());
                    }
                }
            }
            Op::Read(b) => {
                let i = usize::from(b);
                if let Some(&c) = h.conns[i].last() {
                    if let Ok(n) = h.swarms[i].stream_read(h.now, c, &mut buf) {
                        assert!(n <= buf.len());
                    }
                    if let Some(held) = h.swarms[i].stream_buffered(c) {
                        assert!(held <= 8 << 20, "{held} bytes held");
                    }
                }
            }
            Op::Shutdown(b) => {
                let i = usize::from(b);
                if let Some(&c) = h.conns[i].last() {
                    let _ = h.swarms[i].stream_shutdown(h.now, c);
                }
            }
            Op::Disconnect(b) => {
                let i = usize::from(b);
                if let Some(c) = h.conns[i].pop() {
                    let _ = h.swarms[i].disconnect(h.now, c);
                }
            }
        }
        h.drain();
    }
});
