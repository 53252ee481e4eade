//! The few DNS messages dns-discovery exchanges over mDNS: encode exactly as Node's
//! dns-packet does (no name compression), decode anything (compression included) without
//! panicking and with every count capped.
//!
//! Why not `simple-dns` for decoding: measured against 0.13.0, `Packet::parse` rejects the
//! whole packet when one question has class 0, which is what Node's dns-packet 5.6.1 echoes
//! for a question that carried the QU bit (PROTOCOLS.md 3.2), so a Node answer would be lost;
//! it also pre-allocates `Vec::with_capacity(count)` from the untrusted header counts. The
//! subset needed here (header, questions, TXT/SRV/A rdata) is small enough to own;
//! `simple-dns` stays a dev-dependency to cross-check both directions in the tests.

use std::net::Ipv4Addr;

/// Record types used here.
pub const TYPE_A: u16 = 1;
/// RFC 1035 NULL: raw rdata. Our queries carry their known answers in one (see `known`).
pub const TYPE_NULL: u16 = 10;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_SRV: u16 = 33;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// QR | AA, what multicast-dns sets on responses.
pub const FLAGS_RESPONSE: u16 = 0x8400;
const FLAG_QR: u16 = 0x8000;

/// Questions and records read from one packet at most; the rest is ignored. A datagram on
/// 5353 rarely carries more than a handful, and Node's own answers carry one per question.
pub const MAX_QUESTIONS: usize = 32;
pub const MAX_RECORDS: usize = 64;
/// Longest name on the wire (RFC 1035), and at most this many compression jumps.
const MAX_NAME: usize = 255;
const MAX_JUMPS: usize = 32;

/// Why a packet was skipped. Never shown to a peer; only for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    Truncated,
    BadName,
}

/// A decoded name: labels joined by `.`, bytes as received (case kept, as Node compares
/// case-sensitively). Held inline: decoding a datagram allocates nothing per name.
#[derive(Clone, PartialEq, Eq)]
pub struct Name {
    len: u8,
    bytes: [u8; MAX_NAME],
}

impl Name {
    const EMPTY: Name = Name {
        len: 0,
        bytes: [0; MAX_NAME],
    };

    /// `bytes` as a name, if it is no longer than a name on the wire can be.
    pub fn new(bytes: &[u8]) -> Option<Name> {
        let mut name = Name::EMPTY;
        name.extend(bytes).then_some(name)
    }

    /// Appends `more`; false (and unchanged) if the name would grow past `MAX_NAME`.
    fn extend(&mut self, more: &[u8]) -> bool {
        let (at, end) = (self.len as usize, self.len as usize + more.len());
        if end > MAX_NAME {
            return false;
        }
        self.bytes[at..end].copy_from_slice(more);
        self.len = end as u8;
        true
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::EMPTY
    }
}

impl core::ops::Deref for Name {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl PartialEq<[u8]> for Name {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Name {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for Name {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    /// Without the QU bit.
    pub qclass: u16,
}

/// Which section a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// A record; `N` is how its names are held: a [`Name`] copied out by [`decode`], or a
/// [`NameAt`] left in the packet by [`decode_received`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a, N = Name> {
    pub section: Section,
    pub name: N,
    pub rtype: u16,
    /// Without the cache-flush bit.
    pub class: u16,
    pub ttl: u32,
    pub data: RData<'a, N>,
}

/// The rdata kinds dns-discovery reads; everything else is `Other` and ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
// The inline target makes `Srv` large; records live in one `Vec` per packet, so that costs
// stack copies, where a `Box` would bring back an allocation per SRV record.
#[allow(clippy::large_enum_variant)]
pub enum RData<'a, N = Name> {
    /// Raw TXT rdata; iterate with [`txt_strings`].
    Txt(&'a [u8]),
    Srv {
        port: u16,
        target: N,
    },
    A(Ipv4Addr),
    /// Raw NULL rdata (a query's known answers, see `known`).
    Null(&'a [u8]),
    Other,
}

impl<'a> Record<'a, NameAt<'a>> {
    /// The record with its names copied out of the packet, as [`decode`] gives it.
    pub fn to_owned_names(&self) -> Record<'a, Name> {
        let data = match &self.data {
            RData::Txt(d) => RData::Txt(d),
            RData::Srv { port, target } => RData::Srv {
                port: *port,
                target: target.to_name(),
            },
            RData::A(ip) => RData::A(*ip),
            RData::Null(d) => RData::Null(d),
            RData::Other => RData::Other,
        };
        Record {
            section: self.section,
            name: self.name.to_name(),
            rtype: self.rtype,
            class: self.class,
            ttl: self.ttl,
            data,
        }
    }
}

/// A name where it lies in a packet that [`decode_received`] has checked: read only when
/// asked for, so a record that nobody looks at costs no copy of its names.
#[derive(Clone, Copy)]
pub struct NameAt<'a> {
    packet: &'a [u8],
    at: usize,
}

impl<'a> NameAt<'a> {
    /// The dotted name, as [`read_name`] reads it (empty if the packet was not checked).
    pub fn to_name(&self) -> Name {
        read_name(self.packet, self.at).map_or(Name::EMPTY, |(name, _)| name)
    }

    /// Whether the name is `name`, written out as it is (uncompressed).
    pub fn is(&self, name: &WireName) -> bool {
        self.packet.get(self.at..self.at + name.len()) == Some(name.as_ref())
    }

    /// Hands each label to `label` in order, as [`read_name`] walks them; false if the name
    /// is not one `decode_received` checked.
    pub fn for_each_label(&self, mut label: impl FnMut(&[u8])) -> bool {
        walk_name(self.packet, self.at, |l| {
            label(l);
            true
        })
        .is_ok()
    }
}

/// A dotted name in wire form as [`Writer`] writes it (uncompressed labels, then a zero),
/// held inline; for comparing received names byte for byte.
#[derive(Clone)]
pub struct WireName {
    len: u8,
    bytes: [u8; 64],
}

impl WireName {
    /// `dotted` in wire form, if that is at most 64 bytes.
    pub fn new(dotted: &[u8]) -> Option<WireName> {
        let mut w = Writer::default();
        w.name(dotted);
        let mut bytes = [0; 64];
        bytes.get_mut(..w.buf.len())?.copy_from_slice(&w.buf);
        Some(WireName {
            len: w.buf.len() as u8,
            bytes,
        })
    }

    #[allow(clippy::len_without_is_empty)] // never empty: at least the final zero
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl AsRef<[u8]> for WireName {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len()]
    }
}

impl core::fmt::Debug for NameAt<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.to_name().fmt(f)
    }
}

/// A decoded packet (only the parts used here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub id: u16,
    pub flags: u16,
    pub questions: Vec<Question>,
    pub records: Vec<Record<'a>>,
}

impl Message<'_> {
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }
}

/// What a receiver reads of a packet ([`decode_received`]): a query's questions, and the
/// records where they lie in the packet.
pub struct Received<'a> {
    pub id: u16,
    pub flags: u16,
    /// A query's questions; empty for a response.
    pub questions: Vec<Question>,
    packet: &'a [u8],
    /// Where the answer section starts, and the answer, authority and additional counts.
    records_at: usize,
    counts: [u16; 3],
}

impl<'a> Received<'a> {
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }

    /// The records (at most [`MAX_RECORDS`]), read again from the checked packet.
    pub fn records(&self) -> impl Iterator<Item = Record<'a, NameAt<'a>>> + 'a {
        let packet = self.packet;
        let mut at = self.records_at;
        sections(self.counts).map_while(move |section| {
            let (record, next) = record_at(packet, at, section).ok()?;
            at = next;
            Some(record)
        })
    }
}

/// Each record's section in header order, for the first [`MAX_RECORDS`] records.
fn sections([an, ns, ar]: [u16; 3]) -> impl Iterator<Item = Section> {
    let repeat = |s: Section, n: u16| core::iter::repeat(s).take(usize::from(n));
    repeat(Section::Answer, an)
        .chain(repeat(Section::Authority, ns))
        .chain(repeat(Section::Additional, ar))
        .take(MAX_RECORDS)
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, WireError> {
    match buf.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

/// Reads the name at `at`; returns it and the offset after it (after the first pointer, if
/// any). Pointers must go strictly backwards, so loops are impossible.
pub fn read_name(buf: &[u8], at: usize) -> Result<(Name, usize), WireError> {
    let mut name = Name::EMPTY;
    let next = walk_name(buf, at, |label| {
        (name.is_empty() || name.extend(b".")) && name.extend(label)
    })?;
    Ok((name, next))
}

/// Checks the name at `at` as [`read_name`] does (the same errors), without building it;
/// returns the offset after it.
fn skip_name(buf: &[u8], at: usize) -> Result<usize, WireError> {
    let mut len = 0usize;
    walk_name(buf, at, |label| {
        len += usize::from(len > 0) + label.len();
        len <= MAX_NAME
    })
}

/// Hands each label of the name at `at` to `label` (which returns false if the name grew
/// too long); returns the offset after the name.
fn walk_name(
    buf: &[u8],
    mut at: usize,
    mut label: impl FnMut(&[u8]) -> bool,
) -> Result<usize, WireError> {
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *buf.get(at).ok_or(WireError::Truncated)? as usize;
        match len {
            0 => return Ok(end.unwrap_or(at + 1)),
            l if l & 0xc0 == 0xc0 => {
                let target = (u16_at(buf, at)? & 0x3fff) as usize;
                jumps += 1;
                if target >= at || jumps > MAX_JUMPS {
                    return Err(WireError::BadName);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            l if l & 0xc0 != 0 => return Err(WireError::BadName),
            l => {
                let bytes = buf.get(at + 1..at + 1 + l).ok_or(WireError::Truncated)?;
                if !label(bytes) {
                    return Err(WireError::BadName);
                }
                at += 1 + l;
            }
        }
    }
}

/// Decodes a packet. Counts beyond the caps are not read (their records are skipped, not
/// an error), so the work per datagram is bounded by its length and the caps.
pub fn decode(buf: &[u8]) -> Result<Message<'_>, WireError> {
    let head = read_head(buf, true)?;
    let listed = head.counts.iter().map(|&c| usize::from(c)).sum::<usize>();
    let room = buf.len().saturating_sub(head.records_at);
    let mut records = Vec::with_capacity(listed.min(MAX_RECORDS).min(room / 11));
    let mut at = head.records_at;
    for section in sections(head.counts) {
        let (record, next) = read_record(buf, at, section, read_name)?;
        records.push(record);
        at = next;
    }
    Ok(Message {
        id: head.id,
        flags: head.flags,
        questions: head.questions,
        records,
    })
}

/// [`decode`] for a receiver: the same packets are refused with the same errors and the
/// same records are read, but a response's questions are only checked, not kept, and the
/// records' names stay in the packet ([`NameAt`]). Every answer on a busy LAN is read by
/// every host; copying its names out (a 256-byte [`Name`] each, in an allocated `Vec`) was
/// most of what reading it cost.
pub fn decode_received(buf: &[u8]) -> Result<Received<'_>, WireError> {
    let head = read_head(buf, false)?;
    let mut at = head.records_at;
    for section in sections(head.counts) {
        at = record_at(buf, at, section)?.1;
    }
    Ok(Received {
        id: head.id,
        flags: head.flags,
        questions: head.questions,
        packet: buf,
        records_at: head.records_at,
        counts: head.counts,
    })
}

/// The rdata of `buf`'s one record if `buf` is the answer every announcer on a LAN sends: a
/// response with one question and one TXT answer, both named `name` written out in full, and
/// nothing else. [`decode_received`] accepts every such packet and reads that one record from
/// it, so a receiver may read it this way and decode anything else in full; on a busy LAN
/// nearly every datagram is this one, and checking it byte for byte against the expected
/// name is most of what decoding it in full costs.
pub fn lone_txt_answer<'a>(buf: &'a [u8], name: &WireName) -> Option<&'a [u8]> {
    const ONE_QUESTION_ONE_ANSWER: [u8; 8] = [0, 1, 0, 1, 0, 0, 0, 0];
    let name = name.as_ref();
    let head = buf.get(..12)?;
    if u16::from_be_bytes([head[2], head[3]]) & FLAG_QR == 0 || head[4..] != ONE_QUESTION_ONE_ANSWER
    {
        return None;
    }
    let question_end = 12 + name.len() + 4;
    if buf.get(12..12 + name.len())? != name {
        return None;
    }
    let fixed_at = question_end + name.len();
    if buf.get(question_end..fixed_at)? != name {
        return None;
    }
    let fixed = buf.get(fixed_at..fixed_at + 10)?;
    if u16::from_be_bytes([fixed[0], fixed[1]]) != TYPE_TXT {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    buf.get(fixed_at + 10..fixed_at + 10 + len)
}

/// A packet's header and questions.
struct Head {
    id: u16,
    flags: u16,
    questions: Vec<Question>,
    /// Answer, authority and additional counts.
    counts: [u16; 3],
    records_at: usize,
}

/// Reads the header and the questions; a response's questions are kept only if
/// `response_questions` (they are checked all the same).
fn read_head(buf: &[u8], response_questions: bool) -> Result<Head, WireError> {
    let id = u16_at(buf, 0)?;
    let flags = u16_at(buf, 2)?;
    let qdcount = u16_at(buf, 4)?;
    let counts = [u16_at(buf, 6)?, u16_at(buf, 8)?, u16_at(buf, 10)?];
    let mut at = 12;
    // Sized from the header, but no larger than the cap and what the bytes left could hold
    // (a question takes at least 5 bytes): growing from empty would allocate four of these
    // large inline-name entries, past the allocator's small-size cache.
    let room = buf.len().saturating_sub(12);
    let keep = response_questions || flags & FLAG_QR == 0;
    let kept = if keep { usize::from(qdcount) } else { 0 };
    let mut questions = Vec::with_capacity(kept.min(MAX_QUESTIONS).min(room / 5));
    for _ in 0..qdcount {
        if !keep {
            let next = skip_name(buf, at)?;
            u16_at(buf, next + 2)?;
            at = next + 4;
            continue;
        }
        let (name, next) = read_name(buf, at)?;
        let qtype = u16_at(buf, next)?;
        let qclass = u16_at(buf, next + 2)? & 0x7fff;
        at = next + 4;
        if questions.len() < MAX_QUESTIONS {
            questions.push(Question {
                name,
                qtype,
                qclass,
            });
        }
    }
    Ok(Head {
        id,
        flags,
        questions,
        counts,
        records_at: at,
    })
}

/// The record at `at` with its names left in the packet, and the offset after it.
fn record_at(
    buf: &[u8],
    at: usize,
    section: Section,
) -> Result<(Record<'_, NameAt<'_>>, usize), WireError> {
    read_record(buf, at, section, |packet, at| {
        skip_name(packet, at).map(|next| (NameAt { packet, at }, next))
    })
}

/// The record at `at` and the offset after it; `name` reads each of its names.
fn read_record<'a, N>(
    buf: &'a [u8],
    at: usize,
    section: Section,
    name: impl Fn(&'a [u8], usize) -> Result<(N, usize), WireError>,
) -> Result<(Record<'a, N>, usize), WireError> {
    let (owner, at) = name(buf, at)?;
    let rtype = u16_at(buf, at)?;
    let class = u16_at(buf, at + 2)? & 0x7fff;
    let ttl = (u32::from(u16_at(buf, at + 4)?) << 16) | u32::from(u16_at(buf, at + 6)?);
    let len = u16_at(buf, at + 8)? as usize;
    let start = at + 10;
    let rdata = buf.get(start..start + len).ok_or(WireError::Truncated)?;
    let data = match rtype {
        TYPE_TXT => RData::Txt(rdata),
        TYPE_NULL => RData::Null(rdata),
        TYPE_A if len == 4 => RData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
        TYPE_SRV if len >= 7 => {
            // The target may be compressed (mDNS allows it), so it is read from the packet.
            let (target, _) = name(buf, start + 6)?;
            RData::Srv {
                port: u16_at(rdata, 4)?,
                target,
            }
        }
        _ => RData::Other,
    };
    let record = Record {
        section,
        name: owner,
        rtype,
        class,
        ttl,
        data,
    };
    Ok((record, start + len))
}

/// The character-strings of TXT rdata. A string that runs past the end stops the walk.
pub fn txt_strings(rdata: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = rdata;
    core::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let s = tail.get(..len as usize)?;
        rest = &tail[len as usize..];
        Some(s)
    })
}

/// Builds packets into a reusable buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a packet with the given header counts.
    pub fn start(&mut self, flags: u16, qd: u16, an: u16) {
        self.start_message(0, flags, [qd, an, 0]);
    }

    /// Starts a packet with an id and the question, answer and additional counts (unicast
    /// dns-discovery carries its TXT payload in the additional section).
    pub fn start_message(&mut self, id: u16, flags: u16, [qd, an, ar]: [u16; 3]) {
        self.buf.clear();
        for v in [id, flags, qd, an, 0, ar] {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Writes a dotted name uncompressed, as dns-packet does. Callers pass only names they
    /// built or that came from `read_name` (labels of at most 63 bytes are checked there).
    fn name(&mut self, name: &[u8]) {
        for label in name.split(|&b| b == b'.').filter(|l| !l.is_empty()) {
            let len = label.len().min(63);
            self.buf.push(len as u8);
            self.buf.extend_from_slice(&label[..len]);
        }
        self.buf.push(0);
    }

    pub fn question(&mut self, name: &[u8], qtype: u16, qclass: u16) {
        self.name(name);
        self.buf.extend_from_slice(&qtype.to_be_bytes());
        self.buf.extend_from_slice(&qclass.to_be_bytes());
    }

    fn record_head(&mut self, name: &[u8], rtype: u16, rdlen: usize) {
        self.name(name);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&0u32.to_be_bytes()); // TTL 0, as Node
        self.buf.extend_from_slice(&(rdlen as u16).to_be_bytes());
    }

    /// A TXT record. Strings are at most 255 bytes (callers split, as `txt` does); a longer
    /// one is cut rather than given a wrapped length byte, which is how Node corrupts it.
    pub fn txt(&mut self, name: &[u8], strings: &[&[u8]]) {
        let rdlen = strings.iter().map(|s| 1 + s.len().min(255)).sum();
        self.record_head(name, TYPE_TXT, rdlen);
        for s in strings {
            let s = &s[..s.len().min(255)];
            self.buf.push(s.len() as u8);
            self.buf.extend_from_slice(s);
        }
    }

    /// A NULL record holding `rdata` as it is (at most 65,535 bytes; callers cap far below).
    pub fn null(&mut self, name: &[u8], rdata: &[u8]) {
        let rdata = &rdata[..rdata.len().min(usize::from(u16::MAX))];
        self.record_head(name, TYPE_NULL, rdata.len());
        self.buf.extend_from_slice(rdata);
    }

    pub fn a(&mut self, name: &[u8], ip: Ipv4Addr) {
        self.record_head(name, TYPE_A, 4);
        self.buf.extend_from_slice(&ip.octets());
    }

    /// SRV {0, 0, port, dotted-quad target}, as dns-discovery writes it.
    pub fn srv(&mut self, name: &[u8], port: u16, target: Ipv4Addr) {
        let target = target.to_string();
        let rdlen = 6 + target.len() + 2;
        self.record_head(name, TYPE_SRV, rdlen);
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(&port.to_be_bytes());
        self.name(target.as_bytes());
    }

    pub fn finish(&self) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(&self.buf)
    }
}
