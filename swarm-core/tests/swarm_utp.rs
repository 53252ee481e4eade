//! uTP composed into the swarm: several `Swarm`s wired back to back in-process, datagrams
//! passed directly on a simulated clock. TCP, where a test needs it, is a modelled pipe with a
//! chosen connect delay.

#[path = "support_utp/mod.rs"]
mod net;

use net::*;
use std::time::Duration;
use swarm_core::{Config, ConnId, Event, HandshakeMode, StreamError, Transport};

#[test]
fn utp_only_swarms_connect_and_exchange_data_both_ways() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    assert_eq!(net.nodes[0].swarm.connected(), 1);
    assert_eq!(net.nodes[1].swarm.connected(), 1);
    let there = transfer(&mut net, (0, a), (1, b), b"hello from the dialler");
    assert_eq!(there, b"hello from the dialler");
    let back = transfer(&mut net, (1, b), (0, a), b"and back from the acceptor");
    assert_eq!(back, b"and back from the acceptor");
}

#[test]
fn utp_only_dial_works_from_either_side() {
    let mut net = Net::utp_only(2);
    net.add_peer(1, 0);
    let ok = net.run_until(Duration::from_secs(10), |n| {
        !n.connections(0).is_empty() && !n.connections(1).is_empty()
    });
    assert!(ok);
    assert!(net.connections(1)[0].2, "node 1 dialled");
    assert!(!net.connections(0)[0].2);
}

#[test]
fn crossed_utp_dials_leave_one_connection_that_carries_data() {
    let mut net = Net::utp_only(2);
    net.add_peer(0, 1);
    net.add_peer(1, 0);
    net.run_until(Duration::from_secs(15), |_| false);
    for i in 0..2 {
        assert_eq!(net.nodes[i].swarm.connected(), 1, "node {i}");
        assert_eq!(net.nodes[i].swarm.connecting(), 0, "node {i}");
    }
    let live = |n: &Net, i: usize| {
        n.connections(i)
            .into_iter()
            .map(|c| c.0)
            .find(|c| n.nodes[i].swarm.conn_info(*c).is_some())
            .expect("a live connection")
    };
    let (a, b) = (live(&net, 0), live(&net, 1));
    let got = transfer(&mut net, (0, a), (1, b), b"over the kept connection");
    assert_eq!(got, b"over the kept connection");
}

#[test]
fn tcp_wins_the_race_when_it_connects_within_500_ms_of_utp() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    // uTP connects after one round trip (20 ms); TCP 300 ms later: within the grace.
    let tcp = TcpModel::ConnectAfter(Duration::from_millis(320));
    let mut net = Net::new(configs, Duration::from_millis(10), tcp);
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(10), |_| false);
    let conns = net.connections(0);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].1, Transport::Tcp);
    assert_eq!(net.nodes[0].swarm.connected(), 1);
    // The losing uTP connection was abandoned at both ends.
    assert_eq!(net.nodes[1].swarm.connected(), 1);
    assert_eq!(net.connections(1)[0].1, Transport::Tcp);
}

#[test]
fn utp_wins_the_race_when_tcp_has_not_connected_500_ms_after_it() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    let start = net.now;
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(10), |_| false);
    let conns = net.connections(0);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].1, Transport::Utp);
    let handshaking_at = net.nodes[0]
        .events
        .iter()
        .find(|(_, e)| e.name() == "handshaking")
        .map(|(t, _)| *t)
        .unwrap();
    // uTP connected after 20 ms; the handshake began only after the 500 ms grace.
    assert!(handshaking_at - start >= Duration::from_millis(520));
    assert!(handshaking_at - start < Duration::from_millis(600));
    assert_eq!(net.nodes[1].swarm.connected(), 1);
}

#[test]
fn a_late_tcp_loses_to_utp_after_the_grace() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    let tcp = TcpModel::ConnectAfter(Duration::from_millis(900));
    let mut net = Net::new(configs, Duration::from_millis(10), tcp);
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(10), |_| false);
    assert_eq!(net.connections(0)[0].1, Transport::Utp);
    assert_eq!(net.nodes[0].swarm.connected(), 1);
}

#[test]
fn one_mib_arrives_intact() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    let data = pattern(1 << 20, 0x5a);
    let got = transfer(&mut net, (0, a), (1, b), &data);
    assert!(got == data, "1 MiB corrupted");
}

#[test]
fn half_close_delivers_eof_and_the_other_direction_goes_on() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    let request = pattern(50_000, 1);
    let mut sent = net.write(0, a, &request).unwrap();
    while sent < request.len() {
        net.step();
        sent += net.write(0, a, &request[sent..]).unwrap_or(0);
    }
    let now = net.now;
    net.nodes[0].swarm.stream_shutdown(now, a).unwrap();
    net.drain(0);
    let mut got = Vec::new();
    let eof = net.run_until(Duration::from_secs(10), |n| {
        n.read_available(1, b, &mut got)
    });
    assert!(eof, "no end of stream");
    assert!(got == request);
    // Writing after our own shutdown is refused; the peer can still answer.
    assert_eq!(net.write(0, a, b"more"), Err(StreamError::Closed));
    let reply = transfer(&mut net, (1, b), (0, a), b"reply after the half-close");
    assert_eq!(reply, b"reply after the half-close");
    let now = net.now;
    net.nodes[1].swarm.stream_shutdown(now, b).unwrap();
    net.drain(1);
    let mut rest = Vec::new();
    assert!(net.run_until(Duration::from_secs(10), |n| n
        .read_available(0, a, &mut rest)));
    // Both directions done: each side reports the connection closed, not redialled at once.
    assert!(net.run_until(Duration::from_secs(30), |n| {
        n.event_count(0, "connection-closed") == 1 && n.event_count(1, "connection-closed") == 1
    }));
    let now = net.now;
    assert!(net.nodes[0].swarm.disconnect(now, a).is_ok(), "releases");
}

#[test]
fn a_reader_that_stops_reading_stops_the_writer_with_bounded_memory() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    let data = pattern(8 << 20, 3);
    let mut sent = 0;
    net.run_until(Duration::from_secs(60), |n| {
        while sent < data.len() {
            match n.write(0, a, &data[sent..]) {
                Ok(k) => sent += k,
                Err(_) => break,
            }
        }
        false
    });
    // Nobody read: the writer stopped well short of 8 MiB, held by the two bounded buffers.
    assert!(sent < 3 << 20, "writer accepted {sent} bytes");
    assert_eq!(net.write(0, a, b"x"), Err(StreamError::WouldBlock));
    let held = net.nodes[1].swarm.stream_buffered(b).unwrap()
        + net.nodes[0].swarm.stream_buffered(a).unwrap();
    assert!(held < 4 << 20, "{held} bytes buffered");
    // Reading resumes the flow; the stream arrives intact.
    net.nodes[0].writable.clear();
    let mut got = Vec::new();
    let ok = net.run_until(Duration::from_secs(120), |n| {
        n.read_available(1, b, &mut got);
        if n.nodes[0].writable.contains(&a) || sent < data.len() {
            while sent < data.len() {
                match n.write(0, a, &data[sent..]) {
                    Ok(k) => sent += k,
                    Err(_) => break,
                }
            }
        }
        got.len() == data.len()
    });
    assert!(ok, "stalled at {} bytes", got.len());
    assert!(got == data);
}

#[test]
fn inbound_utp_respects_the_whitelist() {
    let mut configs = vec![config(0, false, true), config(1, false, true)];
    configs[1].whitelist = vec![addr(5).ip()];
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(5), |_| false);
    assert!(net.connections(0).is_empty());
    assert!(net.connections(1).is_empty());
    assert!(net.event_count(1, "peer-rejected") >= 1);
    assert!(net.event_count(0, "connect-failed") >= 1);
}

#[test]
fn inbound_utp_respects_max_connections() {
    let mut configs: Vec<Config> = (0..3).map(|i| config(i, false, true)).collect();
    configs[2] = configs[2].clone().with_max_connections(1);
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    net.add_peer(0, 2);
    net.run_until(Duration::from_secs(2), |_| false);
    net.add_peer(1, 2);
    net.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(net.nodes[2].swarm.connected(), 1);
    assert_eq!(net.connections(1).len(), 0);
}

#[test]
fn application_disconnect_is_local_and_the_peer_sees_end_of_stream() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    net.write(0, a, b"last words").unwrap();
    let now = net.now;
    net.nodes[0].swarm.disconnect(now, a).unwrap();
    net.drain(0);
    assert_eq!(net.event_count(0, "connection-closed"), 1);
    let mut got = Vec::new();
    assert!(net.run_until(Duration::from_secs(10), |n| n
        .read_available(1, b, &mut got)));
    assert_eq!(got, b"last words");
    let now = net.now;
    assert_eq!(
        net.nodes[0].swarm.stream_read(now, a, &mut [0u8; 8]),
        Err(StreamError::Closed)
    );
    // The dialler does not redial after its own close.
    net.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(net.event_count(0, "connecting"), 1);
}

#[test]
fn the_duplicate_rule_keeps_tcp_over_utp_between_the_same_peers() {
    let configs = vec![config(0, true, true), config(1, true, true)];
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    // Node 0's TCP dials connect; node 1's never do, so its dial ends up on uTP.
    net.tcp[0] = TcpModel::ConnectAfter(Duration::from_millis(5));
    net.add_peer(0, 1);
    net.run_until(Duration::from_secs(2), |_| false);
    net.add_peer(1, 0);
    net.run_until(Duration::from_secs(10), |_| false);
    for i in 0..2 {
        assert_eq!(net.nodes[i].swarm.connected(), 1, "node {i}");
        let live: Vec<_> = net
            .connections(i)
            .into_iter()
            .filter(|c| net.nodes[i].swarm.conn_info(c.0).is_some())
            .collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1, Transport::Tcp, "node {i} kept TCP");
    }
    // Node 1's uTP connection completed its handshake and lost to the registered TCP one
    // before any `connection` was reported for it.
    let lost = net.nodes[1].events.iter().any(|(_, e)| {
        matches!(e, Event::RedundantConnection { info, .. }
            if info.transport == Transport::Utp && info.initiator)
    });
    assert!(lost, "node 1's uTP dial was resolved by the rule");
}

#[test]
fn utp_only_swarms_connect_and_transfer_under_loss_across_seeds() {
    for seed in 0..10u64 {
        let mut net = Net::utp_only(2);
        net.loss = 0.05;
        net.rng = seed;
        let (a, b) = connect_pair(&mut net);
        let data = pattern(256 * 1024, seed as u8);
        let got = transfer(&mut net, (0, a), (1, b), &data);
        assert!(got == data, "seed {seed}: corrupted");
    }
}

#[test]
fn an_external_handshake_runs_over_the_utp_stream() {
    let configs = (0..2)
        .map(|i| config(i, false, true).with_handshake(HandshakeMode::External))
        .collect();
    let mut net = Net::new(configs, Duration::from_millis(10), TcpModel::Silent);
    net.add_peer(0, 1);
    // The application's protocol: each side sends its id, 32 bytes, then reports it.
    let mut ids: [Option<ConnId>; 2] = [None, None];
    let mut sent = [false; 2];
    let mut got: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let done = net.run_until(Duration::from_secs(10), |n| {
        for i in 0..2 {
            if ids[i].is_none() {
                ids[i] = n.nodes[i].events.iter().find_map(|(_, e)| match e {
                    Event::Handshaking { conn, .. } => Some(*conn),
                    _ => None,
                });
            }
            let Some(c) = ids[i] else { continue };
            if !sent[i] {
                sent[i] = n.write(i, c, &id(i)).is_ok();
            }
            if got[i].len() < 32 {
                let mut buf = [0u8; 64];
                if let Ok(k) = n.read(i, c, &mut buf) {
                    got[i].extend_from_slice(&buf[..k]);
                }
                if got[i].len() >= 32 {
                    let now = n.now;
                    n.nodes[i]
                        .swarm
                        .complete_handshake(now, c, &got[i][..32], None)
                        .unwrap();
                    n.drain(i);
                }
            }
        }
        !n.connections(0).is_empty() && !n.connections(1).is_empty()
    });
    assert!(done, "external handshake over uTP did not complete");
    assert_eq!(got[0], id(1));
    assert_eq!(got[1], id(0));
}

#[test]
fn an_idle_utp_connection_stays_up_for_ten_minutes() {
    let mut net = Net::utp_only(2);
    let (a, b) = connect_pair(&mut net);
    let before = net.datagrams;
    net.run_until(Duration::from_secs(600), |_| false);
    for i in 0..2 {
        assert_eq!(net.event_count(i, "connection-closed"), 0, "node {i}");
        assert_eq!(net.nodes[i].swarm.connected(), 1);
    }
    // Keep-alives every 29 s each way, not a flood.
    let keepalives = net.datagrams - before;
    assert!((20..=100).contains(&keepalives), "{keepalives} datagrams");
    let got = transfer(&mut net, (0, a), (1, b), b"still here");
    assert_eq!(got, b"still here");
}
