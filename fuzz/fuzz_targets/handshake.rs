//! Chunked decoding of the built-in handshake must agree with one-shot decoding, and the
//! decoder never holds more id bytes than its cap.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use swarm_core::handshake::{HandshakeDecoder, Progress};
use swarm_core::HandshakeError;

#[derive(Arbitrary, Debug)]
struct Case {
    max_id_len: u16,
    /// Chunk sizes; once they run out the rest is fed at once.
    chunks: Vec<u8>,
    data: Vec<u8>,
}

/// `Ok((id, consumed))`, or the error; running out of input counts as `Truncated`.
type Outcome = Result<(Vec<u8>, usize), HandshakeError>;

fn feed(
    decoder: &mut HandshakeDecoder,
    max: usize,
    data: &[u8],
) -> Result<Progress, HandshakeError> {
    let result = decoder.feed(data);
    assert!(
        decoder.id().len() <= max,
        "decoder holds {} id bytes, cap {max}",
        decoder.id().len()
    );
    if let Ok(Progress::Complete { consumed }) = result {
        assert!(consumed <= data.len());
    }
    result
}

fn finish(mut decoder: HandshakeDecoder, result: Result<usize, HandshakeError>) -> Outcome {
    match result {
        Ok(consumed) => {
            assert!(decoder.is_complete());
            // A finished decoder consumes nothing more.
            assert_eq!(
                decoder.feed(b"more"),
                Ok(Progress::Complete { consumed: 0 })
            );
            let id = decoder.take_id();
            assert!(!id.is_empty());
            Ok((id, consumed))
        }
        Err(error) => {
            assert!(!decoder.is_complete());
            if error != HandshakeError::Truncated {
                // A failed decoder stays failed.
                assert!(decoder.feed(b"more").is_err());
                assert!(decoder.id().is_empty());
            }
            Err(error)
        }
    }
}

fn one_shot(data: &[u8], max: usize) -> Outcome {
    let mut decoder = HandshakeDecoder::new(max);
    let result = match feed(&mut decoder, max, data) {
        Ok(Progress::Complete { consumed }) => Ok(consumed),
        Ok(Progress::NeedMore) => Err(HandshakeError::Truncated),
        Err(e) => Err(e),
    };
    finish(decoder, result)
}

fn chunked(data: &[u8], max: usize, chunks: &[u8]) -> Outcome {
    let mut decoder = HandshakeDecoder::new(max);
    let mut sizes = chunks
        .iter()
        .map(|&c| usize::from(c))
        .chain(core::iter::repeat(usize::MAX));
    let mut offset = 0;
    let result = loop {
        let size = sizes.next().unwrap().min(data.len() - offset);
        match feed(&mut decoder, max, &data[offset..offset + size]) {
            Ok(Progress::Complete { consumed }) => break Ok(offset + consumed),
            Ok(Progress::NeedMore) if offset + size == data.len() => {
                break Err(HandshakeError::Truncated)
            }
            Ok(Progress::NeedMore) => offset += size,
            Err(e) => break Err(e),
        }
    };
    finish(decoder, result)
}

fuzz_target!(|case: Case| {
    let max = usize::from(case.max_id_len);
    let expected = one_shot(&case.data, max);
    let got = chunked(&case.data, max, &case.chunks);
    assert_eq!(got, expected, "chunks {:?}", case.chunks);
});
