//! The node's view of one channel's stream: which offset it delivered last,
//! and what to do with the next publication the broker hands it.
//!
//! A broker delivers a channel's publications in offset order, but a
//! networked one can lose some while its connection is down or its
//! subscription is being re-established, and can deliver one twice around
//! a subscription move. The [`Cursor`] makes the local fan-out gapless and
//! duplicate-free anyway:
//!
//! * the next offset is delivered; an offset already delivered is dropped;
//! * a gap (offset n+2 after n, or a resync from the broker) starts a
//!   **repair**: later publications are held while the missing offsets are
//!   read from the channel's history, then everything goes out in order;
//! * when the history cannot fill the gap (it expired, it was trimmed, its
//!   epoch changed), the subscribers are told ([`Step::Unrecoverable`])
//!   and the stream goes on from what is available;
//! * a new epoch starting at offset 1 is the natural end of an expired
//!   history (nothing published for `history_ttl`), not a loss, unless a
//!   resync says messages may have been lost meanwhile.
//!
//! This module is pure logic (no locks, no IO): the registry owns one
//! cursor per channel with history behind a mutex, and runs the history
//! reads the cursor asks for (see `repair`).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::broker::{Publication, StreamPosition};

/// Most bytes of publications held for one channel while it is repaired;
/// beyond, the repair gives up (the gap is reported and everything held is
/// delivered).
pub(crate) const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;
/// Most publications held for one channel while it is repaired.
pub(crate) const MAX_HELD: usize = 65_536;

/// What the registry does next for a channel.
#[derive(Debug)]
pub(crate) enum Step {
    /// Fan this publication out.
    Deliver(Arc<Publication>),
    /// Tell the subscribers that publications were lost for good; the
    /// stream goes on after this position.
    Unrecoverable(StreamPosition),
}

/// A history read the cursor needs: publications after `since`. `id`
/// identifies the repair, so that a stale result is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepairRequest {
    pub(crate) since: StreamPosition,
    pub(crate) id: u64,
}

/// The outcome of a repair's history read.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Whether the publications fill the gap after `since` entirely.
    pub(crate) complete: bool,
    /// The publications read, oldest first, in the stream's current epoch.
    pub(crate) publications: Vec<Arc<Publication>>,
    /// The stream's position when read.
    pub(crate) position: StreamPosition,
}

struct Repair {
    id: u64,
    since: StreamPosition,
    held: VecDeque<Arc<Publication>>,
    held_bytes: usize,
}

/// One channel's stream as this node delivered it.
#[derive(Default)]
pub(crate) struct Cursor {
    /// The position of the last publication delivered (or the lowest
    /// position a subscriber read, before any was delivered).
    last: Option<StreamPosition>,
    /// `last` comes from subscribers' reads only.
    seeded: bool,
    repair: Option<Repair>,
    /// A resync arrived during a repair: repair again once it is done.
    again: bool,
    /// Messages may have been lost since the last repair: an epoch change
    /// is a gap, not the end of an expired history.
    uncertain: bool,
    next_id: u64,
}

fn position(p: &Publication) -> Option<&StreamPosition> {
    p.position.as_ref()
}

impl Cursor {
    /// A subscriber read the stream at `at`: until a publication arrives,
    /// the cursor stands at the lowest such read (so that no subscriber
    /// misses a publication in flight to this node).
    pub(crate) fn seed(&mut self, at: &StreamPosition) {
        match &self.last {
            None => {
                self.last = Some(at.clone());
                self.seeded = true;
            }
            Some(last) if self.seeded && last.epoch == at.epoch && at.offset < last.offset => {
                self.last = Some(at.clone());
            }
            _ => {}
        }
    }

    /// The last position delivered, if any.
    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<&StreamPosition> {
        self.last.as_ref()
    }

    /// Whether a repair is running.
    pub(crate) fn repairing(&self) -> bool {
        self.repair.is_some()
    }

    fn start_repair(&mut self, since: StreamPosition) -> RepairRequest {
        self.next_id += 1;
        let id = self.next_id;
        self.repair = Some(Repair {
            id,
            since: since.clone(),
            held: VecDeque::new(),
            held_bytes: 0,
        });
        RepairRequest { since, id }
    }

    fn hold(&mut self, p: Arc<Publication>) -> Result<(), Arc<Publication>> {
        let Some(repair) = &mut self.repair else {
            return Err(p);
        };
        let bytes = p.frame.len();
        if repair.held.len() >= MAX_HELD || repair.held_bytes + bytes > MAX_HELD_BYTES {
            return Err(p);
        }
        repair.held_bytes += bytes;
        repair.held.push_back(p);
        Ok(())
    }

    /// A publication from the broker. Returns what to fan out now, and a
    /// history read to start when this publication opened a gap.
    pub(crate) fn offer(&mut self, p: Arc<Publication>) -> (Vec<Step>, Option<RepairRequest>) {
        let Some(pos) = position(&p).cloned() else {
            return (vec![Step::Deliver(p)], None);
        };
        if self.repair.is_some() {
            return match self.hold(p) {
                Ok(()) => (Vec::new(), None),
                Err(p) => (self.give_up(Some(p)), None),
            };
        }
        let Some(last) = self.last.clone() else {
            self.advance_to(pos);
            return (vec![Step::Deliver(p)], None);
        };
        if last.epoch == pos.epoch {
            if pos.offset <= last.offset {
                crate::metrics::history_duplicate();
                return (Vec::new(), None);
            }
            if pos.offset == last.offset + 1 {
                self.advance_to(pos);
                return (vec![Step::Deliver(p)], None);
            }
        } else if pos.offset == 1 && !self.uncertain {
            // A new stream: the old history expired with nothing lost.
            self.advance_to(pos);
            return (vec![Step::Deliver(p)], None);
        }
        // A gap: hold this one, read what is missing.
        let request = self.start_repair(last);
        let _ = self.hold(p);
        (Vec::new(), Some(request))
    }

    fn advance_to(&mut self, pos: StreamPosition) {
        self.last = Some(pos);
        self.seeded = false;
    }

    /// The broker's flow was interrupted: until the next repair, a new
    /// epoch is a possible loss.
    pub(crate) fn interrupt(&mut self) {
        self.uncertain = true;
    }

    /// The broker says messages may have been lost: read the history after
    /// the last delivered position (unless nothing was delivered yet).
    pub(crate) fn resync(&mut self) -> Option<RepairRequest> {
        self.uncertain = true;
        if self.repair.is_some() {
            self.again = true;
            return None;
        }
        let last = self.last.clone()?;
        Some(self.start_repair(last))
    }

    /// The repair `id` read `fetched`. Returns what to fan out, in order,
    /// and another read when the held publications open a new gap (or a
    /// resync arrived meanwhile).
    pub(crate) fn complete(
        &mut self,
        id: u64,
        fetched: Fetched,
    ) -> (Vec<Step>, Option<RepairRequest>) {
        let Some(repair) = self.repair.take_if(|r| r.id == id) else {
            return (Vec::new(), None);
        };
        let mut steps = Vec::new();
        if fetched.complete {
            crate::metrics::gap_repaired();
            self.last = Some(repair.since.clone());
        } else {
            crate::metrics::gap_unrepairable();
            let resume = fetched
                .publications
                .first()
                .or(repair.held.front())
                .and_then(|p| position(p))
                .map(|p| StreamPosition::new(p.offset - 1, p.epoch.clone()))
                .unwrap_or_else(|| fetched.position.clone());
            steps.push(Step::Unrecoverable(resume.clone()));
            self.last = Some(resume);
        }
        self.seeded = false;
        self.uncertain = false;
        for p in fetched.publications {
            self.catch_up(p, &mut steps);
        }
        let mut held = repair.held;
        while let Some(p) = held.pop_front() {
            let (more, request) = self.offer(p);
            steps.extend(more);
            if let Some(request) = request {
                // A new gap among the held publications: keep the rest held
                // behind it.
                for p in held {
                    if let Err(p) = self.hold(p) {
                        steps.extend(self.give_up(Some(p)));
                        return (steps, None);
                    }
                }
                return (steps, Some(request));
            }
        }
        if std::mem::take(&mut self.again) {
            return (steps, self.resync());
        }
        (steps, None)
    }

    /// A fetched publication: delivered when it is the next one, skipped
    /// when already delivered; a hole in what the history returned is
    /// reported and jumped over.
    fn catch_up(&mut self, p: Arc<Publication>, steps: &mut Vec<Step>) {
        let Some(pos) = position(&p).cloned() else {
            return;
        };
        if let Some(last) = &self.last
            && last.epoch == pos.epoch
        {
            if pos.offset <= last.offset {
                return;
            }
            if pos.offset > last.offset + 1 {
                steps.push(Step::Unrecoverable(StreamPosition::new(
                    pos.offset - 1,
                    pos.epoch.clone(),
                )));
            }
        }
        self.advance_to(pos);
        steps.push(Step::Deliver(p));
    }

    /// The repair `id` cannot read the history (for too long, or it holds
    /// too much): report the gap and deliver what is held.
    pub(crate) fn abandon(&mut self, id: u64) -> Vec<Step> {
        if self.repair.as_ref().is_some_and(|r| r.id == id) {
            self.give_up(None)
        } else {
            Vec::new()
        }
    }

    fn give_up(&mut self, extra: Option<Arc<Publication>>) -> Vec<Step> {
        crate::metrics::gap_unrepairable();
        let mut held = self.repair.take().map(|r| r.held).unwrap_or_default();
        held.extend(extra);
        self.again = false;
        let mut steps = Vec::new();
        let Some(first) = held.front().and_then(|p| position(p)).cloned() else {
            return steps;
        };
        let resume = StreamPosition::new(first.offset - 1, first.epoch.clone());
        steps.push(Step::Unrecoverable(resume.clone()));
        self.last = Some(resume);
        for p in held {
            self.catch_up(p, &mut steps);
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(offset: u64, epoch: &str) -> Arc<Publication> {
        Arc::new(Publication::at(
            "c",
            None,
            Some(StreamPosition::new(offset, epoch)),
        ))
    }

    fn delivered(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Deliver(p) => {
                    let pos = p.position.as_ref().unwrap();
                    format!("{}{}", pos.epoch, pos.offset)
                }
                Step::Unrecoverable(pos) => format!("!{}{}", pos.epoch, pos.offset),
            })
            .collect()
    }

    fn fetched(complete: bool, offsets: &[u64], epoch: &str, top: u64) -> Fetched {
        Fetched {
            complete,
            publications: offsets.iter().map(|o| publication(*o, epoch)).collect(),
            position: StreamPosition::new(top, epoch),
        }
    }

    #[test]
    fn in_order_delivered_duplicates_dropped() {
        let mut c = Cursor::default();
        for o in 1..=3 {
            let (steps, repair) = c.offer(publication(o, "e"));
            assert_eq!(delivered(&steps), [format!("e{o}")]);
            assert!(repair.is_none());
        }
        let (steps, repair) = c.offer(publication(2, "e"));
        assert!(steps.is_empty() && repair.is_none());
        assert_eq!(c.last(), Some(&StreamPosition::new(3, "e")));
    }

    #[test]
    fn a_gap_is_repaired_in_order() {
        let mut c = Cursor::default();
        c.offer(publication(1, "e"));
        let (steps, repair) = c.offer(publication(4, "e"));
        assert!(steps.is_empty());
        let repair = repair.expect("a repair");
        assert_eq!(repair.since, StreamPosition::new(1, "e"));
        assert!(c.repairing());
        // Held while repairing, with a duplicate of what the read returns.
        assert!(c.offer(publication(5, "e")).0.is_empty());
        assert!(c.offer(publication(3, "e")).0.is_empty());
        let (steps, again) = c.complete(repair.id, fetched(true, &[2, 3, 4], "e", 4));
        assert_eq!(delivered(&steps), ["e2", "e3", "e4", "e5"]);
        assert!(again.is_none() && !c.repairing());
        assert_eq!(c.last(), Some(&StreamPosition::new(5, "e")));
    }

    #[test]
    fn an_unfillable_gap_is_reported_then_the_stream_goes_on() {
        let mut c = Cursor::default();
        c.offer(publication(1, "e"));
        let repair = c.offer(publication(9, "e")).1.unwrap();
        // The history kept only 7..9.
        let (steps, _) = c.complete(repair.id, fetched(false, &[7, 8, 9], "e", 9));
        assert_eq!(delivered(&steps), ["!e6", "e7", "e8", "e9"]);
        // The epoch changed: the new epoch's history is delivered after the
        // notice.
        let mut c = Cursor::default();
        c.offer(publication(5, "old"));
        c.resync();
        let repair = c.offer(publication(3, "new")).1;
        assert!(repair.is_none(), "already repairing (resync)");
        let mut c2 = Cursor::default();
        c2.offer(publication(5, "old"));
        let r = c2.resync().unwrap();
        let (steps, _) = c2.complete(r.id, fetched(false, &[1, 2], "new", 2));
        assert_eq!(delivered(&steps), ["!new0", "new1", "new2"]);
    }

    #[test]
    fn a_new_epoch_at_offset_one_is_an_expired_history_unless_uncertain() {
        let mut c = Cursor::default();
        c.offer(publication(7, "old"));
        let (steps, repair) = c.offer(publication(1, "new"));
        assert_eq!(delivered(&steps), ["new1"]);
        assert!(repair.is_none());
        // After a resync, the same switch is a possible loss.
        let r = c.resync().unwrap();
        let (steps, _) = c.complete(r.id, fetched(true, &[], "new", 1));
        assert!(steps.is_empty());
        let mut c = Cursor::default();
        c.offer(publication(7, "old"));
        let r = c.resync().unwrap();
        assert!(c.offer(publication(1, "new")).0.is_empty(), "held");
        let (steps, _) = c.complete(r.id, fetched(false, &[], "new", 1));
        assert_eq!(delivered(&steps), ["!new0", "new1"]);
        // After an interruption, too, before any resync.
        let mut c = Cursor::default();
        c.offer(publication(7, "old"));
        c.interrupt();
        assert!(c.offer(publication(1, "new")).1.is_some(), "a repair");
        // Another epoch mid-stream is a gap.
        let mut c = Cursor::default();
        c.offer(publication(7, "old"));
        assert!(c.offer(publication(3, "new")).1.is_some());
    }

    #[test]
    fn seeds_keep_the_lowest_read_until_a_publication_arrives() {
        let mut c = Cursor::default();
        c.seed(&StreamPosition::new(6, "e"));
        c.seed(&StreamPosition::new(5, "e"));
        assert_eq!(c.last(), Some(&StreamPosition::new(5, "e")));
        let (steps, _) = c.offer(publication(6, "e"));
        assert_eq!(delivered(&steps), ["e6"]);
        c.seed(&StreamPosition::new(2, "e"));
        assert_eq!(
            c.last(),
            Some(&StreamPosition::new(6, "e")),
            "seeds no longer count"
        );
    }

    #[test]
    fn resync_repairs_from_the_last_delivered_and_again_when_asked_twice() {
        let mut c = Cursor::default();
        assert!(
            c.resync().is_none(),
            "nothing delivered, nothing to compare"
        );
        c.offer(publication(1, "e"));
        let r1 = c.resync().unwrap();
        assert!(c.resync().is_none(), "already repairing");
        let (steps, r2) = c.complete(r1.id, fetched(true, &[2], "e", 2));
        assert_eq!(delivered(&steps), ["e2"]);
        let r2 = r2.expect("the second resync repairs again");
        assert_eq!(r2.since, StreamPosition::new(2, "e"));
        // A stale completion is ignored.
        let (steps, _) = c.complete(r1.id, fetched(true, &[3], "e", 3));
        assert!(steps.is_empty());
        let (steps, _) = c.complete(r2.id, fetched(true, &[], "e", 2));
        assert!(steps.is_empty());
    }

    #[test]
    fn a_gap_among_held_publications_starts_another_repair() {
        let mut c = Cursor::default();
        c.offer(publication(1, "e"));
        let r = c.offer(publication(3, "e")).1.unwrap();
        c.offer(publication(6, "e"));
        c.offer(publication(7, "e"));
        let (steps, next) = c.complete(r.id, fetched(true, &[2, 3], "e", 3));
        assert_eq!(delivered(&steps), ["e2", "e3"]);
        let next = next.expect("4 and 5 are missing");
        assert_eq!(next.since, StreamPosition::new(3, "e"));
        let (steps, _) = c.complete(next.id, fetched(true, &[4, 5, 6], "e", 7));
        assert_eq!(delivered(&steps), ["e4", "e5", "e6", "e7"]);
    }

    #[test]
    fn abandoning_reports_and_delivers_what_is_held() {
        let mut c = Cursor::default();
        c.offer(publication(1, "e"));
        let r = c.offer(publication(4, "e")).1.unwrap();
        c.offer(publication(5, "e"));
        let steps = c.abandon(r.id);
        assert_eq!(delivered(&steps), ["!e3", "e4", "e5"]);
        assert!(!c.repairing());
        assert!(c.abandon(r.id).is_empty());
    }

    #[test]
    fn holding_too_much_gives_up() {
        let mut c = Cursor::default();
        c.offer(publication(1, "e"));
        c.offer(publication(3, "e"));
        let mut out = Vec::new();
        for o in 4..(4 + MAX_HELD as u64) {
            out.extend(c.offer(publication(o, "e")).0);
        }
        assert!(matches!(out.first(), Some(Step::Unrecoverable(p)) if p.offset == 2));
        assert_eq!(
            out.len(),
            MAX_HELD + 2,
            "the notice and every held publication"
        );
        assert!(!c.repairing());
    }
}
