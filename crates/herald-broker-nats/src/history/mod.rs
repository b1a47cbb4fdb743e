//! Channel history in JetStream: [`History`] implements the broker's
//! `publish_with_history`, `history` and `remove_history`.
//!
//! * **Storing is publishing.** A publication with history is a JetStream
//!   publish on the channel's history subject (see [`streams`] for the
//!   stream per namespace); the stream's RePublish delivers it to the live
//!   subscribers, in stream order, with its position in the envelope.
//! * **Offsets without holes.** The publisher reads the subject's last
//!   message (a direct get), writes offset + 1 with
//!   `Nats-Expected-Last-Subject-Sequence` set to that message's stream
//!   sequence (0 for none), and on a wrong-last-sequence answer waits a
//!   random moment, reads again and retries, a bounded number of times
//!   ([`NatsOptions::history_attempts`](crate::NatsOptions)). The server
//!   accepts exactly one write per expected sequence, so two nodes can
//!   never both store offset n. A node's own publications on a channel take
//!   turns ([`slots`], which also explains why every write reads first), so
//!   retries only happen between nodes.
//! * **Epochs.** A subject without messages (never written, expired,
//!   purged) starts a new epoch. Reading the history of such a channel
//!   writes an epoch marker (offset 0), with the same race resolution, so
//!   every node sees one stable epoch before the first publication. See
//!   [`record`] for the message format and for the lost-write check.
//! * **Reads** take the subject's last message for the position, then
//!   fetch the wanted publications (see [`read`]).
//!
//! **One difference from the other brokers**: JetStream's `max_age` ages
//! each message on its own, so the history of an active channel holds at
//! most `ttl` worth of publications (the memory and Redis brokers keep the
//! last `size` publications while publications keep coming, and drop the
//! whole history `ttl` after the last one). The epoch survives as long as
//! one message does.

mod read;
pub(crate) mod record;
pub(crate) mod slots;
pub(crate) mod streams;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use bytes::Bytes;
use herald::Publication;
use herald::broker::history::new_epoch;
use herald::broker::{HistoryPage, HistoryPolicy, HistoryQuery, StreamPosition};
use serde_json::value::RawValue;

use crate::error::{StoreError, publish_error};
use crate::shared::Shared;
use record::{Last, Resolved};
use slots::Slots;
use streams::Streams;

/// Channels whose last write a node remembers (beyond that, idle ones are
/// forgotten, and the lost-write check has nothing to compare with there).
const REMEMBERED_CHANNELS: usize = 10_000;

/// The history side of a [`crate::NatsBroker`].
#[derive(Debug)]
pub(crate) struct History {
    streams: Streams,
    slots: Slots,
}

impl Default for History {
    fn default() -> Self {
        Self {
            streams: Streams::default(),
            slots: Slots::new(REMEMBERED_CHANNELS),
        }
    }
}

/// The wait before retry `attempt` (1-based) after a lost race: random
/// (so that racing nodes fall out of step), up to 0.5 ms doubling to 32 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_micros(500).saturating_mul(1 << attempt.saturating_sub(1).min(6));
    ceiling.mul_f64(rand::random_range(0.0..1.0))
}

impl History {
    /// Appends and publishes (see [`herald::Broker::publish_with_history`]).
    pub(crate) async fn publish(
        &self,
        shared: &Shared,
        channel: &str,
        data: Option<Box<RawValue>>,
        policy: &HistoryPolicy,
    ) -> Result<StreamPosition, StoreError> {
        if !shared.is_up() {
            return Err(StoreError::Unreachable);
        }
        let subject = shared.subjects.history(&policy.namespace, channel);
        let slot = self.slots.get(channel);
        let _turn = slot.write.lock().await;
        let attempts = shared.options.history_attempts.max(1);
        let mut data = data;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let stream = self
                .streams
                .ensure(shared, policy, shared.connection())
                .await?;
            let last = match self.last(shared, &stream, &subject, policy).await {
                Ok(last) => Last::of(last.as_ref()),
                Err(StoreError::NoStream(_)) => continue,
                Err(e) => return Err(e),
            };
            let resolved = record::resolve(&last, slot.wrote().as_ref());
            let (position, expected) = record::next(&resolved);
            let publication = Publication::at(channel, data.take(), Some(position.clone()));
            let headers = record::publication_headers(&position, expected);
            match self
                .write(shared, &subject, headers, publication.encode(), policy)
                .await
            {
                Ok(_) => {
                    slot.remember(position.clone());
                    shared.counted_history_publish();
                    return Ok(position);
                }
                Err(StoreError::Conflict | StoreError::NoStream(_)) => {
                    shared.counted_history_conflict();
                    data = publication.data;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Contended(attempts))
    }

    /// Reads a page (see [`herald::Broker::history`]).
    pub(crate) async fn read(
        &self,
        shared: &Shared,
        channel: &str,
        policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        if !shared.is_up() {
            return Err(StoreError::Unreachable);
        }
        let subject = shared.subjects.history(&policy.namespace, channel);
        let attempts = shared.options.history_attempts.max(1);
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let stream = self
                .streams
                .ensure(shared, policy, shared.connection())
                .await?;
            let top = match self.last(shared, &stream, &subject, policy).await {
                Ok(top) => top,
                Err(StoreError::NoStream(_)) => continue,
                Err(e) => return Err(e),
            };
            let wrote = self.slots.peek(channel).and_then(|s| s.wrote());
            let position = match record::resolve(&Last::of(top.as_ref()), wrote.as_ref()) {
                Resolved::Current { position, .. } => position,
                Resolved::Fresh { expected } => {
                    let epoch = new_epoch();
                    let headers = record::marker_headers(&epoch, expected);
                    match self
                        .write(shared, &subject, headers, Bytes::new(), policy)
                        .await
                    {
                        Ok(_) => StreamPosition::new(0, epoch),
                        // Another node wrote first: read its position.
                        Err(StoreError::Conflict | StoreError::NoStream(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            let publications = match read::wanted(query, &position, policy.size) {
                None => Vec::new(),
                Some(range) => {
                    let at = read::At {
                        stream: &stream,
                        subject,
                        channel,
                        position: &position,
                    };
                    read::publications(shared, &at, range, top).await?
                }
            };
            return Ok(HistoryPage {
                publications,
                position,
            });
        }
        Err(StoreError::Contended(attempts))
    }

    /// Drops a channel's history (see [`herald::Broker::remove_history`]).
    pub(crate) async fn remove(
        &self,
        shared: &Shared,
        channel: &str,
        policy: &HistoryPolicy,
    ) -> Result<(), StoreError> {
        if !shared.is_up() {
            return Err(StoreError::Unreachable);
        }
        let subject = shared.subjects.history(&policy.namespace, channel);
        let slot = self.slots.get(channel);
        let _turn = slot.write.lock().await;
        let stream = self
            .streams
            .ensure(shared, policy, shared.connection())
            .await?;
        let timeout = shared.options.request_timeout;
        match tokio::time::timeout(timeout, stream.purge().filter(subject)).await {
            Err(_) => {
                return Err(StoreError::Timeout {
                    what: "removing the history",
                    after: timeout,
                });
            }
            Ok(Err(e)) => return Err(StoreError::failed("removing the history", e)),
            Ok(Ok(_)) => {}
        }
        slot.forget();
        Ok(())
    }

    /// The subject's last message, if any.
    async fn last(
        &self,
        shared: &Shared,
        stream: &jetstream::stream::Stream<()>,
        subject: &str,
        policy: &HistoryPolicy,
    ) -> Result<Option<StreamMessage>, StoreError> {
        let timeout = shared.options.request_timeout;
        let got = tokio::time::timeout(timeout, stream.direct_get_last_for_subject(subject)).await;
        match got {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Ok(Err(e)) if e.kind() != DirectGetErrorKind::TimedOut => {
                Err(StoreError::failed("reading the channel's position", e))
            }
            _ => {
                // On NATS 2.9 a direct get on a missing stream goes
                // unanswered: ensure the stream again next time.
                self.streams.forget(&policy.namespace);
                Err(StoreError::Timeout {
                    what: "reading the channel's position",
                    after: timeout,
                })
            }
        }
    }

    /// A conditional write; its stream sequence.
    async fn write(
        &self,
        shared: &Shared,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
        policy: &HistoryPolicy,
    ) -> Result<u64, StoreError> {
        let timeout = shared.options.request_timeout;
        let what = "storing the publication";
        let result = async {
            let ack = shared
                .js
                .publish_with_headers(subject.to_owned(), headers, payload)
                .await?;
            ack.await
        };
        match tokio::time::timeout(timeout, result).await {
            Ok(Ok(ack)) => Ok(ack.sequence),
            Ok(Err(e)) => {
                let e = publish_error(e, what, subject, timeout);
                if matches!(e, StoreError::NoStream(_)) {
                    self.streams.forget(&policy.namespace);
                }
                Err(e)
            }
            Err(_) => Err(StoreError::Timeout {
                what,
                after: timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_random_and_bounded() {
        for attempt in 1..100 {
            assert!(backoff(attempt) <= Duration::from_millis(32));
        }
        assert!(backoff(1) <= Duration::from_micros(500));
        let waits: std::collections::HashSet<_> = (0..20).map(|_| backoff(5)).collect();
        assert!(waits.len() > 1, "random");
    }
}
