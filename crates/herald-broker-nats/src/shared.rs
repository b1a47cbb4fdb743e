//! The state a [`crate::NatsBroker`] shares with its background tasks:
//! the client, the status, the counters, and the round trip that proves the
//! server has processed everything sent before it.
//!
//! The round trip: the broker's private `<prefix>._sync.<id>` subscription,
//! on which it echoes tokens to itself. A token coming back proves the
//! server processed everything this connection sent before it (NATS
//! handles one connection's protocol in order) — the "flush" that
//! `async_nats::Client::flush` is not (that one only empties the socket
//! buffer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_nats::connection::State;
use async_nats::{Client, jetstream};
use bytes::Bytes;
use herald::broker::StreamPosition;
use herald::{BrokerError, BrokerSink, BrokerStatus, Publication};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{NAME, error};
use crate::history::record;
use crate::options::{NatsOptions, WhenDown};
use crate::subject::SubjectMap;

/// Counts of what the broker did, since it connected. Each one is also
/// exported through `herald::metrics` (see the crate documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsStats {
    /// Publications handed to NATS.
    pub published: u64,
    /// Publications received from NATS and handed to the node's sink.
    pub received: u64,
    /// Times the connection came back (status `Down` → `Up`).
    pub reconnects: u64,
    /// Publications made while NATS was unreachable: delivered to this
    /// node only ([`WhenDown::DeliverLocally`]) or nowhere
    /// ([`WhenDown::Fail`]), never to the other nodes.
    pub dropped_while_down: u64,
    /// Publications handed to NATS on a connection that then broke before a
    /// round trip confirmed them: possibly lost (an upper bound).
    pub lost_in_flight: u64,
    /// Publishes that failed while connected (timeout, payload too large,
    /// client closed).
    pub publish_failed: u64,
    /// Received messages dropped because they were not a publication frame
    /// for the subscribed channel.
    pub receive_dropped: u64,
    /// Slow-consumer reports from the NATS client (a subscription's buffer
    /// was full and a message was dropped).
    pub slow_consumer: u64,
    /// Publications stored in JetStream with history (and so delivered).
    pub history_published: u64,
    /// History writes that lost a race with another node (or found their
    /// stream missing) and were retried.
    pub history_conflicts: u64,
    /// Resyncs asked of the node: all channels after a reconnect or a slow
    /// consumer, one channel after a gap in its offsets.
    pub resyncs: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) dropped_while_down: AtomicU64,
    pub(crate) lost_in_flight: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) receive_dropped: AtomicU64,
    pub(crate) slow_consumer: AtomicU64,
    pub(crate) history_published: AtomicU64,
    pub(crate) history_conflicts: AtomicU64,
    pub(crate) resyncs: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn count_publish_error(reason: &'static str, n: u64) {
    herald::metrics::broker_publish_errors(NAME, reason, n);
}

pub(crate) fn count_receive_error(reason: &'static str) {
    herald::metrics::broker_receive_error(NAME, reason);
}

pub(crate) fn set_up_gauge(up: bool) {
    herald::metrics::broker_up(NAME, up);
}

/// Why a round trip did not complete.
#[derive(Debug)]
pub(crate) enum RoundTripError {
    /// The token could not be sent.
    Send(String),
    /// The reader stopped (the broker is shutting down).
    Closed,
}

/// State shared by the broker handle and its tasks.
pub(crate) struct Shared {
    pub(crate) client: Client,
    /// JetStream over the same connection (history and presence).
    pub(crate) js: jetstream::Context,
    /// The client's counters (its `connects` tells connections apart).
    pub(crate) client_stats: Arc<async_nats::Statistics>,
    pub(crate) options: NatsOptions,
    pub(crate) subjects: SubjectMap,
    pub(crate) sink: OnceLock<BrokerSink>,
    pub(crate) status: watch::Sender<BrokerStatus>,
    /// When the current outage began.
    pub(crate) down_since: Mutex<Option<Instant>>,
    /// The broker's own echo subject, and the round trips waiting on it.
    pub(crate) sync_subject: String,
    pub(crate) next_token: AtomicU64,
    pub(crate) pending: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    /// Wakes the confirmer after a publish.
    pub(crate) confirm: Notify,
    /// How many of the `published` publications are known to have reached
    /// the server.
    pub(crate) confirmed: AtomicU64,
    pub(crate) counters: Counters,
    pub(crate) cancel: CancellationToken,
}

impl Shared {
    /// Whether publications can go to NATS now: the monitor reported `Up`
    /// and the client has not noticed a broken connection since.
    pub(crate) fn is_up(&self) -> bool {
        *self.status.borrow() == BrokerStatus::Up
            && self.client.connection_state() == State::Connected
    }

    /// Sends a token to the broker's own echo subject and waits for it to
    /// come back: everything this connection sent before it has then been
    /// processed by the server. Unbounded: callers add their timeout.
    ///
    /// Also confirms the publications handed to the client before it, when
    /// the echo came back on the same connection: the client sends its
    /// commands in order, so they went out ahead of the token.
    pub(crate) async fn round_trip(&self) -> Result<(), RoundTripError> {
        struct Pending<'a>(&'a Shared, u64);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                self.0.pending.lock().remove(&self.1);
            }
        }

        let connection = self.client_stats.connects.load(Ordering::Relaxed);
        let published = self.counters.published.load(Ordering::Relaxed);
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(token, tx);
        let _pending = Pending(self, token);
        self.client
            .publish(self.sync_subject.clone(), Bytes::from(token.to_string()))
            .await
            .map_err(|e| RoundTripError::Send(e.to_string()))?;
        rx.await.map_err(|_| RoundTripError::Closed)?;
        if self.client_stats.connects.load(Ordering::Relaxed) == connection {
            self.confirmed.fetch_max(published, Ordering::Relaxed);
        }
        Ok(())
    }

    /// [`Shared::round_trip`] bounded by the subscribe timeout.
    pub(crate) async fn confirmed_round_trip(&self) -> Result<(), String> {
        match tokio::time::timeout(self.options.subscribe_timeout, self.round_trip()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(RoundTripError::Send(e))) => Err(format!("round trip failed: {e}")),
            Ok(Err(RoundTripError::Closed)) => Err("broker closed".to_owned()),
            Err(_) => Err(format!(
                "no round trip with the server within {:?}",
                self.options.subscribe_timeout
            )),
        }
    }

    /// Which connection the client is on (counts connects): what a node
    /// learnt about JetStream state on one connection is only trusted on
    /// the same one, since the server may have lost its store in between.
    pub(crate) fn connection(&self) -> u64 {
        self.client_stats.connects.load(Ordering::Relaxed)
    }

    /// A publication with history was stored.
    pub(crate) fn counted_history_publish(&self) {
        add(&self.counters.history_published, 1);
    }

    /// A history write lost a race and is retried.
    pub(crate) fn counted_history_conflict(&self) {
        add(&self.counters.history_conflicts, 1);
        herald::metrics::broker_history_conflict(NAME);
    }

    /// Asks the node to resync `channel` (`None`: every channel).
    pub(crate) fn resync(&self, channel: Option<&str>) {
        let Some(sink) = self.sink.get() else { return };
        add(&self.counters.resyncs, 1);
        herald::metrics::broker_resync(NAME);
        match channel {
            Some(channel) => sink.resync(channel),
            None => sink.resync_all(),
        }
    }

    /// A message arrived on `channel`'s subscription; `last` is the
    /// position of the previous publication with history delivered there
    /// (a jump within an epoch means messages were lost on the way: the
    /// channel is resynced).
    pub(crate) fn receive(
        &self,
        sink: &BrokerSink,
        channel: &str,
        message: async_nats::Message,
        last: &mut Option<StreamPosition>,
    ) {
        if record::is_marker(message.headers.as_ref()) {
            return;
        }
        match Publication::decode(&message.payload) {
            Ok(publication) if &*publication.channel == channel => {
                add(&self.counters.received, 1);
                let gap = publication
                    .position
                    .as_ref()
                    .is_some_and(|p| is_gap(last.as_ref(), p));
                if let Some(p) = &publication.position {
                    *last = Some(p.clone());
                }
                sink.deliver(Arc::new(publication));
                if gap {
                    tracing::debug!(channel, "gap in a channel's offsets: resync");
                    self.resync(Some(channel));
                }
            }
            Ok(publication) => {
                add(&self.counters.receive_dropped, 1);
                count_receive_error("wrong_channel");
                tracing::debug!(
                    channel,
                    carried = &*publication.channel,
                    "dropped a NATS message carrying another channel's publication"
                );
            }
            Err(_) => {
                add(&self.counters.receive_dropped, 1);
                count_receive_error("unparsable");
                tracing::debug!(channel, "dropped a NATS message that is not a publication");
            }
        }
    }

    /// The connection broke: report `Down` and count what was published
    /// without confirmation (some of it may still be in the client's queue
    /// and go out after the reconnect: an upper bound).
    pub(crate) fn went_down(&self, why: &str) {
        // Before the client resubscribes: a new epoch on the new connection
        // must not pass for an expired history until the resync.
        if let Some(sink) = self.sink.get() {
            sink.interrupted_all();
        }
        let published = self.counters.published.load(Ordering::Relaxed);
        let confirmed = self.confirmed.fetch_max(published, Ordering::Relaxed);
        let unconfirmed = published.saturating_sub(confirmed);
        if unconfirmed > 0 {
            add(&self.counters.lost_in_flight, unconfirmed);
            count_publish_error("in_flight", unconfirmed);
        }
        let changed = self.status.send_if_modified(|status| {
            std::mem::replace(status, BrokerStatus::Down) == BrokerStatus::Up
        });
        if changed {
            set_up_gauge(false);
            *self.down_since.lock() = Some(Instant::now());
            if !self.cancel.is_cancelled() {
                tracing::warn!(
                    broker = NAME,
                    reason = why,
                    possibly_lost = unconfirmed,
                    "NATS broker down: serving this node's channels only, reconnecting"
                );
            }
        }
    }

    /// The connection is back and its subscriptions are live again.
    pub(crate) fn went_up(&self) {
        // Count before the new status is visible to anyone waiting on it.
        let changed = self.status.send_if_modified(|status| {
            if *status == BrokerStatus::Down {
                add(&self.counters.reconnects, 1);
                *status = BrokerStatus::Up;
                true
            } else {
                false
            }
        });
        if changed {
            set_up_gauge(true);
            herald::metrics::broker_reconnected(NAME);
            let down_for = self.down_since.lock().take().map(|t| t.elapsed());
            tracing::info!(
                broker = NAME,
                down_for = ?down_for,
                "NATS broker up again: subscriptions restored"
            );
        }
    }

    /// A publication that cannot go to NATS now.
    pub(crate) fn publish_while_down(
        &self,
        publication: Arc<Publication>,
    ) -> Result<(), BrokerError> {
        add(&self.counters.dropped_while_down, 1);
        count_publish_error("down", 1);
        match self.options.when_down {
            WhenDown::DeliverLocally => {
                let sink = self
                    .sink
                    .get()
                    .ok_or_else(|| error("broker used before start"))?;
                tracing::debug!(
                    channel = &*publication.channel,
                    "NATS is down: publication delivered on this node only"
                );
                sink.deliver(publication);
                Ok(())
            }
            WhenDown::Fail => Err(error(format!(
                "NATS is unreachable: publication on {} dropped",
                publication.channel
            ))),
        }
    }

    pub(crate) fn stats(&self) -> NatsStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NatsStats {
            published: get(&c.published),
            received: get(&c.received),
            reconnects: get(&c.reconnects),
            dropped_while_down: get(&c.dropped_while_down),
            lost_in_flight: get(&c.lost_in_flight),
            publish_failed: get(&c.publish_failed),
            receive_dropped: get(&c.receive_dropped),
            slow_consumer: get(&c.slow_consumer),
            history_published: get(&c.history_published),
            history_conflicts: get(&c.history_conflicts),
            resyncs: get(&c.resyncs),
        }
    }
}

/// Whether `next` skips offsets after `last` in the same epoch.
pub(crate) fn is_gap(last: Option<&StreamPosition>, next: &StreamPosition) -> bool {
    last.is_some_and(|l| l.epoch == next.epoch && next.offset > l.offset.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_jumps_within_an_epoch() {
        let p = |o, e: &str| StreamPosition::new(o, e);
        assert!(!is_gap(None, &p(5, "e")), "nothing to compare with");
        assert!(!is_gap(Some(&p(4, "e")), &p(5, "e")));
        assert!(is_gap(Some(&p(4, "e")), &p(6, "e")));
        assert!(!is_gap(Some(&p(4, "e")), &p(1, "f")), "a new epoch");
        assert!(!is_gap(Some(&p(9, "e")), &p(3, "e")), "behind: not a gap");
        assert!(!is_gap(Some(&p(u64::MAX, "e")), &p(u64::MAX, "e")));
    }
}
