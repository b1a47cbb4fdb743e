//! The notice that publications on a channel were lost for good.
//!
//! On a channel with history every publication carries its place in the
//! channel's stream (an offset and an epoch, see [`StreamPosition`]), and the
//! client recovers what it missed while disconnected by resubscribing from
//! the last position it saw. When that cannot work (the history is too short
//! or gone, the server says so, or the offsets the client receives jump) the
//! application is told once, with what is known, as a [`StreamGap`]: a
//! non-terminal item on the channel's [`crate::Subscription`]s
//! ([`crate::SubscriptionError::Gap`]) and a [`crate::ClientEvent::Gap`].
//! The stream goes on after the gap; an application that must not miss
//! anything reloads the channel's state from its own source of truth.
//!
//! Kept apart from the subscription stream because the same type is carried
//! by the event stream, and its arithmetic ([`StreamGap::missed`]) is
//! unit-tested on its own.

use herald_protocol::ext::StreamPosition;

/// Why a [`StreamGap`] was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GapCause {
    /// The client asked to recover from its last position and the server
    /// answered `recovered: false`: the history no longer reaches back that
    /// far, or it was lost (a new epoch). Nothing from history was sent.
    NotRecovered,
    /// The server announced the loss (`#herald/unrecoverable`), e.g. its
    /// broker dropped publications it could not store.
    Announced,
    /// The client saw the offsets jump within an epoch: a publication (or
    /// the top of the stream in a subscribe reply) came after a hole.
    OffsetJump,
    /// The stream's epoch changed without a recovery: the channel's history
    /// was lost and started over.
    EpochChanged,
}

/// Publications on a channel were lost and will not be delivered.
///
/// The stream goes on after [`StreamGap::resume`]: the next publication
/// delivered has offset `resume.offset + 1` in `resume.epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamGap {
    /// The channel.
    pub channel: String,
    /// How the loss was detected.
    pub cause: GapCause,
    /// Where the client stood before the gap (the last publication it
    /// received, or the position it subscribed from), when it knew.
    pub last: Option<StreamPosition>,
    /// Where the stream goes on from.
    pub resume: StreamPosition,
}

impl StreamGap {
    pub(crate) fn new(
        channel: &str,
        cause: GapCause,
        last: Option<StreamPosition>,
        resume: StreamPosition,
    ) -> Self {
        Self {
            channel: channel.to_owned(),
            cause,
            last,
            resume,
        }
    }

    /// How many publications were lost, when the count is known: both
    /// positions are in the same epoch. `None` after an epoch change (the
    /// old stream's tail is unknown) or without a previous position.
    pub fn missed(&self) -> Option<u64> {
        let last = self.last.as_ref()?;
        if last.epoch != self.resume.epoch {
            return None;
        }
        self.resume.offset.checked_sub(last.offset)
    }
}

impl std::fmt::Display for StreamGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cause = match self.cause {
            GapCause::NotRecovered => "could not be recovered",
            GapCause::Announced => "were lost (announced by the server)",
            GapCause::OffsetJump => "are missing (offsets jumped)",
            GapCause::EpochChanged => "were lost (the stream's epoch changed)",
        };
        match self.missed() {
            Some(n) => write!(f, "{n} publications on {} {cause}", self.channel)?,
            None => write!(f, "publications on {} {cause}", self.channel)?,
        }
        write!(
            f,
            "; the stream goes on after offset {} of epoch {}",
            self.resume.offset, self.resume.epoch
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition::new(offset, epoch)
    }

    #[test]
    fn missed_counts_only_within_one_epoch() {
        let g = StreamGap::new("c", GapCause::OffsetJump, Some(at(4, "e")), at(9, "e"));
        assert_eq!(g.missed(), Some(5));
        let g = StreamGap::new("c", GapCause::EpochChanged, Some(at(4, "e")), at(9, "f"));
        assert_eq!(g.missed(), None);
        let g = StreamGap::new("c", GapCause::Announced, None, at(9, "e"));
        assert_eq!(g.missed(), None);
        // A server announcing a loss behind the client: no count, no panic.
        let g = StreamGap::new("c", GapCause::Announced, Some(at(9, "e")), at(3, "e"));
        assert_eq!(g.missed(), None);
    }

    #[test]
    fn displays_what_is_known() {
        let g = StreamGap::new("chat", GapCause::NotRecovered, Some(at(4, "e")), at(9, "e"));
        assert_eq!(
            g.to_string(),
            "5 publications on chat could not be recovered; the stream goes on after offset 9 of epoch e"
        );
        let g = StreamGap::new("chat", GapCause::EpochChanged, Some(at(4, "e")), at(0, "f"));
        assert!(g.to_string().starts_with("publications on chat were lost"));
    }
}
