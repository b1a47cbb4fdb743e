//! Reusable scratch vectors for the write path, one small pool per thread.
//!
//! Every write batch needs a short-lived vector (what to write, the frames
//! after middleware). Allocating it per batch is an allocation per delivery
//! when each burst brings one frame per socket; keeping one per socket
//! would hold memory on every idle socket. A per-thread pool does neither:
//! a batch takes a vector from the pool of the thread it runs on and gives
//! it back (emptied) when done, so in steady state the write path
//! allocates nothing and memory is held per worker thread, not per socket.
//! No lock: each thread has its own pool; a batch that moves to another
//! thread across an `.await` just gives its vector to that thread's pool.
//!
//! Hand-written because it is a dozen lines on `thread_local!`; object-pool
//! crates are shared (locked or lock-free) pools, which is more than a
//! per-thread free list needs.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// Vectors kept per thread and pool (enough for the batches one worker
/// thread has in flight at once: one per task it interleaves).
const KEPT: usize = 8;
/// A vector that grew past this many items is freed, not kept.
const MAX_KEPT_CAPACITY: usize = 1024;

/// The per-thread free list behind a [`Scratch`].
pub(crate) type Pool<T> = RefCell<Vec<Vec<T>>>;

/// A vector from a thread's pool, given back (emptied) when dropped.
pub(crate) struct Scratch<T: 'static> {
    items: Vec<T>,
    pool: &'static LocalKey<Pool<T>>,
}

impl<T: 'static> Scratch<T> {
    /// An empty vector from `pool` (a new one when the pool is empty).
    pub(crate) fn take(pool: &'static LocalKey<Pool<T>>) -> Self {
        let items = pool
            .try_with(|p| p.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        Self { items, pool }
    }
}

impl<T: 'static> Drop for Scratch<T> {
    fn drop(&mut self) {
        let mut items = std::mem::take(&mut self.items);
        if items.capacity() == 0 || items.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        items.clear();
        // `try_with`: the thread may be exiting (its pool gone): then the
        // vector is simply freed.
        let _ = self.pool.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEPT {
                p.push(items);
            }
        });
    }
}

impl<T> Deref for Scratch<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.items
    }
}

impl<T> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static POOL: Pool<String> = const { RefCell::new(Vec::new()) };
    }

    fn pooled() -> usize {
        POOL.with(|p| p.borrow().len())
    }

    #[test]
    fn vectors_are_reused_emptied_and_bounded() {
        let mut a = Scratch::take(&POOL);
        a.push("x".to_owned());
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pooled(), 1);
        let b = Scratch::take(&POOL);
        assert!(b.is_empty(), "given back emptied");
        assert_eq!(b.as_ptr(), ptr, "the same allocation is reused");
        drop(b);
        // A vector never used allocates nothing and is not kept.
        drop(Scratch::take(&POOL));
        assert_eq!(pooled(), 1);
        // Oversized vectors are freed; the pool keeps at most KEPT.
        let mut big = Scratch::take(&POOL);
        big.reserve(MAX_KEPT_CAPACITY + 1);
        drop(big);
        assert_eq!(pooled(), 0);
        let many: Vec<_> = (0..KEPT + 3)
            .map(|_| {
                let mut s = Scratch::take(&POOL);
                s.push(String::new());
                s
            })
            .collect();
        drop(many);
        assert_eq!(pooled(), KEPT);
    }
}
