//! Topic keys and their DNS names (discovery-channel, PROTOCOLS.md 2).

use sha1::{Digest, Sha1};
use std::sync::Arc;

/// The domain every dns-discovery name lives under.
pub const DOMAIN: &str = "dns-discovery.local";
/// discovery-channel truncates every key to 20 bytes.
pub const KEY_LEN: usize = 20;

/// A caller-supplied topic hash.
pub type HashFn = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// How a topic becomes a key (discovery-channel's `hash` option).
#[derive(Clone, Default)]
pub enum KeyHash {
    /// SHA-1 of the topic bytes (the default).
    #[default]
    Sha1,
    /// The topic bytes themselves (`hash: false`).
    Raw,
    /// A caller-supplied hash.
    Custom(HashFn),
}

impl core::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KeyHash::Sha1 => "Sha1",
            KeyHash::Raw => "Raw",
            KeyHash::Custom(_) => "Custom",
        })
    }
}

impl KeyHash {
    /// The key of `topic`, truncated to 20 bytes; `None` when it is empty (no DNS label).
    pub fn key(&self, topic: &[u8]) -> Option<Vec<u8>> {
        let mut key = match self {
            KeyHash::Sha1 => Sha1::digest(topic).to_vec(),
            KeyHash::Raw => topic.to_vec(),
            KeyHash::Custom(f) => f(topic),
        };
        key.truncate(KEY_LEN);
        (!key.is_empty()).then_some(key)
    }
}

/// Lowercase hex of `key`: the id label of its DNS name.
pub fn hex_id(key: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(key.len() * 2);
    for b in key {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// A hex id held inline (keys are at most 20 bytes, so ids at most 40): looking one up from
/// a packet's name hashes and compares bytes next to the table entry instead of following
/// a `String` to the heap, a cache miss on every datagram once there are thousands of nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HexId {
    len: u8,
    bytes: [u8; 2 * KEY_LEN],
}

impl HexId {
    /// `None` if `id` is longer than any id of ours (so it names none of our topics).
    pub fn new(id: &[u8]) -> Option<HexId> {
        let mut bytes = [0; 2 * KEY_LEN];
        bytes.get_mut(..id.len())?.copy_from_slice(id);
        Some(HexId {
            len: id.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// `<hex>.dns-discovery.local`.
pub fn dns_name(key: &[u8]) -> String {
    format!("{}.{DOMAIN}", hex_id(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_example() {
        let key = KeyHash::Sha1.key(b"ubuntu-14.04").unwrap();
        assert_eq!(hex_id(&key), "30b411f5ef231e34acc17e0065a8fed2d72116fd");
        assert_eq!(
            dns_name(&key),
            "30b411f5ef231e34acc17e0065a8fed2d72116fd.dns-discovery.local"
        );
    }

    #[test]
    fn hex_ids_hold_up_to_forty_bytes() {
        let key = KeyHash::Sha1.key(b"ubuntu-14.04").unwrap();
        let id = hex_id(&key);
        assert_eq!(HexId::new(id.as_bytes()).unwrap().as_bytes(), id.as_bytes());
        assert_eq!(HexId::new(b"").unwrap().as_bytes(), b"");
        assert!(HexId::new(&[b'a'; 41]).is_none());
        assert_ne!(HexId::new(b"ab"), HexId::new(b"ab\0"));
    }

    #[test]
    fn raw_and_custom_truncate_to_20() {
        assert_eq!(KeyHash::Raw.key(&[0xab; 30]).unwrap().len(), 20);
        assert_eq!(hex_id(&KeyHash::Raw.key(b"\x01\xff").unwrap()), "01ff");
        assert!(KeyHash::Raw.key(b"").is_none());
        let custom = KeyHash::Custom(Arc::new(|t: &[u8]| t.iter().rev().copied().collect()));
        assert_eq!(custom.key(b"ab").unwrap(), b"ba");
    }
}
