//! RTT/RTO estimation and LEDBAT congestion control, with libutp's constants
//! (PROTOCOLS.md 5.4).

use crate::time::Instant;
use core::time::Duration;
use std::collections::VecDeque;

/// LEDBAT's target queueing delay.
pub const TARGET_US: i64 = 100_000;
/// Window growth per RTT at zero delay.
const MAX_CWND_INCREASE: f64 = 3000.0;
/// Window floor and cap (the cap is the send buffer).
const MIN_WINDOW: usize = 10;
const MAX_WINDOW: usize = 1 << 20;
const MIN_RTO: Duration = Duration::from_millis(1000);
const INITIAL_RTO: Duration = Duration::from_millis(3000);
const MAX_RTO: Duration = Duration::from_secs(60);
/// Loss reactions are at most this frequent.
const DECREASE_GAP: Duration = Duration::from_millis(100);
/// Base delay is the minimum over this many one-minute slots.
const BASE_SLOTS: usize = 13;

/// One-way delay history from the peer's `timestamp_difference` values.
#[derive(Debug)]
struct DelayHistory {
    /// Minima of completed one-minute slots, newest last.
    slots: VecDeque<u32>,
    current: Option<u32>,
    slot_start: Instant,
    /// The last three samples above base; their minimum is "our delay" (filters jitter).
    recent: [u32; 3],
    n: usize,
}

impl DelayHistory {
    /// Adds a raw sample and returns the queueing delay above the base, in µs.
    fn sample(&mut self, now: Instant, raw: u32) -> u32 {
        if now - self.slot_start >= Duration::from_secs(60) {
            if let Some(m) = self.current.take() {
                self.slots.push_back(m);
                if self.slots.len() > BASE_SLOTS {
                    self.slots.pop_front();
                }
            }
            self.slot_start = now;
        }
        // Raw values are differences of two unrelated clocks, mod 2^32: compare by distance.
        let earlier = |a: u32, b: u32| (a.wrapping_sub(b) as i32) < 0;
        self.current = Some(match self.current {
            Some(m) if !earlier(raw, m) => m,
            _ => raw,
        });
        let base = self
            .slots
            .iter()
            .copied()
            .chain(self.current)
            .reduce(|a, b| if earlier(b, a) { b } else { a })
            .unwrap_or(raw);
        let above = raw.wrapping_sub(base);
        let above = if (above as i32) < 0 { 0 } else { above };
        self.recent[self.n % 3] = above;
        self.n += 1;
        self.recent[..self.n.min(3)]
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
    }
}

/// Congestion and timing state of one connection.
#[derive(Debug)]
pub struct Congestion {
    /// Bytes allowed in flight.
    pub cwnd: usize,
    ssthresh: usize,
    slow_start: bool,
    /// Smoothed RTT and its variance, in µs; `None` before the first sample.
    rtt: Option<(u64, u64)>,
    rto: Duration,
    last_decrease: Option<Instant>,
    delay: DelayHistory,
    /// The latest filtered queueing delay (µs), for stats and tests.
    pub our_delay: u32,
    mss: usize,
}

impl Congestion {
    pub fn new(now: Instant, mss: usize) -> Self {
        Congestion {
            cwnd: mss,
            ssthresh: MAX_WINDOW,
            slow_start: true,
            rtt: None,
            rto: INITIAL_RTO,
            last_decrease: None,
            delay: DelayHistory {
                slots: VecDeque::new(),
                current: None,
                slot_start: now,
                recent: [0; 3],
                n: 0,
            },
            our_delay: 0,
            mss,
        }
    }

    pub fn rto(&self) -> Duration {
        self.rto
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.map(|(r, _)| Duration::from_micros(r))
    }

    /// A sample from a packet sent exactly once (Karn's rule is the caller's).
    pub fn on_rtt_sample(&mut self, sample: Duration) {
        let s = sample.as_micros() as u64;
        let (rtt, var) = match self.rtt {
            None => (s, s / 2),
            Some((rtt, var)) => {
                let delta = rtt.abs_diff(s);
                (rtt - rtt / 8 + s / 8, var - var / 4 + delta / 4)
            }
        };
        self.rtt = Some((rtt, var));
        self.rto = Duration::from_micros(rtt + 4 * var).clamp(MIN_RTO, MAX_RTO);
    }

    /// New bytes acknowledged. `peer_diff` is the peer's `timestamp_difference`; zero means
    /// the peer did not measure, and then the window does not grow (as in libutp).
    pub fn on_ack(&mut self, now: Instant, acked: usize, peer_diff: u32) {
        if acked == 0 || peer_diff == 0 {
            return;
        }
        let delay = self.delay.sample(now, peer_diff);
        self.our_delay = delay;
        let cwnd = self.cwnd as f64;
        let acked_f = acked as f64;
        let window_factor = acked_f.min(cwnd) / cwnd.max(acked_f);
        let delay_factor = (TARGET_US - i64::from(delay)) as f64 / TARGET_US as f64;
        let gain = MAX_CWND_INCREASE * window_factor * delay_factor;
        let mut next = cwnd + gain;
        if self.slow_start {
            let ss = cwnd + window_factor * self.mss as f64;
            if ss > self.ssthresh as f64 {
                self.slow_start = false;
            } else if i64::from(delay) > TARGET_US * 9 / 10 {
                self.slow_start = false;
                self.ssthresh = self.cwnd;
            } else {
                next = next.max(ss);
            }
        }
        self.cwnd = (next.max(MIN_WINDOW as f64) as usize).min(MAX_WINDOW);
    }

    /// A packet was declared lost by selective ACK: halve, at most once per 100 ms.
    pub fn on_loss(&mut self, now: Instant) {
        if self.last_decrease.is_some_and(|t| now - t < DECREASE_GAP) {
            return;
        }
        self.last_decrease = Some(now);
        self.cwnd = (self.cwnd / 2).max(MIN_WINDOW);
        self.ssthresh = self.cwnd;
        self.slow_start = false;
    }

    /// The retransmission timer fired: one packet of window, RTO doubled.
    pub fn on_timeout(&mut self) {
        self.cwnd = self.mss;
        self.slow_start = true;
        self.rto = (self.rto * 2).min(MAX_RTO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_has_a_one_second_floor_and_starts_at_three() {
        let mut c = Congestion::new(Instant::ZERO, 1382);
        assert_eq!(c.rto(), Duration::from_secs(3));
        c.on_rtt_sample(Duration::from_millis(20));
        assert_eq!(c.rto(), Duration::from_secs(1));
        c.on_timeout();
        assert_eq!(c.rto(), Duration::from_secs(2));
        assert_eq!(c.cwnd, 1382);
    }

    #[test]
    fn window_grows_only_with_real_timestamp_differences() {
        let mut c = Congestion::new(Instant::ZERO, 1382);
        c.on_ack(Instant::ZERO, 1382, 0);
        assert_eq!(c.cwnd, 1382, "a zero difference must not grow the window");
        c.on_ack(Instant::ZERO, 1382, 5000);
        assert!(c.cwnd > 1382);
    }

    #[test]
    fn ledbat_shrinks_above_target_and_halves_on_loss_once_per_100ms() {
        let mut c = Congestion::new(Instant::ZERO, 1382);
        c.cwnd = 100_000;
        c.slow_start = false;
        let t = Instant::from_micros(1);
        c.on_ack(t, 1382, 10_000); // base delay
        let before = c.cwnd;
        for _ in 0..10 {
            c.on_ack(t, 1382, 10_000 + 250_000); // 250 ms queueing, above target
        }
        assert!(c.cwnd < before);
        let w = c.cwnd;
        c.on_loss(t);
        assert_eq!(c.cwnd, w / 2);
        c.on_loss(t + Duration::from_millis(50));
        assert_eq!(c.cwnd, w / 2);
        c.on_loss(t + Duration::from_millis(150));
        assert_eq!(c.cwnd, w / 4);
    }
}
