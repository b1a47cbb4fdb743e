//! Delivery accounting: per (publisher, subscriber) sequence checking.
//!
//! Every publisher numbers its publications 0, 1, 2, … and every subscriber
//! keeps one [`SeqChecker`] per publisher of its channel. With an in-order,
//! exactly-once server each checker sees exactly 0, 1, 2, … The checker
//! classifies every departure from that:
//!
//! * a jump forward (`seq > next`) counts the skipped numbers as **lost**;
//! * a repeat of the number just seen counts as **duplicated**;
//! * any other number below the next expected one arrived after a higher one:
//!   it counts as **reordered**, and since it fills a gap that was counted as
//!   lost, one loss is taken back. (Without per-number history a late
//!   arrival and an old duplicate look the same; both are failures.)
//!
//! At the end, [`SeqChecker::finish`] adds the numbers never seen at the tail
//! (publications made but not delivered before the drain deadline) to the
//! losses.

use serde::{Deserialize, Serialize};

/// Delivery counts of one checker, or summed over many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqCounts {
    /// Deliveries seen (all of them, good or bad).
    pub received: u64,
    /// Publications never delivered.
    pub lost: u64,
    /// Deliveries of the sequence number just delivered.
    pub duplicated: u64,
    /// Deliveries that arrived after a higher sequence number.
    pub reordered: u64,
}

impl SeqCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &SeqCounts) {
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
    }

    /// Whether nothing was lost, duplicated or reordered.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0
    }
}

/// Checks the sequence numbers one subscriber receives from one publisher.
#[derive(Debug, Clone, Default)]
pub struct SeqChecker {
    /// The next expected sequence number.
    next: u64,
    counts: SeqCounts,
}

impl SeqChecker {
    /// A checker expecting sequence number 0 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one delivery.
    #[inline]
    pub fn observe(&mut self, seq: u64) {
        let c = &mut self.counts;
        c.received += 1;
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            c.lost += seq - self.next;
            self.next = seq + 1;
        } else if seq + 1 == self.next {
            c.duplicated += 1;
        } else {
            c.reordered += 1;
            c.lost = c.lost.saturating_sub(1);
        }
    }

    /// Closes the books once the publisher made `published` publications
    /// (numbers `0..published`): the ones never seen at the tail are lost.
    pub fn finish(&mut self, published: u64) -> SeqCounts {
        if published > self.next {
            self.counts.lost += published - self.next;
            self.next = published;
        }
        self.counts
    }

    /// Counts so far (without the tail losses [`Self::finish`] adds).
    pub fn counts(&self) -> SeqCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64], published: u64) -> SeqCounts {
        let mut c = SeqChecker::new();
        for &s in seqs {
            c.observe(s);
        }
        c.finish(published)
    }

    #[test]
    fn in_order_stream_is_clean() {
        let c = run(&[0, 1, 2, 3, 4], 5);
        assert!(c.is_clean());
        assert_eq!(c.received, 5);
        assert!(run(&[], 0).is_clean());
    }

    #[test]
    fn gaps_and_tail_are_lost() {
        let c = run(&[0, 1, 4, 5], 8);
        // 2 and 3 skipped, 6 and 7 never came.
        assert_eq!(c.lost, 4);
        assert_eq!((c.duplicated, c.reordered), (0, 0));
        // Nothing delivered at all.
        assert_eq!(run(&[], 3).lost, 3);
        // A leading gap.
        assert_eq!(run(&[2, 3], 4).lost, 2);
    }

    #[test]
    fn repeats_are_duplicates() {
        let c = run(&[0, 1, 1, 2, 2, 2], 3);
        assert_eq!(c.duplicated, 3);
        assert_eq!((c.lost, c.reordered), (0, 0));
        assert_eq!(c.received, 6);
    }

    #[test]
    fn late_arrivals_are_reordered_not_lost() {
        // 1 arrives after 2: one reordering, no loss.
        let c = run(&[0, 2, 1, 3], 4);
        assert_eq!((c.lost, c.duplicated, c.reordered), (0, 0, 1));
        // 1 and 2 swapped past 3: still nothing lost.
        let c = run(&[0, 3, 1, 2], 4);
        assert_eq!((c.lost, c.duplicated, c.reordered), (0, 0, 2));
    }

    #[test]
    fn counts_add_up() {
        let mut total = SeqCounts::default();
        // 1 skipped.
        total.add(&run(&[0, 2], 3));
        total.add(&run(&[0, 0], 1));
        assert_eq!(
            total,
            SeqCounts {
                received: 4,
                lost: 1,
                duplicated: 1,
                reordered: 0
            }
        );
        assert!(!total.is_clean());
    }
}
