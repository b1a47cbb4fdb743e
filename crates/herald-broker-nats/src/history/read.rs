//! Fetching the publications a history read wants, once the channel's
//! position is known.
//!
//! [`wanted`] turns the query into a range of offsets: after `since` (same
//! epoch only) or the latest `limit`, never more than the policy's `size`
//! latest (the subject keeps one more message, for the epoch marker).
//!
//! Two ways to fetch them, both returning only messages of the position's
//! epoch in the range, oldest first:
//!
//! * **walking back** from the last message, one direct get per step:
//!   every publication names the stream sequence of the subject's previous
//!   message (`Herald-Previous`, the sequence its write expected), so a
//!   short tail — a client that missed a few publications, the latest ten
//!   on subscribe — costs a few round trips and nothing on the server;
//! * **scanning** the subject with an ephemeral consumer ([`crate::scan`]):
//!   for longer ranges, or when the walk meets something unexpected (an
//!   expired message, a marker, another epoch). NATS 2.9 cannot start a
//!   filtered consumer at "the n-th last message of a subject", so the scan
//!   reads every message the subject keeps (at most `size + 1`) and keeps
//!   the range.

use std::sync::Arc;

use async_nats::jetstream::{self, consumer, message::StreamMessage, stream::DirectGetErrorKind};
use herald::Publication;
use herald::broker::{HistoryQuery, StreamPosition};

use super::record;
use crate::error::StoreError;
use crate::scan::{Flow, scan};
use crate::shared::Shared;

/// The longest range fetched by walking back (direct gets) rather than
/// with a consumer.
const WALK_MAX: u64 = 16;

/// The offsets a read returns: those in `(after, upto]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    after: u64,
    upto: u64,
}

/// Which offsets `query` wants from a stream at `position` that keeps
/// `size` publications, or `None` for none.
pub(crate) fn wanted(
    query: &HistoryQuery,
    position: &StreamPosition,
    size: usize,
) -> Option<Range> {
    let top = position.offset;
    let limit = query.limit as u64;
    if limit == 0 || top == 0 {
        return None;
    }
    let kept_after = top.saturating_sub(size.max(1) as u64);
    let range = match &query.since {
        Some(since) if since.epoch != position.epoch => return None,
        Some(since) => {
            let after = since.offset.max(kept_after);
            Range {
                after,
                upto: top.min(after.saturating_add(limit)),
            }
        }
        None => Range {
            after: kept_after.max(top.saturating_sub(limit)),
            upto: top,
        },
    };
    (range.after < range.upto).then_some(range)
}

/// Where a read happens.
pub(crate) struct At<'a> {
    /// The namespace's stream.
    pub(crate) stream: &'a jetstream::stream::Stream<()>,
    /// The channel's history subject.
    pub(crate) subject: String,
    /// The channel.
    pub(crate) channel: &'a str,
    /// The channel's position (the last message's, or a marker's).
    pub(crate) position: &'a StreamPosition,
}

/// The publication a stored message holds, if it is one of `channel`'s,
/// in `position`'s epoch, in `range`.
fn keep(
    position: &StreamPosition,
    channel: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    range: Range,
) -> Option<Publication> {
    let at = headers.and_then(record::position_of)?;
    if at.epoch != position.epoch || at.offset <= range.after || at.offset > range.upto {
        return None;
    }
    match Publication::decode(payload) {
        Ok(p) if &*p.channel == channel && p.position.as_ref() == Some(&at) => Some(p),
        _ => {
            tracing::debug!(
                channel,
                offset = at.offset,
                "skipped a corrupt history message"
            );
            None
        }
    }
}

/// The publications of `range` (`top`: the subject's last message, when
/// the position came from one).
pub(crate) async fn publications(
    shared: &Shared,
    at: &At<'_>,
    range: Range,
    top: Option<StreamMessage>,
) -> Result<Vec<Arc<Publication>>, StoreError> {
    if let Some(top) = top
        && at.position.offset - range.after <= WALK_MAX
        && let Some(found) = walk(shared, at, range, top).await?
    {
        return Ok(found);
    }
    scan_range(shared, at, range).await
}

/// Walks back from `top` to the first offset of `range`; `None` when the
/// chain breaks (then the caller scans).
async fn walk(
    shared: &Shared,
    at: &At<'_>,
    range: Range,
    top: StreamMessage,
) -> Result<Option<Vec<Arc<Publication>>>, StoreError> {
    let timeout = shared.options.request_timeout;
    let mut out = Vec::new();
    let mut current = top;
    let mut expect = at.position.offset;
    loop {
        let here = record::position_of(&current.headers);
        let in_chain = current.subject.as_str() == at.subject
            && here
                .as_ref()
                .is_some_and(|p| p.epoch == at.position.epoch && p.offset == expect);
        if !in_chain {
            return Ok(None);
        }
        if expect <= range.upto {
            match keep(
                at.position,
                at.channel,
                Some(&current.headers),
                &current.payload,
                range,
            ) {
                Some(p) => out.push(Arc::new(p)),
                None => return Ok(None),
            }
        }
        if expect == range.after + 1 {
            break;
        }
        let previous = match record::previous_of(&current.headers) {
            Some(seq) if seq > 0 && seq < current.sequence => seq,
            _ => return Ok(None),
        };
        current = match tokio::time::timeout(timeout, at.stream.direct_get(previous)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
            Ok(Err(e)) => return Err(StoreError::failed("reading history", e)),
            Err(_) => {
                return Err(StoreError::Timeout {
                    what: "reading history",
                    after: timeout,
                });
            }
        };
        expect -= 1;
    }
    out.reverse();
    Ok(Some(out))
}

/// Scans the subject for `range`.
async fn scan_range(
    shared: &Shared,
    at: &At<'_>,
    range: Range,
) -> Result<Vec<Arc<Publication>>, StoreError> {
    let mut out = Vec::new();
    let timeout = shared.options.request_timeout;
    let scanned = scan(
        at.stream,
        at.subject.clone(),
        consumer::DeliverPolicy::All,
        timeout,
        |m| {
            if let Some(p) = keep(
                at.position,
                at.channel,
                m.headers.as_ref(),
                &m.payload,
                range,
            ) {
                let last = p.position.as_ref().is_some_and(|q| q.offset == range.upto);
                out.push(Arc::new(p));
                if last {
                    return Flow::Stop;
                }
            }
            Flow::Continue
        },
    )
    .await;
    match scanned {
        Ok(()) => Ok(out),
        Err(StoreError::NoStream(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(since: Option<(u64, &str)>, limit: usize) -> HistoryQuery {
        HistoryQuery {
            since: since.map(|(o, e)| StreamPosition::new(o, e)),
            limit,
        }
    }

    fn r(after: u64, upto: u64) -> Option<Range> {
        Some(Range { after, upto })
    }

    #[test]
    fn reads_want_the_right_offsets() {
        let top = StreamPosition::new(8, "e");
        // Latest, capped by size 5: offsets 4..=8.
        assert_eq!(wanted(&q(None, 100), &top, 5), r(3, 8));
        assert_eq!(wanted(&q(None, 2), &top, 5), r(6, 8));
        // Since: after the given offset, at most `limit`, within the size.
        assert_eq!(wanted(&q(Some((5, "e")), 100), &top, 5), r(5, 8));
        assert_eq!(wanted(&q(Some((4, "e")), 2), &top, 5), r(4, 6));
        assert_eq!(wanted(&q(Some((2, "e")), 100), &top, 5), r(3, 8));
        // Nothing to read.
        assert_eq!(wanted(&q(Some((8, "e")), 100), &top, 5), None);
        assert_eq!(wanted(&q(Some((9, "e")), 100), &top, 5), None);
        assert_eq!(wanted(&q(Some((4, "x")), 100), &top, 5), None);
        assert_eq!(wanted(&q(None, 0), &top, 5), None);
        assert_eq!(wanted(&q(None, 10), &StreamPosition::new(0, "e"), 5), None);
        // Huge numbers do not overflow.
        let far = StreamPosition::new(u64::MAX, "e");
        assert_eq!(
            wanted(&q(Some((u64::MAX - 3, "e")), usize::MAX), &far, usize::MAX),
            r(u64::MAX - 3, u64::MAX)
        );
    }

    #[test]
    fn only_this_channels_publications_of_the_epoch_in_range_are_kept() {
        let top = StreamPosition::new(8, "e");
        let range = Range { after: 3, upto: 8 };
        let check = |position: StreamPosition, channel: &str| {
            let headers = record::publication_headers(&position, 0);
            let payload = Publication::at(channel, None, Some(position)).encode();
            keep(&top, "c", Some(&headers), &payload, range).is_some()
        };
        assert!(check(StreamPosition::new(5, "e"), "c"));
        assert!(check(StreamPosition::new(8, "e"), "c"));
        assert!(!check(StreamPosition::new(3, "e"), "c"), "before");
        assert!(!check(StreamPosition::new(9, "e"), "c"), "after");
        assert!(!check(StreamPosition::new(5, "x"), "c"), "epoch");
        assert!(!check(StreamPosition::new(5, "e"), "other"), "channel");
        // Headers and envelope disagree, or no headers: skipped.
        let headers = record::publication_headers(&StreamPosition::new(5, "e"), 0);
        let payload = Publication::at("c", None, Some(StreamPosition::new(6, "e"))).encode();
        assert!(keep(&top, "c", Some(&headers), &payload, range).is_none());
        assert!(keep(&top, "c", None, &payload, range).is_none());
        assert!(keep(&top, "c", Some(&headers), b"junk", range).is_none());
    }
}
