//! A simulation split by LAN segment into partitions, one [`Sim`] each, run by a pool of
//! threads: in each window the threads take the partitions one by one, the longest (in the
//! window before) first, so more partitions than threads even out the windows' uneven work
//! (a thread that drew a busy partition runs fewer others).
//!
//! Conservative time windows: nothing crosses between segments faster than the WAN's base
//! latency (the [lookahead](Sim::lookahead)), so while every partition runs the events of
//! `[t, t + lookahead)`, none can be sent one by another within that window. After each
//! window the partitions exchange what their hosts sent each other, in a fixed order (by
//! sending partition, then as it arose), and go on. The run is therefore the same for the
//! same seed and partition count, however many threads run it and however they are
//! scheduled. It is not the same run as one unpartitioned `Sim` of the seed: each partition
//! draws from its own generator.
//!
//! Multicast stays within a segment and so within a partition; what crosses is DHT and
//! other unicast datagrams and TCP pipes between segments. Faults that act across
//! partitions (NAT, segment partitions, isolation, random resets) are not supported.

use crate::sim::{Partition, Remote};
use crate::{Sim, Violation};
use core::time::Duration;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Barrier, Mutex};
use std::time::Instant as WallClock;
use swarm_core::Instant;

/// Where one thread spent its wall time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Times {
    /// Running partitions' windows (taking in what the others sent included).
    pub running: Duration,
    /// Waiting for the other threads to finish a window.
    pub waiting: Duration,
    pub windows: u64,
}

/// Runs `count` partitions on `threads` threads (at most `count`), each partition a `Sim`
/// that `build` makes for it (its config's `partition` set to that partition, everything
/// else alike), up to each of `checkpoints` (increasing) in turn. In each window the threads
/// take the partitions one by one, as each finishes its last (more partitions than threads
/// balance the windows' uneven work). At each checkpoint every partition's `observe` is
/// handed, in partition order, to `report`. Returns the first violation (lowest partition)
/// any partition met in the window it stopped in, or where each thread spent its time.
///
/// What a partition does depends only on its own events and what the others sent it, taken
/// in partition order, so the run is the same for the same seed and partition count however
/// many threads run it.
pub fn run<S: Send>(
    count: usize,
    threads: usize,
    build: impl Fn(Partition) -> Sim + Sync,
    checkpoints: &[Instant],
    observe: impl Fn(&Sim) -> S + Sync,
    mut report: impl FnMut(usize, Vec<S>),
) -> Result<Vec<Times>, Violation> {
    assert!(count > 0, "no partitions");
    let threads = threads.clamp(1, count);
    let shared = Shared {
        slots: (0..count).map(|_| Mutex::new(None)).collect(),
        // `mail[parity][from * count + to]`: what `from` sent `to` in a window of that parity.
        mail: [0, 1].map(|_| (0..count * count).map(|_| Mutex::new(Vec::new())).collect()),
        taken: [0, 1].map(|_| (0..count).map(|_| AtomicBool::new(false)).collect()),
        cost: [0, 1].map(|_| (0..count).map(|_| AtomicU64::new(0)).collect()),
        barrier: Barrier::new(threads),
        failed: Mutex::new(Vec::new()),
        count,
    };
    let (seen_tx, seen_rx) = channel::<(usize, Vec<S>)>();
    let times = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (shared, build, observe, seen) = (&shared, &build, &observe, seen_tx.clone());
                scope.spawn(move || {
                    worker(shared, t, threads, build, checkpoints, |at| {
                        // Observed by one thread while the others wait at the barrier.
                        let all = (0..shared.count)
                            .map(|i| {
                                let slot = shared.slots[i].lock().expect("no thread panicked");
                                observe(&slot.as_ref().expect("built").0)
                            })
                            .collect();
                        // The main thread only stops listening once every worker is done.
                        let _ = seen.send((at, all));
                    })
                })
            })
            .collect();
        drop(seen_tx);
        for (at, all) in seen_rx {
            report(at, all);
        }
        workers
            .into_iter()
            .map(|w| w.join().expect("a partition's thread panicked"))
            .collect::<Vec<Times>>()
    });
    let mut failed = shared.failed.into_inner().expect("no thread panicked");
    failed.sort_by_key(|(i, _)| *i);
    match failed.into_iter().next() {
        Some((_, v)) => Err(v),
        None => Ok(times),
    }
}

/// A partition's `Sim`, movable between threads.
struct Movable(Sim);

// SAFETY: a `Sim` is not `Send` only because its in-flight datagrams share their bytes
// through `Rc`. Every such `Rc` and all its clones live inside the one `Sim` (the type is
// private and no method hands one out), so moving the whole `Sim` moves every owner of each
// count at once, and the `Mutex` around it lets one thread at a time touch it.
#[allow(unsafe_code)]
unsafe impl Send for Movable {}

/// What the threads share.
struct Shared {
    slots: Vec<Mutex<Option<Movable>>>,
    mail: [Vec<Mutex<Vec<Remote>>>; 2],
    /// `taken[parity][i]`: partition `i` is run (or being run) in the window of that parity.
    taken: [Vec<AtomicBool>; 2],
    /// `cost[parity][i]`: nanoseconds partition `i`'s last window of that parity took.
    cost: [Vec<AtomicU64>; 2],
    barrier: Barrier,
    /// Partitions that met a violation.
    failed: Mutex<Vec<(usize, Violation)>>,
    count: usize,
}

/// One thread's share: it builds partitions `t, t + threads, ...`, then in every window takes
/// partitions until none is left, and meets the others at the window's end.
fn worker(
    shared: &Shared,
    t: usize,
    threads: usize,
    build: &(impl Fn(Partition) -> Sim + Sync),
    checkpoints: &[Instant],
    mut observe_all: impl FnMut(usize),
) -> Times {
    let count = shared.count;
    // Every partition is built alike, so each thread reads the windows off its first one
    // (partition `t`, as `t < threads <= count`), before any of them runs.
    let mut windows = None;
    for index in (t..count).step_by(threads) {
        let sim = build(Partition { index, count });
        windows.get_or_insert((sim.lookahead().as_micros() as u64, sim.now().as_micros()));
        *shared.slots[index].lock().expect("no thread panicked") = Some(Movable(sim));
    }
    let (lookahead, mut t_now) = windows.expect("every thread has a partition");
    shared.barrier.wait();
    assert!(
        lookahead > 0,
        "a partitioned run needs a WAN latency above zero"
    );
    let mut times = Times::default();
    let mut window = 0usize;
    for (at, checkpoint) in checkpoints.iter().enumerate() {
        while t_now < checkpoint.as_micros() {
            let end = (t_now + lookahead).min(checkpoint.as_micros());
            let parity = window % 2;
            let started = WallClock::now();
            while let Some(i) = take(shared, parity) {
                let partition_started = WallClock::now();
                run_window(shared, i, parity, Instant::from_micros(end - 1));
                let took = partition_started.elapsed().as_nanos();
                let took = took.try_into().unwrap_or(u64::MAX);
                shared.cost[parity][i].store(took, Ordering::Relaxed);
            }
            let ran_until = WallClock::now();
            times.running += ran_until - started;
            times.windows += 1;
            // Everything of this window is sent; the marks of the window after next (this
            // one's) are free again once every thread is here.
            if shared.barrier.wait().is_leader() {
                for taken in &shared.taken[parity] {
                    taken.store(false, Ordering::Relaxed);
                }
            }
            times.waiting += ran_until.elapsed();
            if !shared.failed.lock().expect("no thread panicked").is_empty() {
                return times;
            }
            window += 1;
            t_now = end;
        }
        // Observed by one thread while the others wait, before any runs on.
        if shared.barrier.wait().is_leader() {
            observe_all(at);
        }
        shared.barrier.wait();
    }
    times
}

/// The partition a thread runs next in a window of `parity`, if any is left: the one that
/// took longest in the window before (whose costs nobody writes during this one), so the
/// short ones are left to fill in at the end and the threads reach the barrier together
/// (longest processing time first). Which thread runs which partition changes nothing in
/// the run.
fn take(shared: &Shared, parity: usize) -> Option<usize> {
    let (taken, cost) = (&shared.taken[parity], &shared.cost[1 - parity]);
    loop {
        let longest = (0..shared.count)
            .filter(|&i| !taken[i].load(Ordering::Relaxed))
            .max_by_key(|&i| (cost[i].load(Ordering::Relaxed), core::cmp::Reverse(i)))?;
        if !taken[longest].swap(true, Ordering::Relaxed) {
            return Some(longest);
        }
    }
}

/// Partition `i`'s window: it takes in what the others sent it in the window before (by
/// sending partition), runs its events before `until`'s end, and posts what it sent.
fn run_window(shared: &Shared, i: usize, parity: usize, until: Instant) {
    let count = shared.count;
    let mut slot = shared.slots[i].lock().expect("no thread panicked");
    let sim = &mut slot.as_mut().expect("built").0;
    for from in (0..count).filter(|&from| from != i) {
        let inbox = &shared.mail[1 - parity][from * count + i];
        sim.receive(core::mem::take(
            &mut *inbox.lock().expect("no thread panicked"),
        ));
    }
    let ran = sim.run_until(until);
    for (to, batch) in sim.take_outbox().into_iter().enumerate() {
        if to != i {
            *shared.mail[parity][i * count + to]
                .lock()
                .expect("no thread panicked") = batch;
        }
    }
    if let Err(v) = ran {
        shared
            .failed
            .lock()
            .expect("no thread panicked")
            .push((i, v));
    }
}
