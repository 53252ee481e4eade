//! Every token this engine has put in an answer, as a Bloom filter.
//!
//! An answer is our own echo if its token is one we handed out (the `own_tokens` table) or
//! the one we would give its sender (Node's check, a SHA-256 of our secret and the sender's
//! address, cached per sender). Only this engine knows its secret, so a token it never
//! handed out can be neither; this filter says so from a line of the engine's own state,
//! where the two lookups it saves would each read memory nothing else has touched since
//! this host's previous datagram. It is never cleared, so it only ever answers "maybe" for
//! more tokens over time, which costs the lookups again, never a wrong answer.

use super::txt::Token;
use core::hash::BuildHasher;
use foldhash::fast::FixedState;

const WORDS: usize = 16;
const BITS: u64 = (WORDS * 64) as u64;

pub(super) struct HandedOut {
    bits: [u64; WORDS],
    hasher: FixedState,
}

impl HandedOut {
    pub(super) fn new(seed: u64) -> Self {
        HandedOut {
            bits: [0; WORDS],
            hasher: FixedState::with_seed(seed),
        }
    }

    pub(super) fn insert(&mut self, token: &Token) {
        for bit in self.bits_of(token) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False only for a token never inserted.
    pub(super) fn may_hold(&self, token: &Token) -> bool {
        self.bits_of(token)
            .iter()
            .all(|&bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    fn bits_of(&self, token: &Token) -> [u64; 2] {
        let h = self.hasher.hash_one(token);
        [h % BITS, (h >> 32) % BITS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn token(seed: u8, i: u8) -> Token {
        let mut t = [b'A'; 44];
        t[0] = seed;
        t[1] = i;
        t
    }

    quickcheck! {
        /// No false negative, whatever was inserted.
        fn holds_every_inserted_token(inserted: Vec<(u8, u8)>) -> bool {
            let mut f = HandedOut::new(3);
            inserted.iter().for_each(|&(s, i)| f.insert(&token(s, i)));
            inserted.iter().all(|&(s, i)| f.may_hold(&token(s, i)))
        }
    }

    #[test]
    fn with_a_segment_of_answers_most_other_tokens_are_ruled_out() {
        let mut f = HandedOut::new(1);
        (0..50).for_each(|i| f.insert(&token(0, i)));
        let maybe = (0..=255).filter(|&i| f.may_hold(&token(1, i))).count();
        assert!(maybe < 40, "{maybe} of 256 strangers' tokens pass");
        assert!(!HandedOut::new(1).may_hold(&token(0, 0)));
    }
}
