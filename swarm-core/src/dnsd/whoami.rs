//! whoami (PROTOCOLS.md 3.3.1): every server is probed; the `host`/`port` they report back
//! for us are compared as Node's `whoami` does.

use std::net::{Ipv4Addr, SocketAddrV4};

/// What whoami concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhoamiResult {
    /// Our public address; port 0 when it could not be confirmed (one server answered, or two
    /// saw different ports: a symmetric NAT).
    Found(SocketAddrV4),
    /// No server answered, or two servers disagree on our host.
    Failed,
}

/// Collects the probe results of one whoami.
#[derive(Debug)]
pub(crate) struct Whoami {
    missing: usize,
    /// The previous answer: which server, and what it said.
    prev: Option<(Ipv4Addr, SocketAddrV4)>,
    done: bool,
}

impl Whoami {
    pub(crate) fn new(servers: usize) -> Self {
        Whoami {
            missing: servers,
            prev: None,
            done: servers == 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// One probe ended: `seen` is what server `server` reported (None: it failed). Returns
    /// the result once decided.
    pub(crate) fn on_probe(
        &mut self,
        server: Ipv4Addr,
        seen: Option<SocketAddrV4>,
    ) -> Option<WhoamiResult> {
        if self.done {
            return None;
        }
        self.missing = self.missing.saturating_sub(1);
        if let Some(me) = seen {
            if let Some((prev_server, prev)) = self.prev {
                if prev_server != server {
                    self.done = true;
                    return Some(if prev == me {
                        WhoamiResult::Found(me)
                    } else if prev.ip() == me.ip() {
                        WhoamiResult::Found(SocketAddrV4::new(*me.ip(), 0))
                    } else {
                        WhoamiResult::Failed
                    });
                }
            }
            self.prev = Some((server, me));
        }
        if self.missing > 0 {
            return None;
        }
        self.done = true;
        // Node uses the last probe's data here (so a failure last loses an earlier answer);
        // any answer is better.
        Some(match self.prev {
            Some((_, me)) => WhoamiResult::Found(SocketAddrV4::new(*me.ip(), 0)),
            None => WhoamiResult::Failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ip: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(1, 1, 1, ip), port)
    }
    const S1: Ipv4Addr = Ipv4Addr::new(9, 0, 0, 1);
    const S2: Ipv4Addr = Ipv4Addr::new(9, 0, 0, 2);

    #[test]
    fn two_servers_agree() {
        let mut w = Whoami::new(2);
        assert_eq!(w.on_probe(S1, Some(a(1, 7))), None);
        assert_eq!(
            w.on_probe(S2, Some(a(1, 7))),
            Some(WhoamiResult::Found(a(1, 7)))
        );
        assert!(w.is_done());
    }

    #[test]
    fn symmetric_nat_and_disagreement() {
        let mut w = Whoami::new(3);
        w.on_probe(S1, Some(a(1, 7)));
        assert_eq!(
            w.on_probe(S2, Some(a(1, 8))),
            Some(WhoamiResult::Found(a(1, 0)))
        );
        let mut w = Whoami::new(2);
        w.on_probe(S1, Some(a(1, 7)));
        assert_eq!(w.on_probe(S2, Some(a(2, 7))), Some(WhoamiResult::Failed));
    }

    #[test]
    fn same_server_twice_does_not_confirm_and_one_answer_gives_no_port() {
        let mut w = Whoami::new(2);
        w.on_probe(S1, Some(a(1, 7)));
        assert_eq!(
            w.on_probe(S1, Some(a(1, 7))),
            Some(WhoamiResult::Found(a(1, 0)))
        );
        let mut w = Whoami::new(2);
        w.on_probe(S1, None);
        assert_eq!(w.on_probe(S2, None), Some(WhoamiResult::Failed));
    }
}
