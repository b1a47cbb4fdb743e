//! [`NatsBroker`]: the [`Broker`] implementation and its background tasks.
//!
//! Tasks, all stopped by one cancellation token (on
//! [`shutdown`](Broker::shutdown) or when the broker is dropped):
//!
//! * one **forwarder per channel subscription**: reads the NATS subscription
//!   in order, rebuilds each [`Publication`] from its frame and hands it to
//!   the node's [`BrokerSink`] (so each channel keeps its order);
//! * the **round-trip reader**: the broker's private `<prefix>._sync.<id>`
//!   subscription, on which it echoes tokens to itself. A token coming back
//!   proves the server processed everything this connection sent before it
//!   (NATS handles one connection's protocol in order) — the "flush" that
//!   `async_nats::Client::flush` is not (that one only empties the socket
//!   buffer);
//! * the **monitor**: turns the client's connection events into
//!   [`BrokerStatus`], logs and metrics, and after a reconnect reports `Up`
//!   only once a round trip proves the resubscriptions are in place;
//! * the **confirmer**: at most every `confirm_interval` while publications
//!   flow, a round trip that marks everything sent so far as received by the
//!   server. At a disconnect, whatever was sent but not confirmed is counted
//!   as possibly lost.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use herald::{Broker, BrokerError, BrokerSink, BrokerStatus, Publication};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::options::{NatsOptions, WhenDown, redact};
use crate::subject::SubjectMap;

const NAME: &str = "nats";

fn error(message: impl Into<String>) -> BrokerError {
    BrokerError {
        broker: NAME,
        message: message.into(),
    }
}

/// Counts of what the broker did, since it connected. Each one is also
/// exported through the `metrics` crate (see the crate documentation).
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
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    dropped_while_down: AtomicU64,
    lost_in_flight: AtomicU64,
    publish_failed: AtomicU64,
    receive_dropped: AtomicU64,
    slow_consumer: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn count_publish_error(reason: &'static str, n: u64) {
    metrics::counter!("herald_broker_publish_errors_total", "broker" => NAME, "reason" => reason)
        .increment(n);
}

fn count_receive_error(reason: &'static str) {
    metrics::counter!("herald_broker_receive_errors_total", "broker" => NAME, "reason" => reason)
        .increment(1);
}

fn set_up_gauge(up: bool) {
    metrics::gauge!("herald_broker_up", "broker" => NAME).set(if up { 1.0 } else { 0.0 });
}

/// Why a round trip did not complete.
#[derive(Debug)]
enum RoundTripError {
    /// The token could not be sent.
    Send(String),
    /// The reader stopped (the broker is shutting down).
    Closed,
}

/// State shared by the broker handle and its tasks.
struct Shared {
    client: Client,
    /// The client's counters (its `connects` tells connections apart).
    client_stats: Arc<async_nats::Statistics>,
    options: NatsOptions,
    subjects: SubjectMap,
    sink: OnceLock<BrokerSink>,
    status: watch::Sender<BrokerStatus>,
    /// When the current outage began.
    down_since: Mutex<Option<Instant>>,
    /// The broker's own echo subject, and the round trips waiting on it.
    sync_subject: String,
    next_token: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    /// Wakes the confirmer after a publish.
    confirm: Notify,
    /// How many of the `published` publications are known to have reached
    /// the server.
    confirmed: AtomicU64,
    counters: Counters,
    cancel: CancellationToken,
}

impl Shared {
    /// Whether publications can go to NATS now: the monitor reported `Up`
    /// and the client has not noticed a broken connection since.
    fn is_up(&self) -> bool {
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
    async fn round_trip(&self) -> Result<(), RoundTripError> {
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
    async fn confirmed_round_trip(&self) -> Result<(), String> {
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

    /// A message arrived on `channel`'s subscription.
    fn receive(&self, sink: &BrokerSink, channel: &str, payload: Bytes) {
        match Publication::decode(&payload) {
            Ok(publication) if &*publication.channel == channel => {
                add(&self.counters.received, 1);
                sink.deliver(Arc::new(publication));
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
    fn went_down(&self, why: &str) {
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
    fn went_up(&self) {
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
            metrics::counter!("herald_broker_reconnects_total", "broker" => NAME).increment(1);
            let down_for = self.down_since.lock().take().map(|t| t.elapsed());
            tracing::info!(
                broker = NAME,
                down_for = ?down_for,
                "NATS broker up again: subscriptions restored"
            );
        }
    }

    /// A publication that cannot go to NATS now.
    fn publish_while_down(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
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

    fn stats(&self) -> NatsStats {
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
        }
    }
}

/// One channel's subscription: its forwarder task and how to stop it.
struct ChannelTask {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ChannelTask {
    /// Stops forwarding (no delivery happens after this returns) and
    /// unsubscribes.
    async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(broker = NAME, "a NATS channel forwarder panicked");
        }
    }
}

/// A [`Broker`] over core NATS: one subject per channel, one NATS
/// subscription per channel this node has local subscribers for.
///
/// See the [crate documentation](crate) for the subject mapping, the
/// behaviour during outages and the metrics.
pub struct NatsBroker {
    shared: Arc<Shared>,
    channels: Mutex<HashMap<Arc<str>, ChannelTask>>,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("prefix", &self.shared.options.prefix)
            .field("status", &*self.shared.status.borrow())
            .field("channels", &self.channels.lock().len())
            .finish()
    }
}

impl NatsBroker {
    /// Connects to NATS.
    ///
    /// `url` is one server URL or several separated by commas
    /// (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`; `tls://` for TLS;
    /// credentials as `nats://user:pass@host:4222`). Fails when no server
    /// answers now; once connected, the broker reconnects by itself forever.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<NatsBroker, BrokerError> {
        let subjects = SubjectMap::new(&options.prefix, options.max_subject_len).map_err(error)?;
        let servers = crate::options::split_servers(url);
        if servers.is_empty() {
            return Err(error("no NATS server URL given"));
        }
        let shown: Vec<String> = servers.iter().map(|s| redact(s)).collect();

        let (events_tx, events) = mpsc::unbounded_channel();
        let delays = options.clone();
        let client = ConnectOptions::new()
            .name(&options.name)
            .connection_timeout(options.connection_timeout)
            .ping_interval(options.ping_interval)
            .client_capacity(options.client_capacity)
            .subscription_capacity(options.subscription_capacity)
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempt| delays.reconnect_delay(attempt))
            .event_callback(move |event| {
                let _ = events_tx.send(event);
                std::future::ready(())
            })
            .connect(servers)
            .await
            .map_err(|e| error(format!("cannot connect to {}: {e}", shown.join(","))))?;

        let id = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let sync_subject = subjects.internal("sync", &id);
        let sync = client
            .subscribe(sync_subject.clone())
            .await
            .map_err(|e| error(format!("cannot subscribe to {sync_subject}: {e}")))?;
        let (status, _) = watch::channel(BrokerStatus::Up);
        let shared = Arc::new(Shared {
            client_stats: client.statistics(),
            client,
            options,
            subjects,
            sink: OnceLock::new(),
            status,
            down_since: Mutex::new(None),
            sync_subject,
            next_token: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            confirm: Notify::new(),
            confirmed: AtomicU64::new(0),
            counters: Counters::default(),
            cancel: CancellationToken::new(),
        });
        tokio::spawn(read_round_trips(shared.clone(), sync));
        tokio::spawn(monitor(shared.clone(), events));
        tokio::spawn(confirm_writes(shared.clone()));

        if let Err(e) = shared.confirmed_round_trip().await {
            shared.cancel.cancel();
            return Err(error(format!("NATS at {}: {e}", shown.join(","))));
        }
        set_up_gauge(true);
        tracing::info!(
            broker = NAME,
            servers = %shown.join(","),
            prefix = %shared.options.prefix,
            "connected to NATS"
        );
        Ok(NatsBroker {
            shared,
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// Counts of what the broker did so far.
    pub fn stats(&self) -> NatsStats {
        self.shared.stats()
    }

    /// The broker's status, as a watch that changes on every transition
    /// (for readiness probes, and for tests that wait on it).
    pub fn status_watch(&self) -> watch::Receiver<BrokerStatus> {
        self.shared.status.subscribe()
    }

    /// The subject that carries `channel` (see [`crate::subject`]).
    pub fn subject_for(&self, channel: &str) -> String {
        self.shared.subjects.channel(channel)
    }

    /// Number of channels this node is subscribed to on NATS.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }

    /// Whether this node is subscribed to `channel` on NATS.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.channels.lock().contains_key(channel)
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start(&self, sink: BrokerSink) {
        let _ = self.shared.sink.set(sink);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let shared = &self.shared;
        if self.channels.lock().contains_key(channel) {
            return Ok(());
        }
        let sink = shared
            .sink
            .get()
            .cloned()
            .ok_or_else(|| error("broker used before start"))?;
        let subject = shared.subjects.channel(channel);
        let subscriber = match tokio::time::timeout(
            shared.options.subscribe_timeout,
            shared.client.subscribe(subject.clone()),
        )
        .await
        {
            Ok(Ok(subscriber)) => subscriber,
            Ok(Err(e)) => return Err(error(format!("cannot subscribe to {channel}: {e}"))),
            Err(_) => {
                return Err(error(format!(
                    "cannot subscribe to {channel}: the NATS client is overloaded"
                )));
            }
        };
        let name: Arc<str> = Arc::from(channel);
        let stop = shared.cancel.child_token();
        let task = ChannelTask {
            task: tokio::spawn(forward(
                shared.clone(),
                sink,
                name.clone(),
                subscriber,
                stop.clone(),
            )),
            stop,
        };
        if shared.is_up() {
            // Return once the server has the subscription: a publication
            // made anywhere after this returns reaches this node. If the
            // connection breaks meanwhile, the client re-sends the
            // subscription on reconnect, before the status turns `Up` again.
            let mut status = shared.status.subscribe();
            let confirmed = tokio::select! {
                r = shared.confirmed_round_trip() => r,
                _ = async { status.wait_for(|s| *s == BrokerStatus::Down).await.map(|_| ()) } => Ok(()),
            };
            if let Err(e) = confirmed {
                task.stop().await;
                return Err(error(format!("cannot subscribe to {channel}: {e}")));
            }
        }
        self.channels.lock().insert(name, task);
        tracing::trace!(channel, subject, "subscribed on NATS");
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let task = self.channels.lock().remove(channel);
        if let Some(task) = task {
            task.stop().await;
        }
        Ok(())
    }

    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        let shared = &self.shared;
        if !shared.is_up() {
            return shared.publish_while_down(publication);
        }
        let subject = shared.subjects.channel(&publication.channel);
        let sent = tokio::time::timeout(
            shared.options.publish_timeout,
            shared.client.publish(subject, publication.encode()),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                add(&shared.counters.published, 1);
                shared.confirm.notify_one();
                Ok(())
            }
            Ok(Err(e)) => {
                add(&shared.counters.publish_failed, 1);
                count_publish_error("rejected", 1);
                Err(error(format!(
                    "cannot publish on {}: {e}",
                    publication.channel
                )))
            }
            Err(_) => {
                add(&shared.counters.publish_failed, 1);
                count_publish_error("timeout", 1);
                Err(error(format!(
                    "cannot publish on {}: the NATS client did not take it within {:?}",
                    publication.channel, shared.options.publish_timeout
                )))
            }
        }
    }

    fn status(&self) -> BrokerStatus {
        if self.shared.is_up() {
            BrokerStatus::Up
        } else {
            BrokerStatus::Down
        }
    }

    async fn shutdown(&self) {
        let shared = &self.shared;
        let tasks: Vec<ChannelTask> = self.channels.lock().drain().map(|(_, t)| t).collect();
        for task in tasks {
            task.stop().await;
        }
        shared.cancel.cancel();
        // Send what was published before the shutdown, then close.
        let grace = shared.options.subscribe_timeout;
        let _ = tokio::time::timeout(grace, shared.client.flush()).await;
        let _ = tokio::time::timeout(grace, shared.client.drain()).await;
        if shared
            .status
            .send_if_modified(|s| std::mem::replace(s, BrokerStatus::Down) == BrokerStatus::Up)
        {
            set_up_gauge(false);
        }
        tracing::info!(broker = NAME, "NATS broker closed");
    }
}

/// Forwards one channel's messages to the sink, in order, until stopped.
async fn forward(
    shared: Arc<Shared>,
    sink: BrokerSink,
    channel: Arc<str>,
    mut subscriber: Subscriber,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => shared.receive(&sink, &channel, message.payload),
                None => break,
            },
        }
    }
    // Dropping the subscriber unsubscribes too, but only as best effort;
    // wait (bounded) for the UNSUB to be queued.
    let _ = tokio::time::timeout(shared.options.subscribe_timeout, subscriber.unsubscribe()).await;
}

/// Completes round trips: reads the broker's echo subject.
async fn read_round_trips(shared: Arc<Shared>, mut sync: Subscriber) {
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
async fn monitor(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Event>) {
    // After a reconnect: the round trip that proves the resubscriptions
    // (queued by the client ahead of anything else) are in place.
    let mut confirming: Option<Confirmation> = None;
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            () = async { confirming.as_mut().expect("guarded").await }, if confirming.is_some() => {
                confirming = None;
                shared.went_up();
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
async fn confirm_writes(shared: Arc<Shared>) {
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
