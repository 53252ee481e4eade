//! Unicast dns-discovery: client and server engines exchanging datagrams in-process on a
//! simulated clock.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use swarm_core::dnsd::{
    is_utp_shaped, DnsClient, DnsClientConfig, DnsEvent, DnsServer, DnsServerConfig, RequestError,
    ServerAddr, WhoamiResult,
};
use swarm_core::Instant;

fn addr(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, a, b), port))
}

/// Servers and clients on one lossless network; a client's address is what servers see.
struct Net {
    now: Instant,
    servers: BTreeMap<SocketAddr, DnsServer>,
    clients: Vec<(SocketAddr, DnsClient)>,
    /// Datagrams sent to nobody (e.g. a dead server port).
    lost: usize,
    delivered: usize,
    /// Every query id a client or server sent.
    ids: Vec<u16>,
    /// Endpoint-independent NAT: a client's private address -> its public mapping.
    nat: BTreeMap<SocketAddr, SocketAddr>,
    unnat: BTreeMap<SocketAddr, SocketAddr>,
}

impl Net {
    fn new() -> Self {
        Net {
            now: Instant::ZERO,
            servers: BTreeMap::new(),
            clients: Vec::new(),
            lost: 0,
            delivered: 0,
            ids: Vec::new(),
            nat: BTreeMap::new(),
            unnat: BTreeMap::new(),
        }
    }

    fn server(&mut self, at: SocketAddr, seed: u64) {
        let mut config = DnsServerConfig::from_seed(seed);
        config.per_sec = 0;
        self.servers.insert(at, DnsServer::new(config, self.now));
    }

    fn client(&mut self, at: SocketAddr, servers: &[ServerAddr], seed: u64) -> usize {
        let mut config = DnsClientConfig::new(servers.to_vec(), seed);
        config.interval = Some(Duration::from_secs(60));
        let mut c = DnsClient::new(config);
        c.start(self.now);
        self.clients.push((at, c));
        self.clients.len() - 1
    }

    /// Delivers datagrams until the network is quiet; returns the clients' events.
    fn pump(&mut self) -> Vec<(usize, DnsEvent)> {
        let mut events = Vec::new();
        loop {
            let mut packets = Vec::new();
            for (at, s) in self.servers.iter_mut() {
                while let Some((to, data)) = s.poll_transmit() {
                    packets.push((*at, to, data));
                }
            }
            for (at, c) in self.clients.iter_mut() {
                let from = self.nat.get(at).copied().unwrap_or(*at);
                while let Some((to, data)) = c.poll_transmit() {
                    packets.push((from, to, data));
                }
            }
            for (i, (_, c)) in self.clients.iter_mut().enumerate() {
                while let Some(e) = c.poll_event() {
                    events.push((i, e));
                }
            }
            if packets.is_empty() {
                return events;
            }
            for (from, to, data) in packets {
                let to = self.unnat.get(&to).copied().unwrap_or(to);
                self.ids.push(u16::from_be_bytes([data[0], data[1]]));
                self.delivered += 1;
                if let Some(s) = self.servers.get_mut(&to) {
                    let _ = s.handle_datagram(self.now, from, &data);
                } else if let Some((_, c)) = self.clients.iter_mut().find(|(a, _)| *a == to) {
                    c.handle_datagram(self.now, from, &data);
                } else {
                    self.lost += 1;
                }
            }
        }
    }

    /// Advances the clock to `t`, firing every timer on the way.
    fn run_until(&mut self, t: Instant) -> Vec<(usize, DnsEvent)> {
        let mut events = self.pump();
        loop {
            let next = self
                .servers
                .values()
                .filter_map(|s| s.poll_timeout())
                .chain(self.clients.iter().filter_map(|(_, c)| c.poll_timeout()))
                .min();
            match next {
                Some(at) if at <= t => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    for s in self.servers.values_mut() {
                        if s.poll_timeout().is_some_and(|a| a <= now) {
                            s.handle_timeout(now);
                        }
                    }
                    for (_, c) in self.clients.iter_mut() {
                        if c.poll_timeout().is_some_and(|a| a <= now) {
                            c.handle_timeout(now);
                        }
                    }
                    events.extend(self.pump());
                }
                _ => break,
            }
        }
        self.now = t;
        events
    }

    fn advance(&mut self, d: Duration) -> Vec<(usize, DnsEvent)> {
        let t = self.now + d;
        self.run_until(t)
    }
}

fn peers_of(events: &[(usize, DnsEvent)], client: usize) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = events
        .iter()
        .filter(|(i, _)| *i == client)
        .filter_map(|(_, e)| match e {
            DnsEvent::Peer { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn announce_lookup_push_and_leave() {
    let mut net = Net::new();
    let s = addr(0, 1, 5300);
    net.server(s, 1);
    let a = net.client(addr(1, 1, 4000), &[ServerAddr::new(s)], 2);
    let b = net.client(addr(1, 2, 4000), &[ServerAddr::new(s)], 3);
    let now = net.now;
    net.clients[a]
        .1
        .join(now, Bytes::from_static(b"t"), true, 7001);
    let events = net.advance(Duration::from_secs(1));
    assert!(
        peers_of(&events, a).is_empty(),
        "first announcer sees nobody"
    );
    assert_eq!(net.servers[&s].stored_peers(), 1);

    // b announces: its answer lists a; a (subscribed) gets b pushed.
    let now = net.now;
    net.clients[b]
        .1
        .join(now, Bytes::from_static(b"t"), true, 7002);
    let events = net.advance(Duration::from_secs(1));
    assert_eq!(peers_of(&events, b), [addr(1, 1, 7001)]);
    assert_eq!(peers_of(&events, a), [addr(1, 2, 7002)]);
    let stats = net.servers[&s].stats();
    // b subscribes with the same record, after its announce is applied (as Node).
    assert_eq!(stats.pushes_sent, 1);
    assert_eq!(stats.pushes_failed, 0);

    // The next round refreshes, lists the other again, and pushes nothing new.
    // (Lists include the asker itself, as Node's: whoami and self-detection deal with it.)
    let events = net.advance(Duration::from_secs(60));
    assert!(peers_of(&events, a).contains(&addr(1, 2, 7002)));
    assert_eq!(net.servers[&s].stats().pushes_sent, 1);

    // Leaving unannounces.
    net.clients[b].1.leave(b"t");
    net.advance(Duration::from_secs(1));
    assert_eq!(net.servers[&s].stored_peers(), 1);
    assert!(net.ids.iter().all(|&id| id != 0 && !is_utp_shaped(id)));
}

#[test]
fn whoami_with_two_servers_and_implied_port() {
    let mut net = Net::new();
    let s1 = addr(0, 1, 5300);
    let s2 = addr(0, 2, 5300);
    net.server(s1, 1);
    net.server(s2, 2);
    let servers = [ServerAddr::new(s1), ServerAddr::new(s2)];
    let mut config = DnsClientConfig::new(servers.to_vec(), 9);
    config.implied_port = true;
    let mut c = DnsClient::new(config);
    c.join(net.now, Bytes::from_static(b"t"), true, 7001);
    c.start(net.now);
    net.clients.push((addr(1, 1, 6000), c));
    let events = net.advance(Duration::from_secs(1));
    let me = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 1), 6000);
    assert!(events.contains(&(0, DnsEvent::Whoami(WhoamiResult::Found(me)))));
    assert_eq!(net.clients[0].1.public_addr(), Some(me));
    // The announce waited for whoami and announced the public port.
    assert_eq!(net.servers[&s1].stored_peers(), 1);
    let mut probe = DnsClient::new(DnsClientConfig::new(vec![ServerAddr::new(s1)], 5));
    probe.join(net.now, Bytes::from_static(b"t"), false, 0);
    probe.start(net.now);
    net.clients.push((addr(1, 9, 1), probe));
    let events = net.advance(Duration::from_secs(1));
    assert_eq!(peers_of(&events, 1), [SocketAddr::V4(me)]);
}

#[test]
fn secondary_port_fallback_and_retransmission_schedule() {
    let mut net = Net::new();
    let s = addr(0, 1, 53);
    net.server(s, 1);
    let spec = ServerAddr {
        addr: addr(0, 1, 5300),
        secondary: Some(53),
    };
    let c = net.client(addr(1, 1, 4000), &[spec], 2);
    net.clients[c]
        .1
        .join(net.now, Bytes::from_static(b"t"), true, 7001);
    // whoami probe (short) and token probe (default schedule) to the dead primary.
    net.advance(Duration::from_millis(1700));
    assert_eq!(
        net.lost,
        2 * 3,
        "whoami probe: 3 sends; token probe: 3 so far"
    );
    net.advance(Duration::from_secs(7));
    // Token probe: 5 sends by 7.5 s, gives up at 7.75 s, then the secondary answers.
    assert_eq!(net.lost, 3 + 5);
    assert_eq!(net.servers[&s].stored_peers(), 1);
    assert_eq!(net.clients[c].1.server_addrs().next(), Some(s));
    let stats = net.clients[c].1.stats();
    assert_eq!(stats.failed, 2);
}

#[test]
fn tokens_age_out_and_are_reprobed() {
    let mut net = Net::new();
    let s = addr(0, 1, 5300);
    net.server(s, 1);
    let c = net.client(addr(1, 1, 4000), &[ServerAddr::new(s)], 2);
    net.clients[c]
        .1
        .join(net.now, Bytes::from_static(b"t"), false, 0);
    net.advance(Duration::from_secs(1));
    assert_eq!(net.clients[c].1.tokens().collect::<Vec<_>>(), [true]);
    // Rounds refresh the token; leaving stops them and the token ages out in 5-10 min.
    net.advance(Duration::from_secs(20 * 60));
    assert_eq!(net.clients[c].1.tokens().collect::<Vec<_>>(), [true]);
    net.clients[c].1.leave(b"t");
    net.advance(Duration::from_secs(11 * 60));
    assert_eq!(net.clients[c].1.tokens().collect::<Vec<_>>(), [false]);
    // Server secrets rotated several times meanwhile: a rejoin probes again and works.
    let probes = net.servers[&s].stats().probes;
    net.clients[c]
        .1
        .join(net.now, Bytes::from_static(b"t"), true, 9);
    net.advance(Duration::from_secs(1));
    assert_eq!(net.servers[&s].stats().probes, probes + 1);
    assert_eq!(net.servers[&s].stored_peers(), 1);
    assert_eq!(net.servers[&s].stats().invalid_tokens, 0);
}

/// A server with 1,000 clients in 10 segments (10.0.<segment>.x), 20 topics; everyone
/// learns every other announcer of its topic through the server alone.
#[test]
fn thousand_clients_find_each_other() {
    let mut net = Net::new();
    let s = addr(0, 1, 5300);
    net.server(s, 42);
    for i in 0..1000u32 {
        let at = addr(1 + (i % 10) as u8, (i / 10) as u8, 4000);
        let c = net.client(at, &[ServerAddr::new(s)], u64::from(i) + 100);
        let topic = Bytes::from(format!("topic-{}", i % 20));
        let now = net.now;
        net.clients[c].1.join(now, topic, true, 7000);
    }
    let events = net.advance(Duration::from_secs(2));
    let server = &net.servers[&s];
    assert_eq!(server.stored_peers(), 1000);
    assert_eq!(server.stored_names(), 20);
    // Each client sees all 49 others: the earlier ones from its announce answer (at most 31
    // listed) or pushes (16 random subscribers each), the rest over the next rounds.
    let events2 = net.advance(Duration::from_secs(10 * 60));
    let mut all = events;
    all.extend(events2);
    let mut complete = 0;
    for c in 0..1000 {
        let found = peers_of(&all, c);
        let own = net.clients[c].0;
        assert!(!found.is_empty());
        if found.iter().filter(|a| a.ip() != own.ip()).count() == 49 {
            complete += 1;
        }
    }
    assert!(complete >= 990, "{complete} of 1000 complete");
    assert_eq!(net.servers[&s].stats().invalid_tokens, 0);
}

fn probe_packet(id: u16) -> Vec<u8> {
    let mut p = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["dns-discovery", "local"] {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 16, 0, 1]);
    p
}

/// A lookup/announce query for `name` with the given TXT strings in the additional section.
fn txt_query(name: &str, strings: &[&str]) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    let put_name = |p: &mut Vec<u8>| {
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
    };
    put_name(&mut p);
    p.extend_from_slice(&[0, 16, 0, 1]);
    put_name(&mut p);
    p.extend_from_slice(&[0, 16, 0, 1, 0, 0, 0, 0]);
    let rdata: Vec<u8> = strings
        .iter()
        .flat_map(|s| std::iter::once(s.len() as u8).chain(s.bytes()))
        .collect();
    p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    p.extend_from_slice(&rdata);
    p
}

const NAME: &str = "0123456789abcdef0123456789abcdef01234567.dns-discovery.local";

#[test]
fn bad_input_is_typed_and_bounded() {
    let now = Instant::ZERO;
    let mut config = DnsServerConfig::from_seed(1);
    config.burst = 8;
    config.per_sec = 1;
    let mut server = DnsServer::new(config, now);
    let me = addr(1, 1, 4000);
    let ip = Ipv4Addr::new(10, 0, 1, 1);
    let token = format!("token={}", server.token_for(ip));

    // Spoofed token: typed error, nothing stored, and the answer lists no peers.
    let spoofed = txt_query(NAME, &["subscribe=true", "token=AAAA", "announce=1"]);
    assert_eq!(
        server.handle_datagram(now, me, &spoofed),
        Err(RequestError::InvalidToken)
    );
    assert_eq!(server.stored_peers(), 0);
    let (_, answer) = server.poll_transmit().unwrap();
    assert!(answer.len() <= spoofed.len() + 40, "no amplification");

    let bad_port = txt_query(NAME, &[&token, "announce=70000"]);
    assert_eq!(
        server.handle_datagram(now, me, &bad_port),
        Err(RequestError::MalformedTxt)
    );
    let ok = txt_query(NAME, &[&token, "announce=0"]);
    assert_eq!(server.handle_datagram(now, me, &ok), Ok(()));
    assert_eq!(server.stored_peers(), 1);

    // A name that points at itself, and one past 255 bytes.
    let mut looped = probe_packet(7);
    looped.truncate(12);
    looped.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]);
    assert!(matches!(
        server.handle_datagram(now, me, &looped),
        Err(RequestError::Malformed(_))
    ));
    let long = format!("{}.dns-discovery.local", vec!["a".repeat(60); 5].join("."));
    assert!(matches!(
        server.handle_datagram(now, me, &txt_query(&long, &[&token])),
        Err(RequestError::Malformed(_))
    ));

    // A flood from one source is cut at its burst; another source is still served.
    let mut served = 0;
    for i in 0..100 {
        if server.handle_datagram(now, me, &probe_packet(i)).is_ok() {
            served += 1;
        }
    }
    assert!(served <= 8, "{served}");
    assert_eq!(
        server.handle_datagram(now, me, &probe_packet(1)),
        Err(RequestError::RateLimited)
    );
    assert_eq!(
        server.handle_datagram(now, addr(2, 2, 1), &probe_packet(1)),
        Ok(())
    );
    while server.poll_transmit().is_some() {}
}

#[test]
fn thousands_of_names_stay_within_the_limit() {
    let now = Instant::ZERO;
    let mut config = DnsServerConfig::from_seed(1);
    config.per_sec = 0;
    config.store.limit = 1000;
    let mut server = DnsServer::new(config, now);
    let me = addr(1, 1, 4000);
    let token = format!("token={}", server.token_for(Ipv4Addr::new(10, 0, 1, 1)));
    for i in 0..5000 {
        let name = format!("{i:040x}.dns-discovery.local");
        let q = txt_query(&name, &[&token, "announce=7000"]);
        assert_eq!(server.handle_datagram(now, me, &q), Ok(()));
        server.poll_transmit();
    }
    assert_eq!(server.stored_peers(), 1000);
    assert_eq!(server.stored_names(), 1000);
    assert!(
        server.store_bytes() < 1000 * 200,
        "{}",
        server.store_bytes()
    );
}

#[test]
fn tokens_survive_one_rotation_not_two() {
    let t0 = Instant::ZERO;
    let mut config = DnsServerConfig::from_seed(3);
    config.per_sec = 0;
    let mut server = DnsServer::new(config, t0);
    let me = addr(1, 1, 4000);
    let token = format!("token={}", server.token_for(Ipv4Addr::new(10, 0, 1, 1)));
    let announce = txt_query(NAME, &[&token, "announce=7000"]);
    let t1 = t0 + Duration::from_secs(5 * 60);
    server.handle_timeout(t1);
    assert_eq!(server.handle_datagram(t1, me, &announce), Ok(()));
    let t2 = t0 + Duration::from_secs(10 * 60);
    server.handle_timeout(t2);
    assert_eq!(
        server.handle_datagram(t2, me, &announce),
        Err(RequestError::InvalidToken)
    );
}

#[test]
fn pushes_are_resent_twice_then_given_up() {
    let now = Instant::ZERO;
    let mut config = DnsServerConfig::from_seed(4);
    config.per_sec = 0;
    let mut server = DnsServer::new(config, now);
    let sub = addr(1, 1, 4000);
    let ann = addr(1, 2, 4000);
    let t_sub = format!("token={}", server.token_for(Ipv4Addr::new(10, 0, 1, 1)));
    let t_ann = format!("token={}", server.token_for(Ipv4Addr::new(10, 0, 1, 2)));
    let lookup = txt_query(NAME, &["subscribe=true", &t_sub]);
    assert_eq!(server.handle_datagram(now, sub, &lookup), Ok(()));
    assert_eq!(
        server.handle_datagram(now, ann, &txt_query(NAME, &[&t_ann, "announce=7001"])),
        Ok(())
    );
    let mut to_sub = Vec::new();
    let mut t = now;
    for _ in 0..20 {
        while let Some((to, data)) = server.poll_transmit() {
            if to == sub {
                to_sub.push((t, data));
            }
        }
        match server.poll_timeout() {
            Some(at) if at <= now + Duration::from_secs(3) => {
                t = at;
                server.handle_timeout(t);
            }
            _ => break,
        }
    }
    // The lookup's response, then the push at 0, 0.5 and 1.5 s.
    let pushes: Vec<Duration> = to_sub[1..].iter().map(|(at, _)| *at - now).collect();
    assert_eq!(
        pushes,
        [0, 500, 1500].map(Duration::from_millis),
        "push schedule"
    );
    let id = u16::from_be_bytes([to_sub[1].1[0], to_sub[1].1[1]]);
    assert!(!is_utp_shaped(id));
    assert_eq!(server.stats().pushes_failed, 1);
}

/// 1,000 clients behind 10 NATs (one public address each, endpoint-independent mapping), two
/// servers: whoami finds each client's public mapping, clients announce the port the servers
/// see (`announce=0`, the shared-socket mode), and everyone learns the others' public
/// addresses through the servers alone.
#[test]
fn thousand_clients_behind_nats_find_each_other() {
    let mut net = Net::new();
    let servers = [addr(0, 1, 5300), addr(0, 2, 5300)];
    net.server(servers[0], 7);
    net.server(servers[1], 8);
    let list: Vec<ServerAddr> = servers.iter().copied().map(ServerAddr::new).collect();
    let mut public = Vec::new();
    for i in 0..1000u32 {
        let segment = (i % 10) as u8;
        let private = SocketAddr::from(([192, 168, segment, (i / 10) as u8], 6000));
        let mapped = SocketAddr::from(([100, 64, 0, segment], 20000 + (i / 10) as u16));
        net.nat.insert(private, mapped);
        net.unnat.insert(mapped, private);
        public.push(mapped);
        let mut config = DnsClientConfig::new(list.clone(), u64::from(i) + 1000);
        config.interval = Some(Duration::from_secs(60));
        config.implied_port = true;
        let mut c = DnsClient::new(config);
        c.join(
            net.now,
            Bytes::from(format!("topic-{}", i % 20)),
            true,
            6000,
        );
        c.start(net.now);
        net.clients.push((private, c));
    }
    let mut events = net.advance(Duration::from_secs(2));
    for (c, mapped) in public.iter().enumerate() {
        let SocketAddr::V4(me) = mapped else {
            unreachable!()
        };
        assert_eq!(net.clients[c].1.public_addr(), Some(*me), "client {c}");
    }
    assert_eq!(net.servers[&servers[0]].stored_peers(), 1000);
    events.extend(net.advance(Duration::from_secs(10 * 60)));
    let mut complete = 0;
    for c in 0..1000 {
        let found = peers_of(&events, c);
        let others: Vec<SocketAddr> = (0..1000)
            .filter(|&o| o != c && o % 20 == c % 20)
            .map(|o| public[o])
            .collect();
        assert!(
            found.iter().all(|a| public.contains(a)),
            "only public addresses"
        );
        if others.iter().all(|o| found.contains(o)) {
            complete += 1;
        }
    }
    assert!(complete >= 990, "{complete} of 1000 complete");
}
