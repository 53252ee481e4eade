//! Swarms with unicast dns-discovery servers: datagrams between `Swarm`s and server engines
//! in-process, on a simulated clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::dnsd::{DnsServer, DnsServerConfig, ServerAddr};
use swarm_core::{Config, Event, Input, Instant, Output, RejectReason, Swarm, UdpSocket};

fn addr(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, a, b], port))
}

struct Host {
    ip_last: (u8, u8),
    swarm: Swarm,
    /// The port its `UdpSocket::Dns` socket is bound to.
    dns_port: u16,
    port: u16,
    events: Vec<Event>,
}

struct World {
    now: Instant,
    servers: BTreeMap<SocketAddr, DnsServer>,
    hosts: Vec<Host>,
}

impl World {
    fn socket_addr(h: &Host, socket: UdpSocket) -> SocketAddr {
        let port = match socket {
            UdpSocket::Dns => h.dns_port,
            _ => h.port,
        };
        addr(h.ip_last.0, h.ip_last.1, port)
    }

    fn pump(&mut self) {
        loop {
            let mut packets = Vec::new();
            for (i, h) in self.hosts.iter_mut().enumerate() {
                while let Some(o) = h.swarm.poll_output() {
                    match o {
                        Output::Transmit { socket, to, data } => {
                            let from = Self::socket_addr(h, socket);
                            packets.push((from, to, data, Some((i, socket))));
                        }
                        Output::Event(e) => h.events.push(e),
                        _ => {}
                    }
                }
            }
            for (at, s) in self.servers.iter_mut() {
                while let Some((to, data)) = s.poll_transmit() {
                    packets.push((*at, to, data, None));
                }
            }
            if packets.is_empty() {
                return;
            }
            for (from, to, data, _) in packets {
                if let Some(s) = self.servers.get_mut(&to) {
                    let _ = s.handle_datagram(self.now, from, &data);
                    continue;
                }
                for h in self.hosts.iter_mut() {
                    for socket in [UdpSocket::Dns, UdpSocket::Swarm] {
                        if Self::socket_addr(h, socket) == to {
                            let input = Input::Datagram {
                                socket,
                                from,
                                data: &data,
                            };
                            h.swarm.handle_input(self.now, input);
                        }
                    }
                }
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        loop {
            let next = self
                .servers
                .values()
                .filter_map(|s| s.poll_timeout())
                .chain(self.hosts.iter().filter_map(|h| h.swarm.poll_timeout()))
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    for s in self.servers.values_mut() {
                        if s.poll_timeout().is_some_and(|a| a <= now) {
                            s.handle_timeout(now);
                        }
                    }
                    for h in self.hosts.iter_mut() {
                        if h.swarm.poll_timeout().is_some_and(|a| a <= now) {
                            h.swarm.handle_timeout(now);
                        }
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

fn world(servers: &[SocketAddr], utp: bool, hosts: u8) -> World {
    let mut w = World {
        now: Instant::ZERO,
        servers: BTreeMap::new(),
        hosts: Vec::new(),
    };
    for (i, s) in servers.iter().enumerate() {
        let mut config = DnsServerConfig::from_seed(i as u64);
        config.per_sec = 0;
        w.servers.insert(*s, DnsServer::new(config, w.now));
    }
    let list: Vec<ServerAddr> = servers.iter().copied().map(ServerAddr::new).collect();
    for i in 0..hosts {
        let mut config =
            Config::new(vec![i + 1; 32], u64::from(i) + 1).with_dns_servers(list.clone());
        config.utp = utp;
        let mut swarm = Swarm::new(config).unwrap();
        swarm.join(w.now, &b"topic"[..], true);
        let port = 7000 + u16::from(i);
        swarm.handle_input(w.now, Input::Listening { port });
        w.hosts.push(Host {
            ip_last: (1, i + 1),
            swarm,
            dns_port: 40000 + u16::from(i),
            port,
            events: Vec::new(),
        });
    }
    w
}

fn found(h: &Host) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Peer(p) => Some(p.addr),
            _ => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn swarms_find_each_other_through_a_server_on_their_own_dns_socket() {
    let s = addr(0, 1, 5300);
    let mut w = world(&[s], false, 3);
    w.advance(Duration::from_secs(2));
    for (i, h) in w.hosts.iter().enumerate() {
        let others: Vec<SocketAddr> = (0..3u8)
            .filter(|&j| usize::from(j) != i)
            .map(|j| addr(1, j + 1, 7000 + u16::from(j)))
            .collect();
        let got = found(h);
        for o in &others {
            assert!(got.contains(o), "host {i} found {got:?}");
        }
    }
    assert_eq!(w.servers[&s].stored_peers(), 3);
    // Our own entry, listed back by the server, is never a candidate (public host + our
    // port, after whoami).
    w.advance(Duration::from_secs(80));
    for (i, h) in w.hosts.iter().enumerate() {
        let me = addr(1, i as u8 + 1, h.port);
        assert!(!found(h).contains(&me), "host {i} found itself");
        assert!(h.events.iter().any(|e| matches!(
            e,
            Event::PeerRejected { addr, reason: RejectReason::Banned, .. } if *addr == me
        )));
    }

    // Leaving unannounces at the server.
    w.hosts[0].swarm.leave(b"topic");
    w.advance(Duration::from_secs(1));
    assert_eq!(w.servers[&s].stored_peers(), 2);
}

#[test]
fn with_utp_the_shared_socket_is_used_and_whoami_bans_our_public_address() {
    let servers = [addr(0, 1, 5300), addr(0, 2, 5300)];
    let mut w = world(&servers, true, 2);
    w.advance(Duration::from_secs(3));
    let me = addr(1, 1, 7000);
    assert_eq!(w.hosts[0].swarm.public_addr().map(SocketAddr::V4), Some(me));
    // Announced with the implied port (announce=0 -> the source port = the swarm port).
    assert!(found(&w.hosts[1]).contains(&me));
    // Our own entry, listed back by the next round, is rejected as banned.
    w.advance(Duration::from_secs(80));
    let banned_self = w.hosts[0].events.iter().any(|e| {
        matches!(e, Event::PeerRejected { addr, reason: RejectReason::Banned, .. } if *addr == me)
    });
    assert!(banned_self, "{:?}", w.hosts[0].events);
    assert!(!found(&w.hosts[0]).contains(&me));
}

/// A push whose DNS id starts with `d` (0x64), on the socket shared with the DHT, still
/// reaches the DNS client (Node hands every datagram to both).
#[test]
fn a_push_that_starts_with_d_is_not_lost_to_the_dht() {
    use swarm_core::mdns::topic::dns_name;
    use swarm_core::mdns::wire::Writer;
    let s = addr(0, 1, 5300);
    let mut config = Config::new(vec![1; 32], 1)
        .with_dns_servers(vec![ServerAddr::new(s)])
        .with_dht(Vec::new());
    config.utp = true;
    let mut swarm = Swarm::new(config).unwrap();
    let now = Instant::ZERO;
    swarm.join(now, &b"topic"[..], true);
    swarm.handle_input(now, Input::Listening { port: 7000 });
    while swarm.poll_output().is_some() {}
    let key = swarm_core::mdns::KeyHash::Sha1.key(b"topic").unwrap();
    let mut w = Writer::default();
    w.start_message(0x6431, 0x0100, [0, 0, 1]);
    w.srv(
        dns_name(&key).as_bytes(),
        7777,
        std::net::Ipv4Addr::new(10, 0, 9, 9),
    );
    let data = w.finish();
    assert_eq!(data[0], b'd');
    swarm.handle_input(
        now,
        Input::Datagram {
            socket: UdpSocket::Swarm,
            from: s,
            data: &data,
        },
    );
    let outputs: Vec<Output> = std::iter::from_fn(|| swarm.poll_output()).collect();
    let found = outputs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Peer(p)) if p.addr == addr(9, 9, 7777)));
    assert!(found, "{outputs:?}");
    let answered = outputs.iter().any(|o| {
        matches!(o, Output::Transmit { socket: UdpSocket::Swarm, to, data } if *to == s && data[..2] == [0x64, 0x31])
    });
    assert!(answered, "the push is answered on the shared socket");
}
