//! Announce tokens and the peer store (BEP 5 `get_peers` / `announce_peer`).

use super::NodeId;
use crate::time::Instant;
use crate::{new_map, Map};
use core::time::Duration;
use rand_core::RngCore;
use std::net::{IpAddr, SocketAddrV4};

/// Secrets rotate this often; a token stays valid for one to two periods (5-10 min).
pub const ROTATION: Duration = Duration::from_secs(5 * 60);
pub const TOKEN_LEN: usize = 20;

/// Tokens are SHA-1(requester IP || secret), checked against the current and the previous
/// secret. They bind an announce to the IP that asked for peers, so a node cannot announce
/// another host's address; no per-requester state is kept.
pub struct Tokens {
    current: [u8; 20],
    previous: [u8; 20],
    next_rotation: Instant,
}

impl Tokens {
    pub fn new(now: Instant, rng: &mut impl RngCore) -> Self {
        let mut t = Tokens {
            current: [0; 20],
            previous: [0; 20],
            next_rotation: now + ROTATION,
        };
        rng.fill_bytes(&mut t.current);
        rng.fill_bytes(&mut t.previous);
        t
    }

    /// When [`Tokens::rotate`] next has something to do.
    pub fn next_rotation(&self) -> Instant {
        self.next_rotation
    }

    /// Rotates once if due; early calls are no-ops.
    pub fn rotate(&mut self, now: Instant, rng: &mut impl RngCore) {
        if now < self.next_rotation {
            return;
        }
        self.previous = self.current;
        rng.fill_bytes(&mut self.current);
        self.next_rotation = now + ROTATION;
    }

    pub fn token(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        hash(ip, &self.current)
    }

    pub fn validate(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == hash(ip, &self.current) || token == hash(ip, &self.previous)
    }
}

fn hash(ip: IpAddr, secret: &[u8; 20]) -> [u8; TOKEN_LEN] {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    match ip.to_canonical() {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    h.update(secret);
    h.finalize().into()
}

/// Limits of the [`PeerStore`].
#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    /// Peers over all info-hashes; announces of new peers beyond it are refused.
    pub max_total: usize,
    /// Peers per info-hash; the one closest to expiry makes room for a newcomer.
    pub max_per_hash: usize,
    /// How long an announce is served without being repeated (Node: forever; BEP 5
    /// suggests expiry; announcers repeat every 10-15 min).
    pub ttl: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_total: 10_000,
            max_per_hash: 500,
            ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// Announced peers per info-hash, with expiry and caps.
pub struct PeerStore {
    limits: StoreLimits,
    map: Map<NodeId, Vec<(SocketAddrV4, Instant)>>,
    total: usize,
}

impl PeerStore {
    pub fn new(limits: StoreLimits, seed: u64) -> Self {
        PeerStore {
            limits,
            map: new_map(seed),
            total: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Stores or refreshes `peer`; false if the store is full.
    pub fn announce(&mut self, now: Instant, info_hash: NodeId, peer: SocketAddrV4) -> bool {
        let expires = now + self.limits.ttl;
        if let Some(entry) = self
            .map
            .get_mut(&info_hash)
            .and_then(|v| v.iter_mut().find(|(a, _)| *a == peer))
        {
            entry.1 = expires;
            return true;
        }
        let peers = self.map.get(&info_hash).map_or(0, Vec::len);
        if peers >= self.limits.max_per_hash.max(1) {
            let v = self.map.get_mut(&info_hash).expect("counted above");
            let soonest = (0..v.len()).min_by_key(|&i| v[i].1).unwrap_or(0);
            v[soonest] = (peer, expires);
            return true;
        }
        if self.total >= self.limits.max_total {
            return false;
        }
        self.map.entry(info_hash).or_default().push((peer, expires));
        self.total += 1;
        true
    }

    /// Up to `max` live peers for `info_hash`, starting at `offset` (mod their count) so
    /// repeated answers rotate through a large swarm.
    pub fn peers(
        &self,
        now: Instant,
        info_hash: &NodeId,
        max: usize,
        offset: usize,
    ) -> Vec<SocketAddrV4> {
        let Some(v) = self.map.get(info_hash) else {
            return Vec::new();
        };
        let start = offset % v.len().max(1);
        v[start..]
            .iter()
            .chain(&v[..start])
            .filter(|(_, exp)| *exp > now)
            .take(max)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Drops expired peers.
    pub fn expire(&mut self, now: Instant) {
        let mut removed = 0;
        self.map.retain(|_, v| {
            let before = v.len();
            v.retain(|(_, exp)| *exp > now);
            removed += before - v.len();
            !v.is_empty()
        });
        self.total -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;
    use std::net::Ipv4Addr;

    #[test]
    fn tokens_valid_for_one_to_two_periods() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut t = Tokens::new(Instant::ZERO, &mut rng);
        let ip: IpAddr = Ipv4Addr::new(1, 2, 3, 4).into();
        let other: IpAddr = Ipv4Addr::new(1, 2, 3, 5).into();
        let tok = t.token(ip);
        assert!(t.validate(ip, &tok));
        assert!(!t.validate(other, &tok));
        assert!(!t.validate(ip, &tok[..19]));
        // An IPv4-mapped address is the same host.
        assert!(t.validate("::ffff:1.2.3.4".parse().unwrap(), &tok));
        t.rotate(
            Instant::ZERO + (ROTATION - Duration::from_secs(1)),
            &mut rng,
        );
        assert!(t.validate(ip, &tok));
        t.rotate(Instant::ZERO + ROTATION, &mut rng);
        assert!(t.validate(ip, &tok), "previous secret still accepted");
        t.rotate(Instant::ZERO + ROTATION * 2, &mut rng);
        assert!(!t.validate(ip, &tok), "expired after two rotations");
    }

    #[test]
    fn store_expires_and_caps() {
        let limits = StoreLimits {
            max_total: 3,
            max_per_hash: 2,
            ttl: Duration::from_secs(60),
        };
        let mut s = PeerStore::new(limits, 1);
        let a = |p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p);
        let (h1, h2) = (NodeId([1; 20]), NodeId([2; 20]));
        let t0 = Instant::ZERO;
        assert!(s.announce(t0, h1, a(1)));
        assert!(s.announce(t0 + Duration::from_secs(1), h1, a(2)));
        // Per-hash cap: the oldest makes room.
        assert!(s.announce(t0 + Duration::from_secs(2), h1, a(3)));
        assert_eq!(s.peers(t0, &h1, 10, 0), [a(3), a(2)]);
        assert!(s.announce(t0, h2, a(1)));
        // Global cap.
        assert!(!s.announce(t0, NodeId([3; 20]), a(1)));
        assert_eq!(s.len(), 3);
        // Expiry.
        assert_eq!(s.peers(t0 + Duration::from_secs(61), &h1, 10, 0), [a(3)]);
        let later = t0 + Duration::from_secs(63);
        assert!(s.peers(later, &h1, 10, 0).is_empty());
        s.expire(later);
        assert!(s.is_empty());
    }
}
