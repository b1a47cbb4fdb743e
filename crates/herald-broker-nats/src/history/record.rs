//! What a history subject holds, and how the next offset is chosen.
//!
//! Every message on a channel's history subject carries its place in the
//! channel's stream in two headers, `Herald-Epoch` and `Herald-Offset`, so
//! that a publisher learns the channel's position from the subject's last
//! message without parsing its payload. Two kinds of message:
//!
//! * a **publication**: the payload is the publication's envelope
//!   ([`herald::Publication::encode`], position included), which the
//!   stream's RePublish hands to the live subscribers as is;
//! * an **epoch marker** (`Herald-Kind: epoch`, offset 0, empty payload):
//!   written when a channel's history is read before anything was
//!   published, so that every node sees the same epoch at offset 0. Markers
//!   are skipped by reads and by the live path.
//!
//! The next position is decided by [`resolve`] from the subject's last
//! message and from what this node itself last wrote there: offsets only
//! count up within an epoch, so a last message *behind* what this node
//! wrote means the server lost acknowledged messages (a store restored, or
//! a crash before they reached the disk), and reusing those offsets would
//! hand clients different publications under offsets they already have.
//! The channel then starts a new epoch.

use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use herald::broker::StreamPosition;
use herald::broker::history::new_epoch;

/// The header holding a message's epoch.
pub(crate) const EPOCH: &str = "Herald-Epoch";
/// The header holding a message's offset (0 for a marker).
pub(crate) const OFFSET: &str = "Herald-Offset";
/// The header marking an epoch marker (value [`MARKER`]).
pub(crate) const KIND: &str = "Herald-Kind";
/// The value of [`KIND`] on an epoch marker.
pub(crate) const MARKER: &str = "epoch";
/// The header holding the stream sequence of the subject's previous
/// message (the one the write expected): the subject's messages form a
/// list backwards, which short reads follow.
pub(crate) const PREVIOUS: &str = "Herald-Previous";
/// JetStream's optimistic-concurrency header.
const EXPECTED: &str = "Nats-Expected-Last-Subject-Sequence";

/// Whether a message (its headers) is an epoch marker.
pub(crate) fn is_marker(headers: Option<&HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get(KIND))
        .is_some_and(|v| v.as_str() == MARKER)
}

/// The headers of a publication stored at `position`, accepted only if the
/// subject's last message has stream sequence `expected` (0: none).
pub(crate) fn publication_headers(position: &StreamPosition, expected: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(EXPECTED, expected.to_string().as_str());
    headers.insert(PREVIOUS, expected.to_string().as_str());
    headers.insert(EPOCH, &*position.epoch);
    headers.insert(OFFSET, position.offset.to_string().as_str());
    headers
}

/// The headers of an epoch marker for `epoch`, likewise conditional.
pub(crate) fn marker_headers(epoch: &str, expected: u64) -> HeaderMap {
    let mut headers = publication_headers(&StreamPosition::new(0, epoch), expected);
    headers.insert(KIND, MARKER);
    headers
}

/// A history subject's last message, as far as the next offset goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Last {
    /// The subject holds nothing (never written, expired, purged).
    Empty,
    /// A publication or a marker at `position`, stream sequence `seq`.
    At {
        /// Its place in the channel's stream (offset 0 for a marker).
        position: StreamPosition,
        /// Its stream sequence.
        seq: u64,
    },
    /// A message without (valid) Herald headers, at stream sequence `seq`:
    /// not written by a broker. Treated as the end of an unknown history.
    Foreign {
        /// Its stream sequence.
        seq: u64,
    },
}

impl Last {
    /// What a subject's last message (if any) says.
    pub(crate) fn of(message: Option<&StreamMessage>) -> Last {
        match message {
            None => Last::Empty,
            Some(m) => Last::at(&m.headers, m.sequence),
        }
    }

    /// Reads a stored message's headers.
    pub(crate) fn at(headers: &HeaderMap, seq: u64) -> Last {
        position_of(headers).map_or(Last::Foreign { seq }, |position| Last::At { position, seq })
    }
}

/// The stream sequence of the message before this one on its subject (a
/// publication's [`PREVIOUS`] header; 0 for the first).
pub(crate) fn previous_of(headers: &HeaderMap) -> Option<u64> {
    headers.get(PREVIOUS)?.as_str().parse().ok()
}

/// The position a stored message's headers name, if valid.
pub(crate) fn position_of(headers: &HeaderMap) -> Option<StreamPosition> {
    let epoch = headers.get(EPOCH)?.as_str();
    let offset: u64 = headers.get(OFFSET)?.as_str().parse().ok()?;
    let valid_epoch = !epoch.is_empty()
        && epoch.len() <= 64
        && epoch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid_epoch.then(|| StreamPosition::new(offset, epoch))
}

/// Where a channel's stream stands, for the next write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The stream goes on from `position` (stream sequence `seq`).
    Current {
        /// The latest position (offset 0: only a marker so far).
        position: StreamPosition,
        /// The stream sequence of the message holding it.
        seq: u64,
    },
    /// The stream starts again in a new epoch; the write must expect
    /// stream sequence `expected` as the subject's last.
    Fresh {
        /// The subject's last stream sequence (0: none).
        expected: u64,
    },
}

/// Decides from the subject's `last` message and what this node `wrote`
/// there last (if it remembers) whether the stream goes on or starts a new
/// epoch (see the module documentation).
pub(crate) fn resolve(last: &Last, wrote: Option<&StreamPosition>) -> Resolved {
    match last {
        Last::Empty => Resolved::Fresh { expected: 0 },
        Last::Foreign { seq } => Resolved::Fresh { expected: *seq },
        Last::At { position, seq } => {
            let lost =
                wrote.is_some_and(|w| w.epoch == position.epoch && w.offset > position.offset);
            if lost {
                Resolved::Fresh { expected: *seq }
            } else {
                Resolved::Current {
                    position: position.clone(),
                    seq: *seq,
                }
            }
        }
    }
}

/// The next publication's position and expected last sequence.
pub(crate) fn next(resolved: &Resolved) -> (StreamPosition, u64) {
    match resolved {
        Resolved::Current { position, seq } => (
            StreamPosition::new(position.offset + 1, position.epoch.clone()),
            *seq,
        ),
        Resolved::Fresh { expected } => (StreamPosition::new(1, new_epoch()), *expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, epoch: &str, seq: u64) -> Last {
        Last::At {
            position: StreamPosition::new(offset, epoch),
            seq,
        }
    }

    #[test]
    fn headers_round_trip_and_markers_are_told_apart() {
        let p = StreamPosition::new(7, "Ep0_-x");
        let h = publication_headers(&p, 41);
        assert_eq!(Last::at(&h, 42), at(7, "Ep0_-x", 42));
        assert_eq!(previous_of(&h), Some(41));
        assert_eq!(Last::of(None), Last::Empty);
        assert!(!is_marker(Some(&h)));
        assert_eq!(
            h.get("Nats-Expected-Last-Subject-Sequence")
                .map(|v| v.as_str()),
            Some("41")
        );
        let m = marker_headers("E", 0);
        assert!(is_marker(Some(&m)));
        assert_eq!(Last::at(&m, 3), at(0, "E", 3));
        assert!(!is_marker(None));
    }

    #[test]
    fn foreign_messages_have_no_position() {
        let mut h = HeaderMap::new();
        assert_eq!(Last::at(&h, 5), Last::Foreign { seq: 5 });
        h.insert(EPOCH, "e");
        h.insert(OFFSET, "-1");
        assert_eq!(Last::at(&h, 5), Last::Foreign { seq: 5 });
        let mut h = HeaderMap::new();
        h.insert(EPOCH, "a|b");
        h.insert(OFFSET, "1");
        assert_eq!(Last::at(&h, 5), Last::Foreign { seq: 5 }, "not an epoch");
    }

    #[test]
    fn the_stream_goes_on_from_its_last_message() {
        let r = resolve(&at(4, "e", 90), None);
        let (pos, expected) = next(&r);
        assert_eq!((pos, expected), (StreamPosition::new(5, "e"), 90));
        // What this node wrote is behind or equal: nothing was lost.
        let mine = StreamPosition::new(4, "e");
        assert!(matches!(
            resolve(&at(4, "e", 90), Some(&mine)),
            Resolved::Current { .. }
        ));
        let older = StreamPosition::new(2, "e");
        assert!(matches!(
            resolve(&at(4, "e", 90), Some(&older)),
            Resolved::Current { .. }
        ));
        // Another epoch since (removed, expired): go on in that one.
        let other = StreamPosition::new(9, "old");
        assert!(matches!(
            resolve(&at(1, "e", 90), Some(&other)),
            Resolved::Current { .. }
        ));
        // A marker: the first publication is offset 1 of its epoch.
        let (pos, expected) = next(&resolve(&at(0, "m", 3), None));
        assert_eq!((pos, expected), (StreamPosition::new(1, "m"), 3));
    }

    #[test]
    fn empty_foreign_or_lost_history_starts_a_new_epoch() {
        let (pos, expected) = next(&resolve(&Last::Empty, None));
        assert_eq!((pos.offset, expected), (1, 0));
        let (pos2, _) = next(&resolve(&Last::Empty, None));
        assert_ne!(pos.epoch, pos2.epoch, "a new epoch each time");
        assert_eq!(
            resolve(&Last::Foreign { seq: 8 }, None),
            Resolved::Fresh { expected: 8 }
        );
        // This node wrote offset 6, the store's last is 4 in the same
        // epoch: offsets 5 and 6 were lost, so they must not be reused.
        let mine = StreamPosition::new(6, "e");
        assert_eq!(
            resolve(&at(4, "e", 70), Some(&mine)),
            Resolved::Fresh { expected: 70 }
        );
        let (pos, expected) = next(&Resolved::Fresh { expected: 70 });
        assert_eq!((pos.offset, expected), (1, 70));
        assert_ne!(&*pos.epoch, "e");
    }
}
