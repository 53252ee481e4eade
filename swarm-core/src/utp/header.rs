//! The uTP packet: 20-byte header, extension chain, payload (BEP 29, PROTOCOLS.md 5.1).
//!
//! [`PacketView`] is a checked zero-copy view; [`Packet`] is the parsed form. `Packet::parse`
//! and `Packet::emit` round-trip (property-tested below).

use bytes::{BufMut, BytesMut};

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Extension type of a selective ACK.
pub const EXT_SACK: u8 = 1;

/// The five packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    Data = 0,
    Fin = 1,
    State = 2,
    Reset = 3,
    Syn = 4,
}

impl PacketType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            _ => return None,
        })
    }
}

/// Why a datagram is not a well-formed uTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than the 20-byte header.
    Truncated,
    /// Low nibble of byte 0 is not 1.
    Version(u8),
    /// High nibble of byte 0 is 5 or more.
    Type(u8),
    /// First extension is 3 or more: libutp does not claim such datagrams (PROTOCOLS.md 1.11).
    FirstExtension(u8),
    /// An extension runs past the end of the datagram.
    ExtensionTruncated,
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeaderError::Truncated => f.write_str("shorter than a uTP header"),
            HeaderError::Version(v) => write!(f, "uTP version {v}"),
            HeaderError::Type(t) => write!(f, "uTP packet type {t}"),
            HeaderError::FirstExtension(e) => write!(f, "uTP first extension {e}"),
            HeaderError::ExtensionTruncated => f.write_str("uTP extension truncated"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Does libutp claim this datagram? `len >= 20`, version 1, type < 5, first extension < 3.
/// The extension chain is not checked here, exactly as libutp's classifier does not.
pub fn looks_like_utp(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] & 0x0f == VERSION && data[0] >> 4 < 5 && data[1] < 3
}

/// A checked view over a datagram: every accessor is in bounds once `new_checked` passed.
#[derive(Clone, Copy, Debug)]
pub struct PacketView<T: AsRef<[u8]>> {
    buffer: T,
    /// Where the payload starts (after the extension chain).
    payload_at: usize,
    /// Byte range of the first selective-ACK extension's mask, if any.
    sack: Option<(usize, usize)>,
}

impl<T: AsRef<[u8]>> PacketView<T> {
    /// Validates the header and walks the extension chain.
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Truncated);
        }
        if b[0] & 0x0f != VERSION {
            return Err(HeaderError::Version(b[0] & 0x0f));
        }
        if PacketType::from_u8(b[0] >> 4).is_none() {
            return Err(HeaderError::Type(b[0] >> 4));
        }
        if b[1] >= 3 {
            return Err(HeaderError::FirstExtension(b[1]));
        }
        // Later extension types are skipped whatever they are, as libutp does.
        let (mut next, mut at, mut sack) = (b[1], HEADER_LEN, None);
        while next != 0 {
            if at + 2 > b.len() {
                return Err(HeaderError::ExtensionTruncated);
            }
            let (ty, len) = (next, usize::from(b[at + 1]));
            next = b[at];
            at += 2;
            if at + len > b.len() {
                return Err(HeaderError::ExtensionTruncated);
            }
            if ty == EXT_SACK && sack.is_none() && len > 0 {
                sack = Some((at, at + len));
            }
            at += len;
        }
        Ok(PacketView {
            buffer,
            payload_at: at,
            sack,
        })
    }

    fn u16_at(&self, i: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[i], b[i + 1]])
    }

    fn u32_at(&self, i: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    pub fn packet_type(&self) -> PacketType {
        // Checked in new_checked.
        PacketType::from_u8(self.buffer.as_ref()[0] >> 4).unwrap_or(PacketType::Reset)
    }
    pub fn connection_id(&self) -> u16 {
        self.u16_at(2)
    }
    pub fn timestamp(&self) -> u32 {
        self.u32_at(4)
    }
    pub fn timestamp_diff(&self) -> u32 {
        self.u32_at(8)
    }
    pub fn wnd_size(&self) -> u32 {
        self.u32_at(12)
    }
    pub fn seq_nr(&self) -> u16 {
        self.u16_at(16)
    }
    pub fn ack_nr(&self) -> u16 {
        self.u16_at(18)
    }
    /// The selective-ACK bitmask, any length.
    pub fn sack(&self) -> Option<&[u8]> {
        self.sack.map(|(s, e)| &self.buffer.as_ref()[s..e])
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_at..]
    }
}

/// A parsed packet borrowing its SACK mask and payload from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ty: PacketType,
    pub conn_id: u16,
    pub timestamp: u32,
    pub timestamp_diff: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
    /// Bit `i` (LSB first within each byte) means `ack_nr + 2 + i` was received.
    pub sack: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, HeaderError> {
        let v = PacketView::new_checked(data)?;
        Ok(Packet {
            ty: v.packet_type(),
            conn_id: v.connection_id(),
            timestamp: v.timestamp(),
            timestamp_diff: v.timestamp_diff(),
            wnd_size: v.wnd_size(),
            seq_nr: v.seq_nr(),
            ack_nr: v.ack_nr(),
            sack: v.sack.map(|(s, e)| &data[s..e]),
            payload: &data[v.payload_at..],
        })
    }

    /// Bytes `emit` appends.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.sack.map_or(0, |m| 2 + m.len().min(255)) + self.payload.len()
    }

    /// Never empty: the header alone is 20 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the packet to `out`. A SACK mask longer than 255 bytes is cut to 255.
    pub fn emit(&self, out: &mut BytesMut) {
        out.reserve(self.len());
        out.put_u8((self.ty as u8) << 4 | VERSION);
        out.put_u8(if self.sack.is_some() { EXT_SACK } else { 0 });
        out.put_u16(self.conn_id);
        out.put_u32(self.timestamp);
        out.put_u32(self.timestamp_diff);
        out.put_u32(self.wnd_size);
        out.put_u16(self.seq_nr);
        out.put_u16(self.ack_nr);
        if let Some(mask) = self.sack {
            let mask = &mask[..mask.len().min(255)];
            out.put_u8(0);
            out.put_u8(mask.len() as u8);
            out.put_slice(mask);
        }
        out.put_slice(self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    /// Node's first SYN (PROTOCOLS.md 5.2): id 0x4567, seq 0x23c6, wnd 1 MiB.
    const NODE_SYN: [u8; 20] = [
        0x41, 0x00, 0x45, 0x67, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,
        0x00, 0x23, 0xc6, 0x00, 0x00,
    ];

    #[test]
    fn golden_node_syn() {
        let p = Packet::parse(&NODE_SYN).unwrap();
        assert_eq!(p.ty, PacketType::Syn);
        assert_eq!(p.conn_id, 0x4567);
        assert_eq!(p.timestamp, 0x0102_0304);
        assert_eq!(p.timestamp_diff, 0);
        assert_eq!(p.wnd_size, 1 << 20);
        assert_eq!((p.seq_nr, p.ack_nr), (0x23c6, 0));
        assert_eq!(p.sack, None);
        let mut out = BytesMut::new();
        p.emit(&mut out);
        assert_eq!(&out[..], &NODE_SYN[..]);
    }

    #[test]
    fn golden_state_with_sack() {
        let mask = [0b0000_0101, 0, 0, 0x80];
        let p = Packet {
            ty: PacketType::State,
            conn_id: 0x4567,
            timestamp: 1,
            timestamp_diff: 2,
            wnd_size: 3,
            seq_nr: 0xbeef,
            ack_nr: 0x23c6,
            sack: Some(&mask),
            payload: &[],
        };
        let mut out = BytesMut::new();
        p.emit(&mut out);
        let expect = [
            0x21, 0x01, 0x45, 0x67, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xef, 0x23, 0xc6, 0,
            4, 0x05, 0, 0, 0x80,
        ];
        assert_eq!(&out[..], &expect[..]);
        assert_eq!(Packet::parse(&out).unwrap(), p);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(Packet::parse(&NODE_SYN[..19]), Err(HeaderError::Truncated));
        let mut b = NODE_SYN;
        b[0] = 0x42;
        assert_eq!(Packet::parse(&b), Err(HeaderError::Version(2)));
        b[0] = 0x51;
        assert_eq!(Packet::parse(&b), Err(HeaderError::Type(5)));
        b[0] = 0x41;
        b[1] = 3;
        assert_eq!(Packet::parse(&b), Err(HeaderError::FirstExtension(3)));
        b[1] = 1;
        assert_eq!(Packet::parse(&b), Err(HeaderError::ExtensionTruncated));
        let mut long = b.to_vec();
        long.extend_from_slice(&[0, 8, 1, 2, 3]);
        assert_eq!(Packet::parse(&long), Err(HeaderError::ExtensionTruncated));
    }

    #[test]
    fn extension_bits_are_skipped_and_sack_of_any_length_kept() {
        let mut b = NODE_SYN.to_vec();
        b[1] = 2; // extension bits (8 bytes), then a 12-byte SACK, then payload
        b.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0, 12, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(b"hi");
        let p = Packet::parse(&b).unwrap();
        assert_eq!(p.sack.unwrap().len(), 12);
        assert_eq!(p.payload, b"hi");
    }

    #[test]
    fn classification_of_pr_1_11() {
        assert!(looks_like_utp(&NODE_SYN));
        assert!(!looks_like_utp(&NODE_SYN[..19]));
        let mut b = NODE_SYN;
        b[0] = 0x64; // 'd': every bencoded KRPC message
        assert!(!looks_like_utp(&b));
        b[0] = 0x51;
        assert!(!looks_like_utp(&b));
        b[0] = 0x01;
        b[1] = 2;
        assert!(looks_like_utp(&b));
        b[1] = 3;
        assert!(!looks_like_utp(&b));
    }

    quickcheck! {
        fn parse_emit_roundtrip(
            fields: (u8, u16, u32, u32, u32, u16, u16),
            sack: Option<Vec<u8>>,
            payload: Vec<u8>
        ) -> TestResult {
            let (ty, conn_id, timestamp, timestamp_diff, wnd_size, seq_nr, ack_nr) = fields;
            let sack = sack.filter(|m| !m.is_empty() && m.len() < 256);
            let p = Packet {
                ty: PacketType::from_u8(ty % 5).unwrap(),
                conn_id, timestamp, timestamp_diff, wnd_size, seq_nr, ack_nr,
                sack: sack.as_deref(),
                payload: &payload,
            };
            let mut out = BytesMut::new();
            p.emit(&mut out);
            if out.len() != p.len() || !looks_like_utp(&out) {
                return TestResult::failed();
            }
            TestResult::from_bool(Packet::parse(&out) == Ok(p))
        }

        fn parse_never_panics(data: Vec<u8>) -> bool {
            let _ = Packet::parse(&data);
            true
        }
    }
}
