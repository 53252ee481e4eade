//! 16-bit sequence numbers with wraparound (BEP 29 `seq_nr` / `ack_nr`).
//!
//! Comparisons are modulo 2^16: `a` is before `b` when going forward from `a` reaches `b` in
//! fewer than 2^15 steps. Only meaningful for numbers less than half the space apart, which
//! holds because at most 1024 packets are ever outstanding.

/// `a` strictly before `b`.
pub fn lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

/// `a` before or equal to `b`.
pub fn le(a: u16, b: u16) -> bool {
    a == b || lt(a, b)
}

/// Steps forward from `from` to `to` (mod 2^16).
pub fn dist(from: u16, to: u16) -> u16 {
    to.wrapping_sub(from)
}

/// `x` in the half-open window `[start, start + len)`, mod 2^16.
pub fn in_window(x: u16, start: u16, len: u16) -> bool {
    dist(start, x) < len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_across_the_wrap() {
        assert!(lt(0xfffe, 0xffff));
        assert!(lt(0xffff, 0));
        assert!(lt(0xfff0, 5));
        assert!(!lt(5, 0xfff0));
        assert!(!lt(7, 7));
        assert!(le(7, 7));
        assert!(le(0xffff, 0));
        assert!(!le(1, 0));
    }

    #[test]
    fn distance_and_window_across_the_wrap() {
        assert_eq!(dist(0xfffe, 1), 3);
        assert_eq!(dist(1, 0xfffe), 0xfffd);
        assert!(in_window(2, 0xfffe, 1024));
        assert!(in_window(0xfffe, 0xfffe, 1));
        assert!(!in_window(0xfffd, 0xfffe, 1024));
        assert!(!in_window(1022, 0xfffe, 1024));
        assert!(in_window(1021, 0xfffe, 1024));
    }
}
