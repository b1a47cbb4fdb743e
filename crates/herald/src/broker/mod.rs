//! The broker: how publications travel between the nodes of a cluster.
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

mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::value::RawValue;

pub use memory::MemoryBroker;

/// A publication on a channel, with its delivery frame built once.
///
/// The `frame` is the exact text every subscriber receives
/// (`{"event":"#publish","data":{"channel":..,"data":..}}`), shared by all
/// of their queues without copying.
#[derive(Debug)]
#[non_exhaustive]
pub struct Publication {
    /// The channel name.
    pub channel: Arc<str>,
    /// The published data, as raw JSON (`None` when absent).
    pub data: Option<Box<RawValue>>,
    /// The encoded delivery frame.
    pub frame: Bytes,
}

impl Publication {
    /// Builds a publication and its delivery frame.
    pub fn new(channel: impl Into<Arc<str>>, data: Option<Box<RawValue>>) -> Self {
        let channel = channel.into();
        let frame = herald_protocol::outbound::publication(&channel, data.as_deref());
        Self {
            channel,
            data,
            frame,
        }
    }

    /// Reads a publication back from its delivery frame (what a networked
    /// broker carries). Returns `None` when the bytes are not a publication.
    pub fn from_frame(frame: Bytes) -> Option<Self> {
        let text = std::str::from_utf8(&frame).ok()?;
        let (channel, data) = match herald_protocol::inbound::parse_frame(text).ok()? {
            herald_protocol::Packet::Publish {
                channel,
                data,
                cid: None,
            } => (
                Arc::<str>::from(channel.as_ref()),
                data.map(|d| d.to_owned()),
            ),
            _ => return None,
        };
        Some(Self {
            channel,
            data,
            frame,
        })
    }
}

/// A broker failed to subscribe, unsubscribe or publish.
#[derive(Debug, thiserror::Error)]
#[error("{broker} broker: {message}")]
pub struct BrokerError {
    /// The broker's name.
    pub broker: &'static str,
    /// What failed.
    pub message: String,
}

/// Where a broker hands the publications it receives: the node's channel
/// registry, which fans each one out to the local subscribers.
#[derive(Clone)]
pub struct BrokerSink(Arc<dyn Fn(Arc<Publication>) + Send + Sync>);

impl BrokerSink {
    /// A sink that calls `deliver` for each publication.
    pub fn new(deliver: impl Fn(Arc<Publication>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(deliver))
    }

    /// Delivers one publication to the local subscribers of its channel.
    pub fn deliver(&self, publication: Arc<Publication>) {
        (self.0)(publication)
    }
}

impl std::fmt::Debug for BrokerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerSink")
    }
}

/// A message engine that carries publications between nodes.
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
    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError>;

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
