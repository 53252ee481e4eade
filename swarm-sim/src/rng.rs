//! The simulation's randomness: one seeded generator for the network, and seeds derived from
//! the run seed for each node's core and id.

use core::time::Duration;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// SplitMix64: a stable mixing function for deriving seeds.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed derived from the run seed and a path of labels (host, incarnation, purpose).
pub fn derive(seed: u64, path: &[u64]) -> u64 {
    path.iter().fold(mix(seed), |acc, x| mix(acc ^ mix(*x)))
}

/// `x % d` for a divisor known in advance, by two multiplications instead of a 64-bit
/// division (Lemire, Kaser and Kurz, "Faster remainder by direct computation", 2019: with
/// a 128-bit reciprocal the result is exact for every 64-bit `x` and `d`). Every datagram
/// copy draws its delay modulo the same few spans, and the division was most of a copy's
/// delay computation.
#[derive(Clone, Copy, Debug)]
pub struct Modulus {
    divisor: u64,
    /// ⌈2¹²⁸ / divisor⌉, wrapped (0 for a divisor of 1, whose remainders are all 0).
    reciprocal: u128,
}

impl Default for Modulus {
    fn default() -> Self {
        Modulus::new(1)
    }
}

impl Modulus {
    /// # Panics
    /// If `divisor` is 0.
    pub fn new(divisor: u64) -> Self {
        assert!(divisor > 0, "remainder by zero");
        Modulus {
            divisor,
            reciprocal: (u128::MAX / u128::from(divisor)).wrapping_add(1),
        }
    }

    /// `x % divisor`: the fast way when `divisor` is this one's, else by division.
    pub fn rem(&self, x: u64, divisor: u64) -> u64 {
        if divisor != self.divisor {
            return x % divisor;
        }
        let fraction = self.reciprocal.wrapping_mul(u128::from(x));
        let d = u128::from(divisor);
        let low = (u128::from(fraction as u64) * d) >> 64;
        let high = (fraction >> 64) * d;
        ((low + high) >> 64) as u64
    }
}

/// The simulator's generator with the draws it needs.
pub struct SimRng(Xoshiro256PlusPlus);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.range_with(lo, hi, |x, width| x % width)
    }

    /// [`SimRng::range`] (the same draw and result), its remainder taken by `span`, which
    /// should be the modulus of `hi - lo + 1`.
    pub fn range_by(&mut self, lo: u64, hi: u64, span: &Modulus) -> u64 {
        self.range_with(lo, hi, |x, width| span.rem(x, width))
    }

    /// `lo` plus a draw's remainder by the range's width, as `rem` takes it.
    fn range_with(&mut self, lo: u64, hi: u64, rem: impl FnOnce(u64, u64) -> u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + rem(self.next_u64(), span + 1)
    }

    /// Uniform in `lo..=hi`, at microsecond resolution.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_micros(self.range(lo.as_micros() as u64, hi.as_micros() as u64))
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// An index in `0..len` (`len` must be positive).
    pub fn index(&mut self, len: usize) -> usize {
        self.range(0, len as u64 - 1) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.0.fill_bytes(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_remainders_equal_division() {
        let mut rng = SimRng::new(11);
        let edges = [
            0,
            1,
            2,
            3,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) - 1,
            (1 << 32) + 1,
        ];
        let mut divisors: Vec<u64> = edges.iter().copied().filter(|&d| d > 0).collect();
        divisors.extend(
            (0..200)
                .map(|i| rng.next_u64() >> (i % 64))
                .filter(|&d| d > 0),
        );
        divisors.extend(1..=70);
        for d in divisors {
            let m = Modulus::new(d);
            let xs = edges
                .iter()
                .copied()
                .chain((0..200).map(|_| rng.next_u64()));
            for x in xs.chain([d, d - 1, d.wrapping_add(1), d.wrapping_mul(3)]) {
                assert_eq!(m.rem(x, d), x % d, "{x} % {d}");
            }
        }
        // Another divisor than its own: plain division.
        assert_eq!(Modulus::new(7).rem(20, 6), 2);
    }

    #[test]
    fn range_by_draws_as_range() {
        let (mut a, mut b) = (SimRng::new(5), SimRng::new(5));
        for (lo, hi) in [(0, 20_000), (3, 3), (5, 2), (100, 900), (0, u64::MAX)] {
            let span = Modulus::new(hi.wrapping_sub(lo).wrapping_add(1).max(1));
            for _ in 0..100 {
                assert_eq!(a.range(lo, hi), b.range_by(lo, hi, &span));
            }
        }
    }

    #[test]
    fn derivation_is_stable_and_spreads() {
        assert_eq!(derive(1, &[2, 3]), derive(1, &[2, 3]));
        assert_ne!(derive(1, &[2, 3]), derive(1, &[3, 2]));
        assert_ne!(derive(1, &[0]), derive(2, &[0]));
        let mut rng = SimRng::new(9);
        for _ in 0..1000 {
            let x = rng.range(3, 5);
            assert!((3..=5).contains(&x));
        }
    }
}
