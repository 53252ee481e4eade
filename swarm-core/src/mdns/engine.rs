//! The sans-IO dns-discovery engine over mDNS.

use super::handed::HandedOut;
use super::known;
use super::limit::{Limiter, Rate};
use super::recent::RecentReports;
use super::topic::{dns_name, hex_id, HexId, KeyHash, DOMAIN, KEY_LEN};
use super::txt;
use super::wire::{self, NameAt, RData, Received, Writer, CLASS_IN, TYPE_A, TYPE_SRV, TYPE_TXT};
use crate::time::Instant;
use crate::{new_map, Map};
use bytes::Bytes;
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// The mDNS group; queries go to `224.0.0.251:5353`.
pub const MDNS_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// Peers taken from one datagram; the rest are dropped (Node's own answers list at most 100
/// entries, and the 31-per-string limit makes more than that rare and suspicious).
const MAX_PEERS_PER_DATAGRAM: usize = 128;
/// Undelivered events and datagrams; beyond these, new ones are dropped and counted.
const MAX_EVENTS: usize = 1024;
const MAX_TRANSMITS: usize = 256;
/// Own tokens remembered for LAN echo suppression, and for how long.
const MAX_OWN_TOKENS: usize = 512;
const OWN_TOKEN_LIFE: Duration = Duration::from_secs(15 * 60);
/// Tokens we would give a sender, cached: every answer on the LAN is checked against the
/// sender's, and a SHA-256 per received answer was most of the engine's time on a busy LAN.
/// The secret never changes, so an entry never goes stale; the cache is emptied when full.
pub(super) const MAX_SENDER_TOKENS: usize = 1024;
/// A/SRV answers per name, as Node (`up to 10 entries`).
const MAX_ADDRESS_ANSWERS: usize = 10;
/// Entries listed per TXT answer set, as Node's store lookup (100).
const MAX_LISTED: usize = 100;

/// A peer reported again within this window is not reported twice: every announcer
/// answers every query to the whole group, so without it a round on a LAN of n announcers
/// reports each peer about n times. Kept for at most `MAX_RECENT` peers (beyond that,
/// repeats are reported: failing open costs only duplicates).
const REPEAT_WINDOW: Duration = Duration::from_secs(5);
const MAX_RECENT: usize = 4096;
/// The longest round interval Node draws (60-70 s).
const LONGEST_DEFAULT_INTERVAL: Duration = Duration::from_secs(70);
/// A peer heard within a round interval and this much more is listed as known in our
/// queries (`known`): each announcer answers its own query once a round, so it stays
/// listed by every host that heard it, allowing for the jitter of the rounds' timers.
const KNOWN_MARGIN: Duration = Duration::from_secs(5);
/// Addresses of this host learnt from echoes of its own answers (`own_ips`).
const MAX_OWN_IPS: usize = 4;

/// Settings of [`MdnsDiscovery`].
#[derive(Clone, Debug)]
pub struct MdnsConfig {
    /// 32 random bytes from the driver; tokens are `sha256(secret || ip)`.
    pub secret: [u8; 32],
    /// Seed for the round jitter and map hashing.
    pub seed: u64,
    /// A fixed round interval (Node's `dns.interval`); `None` = uniform in [60 s, 70 s).
    pub interval: Option<Duration>,
    /// Topic to key (discovery-channel's `hash` option).
    pub hash: KeyHash,
    /// This host's LAN address, used for A answers to `0.0.0.0` entries (Node uses its first
    /// non-internal IPv4). `None`: A questions are not answered.
    pub local_ip: Option<Ipv4Addr>,
    /// Answers allowed per querier IP: burst and sustained rate.
    pub answer_burst: u32,
    pub answers_per_sec: u32,
    /// Answers allowed in all.
    pub global_answer_burst: u32,
    pub global_answers_per_sec: u32,
}

impl MdnsConfig {
    /// Defaults with the given secret and seed.
    pub fn new(secret: [u8; 32], seed: u64) -> Self {
        MdnsConfig {
            secret,
            seed,
            interval: None,
            hash: KeyHash::Sha1,
            local_ip: None,
            answer_burst: 32,
            answers_per_sec: 4,
            global_answer_burst: 512,
            global_answers_per_sec: 64,
        }
    }
}

/// What the engine reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdnsEvent {
    /// `addr` announces `topic` (Node's `peer(channel, {host, port}, 'dns')`).
    Peer { topic: Bytes, addr: SocketAddr },
    /// The first round of a join has been sent (the join callback / `query-done`).
    FirstRound { topic: Bytes },
}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MdnsStats {
    pub queries_sent: u64,
    pub answers_sent: u64,
    /// Datagrams that did not decode (other mDNS traffic is not counted here).
    pub malformed: u64,
    pub echoes_suppressed: u64,
    /// Peers not reported again because they were reported within the last 5 s.
    pub repeats: u64,
    pub rate_limited: u64,
    /// Peers or datagrams dropped by a cap.
    pub dropped: u64,
    /// Answers not sent because the query listed us as known (`known`).
    pub answers_suppressed: u64,
}

struct Joined {
    topic: Bytes,
    tag: u64,
    /// Hex id of the key: the first label of the name.
    id: HexId,
    /// Announced port, if announcing.
    port: Option<u16>,
    next_round: Instant,
    first_done: bool,
}

/// The latest join's id, looked up before the table (see `MdnsDiscovery::hot_id`). What an
/// answer compares and reads first (see `Swarm`'s layout).
#[repr(C)]
struct HotId {
    /// `<id>.dns-discovery.local` as Node writes it, which nearly every answer carries.
    name: Option<wire::WireName>,
    /// The `ids` entry.
    entry: (Bytes, u64),
    id: HexId,
}

/// The dns-discovery mDNS engine. Inputs: [`join`](Self::join), [`leave`](Self::leave),
/// [`handle_datagram`](Self::handle_datagram), [`handle_timeout`](Self::handle_timeout).
/// Outputs: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
/// [`poll_timeout`](Self::poll_timeout); each may change after any input.
#[repr(C)]
pub struct MdnsDiscovery {
    /// The earliest `next_round` of `joined` (asked for after every input, changed only by
    /// `join`, `leave` and `handle_timeout`). First, as its tag is the largest niche, where
    /// `Option<MdnsDiscovery>` keeps its own.
    next_round: Option<Instant>,
    /// The latest join's `ids` entry, checked before `ids`: nearly every datagram is about
    /// one topic, and this sits in the engine rather than in a table elsewhere in memory (a
    /// cache miss per datagram at 10,000 simulated nodes).
    hot_id: Option<HotId>,
    /// Peers reported recently, with when (see `REPEAT_WINDOW`).
    recent: RecentReports,
    /// Peers of the datagram being read (kept to save an allocation per datagram).
    scratch_found: Vec<(u64, SocketAddrV4)>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<MdnsEvent>,
    stats: MdnsStats,
    // What a repeated answer (nearly every datagram on a busy LAN) does not read: the
    // fields above come first (see `Swarm`).
    /// The token each recent sender gets from us (see `MAX_SENDER_TOKENS`).
    sender_tokens: Map<Ipv4Addr, txt::Token>,
    /// Tokens we put in answers, with when: an answer carrying one is our own echo, whatever
    /// address it comes from (Node only recognises echoes from its own host).
    own_tokens: Map<txt::Token, Instant>,
    /// Every token ever handed out: rules out most answers before `own_tokens` is read.
    handed_out: HandedOut,
    config: MdnsConfig,
    rng: Xoshiro256PlusPlus,
    /// By topic bytes.
    joined: Map<Bytes, Joined>,
    /// Hex id to topic and its join's tag, for answers and questions.
    ids: Map<HexId, (Bytes, u64)>,
    /// Tags joins, so `recent` is keyed by a number rather than the topic's bytes.
    next_tag: u64,
    limiter: Limiter,
    writer: Writer,
    /// This host's addresses as LAN peers see them: `local_ip`, and the senders of echoes
    /// of our own answers (multicast loopback comes from the interface's address). A query
    /// listing one of these with our port lists us.
    own_ips: Vec<Ipv4Addr>,
    /// Reads every datagram with the full decoder, for tests that compare the two ways.
    #[cfg(test)]
    full_decode_only: bool,
}

impl MdnsDiscovery {
    pub fn new(config: MdnsConfig) -> Self {
        let seed = config.seed;
        let per_source = Rate {
            burst: config.answer_burst,
            per_sec: config.answers_per_sec,
        };
        let global = Rate {
            burst: config.global_answer_burst,
            per_sec: config.global_answers_per_sec,
        };
        MdnsDiscovery {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            joined: new_map(seed),
            next_round: None,
            ids: new_map(seed),
            hot_id: None,
            next_tag: 0,
            scratch_found: Vec::new(),
            own_tokens: new_map(seed),
            handed_out: HandedOut::new(seed),
            sender_tokens: new_map(seed),
            recent: RecentReports::new(seed),
            limiter: Limiter::new(seed, per_source, global),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            writer: Writer::default(),
            stats: MdnsStats::default(),
            own_ips: config.local_ip.into_iter().collect(),
            #[cfg(test)]
            full_decode_only: false,
            config,
        }
    }

    /// Joins `topic`: a round (one TXT query) is due at once, then one every interval. With
    /// `announce`, `port` is announced: queries for the topic are answered with
    /// `0.0.0.0:port`. Rejoining updates `announce`/`port` and keeps the schedule. Returns
    /// false if the topic has no key (an empty key under [`KeyHash::Raw`] or a custom hash).
    pub fn join(&mut self, topic: impl Into<Bytes>, announce: bool, port: u16) -> bool {
        let topic = topic.into();
        let port = announce.then_some(port);
        if let Some(j) = self.joined.get_mut(&topic) {
            j.port = port;
            return true;
        }
        let Some(key) = self.config.hash.key(&topic) else {
            return false;
        };
        let id = HexId::new(hex_id(&key).as_bytes()).expect("a key is at most 20 bytes");
        let tag = self.next_tag;
        self.next_tag += 1;
        self.ids.insert(id, (topic.clone(), tag));
        self.hot_id = Some(HotId {
            id,
            name: wire::WireName::new(dns_name(&key).as_bytes()),
            entry: (topic.clone(), tag),
        });
        let joined = Joined {
            topic: topic.clone(),
            tag,
            id,
            port,
            next_round: Instant::ZERO,
            first_done: false,
        };
        self.joined.insert(topic, joined);
        self.next_round = Some(Instant::ZERO);
        true
    }

    /// Leaves `topic`: no more rounds (lookup-only joins too, unlike Node) and no more
    /// answers for it. Sends nothing. Returns whether it was joined.
    pub fn leave(&mut self, topic: &[u8]) -> bool {
        let Some(j) = self.joined.remove(topic) else {
            return false;
        };
        self.refresh_next_round();
        // A rejoin reports its peers afresh.
        self.recent.retain(|t, _| t != j.tag);
        // Another topic may hash to the same id (custom hash); keep the id if so.
        if self.hot_id.as_ref().is_some_and(|hot| hot.id == j.id) {
            self.hot_id = None;
        }
        if self.ids.get(&j.id).is_some_and(|(t, _)| *t == j.topic) {
            self.ids.remove(&j.id);
            if let Some(other) = self.joined.values().find(|o| o.id == j.id) {
                self.ids.insert(j.id, (other.topic.clone(), other.tag));
            }
        }
        true
    }

    /// Joined topics and their announced port.
    pub fn topics(&self) -> impl Iterator<Item = (&Bytes, Option<u16>)> {
        self.joined.values().map(|j| (&j.topic, j.port))
    }

    pub fn stats(&self) -> MdnsStats {
        self.stats
    }

    /// The next datagram to send: to [`MDNS_GROUP`] or to the group on the querier's port.
    /// New ones appear after `handle_timeout` and `handle_datagram`.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next event. New ones appear after `handle_timeout` and `handle_datagram`.
    pub fn poll_event(&mut self) -> Option<MdnsEvent> {
        self.events.pop_front()
    }

    /// When the next round is due (possibly already past: call `handle_timeout` at once).
    /// Changes after `join`, `leave` and `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_round
    }

    fn refresh_next_round(&mut self) {
        self.next_round = self.joined.values().map(|j| j.next_round).min();
    }

    /// Runs every round due at `now`. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Bytes> = self
            .joined
            .values()
            .filter(|j| j.next_round <= now)
            .map(|j| j.topic.clone())
            .collect();
        for topic in due {
            let interval = self.next_interval();
            let Some(j) = self.joined.get_mut(&topic) else {
                continue;
            };
            j.next_round = now + interval;
            let first = !std::mem::replace(&mut j.first_done, true);
            let tag = j.tag;
            let name = [j.id.as_bytes(), b".", DOMAIN.as_bytes()].concat();
            let known = self.known_rdata(now, tag);
            self.writer.start(0, 1, u16::from(!known.is_empty()));
            self.writer.question(&name, TYPE_TXT, CLASS_IN);
            if !known.is_empty() {
                self.writer.null(&name, &known);
            }
            let packet = self.writer.finish();
            if self.push_transmit(SocketAddr::V4(MDNS_GROUP), packet) {
                self.stats.queries_sent += 1;
            }
            if first {
                self.push_event(MdnsEvent::FirstRound { topic });
            }
        }
        self.refresh_next_round();
    }

    /// The peers of the join tagged `tag` heard within a round interval (and a margin), as
    /// a query's known answers (`known`).
    fn known_rdata(&self, now: Instant, tag: u64) -> Vec<u8> {
        let interval = self.config.interval.unwrap_or(LONGEST_DEFAULT_INTERVAL);
        let known_for = interval + KNOWN_MARGIN;
        let mut peers = Vec::new();
        self.recent.each(|t, addr, at| {
            if t == tag && now - at < known_for {
                peers.push(addr);
            }
        });
        known::rdata(peers.into_iter())
    }

    /// Node's `interval || floor(60000 + rand * 10000)` ms.
    fn next_interval(&mut self) -> Duration {
        self.config
            .interval
            .unwrap_or_else(|| Duration::from_millis(60_000 + self.rng.next_u64() % 10_000))
    }

    /// One datagram from the mDNS socket. Anything that is not dns-discovery traffic for a
    /// joined topic is ignored silently; the work is bounded by the wire caps.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Some(sender) = ipv4_of(from.ip()) else {
            return; // Node's mDNS socket is IPv4 only.
        };
        if let Some((tag, rdata)) = self.hot_answer(data) {
            let mut found = core::mem::take(&mut self.scratch_found);
            found.clear();
            self.read_txt(now, sender, tag, rdata, &mut found);
            self.report(now, &found);
            self.scratch_found = found;
            return;
        }
        let msg = match wire::decode_received(data) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        // An answer goes to the group on the querier's port; port 0 has nowhere to go.
        if !msg.is_response() && from.port() != 0 {
            self.answer(now, sender, from.port(), &msg);
        }
        self.read_records(now, sender, from.port(), &msg);
    }

    /// See [`Swarm::datagram_hints`](crate::Swarm::datagram_hints): the fields reading an
    /// answer starts from.
    pub(crate) fn datagram_hints(&self, line: &mut impl FnMut(*const u8)) {
        crate::lines_between(self, &self.sender_tokens, line);
    }

    /// See [`Swarm::datagram_table_hints`](crate::Swarm::datagram_table_hints): the repeat
    /// table's slot for `from`, as an answer's peer is nearly always its sender, under the
    /// latest join.
    pub(crate) fn table_hints(&self, from: SocketAddr, line: &mut impl FnMut(*const u8)) {
        if let (Some(hot), Some(ip)) = (&self.hot_id, ipv4_of(from.ip())) {
            if let Some(slot) = self.recent.prefetch_hint(hot.entry.1, ip) {
                line(slot);
            }
        }
    }

    /// Answers the questions about topics we announce (and the bare-domain TXT probe).
    fn answer(&mut self, now: Instant, querier: Ipv4Addr, port: u16, msg: &Received<'_>) {
        // Collect (question index, record count) first, to write the header counts.
        let mut plan: Vec<(usize, Vec<SocketAddrV4>)> = Vec::new();
        let mut answers = 0usize;
        for (i, q) in msg.questions.iter().enumerate() {
            let entries = if q.name == DOMAIN.as_bytes() {
                if q.qtype != TYPE_TXT {
                    continue;
                }
                Vec::new()
            } else {
                match self.announced(&q.name) {
                    Some((p, tag)) if q.qtype == TYPE_TXT && self.lists_us(msg, tag, p) => {
                        self.stats.answers_suppressed += 1;
                        continue;
                    }
                    Some((p, _)) => vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p)],
                    None => continue,
                }
            };
            let n = match q.qtype {
                TYPE_TXT => txt::answer_count(entries.len().min(MAX_LISTED)),
                TYPE_SRV => entries.len().min(MAX_ADDRESS_ANSWERS),
                TYPE_A if self.config.local_ip.is_some() => entries.len().min(MAX_ADDRESS_ANSWERS),
                _ => 0,
            };
            if n > 0 {
                answers += n;
                plan.push((i, entries));
            }
        }
        if plan.is_empty() {
            return;
        }
        if !self.limiter.allow(now, querier) {
            self.stats.rate_limited += 1;
            return;
        }
        // Hashed only now: unrelated mDNS traffic costs no SHA-256.
        let token = self.token_for(querier);
        self.remember_token(now, token);
        let token = core::str::from_utf8(&token).expect("base64 is ASCII");
        // Only the answered questions are echoed (Node echoes all; receivers ignore them).
        let w = &mut self.writer;
        w.start(wire::FLAGS_RESPONSE, plan.len() as u16, answers as u16);
        for (i, _) in &plan {
            let q = &msg.questions[*i];
            w.question(&q.name, q.qtype, CLASS_IN);
        }
        for (i, entries) in &plan {
            let q = &msg.questions[*i];
            match q.qtype {
                TYPE_TXT if q.name == DOMAIN.as_bytes() => {
                    let host = format!("host={querier}");
                    let p = format!("port={port}");
                    let t = format!("token={token}");
                    w.txt(&q.name, &[t.as_bytes(), host.as_bytes(), p.as_bytes()]);
                }
                TYPE_TXT => {
                    let listed = &entries[..entries.len().min(MAX_LISTED)];
                    txt::write_peer_answers(w, &q.name, token, listed);
                }
                TYPE_SRV => {
                    for e in entries.iter().take(MAX_ADDRESS_ANSWERS) {
                        w.srv(&q.name, e.port(), *e.ip());
                    }
                }
                _ => {
                    let local = self.config.local_ip.unwrap_or(Ipv4Addr::LOCALHOST);
                    for e in entries.iter().take(MAX_ADDRESS_ANSWERS) {
                        let ip = if e.ip().is_unspecified() {
                            local
                        } else {
                            *e.ip()
                        };
                        w.a(&q.name, ip);
                    }
                }
            }
        }
        let packet = w.finish();
        let to = SocketAddr::V4(SocketAddrV4::new(*MDNS_GROUP.ip(), port));
        if self.push_transmit(to, packet) {
            self.stats.answers_sent += 1;
        }
    }

    /// The announced port of `name`, and its join's tag, if it is exactly
    /// `<id>.dns-discovery.local` of a topic we announce (case-sensitive, as Node).
    fn announced(&self, name: &[u8]) -> Option<(u16, u64)> {
        let id = name.strip_suffix(DOMAIN.as_bytes())?.strip_suffix(b".")?;
        let (topic, tag) = self.ids.get(&HexId::new(id)?)?;
        Some((self.joined.get(topic)?.port?, *tag))
    }

    /// Whether the query `msg` lists us, announcing `port` under the join tagged `tag`, as
    /// a known answer (`known`).
    fn lists_us(&self, msg: &Received<'_>, tag: u64, port: u16) -> bool {
        msg.records().any(|r| {
            let RData::Null(rdata) = r.data else {
                return false;
            };
            r.section == wire::Section::Answer
                && self.tag_of(r.name) == Some(tag)
                && known::lists(rdata, |a| a.port() == port && self.own_ips.contains(a.ip()))
        })
    }

    /// The topic an answer's name belongs to, and its join's tag: Node takes every label
    /// before the last two as the id and does not check the domain.
    fn topic_of(&self, name: NameAt<'_>) -> Option<&(Bytes, u64)> {
        let hot = self.hot_id.as_ref();
        // The same bytes on the wire are the same name, whose id need not be read again.
        if let Some(hot) = hot.filter(|h| h.name.as_ref().is_some_and(|n| name.is(n))) {
            return Some(&hot.entry);
        }
        let id = id_of(name)?;
        match hot {
            Some(hot) if hot.id == id => Some(&hot.entry),
            _ => self.ids.get(&id),
        }
    }

    /// The latest join's tag and the TXT rdata, if `data` is an announcer's lone answer
    /// about it ([`wire::lone_txt_answer`]): read as [`read_records`](Self::read_records)
    /// would read it, without decoding the packet in full.
    fn hot_answer<'a>(&self, data: &'a [u8]) -> Option<(u64, &'a [u8])> {
        #[cfg(test)]
        if self.full_decode_only {
            return None;
        }
        let hot = self.hot_id.as_ref()?;
        let rdata = wire::lone_txt_answer(data, hot.name.as_ref()?)?;
        Some((hot.entry.1, rdata))
    }

    /// [`topic_of`](Self::topic_of)'s tag alone.
    fn tag_of(&self, name: NameAt<'_>) -> Option<u64> {
        self.topic_of(name).map(|&(_, tag)| tag)
    }

    fn read_records(&mut self, now: Instant, sender: Ipv4Addr, port: u16, msg: &Received<'_>) {
        let mut found = core::mem::take(&mut self.scratch_found);
        found.clear();
        for record in msg.records() {
            if found.len() >= MAX_PEERS_PER_DATAGRAM {
                self.stats.dropped += 1;
                break;
            }
            if !matches!(record.rtype, TYPE_TXT | TYPE_SRV)
                || record.section == wire::Section::Authority
            {
                continue;
            }
            let Some(tag) = self.tag_of(record.name) else {
                continue;
            };
            match &record.data {
                RData::Txt(data) => self.read_txt(now, sender, tag, data, &mut found),
                RData::Srv { port: p, target } => {
                    let target = target.to_name();
                    let Some(ip) = core::str::from_utf8(&target)
                        .ok()
                        .and_then(|t| t.parse::<Ipv4Addr>().ok())
                    else {
                        continue;
                    };
                    let ip = if ip.is_unspecified() { sender } else { ip };
                    let p = if *p == 0 { port } else { *p };
                    let start = found.len();
                    found.push((tag, SocketAddrV4::new(ip, p)));
                    keep_new_peers(&mut found, start);
                }
                _ => {}
            }
        }
        self.report(now, &found);
        self.scratch_found = found;
    }

    /// Adds the peers of a TXT record of the join tagged `tag` to `found`, unless every one
    /// of them was reported moments ago or the record carries a token of ours (an echo).
    fn read_txt(
        &mut self,
        now: Instant,
        sender: Ipv4Addr,
        tag: u64,
        data: &[u8],
        found: &mut Vec<(u64, SocketAddrV4)>,
    ) {
        let start = found.len();
        let mut token: &[u8] = &[];
        let mut peers = RecordPeers::new();
        for (key, value) in wire::txt_strings(data).map(txt::key_value) {
            match key {
                b"token" => token = value,
                b"peers" => {
                    let room = MAX_PEERS_PER_DATAGRAM.saturating_sub(start + peers.len());
                    txt::peers(value, sender, room, |p| peers.push(p, tag, found));
                }
                _ => {}
            }
        }
        // Most answers on a busy LAN repeat what was reported moments ago; those need no
        // echo check (two table lookups in memory nothing else touches).
        let (mut fresh, mut all_repeats) = (0usize, true);
        let spilled = found[start..].iter().map(|(_, p)| p);
        for p in peers.first().iter().chain(spilled) {
            if p.port() != 0 {
                fresh += 1;
                all_repeats = all_repeats && self.is_repeat(now, tag, *p);
            }
        }
        if fresh > 0 && all_repeats {
            self.stats.repeats += fresh as u64;
            found.truncate(start);
            return;
        }
        if self.is_own_token(now, token, sender) {
            self.stats.echoes_suppressed += 1;
            found.truncate(start);
            return;
        }
        let first = peers.first().iter().map(|p| (tag, *p));
        found.splice(start..start, first);
        keep_new_peers(found, start);
    }

    /// Reports each peer of `found` not reported within the repeat window.
    fn report(&mut self, now: Instant, found: &[(u64, SocketAddrV4)]) {
        for &(tag, addr) in found {
            if !self.first_report(now, tag, addr) {
                continue;
            }
            let Some(topic) = self.topic_by_tag(tag) else {
                continue;
            };
            let topic = topic.clone();
            self.push_event(MdnsEvent::Peer {
                topic,
                addr: SocketAddr::V4(addr),
            });
        }
    }

    /// The topic of the join tagged `tag` (tags are never reused, so there is one).
    fn topic_by_tag(&self, tag: u64) -> Option<&Bytes> {
        match &self.hot_id {
            Some(hot) if hot.entry.1 == tag => Some(&hot.entry.0),
            _ => self
                .ids
                .values()
                .find(|(_, t)| *t == tag)
                .map(|(topic, _)| topic),
        }
    }

    /// Whether `addr` for the join tagged `tag` was reported within `REPEAT_WINDOW`.
    fn is_repeat(&self, now: Instant, tag: u64, addr: SocketAddrV4) -> bool {
        self.recent
            .get(tag, addr)
            .is_some_and(|at| now - at < REPEAT_WINDOW)
    }

    /// Whether `addr` for the join tagged `tag` has not been reported within `REPEAT_WINDOW`;
    /// records it.
    fn first_report(&mut self, now: Instant, tag: u64, addr: SocketAddrV4) -> bool {
        if let Some(at) = self.recent.get_mut(tag, addr) {
            if now - *at < REPEAT_WINDOW {
                self.stats.repeats += 1;
                return false;
            }
            *at = now;
            return true;
        }
        if self.recent.len() >= MAX_RECENT {
            self.recent.retain(|_, at| now - at < REPEAT_WINDOW);
        }
        if self.recent.len() < MAX_RECENT {
            self.recent.set(tag, addr, now);
        }
        true
    }

    /// Node's check (the token we would give the sender, i.e. an echo from our own host) or
    /// one of the tokens we handed out recently (our answer to another host, echoed back).
    fn is_own_token(&mut self, now: Instant, token: &[u8], sender: Ipv4Addr) -> bool {
        // A token is 44 base64 bytes; anything else is not ours and costs no hashing.
        let Ok(token) = txt::Token::try_from(token) else {
            return false;
        };
        // Never handed out: neither remembered nor the sender's (only we know the secret).
        if !self.handed_out.may_hold(&token) {
            return false;
        }
        let remembered = self
            .own_tokens
            .get(&token)
            .is_some_and(|&at| now - at < OWN_TOKEN_LIFE);
        if remembered && !self.own_ips.contains(&sender) && self.own_ips.len() < MAX_OWN_IPS {
            // An answer we sent, heard back: it comes from our own address.
            self.own_ips.push(sender);
        }
        remembered || token == self.token_for(sender)
    }

    /// Marks `token` as handed out, as if an answer had carried it.
    #[cfg(test)]
    pub(super) fn note_handed_out(&mut self, token: txt::Token) {
        self.handed_out.insert(&token);
    }

    /// Reads every datagram with the full decoder from now on.
    #[cfg(test)]
    pub(super) fn decode_in_full(&mut self) {
        self.full_decode_only = true;
    }

    /// Senders whose token is cached (bounded by `MAX_SENDER_TOKENS`).
    #[cfg(test)]
    pub(super) fn cached_sender_tokens(&self) -> usize {
        self.sender_tokens.len()
    }

    /// The token `ip` gets from us, hashed once per sender.
    fn token_for(&mut self, ip: Ipv4Addr) -> txt::Token {
        if let Some(t) = self.sender_tokens.get(&ip) {
            return *t;
        }
        if self.sender_tokens.len() >= MAX_SENDER_TOKENS {
            self.sender_tokens.clear();
        }
        let t = txt::token_bytes(&self.config.secret, ip);
        self.sender_tokens.insert(ip, t);
        t
    }

    fn remember_token(&mut self, now: Instant, token: txt::Token) {
        self.handed_out.insert(&token);
        if let Some(at) = self.own_tokens.get_mut(&token) {
            *at = now;
            return;
        }
        if self.own_tokens.len() >= MAX_OWN_TOKENS {
            self.own_tokens.retain(|_, at| now - *at < OWN_TOKEN_LIFE);
        }
        if self.own_tokens.len() >= MAX_OWN_TOKENS {
            // Evict the oldest; only reached with more recent queriers than the cap.
            if let Some(old) = self
                .own_tokens
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, _)| *t)
            {
                self.own_tokens.remove(&old);
            }
        }
        self.own_tokens.insert(token, now);
    }

    fn push_transmit(&mut self, to: SocketAddr, packet: Bytes) -> bool {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.dropped += 1;
            return false;
        }
        self.transmits.push_back((to, packet));
        true
    }

    /// Keeps the oldest undelivered events: a flood cannot push out what came before it.
    fn push_event(&mut self, event: MdnsEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.dropped += 1;
            return;
        }
        self.events.push_back(event);
    }
}

/// A TXT record's peers in order: the first few on the stack, the rest (more than a
/// `peers` string holds, which Node never sends) in the found list. A busy LAN's answers are
/// nearly all repeats, which are then told apart without writing to the found list, the
/// engine's memory, which at 10,000 simulated nodes a datagram finds evicted.
struct RecordPeers {
    len: usize,
    first: [SocketAddrV4; STACKED_PEERS],
}

/// Room for every entry of one `peers` string (at most 31 fit in a TXT string).
const STACKED_PEERS: usize = txt::PEERS_PER_STRING + 1;

impl RecordPeers {
    fn new() -> Self {
        RecordPeers {
            len: 0,
            first: [SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); STACKED_PEERS],
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Adds `peer`, to `found` under `tag` once the stack's room is used up.
    fn push(&mut self, peer: SocketAddrV4, tag: u64, found: &mut Vec<(u64, SocketAddrV4)>) {
        match self.first.get_mut(self.len) {
            Some(slot) => *slot = peer,
            None => found.push((tag, peer)),
        }
        self.len += 1;
    }

    /// The peers held on the stack, in order.
    fn first(&self) -> &[SocketAddrV4] {
        &self.first[..self.len.min(STACKED_PEERS)]
    }
}

/// Drops from `found[start..]` (a record's peers, just added) port 0, which cannot be
/// dialled, and every peer already in `found` before it: a repeat in one datagram is noise.
fn keep_new_peers(found: &mut Vec<(u64, SocketAddrV4)>, start: usize) {
    let mut kept = start;
    for i in start..found.len() {
        let peer = found[i];
        if peer.1.port() != 0 && !found[..kept].contains(&peer) {
            found[kept] = peer;
            kept += 1;
        }
    }
    found.truncate(kept);
}

/// The [`HexId`] of Node's id of `name` (every label before the last two, the domain
/// unchecked; the tests hold it to `id_label` of the dotted name), read from the packet
/// without writing the dotted name out: only its first bytes are kept, as an id is short. A
/// dot inside a label counts as a separator, as it does in the dotted name Node reads.
pub(super) fn id_of(name: NameAt<'_>) -> Option<HexId> {
    let mut head = [0u8; 2 * KEY_LEN + 1];
    let mut len = 0usize;
    // The last two dots of the dotted name, latest second.
    let mut dots = [None, None];
    let walked = name.for_each_label(|label| {
        if len > 0 {
            dots = [dots[1], Some(len)];
            copy_within_room(&mut head, len, b".");
            len += 1;
        }
        // Without an early exit, so that it compiles to a few vector compares.
        if label.iter().fold(false, |dot, &b| dot | (b == b'.')) {
            for (j, _) in label.iter().enumerate().filter(|(_, &b)| b == b'.') {
                dots = [dots[1], Some(len + j)];
            }
        }
        copy_within_room(&mut head, len, label);
        len += label.len();
    });
    if !walked {
        return None;
    }
    HexId::new(head.get(..dots[0]?)?)
}

/// Copies what fits of `bytes` into `buf` at `at`.
fn copy_within_room(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(room) = buf.get_mut(at..) {
        let n = room.len().min(bytes.len());
        room[..n].copy_from_slice(&bytes[..n]);
    }
}

/// Node's id of a dotted name: every label before the last two (the domain is not checked).
#[cfg(test)]
pub(super) fn id_label(name: &[u8]) -> Option<&[u8]> {
    let domain_dot = name.iter().rposition(|&b| b == b'.')?;
    let name = &name[..domain_dot];
    Some(&name[..name.iter().rposition(|&b| b == b'.')?])
}

fn ipv4_of(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}
