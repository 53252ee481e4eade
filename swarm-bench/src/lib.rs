//! Shared pieces of the handshake benchmark: the discovery-swarm handshake framing
//! (`varint(len(id)) || id`, see PROTOCOLS.md 1.2), a tiny id generator, and `/proc`
//! sampling of a server process (CPU time and resident memory).

use std::io;

/// Largest remote id accepted by the benchmark tools (PROTOCOLS.md 1.2.3 suggests 256).
pub const MAX_ID_LEN: usize = 256;
/// Longest accepted varint prefix (5 bytes cover any `u32`).
pub const MAX_PREFIX_LEN: usize = 5;
/// Size of a buffer that always holds a complete handshake of at most [`MAX_ID_LEN`] bytes.
pub const HANDSHAKE_BUF_LEN: usize = MAX_PREFIX_LEN + MAX_ID_LEN;
/// Default id length (Node's `crypto.randomBytes(32)`), so a handshake is `0x20` + 32 bytes.
pub const ID_LEN: usize = 32;
/// Bytes of a default handshake.
pub const HANDSHAKE_LEN: usize = 1 + ID_LEN;

/// Why a received handshake prefix was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    /// The varint did not terminate within [`MAX_PREFIX_LEN`] bytes.
    TooLong,
    /// `len = 0` (Node would wait forever, PROTOCOLS.md 1.2.2).
    Zero,
    /// `len > MAX_ID_LEN`.
    Oversized(u64),
}

impl std::fmt::Display for PrefixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrefixError::TooLong => {
                write!(f, "handshake varint longer than {MAX_PREFIX_LEN} bytes")
            }
            PrefixError::Zero => write!(f, "handshake id length 0"),
            PrefixError::Oversized(n) => write!(f, "handshake id length {n} > {MAX_ID_LEN}"),
        }
    }
}

impl std::error::Error for PrefixError {}

impl From<PrefixError> for io::Error {
    fn from(e: PrefixError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Decodes the unsigned LEB128 length prefix at the start of `buf`.
///
/// Returns `Ok(None)` while the varint is incomplete, `Ok(Some((id_len, prefix_len)))` once
/// it is complete, and an error for a prefix a robust peer rejects.
pub fn decode_prefix(buf: &[u8]) -> Result<Option<(usize, usize)>, PrefixError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(MAX_PREFIX_LEN) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if value == 0 {
                return Err(PrefixError::Zero);
            }
            if value > MAX_ID_LEN as u64 {
                return Err(PrefixError::Oversized(value));
            }
            return Ok(Some((value as usize, i + 1)));
        }
    }
    if buf.len() >= MAX_PREFIX_LEN {
        Err(PrefixError::TooLong)
    } else {
        Ok(None)
    }
}

/// If `buf` starts with a complete handshake, returns `(id_len, total_len)`.
pub fn complete_handshake(buf: &[u8]) -> Result<Option<(usize, usize)>, PrefixError> {
    Ok(match decode_prefix(buf)? {
        Some((len, prefix)) if buf.len() >= prefix + len => Some((len, prefix + len)),
        _ => None,
    })
}

/// SplitMix64: fast, statistically fine for random peer ids (not for cryptography).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Seeds from the clock, the process id and `salt`.
    pub fn from_entropy(salt: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut s = SplitMix64(t ^ (u64::from(std::process::id()) << 32) ^ salt);
        s.next_u64();
        s
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Writes a fresh default handshake (`0x20` + 32 random bytes) into `out`.
    pub fn fill_handshake(&mut self, out: &mut [u8; HANDSHAKE_LEN]) {
        out[0] = ID_LEN as u8;
        for chunk in out[1..].chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `/proc` sampling of a server process and its descendants (so that a wrapper command
/// such as `sh -c` still accounts for the real server).
pub mod procfs {
    use std::fs;
    use std::io;

    /// Linux reports utime/stime in USER_HZ ticks, which the kernel fixes at 100 on every
    /// architecture this benchmark targets (x86_64, aarch64).
    pub const CLK_TCK: u64 = 100;

    struct Stat {
        ppid: u32,
        ticks: u64,
    }

    fn read_stat(pid: u32) -> io::Result<Stat> {
        let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may contain spaces and parentheses: parse after the last ')'.
        let rest = s
            .rfind(')')
            .map(|i| &s[i + 1..])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] = state (field 3), f[1] = ppid (4), f[11] = utime (14), f[12] = stime (15).
        let num = |i: usize| -> io::Result<u64> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))
        };
        Ok(Stat {
            ppid: num(1)? as u32,
            ticks: num(11)? + num(12)?,
        })
    }

    /// `pid` and all its live descendants.
    pub fn process_tree(pid: u32) -> Vec<u32> {
        let mut all: Vec<(u32, u32)> = Vec::new();
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.flatten() {
                if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                    if let Ok(st) = read_stat(p) {
                        all.push((p, st.ppid));
                    }
                }
            }
        }
        let mut tree = vec![pid];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
            i += 1;
        }
        tree
    }

    /// user + system CPU time (all threads) of `pid`'s process tree, in microseconds.
    pub fn cpu_us(pid: u32) -> io::Result<u64> {
        let mut ticks = read_stat(pid)?.ticks;
        for p in process_tree(pid).into_iter().skip(1) {
            ticks += read_stat(p).map(|s| s.ticks).unwrap_or(0);
        }
        Ok(ticks * 1_000_000 / CLK_TCK)
    }

    fn vm_rss_kib(pid: u32) -> io::Result<u64> {
        let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS"))
    }

    /// VmRSS of `pid`'s process tree, in KiB.
    pub fn rss_kib(pid: u32) -> io::Result<u64> {
        let mut kib = vm_rss_kib(pid)?;
        for p in process_tree(pid).into_iter().skip(1) {
            kib += vm_rss_kib(p).unwrap_or(0);
        }
        Ok(kib)
    }
}

/// The runtime every benchmark server runs on, so that servers differ only in their own code.
pub fn server_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The `i`th command-line argument as a number, or `default` if it is missing or not one
/// (the core benches take a few positional numbers).
pub fn positional_arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_decoding() {
        assert_eq!(decode_prefix(&[]), Ok(None));
        assert_eq!(decode_prefix(&[0x20]), Ok(Some((32, 1))));
        assert_eq!(decode_prefix(&[0x80]), Ok(None));
        assert_eq!(decode_prefix(&[0x80, 0x02]), Ok(Some((256, 2))));
        assert_eq!(
            decode_prefix(&[0x81, 0x02]),
            Err(PrefixError::Oversized(257))
        );
        assert_eq!(decode_prefix(&[0x00]), Err(PrefixError::Zero));
        assert_eq!(decode_prefix(&[0x80; 5]), Err(PrefixError::TooLong));
    }

    #[test]
    fn complete() {
        let mut hs = [0u8; HANDSHAKE_LEN];
        SplitMix64::new(1).fill_handshake(&mut hs);
        assert_eq!(hs[0], 0x20);
        assert_eq!(complete_handshake(&hs[..1]), Ok(None));
        assert_eq!(complete_handshake(&hs[..32]), Ok(None));
        assert_eq!(complete_handshake(&hs), Ok(Some((32, 33))));
        let mut more = hs.to_vec();
        more.extend_from_slice(b"app data");
        assert_eq!(complete_handshake(&more), Ok(Some((32, 33))));
    }

    #[test]
    fn own_process_is_sampled() {
        let pid = std::process::id();
        assert!(procfs::rss_kib(pid).unwrap() > 0);
        procfs::cpu_us(pid).unwrap();
        assert_eq!(procfs::process_tree(pid)[0], pid);
    }
}
