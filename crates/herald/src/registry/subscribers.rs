//! One channel's local subscribers, laid out for the fan-out.
//!
//! The fan-out visits every subscriber of a channel for every publication,
//! and each visit touches two cache lines that are usually cold or owned
//! by another core (the socket's shared state, then its queue, last
//! written by the connection task on the other worker thread). The
//! subscribers are therefore kept in a dense vector (an index map beside
//! it finds one to remove), and [`Subscribers::for_each`] prefetches ahead
//! of the loop: the queue handle in the socket [`AHEAD`] places on, and
//! the queue of the one half as far on, so that the misses overlap instead
//! of coming one after the other.

use std::collections::HashMap;
use std::sync::Arc;

use crate::socket::SocketShared;

/// How many subscribers ahead the fan-out prefetches a socket's state
/// (its queue is prefetched half as far ahead).
const AHEAD: usize = 8;

/// A channel's subscribers: a dense vector and the position of each key.
#[derive(Default)]
pub(super) struct Subscribers {
    sockets: Vec<Arc<SocketShared>>,
    index: HashMap<u64, usize>,
}

impl Subscribers {
    /// Adds `socket`; returns whether it was new.
    pub(super) fn insert(&mut self, socket: Arc<SocketShared>) -> bool {
        if self.index.contains_key(&socket.key) {
            return false;
        }
        self.index.insert(socket.key, self.sockets.len());
        self.sockets.push(socket);
        true
    }

    /// Removes the socket with `key`; returns whether it was there.
    pub(super) fn remove(&mut self, key: u64) -> bool {
        let Some(at) = self.index.remove(&key) else {
            return false;
        };
        self.sockets.swap_remove(at);
        if let Some(moved) = self.sockets.get(at) {
            self.index.insert(moved.key, at);
        }
        // A channel that had a crowd and lost it gives the room back.
        if self.sockets.capacity() > 64 && self.sockets.len() < self.sockets.capacity() / 4 {
            self.sockets.shrink_to(self.sockets.len() * 2);
            self.index.shrink_to(self.sockets.len() * 2);
        }
        true
    }

    pub(super) fn len(&self) -> usize {
        self.sockets.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Every subscriber, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<SocketShared>> {
        self.sockets.iter()
    }

    /// Calls `f` on every subscriber, prefetching ahead (see the module
    /// docs).
    pub(super) fn for_each(&self, mut f: impl FnMut(&SocketShared)) {
        let s = &self.sockets;
        for i in 0..s.len() {
            if let Some(next) = s.get(i + AHEAD) {
                prefetch((&next.tx as *const crate::queue::QueueTx).cast());
            }
            if let Some(next) = s.get(i + AHEAD / 2) {
                prefetch(Arc::as_ptr(&next.queue).cast());
            }
            f(&s[i]);
        }
    }
}

/// Asks the CPU to bring the cache line at `p` in for writing (the fan-out
/// updates counters there). A hint: it never faults, whatever `p` is.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching has no effect on memory and never faults, even
    // for an invalid address; `p` is a live allocation's address anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_ET0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
