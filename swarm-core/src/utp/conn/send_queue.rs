//! Bytes written but not yet cut into packets.
//!
//! Writes append to `tail`; cutting packets freezes it into `chunks` and splits those without
//! copying (only a packet that spans two chunks is assembled). A single `BytesMut` split per
//! packet would become shared with the packets in flight, and every later append would then
//! copy everything still queued: a quadratic cost at the send buffer's size.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct SendQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl SendQueue {
    pub(super) fn push(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes up to `n` bytes from the front.
    pub(super) fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len);
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len -= n;
        if let Some(front) = self.chunks.front_mut().filter(|f| f.len() >= n) {
            let out = front.split_to(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            return out;
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let k = front.len().min(n - out.len());
            out.extend_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        out.freeze()
    }

    /// Heap bytes held (queued data plus the chunk list).
    pub(super) fn heap_bytes(&self) -> usize {
        self.len + self.tail.capacity() + self.chunks.capacity() * core::mem::size_of::<Bytes>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_cut_across_writes_keep_the_byte_order() {
        let mut q = SendQueue::default();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut got = Vec::new();
        for (i, w) in data.chunks(777).enumerate() {
            q.push(w);
            if i % 3 == 0 {
                got.extend_from_slice(&q.take(1400));
            }
        }
        while !q.is_empty() {
            got.extend_from_slice(&q.take(1400));
        }
        assert_eq!(got, data);
        assert_eq!(q.len(), 0);
    }
}
