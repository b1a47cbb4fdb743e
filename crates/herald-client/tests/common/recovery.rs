//! What a client should see on a channel with history, checked through the
//! public API only, so the same checks serve against the scripted server
//! (`tests/herald_ext.rs`) and, once it implements the extension, against
//! Herald itself.

use futures_util::StreamExt as _;
use herald_client::{ClientEvent, Events, GapCause, StreamGap, Subscription, SubscriptionError};
use serde_json::Value;

use super::{wait_event, within};

/// The next publications must be exactly these `(offset, data)`, in order.
pub async fn expect_publications(sub: &mut Subscription, want: &[(u64, Value)]) {
    for (offset, data) in want {
        match within(
            &format!("publication {offset} on {}", sub.channel()),
            sub.next(),
        )
        .await
        {
            Some(Ok(p)) => {
                assert_eq!(
                    (p.offset(), &p.data),
                    (Some(*offset), data),
                    "on {}",
                    sub.channel()
                );
                assert_eq!(
                    sub.position().map(|p| p.offset),
                    Some(*offset),
                    "the stream's position follows what it yields"
                );
            }
            other => panic!(
                "expected publication {offset} on {}, got {other:?}",
                sub.channel()
            ),
        }
    }
}

/// The next item must be a gap notice of `cause`.
pub async fn expect_gap(sub: &mut Subscription, cause: GapCause) -> StreamGap {
    match within(&format!("a gap on {}", sub.channel()), sub.next()).await {
        Some(Err(SubscriptionError::Gap(gap))) => {
            assert_eq!(gap.cause, cause, "{gap:?}");
            assert_eq!(gap.channel, sub.channel());
            assert_eq!(sub.position(), Some(&gap.resume));
            gap
        }
        other => panic!("expected a gap on {}, got {other:?}", sub.channel()),
    }
}

/// The next [`ClientEvent::Gap`] on `channel` (other events are skipped).
pub async fn wait_gap_event(events: &mut Events, channel: &str) -> StreamGap {
    match wait_event(
        events,
        "a gap event",
        |e| matches!(e, ClientEvent::Gap(g) if g.channel == channel),
    )
    .await
    {
        ClientEvent::Gap(g) => g,
        _ => unreachable!(),
    }
}

/// Nothing is waiting on the stream now (no late duplicate, no gap).
pub fn expect_nothing_queued(sub: &mut Subscription) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match sub.poll_next_unpin(&mut cx) {
        std::task::Poll::Pending => {}
        std::task::Poll::Ready(item) => {
            panic!("nothing expected on {}, got {item:?}", sub.channel())
        }
    }
}

/// The events already queued on `events`, without waiting.
pub fn queued_events(events: &mut Events) -> Vec<ClientEvent> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Some(e)) = events.poll_next_unpin(&mut cx) {
        out.push(e);
    }
    out
}
