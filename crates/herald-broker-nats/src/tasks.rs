//! The broker's background tasks, all stopped by one cancellation token (on
//! [`shutdown`](herald::Broker::shutdown) or when the broker is dropped):
//!
//! * one **forwarder per channel subscription**: reads the NATS subscription
//!   in order, rebuilds each [`Publication`](herald::Publication) from its
//!   envelope and hands it to the node's sink (so each channel keeps its
//!   order); skips epoch markers, and asks for a resync of the channel when
//!   the offsets of its history jump;
//! * the **round-trip reader**: completes [`Shared::round_trip`]s;
//! * the **monitor**: turns the client's connection events into
//!   [`BrokerStatus`], logs and metrics; after a reconnect it reports `Up`
//!   only once a round trip proves the resubscriptions are in place, then
//!   asks the node to resync every channel (what was published meanwhile
//!   is in the history, not on the wire); after slow-consumer reports it
//!   asks for a resync too, once per burst;
//! * the **confirmer**: at most every `confirm_interval` while publications
//!   flow, a round trip that marks everything sent so far as received by the
//!   server. At a disconnect, whatever was sent but not confirmed is counted
//!   as possibly lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{Event, Subscriber};
use futures_util::StreamExt;
use herald::{BrokerSink, BrokerStatus};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::NAME;
use crate::shared::{Shared, add, count_receive_error};

/// How long slow-consumer reports are gathered into one resync.
const SLOW_CONSUMER_SETTLE: Duration = Duration::from_millis(50);

/// One channel's subscription: its forwarder task and how to stop it.
pub(crate) struct ChannelTask {
    pub(crate) stop: CancellationToken,
    pub(crate) task: JoinHandle<()>,
}

impl ChannelTask {
    /// Stops forwarding (no delivery happens after this returns) and
    /// unsubscribes.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(broker = NAME, "a NATS channel forwarder panicked");
        }
    }
}

/// Forwards one channel's messages to the sink, in order, until stopped.
pub(crate) async fn forward(
    shared: Arc<Shared>,
    sink: BrokerSink,
    channel: Arc<str>,
    mut subscriber: Subscriber,
    stop: CancellationToken,
) {
    let mut last = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => shared.receive(&sink, &channel, message, &mut last),
                None => break,
            },
        }
    }
    // Dropping the subscriber unsubscribes too, but only as best effort;
    // wait (bounded) for the UNSUB to be queued.
    let _ = tokio::time::timeout(shared.options.subscribe_timeout, subscriber.unsubscribe()).await;
}

/// Completes round trips: reads the broker's echo subject.
pub(crate) async fn read_round_trips(shared: Arc<Shared>, mut sync: Subscriber) {
    loop {
        let message = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            message = sync.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let token = std::str::from_utf8(&message.payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(token) = token
            && let Some(waiter) = shared.pending.lock().remove(&token)
        {
            let _ = waiter.send(());
        }
    }
    // Fail every waiting round trip.
    shared.pending.lock().clear();
}

type Confirmation = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Turns connection events into status, logs and metrics.
pub(crate) async fn monitor(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Event>) {
    // After a reconnect: the round trip that proves the resubscriptions
    // (queued by the client ahead of anything else) are in place.
    let mut confirming: Option<Confirmation> = None;
    // After slow-consumer reports: when to ask for a resync.
    let mut resync_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            () = async { confirming.as_mut().expect("guarded").await }, if confirming.is_some() => {
                confirming = None;
                shared.went_up();
                // Publications with history made while this node was away
                // are in the streams: let the node fetch them.
                shared.resync(None);
            }
            () = async { tokio::time::sleep_until(resync_at.expect("guarded")).await }, if resync_at.is_some() => {
                resync_at = None;
                shared.resync(None);
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    Event::Disconnected => {
                        confirming = None;
                        shared.went_down("disconnected");
                    }
                    Event::Closed => {
                        confirming = None;
                        shared.went_down("connection closed");
                    }
                    Event::Connected => {
                        if *shared.status.borrow() == BrokerStatus::Down {
                            let shared = shared.clone();
                            confirming = Some(Box::pin(async move {
                                while let Err(e) = shared.confirmed_round_trip().await {
                                    tracing::debug!(
                                        broker = NAME,
                                        error = %e,
                                        "reconnected, resubscriptions not confirmed yet"
                                    );
                                    tokio::time::sleep(shared.options.reconnect_min_delay).await;
                                }
                            }));
                        }
                    }
                    Event::SlowConsumer(sid) => {
                        add(&shared.counters.slow_consumer, 1);
                        count_receive_error("slow_consumer");
                        tracing::warn!(broker = NAME, sid, "NATS slow consumer: a message was dropped");
                        resync_at.get_or_insert_with(|| tokio::time::Instant::now() + SLOW_CONSUMER_SETTLE);
                    }
                    Event::LameDuckMode => {
                        tracing::info!(broker = NAME, "NATS server entering lame duck mode");
                    }
                    Event::ServerError(e) => {
                        tracing::warn!(broker = NAME, error = %e, "NATS server error");
                    }
                    Event::ClientError(e) => {
                        // Failed reconnect attempts land here, once each.
                        tracing::debug!(broker = NAME, error = %e, "NATS client error");
                    }
                    Event::Draining => {}
                }
            }
        }
    }
}

/// Confirms, at most every `confirm_interval` while publications flow, that
/// what was published reached the server.
pub(crate) async fn confirm_writes(shared: Arc<Shared>) {
    let mut status = shared.status.subscribe();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = shared.confirm.notified() => {}
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            up = async { status.wait_for(|s| *s == BrokerStatus::Up).await.map(|_| ()) } => {
                if up.is_err() {
                    return;
                }
            }
        }
        let published = shared.counters.published.load(Ordering::Relaxed);
        if published > shared.confirmed.load(Ordering::Relaxed) {
            // Confirms on success (see `round_trip`).
            let _ = shared.confirmed_round_trip().await;
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(shared.options.confirm_interval) => {}
        }
    }
}
