//! Strict, zero-copy bencode (BEP 3) for KRPC datagrams.
//!
//! Parsing borrows the input: byte strings are slices of it. Only the canonical form is
//! accepted (no leading zeros, no `-0`, dictionary keys strictly ascending), so
//! `emit(parse(b)) == b` for every accepted `b`; every encoder we interoperate with (Node's
//! `bencode`, libtorrent) emits canonical bencode. Depth and item count are capped, so a
//! hostile datagram costs bounded time and memory; the parser never panics.

use core::fmt;

/// Limits applied while parsing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Nesting depth of lists and dictionaries (KRPC needs 3).
    pub max_depth: usize,
    /// Values in the whole document, counting containers, keys excluded.
    pub max_items: usize,
}

impl Limits {
    /// Generous for KRPC (a Node `find_node` reply can hold hundreds of values) yet small
    /// enough that a datagram costs microseconds.
    pub const KRPC: Limits = Limits {
        max_depth: 8,
        max_items: 1024,
    };
}

/// A parsed value borrowing from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Keys in strictly ascending order.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value under `key` if this is a dictionary holding it.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries
                .binary_search_by(|(k, _)| (*k).cmp(key))
                .ok()
                .map(|i| &entries[i].1),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// Why a document was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    Truncated,
    /// A byte that cannot start or continue a value here, at this offset.
    Unexpected(usize),
    /// An integer that is empty, non-canonical or does not fit in `i64`.
    BadInt(usize),
    /// A string length that is non-canonical or runs past the input.
    BadLength(usize),
    /// A dictionary key that is not a byte string.
    KeyNotString(usize),
    /// Dictionary keys out of order or repeated.
    UnsortedKeys(usize),
    TooDeep,
    TooManyItems,
    /// Bytes after the top-level value.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "truncated bencode"),
            DecodeError::Unexpected(at) => write!(f, "unexpected byte at {at}"),
            DecodeError::BadInt(at) => write!(f, "bad integer at {at}"),
            DecodeError::BadLength(at) => write!(f, "bad string length at {at}"),
            DecodeError::KeyNotString(at) => write!(f, "dictionary key at {at} is not a string"),
            DecodeError::UnsortedKeys(at) => write!(f, "unsorted or repeated key at {at}"),
            DecodeError::TooDeep => write!(f, "nesting too deep"),
            DecodeError::TooManyItems => write!(f, "too many values"),
            DecodeError::TrailingBytes(at) => write!(f, "trailing bytes at {at}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Parses exactly one value spanning all of `input`.
pub fn parse(input: &[u8], limits: Limits) -> Result<Value<'_>, DecodeError> {
    let mut p = Parser {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let value = p.value(0)?;
    if p.pos != input.len() {
        return Err(DecodeError::TrailingBytes(p.pos));
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: Limits,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(DecodeError::TooManyItems);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                self.int(b'e').map(Value::Int)
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' | b'd' if depth >= self.limits.max_depth => Err(DecodeError::TooDeep),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                while self.peek()? != b'e' {
                    let at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::KeyNotString(at));
                    }
                    let key = self.bytes()?;
                    if entries.last().is_some_and(|(prev, _)| *prev >= key) {
                        return Err(DecodeError::UnsortedKeys(at));
                    }
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            _ => Err(DecodeError::Unexpected(self.pos)),
        }
    }

    /// A canonical decimal integer terminated by `end`; the terminator is consumed.
    fn int(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(DecodeError::Truncated)?;
        let digits = &rest[..len];
        let (negative, magnitude) = match digits.split_first() {
            Some((b'-', m)) => (true, m),
            _ => (false, digits),
        };
        let canonical = match magnitude {
            [] => false,
            [b'0'] => !negative,
            [first, ..] => *first != b'0' && magnitude.iter().all(u8::is_ascii_digit),
        };
        if !canonical {
            return Err(DecodeError::BadInt(start));
        }
        // Accumulate negatively so i64::MIN parses.
        let mut value: i64 = 0;
        for &d in magnitude {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_sub(i64::from(d - b'0')))
                .ok_or(DecodeError::BadInt(start))?;
        }
        if !negative {
            value = value.checked_neg().ok_or(DecodeError::BadInt(start))?;
        }
        self.pos = start + len + 1;
        Ok(value)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.int(b':')?;
        if len < 0 {
            return Err(DecodeError::BadLength(at));
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::BadLength(at))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(DecodeError::BadLength(at))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Appends the canonical encoding of `value`; dictionary entries must already be sorted
/// (as parsed ones are).
pub fn emit(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Int(i) => int(out, *i),
        Value::Bytes(b) => bytes(out, b),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                emit(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(entries) => {
            out.push(b'd');
            for (k, v) in entries {
                bytes(out, k);
                emit(v, out);
            }
            out.push(b'e');
        }
    }
}

/// Appends `i<n>e`.
pub fn int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.push(b'e');
}

/// Appends `<len>:<bytes>`.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(itoa::Buffer::new().format(b.len()).as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, Arbitrary, Gen};
    use std::collections::BTreeMap;

    /// An owned document for property tests.
    #[derive(Clone, Debug)]
    enum Doc {
        Int(i64),
        Bytes(Vec<u8>),
        List(Vec<Doc>),
        Dict(BTreeMap<Vec<u8>, Doc>),
    }

    impl Doc {
        fn gen(g: &mut Gen, depth: usize) -> Doc {
            let kinds = if depth >= 4 { 2 } else { 4 };
            match u8::arbitrary(g) % kinds {
                0 => Doc::Int(i64::arbitrary(g)),
                1 => Doc::Bytes(Vec::arbitrary(g)),
                2 => Doc::List(
                    (0..usize::arbitrary(g) % 5)
                        .map(|_| Doc::gen(g, depth + 1))
                        .collect(),
                ),
                _ => Doc::Dict(
                    (0..usize::arbitrary(g) % 5)
                        .map(|_| (Vec::arbitrary(g), Doc::gen(g, depth + 1)))
                        .collect(),
                ),
            }
        }

        fn view(&self) -> Value<'_> {
            match self {
                Doc::Int(i) => Value::Int(*i),
                Doc::Bytes(b) => Value::Bytes(b),
                Doc::List(l) => Value::List(l.iter().map(Doc::view).collect()),
                Doc::Dict(d) => Value::Dict(d.iter().map(|(k, v)| (&k[..], v.view())).collect()),
            }
        }
    }

    impl Arbitrary for Doc {
        fn arbitrary(g: &mut Gen) -> Doc {
            Doc::gen(g, 0)
        }
    }

    fn roundtrip(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let v = parse(input, Limits::KRPC)?;
        let mut out = Vec::new();
        emit(&v, &mut out);
        Ok(out)
    }

    quickcheck! {
        fn emit_then_parse_is_identity(doc: Doc) -> bool {
            let mut out = Vec::new();
            emit(&doc.view(), &mut out);
            parse(&out, Limits { max_depth: 8, max_items: usize::MAX }) == Ok(doc.view())
        }

        fn parse_then_emit_is_identity(data: Vec<u8>) -> bool {
            match roundtrip(&data) {
                Ok(out) => out == data,
                Err(_) => true,
            }
        }
    }

    #[test]
    fn accepts_canonical() {
        let v = parse(b"d1:ai-42e1:bl3:xyzi0eee", Limits::KRPC).unwrap();
        assert_eq!(v.get(b"a"), Some(&Value::Int(-42)));
        assert_eq!(
            v.get(b"b"),
            Some(&Value::List(vec![Value::Bytes(b"xyz"), Value::Int(0)]))
        );
        assert_eq!(
            parse(b"i-9223372036854775808e", Limits::KRPC),
            Ok(Value::Int(i64::MIN))
        );
        assert_eq!(parse(b"0:", Limits::KRPC), Ok(Value::Bytes(b"")));
    }

    #[test]
    fn rejects_non_canonical_and_malformed() {
        use DecodeError::*;
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", Truncated),
            (b"i01e", BadInt(1)),
            (b"i-0e", BadInt(1)),
            (b"ie", BadInt(1)),
            (b"i9223372036854775808e", BadInt(1)),
            (b"i1", Truncated),
            (b"01:a", BadInt(0)),
            (b"5:abc", BadLength(0)),
            (b"99999999999999999999:", BadInt(0)),
            (b"d1:b0:1:a0:e", UnsortedKeys(6)),
            (b"d1:a0:1:a0:e", UnsortedKeys(6)),
            (b"di1e0:e", KeyNotString(1)),
            (b"l", Truncated),
            (b"x", Unexpected(0)),
            (b"i1ei2e", TrailingBytes(3)),
        ];
        for (input, err) in cases {
            assert_eq!(parse(input, Limits::KRPC), Err(*err), "{input:?}");
        }
    }

    #[test]
    fn caps_depth_and_items() {
        let deep = [b"l".repeat(9), b"e".repeat(9)].concat();
        assert_eq!(parse(&deep, Limits::KRPC), Err(DecodeError::TooDeep));
        let ok = [b"l".repeat(8), b"e".repeat(8)].concat();
        assert!(parse(&ok, Limits::KRPC).is_ok());
        let many = [b"l".to_vec(), b"i0e".repeat(1024), b"e".to_vec()].concat();
        assert_eq!(parse(&many, Limits::KRPC), Err(DecodeError::TooManyItems));
    }
}
