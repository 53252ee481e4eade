//! The default discovery-swarm handshake: `varint(len(id)) || id`, sent by both sides at once.
//!
//! The decoder is incremental (input may be split at any byte), caps the varint at 5 bytes and
//! the id at a configured length, and never allocates more than the bytes that actually arrived.

use bytes::{BufMut, Bytes, BytesMut};
use core::fmt;

/// Longest varint accepted for the id length. 5 bytes carry 35 bits, more than any id needs.
pub const MAX_VARINT_LEN: usize = 5;
/// Default cap on the remote id length. Node sends its configured id, 32 bytes by default.
pub const DEFAULT_MAX_ID_LEN: usize = 256;

/// Why a handshake was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer announced an empty id (Node would wait forever on this).
    ZeroLength,
    /// The length prefix ran past [`MAX_VARINT_LEN`] bytes.
    VarintTooLong,
    /// The announced id length exceeds the cap.
    IdTooLong { len: u64, max: usize },
    /// The peer closed the connection before its id was complete.
    Truncated,
    /// No complete handshake within the handshake timeout.
    TimedOut,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::ZeroLength => f.write_str("zero-length id"),
            HandshakeError::VarintTooLong => f.write_str("id length varint longer than 5 bytes"),
            HandshakeError::IdTooLong { len, max } => {
                write!(f, "id length {len} exceeds the cap of {max} bytes")
            }
            HandshakeError::Truncated => f.write_str("connection closed during the handshake"),
            HandshakeError::TimedOut => f.write_str("handshake timed out"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Appends the unsigned LEB128 encoding of `value` to `out`.
pub fn put_varint(out: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// The bytes we send: `varint(len(id)) || id`.
pub fn encode_handshake(id: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(id.len() + MAX_VARINT_LEN);
    put_varint(&mut out, id.len() as u64);
    out.extend_from_slice(id);
    out.freeze()
}

/// What [`HandshakeDecoder::feed`] made of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every byte was consumed and the id is not complete yet.
    NeedMore,
    /// The id is complete after `consumed` bytes of this input; the rest is application data.
    Complete { consumed: usize },
}

#[derive(Clone, Debug)]
enum State {
    Length { value: u64, bytes: usize },
    Id { len: usize },
    Done,
    Failed,
}

/// Incremental decoder for the remote side's handshake.
#[derive(Clone, Debug)]
pub struct HandshakeDecoder {
    state: State,
    id: Vec<u8>,
    max_id_len: usize,
}

impl HandshakeDecoder {
    /// A decoder accepting ids of `1..=max_id_len` bytes.
    pub fn new(max_id_len: usize) -> Self {
        HandshakeDecoder {
            state: State::Length { value: 0, bytes: 0 },
            id: Vec::new(),
            max_id_len,
        }
    }

    /// The remote id, complete once `feed` returned [`Progress::Complete`].
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// Takes the decoded id out of the decoder.
    pub fn take_id(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.id)
    }

    /// Whether the id is complete.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds the next bytes from the wire. After an error or completion, further calls fail or
    /// report completion with nothing consumed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, HandshakeError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Done => return Ok(Progress::Complete { consumed: pos }),
                State::Failed => return Err(HandshakeError::Truncated),
                State::Length { value, bytes } => {
                    let Some(&byte) = data.get(pos) else {
                        return Ok(Progress::NeedMore);
                    };
                    pos += 1;
                    let value = value | (u64::from(byte & 0x7f) << (7 * bytes));
                    let bytes = bytes + 1;
                    if byte & 0x80 != 0 {
                        if bytes == MAX_VARINT_LEN {
                            return self.fail(HandshakeError::VarintTooLong);
                        }
                        self.state = State::Length { value, bytes };
                        continue;
                    }
                    if value == 0 {
                        return self.fail(HandshakeError::ZeroLength);
                    }
                    if value > self.max_id_len as u64 {
                        return self.fail(HandshakeError::IdTooLong {
                            len: value,
                            max: self.max_id_len,
                        });
                    }
                    self.state = State::Id {
                        len: value as usize,
                    };
                }
                State::Id { len } => {
                    let wanted = len - self.id.len();
                    let available = &data[pos..];
                    let take = wanted.min(available.len());
                    self.id.extend_from_slice(&available[..take]);
                    pos += take;
                    if self.id.len() < len {
                        return Ok(Progress::NeedMore);
                    }
                    self.state = State::Done;
                }
            }
        }
    }

    fn fail(&mut self, error: HandshakeError) -> Result<Progress, HandshakeError> {
        self.state = State::Failed;
        self.id = Vec::new();
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    fn one_shot(input: &[u8], max: usize) -> Result<(Vec<u8>, usize), HandshakeError> {
        let mut decoder = HandshakeDecoder::new(max);
        match decoder.feed(input)? {
            Progress::Complete { consumed } => Ok((decoder.take_id(), consumed)),
            Progress::NeedMore => Err(HandshakeError::Truncated),
        }
    }

    #[test]
    fn decodes_node_default_handshake_with_trailing_data() {
        let id = [7u8; 32];
        let mut wire = encode_handshake(&id).to_vec();
        assert_eq!(wire[0], 0x20);
        wire.extend_from_slice(b"hello");
        let (got, consumed) = one_shot(&wire, DEFAULT_MAX_ID_LEN).unwrap();
        assert_eq!(got, id);
        assert_eq!(&wire[consumed..], b"hello");
    }

    #[test]
    fn rejects_zero_length() {
        assert_eq!(one_shot(&[0, 1, 2], 256), Err(HandshakeError::ZeroLength));
    }

    #[test]
    fn rejects_two_to_the_31_without_allocating() {
        let mut decoder = HandshakeDecoder::new(256);
        let err = decoder.feed(&[0x80, 0x80, 0x80, 0x80, 0x08]).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::IdTooLong {
                len: 1 << 31,
                max: 256
            }
        );
        assert_eq!(decoder.id.capacity(), 0);
    }

    #[test]
    fn rejects_six_byte_varint() {
        let err = one_shot(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 256).unwrap_err();
        assert_eq!(err, HandshakeError::VarintTooLong);
    }

    #[test]
    fn truncated_varint_waits() {
        let mut decoder = HandshakeDecoder::new(256);
        assert_eq!(decoder.feed(&[0x80]), Ok(Progress::NeedMore));
        assert!(!decoder.is_complete());
    }

    #[test]
    fn accepts_non_canonical_varint_like_node() {
        let mut wire = vec![0x88, 0x00];
        wire.extend_from_slice(&[1; 8]);
        assert_eq!(one_shot(&wire, 256).unwrap().0, vec![1; 8]);
    }

    #[test]
    fn accepts_max_and_rejects_max_plus_one() {
        assert!(one_shot(&encode_handshake(&[3; 256]), 256).is_ok());
        let err = one_shot(&encode_handshake(&[3; 257]), 256).unwrap_err();
        assert_eq!(err, HandshakeError::IdTooLong { len: 257, max: 256 });
    }

    quickcheck! {
        fn any_chunking_matches_one_shot(input: Vec<u8>, cuts: Vec<u8>) -> TestResult {
            let expected = one_shot(&input, 64);
            let mut decoder = HandshakeDecoder::new(64);
            let mut offset = 0;
            let mut outcome = None;
            let mut sizes = cuts.iter().map(|c| usize::from(*c % 7)).chain(core::iter::repeat(usize::MAX));
            while outcome.is_none() {
                let size = sizes.next().unwrap_or(usize::MAX).min(input.len() - offset);
                match decoder.feed(&input[offset..offset + size]) {
                    Ok(Progress::Complete { consumed }) => outcome = Some(Ok(offset + consumed)),
                    Ok(Progress::NeedMore) if offset + size == input.len() => outcome = Some(Err(HandshakeError::Truncated)),
                    Ok(Progress::NeedMore) => offset += size,
                    Err(e) => outcome = Some(Err(e)),
                }
            }
            let got = outcome.unwrap().map(|consumed| (decoder.take_id(), consumed));
            TestResult::from_bool(got == expected)
        }

        fn round_trips(id: Vec<u8>, trailing: Vec<u8>) -> TestResult {
            if id.is_empty() || id.len() > 256 {
                return TestResult::discard();
            }
            let mut wire = encode_handshake(&id).to_vec();
            wire.extend_from_slice(&trailing);
            let (got, consumed) = one_shot(&wire, 256).unwrap();
            TestResult::from_bool(got == id && wire[consumed..] == trailing[..])
        }
    }
}
