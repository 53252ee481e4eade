//! Known-answer suppression (RFC 6762 7.1) for dns-discovery's LAN rounds.
//!
//! Node's responders answer every query to the whole group, so on a LAN of n announcers each
//! round costs n answers delivered to n hosts, and every host hears every peer again about
//! once a second on a LAN of 50. A query of ours lists the peers its sender has heard within
//! the last round interval, in one NULL record named like the question; a responder of ours
//! that finds its own address listed stays silent. Each announcer still answers its own
//! queries (it never lists itself), so every host hears it once a round, which keeps it
//! listed everywhere; a host that lost it (never heard, or the entry aged out) lists it no
//! more and gets its answer.
//!
//! Node's dns-discovery reads a query's answer records as announcements but only TXT and
//! SRV ones, so it ignores this record and answers as it always does; dns-packet decodes
//! NULL rdata as raw bytes.
//!
//! Rdata: `IPv4(4) | port u16be` per peer, as the querier saw it (the sender's address for
//! a `0.0.0.0` entry), the same layout as a `peers=` entry.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Bytes per listed peer.
pub(super) const ENTRY: usize = 6;
/// Peers listed in one query: 1,200 bytes, so a query still fits one unfragmented datagram.
/// A peer left off answers, which costs only its answer.
pub(super) const MAX_LISTED: usize = 200;

/// The rdata listing `peers` (at most [`MAX_LISTED`]).
pub(super) fn rdata(peers: impl Iterator<Item = SocketAddrV4>) -> Vec<u8> {
    let mut out = Vec::new();
    for peer in peers.take(MAX_LISTED) {
        out.extend_from_slice(&peer.ip().octets());
        out.extend_from_slice(&peer.port().to_be_bytes());
    }
    out
}

/// Whether `rdata` lists a peer that `is_own` accepts. Trailing bytes (less than an entry)
/// are ignored, entries past [`MAX_LISTED`] are not read.
pub(super) fn lists(rdata: &[u8], mut is_own: impl FnMut(SocketAddrV4) -> bool) -> bool {
    rdata.chunks_exact(ENTRY).take(MAX_LISTED).any(|e| {
        let ip = Ipv4Addr::new(e[0], e[1], e[2], e[3]);
        is_own(SocketAddrV4::new(ip, u16::from_be_bytes([e[4], e[5]])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port)
    }

    #[test]
    fn a_listed_peer_is_found_and_others_are_not() {
        let data = rdata([addr(1, 7001), addr(2, 7002)].into_iter());
        assert_eq!(data.len(), 2 * ENTRY);
        assert!(lists(&data, |a| a == addr(2, 7002)));
        assert!(!lists(&data, |a| a == addr(2, 7001)));
        assert!(!lists(&data, |a| a == addr(3, 7002)));
    }

    #[test]
    fn trailing_bytes_and_entries_past_the_cap_are_not_read() {
        let mut data = rdata([addr(1, 7001)].into_iter());
        data.extend_from_slice(&[10, 0, 0, 9, 0x1b]);
        assert!(!lists(&data, |a| a.ip().octets()[3] == 9));
        let many = rdata((0..300).map(|i| addr(1, 1000 + i)));
        assert_eq!(many.len(), MAX_LISTED * ENTRY);
        let mut long = many.clone();
        long.extend_from_slice(&rdata([addr(7, 7)].into_iter()));
        assert!(!lists(&long, |a| a == addr(7, 7)));
        assert!(lists(&long, |a| a == addr(1, 1000 + MAX_LISTED as u16 - 1)));
    }

    #[test]
    fn empty_or_short_rdata_lists_nobody() {
        assert!(!lists(&[], |_| true));
        assert!(!lists(&[1, 2, 3, 4, 5], |_| true));
    }
}
