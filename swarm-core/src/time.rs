//! Time as the core sees it: microseconds since an epoch the driver chooses.
//!
//! The core never reads a clock; every entry point takes `now`.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in microseconds since the driver's epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(0);

    /// The earlier of two optional deadlines (`None` is never). Written out rather than as
    /// `[a, b].into_iter().flatten().min()`, which costs several times the instructions in
    /// `poll_timeout`, asked after every input.
    pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_ignores_never() {
        let (a, b) = (Some(Instant(3)), Some(Instant(5)));
        assert_eq!(Instant::earliest(a, b), a);
        assert_eq!(Instant::earliest(b, a), a);
        assert_eq!(Instant::earliest(None, b), b);
        assert_eq!(Instant::earliest(b, None), b);
        assert_eq!(Instant::earliest(None, None), None);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_micros(10);
        assert_eq!((t + Duration::from_millis(1)).as_micros(), 1010);
        assert_eq!(t - Instant::from_micros(20), Duration::ZERO);
        assert_eq!(
            (Instant::from_micros(u64::MAX) + Duration::from_secs(1)).as_micros(),
            u64::MAX
        );
    }
}
