//! One slot per channel this node publishes with history: the lock that
//! serializes the node's own publications on the channel, and the position
//! the node last wrote there.
//!
//! Serializing a node's publications per channel means that the
//! optimistic-concurrency retries of [`super`] only happen between nodes.
//! The lock is a `tokio` mutex: it is *meant* to be held across the read
//! and write round trips of one publication, and nothing else is held with
//! it; the remembered position sits behind its own short synchronous lock,
//! so that readers never wait for a publication in progress.
//!
//! The remembered position is not used to skip reading the channel's
//! position before a write: a node that wrote from memory, one round trip
//! per publication, would leave another node (read, then write: two round
//! trips) no window to get a write in while it keeps publishing, and that
//! node would lose every race until the first one paused. It serves the
//! lost-write check of [`super::record::resolve`].
//!
//! Memory stays bounded: once more than `capacity` channels have slots,
//! every slot nobody holds is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use herald::broker::StreamPosition;
use parking_lot::Mutex;

/// One channel's slot.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Held for the whole of one of this node's writes on the channel.
    pub(crate) write: tokio::sync::Mutex<()>,
    wrote: Mutex<Option<StreamPosition>>,
}

impl Slot {
    /// The position this node last wrote, if it remembers.
    pub(crate) fn wrote(&self) -> Option<StreamPosition> {
        self.wrote.lock().clone()
    }

    /// Remembers a write.
    pub(crate) fn remember(&self, position: StreamPosition) {
        *self.wrote.lock() = Some(position);
    }

    /// Forgets it (the history was removed).
    pub(crate) fn forget(&self) {
        *self.wrote.lock() = None;
    }
}

/// Every channel's slot.
#[derive(Debug)]
pub(crate) struct Slots {
    map: Mutex<HashMap<Arc<str>, Arc<Slot>>>,
    capacity: usize,
}

impl Slots {
    /// Slots for up to about `capacity` idle channels.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// `channel`'s slot, created when it has none.
    pub(crate) fn get(&self, channel: &str) -> Arc<Slot> {
        let mut map = self.map.lock();
        if let Some(slot) = map.get(channel) {
            return slot.clone();
        }
        if map.len() >= self.capacity {
            // Only the map holds an idle slot: nobody can be waiting on it,
            // and nobody can pick it up meanwhile (that takes this lock).
            map.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        let slot = Arc::new(Slot::default());
        map.insert(Arc::from(channel), slot.clone());
        slot
    }

    /// `channel`'s slot if it has one (no creation).
    pub(crate) fn peek(&self, channel: &str) -> Option<Arc<Slot>> {
        self.map.lock().get(channel).cloned()
    }

    /// Number of slots (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrote(offset: u64) -> StreamPosition {
        StreamPosition::new(offset, "e")
    }

    #[test]
    fn a_slot_remembers_and_forgets() {
        let slots = Slots::new(10);
        let slot = slots.get("c");
        assert_eq!(slot.wrote(), None);
        slot.remember(wrote(3));
        assert_eq!(slots.get("c").wrote(), Some(wrote(3)), "the same slot");
        slot.forget();
        assert_eq!(slot.wrote(), None);
        assert!(slots.peek("c").is_some());
        assert!(slots.peek("d").is_none());
    }

    #[test]
    fn idle_slots_are_dropped_past_the_capacity_held_ones_are_not() {
        let slots = Slots::new(4);
        let held = slots.get("held");
        held.remember(wrote(1));
        for i in 0..3 {
            slots.get(&format!("idle{i}")).remember(wrote(2));
        }
        assert_eq!(slots.len(), 4);
        let _new = slots.get("new");
        assert_eq!(slots.len(), 2, "idle slots dropped, held and new kept");
        assert_eq!(slots.get("held").wrote(), Some(wrote(1)));
        assert_eq!(slots.get("idle0").wrote(), None, "a fresh slot");
        for i in 0..100 {
            drop(slots.get(&format!("x{i}")));
            assert!(slots.len() <= 5);
        }
    }

    #[tokio::test]
    async fn writes_on_one_channel_take_turns() {
        let slots = Arc::new(Slots::new(10));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = slots.get("c");
        let guard = first.write.lock().await;
        let task = tokio::spawn({
            let (slots, order) = (slots.clone(), order.clone());
            async move {
                let slot = slots.get("c");
                let _g = slot.write.lock().await;
                order.lock().push("second");
            }
        });
        tokio::task::yield_now().await;
        order.lock().push("first");
        drop(guard);
        task.await.unwrap();
        assert_eq!(*order.lock(), ["first", "second"]);
    }
}
