//! The broker: how publications travel between the nodes of a cluster, and
//! where channel history and presence are kept.
//!
//! Every publication, from a client or from server code, goes *through* the
//! broker, and a node delivers to its local subscribers only what the broker
//! hands back through its [`BrokerSink`]. With the in-process
//! [`MemoryBroker`] that is an immediate loop-back; with Redis or NATS it is
//! the round trip through the engine. Either way each publication reaches
//! each local subscriber exactly once, in the order the broker delivers it.
//!
//! The channel registry tells the broker which channels this node needs:
//! [`Broker::subscribe`] when a channel gets its first local subscriber and
//! [`Broker::unsubscribe`] when it loses its last one. Calls for one channel
//! never overlap, so an implementation needs no per-channel locking of its
//! own.
//!
//! **History and presence follow the broker**: the engine that carries a
//! cluster's publications also keeps their history (the memory broker in
//! memory, Redis in Redis Streams, NATS in JetStream), so every node sees
//! the same offsets and epochs. [`Broker::publish_with_history`] appends and
//! publishes as one atomic step: no node can receive offset n+1 before n.
//!
//! A networked broker loses messages when its connection breaks. It then
//! tells the node through [`BrokerSink::resync`] once the channel flows
//! again, and the node fills the gap from the history (see the registry).
//!
//! Modules: [`publication`] (what travels, and its envelope), [`history`]
//! and [`presence`] (their types), `memory` (the in-process broker).

pub mod history;
mod memory;
pub mod presence;
pub mod publication;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;

pub use history::{HistoryPage, HistoryPolicy, HistoryQuery, StreamPosition};
pub use memory::MemoryBroker;
pub use presence::{ClientInfo, PresenceRecord, PresenceStats};
pub use publication::{EnvelopeError, MessageKind, Publication};

/// A broker failed to subscribe, unsubscribe, publish, or read or write
/// history or presence.
#[derive(Debug, thiserror::Error)]
#[error("{broker} broker: {message}")]
pub struct BrokerError {
    /// The broker's name.
    pub broker: &'static str,
    /// What failed.
    pub message: String,
}

impl BrokerError {
    /// An error of broker `broker`.
    pub fn new(broker: &'static str, message: impl Into<String>) -> Self {
        Self {
            broker,
            message: message.into(),
        }
    }

    /// The error of a broker that does not implement a capability.
    pub fn unsupported(broker: &'static str, what: &str) -> Self {
        Self::new(broker, format!("this broker does not support {what}"))
    }
}

type Deliver = Arc<dyn Fn(Arc<Publication>) + Send + Sync>;
type Events = Arc<dyn Fn(SinkEvent<'_>) + Send + Sync>;

/// What a broker tells the node about a channel's flow, besides
/// publications. `None` stands for every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkEvent<'a> {
    /// The channel's flow was interrupted (its subscription is being
    /// re-established): until the next [`SinkEvent::Resync`], the node
    /// treats a change of epoch as a possible loss.
    Interrupted(Option<&'a str>),
    /// The channel flows again and publications may have been lost: repair
    /// from the history.
    Resync(Option<&'a str>),
}

/// Where a broker hands the publications it receives: the node's channel
/// registry, which fans each one out to the local subscribers.
#[derive(Clone)]
pub struct BrokerSink {
    deliver: Deliver,
    events: Events,
}

impl BrokerSink {
    /// A sink that calls `deliver` for each publication and ignores
    /// everything else.
    pub fn new(deliver: impl Fn(Arc<Publication>) + Send + Sync + 'static) -> Self {
        Self::with_events(deliver, |_| {})
    }

    /// A sink that also hears about possible losses: `resync(Some(channel))`
    /// for one channel, `resync(None)` for every channel.
    pub fn with_resync(
        deliver: impl Fn(Arc<Publication>) + Send + Sync + 'static,
        resync: impl Fn(Option<&str>) + Send + Sync + 'static,
    ) -> Self {
        Self::with_events(deliver, move |e| {
            if let SinkEvent::Resync(channel) = e {
                resync(channel)
            }
        })
    }

    /// A sink that hears every [`SinkEvent`].
    pub fn with_events(
        deliver: impl Fn(Arc<Publication>) + Send + Sync + 'static,
        events: impl Fn(SinkEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            deliver: Arc::new(deliver),
            events: Arc::new(events),
        }
    }

    /// Delivers one publication to the local subscribers of its channel.
    pub fn deliver(&self, publication: Arc<Publication>) {
        (self.deliver)(publication)
    }

    /// Publications on `channel` may have been lost on the way to this node
    /// (its subscription was re-established after a fault, or the engine
    /// dropped messages): call it once the channel flows again, and the node
    /// fills any gap from the channel's history.
    pub fn resync(&self, channel: &str) {
        (self.events)(SinkEvent::Resync(Some(channel)))
    }

    /// [`BrokerSink::resync`] for every channel this node is subscribed to
    /// (the whole connection was lost and is back).
    pub fn resync_all(&self) {
        (self.events)(SinkEvent::Resync(None))
    }

    /// `channel`'s flow is interrupted: call it when its subscription is
    /// lost or re-sent, before the engine can deliver anything on the new
    /// one (then [`BrokerSink::resync`] once it is confirmed). Without it, a
    /// publication arriving first on the new subscription in a new epoch
    /// (the engine lost its history while the connection was down) would
    /// look like a history that expired with nothing lost.
    pub fn interrupted(&self, channel: &str) {
        (self.events)(SinkEvent::Interrupted(Some(channel)))
    }

    /// [`BrokerSink::interrupted`] for every channel (the connection is
    /// lost).
    pub fn interrupted_all(&self) {
        (self.events)(SinkEvent::Interrupted(None))
    }
}

impl std::fmt::Debug for BrokerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerSink")
    }
}

/// A message engine that carries publications between nodes, and keeps
/// channel history and presence.
///
/// The history and presence methods have defaults that fail with
/// [`BrokerError::unsupported`], so a broker that only carries messages
/// stays small; Herald's own brokers implement all of them. The shared
/// conformance suite (`herald-testkit`) checks every broker the same way.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and errors (`memory`, `redis`, `nats`).
    fn name(&self) -> &'static str;

    /// Connects the broker to this node's registry. Called once, before any
    /// other method.
    fn start(&self, sink: BrokerSink);

    /// This node now has local subscribers on `channel`: start receiving it.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// This node has no local subscriber left on `channel`.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// Publishes to every node subscribed to the channel, this one included.
    /// The publication has no stream position (a channel without history,
    /// a join or leave event, a control message).
    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError>;

    /// Appends `data` to `channel`'s history and publishes it, as one atomic
    /// step: the publication gets the next offset of the channel's stream
    /// (creating the stream with a new epoch when it has none, or when its
    /// history expired), the history keeps at most `policy.size`
    /// publications and lives `policy.ttl` after this one, and every node
    /// subscribed to the channel receives it with its position, in offset
    /// order. Returns the position.
    async fn publish_with_history(
        &self,
        channel: &str,
        data: Option<Box<RawValue>>,
        policy: &HistoryPolicy,
    ) -> Result<StreamPosition, BrokerError> {
        let _ = (channel, data, policy);
        Err(BrokerError::unsupported(self.name(), "history"))
    }

    /// Reads `channel`'s history (see [`HistoryQuery`]) and its current
    /// position. A channel without a stream gets one (a new epoch, offset
    /// 0, living `policy.ttl`), so a subscriber always learns an epoch it
    /// can recover from later. When `query.since` names another epoch, no
    /// publication is returned.
    async fn history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        let _ = (channel, policy, query);
        Err(BrokerError::unsupported(self.name(), "history"))
    }

    /// Drops `channel`'s history; its next publication starts a new epoch.
    async fn remove_history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
    ) -> Result<(), BrokerError> {
        let _ = (channel, policy);
        Err(BrokerError::unsupported(self.name(), "history"))
    }

    /// Records (or refreshes) subscribers in channels' presence, each
    /// expiring `ttl` from now unless refreshed again.
    async fn presence_add(
        &self,
        records: &[PresenceRecord],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let _ = (records, ttl);
        Err(BrokerError::unsupported(self.name(), "presence"))
    }

    /// Removes subscribers (socket ids) from `channel`'s presence.
    async fn presence_remove(
        &self,
        channel: &str,
        clients: &[Arc<str>],
    ) -> Result<(), BrokerError> {
        let _ = (channel, clients);
        Err(BrokerError::unsupported(self.name(), "presence"))
    }

    /// `channel`'s subscribers on every node, by socket id (expired entries
    /// left out).
    async fn presence(&self, channel: &str) -> Result<BTreeMap<String, ClientInfo>, BrokerError> {
        let _ = channel;
        Err(BrokerError::unsupported(self.name(), "presence"))
    }

    /// Counts of [`Broker::presence`]. The default reads the whole list.
    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        let entries = self.presence(channel).await?;
        Ok(presence::stats_of(entries.values()))
    }

    /// Whether the broker is reachable now. A broker that lost its engine
    /// keeps serving local channels where it can, reconnects by itself and
    /// resubscribes every channel it was asked for; meanwhile it reports
    /// [`BrokerStatus::Down`] (for logs, metrics and readiness).
    fn status(&self) -> BrokerStatus {
        BrokerStatus::Up
    }

    /// Stops the broker (closes connections). Default: nothing to do.
    async fn shutdown(&self) {}
}

/// Reachability of a broker's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStatus {
    /// Connected; publications flow.
    Up,
    /// Disconnected; reconnecting.
    Down,
}
