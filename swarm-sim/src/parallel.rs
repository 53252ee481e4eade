//! A simulation split by LAN segment across threads, one [`Sim`] per partition.
//!
//! Conservative time windows: nothing crosses between segments faster than the WAN's base
//! latency (the [lookahead](Sim::lookahead)), so while every partition runs the events of
//! `[t, t + lookahead)`, none can be sent one by another within that window. After each
//! window the partitions exchange what their hosts sent each other, in a fixed order (by
//! sending partition, then as it arose), and go on. The run is therefore the same for the
//! same seed and partition count, however the threads are scheduled. It is not the same run
//! as one unpartitioned `Sim` of the seed: each partition draws from its own generator.
//!
//! Multicast stays within a segment and so within a partition; what crosses is DHT and
//! other unicast datagrams and TCP pipes between segments. Faults that act across
//! partitions (NAT, segment partitions, isolation, random resets) are not supported.

use crate::sim::{Partition, Remote};
use crate::{Sim, Violation};
use core::time::Duration;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Instant as WallClock;
use swarm_core::Instant;

/// What a partition sends another after a window; `None` when it stopped on a violation.
type Batch = Option<Vec<Remote>>;

/// Where one partition's thread spent its wall time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Times {
    /// Running its own events.
    pub running: Duration,
    /// Waiting for the other partitions to finish a window (and taking in what they sent).
    pub waiting: Duration,
    pub windows: u64,
}

/// Runs `count` partitions, each on a thread of its own with the `Sim` that `build` makes
/// for it (its config's `partition` set to that partition, everything else alike), up to
/// each of `checkpoints` (increasing) in turn. At each checkpoint every partition's
/// `observe` is handed, in partition order, to `report`. Returns the first violation any
/// partition met (the others stop at the next window), or where each partition's thread
/// spent its time.
pub fn run<S: Send>(
    count: usize,
    build: impl Fn(Partition) -> Sim + Sync,
    checkpoints: &[Instant],
    observe: impl Fn(&Sim) -> S + Sync,
    mut report: impl FnMut(usize, Vec<S>),
) -> Result<Vec<Times>, Violation> {
    assert!(count > 0, "no partitions");
    // One channel per ordered pair of partitions, so each window's batches are read in
    // partition order whatever order they were sent in: `senders[from][to]` feeds
    // `receivers[to][from]`.
    let mut senders: Vec<Vec<Option<Sender<Batch>>>> = (0..count).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<Option<Receiver<Batch>>>> = (0..count).map(|_| Vec::new()).collect();
    for (from, out) in senders.iter_mut().enumerate() {
        for (to, inbox) in receivers.iter_mut().enumerate() {
            let (tx, rx) = channel();
            out.push((from != to).then_some(tx));
            inbox.push((from != to).then_some(rx));
        }
    }
    let (seen_tx, seen_rx) = channel::<(usize, usize, S)>();
    std::thread::scope(|scope| {
        let workers: Vec<_> = senders
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(index, (out, inbox))| {
                let (build, observe, seen) = (&build, &observe, seen_tx.clone());
                scope.spawn(move || {
                    let sim = build(Partition { index, count });
                    run_partition(sim, &out, &inbox, checkpoints, |at, sim| {
                        // The main thread only stops listening once every worker is done.
                        let _ = seen.send((at, index, observe(sim)));
                    })
                })
            })
            .collect();
        drop(seen_tx);
        let mut pending: Vec<Vec<Option<S>>> = checkpoints
            .iter()
            .map(|_| (0..count).map(|_| None).collect())
            .collect();
        let mut next = 0;
        for (at, index, s) in seen_rx {
            pending[at][index] = Some(s);
            while next < checkpoints.len() && pending[next].iter().all(Option::is_some) {
                let all = pending[next].iter_mut().filter_map(Option::take).collect();
                report(next, all);
                next += 1;
            }
        }
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("a partition panicked"))
            .collect();
        // Partitions stopped by another's violation report `Err(None)`.
        if let Some(v) = results
            .iter()
            .find_map(|r| r.as_ref().err().cloned().flatten())
        {
            return Err(v);
        }
        Ok(results.into_iter().flatten().collect())
    })
}

/// One partition's windows. `Err(None)`: another partition stopped the run.
fn run_partition(
    mut sim: Sim,
    out: &[Option<Sender<Batch>>],
    inbox: &[Option<Receiver<Batch>>],
    checkpoints: &[Instant],
    mut observe: impl FnMut(usize, &Sim),
) -> Result<Times, Option<Violation>> {
    let lookahead = sim.lookahead().as_micros() as u64;
    assert!(
        lookahead > 0,
        "a partitioned run needs a WAN latency above zero"
    );
    let mut t = sim.now().as_micros();
    let mut times = Times::default();
    for (at, checkpoint) in checkpoints.iter().enumerate() {
        while t < checkpoint.as_micros() {
            let end = (t + lookahead).min(checkpoint.as_micros());
            // Everything before `end`; what other partitions send arrives at `end` or later.
            let started = WallClock::now();
            let ran = sim.run_until(Instant::from_micros(end - 1));
            let outbox = sim.take_outbox();
            let ran_until = WallClock::now();
            times.running += ran_until - started;
            times.windows += 1;
            let failed = ran.is_err();
            for (batch, tx) in outbox.into_iter().zip(out) {
                if let Some(tx) = tx {
                    // A partition that has stopped no longer reads; nothing to do about it.
                    let _ = tx.send((!failed).then_some(batch));
                }
            }
            ran.map_err(Some)?;
            for rx in inbox.iter().flatten() {
                match rx.recv() {
                    Ok(Some(batch)) => sim.receive(batch),
                    Ok(None) | Err(_) => return Err(None),
                }
            }
            times.waiting += ran_until.elapsed();
            t = end;
        }
        observe(at, &sim);
    }
    Ok(times)
}
