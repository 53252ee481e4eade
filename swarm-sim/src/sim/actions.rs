//! Carrying out what scenarios schedule: discovery, faults (crashes, resets, isolation,
//! partitions, clock steps) and the calm that ends them.

use super::{Action, Sim, SimResult};
use crate::network::{HostId, SegmentConfig};
use swarm_core::ConnId;

impl Sim {
    pub(super) fn apply(&mut self, action: Action) -> SimResult {
        match action {
            Action::AddPeer { from, to } => {
                self.sim_line(format!("add-peer n{from} -> n{to}"));
                self.add_peer(from, to)
            }
            Action::RemovePeer { from, to } => {
                self.sim_line(format!("remove-peer n{from} -> n{to}"));
                self.remove_peer(from, to)
            }
            Action::Crash { host, then } => {
                self.crash(host, then);
                Ok(())
            }
            Action::Restart { host } => {
                self.restart(host);
                Ok(())
            }
            Action::ResetRandom => {
                self.reset_random();
                Ok(())
            }
            Action::DisconnectRandom => {
                let links = self.links();
                if links.is_empty() {
                    return Ok(());
                }
                let link = links[self.rng.index(links.len())];
                let (h, conn) = if self.rng.chance(0.5) {
                    link.dialer
                } else {
                    link.acceptor
                };
                if self.rng.chance(0.5) {
                    self.sim_line(format!("disconnect n{h} c{}", conn.0));
                    self.disconnect(h, conn)
                } else {
                    self.sim_line(format!("drop-stream n{h} c{}", conn.0));
                    self.drop_stream(h, conn)
                }
            }
            Action::DisconnectAny => {
                let conns: Vec<(HostId, ConnId)> = (0..self.hosts.len())
                    .filter_map(|h| self.hosts[h].node.as_ref().map(|n| (h, n)))
                    .flat_map(|(h, n)| n.conns.keys().map(move |c| (h, *c)))
                    .collect();
                if conns.is_empty() {
                    return Ok(());
                }
                let (h, conn) = conns[self.rng.index(conns.len())];
                self.sim_line(format!("disconnect n{h} c{}", conn.0));
                self.disconnect(h, conn)
            }
            Action::Join {
                host,
                topic,
                announce,
            } => {
                self.sim_line(format!("join n{host} announce={announce}"));
                let topics = &mut self.hosts[host].topics;
                topics.retain(|(t, _)| *t != topic);
                topics.push((topic.clone(), announce));
                self.with_core(host, |core, now| core.join(now, topic, announce))
            }
            Action::Leave { host, topic } => {
                self.sim_line(format!("leave n{host}"));
                self.hosts[host].topics.retain(|(t, _)| *t != topic);
                self.with_core(host, |core, _| {
                    core.leave(&topic);
                })
            }
            Action::Poke { host } => {
                self.sim_line(format!("poke n{host}"));
                self.with_core(host, |core, now| core.handle_timeout(now))
            }
            Action::Partition {
                from,
                to,
                one_way,
                duration,
            } => {
                let arrow = if one_way { "->" } else { "<->" };
                self.sim_line(format!("partition s{from} {arrow} s{to} for {duration:?}"));
                let until = self.now + duration;
                self.net.internet.block(from, to, until);
                if !one_way {
                    self.net.internet.block(to, from, until);
                }
                Ok(())
            }
            Action::ClockStep { host, by } => {
                self.sim_line(format!("clock-step n{host} +{by:?}"));
                self.hosts[host].clock_offset += by;
                // The queued timer was placed on the old clock: re-arm even if the core's
                // deadline did not change.
                if let Some(node) = self.hosts[host].node.as_mut() {
                    node.armed = None;
                    node.queued_at = None;
                }
                // Timers now due fire at once.
                self.with_core(host, |core, now| core.handle_timeout(now))
            }
            Action::Calm => {
                self.sim_line("calm: faults stop".into());
                self.net.internet.heal_all();
                self.net.internet.wan = self.net.internet.wan.calm();
                for s in &mut self.net.segments {
                    *s = SegmentConfig::default();
                }
                Ok(())
            }
            Action::Isolate { host, duration } => {
                self.sim_line(format!("isolate n{host} for {duration:?}"));
                self.net.isolate(host, self.now + duration);
                Ok(())
            }
        }
    }
}
