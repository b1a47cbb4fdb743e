//! The in-process broker: one node, nothing else to run.
//!
//! Publications loop straight back to this node's registry; channel history
//! lives in memory ([`streams`]) and so does presence ([`presence`]). What a
//! single process needs, with the same semantics as the networked brokers
//! (offsets, epochs, expiry), so that an application moves to a cluster by
//! changing its broker and nothing else. History does not survive a restart:
//! a restarted node starts every channel in a new epoch, and clients that
//! come back learn that they cannot recover (`recovered: false`).

mod presence;
mod streams;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::{
    Broker, BrokerError, BrokerSink, ClientInfo, HistoryPage, HistoryPolicy, HistoryQuery,
    PresenceRecord, Publication, StreamPosition,
};

/// How often expired streams and presence entries are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Inner {
    sink: OnceLock<BrokerSink>,
    streams: OnceLock<streams::Streams>,
    presence: presence::Presence,
}

impl Inner {
    fn streams(&self) -> &streams::Streams {
        self.streams.get_or_init(streams::Streams::new)
    }

    fn sink(&self) -> Result<&BrokerSink, BrokerError> {
        self.sink
            .get()
            .ok_or_else(|| BrokerError::new("memory", "broker used before start"))
    }
}

/// Delivers every publication straight back to this node's subscribers and
/// keeps history and presence in memory. The default broker: a single Herald
/// process needs nothing else.
#[derive(Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBroker")
    }
}

impl MemoryBroker {
    /// A new in-process broker.
    pub fn new() -> Self {
        Self::default()
    }
}

async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.streams().sweep();
        inner.presence.sweep();
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn start(&self, sink: BrokerSink) {
        let _ = self.inner.sink.set(sink);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(sweep(Arc::downgrade(&self.inner)));
        }
        crate::metrics::broker_up("memory", true);
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        self.inner.sink()?.deliver(publication);
        Ok(())
    }

    async fn publish_with_history(
        &self,
        channel: &str,
        data: Option<Box<RawValue>>,
        policy: &HistoryPolicy,
    ) -> Result<StreamPosition, BrokerError> {
        let sink = self.inner.sink()?;
        Ok(self
            .inner
            .streams()
            .append(channel, data, policy, |p| sink.deliver(p)))
    }

    async fn history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        Ok(self.inner.streams().read(channel, policy, query))
    }

    async fn remove_history(
        &self,
        channel: &str,
        _policy: &HistoryPolicy,
    ) -> Result<(), BrokerError> {
        self.inner.streams().remove(channel);
        Ok(())
    }

    async fn presence_add(
        &self,
        records: &[PresenceRecord],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        self.inner.presence.add(records, ttl);
        Ok(())
    }

    async fn presence_remove(
        &self,
        channel: &str,
        clients: &[Arc<str>],
    ) -> Result<(), BrokerError> {
        self.inner.presence.remove(channel, clients);
        Ok(())
    }

    async fn presence(&self, channel: &str) -> Result<BTreeMap<String, ClientInfo>, BrokerError> {
        Ok(self.inner.presence.list(channel))
    }
}
