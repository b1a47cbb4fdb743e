//! The subscription manager: which channels this node needs, where each one
//! is subscribed, and how to get back there after anything goes wrong.
//!
//! Herald owns this bookkeeping instead of relying on a Redis client's
//! automatic resubscription, which (for sharded pub/sub in particular) does
//! not survive connection losses, failovers and slot migrations. One task
//! (the manager) owns all of the state below; the broker's calls, the
//! connections and the topology refreshes talk to it through channels, so
//! there is no locking and every decision sees a consistent picture.
//!
//! ## State
//!
//! * **Desired state**, per channel: whether the registry wants it
//!   (`subscribe` called and not yet `unsubscribe`d), plus the callers
//!   waiting for the outcome.
//! * **Connection truth**, per subscriber connection (one per server: the
//!   single server, each shard, each cluster primary), as the server
//!   confirmed it: the channels it is subscribed to, the commands in flight
//!   (a FIFO, since the server answers in order), and the *effective* set
//!   (what it will be subscribed to once the commands in flight are
//!   answered).
//! * **Routing**: which server must carry a channel: the one server, the
//!   FNV-1a shard ([`crate::sharded`]), or the primary that owns the
//!   channel's hash slot in the cluster's slot map
//!   ([`crate::cluster::topology`]).
//!
//! ## Reconciliation
//!
//! Every event marks the channels it concerns *dirty*; after each batch of
//! events the manager reconciles the dirty channels, level-triggered: a
//! wanted channel whose routed server is connected but does not carry it
//! gets a `(S)SUBSCRIBE` there; a channel carried by a connection it is not
//! routed to gets a `(S)UNSUBSCRIBE` there, *after* its new home confirmed
//! (make before break, so a move loses nothing); an unwanted channel is
//! unsubscribed everywhere. `subscribe` completes when a connection
//! confirmed the channel with nothing else in flight for it; `unsubscribe`
//! when no connection holds it any more.
//!
//! Events that mark channels dirty: a call from the registry; a
//! confirmation; a connection established (all channels), lost (its
//! channels), or found out of sync (closed and reopened); an `sunsubscribe`
//! the server pushes by itself (slot migrated away, primary demoted); a
//! `MOVED` reply (the slot is patched in the map with the owner the server
//! names and the slot's channels move there); a new slot map (the channels
//! of every slot that changed owner).
//!
//! ## Faults
//!
//! A server that pushes `sunsubscribe` by itself no longer owns the slot:
//! the slot is taken out of the map until a map names its new owner. Maps
//! fetched before the push (or before a `MOVED`) are discarded, and for ten
//! seconds a map that still names the server that gave the slot up is not
//! believed for that slot (other nodes learn of a failover a few
//! milliseconds after the demoted primary; that server is asked first, as it
//! knows who took over). Resubscribing on a stale map would be wrong in a
//! subtle way: a demoted primary is now a replica, and Redis lets replicas
//! serve `SSUBSCRIBE` for their primary's slots, so the subscription would
//! succeed there, and deliver every publication a second time once the
//! channel is also subscribed on the new primary.
//!
//! A lost connection is reopened with exponential backoff and jitter; in a
//! cluster any sign of change (lost connection, failed connect, `MOVED`,
//! pushed `sunsubscribe`, `CLUSTERDOWN`) also reloads the slot map, every
//! 200 ms while the broker is down and every `topology_refresh_interval`
//! otherwise, so a failover is followed as soon as the cluster elects the
//! new primary. A connection that leaves a command (or a periodic `PING`)
//! unanswered for `request_timeout`, or answers something out of order, is
//! closed and reopened. Refused subscriptions (`CLUSTERDOWN`, a redirect
//! loop) are retried after a short delay.
//!
//! The broker is **up** when every server it routes to has a live
//! subscriber connection (and, for a cluster, the slot map covers every
//! slot); transitions are logged and exported (see [`crate::telemetry`]).
//!
//! ## Resync
//!
//! Redis pub/sub keeps nothing: what was published while a channel was not
//! subscribed (its connection lost, its slot moving, the server dropping
//! the subscription) is gone. Whenever a channel that had been confirmed is
//! subscribed again, it is marked for resync, and once the new subscription
//! is confirmed the manager calls [`herald::BrokerSink::resync`] for it,
//! once, so that the node repairs the gap from the channel's history. A
//! channel's very first subscription needs no resync.
//!
//! ## Rooms
//!
//! * this file: the inputs and outputs of the manager ([`Command`],
//!   [`Event`], [`Routing`]), its state and its loop;
//! * `inputs`: what each command, event and timer does to the state;
//! * `live`: one connection's truth (`Live`): confirmed, in flight,
//!   effective;
//! * `reconcile`: the level-triggered step that sends commands and
//!   completes callers;
//! * `nodes`: connecting, backoff, health checks and status;
//! * `refresh`: the cluster slot map: loads, redirects, suspects;
//! * `io`: the seam to the network (opening connections, loading slot
//!   maps), faked by the unit tests in `tests`.

mod inputs;
mod io;
mod live;
mod nodes;
mod reconcile;
mod refresh;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cluster::topology::Topology;
use crate::connection::{Flavor, NodeAddr, Reply, SubConnection};
use crate::shared::Shared;

pub(crate) use io::{Io, NetworkIo};
use nodes::{Node, NodeState};
use refresh::Refresh;

/// Shortest gap between two slot map loads asked for by events.
const REFRESH_MIN_GAP: Duration = Duration::from_millis(200);
/// Delay before retrying a refused subscription.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// `MOVED` replies followed for one channel before waiting for a new map.
const MAX_REDIRECTS: u32 = 5;
/// How long a server that dropped a slot's subscriptions is not believed to
/// own that slot (unless a map names another owner first).
const DISOWN_TTL: Duration = Duration::from_secs(10);

/// How channels map to servers.
#[derive(Debug, Clone)]
pub(crate) enum Routing {
    /// Channel `c` lives on `servers[shard_index(c, n)]` (one server: all
    /// there). Plain `SUBSCRIBE`/`PUBLISH`.
    Hashed(Vec<NodeAddr>),
    /// Redis Cluster: the primary owning the slot of the Redis channel name,
    /// from the slot map loaded through `seeds` and the nodes it lists.
    /// Sharded `SSUBSCRIBE`/`SPUBLISH`.
    Cluster { seeds: Vec<NodeAddr> },
}

impl Routing {
    pub(crate) fn flavor(&self) -> Flavor {
        match self {
            Routing::Hashed(_) => Flavor::Plain,
            Routing::Cluster { .. } => Flavor::Sharded,
        }
    }
}

/// What the broker handle asks of the manager.
pub(crate) enum Command {
    /// Want `channel` (the Redis name of Herald channel `herald`); `done`
    /// fires once a connection confirmed it.
    Subscribe {
        channel: Arc<str>,
        herald: Arc<str>,
        done: oneshot::Sender<()>,
    },
    /// No longer want `channel`; `done` fires once no connection holds it.
    Unsubscribe {
        channel: Arc<str>,
        done: oneshot::Sender<()>,
    },
    /// A `Subscribe` timed out and was reported failed: forget it.
    Abandon { channel: Arc<str> },
    /// Close everything.
    Shutdown { done: oneshot::Sender<()> },
}

/// What connections, refreshes and the publish path report.
pub(crate) enum Event {
    /// A connection asked of [`Io::connect`] is established.
    Connected {
        addr: NodeAddr,
        generation: u64,
        conn: SubConnection,
    },
    ConnectFailed {
        addr: NodeAddr,
        generation: u64,
        error: String,
    },
    Reply {
        addr: NodeAddr,
        generation: u64,
        reply: Reply,
    },
    Closed {
        addr: NodeAddr,
        generation: u64,
        error: String,
    },
    /// A slot map load started at `started` finished.
    Topology {
        started: Instant,
        result: Result<(Topology, NodeAddr), String>,
    },
    /// A publication was redirected: `slot` is served by `addr`.
    Redirect { slot: u16, addr: NodeAddr },
    /// Publishing to `addr` failed at the connection level.
    Suspect { addr: NodeAddr },
}

/// One channel's desired state (keyed by its Redis name).
struct Chan {
    /// The Herald channel name (for resync).
    herald: Arc<str>,
    wanted: bool,
    slot: u16,
    shard: usize,
    subscribers: Vec<oneshot::Sender<()>>,
    unsubscribers: Vec<oneshot::Sender<()>>,
    redirects: u32,
    confirmed_once: bool,
    /// A server refused it since it was last confirmed.
    refused: bool,
    /// Subscribed again after it had been confirmed: call
    /// `BrokerSink::resync` once the new subscription is confirmed.
    resync: bool,
}

/// The manager task's state. See the module docs.
pub(crate) struct Manager {
    shared: Arc<Shared>,
    io: Box<dyn Io>,
    flavor: Flavor,
    routing: Routing,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    channels: HashMap<Arc<str>, Chan>,
    by_slot: HashMap<u16, HashSet<Arc<str>>>,
    nodes: HashMap<NodeAddr, Node>,
    dirty: HashSet<Arc<str>>,
    deferred: HashSet<Arc<str>>,
    deferred_until: Option<Instant>,
    next_generation: u64,
    next_health: Instant,
    refresh: Refresh,
    /// Subscriptions the servers dropped by themselves since the last
    /// flush, per server (logged as one line).
    dropped: HashMap<NodeAddr, usize>,
    /// Slots whose subscriptions a server dropped since the last flush: it
    /// no longer owns them.
    disowned: HashMap<NodeAddr, HashSet<u16>>,
    /// Slot → the server that gave it up, and when: maps naming that server
    /// as the owner are stale (other nodes learn of a failover a little
    /// later than the demoted primary) and are not believed for that slot
    /// until a map names another owner, or `DISOWN_TTL` passed.
    suspects: HashMap<u16, (NodeAddr, Instant)>,
}

impl Manager {
    /// A manager over `routing`, fed by `commands` (the broker handle) and
    /// `events` (connections, loads, the publish path), reaching the network
    /// through `io`. Nothing happens until [`Manager::run`] (or, in tests,
    /// the first flush).
    pub(crate) fn new(
        shared: Arc<Shared>,
        routing: Routing,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedReceiver<Event>,
        io: Box<dyn Io>,
    ) -> Self {
        let now = Instant::now();
        let mut manager = Self {
            flavor: routing.flavor(),
            next_health: now + shared.options.health_check_interval,
            shared,
            routing,
            commands,
            events,
            io,
            channels: HashMap::new(),
            by_slot: HashMap::new(),
            nodes: HashMap::new(),
            dirty: HashSet::new(),
            deferred: HashSet::new(),
            deferred_until: None,
            next_generation: 1,
            refresh: Refresh::default(),
            dropped: HashMap::new(),
            disowned: HashMap::new(),
            suspects: HashMap::new(),
        };
        if let Routing::Hashed(servers) = &manager.routing {
            for addr in servers.clone() {
                manager.node_entry(&addr);
            }
        } else {
            manager.refresh.requested = true;
        }
        manager
    }

    /// Runs until shut down or until the broker handle is dropped.
    pub(crate) async fn run(mut self) {
        self.flush();
        loop {
            let wake = self.next_wakeup();
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { done }) => {
                        self.close_all();
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        self.close_all();
                        return;
                    }
                },
                Some(event) = self.events.recv() => self.on_event(event),
                _ = tokio::time::sleep_until(wake) => self.on_timer(),
            }
            // Take what else is queued before reconciling, so a burst of
            // confirmations costs one reconciliation.
            for _ in 0..4096 {
                match self.events.try_recv() {
                    Ok(event) => self.on_event(event),
                    Err(_) => break,
                }
            }
            self.flush();
        }
    }

    fn is_cluster(&self) -> bool {
        matches!(self.routing, Routing::Cluster { .. })
    }

    /// After a batch of inputs: apply what servers gave up, reconcile the
    /// dirty channels, connect what is needed, report status, refresh the
    /// map when due.
    fn flush(&mut self) {
        let now = Instant::now();
        for (addr, n) in self.dropped.drain() {
            tracing::info!(redis = %addr, subscriptions = n, "redis dropped subscriptions by itself (slot moved or primary demoted); resubscribing");
        }
        if !self.disowned.is_empty() {
            let mut topology = self.shared.topology();
            for (addr, slots) in self.disowned.drain() {
                let slots: Vec<u16> = slots.into_iter().collect();
                for &slot in &slots {
                    self.suspects.insert(slot, (addr.clone(), now));
                }
                topology = Arc::new(topology.without_owner(&slots, &addr));
                for slot in slots {
                    if let Some(channels) = self.by_slot.get(&slot) {
                        self.dirty.extend(channels.iter().cloned());
                    }
                }
            }
            *self.shared.topology.write() = topology;
        }
        let topology = self.shared.topology();
        let dirty: Vec<Arc<str>> = self.dirty.drain().collect();
        for ch in dirty {
            self.reconcile(&ch, &topology);
        }
        self.manage_nodes(now, &topology);
        self.update_status(&topology);
        if self.is_cluster() {
            self.maybe_refresh(now, &topology);
        }
    }

    fn next_wakeup(&self) -> Instant {
        let mut wake = self.next_health;
        if let Some(at) = self.deferred_until {
            wake = wake.min(at);
        }
        for node in self.nodes.values() {
            if matches!(node.state, NodeState::Idle) {
                wake = wake.min(node.retry_at);
            }
        }
        if self.is_cluster() && !self.refresh.in_flight {
            let r = &self.refresh;
            if r.requested {
                wake = wake.min(r.earliest(Instant::now()));
            }
            if let Some(t) = r.next_periodic {
                wake = wake.min(t);
            }
        }
        wake
    }

    fn close_all(&mut self) {
        self.nodes.clear();
        self.shared.pool.clear();
        self.shared.telemetry.shut_down();
    }
}
