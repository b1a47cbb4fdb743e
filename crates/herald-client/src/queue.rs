//! The bounded, drop-oldest queue behind every stream the client hands out.
//!
//! The connection task is the single producer of publications, transmits and
//! events, and it must never wait for a consumer: while it waits it answers no
//! ping (the server would drop the connection), acknowledges no request and
//! delivers nothing to the other streams. So each stream has its own bounded
//! queue and, when a consumer falls behind and its queue is full, the
//! *oldest* undelivered item is dropped to make room. The consumer is told how
//! many items it missed ([`Delivery::Lagged`]) before it sees the next one, so
//! a gap is never silent. Memory per stream stays bounded by its capacity.
//!
//! Some items must not be lost to a slow consumer: the notice that a
//! channel's stream has a hole (see [`crate::StreamGap`]) is the only way the
//! application learns about it. Such items are *pinned*
//! ([`QueueSender::push_pinned`]): when the queue is full, the oldest
//! unpinned item is dropped instead. Only a queue holding nothing but pinned
//! items drops a pinned one, so the capacity stays a hard bound.
//!
//! One producer, one consumer; the lock is held only to move an item in or
//! out, never across an `.await`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// What a consumer receives.
#[derive(Debug)]
pub(crate) enum Delivery<T> {
    /// The next item.
    Item(T),
    /// This many items were dropped (oldest first) because the queue was full.
    Lagged(u64),
}

struct Slot<T> {
    item: T,
    pinned: bool,
}

struct State<T> {
    items: VecDeque<Slot<T>>,
    /// How many of `items` are pinned.
    pinned: usize,
    capacity: usize,
    lagged: u64,
    /// The producer is done: the consumer sees the remaining items, then the end.
    closed: bool,
    /// The consumer was dropped: pushing is pointless.
    receiver_gone: bool,
    waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The producer side.
pub(crate) struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

/// The consumer side.
pub(crate) struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `capacity` (at least 1) undelivered items.
pub(crate) fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(64)),
            pinned: 0,
            capacity,
            lagged: 0,
            closed: false,
            receiver_gone: false,
            waker: None,
        }),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

impl<T> State<T> {
    /// Makes room for one more item: drops the oldest unpinned item, or the
    /// oldest item when all are pinned.
    fn make_room(&mut self) {
        if self.items.len() < self.capacity {
            return;
        }
        let victim = if self.pinned == 0 {
            0
        } else {
            self.items.iter().position(|s| !s.pinned).unwrap_or(0)
        };
        if let Some(slot) = self.items.remove(victim) {
            if slot.pinned {
                self.pinned -= 1;
            }
            self.lagged = self.lagged.saturating_add(1);
        }
    }
}

impl<T> QueueSender<T> {
    /// Queues `item`, dropping the oldest undelivered (unpinned) item when
    /// full. Returns false (and drops `item`) when the consumer is gone.
    pub(crate) fn push(&self, item: T) -> bool {
        self.push_slot(item, false)
    }

    /// Queues an item that a full queue drops only when it holds nothing but
    /// pinned items. Returns false when the consumer is gone.
    pub(crate) fn push_pinned(&self, item: T) -> bool {
        self.push_slot(item, true)
    }

    fn push_slot(&self, item: T, pinned: bool) -> bool {
        let waker = {
            let mut s = self.shared.lock();
            if s.receiver_gone {
                return false;
            }
            s.make_room();
            s.items.push_back(Slot { item, pinned });
            if pinned {
                s.pinned += 1;
            }
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Queues a last item that is never dropped for lack of room (the end
    /// reason of a subscription), then closes the queue.
    pub(crate) fn push_last(&self, item: T) {
        let waker = {
            let mut s = self.shared.lock();
            if !s.receiver_gone {
                s.items.push_back(Slot {
                    item,
                    pinned: false,
                });
            }
            s.closed = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ends the stream after the items already queued.
    pub(crate) fn close(&self) {
        let waker = {
            let mut s = self.shared.lock();
            s.closed = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the consumer was dropped.
    pub(crate) fn is_gone(&self) -> bool {
        self.shared.lock().receiver_gone
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> QueueReceiver<T> {
    /// The next delivery, `None` once the producer closed the queue and every
    /// item was taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery<T>>> {
        let mut s = self.shared.lock();
        if s.lagged > 0 {
            let n = std::mem::take(&mut s.lagged);
            return Poll::Ready(Some(Delivery::Lagged(n)));
        }
        if let Some(slot) = s.items.pop_front() {
            if slot.pinned {
                s.pinned -= 1;
            }
            return Poll::Ready(Some(Delivery::Item(slot.item)));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether the producer closed the queue and everything was delivered.
    pub(crate) fn is_terminated(&self) -> bool {
        let s = self.shared.lock();
        s.closed && s.items.is_empty() && s.lagged == 0
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.receiver_gone = true;
        s.items.clear();
        s.pinned = 0;
        s.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn next<T>(rx: &mut QueueReceiver<T>) -> Poll<Option<Delivery<T>>> {
        rx.poll_recv(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn drops_oldest_and_reports_the_gap_first() {
        let (tx, mut rx) = queue(2);
        for i in 0..5 {
            assert!(tx.push(i));
        }
        assert!(matches!(
            next(&mut rx),
            Poll::Ready(Some(Delivery::Lagged(3)))
        ));
        assert!(matches!(
            next(&mut rx),
            Poll::Ready(Some(Delivery::Item(3)))
        ));
        assert!(matches!(
            next(&mut rx),
            Poll::Ready(Some(Delivery::Item(4)))
        ));
        assert!(next(&mut rx).is_pending());
        tx.push_last(9);
        assert!(matches!(
            next(&mut rx),
            Poll::Ready(Some(Delivery::Item(9)))
        ));
        assert!(matches!(next(&mut rx), Poll::Ready(None)));
        assert!(rx.is_terminated());
    }

    #[test]
    fn pinned_items_survive_a_full_queue() {
        let (tx, mut rx) = queue(3);
        tx.push(1);
        tx.push_pinned(100);
        for i in 2..6 {
            tx.push(i);
        }
        // 1, 2 and 3 were dropped to make room; the pinned 100 stayed.
        assert!(matches!(
            next(&mut rx),
            Poll::Ready(Some(Delivery::Lagged(3)))
        ));
        for want in [100, 4, 5] {
            match next(&mut rx) {
                Poll::Ready(Some(Delivery::Item(got))) => assert_eq!(got, want),
                other => panic!("{other:?}"),
            }
        }
        // Nothing but pinned items: the oldest goes, the bound holds.
        for i in 0..5 {
            tx.push_pinned(i);
        }
        assert!(matches!(
            next(&mut rx),
            Poll::Ready(Some(Delivery::Lagged(2)))
        ));
        for want in [2, 3, 4] {
            assert!(matches!(next(&mut rx), Poll::Ready(Some(Delivery::Item(g))) if g == want));
        }
        assert!(next(&mut rx).is_pending());
    }

    #[test]
    fn push_after_receiver_drop_fails() {
        let (tx, rx) = queue::<u8>(1);
        assert!(!tx.is_gone());
        drop(rx);
        assert!(tx.is_gone());
        assert!(!tx.push(1));
    }

    #[test]
    fn dropping_the_sender_ends_the_stream_after_queued_items() {
        let (tx, mut rx) = queue(4);
        tx.push(1);
        drop(tx);
        assert!(matches!(
            next(&mut rx),
            Poll::Ready(Some(Delivery::Item(1)))
        ));
        assert!(matches!(next(&mut rx), Poll::Ready(None)));
    }
}
