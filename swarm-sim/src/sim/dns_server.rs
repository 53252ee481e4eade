//! dns-discovery server hosts: the real server engine ([`DnsServer`]) on a simulated host,
//! answering on one UDP port like `discovery-swarm dns-server`. Its datagrams take the same
//! routed path as every other (NAT, partitions, WAN loss); restarting it loses its state,
//! as killing the process would.

use super::{Ev, Sim, SimResult};
use crate::network::{HostId, SegmentId};
use crate::node::{DnsHost, HostState};
use crate::rng::derive;
use std::net::SocketAddr;
use swarm_core::dnsd::{DnsServer, DnsServerConfig};

impl Sim {
    /// Adds a host on `segment` running a dns-discovery server on `port`, and starts it.
    pub fn add_dns_server(&mut self, segment: SegmentId, port: u16) -> HostId {
        let h = self.add_host(HostState::Mute);
        self.hosts[h].segment = segment;
        self.net.host_segment[h] = segment;
        self.members[0].retain(|m| *m != h);
        self.members[segment].push(h);
        self.hosts[h].dns = Some(Box::new(DnsHost {
            server: self.fresh_dns_server(h, 0),
            port,
            incarnation: 0,
        }));
        self.sockets[h] = super::datagram::Sockets::of(&self.hosts[h]);
        self.sim_line(format!("start dns-server n{h} port={port}"));
        self.after_dns(h);
        h
    }

    /// Kills the server on `h` and starts a fresh one: stores, subscribers and token secrets
    /// are gone, so clients must probe for new tokens and announce again.
    pub fn restart_dns_server(&mut self, h: HostId) {
        let Some(inc) = self.hosts[h].dns.as_ref().map(|d| d.incarnation + 1) else {
            return;
        };
        let server = self.fresh_dns_server(h, inc);
        if let Some(dns) = self.hosts[h].dns.as_mut() {
            dns.server = server;
            dns.incarnation = inc;
        }
        self.hosts[h].timer_gen += 1;
        self.sim_line(format!("restart dns-server n{h} inc={inc}"));
        self.after_dns(h);
    }

    /// The server on `h`, if it runs one.
    pub fn dns_server(&self, h: HostId) -> Option<&DnsServer> {
        self.hosts[h].dns.as_ref().map(|d| &d.server)
    }

    fn fresh_dns_server(&self, h: HostId, incarnation: u64) -> DnsServer {
        let seed = derive(self.cfg.seed, &[6, h as u64, incarnation]);
        DnsServer::new(DnsServerConfig::from_seed(seed), self.host_now(h))
    }

    /// A datagram for the server's port.
    pub(super) fn on_dns_server_datagram(&mut self, h: HostId, from: SocketAddr, data: &[u8]) {
        let now = self.host_now(h);
        if let Some(dns) = self.hosts[h].dns.as_mut() {
            self.net.datagrams.delivered += 1;
            // Refusals (rate limits, bad tokens, malformed packets) are the server's to count.
            let _ = dns.server.handle_datagram(now, from, data);
        }
        self.after_dns(h);
    }

    pub(super) fn fire_dns_timer(&mut self, h: HostId, gen: u64) -> SimResult {
        if self.hosts[h].timer_gen != gen {
            return Ok(());
        }
        let now = self.host_now(h);
        if let Some(dns) = self.hosts[h].dns.as_mut() {
            dns.server.handle_timeout(now);
        }
        self.after_dns(h);
        Ok(())
    }

    /// Sends what the server queued and queues a wake-up for its next deadline.
    fn after_dns(&mut self, h: HostId) {
        let Some(port) = self.hosts[h].dns.as_ref().map(|d| d.port) else {
            return;
        };
        while let Some((to, data)) = self.hosts[h]
            .dns
            .as_mut()
            .and_then(|d| d.server.poll_transmit())
        {
            self.transmit_from(h, port, to, data);
        }
        let deadline = self.hosts[h]
            .dns
            .as_ref()
            .and_then(|d| d.server.poll_timeout());
        if let Some(at) = deadline {
            let host = &mut self.hosts[h];
            host.timer_gen += 1;
            let gen = host.timer_gen;
            self.queue
                .push(at.max(self.now), Ev::Timer { host: h, gen });
        }
    }
}
