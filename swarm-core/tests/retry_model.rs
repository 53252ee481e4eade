//! The retry queue against a reference model of discovery-swarm's schedule (PROTOCOLS.md 1.4):
//! random peers with random dial outcomes; the core's dial times must be the model's.

use quickcheck::{quickcheck, Arbitrary, Gen};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use swarm_core::handshake::encode_handshake;
use swarm_core::{CloseCause, Config, ConnId, Input, Instant, Output, Swarm};

const WAIT_MS: [u64; 4] = [1000, 1000, 5000, 15000];
const CONNECT_TIMEOUT_MS: u64 = 3000;

/// What happens to one dial.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// Refused after this many ms (< the connect timeout).
    Refused(u64),
    /// No answer: the connect timeout fires.
    Silent,
    /// Connects and handshakes after `.0` ms; the network drops it `.1` ms later.
    Connects(u64, u64),
}

impl Arbitrary for Outcome {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 3 {
            0 => Outcome::Refused(u64::from(u16::arbitrary(g)) % CONNECT_TIMEOUT_MS),
            1 => Outcome::Silent,
            _ => Outcome::Connects(
                u64::from(u16::arbitrary(g)) % CONNECT_TIMEOUT_MS,
                1 + u64::from(u16::arbitrary(g)) % 60_000,
            ),
        }
    }
}

/// The dial times Node's schedule gives one peer found at t = 0: a failure waits
/// `WAIT_MS[retries]` (retries counting failures since the last successful handshake), the
/// fifth failure drops the peer, and a handshaken link lost to the network is redialled after
/// `WAIT_MS[0]`. Outcomes beyond the list are refusals after 0 ms.
fn model(outcomes: &[Outcome]) -> Vec<u64> {
    let mut dials = Vec::new();
    let (mut now, mut retries) = (0u64, 0usize);
    for n in 0.. {
        dials.push(now);
        let outcome = outcomes.get(n).copied().unwrap_or(Outcome::Refused(0));
        let ended = match outcome {
            Outcome::Refused(after) => now + after,
            Outcome::Silent => now + CONNECT_TIMEOUT_MS,
            Outcome::Connects(after, lasts) => {
                retries = 0;
                now + after + lasts
            }
        };
        let Some(wait) = WAIT_MS.get(retries) else {
            return dials;
        };
        retries += 1;
        now = ended + wait;
    }
    unreachable!()
}

fn ms(t: u64) -> Instant {
    Instant::from_micros(t * 1000)
}

/// Runs the core against the outcomes, peer by peer in parallel, and returns each peer's dial
/// times.
fn run(peers: &[Vec<Outcome>]) -> Vec<Vec<u64>> {
    let mut swarm = Swarm::new(Config::new(vec![0x11; 32], 3)).unwrap();
    let addr = |i: usize| SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000));
    let index = |a: SocketAddr| {
        usize::from(
            a.ip()
                .to_string()
                .rsplit('.')
                .next()
                .unwrap()
                .parse::<u8>()
                .unwrap(),
        ) - 1
    };
    for i in 0..peers.len() {
        swarm.add_peer(ms(0), Some(b"t"), addr(i));
    }
    let mut dials: Vec<Vec<u64>> = vec![Vec::new(); peers.len()];
    // Scheduled network happenings: (time, sequence) -> (conn, what).
    let mut pending: BTreeMap<(u64, u64), (ConnId, &str)> = BTreeMap::new();
    let (mut now, mut seq) = (0u64, 0u64);
    loop {
        while let Some(output) = swarm.poll_output() {
            let Output::Dial { conn, addr, .. } = output else {
                continue;
            };
            let i = index(addr);
            let n = dials[i].len();
            dials[i].push(now);
            seq += 1;
            match peers[i].get(n).copied().unwrap_or(Outcome::Refused(0)) {
                Outcome::Refused(after) => {
                    pending.insert((now + after, seq), (conn, "refuse"));
                }
                Outcome::Silent => {}
                Outcome::Connects(after, lasts) => {
                    pending.insert((now + after, seq), (conn, "connect"));
                    pending.insert((now + after + lasts, seq), (conn, "drop"));
                }
            }
        }
        let next_net = pending.keys().next().map(|k| k.0);
        let next_timer = swarm.poll_timeout().map(|t| t.as_micros() / 1000);
        let Some(next) = [next_net, next_timer].into_iter().flatten().min() else {
            return dials;
        };
        now = next;
        if next_net == Some(now) {
            let (_, (conn, what)) = pending.pop_first().unwrap();
            match what {
                "refuse" => swarm.handle_input(ms(now), Input::DialFailed { conn }),
                "connect" => {
                    swarm.handle_input(ms(now), Input::Connected { conn });
                    let wire = encode_handshake(&[(conn.0 as u8).wrapping_add(0x22); 32]);
                    swarm.handle_input(ms(now), Input::Received { conn, data: &wire });
                }
                _ => swarm.handle_input(
                    ms(now),
                    Input::Closed {
                        conn,
                        cause: CloseCause::Remote,
                    },
                ),
            }
        } else {
            swarm.handle_timeout(ms(now));
        }
    }
}

quickcheck! {
    fn dial_times_follow_nodes_schedule(peers: Vec<Vec<Outcome>>) -> bool {
        let peers: Vec<Vec<Outcome>> = peers.into_iter().take(6).map(|o| o.into_iter().take(8).collect()).collect();
        let got = run(&peers);
        let expected: Vec<Vec<u64>> = peers.iter().map(|o| model(o)).collect();
        if got != expected {
            eprintln!("outcomes {peers:?}\n got      {got:?}\n expected {expected:?}");
        }
        got == expected
    }
}

#[test]
fn model_matches_the_documented_never_reachable_schedule() {
    assert_eq!(model(&[]), [0, 1000, 2000, 7000, 22000]);
}
