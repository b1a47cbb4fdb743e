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
//!
//! Channels with history go through one more step: the channel's
//! [`sequencer::Cursor`] delivers each offset once and in order, and asks
//! for a **repair** when the broker left a gap (or said, through
//! [`BrokerSink::resync`], that it may have); `repair` reads the missing
//! publications from the history and the cursor releases everything in
//! order, or tells the subscribers what could not be recovered.

mod repair;
pub(crate) mod sequencer;
mod subscribers;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use herald_protocol::error::{ErrorPayload, names};
use parking_lot::{Mutex, RwLock};

use crate::broker::{Broker, BrokerError, BrokerSink, Publication, SinkEvent, StreamPosition};
use crate::cluster::RESERVED_PREFIX;
use crate::namespace::Namespaces;
use crate::socket::{Notice, Outbound, SocketShared};

use sequencer::{Cursor, RepairRequest, Step};
use subscribers::Subscribers;

const SHARDS: usize = 64;

struct Channel {
    subscribers: Subscribers,
    /// Interest of the node itself (reserved `#herald/` channels), counted
    /// per holder.
    node_refs: usize,
    /// Serializes broker (un)subscribe calls for this channel; holds whether
    /// the broker is currently subscribed.
    broker_state: Arc<tokio::sync::Mutex<bool>>,
    /// The stream as this node delivered it (channels with history only).
    cursor: OnceLock<Box<Mutex<Cursor>>>,
}

impl Channel {
    fn new() -> Self {
        Self {
            subscribers: Subscribers::default(),
            node_refs: 0,
            broker_state: Arc::new(tokio::sync::Mutex::new(false)),
            cursor: OnceLock::new(),
        }
    }

    fn cursor(&self) -> &Mutex<Cursor> {
        self.cursor.get_or_init(Box::default)
    }
}

type Shard = RwLock<HashMap<Arc<str>, Channel>>;

/// Handler of publications on reserved channels.
type ControlHook = Box<dyn Fn(&Arc<Publication>) + Send + Sync>;

/// Local subscribers per channel, in front of a broker.
pub(crate) struct Registry {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    broker: Arc<dyn Broker>,
    namespaces: Arc<Namespaces>,
    control: OnceLock<ControlHook>,
}

impl Registry {
    pub(crate) fn new(broker: Arc<dyn Broker>, namespaces: Arc<Namespaces>) -> Arc<Self> {
        let registry = Arc::new(Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: Default::default(),
            broker,
            namespaces,
            control: OnceLock::new(),
        });
        let deliver = Arc::downgrade(&registry);
        let events = Arc::downgrade(&registry);
        registry.broker.start(BrokerSink::with_events(
            move |publication| {
                if let Some(registry) = deliver.upgrade() {
                    registry.deliver(&publication);
                }
            },
            move |event| {
                if let Some(registry) = events.upgrade() {
                    match event {
                        SinkEvent::Interrupted(channel) => registry.interrupted(channel),
                        SinkEvent::Resync(channel) => registry.resync(channel),
                    }
                }
            },
        ));
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

    /// Hands a publication from the broker to the local subscribers of its
    /// channel (through the channel's cursor when it has a position).
    /// Returns how many queues accepted it.
    pub(crate) fn deliver(self: &Arc<Self>, publication: &Arc<Publication>) -> usize {
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
        if publication.position.is_none() {
            return fan_out(channel, publication);
        }
        // The steps are fanned out under the cursor's lock, so that a repair
        // completing at the same time (or a second broker connection during
        // a subscription move) cannot interleave its deliveries.
        let mut cursor = channel.cursor().lock();
        let (steps, repair) = cursor.offer(publication.clone());
        let delivered = self.apply(channel, &publication.channel, steps);
        drop(cursor);
        drop(shard);
        if let Some(request) = repair {
            self.spawn_repair(publication.channel.clone(), request);
        }
        delivered
    }

    /// Fans the cursor's steps out, in order.
    fn apply(&self, channel: &Channel, name: &Arc<str>, steps: Vec<Step>) -> usize {
        let mut delivered = 0;
        for step in steps {
            match step {
                Step::Deliver(p) => delivered += fan_out(channel, &p),
                Step::Unrecoverable(position) => {
                    tracing::warn!(channel = %name, offset = position.offset, epoch = %position.epoch, "publications lost for good on this node; subscribers told");
                    let notice = Arc::new(Notice::new(name.clone(), position));
                    for socket in channel.subscribers.iter() {
                        socket.enqueue(Outbound::Unrecoverable(notice.clone()));
                    }
                }
            }
        }
        delivered
    }

    /// A subscriber read `channel`'s stream at `position` (see
    /// [`Cursor::seed`]).
    pub(crate) fn seed(&self, channel: &str, position: &StreamPosition) {
        let shard = self.shard(channel).read();
        if let Some(entry) = shard.get(channel) {
            entry.cursor().lock().seed(position);
        }
    }

    /// The broker's flow of `channel` (every channel when `None`) was
    /// interrupted: a change of epoch is suspect until the next resync.
    pub(crate) fn interrupted(&self, channel: Option<&str>) {
        let visit = |entry: &Channel| {
            if let Some(cursor) = entry.cursor.get() {
                cursor.lock().interrupt();
            }
        };
        match channel {
            Some(channel) => {
                if let Some(entry) = self.shard(channel).read().get(channel) {
                    visit(entry);
                }
            }
            None => {
                for shard in self.shards.iter() {
                    shard.read().values().for_each(visit);
                }
            }
        }
    }

    /// The broker may have lost publications on `channel` (every channel
    /// when `None`): repair from the history.
    pub(crate) fn resync(self: &Arc<Self>, channel: Option<&str>) {
        let mut repairs: Vec<(Arc<str>, RepairRequest)> = Vec::new();
        let mut visit = |name: &Arc<str>, entry: &Channel| {
            if let Some(cursor) = entry.cursor.get()
                && let Some(request) = cursor.lock().resync()
            {
                repairs.push((name.clone(), request));
            }
        };
        match channel {
            Some(channel) => {
                let shard = self.shard(channel).read();
                if let Some((name, entry)) = shard.get_key_value(channel) {
                    visit(name, entry);
                }
            }
            None => {
                for shard in self.shards.iter() {
                    for (name, entry) in shard.read().iter() {
                        visit(name, entry);
                    }
                }
            }
        }
        for (name, request) in repairs {
            self.spawn_repair(name, request);
        }
    }

    fn spawn_repair(self: &Arc<Self>, channel: Arc<str>, request: RepairRequest) {
        let Some(policy) = self
            .namespaces
            .resolve(&channel)
            .ok()
            .and_then(|ns| ns.history.clone())
        else {
            // No history to read (the channel's options say none): report
            // the gap at once.
            self.finish_repair(&channel, |c| (c.abandon(request.id), None));
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(repair::run(Arc::downgrade(self), channel, policy, request));
            }
            Err(_) => self.finish_repair(&channel, |c| (c.abandon(request.id), None)),
        }
    }

    /// Runs `f` on `channel`'s cursor and fans its steps out; starts the
    /// next repair it asks for.
    fn finish_repair(
        self: &Arc<Self>,
        channel: &str,
        f: impl FnOnce(&mut Cursor) -> (Vec<Step>, Option<RepairRequest>),
    ) {
        let shard = self.shard(channel).read();
        let Some((name, entry)) = shard.get_key_value(channel) else {
            return;
        };
        let Some(cursor) = entry.cursor.get() else {
            return;
        };
        let mut cursor = cursor.lock();
        let (steps, next) = f(&mut cursor);
        self.apply(entry, name, steps);
        drop(cursor);
        let name = name.clone();
        drop(shard);
        if let Some(request) = next {
            self.spawn_repair(name, request);
        }
    }

    /// Whether `channel`'s cursor is still repairing.
    fn repairing(&self, channel: &str) -> bool {
        let shard = self.shard(channel).read();
        shard
            .get(channel)
            .and_then(|e| e.cursor.get())
            .is_some_and(|c| c.lock().repairing())
    }

    /// Number of local subscribers of a channel.
    pub(crate) fn subscriber_count(&self, channel: &str) -> usize {
        self.shard(channel)
            .read()
            .get(channel)
            .map_or(0, |c| c.subscribers.len())
    }

    /// Whether this node needs the channel from the broker, as the entry
    /// that owns `state` sees it; `None` when `state` belongs to an entry
    /// that was forgotten (a newer entry, with a state of its own, may have
    /// replaced it).
    fn wanted(&self, channel: &str, state: &Arc<tokio::sync::Mutex<bool>>) -> Option<bool> {
        self.shard(channel)
            .read()
            .get(channel)
            .filter(|c| Arc::ptr_eq(&c.broker_state, state))
            .map(|c| !c.subscribers.is_empty() || c.node_refs > 0)
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

    /// The channels with local subscribers that `filter` accepts, with
    /// their subscriber counts: the first `limit` by name, and whether
    /// others were left out. Reserved channels are not listed. Holds at most
    /// `limit` names at a time however many channels the node has.
    pub(crate) fn channels(
        &self,
        filter: &crate::cluster::query::Filter,
        limit: usize,
    ) -> (Vec<crate::cluster::ChannelCount>, bool) {
        let mut kept: std::collections::BinaryHeap<(Arc<str>, usize)> =
            std::collections::BinaryHeap::new();
        let mut truncated = false;
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (name, channel) in shard.iter() {
                if channel.subscribers.is_empty()
                    || name.starts_with(RESERVED_PREFIX)
                    || !filter.matches(name)
                {
                    continue;
                }
                kept.push((name.clone(), channel.subscribers.len()));
                if kept.len() > limit {
                    kept.pop();
                    truncated = true;
                }
            }
        }
        let channels = kept
            .into_sorted_vec()
            .into_iter()
            .map(|(name, subscribers)| crate::cluster::ChannelCount {
                channel: name.to_string(),
                subscribers,
            })
            .collect();
        (channels, truncated)
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
                crate::metrics::limit_violation(crate::metrics::Limit::ChannelsPerSocket);
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
        crate::metrics::subscriptions(1.0);
        let broker_state = {
            let mut shard = self.shard(channel).write();
            let entry = shard.entry(name.clone()).or_insert_with(Channel::new);
            if entry.subscribers.insert(socket.clone()) && entry.subscribers.len() == 1 {
                crate::metrics::channels(1.0);
            }
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
        crate::metrics::subscribed();
        Ok(())
    }

    fn remove_local(&self, socket: &SocketShared, channel: &str) -> bool {
        let removed = socket.channels.lock().remove(channel);
        if removed {
            crate::metrics::subscriptions(-1.0);
        }
        let mut shard = self.shard(channel).write();
        if let Some(entry) = shard.get_mut(channel)
            && entry.subscribers.remove(socket.key)
            && entry.subscribers.is_empty()
        {
            crate::metrics::channels(-1.0);
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
        let Some(wanted) = self.wanted(channel, state) else {
            // This state's entry was forgotten (always after its broker
            // subscription ended): a newer entry's own call keeps the broker
            // in line. Deciding here from the newer entry would subscribe
            // the broker twice.
            debug_assert!(!*subscribed);
            return Ok(());
        };
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

/// Queues `publication` for every subscriber of `channel`; returns how many
/// queues took it.
fn fan_out(channel: &Channel, publication: &Arc<Publication>) -> usize {
    let mut delivered = 0;
    channel.subscribers.for_each(|socket| {
        if socket.enqueue(Outbound::Publication(publication.clone())) {
            delivered += 1;
        }
    });
    let total = channel.subscribers.len();
    crate::metrics::fanned_out(delivered, total - delivered);
    delivered
}
