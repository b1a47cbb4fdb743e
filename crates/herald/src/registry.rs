//! The channel registry: which local sockets are subscribed to which channel.
//!
//! It is the only place that knows both sides: it keeps, per channel, the
//! set of local subscribers, tells the [`Broker`] when a channel gains its
//! first or loses its last local subscriber, and fans every publication the
//! broker delivers out to the subscribers' queues.
//!
//! Hot path: [`Registry::deliver`] takes one shard's read lock, clones the
//! publication's `Arc` into each subscriber's bounded queue with `try_send`
//! (never waiting), and releases the lock. A subscriber whose queue is full
//! is closed as a slow consumer. No lock is held across an `.await`: broker
//! calls for a channel are serialized by an async mutex owned by that channel.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use herald_protocol::error::{ErrorPayload, names};
use parking_lot::RwLock;

use crate::broker::{Broker, BrokerError, BrokerSink, Publication};
use crate::cluster::RESERVED_PREFIX;
use crate::socket::{Outbound, SocketShared};

const SHARDS: usize = 64;

struct Channel {
    subscribers: HashMap<u64, Arc<SocketShared>>,
    /// Interest of the node itself (reserved `#herald/` channels), counted
    /// per holder.
    node_refs: usize,
    /// Serializes broker (un)subscribe calls for this channel; holds whether
    /// the broker is currently subscribed.
    broker_state: Arc<tokio::sync::Mutex<bool>>,
}

impl Channel {
    fn new() -> Self {
        Self {
            subscribers: HashMap::new(),
            node_refs: 0,
            broker_state: Arc::new(tokio::sync::Mutex::new(false)),
        }
    }
}

type Shard = RwLock<HashMap<Arc<str>, Channel>>;

/// Local subscribers per channel, in front of a broker.
/// Handler of publications on reserved channels.
type ControlHook = Box<dyn Fn(&Arc<Publication>) + Send + Sync>;

pub(crate) struct Registry {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    broker: Arc<dyn Broker>,
    control: OnceLock<ControlHook>,
}

impl Registry {
    pub(crate) fn new(broker: Arc<dyn Broker>) -> Arc<Self> {
        let registry = Arc::new(Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: Default::default(),
            broker,
            control: OnceLock::new(),
        });
        let weak = Arc::downgrade(&registry);
        registry.broker.start(BrokerSink::new(move |publication| {
            if let Some(registry) = weak.upgrade() {
                registry.deliver(&publication);
            }
        }));
        registry
    }

    /// Sets the handler of publications on reserved (`#herald/`) channels.
    pub(crate) fn set_control(&self, hook: ControlHook) {
        let _ = self.control.set(hook);
    }

    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Fans a publication out to the local subscribers of its channel.
    /// Returns how many queues accepted it.
    pub(crate) fn deliver(&self, publication: &Arc<Publication>) -> usize {
        if publication.channel.starts_with(RESERVED_PREFIX) {
            if let Some(control) = self.control.get() {
                control(publication);
            }
            return 0;
        }
        let shard = self.shard(&publication.channel).read();
        let Some(channel) = shard.get(&publication.channel) else {
            return 0;
        };
        let mut delivered = 0;
        for socket in channel.subscribers.values() {
            if socket.enqueue(Outbound::Publication(publication.clone())) {
                delivered += 1;
            }
        }
        let total = channel.subscribers.len();
        drop(shard);
        metrics::counter!("herald_deliveries_total").increment(delivered as u64);
        if delivered < total {
            metrics::counter!("herald_deliveries_dropped_total")
                .increment((total - delivered) as u64);
        }
        delivered
    }

    /// Number of local subscribers of a channel.
    pub(crate) fn subscriber_count(&self, channel: &str) -> usize {
        self.shard(channel)
            .read()
            .get(channel)
            .map_or(0, |c| c.subscribers.len())
    }

    /// Whether this node needs the channel from the broker.
    fn wanted(&self, channel: &str) -> bool {
        self.shard(channel)
            .read()
            .get(channel)
            .is_some_and(|c| !c.subscribers.is_empty() || c.node_refs > 0)
    }

    /// The node itself takes an interest in a (reserved) channel; each call
    /// must be matched by one [`Registry::unsubscribe_node`].
    pub(crate) async fn subscribe_node(&self, channel: &str) -> Result<(), BrokerError> {
        let state = {
            let mut shard = self.shard(channel).write();
            let entry = shard.entry(Arc::from(channel)).or_insert_with(Channel::new);
            entry.node_refs += 1;
            entry.broker_state.clone()
        };
        let result = self.sync_broker(channel, &state).await;
        if result.is_err() {
            self.release_node(channel);
            let _ = self.sync_broker(channel, &state).await;
        }
        result
    }

    fn release_node(&self, channel: &str) -> Option<Arc<tokio::sync::Mutex<bool>>> {
        let mut shard = self.shard(channel).write();
        let entry = shard.get_mut(channel)?;
        entry.node_refs = entry.node_refs.saturating_sub(1);
        Some(entry.broker_state.clone())
    }

    /// Drops one interest taken with [`Registry::subscribe_node`].
    pub(crate) async fn unsubscribe_node(&self, channel: &str) {
        if let Some(state) = self.release_node(channel)
            && let Err(e) = self.sync_broker(channel, &state).await
        {
            tracing::warn!(channel, error = %e, "broker unsubscribe failed");
        }
    }

    /// Number of channels with at least one local subscriber.
    pub(crate) fn channel_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .values()
                    .filter(|c| !c.subscribers.is_empty())
                    .count()
            })
            .sum()
    }

    /// Subscribes a socket. Returns once the broker delivers the channel to
    /// this node, so that a publication made after the acknowledgement is
    /// never missed.
    pub(crate) async fn subscribe(
        &self,
        socket: &Arc<SocketShared>,
        channel: &str,
    ) -> Result<(), ErrorPayload> {
        let limit = socket.server.config.socket_channel_limit;
        let name: Arc<str> = {
            let mut channels = socket.channels.lock();
            if channels.contains(channel) {
                return Ok(());
            }
            if limit > 0 && channels.len() >= limit {
                return Err(ErrorPayload::new(
                    names::INVALID_ACTION,
                    format!(
                        "Socket {} tried to exceed the channel subscription limit of {limit}",
                        socket.id
                    ),
                ));
            }
            let name: Arc<str> = Arc::from(channel);
            channels.insert(name.clone());
            name
        };
        let broker_state = {
            let mut shard = self.shard(channel).write();
            let entry = shard.entry(name.clone()).or_insert_with(Channel::new);
            entry.subscribers.insert(socket.key, socket.clone());
            entry.broker_state.clone()
        };
        if let Err(e) = self.sync_broker(&name, &broker_state).await {
            // Roll back this socket's subscription; the channel stays as the
            // other subscribers need it.
            self.remove_local(socket, &name);
            let _ = self.sync_broker(&name, &broker_state).await;
            return Err(ErrorPayload::new(
                names::BROKER,
                format!("Failed to subscribe socket to the {channel} channel - {e}"),
            ));
        }
        metrics::counter!("herald_subscriptions_total").increment(1);
        Ok(())
    }

    fn remove_local(&self, socket: &SocketShared, channel: &str) -> bool {
        let removed = socket.channels.lock().remove(channel);
        let mut shard = self.shard(channel).write();
        if let Some(entry) = shard.get_mut(channel) {
            entry.subscribers.remove(&socket.key);
        }
        removed
    }

    /// Unsubscribes a socket from a channel. Returns whether it was subscribed.
    pub(crate) async fn unsubscribe(&self, socket: &SocketShared, channel: &str) -> bool {
        if !self.remove_local(socket, channel) {
            return false;
        }
        let broker_state = {
            let shard = self.shard(channel).read();
            shard.get(channel).map(|c| c.broker_state.clone())
        };
        if let Some(state) = broker_state
            && let Err(e) = self.sync_broker(channel, &state).await
        {
            tracing::warn!(channel, error = %e, "broker unsubscribe failed");
        }
        true
    }

    /// Unsubscribes a closing socket from all its channels.
    pub(crate) async fn unsubscribe_all(&self, socket: &SocketShared) {
        let channels: Vec<Arc<str>> = socket.channels.lock().iter().cloned().collect();
        for channel in channels {
            self.unsubscribe(socket, &channel).await;
        }
    }

    /// Brings the broker subscription of a channel in line with its local
    /// subscribers, and forgets the channel once it has none. Calls for one
    /// channel are serialized by its mutex, so the broker sees subscribe and
    /// unsubscribe in the order the local state changed.
    async fn sync_broker(
        &self,
        channel: &str,
        state: &Arc<tokio::sync::Mutex<bool>>,
    ) -> Result<(), BrokerError> {
        let mut subscribed = state.lock().await;
        let wanted = self.wanted(channel);
        if wanted && !*subscribed {
            self.broker.subscribe(channel).await?;
            *subscribed = true;
        } else if !wanted && *subscribed {
            self.broker.unsubscribe(channel).await?;
            *subscribed = false;
        }
        if !wanted {
            // Forget the channel, unless a subscriber arrived meanwhile (it
            // then waits on this same mutex and subscribes the broker again).
            let mut shard = self.shard(channel).write();
            if let Some(entry) = shard.get(channel)
                && entry.subscribers.is_empty()
                && entry.node_refs == 0
                && Arc::ptr_eq(&entry.broker_state, state)
            {
                shard.remove(channel);
            }
        }
        Ok(())
    }
}
