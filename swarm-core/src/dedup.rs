//! discovery-swarm's duplicate-connection rule, exactly (PROTOCOLS.md 1.7).
//!
//! Ids are compared as Node compares them: lowercase hex strings, each followed by
//! `'@' + hex(discovery key)` when the application's handshake supplied one.

use crate::event::Transport;
use core::cmp::Ordering;

fn hex_chars<'a>(id: &'a [u8], key: Option<&'a [u8]>) -> impl Iterator<Item = u8> + 'a {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |bytes: &'a [u8]| {
        bytes
            .iter()
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
    };
    let suffix = key
        .into_iter()
        .flat_map(move |k| core::iter::once(b'@').chain(hex(k)));
    hex(id).chain(suffix)
}

/// Orders two peer ids as Node's string comparison of their hex forms does.
pub fn compare_ids(a: &[u8], b: &[u8], key: Option<&[u8]>) -> Ordering {
    hex_chars(a, key).cmp(hex_chars(b, key))
}

/// One side of the rule: a connection's transport and whether we initiated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub transport: Transport,
    pub initiator: bool,
}

/// Whether a newly handshaken connection `new` replaces the registered connection `old` to the
/// same remote id (`true`), or is itself dropped (`false`). `remote_vs_local` is
/// `compare_ids(remote, local)`; `keep_existing` is Node's `keepExistingConnections`.
pub fn new_replaces_old(
    old: Side,
    new: Side,
    remote_vs_local: Ordering,
    keep_existing: bool,
) -> bool {
    if keep_existing {
        return false;
    }
    if old.transport == Transport::Utp && new.transport == Transport::Tcp {
        return true;
    }
    let dialler_is_larger = matches!(
        (new.initiator, remote_vs_local),
        (true, Ordering::Less) | (false, Ordering::Greater)
    );
    let utp_over_tcp = new.transport == Transport::Utp && old.transport == Transport::Tcp;
    !(dialler_is_larger || utp_over_tcp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;
    use Transport::{Tcp, Utp};

    fn side(transport: Transport, initiator: bool) -> Side {
        Side {
            transport,
            initiator,
        }
    }

    /// Node's comparison, literally: hex strings with an optional suffix.
    fn node_compare(a: &[u8], b: &[u8], key: Option<&[u8]>) -> Ordering {
        let s = |id: &[u8]| {
            let mut out: String = id.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(k) = key {
                out.push('@');
                out.extend(k.iter().map(|b| format!("{b:02x}")));
            }
            out
        };
        s(a).cmp(&s(b))
    }

    quickcheck! {
        fn comparison_matches_node_strings(a: Vec<u8>, b: Vec<u8>, key: Option<Vec<u8>>) -> bool {
            compare_ids(&a, &b, key.as_deref()) == node_compare(&a, &b, key.as_deref())
        }

        /// Crossed connections on one transport: whatever the arrival order, both ends keep the
        /// connection initiated by the smaller id.
        fn crossed_connections_agree(a: Vec<u8>, b: Vec<u8>, a_first: bool) -> bool {
            let ord = compare_ids(&b, &a, None);
            if ord == Ordering::Equal {
                return true;
            }
            // Side A: its own dial (out) and B's dial (in). Which survives on A?
            let (first, second) = if a_first { (side(Tcp, true), side(Tcp, false)) } else { (side(Tcp, false), side(Tcp, true)) };
            let a_keeps_own = if new_replaces_old(first, second, ord, false) { second.initiator } else { first.initiator };
            // Side B sees the same two connections with directions and ids swapped.
            let (first_b, second_b) = if a_first { (side(Tcp, false), side(Tcp, true)) } else { (side(Tcp, true), side(Tcp, false)) };
            let b_keeps_own = if new_replaces_old(first_b, second_b, ord.reverse(), false) { second_b.initiator } else { first_b.initiator };
            let a_is_smaller = ord == Ordering::Greater;
            a_keeps_own == a_is_smaller && b_keeps_own != a_is_smaller
        }
    }

    #[test]
    fn proper_prefix_sorts_first_and_suffix_changes_it() {
        assert_eq!(compare_ids(&[0xab], &[0xab, 0xcd], None), Ordering::Less);
        // "ab@ff" vs "ab01@ff": '@' sorts after '0'.
        assert_eq!(
            compare_ids(&[0xab], &[0xab, 0x01], Some(&[0xff])),
            Ordering::Greater
        );
    }

    #[test]
    fn tcp_always_beats_utp() {
        for ord in [Ordering::Less, Ordering::Greater] {
            for (i, j) in [(true, true), (true, false), (false, true), (false, false)] {
                assert!(new_replaces_old(side(Utp, i), side(Tcp, j), ord, false));
                assert!(!new_replaces_old(side(Tcp, i), side(Utp, j), ord, false));
            }
        }
    }

    #[test]
    fn redial_keeps_newer_only_if_dialler_is_smaller() {
        // We redial (both ours). Remote larger than us: we are the smaller dialler, newer wins.
        assert!(new_replaces_old(
            side(Tcp, true),
            side(Tcp, true),
            Ordering::Greater,
            false
        ));
        assert!(!new_replaces_old(
            side(Tcp, true),
            side(Tcp, true),
            Ordering::Less,
            false
        ));
        // Remote redials us: remote smaller -> newer wins.
        assert!(new_replaces_old(
            side(Tcp, false),
            side(Tcp, false),
            Ordering::Less,
            false
        ));
        assert!(!new_replaces_old(
            side(Tcp, false),
            side(Tcp, false),
            Ordering::Greater,
            false
        ));
    }

    #[test]
    fn keep_existing_keeps_first() {
        assert!(!new_replaces_old(
            side(Utp, true),
            side(Tcp, true),
            Ordering::Greater,
            true
        ));
    }
}
