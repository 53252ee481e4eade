//! The TXT payloads of dns-discovery: `token=`, `peers=` (PROTOCOLS.md 3.1).

use super::wire::Writer;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Node encodes with the padded standard alphabet.
const ENCODE: GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Node's `Buffer.from(s, 'base64')` accepts missing padding and stray low bits; so do we.
const DECODE: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Peers per `peers=` string: 6 + 4 * ceil(6n / 3) <= 255 gives n <= 31. Node never splits
/// and corrupts the record beyond that; we put each chunk in a TXT record of its own.
pub const PEERS_PER_STRING: usize = 31;

/// A token's length: base64 of a SHA-256 digest.
pub const TOKEN_LEN: usize = 44;

/// A token as bytes (ASCII), without allocating.
pub type Token = [u8; TOKEN_LEN];

/// `base64(sha256(secret || ip-string))`, 44 ASCII bytes.
pub fn token(secret: &[u8; 32], ip: Ipv4Addr) -> String {
    let t = token_bytes(secret, ip);
    String::from_utf8_lossy(&t).into_owned()
}

/// [`token`] on the stack: the engine computes one per answer it sends or checks.
pub fn token_bytes(secret: &[u8; 32], ip: Ipv4Addr) -> Token {
    let mut h = Sha256::new();
    h.update(secret);
    // `a.b.c.d` formatted on the stack (at most 15 bytes).
    let mut dotted = [0u8; 15];
    let mut rest = &mut dotted[..];
    std::io::Write::write_fmt(&mut rest, format_args!("{ip}")).expect("15 bytes hold an IPv4");
    let n = 15 - rest.len();
    h.update(&dotted[..n]);
    let mut out = [0u8; TOKEN_LEN];
    let written = ENCODE
        .encode_slice(h.finalize(), &mut out)
        .expect("44 bytes hold base64 of 32");
    debug_assert_eq!(written, TOKEN_LEN);
    out
}

/// `peers=<base64 of ip|port entries>` for at most [`PEERS_PER_STRING`] entries.
pub fn peers_string(entries: &[SocketAddrV4]) -> String {
    let p = peers_txt(entries);
    String::from_utf8(p.as_bytes().to_vec()).expect("key and base64 are ASCII")
}

/// [`peers_string`] on the stack (entries beyond [`PEERS_PER_STRING`] are left out).
fn peers_txt(entries: &[SocketAddrV4]) -> TxtString {
    debug_assert!(entries.len() <= PEERS_PER_STRING);
    let mut raw = [0u8; 6 * PEERS_PER_STRING];
    let mut len = 0;
    for (e, out) in entries.iter().zip(raw.chunks_exact_mut(6)) {
        out[..4].copy_from_slice(&e.ip().octets());
        out[4..].copy_from_slice(&e.port().to_be_bytes());
        len += 6;
    }
    let mut p = TxtString::new(b"peers=");
    p.extend_base64(&raw[..len]);
    p
}

/// TXT records [`write_peer_answers`] writes for `n` entries.
pub fn answer_count(n: usize) -> usize {
    n.div_ceil(PEERS_PER_STRING).max(1)
}

/// The TXT answers for `name`: `["token=T", "peers=..."]`, one record per 31 entries, so
/// every string stays within 255 bytes and a Node receiver, which reads each TXT answer as
/// one key/value object (a second `peers=` in the same record would overwrite the first),
/// still sees every entry. No entries: `token=` alone, as Node.
/// Built on the stack: every announcer writes one for every query on its LAN.
pub fn write_peer_answers(w: &mut Writer, name: &[u8], token: &str, entries: &[SocketAddrV4]) {
    let mut t = TxtString::new(b"token=");
    t.extend(token.as_bytes());
    let mut chunks = entries.chunks(PEERS_PER_STRING).peekable();
    if chunks.peek().is_none() {
        w.txt(name, &[t.as_bytes()]);
    }
    for chunk in chunks {
        w.txt(name, &[t.as_bytes(), peers_txt(chunk).as_bytes()]);
    }
}

/// A TXT character-string on the stack, cut at 255 bytes as [`Writer::txt`] cuts one.
struct TxtString {
    len: usize,
    bytes: [u8; 255],
}

impl TxtString {
    fn new(key: &[u8]) -> Self {
        let mut s = TxtString {
            len: 0,
            bytes: [0; 255],
        };
        s.extend(key);
        s
    }

    fn extend(&mut self, more: &[u8]) {
        let n = more.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&more[..n]);
        self.len += n;
    }

    /// Appends `raw` in padded base64 (31 entries' worth fits after `peers=`).
    fn extend_base64(&mut self, raw: &[u8]) {
        let written = ENCODE
            .encode_slice(raw, &mut self.bytes[self.len..])
            .expect("a peers string's base64 fits in 255 bytes");
        self.len += written;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Splits `key=value` at the first `=`; a string without `=` has an empty value.
pub fn key_value(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b'=') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// Decodes a `peers` value into `out` (at most `cap` entries in all): see [`peers`].
pub fn decode_peers(value: &[u8], sender: Ipv4Addr, out: &mut Vec<SocketAddrV4>, cap: usize) {
    peers(value, sender, cap.saturating_sub(out.len()), |p| {
        out.push(p)
    });
}

/// Hands the first `limit` entries of a `peers` value to `peer`: `0.0.0.0` becomes `sender`;
/// trailing bytes (< 6) are ignored as Node does; invalid base64, or more than a TXT string
/// can hold, yields nothing. Decoded on the stack: every answer on a LAN carries a `peers`
/// string, and a heap buffer per answer was an allocation per delivered datagram. A TXT
/// string is at most 255 bytes, which decode to at most 192. A callback rather than an
/// iterator, which would carry (and move) that buffer.
pub fn peers(value: &[u8], sender: Ipv4Addr, limit: usize, mut peer: impl FnMut(SocketAddrV4)) {
    let mut entry = |ip: u32, port: u16| {
        let ip = if ip == 0 { sender } else { Ipv4Addr::from(ip) };
        peer(SocketAddrV4::new(ip, port));
    };
    if let Some(entries) = whole_quads(value) {
        // Eight characters are one entry's six bytes: read straight into its numbers.
        for chars in entries.chunks_exact(8).take(limit) {
            let bits = chars
                .iter()
                .fold(0u64, |n, &c| n << 6 | u64::from(SEXTETS[usize::from(c)]));
            entry((bits >> 16) as u32, bits as u16);
        }
        return;
    }
    let mut raw = [0u8; 192];
    let len = DECODE.decode_slice(value, &mut raw).unwrap_or(0);
    for e in raw[..len].chunks_exact(6).take(limit) {
        entry(
            u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            u16::from_be_bytes([e[4], e[5]]),
        );
    }
}

/// Each byte's value in the standard base64 alphabet; `NOT_BASE64` for the others.
const SEXTETS: [u8; 256] = sextets();
const NOT_BASE64: u8 = 0xff;

const fn sextets() -> [u8; 256] {
    let mut table = [NOT_BASE64; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
}

/// `value` if it is whole groups of four alphabet characters, at most a TXT string's worth,
/// which read the same under any padding or trailing-bit rule; `None` leaves anything else
/// to the general decoder. Node writes every `peers` value so (six bytes an entry), and the
/// general decoder's setup cost more than the decoding of such a short value.
fn whole_quads(value: &[u8]) -> Option<&[u8]> {
    let fits = value.len() % 4 == 0 && value.len() / 4 * 3 <= 192;
    (fits && value.iter().all(|&c| SEXTETS[usize::from(c)] != NOT_BASE64)).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_7001_golden() {
        let s = peers_string(&[SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7001)]);
        assert_eq!(s, "peers=AAAAABtZ");
    }

    #[test]
    fn token_shape_and_determinism() {
        let t = token(&[7; 32], Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(t.len(), 44);
        assert_eq!(t, token(&[7; 32], Ipv4Addr::new(10, 0, 0, 1)));
        assert_ne!(t, token(&[7; 32], Ipv4Addr::new(10, 0, 0, 2)));
        // sha256 of 32 zero bytes followed by "127.0.0.1", computed independently.
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(b"127.0.0.1");
        assert_eq!(
            token(&[0; 32], Ipv4Addr::LOCALHOST),
            ENCODE.encode(h.finalize())
        );
    }

    quickcheck::quickcheck! {
        /// The fast path reads what the general decoder reads: values drawn from the
        /// alphabet, padding and a few other bytes, of every length up to past 256.
        fn peers_match_the_general_decoder(picks: Vec<u8>, extra: u16) -> bool {
            let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=!-_ ";
            let len = picks.len() + usize::from(extra % 200);
            let value: Vec<u8> = (0..len)
                .map(|i| {
                    let p = picks.get(i).copied().unwrap_or(i as u8);
                    // Mostly the alphabet; one pick in sixteen is padding or junk.
                    let i = if p % 16 == 0 { 64 + usize::from(p / 16) % 5 } else { usize::from(p) % 64 };
                    chars[i]
                })
                .collect();
            let sender = Ipv4Addr::new(9, 9, 9, 9);
            let mut raw = [0u8; 192];
            let n = DECODE.decode_slice(&value, &mut raw).unwrap_or(0);
            let general = raw[..n].chunks_exact(6).map(|e| {
                let ip = Ipv4Addr::new(e[0], e[1], e[2], e[3]);
                let ip = if ip.is_unspecified() { sender } else { ip };
                SocketAddrV4::new(ip, u16::from_be_bytes([e[4], e[5]]))
            });
            let mut decoded = Vec::new();
            peers(&value, sender, usize::MAX, |p| decoded.push(p));
            decoded.into_iter().eq(general)
        }

        fn token_bytes_is_token(ip: u32, secret_byte: u8) -> bool {
            let ip = Ipv4Addr::from(ip);
            let secret = [secret_byte; 32];
            let mut h = Sha256::new();
            h.update(secret);
            h.update(ip.to_string().as_bytes());
            token_bytes(&secret, ip)[..] == *ENCODE.encode(h.finalize()).as_bytes()
        }
    }

    #[test]
    fn thirty_one_peers_fit_one_string() {
        let e = vec![SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5); 31];
        assert!(peers_string(&e).len() <= 255);
    }

    #[test]
    fn decode_is_lenient_and_capped() {
        let sender = Ipv4Addr::new(9, 9, 9, 9);
        let mut out = Vec::new();
        decode_peers(b"AAAAABtZ", sender, &mut out, 10);
        assert_eq!(out, [SocketAddrV4::new(sender, 7001)]);
        out.clear();
        // 7 bytes: one entry and a stray byte; unpadded.
        decode_peers(b"AQIDBAAFBg", sender, &mut out, 10);
        assert_eq!(out, [SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 5)]);
        out.clear();
        decode_peers(b"!!not base64", sender, &mut out, 10);
        decode_peers(b"AAAAABtZAAAAABtZ", sender, &mut out, 1);
        assert_eq!(out.len(), 1);
        // The most a TXT string holds: 31 peers, every one read back.
        let most: Vec<_> = (1..=31u8)
            .map(|i| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 7000 + u16::from(i)))
            .collect();
        let string = peers_string(&most);
        let (_, value) = key_value(string.as_bytes());
        out.clear();
        decode_peers(value, sender, &mut out, 100);
        assert_eq!(out, most);
        // Longer than a TXT string can be: nothing.
        out.clear();
        decode_peers(&[b'A'; 300], sender, &mut out, 100);
        assert!(out.is_empty());
        // Exactly what fits the buffer (192 bytes, 32 entries), and one group past it.
        decode_peers(&[b'B'; 256], sender, &mut out, 100);
        assert_eq!(out.len(), 32);
        out.clear();
        decode_peers(&[b'B'; 260], sender, &mut out, 100);
        assert!(out.is_empty());
        assert_eq!(key_value(b"a=b=c"), (&b"a"[..], &b"b=c"[..]));
        assert_eq!(key_value(b"flag"), (&b"flag"[..], &b""[..]));
    }
}
