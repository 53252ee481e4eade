//! The connection manager driven by hand: the test plays the network and the remote peers.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::handshake::encode_handshake;
use swarm_core::{
    BanReason, CloseCause, Config, ConnId, Event, HandshakeMode, Input, Instant, Output,
    RejectReason, Swarm, Transport,
};

const LOCAL: &[u8] = &[0x50; 32];

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, last], port))
}

fn at(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

fn swarm(config: impl FnOnce(Config) -> Config) -> Swarm {
    Swarm::new(config(Config::new(LOCAL.to_vec(), 1))).unwrap()
}

fn drain(swarm: &mut Swarm) -> Vec<Output> {
    std::iter::from_fn(|| swarm.poll_output()).collect()
}

fn events(outputs: &[Output]) -> Vec<&Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn names(outputs: &[Output]) -> Vec<&'static str> {
    events(outputs).iter().map(|e| e.name()).collect()
}

fn dials(outputs: &[Output]) -> Vec<ConnId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Dial { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

fn closes(outputs: &[Output]) -> Vec<ConnId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Close { conn } => Some(*conn),
            _ => None,
        })
        .collect()
}

/// Dials `remote`, connects, and completes the handshake with `remote_id`.
fn dial_and_handshake(
    s: &mut Swarm,
    now: Instant,
    remote: SocketAddr,
    remote_id: &[u8],
) -> (ConnId, Vec<Output>) {
    s.add_peer(now, Some(b"t"), remote);
    let mut out = drain(s);
    let conn = dials(&out)[0];
    s.handle_input(now, Input::Connected { conn });
    out.extend(drain(s));
    let wire = encode_handshake(remote_id);
    s.handle_input(now, Input::Received { conn, data: &wire });
    out.extend(drain(s));
    (conn, out)
}

fn accept_and_handshake(
    s: &mut Swarm,
    now: Instant,
    remote: SocketAddr,
    remote_id: &[u8],
) -> (ConnId, Vec<Output>) {
    let conn = s.accept(now, remote, Transport::Tcp).unwrap();
    let mut out = drain(s);
    let wire = encode_handshake(remote_id);
    s.handle_input(now, Input::Received { conn, data: &wire });
    out.extend(drain(s));
    (conn, out)
}

#[test]
fn sends_its_handshake_immediately_and_reports_the_connection() {
    let mut s = swarm(|c| c);
    let (conn, out) = dial_and_handshake(&mut s, at(0), addr(2, 7000), &[0x60; 32]);
    assert_eq!(
        names(&out),
        ["peer", "connecting", "handshaking", "connection"]
    );
    let sent: Vec<&Bytes> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, data } if *c == conn => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [&encode_handshake(LOCAL)]);
    assert_eq!((s.connected(), s.connecting()), (1, 0));
}

#[test]
fn dialling_ourselves_bans_the_address() {
    let mut s = swarm(|c| c);
    let (conn, out) = dial_and_handshake(&mut s, at(0), addr(1, 7000), LOCAL);
    assert!(closes(&out).contains(&conn));
    let banned = events(&out).into_iter().find_map(|e| match e {
        Event::PeerBanned { peer, reason } => Some((peer.addr, *reason)),
        _ => None,
    });
    assert_eq!(banned, Some((addr(1, 7000), BanReason::DetectedSelf)));
    assert!(!names(&out).contains(&"connection"));
    s.add_peer(at(10), Some(b"t"), addr(1, 7000));
    let out = drain(&mut s);
    assert!(matches!(
        events(&out)[..],
        [Event::PeerRejected {
            reason: RejectReason::Banned,
            ..
        }]
    ));
}

#[test]
fn crossed_connection_is_held_back_until_the_rule_can_run() {
    // The remote has a larger id: our dial must win. Its inbound connection completes first.
    let remote_id = [0x70; 32];
    let mut s = swarm(|c| c);
    s.add_peer(at(0), Some(b"t"), addr(2, 7000));
    let dial = dials(&drain(&mut s))[0];
    let (inbound, out) = accept_and_handshake(&mut s, at(1), addr(2, 40000), &remote_id);
    assert!(
        !names(&out).contains(&"connection"),
        "deferred while our dial to that host is pending"
    );
    s.handle_input(at(2), Input::Connected { conn: dial });
    drain(&mut s);
    s.handle_input(
        at(3),
        Input::Received {
            conn: dial,
            data: &encode_handshake(&remote_id),
        },
    );
    let out = drain(&mut s);
    let connections: Vec<_> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Connection { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(
        connections,
        [dial],
        "only the surviving connection is ever reported"
    );
    assert!(closes(&out).contains(&inbound));
    assert_eq!(s.connected(), 1);
}

#[test]
fn deferral_ends_at_the_handshake_deadline_if_the_dial_never_completes() {
    let mut s = swarm(|c| c);
    s.add_peer(at(0), Some(b"t"), addr(2, 7000));
    let dial = dials(&drain(&mut s))[0];
    s.handle_input(at(0), Input::Connected { conn: dial });
    drain(&mut s);
    let (inbound, _) = accept_and_handshake(&mut s, at(1), addr(2, 40000), &[0x70; 32]);
    let deadline = s.poll_timeout().unwrap();
    assert!(deadline <= at(5001));
    s.handle_timeout(at(5001));
    let out = drain(&mut s);
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::Connection { conn, .. } if *conn == inbound)));
}

#[test]
fn failed_dials_follow_the_retry_schedule_then_drop() {
    let mut s = swarm(|c| c);
    s.add_peer(at(0), Some(b"t"), addr(3, 7000));
    let mut now = 0;
    let mut dial_times = Vec::new();
    loop {
        let out = drain(&mut s);
        if names(&out).contains(&"drop") {
            break;
        }
        for conn in dials(&out) {
            dial_times.push(now);
            s.handle_input(at(now), Input::DialFailed { conn });
        }
        let Some(next) = s.poll_timeout() else {
            continue; // dropped: the next drain reports it
        };
        now = next.as_micros() / 1000;
        s.handle_timeout(next);
    }
    assert_eq!(dial_times, [0, 1000, 2000, 7000, 22000]);
    assert_eq!(s.known_peers(), 0, "a dropped peer is forgotten");
}

#[test]
fn connect_timeout_fails_the_dial() {
    let mut s = swarm(|c| c);
    s.add_peer(at(0), Some(b"t"), addr(3, 7000));
    let dial = dials(&drain(&mut s))[0];
    s.handle_timeout(at(3000));
    let out = drain(&mut s);
    assert_eq!(closes(&out), [dial]);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::ConnectFailed {
            timed_out: true,
            ..
        }
    )));
}

#[test]
fn remote_close_of_an_outbound_connection_redials_but_a_local_close_does_not() {
    let mut s = swarm(|c| c);
    let (conn, _) = dial_and_handshake(&mut s, at(0), addr(2, 7000), &[0x60; 32]);
    s.handle_input(
        at(10),
        Input::Closed {
            conn,
            cause: CloseCause::Remote,
        },
    );
    assert_eq!(names(&drain(&mut s)), ["connection-closed"]);
    s.handle_timeout(at(1010));
    let redial = dials(&drain(&mut s));
    assert_eq!(redial.len(), 1);

    let mut s = swarm(|c| c);
    let (conn, _) = dial_and_handshake(&mut s, at(0), addr(2, 7000), &[0x60; 32]);
    s.disconnect(at(10), conn).unwrap();
    drain(&mut s);
    s.handle_timeout(at(60_000));
    assert!(dials(&drain(&mut s)).is_empty());
}

#[test]
fn max_connections_counts_dials_and_an_inbound_connection_takes_the_newest_dials_place() {
    let mut s = swarm(|c| c.with_max_connections(2));
    for last in 2..6 {
        s.add_peer(at(0), Some(b"t"), addr(last, 7000));
    }
    let out = drain(&mut s);
    let dialled = dials(&out);
    assert_eq!(dialled.len(), 2);
    assert_eq!(s.queued(), 2);
    // A connection from a host we are dialling may be the crossing of our dial: admitted
    // beyond the limit, and no dial gives way. Over the limit, one dial less would not make
    // room, so another host is refused.
    let crossing = s.accept(at(1), addr(2, 40001), Transport::Tcp).unwrap();
    assert!(closes(&drain(&mut s)).is_empty());
    assert_eq!(
        s.accept(at(1), addr(9, 40000), Transport::Tcp),
        Err(RejectReason::MaxConnections)
    );
    drain(&mut s);
    let closed = |s: &mut Swarm, conn| {
        let cause = CloseCause::Remote;
        s.handle_input(at(2), Input::Closed { conn, cause });
        dials(&drain(s)).len()
    };
    assert_eq!(closed(&mut s, crossing), 0, "back at the limit");
    // At the limit, another host's connection ends our newest dial, which goes back to the
    // queue with `connect-failed` (not timed out) and no retry counted.
    let first = s.accept(at(3), addr(9, 40000), Transport::Tcp).unwrap();
    let out = drain(&mut s);
    assert_eq!(closes(&out), [dialled[1]]);
    assert!(matches!(
        events(&out)[..],
        [Event::ConnectFailed { peer, timed_out: false }, ..] if peer.addr == addr(3, 7000)
    ));
    assert_eq!(s.queued(), 3);
    assert_eq!(s.stats().dials_yielded, 1);
    assert_eq!(s.stats().dials_failed, 0);
    // Then the last dial gives way; with none left, the limit refuses.
    let second = s.accept(at(3), addr(8, 40000), Transport::Tcp).unwrap();
    assert_eq!(closes(&drain(&mut s)), [dialled[0]]);
    assert_eq!(
        s.accept(at(3), addr(7, 40000), Transport::Tcp),
        Err(RejectReason::MaxConnections)
    );
    // Each inbound connection closing frees a slot for the queue.
    assert_eq!(closed(&mut s, first), 1);
    assert_eq!(closed(&mut s, second), 1);
}

#[test]
fn whitelist_applies_to_discovered_and_inbound_peers() {
    let mut s = swarm(|c| c.with_whitelist(["10.0.0.2".parse().unwrap()]));
    s.add_peer(at(0), Some(b"t"), addr(3, 7000));
    assert!(matches!(
        events(&drain(&mut s))[..],
        [Event::PeerRejected {
            reason: RejectReason::Whitelist,
            ..
        }]
    ));
    assert_eq!(
        s.accept(at(0), addr(3, 1), Transport::Tcp),
        Err(RejectReason::Whitelist)
    );
    assert!(s.accept(at(0), addr(2, 1), Transport::Tcp).is_ok());
}

#[test]
fn a_connected_peer_is_not_dialled_again_but_is_after_it_leaves() {
    let mut s = swarm(|c| c);
    let (conn, _) = dial_and_handshake(&mut s, at(0), addr(2, 7000), &[0x60; 32]);
    s.add_peer(at(5), Some(b"t"), addr(2, 7000));
    assert!(matches!(
        events(&drain(&mut s))[..],
        [Event::PeerRejected {
            reason: RejectReason::Duplicate,
            ..
        }]
    ));
    s.disconnect(at(6), conn).unwrap();
    drain(&mut s);
    s.add_peer(at(7), Some(b"t"), addr(2, 7000));
    assert_eq!(
        dials(&drain(&mut s)).len(),
        1,
        "stale seen state never blocks a reconnect"
    );
}

#[test]
fn remove_peer_bans_without_touching_the_connection() {
    let mut s = swarm(|c| c);
    let (_, _) = dial_and_handshake(&mut s, at(0), addr(2, 7000), &[0x60; 32]);
    s.remove_peer(Some(b"t"), addr(2, 7000));
    let out = drain(&mut s);
    assert!(matches!(
        events(&out)[..],
        [Event::PeerBanned {
            reason: BanReason::Application,
            ..
        }]
    ));
    assert!(closes(&out).is_empty());
    assert_eq!(s.connected(), 1);
}

#[test]
fn external_handshake_sends_nothing_and_takes_the_reported_id() {
    let mut s = swarm(|c| c.with_handshake(HandshakeMode::External));
    let conn = s.accept(at(0), addr(2, 1), Transport::Tcp).unwrap();
    let out = drain(&mut s);
    assert!(out.iter().all(|o| !matches!(o, Output::Send { .. })));
    assert!(!s.wants_read(conn));
    s.complete_handshake(at(1), conn, b"remote", Some(b"key"))
        .unwrap();
    assert_eq!(names(&drain(&mut s)), ["connection"]);
    assert_eq!(
        s.complete_handshake(at(1), conn, b"x", None),
        Err(swarm_core::CommandError::NotHandshaking)
    );
}

#[test]
fn silent_peer_times_out_after_five_seconds() {
    let mut s = swarm(|c| c);
    let conn = s.accept(at(0), addr(2, 1), Transport::Tcp).unwrap();
    s.handle_input(
        at(1),
        Input::Received {
            conn,
            data: &[0x80],
        },
    );
    drain(&mut s);
    s.handle_timeout(at(4999));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(at(5000));
    let out = drain(&mut s);
    assert_eq!(names(&out), ["handshake-timeout", "connection-closed"]);
    assert_eq!(closes(&out), [conn]);
    assert_eq!(s.connecting(), 0);
}

#[test]
fn retry_jitter_is_seeded_and_bounded() {
    let run = |seed| {
        let mut s = Swarm::new(Config::new(LOCAL.to_vec(), seed).with_retry_jitter(0.5)).unwrap();
        s.add_peer(at(0), Some(b"t"), addr(3, 7000));
        let conn = dials(&drain(&mut s))[0];
        s.handle_input(at(0), Input::DialFailed { conn });
        drain(&mut s);
        s.poll_timeout().unwrap()
    };
    assert_eq!(run(7), run(7));
    let wait = Duration::from_micros(run(7).as_micros());
    assert!(wait >= Duration::from_millis(500) && wait < Duration::from_millis(1500));
}

#[test]
fn join_reports_joined_after_the_first_mdns_round_and_sends_the_query() {
    let mut s = swarm(|c| c.with_mdns());
    s.join(at(0), &b"topic"[..], true);
    assert!(drain(&mut s).is_empty(), "nothing before listening");
    s.handle_input(at(1), Input::Listening { port: 7001 });
    let out = drain(&mut s);
    let queries = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Transmit {
                    socket: swarm_core::UdpSocket::Mdns,
                    ..
                }
            )
        })
        .count();
    assert_eq!(queries, 1, "one TXT query for the topic");
    let joined: Vec<_> = events(&out)
        .into_iter()
        .filter(|e| matches!(e, Event::Joined { topic } if &topic[..] == b"topic"))
        .collect();
    assert_eq!(joined.len(), 1);
}

#[test]
fn join_without_discovery_reports_joined_at_once() {
    let mut s = swarm(|c| c);
    s.handle_input(at(0), Input::Listening { port: 7001 });
    drain(&mut s);
    s.join(at(1), &b"topic"[..], false);
    assert_eq!(names(&drain(&mut s)), ["joined"]);
}

#[test]
fn raw_topic_hash_keys_both_mdns_and_the_dht() {
    let bootstrap: SocketAddr = "127.0.0.1:6881".parse().unwrap();
    let mut s = swarm(|mut c| {
        c.topic_hash = swarm_core::mdns::KeyHash::Raw;
        c.with_mdns().with_dht(vec![bootstrap])
    });
    s.handle_input(at(0), Input::Listening { port: 7001 });
    s.join(at(1), &b"abc"[..], false);
    let out = drain(&mut s);
    let sent = |socket| -> Vec<Bytes> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit {
                    socket: s, data, ..
                } if *s == socket => Some(data.clone()),
                _ => None,
            })
            .collect()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    // mDNS: the DNS name is the hex of the raw key, "abc" -> 616263.
    assert!(sent(swarm_core::UdpSocket::Mdns)
        .iter()
        .any(|d| contains(d, b"616263")));
    // DHT: the get_peers info-hash is the raw key, zero-padded to 20 bytes.
    let mut info_hash = b"12:info_hash20:abc".to_vec();
    info_hash.extend_from_slice(&[0u8; 17]);
    let info_hash = &info_hash[3..];
    assert!(sent(swarm_core::UdpSocket::Swarm)
        .iter()
        .any(|d| contains(d, info_hash)));
}
