//! Token buckets that cap how often we answer queries, per source and in all, so a flood of
//! (possibly spoofed) queries cannot turn us into a multicast amplifier.

use crate::time::Instant;
use crate::{new_map, Map};
use std::net::Ipv4Addr;

/// Credit is counted in microseconds: it grows by one per microsecond up to `burst * cost`,
/// and one answer costs `1_000_000 / per_sec`. A new bucket starts full.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    credit: u64,
    last: Instant,
}

#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub burst: u32,
    pub per_sec: u32,
}

impl Rate {
    fn cost(self) -> u64 {
        1_000_000 / u64::from(self.per_sec.max(1))
    }
    fn cap(self) -> u64 {
        self.cost() * u64::from(self.burst.max(1))
    }
}

impl Bucket {
    fn full(now: Instant, rate: Rate) -> Self {
        Bucket {
            credit: rate.cap(),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: Rate) {
        let gained = (now - self.last).as_micros().min(u128::from(u64::MAX)) as u64;
        self.credit = self.credit.saturating_add(gained).min(rate.cap());
        self.last = self.last.max(now);
    }

    fn take(&mut self, now: Instant, rate: Rate) -> bool {
        self.refill(now, rate);
        let ok = self.credit >= rate.cost();
        if ok {
            self.credit -= rate.cost();
        }
        ok
    }
}

/// Sources tracked at once; beyond that, buckets that have refilled are forgotten, and if
/// none has, a new source is held to the global limit only.
const MAX_SOURCES: usize = 1024;

pub struct Limiter {
    per_source: Rate,
    global_rate: Rate,
    global: Option<Bucket>,
    sources: Map<Ipv4Addr, Bucket>,
}

impl Limiter {
    pub fn new(seed: u64, per_source: Rate, global: Rate) -> Self {
        Limiter {
            per_source,
            global_rate: global,
            global: None,
            sources: new_map(seed),
        }
    }

    /// Whether one more answer to `ip` is allowed at `now` (and spends it if so).
    pub fn allow(&mut self, now: Instant, ip: Ipv4Addr) -> bool {
        let rate = self.per_source;
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, b| {
                b.refill(now, rate);
                b.credit < rate.cap()
            });
        }
        let source_ok = if self.sources.len() < MAX_SOURCES || self.sources.contains_key(&ip) {
            self.sources
                .entry(ip)
                .or_insert_with(|| Bucket::full(now, rate))
                .take(now, rate)
        } else {
            true
        };
        let global_rate = self.global_rate;
        source_ok
            && self
                .global
                .get_or_insert_with(|| Bucket::full(now, global_rate))
                .take(now, global_rate)
    }

    #[cfg(test)]
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let rate = Rate {
            burst: 2,
            per_sec: 1,
        };
        let big = Rate {
            burst: 100,
            per_sec: 100,
        };
        let mut l = Limiter::new(1, rate, big);
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let t0 = Instant::ZERO;
        assert!(l.allow(t0, ip));
        assert!(l.allow(t0, ip));
        assert!(!l.allow(t0, ip));
        assert!(l.allow(t0, Ipv4Addr::new(10, 0, 0, 2)));
        assert!(l.allow(t0 + Duration::from_secs(1), ip));
        assert!(!l.allow(t0 + Duration::from_secs(1), ip));
    }

    #[test]
    fn sources_are_bounded() {
        let rate = Rate {
            burst: 1,
            per_sec: 1,
        };
        let mut l = Limiter::new(1, rate, rate);
        for i in 0..5000u32 {
            l.allow(Instant::ZERO, Ipv4Addr::from(i));
        }
        assert!(l.sources() <= MAX_SOURCES);
    }
}
