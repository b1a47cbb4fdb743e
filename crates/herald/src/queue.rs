//! A socket's outbound queue, bounded in bytes and in frames, and the
//! slow-consumer policy.
//!
//! Everything a socket is sent passes through one queue, read by the
//! socket's connection task. Two kinds of items share it and are bounded
//! differently, because they have different owners:
//!
//! * **Deliveries** (publications, `#herald/unrecoverable` notices, and what
//!   server code transmits or invokes) arrive whether or not the client
//!   reads. They count against [`Bounds::bytes`] and [`Bounds::frames`]; an
//!   item that would pass either bound makes the socket a **slow consumer**:
//!   the item is refused, the socket is closed with 4100 and what it had
//!   queued is dropped, so that one reader that stopped costs at most the
//!   byte bound and never holds up a publisher or another subscriber. An
//!   item larger than the byte bound is still taken when nothing else is
//!   queued, so a big publication reaches a client that keeps up.
//! * **Replies** (answers to the client's own requests: acks, errors, a
//!   subscribe's recovered publications) are never refused: a client that
//!   sends requests faster than it reads the answers is not a slow consumer
//!   of anyone else's data. They are bounded by the client itself: while
//!   more than the byte bound of replies waits, the connection task stops
//!   reading the client's frames ([`QueueState::replies_backlogged`]) until
//!   [`Signals::DRAINED`].
//!
//! Items stay counted until the writer has written them, so a batch stuck
//! in a blocked write is inside the bound too.
//!
//! **Memory.** The queue itself is a `VecDeque` under a mutex, beside the
//! counters: it allocates with its first item, not when the socket opens
//! (tokio's MPSC channel allocated a block of 32 slots, about 1.5 KiB, for
//! every socket up front), and [`QueueRx::trim`] gives back an empty
//! queue's room once the socket is idle (the connection task calls it on
//! its ping timer), so a busy socket keeps its room between bursts and an
//! idle one holds none. The bounds are kept here, in bytes, which a
//! channel counting slots cannot do. The mutex is held only to push or pop
//! (never across an `.await`); a sender wakes the connection task only
//! when it waits for an item.
//!
//! **Signals.** The queue also carries the task's other wake-ups: a close
//! requested by server code, a changed token, the server's shutdown
//! ([`Signals`]). They are bits beside the items, under the same mutex, and
//! wake the same waker, so a socket's task waits on one thing for all of
//! them instead of one registered waiter each (about 200 bytes of every
//! socket's task).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use crate::socket::Outbound;

/// Limits of one socket's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Most bytes of deliveries queued (and of replies before reading
    /// pauses).
    pub(crate) bytes: usize,
    /// Most delivery frames queued.
    pub(crate) frames: usize,
}

/// Whether an item is a delivery or a reply (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Delivery,
    Reply,
}

impl Outbound {
    /// The item's class.
    pub(crate) fn class(&self) -> Class {
        match self {
            Outbound::Frame(_) | Outbound::Publication(_) | Outbound::Unrecoverable(_) => {
                Class::Delivery
            }
            Outbound::Reply(_) | Outbound::SubscribeBegin(_) | Outbound::SubscribeEnd(_) => {
                Class::Reply
            }
        }
    }

    /// The bytes the item will put on the wire.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Outbound::Frame(f) | Outbound::Reply(f) => f.len(),
            Outbound::Publication(p) => p.frame.len(),
            Outbound::Unrecoverable(n) => n.frame.len(),
            Outbound::SubscribeBegin(_) => 0,
            Outbound::SubscribeEnd(end) => {
                end.reply.as_ref().map_or(0, |r| r.len())
                    + end.recovered.iter().map(|p| p.frame.len()).sum::<usize>()
            }
        }
    }
}

/// The queue and its counters, shared by the senders and the connection
/// task.
#[derive(Debug)]
pub(crate) struct QueueState {
    bounds: Bounds,
    delivery_bytes: AtomicUsize,
    delivery_frames: AtomicUsize,
    reply_bytes: AtomicUsize,
    items: Mutex<Items>,
}

/// What the mutex guards.
#[derive(Debug, Default)]
struct Items {
    queue: VecDeque<Outbound>,
    /// Signals raised and not yet taken by the connection task.
    signals: u8,
    /// The connection task, waiting for an item.
    waker: Option<Waker>,
    /// The receiving side is gone: nothing is queued any more.
    closed: bool,
}

/// Wake-ups of the connection task other than queued items (see the
/// module docs). A set of bits: several raised before the task runs come
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signals(u8);

impl Signals {
    /// Server code asked for the socket to close
    /// (`SocketShared::request_close`).
    pub(crate) const KILL: Signals = Signals(1);
    /// The socket's token changed (its expiry and user index follow).
    pub(crate) const AUTH_CHANGED: Signals = Signals(2);
    /// The server is draining.
    pub(crate) const SHUTDOWN: Signals = Signals(4);
    /// The replies waiting came back within the byte bound: reading
    /// resumes.
    pub(crate) const DRAINED: Signals = Signals(8);

    /// Whether `other` is among these.
    pub(crate) fn contains(self, other: Signals) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What the connection task is woken for.
#[derive(Debug)]
pub(crate) enum Event {
    /// Signals raised since the last time (they come before items).
    Signals(Signals),
    /// The next queued item.
    Item(Outbound),
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The socket is a slow consumer: a bound would be passed.
    Full,
    /// The connection task is gone.
    Closed,
}

/// The sending side, kept in the socket's shared state.
#[derive(Debug)]
pub(crate) struct QueueTx {
    state: Arc<QueueState>,
}

/// The receiving side, the connection task's. Dropping it closes the
/// queue and drops what it holds.
#[derive(Debug)]
pub(crate) struct QueueRx {
    state: Arc<QueueState>,
}

/// Nothing is queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Empty;

/// Creates a queue with `bounds`.
pub(crate) fn queue(bounds: Bounds) -> (QueueTx, QueueRx, Arc<QueueState>) {
    let bounds = Bounds {
        bytes: bounds.bytes.max(1),
        frames: bounds.frames.max(1),
    };
    let state = Arc::new(QueueState {
        bounds,
        delivery_bytes: AtomicUsize::new(0),
        delivery_frames: AtomicUsize::new(0),
        reply_bytes: AtomicUsize::new(0),
        items: Mutex::new(Items::default()),
    });
    (
        QueueTx {
            state: state.clone(),
        },
        QueueRx {
            state: state.clone(),
        },
        state,
    )
}

impl QueueRx {
    /// The signals raised meanwhile, else the next item, waiting for one.
    pub(crate) async fn next_event(&mut self) -> Event {
        poll_fn(|cx| {
            let mut items = self.state.items.lock();
            if items.signals != 0 {
                return Poll::Ready(Event::Signals(Signals(std::mem::take(&mut items.signals))));
            }
            if let Some(item) = items.queue.pop_front() {
                return Poll::Ready(Event::Item(item));
            }
            match &items.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => items.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next item, if one is queued.
    pub(crate) fn try_recv(&mut self) -> Result<Outbound, Empty> {
        self.state.items.lock().queue.pop_front().ok_or(Empty)
    }

    /// Gives back the room of an empty queue (see the module docs).
    pub(crate) fn trim(&mut self) {
        let mut items = self.state.items.lock();
        if items.queue.is_empty() && items.queue.capacity() > 0 {
            items.queue = VecDeque::new();
        }
    }

    /// Bytes allocated for queued items (for tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.state.items.lock().queue.capacity()
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        let dropped = {
            let mut items = self.state.items.lock();
            items.closed = true;
            items.waker = None;
            std::mem::take(&mut items.queue)
        };
        // Dropped items leave the bounds (outside the lock: dropping a
        // publication may free its frame).
        let mut taken = Taken::default();
        for item in &dropped {
            taken.add(item);
        }
        drop(dropped);
        taken.release(&self.state);
    }
}

impl QueueTx {
    /// Queues `item`, or refuses it (see the module docs).
    pub(crate) fn send(&self, item: Outbound) -> Result<(), Refused> {
        let cost = item.cost();
        let s = &self.state;
        match item.class() {
            Class::Reply => {
                s.reply_bytes.fetch_add(cost, Ordering::AcqRel);
            }
            Class::Delivery => {
                let frames = s.delivery_frames.fetch_add(1, Ordering::AcqRel) + 1;
                let bytes = s.delivery_bytes.fetch_add(cost, Ordering::AcqRel) + cost;
                let alone = bytes == cost;
                if frames > s.bounds.frames || (bytes > s.bounds.bytes && !alone) {
                    s.delivery_frames.fetch_sub(1, Ordering::AcqRel);
                    s.delivery_bytes.fetch_sub(cost, Ordering::AcqRel);
                    return Err(Refused::Full);
                }
            }
        }
        let class = item.class();
        let waker = {
            let mut items = s.items.lock();
            if items.closed {
                drop(items);
                s.release(class, 1, cost);
                return Err(Refused::Closed);
            }
            items.queue.push_back(item);
            items.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl QueueState {
    /// Raises `signals` for the connection task and wakes it (nothing once
    /// the task is gone).
    pub(crate) fn signal(&self, signals: Signals) {
        let waker = {
            let mut items = self.items.lock();
            if items.closed {
                return;
            }
            items.signals |= signals.0;
            items.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Counts `frames` items of `class` and `bytes` bytes as written (or
    /// dropped).
    pub(crate) fn release(&self, class: Class, frames: usize, bytes: usize) {
        match class {
            Class::Delivery => {
                self.delivery_frames.fetch_sub(frames, Ordering::AcqRel);
                self.delivery_bytes.fetch_sub(bytes, Ordering::AcqRel);
            }
            Class::Reply => {
                let before = self.reply_bytes.fetch_sub(bytes, Ordering::AcqRel);
                if before > self.bounds.bytes && before - bytes <= self.bounds.bytes {
                    self.signal(Signals::DRAINED);
                }
            }
        }
    }

    /// Whether the replies waiting exceed the byte bound (the client must
    /// read before it is read again).
    pub(crate) fn replies_backlogged(&self) -> bool {
        self.reply_bytes.load(Ordering::Acquire) > self.bounds.bytes
    }

    /// Bytes of deliveries queued or being written.
    #[cfg(test)]
    pub(crate) fn delivery_bytes(&self) -> usize {
        self.delivery_bytes.load(Ordering::Acquire)
    }
}

/// What a batch taken from the queue holds, to release once written.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub(crate) delivery_frames: usize,
    pub(crate) delivery_bytes: usize,
    pub(crate) reply_bytes: usize,
}

impl Taken {
    /// Adds one item.
    pub(crate) fn add(&mut self, item: &Outbound) {
        let cost = item.cost();
        match item.class() {
            Class::Delivery => {
                self.delivery_frames += 1;
                self.delivery_bytes += cost;
            }
            Class::Reply => self.reply_bytes += cost,
        }
    }

    /// Bytes in the batch.
    pub(crate) fn bytes(&self) -> usize {
        self.delivery_bytes + self.reply_bytes
    }

    /// Releases the batch's counts.
    pub(crate) fn release(self, state: &QueueState) {
        if self.delivery_frames > 0 || self.delivery_bytes > 0 {
            state.release(Class::Delivery, self.delivery_frames, self.delivery_bytes);
        }
        if self.reply_bytes > 0 {
            state.release(Class::Reply, 0, self.reply_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn frame(n: usize) -> Outbound {
        Outbound::Frame(Bytes::from(vec![b'x'; n]))
    }

    fn reply(n: usize) -> Outbound {
        Outbound::Reply(Bytes::from(vec![b'x'; n]))
    }

    #[test]
    fn deliveries_are_bounded_in_bytes_and_frames() {
        let (tx, mut rx, state) = queue(Bounds {
            bytes: 100,
            frames: 3,
        });
        assert_eq!(tx.send(frame(60)), Ok(()));
        assert_eq!(tx.send(frame(60)), Err(Refused::Full), "160 > 100 bytes");
        assert_eq!(tx.send(frame(20)), Ok(()));
        assert_eq!(tx.send(frame(10)), Ok(()));
        assert_eq!(tx.send(frame(1)), Err(Refused::Full), "a fourth frame");
        assert_eq!(state.delivery_bytes(), 90);
        // Written: the room comes back.
        let mut taken = Taken::default();
        while let Ok(item) = rx.try_recv() {
            taken.add(&item);
        }
        taken.release(&state);
        assert_eq!(state.delivery_bytes(), 0);
        assert_eq!(tx.send(frame(60)), Ok(()));
    }

    #[test]
    fn one_big_delivery_passes_when_alone() {
        let (tx, _rx, _state) = queue(Bounds {
            bytes: 100,
            frames: 10,
        });
        assert_eq!(tx.send(frame(500)), Ok(()));
        assert_eq!(tx.send(frame(1)), Err(Refused::Full));
    }

    #[tokio::test]
    async fn replies_are_never_refused_but_backlog_pauses_reading() {
        let (tx, mut rx, state) = queue(Bounds {
            bytes: 100,
            frames: 1,
        });
        for _ in 0..5 {
            assert_eq!(tx.send(reply(50)), Ok(()));
        }
        // Replies do not take a delivery's room.
        assert_eq!(tx.send(frame(10)), Ok(()));
        assert!(state.replies_backlogged());
        let mut taken = Taken::default();
        for _ in 0..4 {
            taken.add(&rx.try_recv().unwrap());
        }
        taken.release(&state);
        assert!(!state.replies_backlogged());
        // The paused reader is told.
        assert!(matches!(
            rx.next_event().await,
            Event::Signals(s) if s.contains(Signals::DRAINED)
        ));
    }

    #[test]
    fn the_queue_allocates_with_its_first_item_and_trim_gives_it_back() {
        let (tx, mut rx, _state) = queue(Bounds {
            bytes: 1000,
            frames: 100,
        });
        assert_eq!(rx.capacity(), 0, "nothing allocated for an idle socket");
        for _ in 0..10 {
            tx.send(frame(10)).unwrap();
        }
        assert!(rx.capacity() >= 10);
        rx.trim();
        assert!(rx.capacity() >= 10, "items are still queued");
        while rx.try_recv().is_ok() {}
        // The room stays between bursts...
        assert!(rx.capacity() >= 10);
        // ...until the socket is idle.
        rx.trim();
        assert_eq!(rx.capacity(), 0);
        assert!(matches!(rx.try_recv(), Err(Empty)));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx, _state) = queue(Bounds {
            bytes: 1000,
            frames: 100,
        });
        let waiter = tokio::spawn(async move {
            match rx.next_event().await {
                Event::Item(item) => item.cost(),
                Event::Signals(s) => panic!("unexpected {s:?}"),
            }
        });
        tokio::task::yield_now().await;
        tx.send(frame(7)).unwrap();
        assert_eq!(waiter.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn signals_wake_the_receiver_and_come_before_items() {
        let (tx, mut rx, state) = queue(Bounds {
            bytes: 1000,
            frames: 100,
        });
        let waiter = tokio::spawn(async move {
            let first = rx.next_event().await;
            let second = rx.next_event().await;
            (first, second, rx)
        });
        tokio::task::yield_now().await;
        state.signal(Signals::KILL);
        state.signal(Signals::SHUTDOWN);
        tx.send(frame(3)).unwrap();
        let (first, second, rx) = waiter.await.unwrap();
        // Raised before the task ran: both come in one event.
        let Event::Signals(s) = first else {
            panic!("{first:?}")
        };
        assert!(s.contains(Signals::KILL) && s.contains(Signals::SHUTDOWN));
        assert!(!s.contains(Signals::AUTH_CHANGED));
        assert!(
            matches!(second, Event::Item(ref i) if i.cost() == 3),
            "{second:?}"
        );
        // Once the receiver is gone, a signal is a no-op.
        drop(rx);
        state.signal(Signals::AUTH_CHANGED);
        assert_eq!(state.items.lock().signals, 0);
    }

    #[test]
    fn dropping_the_receiver_drops_what_is_queued() {
        let (tx, rx, state) = queue(Bounds {
            bytes: 100,
            frames: 10,
        });
        tx.send(frame(30)).unwrap();
        tx.send(reply(200)).unwrap();
        assert!(state.replies_backlogged());
        drop(rx);
        assert_eq!(state.delivery_bytes(), 0);
        assert!(!state.replies_backlogged());
        assert_eq!(tx.send(frame(1)), Err(Refused::Closed));
    }

    #[test]
    fn a_closed_queue_refuses_and_keeps_counts_straight() {
        let (tx, rx, state) = queue(Bounds {
            bytes: 100,
            frames: 10,
        });
        drop(rx);
        assert_eq!(tx.send(frame(10)), Err(Refused::Closed));
        assert_eq!(state.delivery_bytes(), 0);
    }
}
