//! Where the client stands in one channel's stream, and what follows from a
//! publication or a subscribe reply: deliver, drop a duplicate, or report a
//! gap.
//!
//! On a channel with history every publication has an offset (1, 2, 3, … with
//! no holes) and the stream an epoch, which changes when the history is lost.
//! The client keeps the last position it saw ([`Tracker`]) and resubscribes
//! from it after a reconnect; the server sends every later publication it
//! still has before its reply, then goes on live. This module checks that
//! promise instead of trusting it, with one rule for every input:
//!
//! * a publication at or before the last offset of the same epoch is a
//!   duplicate (it was delivered already) and is dropped;
//! * a publication further than one past the last offset, or in another
//!   epoch, comes after a hole: it is delivered after a [`StreamGap`];
//! * a subscribe reply names the top of the stream: `recovered: false` is a
//!   gap ([`GapCause::NotRecovered`]), and so is a top past the last offset
//!   or in another epoch (publications the client should have received
//!   before the reply and did not);
//! * `#herald/unrecoverable` is a gap the server announces.
//!
//! A position never moves backwards within an epoch, so a late or repeated
//! reply cannot make the client deliver old publications again. Pure logic:
//! no socket, no clock.

use herald_protocol::Position;
use herald_protocol::ext::{StreamPosition, SubscribeStatus};

use crate::gap::{GapCause, StreamGap};

/// What to do with a publication.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Deliver it.
    Deliver,
    /// Drop it: it was delivered already.
    Duplicate,
    /// Report the gap, then deliver it.
    AfterGap(StreamGap),
}

/// The last known position in one channel's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tracker {
    position: Option<StreamPosition>,
}

impl Tracker {
    /// Starting at `position` (an application's persisted position), or
    /// nowhere yet.
    pub(crate) fn new(position: Option<StreamPosition>) -> Self {
        Self { position }
    }

    /// The last known position.
    pub(crate) fn position(&self) -> Option<&StreamPosition> {
        self.position.as_ref()
    }

    /// The `recover` of the next subscribe, when a position is known.
    pub(crate) fn recover(&self) -> Option<(u64, &str)> {
        self.position.as_ref().map(|p| (p.offset, p.epoch.as_str()))
    }

    /// A publication arrived at `at` (`None` on a channel without history).
    pub(crate) fn on_publication(&mut self, channel: &str, at: Option<&Position<'_>>) -> Verdict {
        let Some(at) = at else {
            return Verdict::Deliver;
        };
        let Some(last) = &self.position else {
            self.position = Some(at.to_owned());
            return Verdict::Deliver;
        };
        let verdict = if last.epoch != at.epoch {
            let resume = StreamPosition::new(at.offset.saturating_sub(1), at.epoch.as_ref());
            Verdict::AfterGap(StreamGap::new(
                channel,
                GapCause::EpochChanged,
                Some(last.clone()),
                resume,
            ))
        } else if at.offset <= last.offset {
            return Verdict::Duplicate;
        } else if at.offset - last.offset > 1 {
            let resume = StreamPosition::new(at.offset - 1, at.epoch.as_ref());
            Verdict::AfterGap(StreamGap::new(
                channel,
                GapCause::OffsetJump,
                Some(last.clone()),
                resume,
            ))
        } else {
            Verdict::Deliver
        };
        self.position = Some(at.to_owned());
        verdict
    }

    /// The server acknowledged a subscribe with `status` (`None` on a
    /// channel without history). Every publication it recovered came before.
    pub(crate) fn on_subscribed(
        &mut self,
        channel: &str,
        status: Option<&SubscribeStatus>,
    ) -> Option<StreamGap> {
        let status = status?;
        let top = StreamPosition::new(status.offset, status.epoch.as_str());
        let last = self.position.take();
        let (gap, position) = match &last {
            _ if status.recovered == Some(false) => (Some(GapCause::NotRecovered), top),
            None => (None, top),
            Some(p) if p.epoch != top.epoch => (Some(GapCause::EpochChanged), top),
            Some(p) if p.offset < top.offset => (Some(GapCause::OffsetJump), top),
            // At or past the top: publications that raced the reply.
            Some(p) => (None, p.clone()),
        };
        self.position = Some(position.clone());
        gap.map(|cause| StreamGap::new(channel, cause, last, position))
    }

    /// The server announced that publications were lost and that the stream
    /// goes on after `resume`.
    pub(crate) fn on_unrecoverable(&mut self, channel: &str, resume: StreamPosition) -> StreamGap {
        let last = self.position.take();
        let position = match &last {
            Some(p) if p.epoch == resume.epoch && p.offset > resume.offset => p.clone(),
            _ => resume.clone(),
        };
        self.position = Some(position);
        StreamGap::new(channel, GapCause::Announced, last, resume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, epoch: &str) -> Position<'_> {
        Position {
            offset,
            epoch: epoch.into(),
        }
    }

    fn pos(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition::new(offset, epoch)
    }

    fn status(offset: u64, epoch: &str, recovered: Option<bool>) -> SubscribeStatus {
        SubscribeStatus {
            offset,
            epoch: epoch.into(),
            recovered,
        }
    }

    fn gap(v: Verdict) -> StreamGap {
        match v {
            Verdict::AfterGap(g) => g,
            other => panic!("expected a gap, got {other:?}"),
        }
    }

    #[test]
    fn in_order_publications_advance_and_duplicates_drop() {
        let mut t = Tracker::default();
        assert_eq!(t.recover(), None);
        assert_eq!(t.on_publication("c", Some(&at(5, "e"))), Verdict::Deliver);
        assert_eq!(t.on_publication("c", Some(&at(6, "e"))), Verdict::Deliver);
        assert_eq!(t.on_publication("c", Some(&at(6, "e"))), Verdict::Duplicate);
        assert_eq!(t.on_publication("c", Some(&at(2, "e"))), Verdict::Duplicate);
        assert_eq!(t.recover(), Some((6, "e")));
        // Without a position (a channel without history): delivered, and
        // the known position stays.
        assert_eq!(t.on_publication("c", None), Verdict::Deliver);
        assert_eq!(t.position(), Some(&pos(6, "e")));
    }

    #[test]
    fn offset_jumps_and_epoch_changes_are_gaps() {
        let mut t = Tracker::new(Some(pos(6, "e")));
        let g = gap(t.on_publication("c", Some(&at(9, "e"))));
        assert_eq!(g.cause, GapCause::OffsetJump);
        assert_eq!(
            (g.last.clone(), g.resume.clone()),
            (Some(pos(6, "e")), pos(8, "e"))
        );
        assert_eq!(g.missed(), Some(2));
        assert_eq!(t.position(), Some(&pos(9, "e")));

        let g = gap(t.on_publication("c", Some(&at(1, "f"))));
        assert_eq!(g.cause, GapCause::EpochChanged);
        assert_eq!(g.resume, pos(0, "f"));
        assert_eq!(g.missed(), None);
        assert_eq!(t.on_publication("c", Some(&at(2, "f"))), Verdict::Deliver);
        // An old epoch's publication after the change is a change again,
        // never a silent duplicate of the new epoch.
        assert_eq!(
            gap(t.on_publication("c", Some(&at(3, "e")))).cause,
            GapCause::EpochChanged
        );
    }

    #[test]
    fn extreme_offsets_do_not_overflow() {
        let mut t = Tracker::new(Some(pos(u64::MAX, "e")));
        assert_eq!(
            t.on_publication("c", Some(&at(u64::MAX, "e"))),
            Verdict::Duplicate
        );
        let mut t = Tracker::new(Some(pos(0, "e")));
        let g = gap(t.on_publication("c", Some(&at(u64::MAX, "e"))));
        assert_eq!(g.missed(), Some(u64::MAX - 1));
        let mut t = Tracker::new(Some(pos(3, "e")));
        assert_eq!(
            gap(t.on_publication("c", Some(&at(0, "f")))).resume,
            pos(0, "f")
        );
    }

    #[test]
    fn first_reply_sets_the_start() {
        let mut t = Tracker::default();
        assert_eq!(t.on_subscribed("c", None), None);
        assert_eq!(t.position(), None);
        assert_eq!(t.on_subscribed("c", Some(&status(40, "e", None))), None);
        assert_eq!(t.recover(), Some((40, "e")));
        assert_eq!(t.on_publication("c", Some(&at(41, "e"))), Verdict::Deliver);
    }

    #[test]
    fn recovered_reply_after_the_recovered_publications_is_no_gap() {
        let mut t = Tracker::new(Some(pos(5, "e")));
        for o in 6..=8 {
            assert_eq!(t.on_publication("c", Some(&at(o, "e"))), Verdict::Deliver);
        }
        assert_eq!(
            t.on_subscribed("c", Some(&status(8, "e", Some(true)))),
            None
        );
        assert_eq!(t.position(), Some(&pos(8, "e")));
        // A publication that raced ahead of the reply keeps its place.
        assert_eq!(t.on_publication("c", Some(&at(9, "e"))), Verdict::Deliver);
        assert_eq!(
            t.on_subscribed("c", Some(&status(8, "e", Some(true)))),
            None
        );
        assert_eq!(t.position(), Some(&pos(9, "e")));
    }

    #[test]
    fn not_recovered_and_short_recoveries_are_gaps() {
        let mut t = Tracker::new(Some(pos(5, "e")));
        let g = t
            .on_subscribed("c", Some(&status(30, "f", Some(false))))
            .unwrap();
        assert_eq!(g.cause, GapCause::NotRecovered);
        assert_eq!((g.last, g.resume), (Some(pos(5, "e")), pos(30, "f")));
        assert_eq!(t.position(), Some(&pos(30, "f")));

        // "recovered" but the client got fewer than the top: a jump.
        let mut t = Tracker::new(Some(pos(5, "e")));
        assert_eq!(t.on_publication("c", Some(&at(6, "e"))), Verdict::Deliver);
        let g = t
            .on_subscribed("c", Some(&status(9, "e", Some(true))))
            .unwrap();
        assert_eq!(g.cause, GapCause::OffsetJump);
        assert_eq!(g.missed(), Some(3));

        // A server that ignores `recover` (no "recovered") but moved on.
        let mut t = Tracker::new(Some(pos(5, "e")));
        let g = t.on_subscribed("c", Some(&status(7, "e", None))).unwrap();
        assert_eq!((g.cause, g.missed()), (GapCause::OffsetJump, Some(2)));
        let mut t = Tracker::new(Some(pos(5, "e")));
        let g = t.on_subscribed("c", Some(&status(7, "x", None))).unwrap();
        assert_eq!(g.cause, GapCause::EpochChanged);
        // Nothing published meanwhile: no gap.
        let mut t = Tracker::new(Some(pos(5, "e")));
        assert_eq!(t.on_subscribed("c", Some(&status(5, "e", None))), None);
    }

    #[test]
    fn announced_losses_move_the_position_forward_only() {
        let mut t = Tracker::new(Some(pos(5, "e")));
        let g = t.on_unrecoverable("c", pos(9, "e"));
        assert_eq!((g.cause, g.missed()), (GapCause::Announced, Some(4)));
        assert_eq!(t.on_publication("c", Some(&at(10, "e"))), Verdict::Deliver);
        // Behind the client: reported, but the position stays.
        let g = t.on_unrecoverable("c", pos(3, "e"));
        assert_eq!(g.resume, pos(3, "e"));
        assert_eq!(t.position(), Some(&pos(10, "e")));
        // Another epoch: the stream goes on there.
        t.on_unrecoverable("c", pos(0, "f"));
        assert_eq!(t.recover(), Some((0, "f")));
        let mut fresh = Tracker::default();
        assert_eq!(fresh.on_unrecoverable("c", pos(2, "e")).last, None);
    }
}
