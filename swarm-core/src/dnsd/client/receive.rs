//! What the client receives: answers to its queries (tokens, whoami, peers) and SRV pushes.

use super::*;

impl DnsClient {
    /// One datagram that may be for the client: an answer to one of our queries, or a push
    /// from one of our servers. Returns whether it was.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        let Ok(msg) = wire::decode(data) else {
            self.stats.ignored += 1;
            return false;
        };
        let ours = if msg.is_response() {
            self.on_response(now, from, &msg)
        } else {
            self.on_push(from, &msg)
        };
        if !ours {
            self.stats.ignored += 1;
        }
        if self.started {
            // A probe answer may have unblocked the first rounds.
            self.handle_timeout(now);
        }
        ours
    }

    fn on_response(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) -> bool {
        if !self.pending.get(&msg.id).is_some_and(|p| p.to == from) {
            return false;
        }
        let Some(p) = self.pending.remove(&msg.id) else {
            return false;
        };
        self.deadlines.remove(&(p.deadline, msg.id));
        self.stats.responses += 1;
        let Some(responder) = ipv4_of(from.ip()) else {
            return true;
        };
        // Every TXT answer counts (Node reads the first; ours never send more than one).
        let mut token = None;
        let mut seen_host = None;
        let mut seen_port = None;
        let mut peers = Vec::new();
        for r in msg.records.iter().filter(|r| r.section == Section::Answer) {
            let RData::Txt(raw) = &r.data else { continue };
            let d = TxtData::parse(raw);
            if let Some(t) = d.token.filter(|t| !t.is_empty()) {
                token = core::str::from_utf8(t).ok().map(str::to_owned);
            }
            seen_host = d.host.or(seen_host);
            seen_port = d.port.or(seen_port);
            if let Some(v) = d.peers {
                txt::decode_peers(v, responder, &mut peers, MAX_PEERS_PER_DATAGRAM);
            }
        }
        let i = p.server;
        if let Some(t) = token.clone() {
            let tick = self.tick;
            let s = &mut self.servers[i];
            s.token = Some(t);
            s.token_tick = tick;
        }
        match p.what {
            What::Probe { whoami, secondary } => {
                if token.is_none() {
                    // Not a dns-discovery server answer: a failed probe.
                    self.stats.failed += 1;
                    if !secondary && self.servers[i].secondary.is_some() {
                        self.probe(now, i, whoami, true);
                    } else {
                        self.probe_failed(now, i, whoami);
                    }
                    return true;
                }
                let s = &mut self.servers[i];
                if secondary {
                    s.addr = from;
                }
                s.secondary = None;
                if whoami {
                    let seen = seen_host
                        .and_then(|h| core::str::from_utf8(h).ok()?.parse::<Ipv4Addr>().ok())
                        .zip(seen_port.and_then(|p| parse_port(p).ok()))
                        .map(|(ip, port)| SocketAddrV4::new(ip, port));
                    self.whoami_step(responder, seen);
                } else {
                    s.probing = false;
                }
                let waiting = std::mem::take(&mut self.servers[i].waiting);
                for request in waiting {
                    self.send(now, i, request);
                }
            }
            What::Send(request) => {
                if let Some(topic) = request.topic.filter(|t| self.joined.contains_key(t)) {
                    for addr in peers {
                        if addr.port() != 0 {
                            let addr = SocketAddr::V4(addr);
                            self.push_event(DnsEvent::Peer {
                                topic: topic.clone(),
                                addr,
                            });
                        }
                    }
                }
            }
        }
        true
    }

    /// A push: a query from one of our servers whose SRV records name peers. Answered with an
    /// empty response, as Node's client does.
    fn on_push(&mut self, from: SocketAddr, msg: &Message<'_>) -> bool {
        if !self.servers.iter().any(|s| s.addr.ip() == from.ip()) {
            return false;
        }
        let Some(sender) = ipv4_of(from.ip()) else {
            return false;
        };
        self.stats.pushes += 1;
        let mut found = 0;
        for r in &msg.records {
            let RData::Srv { port, target } = &r.data else {
                continue;
            };
            let Some((id, _)) = split_name(&r.name) else {
                continue;
            };
            let Some(topic) = core::str::from_utf8(id)
                .ok()
                .and_then(|id| self.ids.get(id))
                .cloned()
            else {
                continue;
            };
            let Some(ip) = core::str::from_utf8(target)
                .ok()
                .and_then(|t| t.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let ip = if ip.is_unspecified() { sender } else { ip };
            let port = if *port == 0 { from.port() } else { *port };
            found += 1;
            if found > MAX_PEERS_PER_DATAGRAM {
                break;
            }
            let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
            self.push_event(DnsEvent::Peer { topic, addr });
        }
        self.writer
            .start_message(msg.id, FLAGS_RESPONSE, [msg.questions.len() as u16, 0, 0]);
        for q in &msg.questions {
            self.writer.question(&q.name, q.qtype, q.qclass);
        }
        let data = self.writer.finish();
        self.push_transmit(from, data);
        true
    }
}
