//! The meeting point of an application's uTP `Connection` and the driver that owns the core.
//!
//! A uTP connection's bytes live in the core (its uTP state machine), which only the driver
//! task touches. The application reads and writes two bounded buffers here instead; the
//! driver moves bytes between them and the core when either side signals. Nothing here is
//! tied to a runtime: a mutex, two wakers and a callback that wakes the driver.
//!
//! Backpressure: the driver stops reading the core's stream while `inbound` is full, so the
//! core's receive window closes and the remote sender stops; the application's writes pend
//! while `outbound` is full, and `outbound` only drains as fast as the core's bounded send
//! buffer accepts.

use bytes::{Buf, BytesMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Received bytes held for the application before the driver stops reading the core.
pub(crate) const INBOUND_CAP: usize = 256 * 1024;
/// Bytes the application may queue before its writes pend.
pub(crate) const OUTBOUND_CAP: usize = 256 * 1024;

/// Tells the driver a stream needs its attention (called with no lock held).
pub(crate) type Poke = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub(crate) struct State {
    pub(crate) inbound: BytesMut,
    pub(crate) outbound: BytesMut,
    /// The peer finished sending (reads see end of stream once `inbound` is drained).
    pub(crate) eof: bool,
    /// The connection is gone (reset, timed out, or closed by the swarm).
    pub(crate) closed: bool,
    /// The application half-closed; the driver sends the FIN after `outbound`.
    pub(crate) shutdown: bool,
    /// The application dropped its end.
    pub(crate) dropped: bool,
    /// A poke is on its way to the driver; no need for another.
    poked: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

pub(crate) struct Bridge {
    state: Mutex<State>,
    poke: Poke,
}

impl Bridge {
    pub(crate) fn new(poke: Poke) -> Arc<Bridge> {
        Arc::new(Bridge {
            state: Mutex::new(State::default()),
            poke,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the buffers half-updated in a way that
        // matters more than the panic itself: keep going with what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poke_driver(&self, mut state: MutexGuard<'_, State>) {
        if state.poked {
            return;
        }
        state.poked = true;
        drop(state);
        (self.poke)();
    }

    /// The application's read: `Ok(0)` is end of stream (also after the swarm closed it,
    /// as a TCP connection the swarm shuts down reads end of stream).
    pub(crate) fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<usize> {
        let mut state = self.lock();
        if !state.inbound.is_empty() {
            let was_full = state.inbound.len() >= INBOUND_CAP;
            let n = state.inbound.len().min(buf.len());
            buf[..n].copy_from_slice(&state.inbound[..n]);
            state.inbound.advance(n);
            if was_full {
                self.poke_driver(state);
            }
            return Poll::Ready(n);
        }
        if state.eof || state.closed {
            return Poll::Ready(0);
        }
        state.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The application's write: how much was queued, `None` if the stream can no longer be
    /// written (closed, or after our own shutdown).
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Option<usize>> {
        let mut state = self.lock();
        if state.closed || state.shutdown {
            return Poll::Ready(None);
        }
        let room = OUTBOUND_CAP.saturating_sub(state.outbound.len());
        if room == 0 {
            state.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        state.outbound.extend_from_slice(&data[..n]);
        self.poke_driver(state);
        Poll::Ready(Some(n))
    }

    /// Waits until everything written has been handed to the core.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.lock();
        if state.outbound.is_empty() {
            return Poll::Ready(true);
        }
        if state.closed {
            return Poll::Ready(false);
        }
        state.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) fn shutdown(&self) {
        let mut state = self.lock();
        state.shutdown = true;
        self.poke_driver(state);
    }

    pub(crate) fn drop_app_end(&self) {
        let mut state = self.lock();
        state.dropped = true;
        state.reader = None;
        state.writer = None;
        self.poke_driver(state);
    }

    /// The driver took the poke: later changes need a new one.
    pub(crate) fn clear_poke(state: &mut State) {
        state.poked = false;
    }

    /// Wakes whichever application side may now make progress.
    pub(crate) fn wake(state: &mut State) {
        let readable = !state.inbound.is_empty() || state.eof || state.closed;
        if readable {
            if let Some(w) = state.reader.take() {
                w.wake();
            }
        }
        let writable = state.outbound.len() < OUTBOUND_CAP || state.closed;
        if writable {
            if let Some(w) = state.writer.take() {
                w.wake();
            }
        }
    }
}
