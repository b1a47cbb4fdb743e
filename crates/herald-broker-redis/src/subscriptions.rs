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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use herald::BrokerStatus;
use redis::ServerErrorKind;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::cluster::slots::key_slot;
use crate::cluster::topology::{self, Topology};
use crate::connection::{self, Flavor, NodeAddr, Reply, SubConnection};
use crate::sharded::shard_index;
use crate::shared::Shared;

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
    /// Want `channel`; `done` fires once a connection confirmed it.
    Subscribe {
        channel: Arc<str>,
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

struct Chan {
    wanted: bool,
    slot: u16,
    shard: usize,
    subscribers: Vec<oneshot::Sender<()>>,
    unsubscribers: Vec<oneshot::Sender<()>>,
    redirects: u32,
    confirmed_once: bool,
    /// A server refused it since it was last confirmed.
    refused: bool,
}

enum Cmd {
    Sub(Arc<str>),
    Unsub(Arc<str>),
    Ping,
}

/// A subscriber connection and what the server confirmed on it.
struct Live {
    generation: u64,
    conn: SubConnection,
    fifo: VecDeque<Cmd>,
    /// Last reply, or when the FIFO last became non-empty.
    last_progress: Instant,
    subscribed: HashSet<Arc<str>>,
    effective: HashSet<Arc<str>>,
    inflight: HashMap<Arc<str>, u32>,
}

impl Live {
    fn new(generation: u64, conn: SubConnection) -> Self {
        Self {
            generation,
            conn,
            fifo: VecDeque::new(),
            last_progress: Instant::now(),
            subscribed: HashSet::new(),
            effective: HashSet::new(),
            inflight: HashMap::new(),
        }
    }

    fn send(&mut self, flavor: Flavor, cmd: Cmd) {
        let packed = match &cmd {
            Cmd::Sub(ch) => {
                self.effective.insert(ch.clone());
                *self.inflight.entry(ch.clone()).or_default() += 1;
                redis::cmd(flavor.subscribe())
                    .arg(&**ch)
                    .get_packed_command()
            }
            Cmd::Unsub(ch) => {
                self.effective.remove(ch);
                *self.inflight.entry(ch.clone()).or_default() += 1;
                redis::cmd(flavor.unsubscribe())
                    .arg(&**ch)
                    .get_packed_command()
            }
            Cmd::Ping => redis::cmd("PING").get_packed_command(),
        };
        if self.fifo.is_empty() {
            self.last_progress = Instant::now();
        }
        self.fifo.push_back(cmd);
        self.conn.send(packed);
    }

    /// One command for `ch` was answered.
    fn settle(&mut self, ch: &Arc<str>) {
        if let Some(n) = self.inflight.get_mut(ch) {
            *n -= 1;
            if *n == 0 {
                self.inflight.remove(ch);
                if self.subscribed.contains(ch) {
                    self.effective.insert(ch.clone());
                } else {
                    self.effective.remove(ch);
                }
            }
        }
    }

    /// Subscribed, with nothing in flight that could change it.
    fn confirmed(&self, ch: &str) -> bool {
        self.subscribed.contains(ch) && !self.inflight.contains_key(ch)
    }

    fn holds(&self, ch: &str) -> bool {
        self.subscribed.contains(ch)
            || self.effective.contains(ch)
            || self.inflight.contains_key(ch)
    }

    fn held(&self) -> impl Iterator<Item = &Arc<str>> {
        self.subscribed
            .iter()
            .chain(self.effective.iter())
            .chain(self.inflight.keys())
    }

    fn is_idle(&self) -> bool {
        self.fifo.is_empty() && self.subscribed.is_empty() && self.effective.is_empty()
    }
}

enum NodeState {
    Idle,
    Connecting(u64),
    Live(Box<Live>),
}

struct Node {
    state: NodeState,
    backoff: Backoff,
    retry_at: Instant,
    was_connected: bool,
    failures: u32,
}

#[derive(Default)]
struct Refresh {
    in_flight: bool,
    requested: bool,
    last_start: Option<Instant>,
    next_periodic: Option<Instant>,
    failures: u32,
    /// Maps fetched before this instant are stale: a server told us since
    /// (by `MOVED` or by dropping subscriptions) that a slot changed hands.
    floor: Option<Instant>,
}

impl Refresh {
    /// When a requested refresh may start: at once when a server reported a
    /// change since the last one started, else after a gap that grows with
    /// consecutive failures.
    fn earliest(&self, now: Instant) -> Instant {
        let Some(last) = self.last_start else {
            return now;
        };
        if self.floor.is_some_and(|floor| floor > last) {
            return now;
        }
        last + REFRESH_MIN_GAP * self.failures.clamp(1, 5)
    }
}

/// The manager task's state. See the module docs.
pub(crate) struct Manager {
    shared: Arc<Shared>,
    flavor: Flavor,
    routing: Routing,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
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

enum Outcome {
    Nothing,
    Dirty(Arc<str>),
    /// The server dropped the subscription by itself.
    Dropped(Arc<str>),
    Refused(Arc<str>, redis::ServerError),
    Desync(String),
}

impl Manager {
    pub(crate) fn new(
        shared: Arc<Shared>,
        routing: Routing,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedReceiver<Event>,
        events_tx: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let now = Instant::now();
        let mut manager = Self {
            flavor: routing.flavor(),
            next_health: now + shared.options.health_check_interval,
            shared,
            routing,
            commands,
            events,
            events_tx,
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

    fn node_entry(&mut self, addr: &NodeAddr) -> &mut Node {
        let options = &self.shared.options;
        self.nodes.entry(addr.clone()).or_insert_with(|| Node {
            state: NodeState::Idle,
            backoff: Backoff::new(options.min_backoff, options.max_backoff),
            retry_at: Instant::now(),
            was_connected: false,
            failures: 0,
        })
    }

    fn is_cluster(&self) -> bool {
        matches!(self.routing, Routing::Cluster { .. })
    }

    // ----- inputs -------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Subscribe { channel, done } => {
                let slot = key_slot(channel.as_bytes());
                let shard = match &self.routing {
                    Routing::Hashed(servers) => {
                        let name = channel
                            .strip_prefix(&*self.shared.prefix)
                            .unwrap_or(&channel);
                        shard_index(name, servers.len())
                    }
                    Routing::Cluster { .. } => 0,
                };
                let by_slot = &mut self.by_slot;
                let chan = self.channels.entry(channel.clone()).or_insert_with(|| {
                    by_slot.entry(slot).or_default().insert(channel.clone());
                    Chan {
                        wanted: false,
                        slot,
                        shard,
                        subscribers: Vec::new(),
                        unsubscribers: Vec::new(),
                        redirects: 0,
                        confirmed_once: false,
                        refused: false,
                    }
                });
                chan.wanted = true;
                chan.subscribers.push(done);
                self.dirty.insert(channel);
            }
            Command::Unsubscribe { channel, done } => match self.channels.get_mut(&channel) {
                Some(chan) => {
                    chan.wanted = false;
                    chan.subscribers.clear();
                    chan.unsubscribers.push(done);
                    self.dirty.insert(channel);
                }
                None => {
                    let _ = done.send(());
                }
            },
            Command::Abandon { channel } => {
                if let Some(chan) = self.channels.get_mut(&channel) {
                    chan.wanted = false;
                    chan.subscribers.clear();
                    self.dirty.insert(channel);
                }
            }
            Command::Shutdown { .. } => unreachable!("handled by run"),
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected {
                addr,
                generation,
                conn,
            } => self.on_connected(addr, generation, conn),
            Event::ConnectFailed {
                addr,
                generation,
                error,
            } => self.on_connect_failed(addr, generation, error),
            Event::Reply {
                addr,
                generation,
                reply,
            } => self.on_reply(addr, generation, reply),
            Event::Closed {
                addr,
                generation,
                error,
            } => {
                if self.live_gen(&addr) == Some(generation) {
                    tracing::warn!(redis = %addr, error = %error, "redis subscriber connection lost");
                    self.shared
                        .set_error(format!("connection to {addr} lost: {error}"));
                    self.drop_connection(&addr, false);
                }
            }
            Event::Topology { started, result } => self.on_topology(started, result),
            Event::Redirect { slot, addr } => self.redirect(slot, &addr),
            Event::Suspect { addr } => {
                if self.is_cluster() {
                    tracing::debug!(redis = %addr, "publish failed at the connection level");
                    self.refresh.requested = true;
                }
            }
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if now >= self.next_health {
            self.health_check(now);
            self.next_health = now + self.shared.options.health_check_interval;
        }
        if let Some(at) = self.deferred_until
            && now >= at
        {
            self.deferred_until = None;
            self.dirty.extend(self.deferred.drain());
        }
    }

    fn live_gen(&self, addr: &NodeAddr) -> Option<u64> {
        match &self.nodes.get(addr)?.state {
            NodeState::Live(live) => Some(live.generation),
            _ => None,
        }
    }

    fn on_connected(&mut self, addr: NodeAddr, generation: u64, conn: SubConnection) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        if !matches!(node.state, NodeState::Connecting(g) if g == generation) {
            return;
        }
        node.state = NodeState::Live(Box::new(Live::new(generation, conn)));
        node.backoff.reset();
        node.failures = 0;
        if node.was_connected {
            self.shared.telemetry.reconnected();
            tracing::info!(redis = %addr, "redis subscriber connection re-established");
        } else {
            tracing::debug!(redis = %addr, "redis subscriber connection established");
        }
        node.was_connected = true;
        self.shared.pool.clear_failure(&addr);
        // Every channel routed here must be (re)subscribed.
        self.dirty.extend(self.channels.keys().cloned());
    }

    fn on_connect_failed(&mut self, addr: NodeAddr, generation: u64, error: String) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        if !matches!(node.state, NodeState::Connecting(g) if g == generation) {
            return;
        }
        node.state = NodeState::Idle;
        node.failures += 1;
        let delay = node.backoff.next_delay();
        node.retry_at = Instant::now() + delay;
        if node.failures == 1 {
            tracing::warn!(redis = %addr, error = %error, "cannot connect to redis; retrying with backoff");
        } else {
            tracing::debug!(redis = %addr, error = %error, attempt = node.failures, retry_in = ?delay, "cannot connect to redis");
        }
        self.shared.set_error(error);
        if self.is_cluster() {
            self.refresh.requested = true;
        }
    }

    /// Closes the connection to `addr` (lost, dead or out of sync): its
    /// channels are re-placed once it (or their new home) is back.
    fn drop_connection(&mut self, addr: &NodeAddr, immediate: bool) {
        let Some(node) = self.nodes.get_mut(addr) else {
            return;
        };
        let NodeState::Live(live) = std::mem::replace(&mut node.state, NodeState::Idle) else {
            return;
        };
        self.dirty.extend(live.held().cloned());
        node.retry_at = if immediate {
            Instant::now()
        } else {
            Instant::now() + node.backoff.next_delay()
        };
        drop(live);
        self.shared.pool.invalidate(addr);
        if self.is_cluster() {
            self.refresh.requested = true;
        }
    }

    fn on_reply(&mut self, addr: NodeAddr, generation: u64, reply: Reply) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        let NodeState::Live(live) = &mut node.state else {
            return;
        };
        if live.generation != generation {
            return;
        }
        live.last_progress = Instant::now();
        let outcome = match reply {
            Reply::Subscribed(ch) => match live.fifo.front() {
                Some(Cmd::Sub(c)) if *c == ch => {
                    live.fifo.pop_front();
                    live.subscribed.insert(ch.clone());
                    live.settle(&ch);
                    Outcome::Dirty(ch)
                }
                _ => Outcome::Desync(format!("unexpected subscribe confirmation for {ch}")),
            },
            Reply::Unsubscribed(ch) => match live.fifo.front() {
                Some(Cmd::Unsub(c)) if *c == ch => {
                    live.fifo.pop_front();
                    live.subscribed.remove(&ch);
                    live.settle(&ch);
                    Outcome::Dirty(ch)
                }
                // Not an answer: the server dropped the subscription by
                // itself (slot migrated away, primary demoted).
                _ => {
                    let was = live.subscribed.remove(&ch);
                    if !live.inflight.contains_key(&ch) {
                        live.effective.remove(&ch);
                    }
                    if was {
                        Outcome::Dropped(ch)
                    } else {
                        Outcome::Dirty(ch)
                    }
                }
            },
            Reply::Pong => match live.fifo.front() {
                Some(Cmd::Ping) => {
                    live.fifo.pop_front();
                    Outcome::Nothing
                }
                _ => Outcome::Desync("unexpected PONG".into()),
            },
            Reply::Error(e) => match live.fifo.pop_front() {
                Some(Cmd::Sub(ch)) => {
                    live.settle(&ch);
                    Outcome::Refused(ch, e)
                }
                Some(Cmd::Unsub(ch)) => {
                    // Refused (e.g. MOVED: the slot already left, and the
                    // server dropped the subscription with it).
                    live.subscribed.remove(&ch);
                    live.settle(&ch);
                    Outcome::Dirty(ch)
                }
                Some(Cmd::Ping) => Outcome::Nothing,
                None => Outcome::Desync(format!("unsolicited error: {e}")),
            },
            Reply::Unexpected(what) => Outcome::Desync(format!("unexpected reply: {what}")),
        };
        match outcome {
            Outcome::Nothing => {}
            Outcome::Dirty(ch) => {
                self.dirty.insert(ch);
            }
            Outcome::Dropped(ch) => {
                tracing::debug!(redis = %addr, channel = %ch, "redis dropped a subscription");
                *self.dropped.entry(addr.clone()).or_default() += 1;
                if self.is_cluster() {
                    // The server gave the slot up (migrated away, or demoted
                    // to replica). Do not subscribe there again on the old
                    // map: a replica *accepts* SSUBSCRIBE for its primary's
                    // slots, and the later move to the real primary would
                    // briefly deliver twice.
                    if let Some(chan) = self.channels.get(&ch) {
                        self.disowned.entry(addr).or_default().insert(chan.slot);
                    }
                    self.refresh.requested = true;
                    self.refresh.floor = Some(Instant::now());
                }
                self.dirty.insert(ch);
            }
            Outcome::Refused(ch, e) => self.on_refused(&addr, ch, e),
            Outcome::Desync(why) => {
                tracing::error!(redis = %addr, reason = %why, "redis subscriber connection out of sync; reconnecting");
                self.drop_connection(&addr, true);
            }
        }
    }

    fn on_refused(&mut self, addr: &NodeAddr, ch: Arc<str>, e: redis::ServerError) {
        if e.kind() == Some(ServerErrorKind::Moved)
            && let Some((slot, to)) = parse_moved(e.details())
        {
            let redirects = match self.channels.get_mut(&ch) {
                Some(chan) => {
                    chan.redirects += 1;
                    chan.redirects
                }
                None => 0,
            };
            tracing::debug!(redis = %addr, channel = %ch, slot, to = %to, "subscription redirected");
            if redirects > MAX_REDIRECTS {
                self.defer(ch.clone());
            } else {
                self.redirect(slot, &to);
            }
        } else {
            let again = self
                .channels
                .get_mut(&ch)
                .is_some_and(|c| std::mem::replace(&mut c.refused, true));
            if again {
                tracing::debug!(redis = %addr, channel = %ch, error = %e, "redis refused a subscription again");
            } else {
                tracing::warn!(redis = %addr, channel = %ch, error = %e, "redis refused a subscription; retrying");
            }
            self.shared
                .set_error(format!("{addr} refused to subscribe {ch}: {e}"));
            self.defer(ch.clone());
            if self.is_cluster() {
                self.refresh.requested = true;
            }
        }
        self.dirty.insert(ch);
    }

    fn defer(&mut self, ch: Arc<str>) {
        self.deferred.insert(ch);
        if self.deferred_until.is_none() {
            self.deferred_until = Some(Instant::now() + RETRY_DELAY);
        }
    }

    /// `slot` is served by `addr` (from a `MOVED`): patch the map, move the
    /// slot's channels, and reload the whole map soon.
    fn redirect(&mut self, slot: u16, addr: &NodeAddr) {
        if !self.is_cluster() {
            return;
        }
        self.refresh.requested = true;
        let current = self.shared.topology();
        if current.owner(slot) == Some(addr) {
            return;
        }
        self.refresh.floor = Some(Instant::now());
        *self.shared.topology.write() = Arc::new(current.with_owner(slot, addr));
        if let Some(channels) = self.by_slot.get(&slot) {
            self.dirty.extend(channels.iter().cloned());
        }
    }

    fn on_topology(&mut self, started: Instant, result: Result<(Topology, NodeAddr), String>) {
        self.refresh.in_flight = false;
        if self.refresh.floor.is_some_and(|floor| started < floor) {
            // Fetched before a server told us of a change: may undo it.
            self.refresh.requested = true;
            return;
        }
        match result {
            Ok((mut topology, from)) => {
                let stale = self.stale_slots(&topology);
                if !stale.is_empty() {
                    tracing::debug!(from = %from, slots = stale.values().map(Vec::len).sum::<usize>(), "slot map names servers that gave those slots up; not believed yet");
                    for (addr, slots) in &stale {
                        topology = topology.without_owner(slots, addr);
                    }
                    self.refresh.requested = true;
                }
                if self.refresh.failures > 0 {
                    tracing::info!(from = %from, "redis cluster slot map loaded again");
                }
                self.refresh.failures = 0;
                self.shared.telemetry.topology_refreshed();
                let old = self.shared.topology();
                let changed = old.changed_slots(&topology);
                if old.owners().is_empty() {
                    tracing::info!(from = %from, primaries = ?topology.owners(), "redis cluster slot map loaded");
                } else if !changed.is_empty() {
                    tracing::info!(
                        from = %from,
                        slots = changed.len(),
                        primaries = ?topology.owners(),
                        "redis cluster slot map changed"
                    );
                }
                if !changed.is_empty() {
                    for slot in &changed {
                        if let Some(channels) = self.by_slot.get(slot) {
                            self.dirty.extend(channels.iter().cloned());
                        }
                    }
                    for chan in self.channels.values_mut() {
                        chan.redirects = 0;
                    }
                    self.dirty.extend(self.deferred.drain());
                }
                let keep: HashSet<NodeAddr> = topology
                    .owners()
                    .iter()
                    .chain(topology.replicas())
                    .chain(self.seeds())
                    .cloned()
                    .collect();
                self.shared.pool.retain(&|a| keep.contains(a));
                *self.shared.topology.write() = Arc::new(topology);
            }
            Err(e) => {
                self.refresh.failures += 1;
                if self.refresh.failures == 1 {
                    tracing::warn!(error = %e, "cannot load the redis cluster slot map; retrying");
                } else {
                    tracing::debug!(error = %e, attempt = self.refresh.failures, "cannot load the redis cluster slot map");
                }
                self.shared.set_error(e);
                self.refresh.requested = true;
            }
        }
    }

    /// Slots that `topology` gives to a server that recently gave them up;
    /// forgets the suspicions a map resolved (another owner) or that
    /// expired.
    fn stale_slots(&mut self, topology: &Topology) -> HashMap<NodeAddr, Vec<u16>> {
        let mut stale: HashMap<NodeAddr, Vec<u16>> = HashMap::new();
        self.suspects.retain(|&slot, (addr, since)| {
            if since.elapsed() > DISOWN_TTL {
                return false;
            }
            match topology.owner(slot) {
                Some(owner) if owner == addr => {
                    stale.entry(addr.clone()).or_default().push(slot);
                    true
                }
                Some(_) => false,
                None => true,
            }
        });
        stale
    }

    fn seeds(&self) -> &[NodeAddr] {
        match &self.routing {
            Routing::Cluster { seeds } => seeds,
            Routing::Hashed(_) => &[],
        }
    }

    fn health_check(&mut self, now: Instant) {
        let limit = self.shared.options.request_timeout;
        let mut dead = Vec::new();
        for (addr, node) in &mut self.nodes {
            let NodeState::Live(live) = &mut node.state else {
                continue;
            };
            if live.fifo.is_empty() {
                live.send(self.flavor, Cmd::Ping);
            } else if now.duration_since(live.last_progress) > limit {
                dead.push(addr.clone());
            }
        }
        for addr in dead {
            tracing::warn!(redis = %addr, timeout = ?limit, "redis subscriber connection unresponsive; reconnecting");
            self.shared
                .set_error(format!("{addr} did not answer within {limit:?}"));
            self.drop_connection(&addr, true);
        }
    }

    // ----- reconciliation -----------------------------------------------

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

    fn route(&self, chan: &Chan, topology: &Topology) -> Option<NodeAddr> {
        match &self.routing {
            Routing::Hashed(servers) => servers.get(chan.shard).cloned(),
            Routing::Cluster { .. } => topology.owner(chan.slot).cloned(),
        }
    }

    fn reconcile(&mut self, ch: &Arc<str>, topology: &Topology) {
        let Some(chan) = self.channels.get(ch) else {
            return;
        };
        let target = if chan.wanted {
            self.route(chan, topology)
        } else {
            None
        };
        if chan.wanted && target.is_none() {
            // No known server for it yet (cluster map missing or partial).
            self.refresh.requested = true;
        }
        let wanted = chan.wanted;
        let resubscribe = chan.confirmed_once;
        let deferred = self.deferred.contains(ch);
        let flavor = self.flavor;

        // Make: subscribe where it belongs.
        let mut on_target = false;
        if let Some(addr) = &target
            && let Some(node) = self.nodes.get_mut(addr)
            && let NodeState::Live(live) = &mut node.state
        {
            if !live.effective.contains(ch) && !deferred {
                live.send(flavor, Cmd::Sub(ch.clone()));
                if resubscribe {
                    self.shared.telemetry.resubscribed(1);
                }
            }
            on_target = live.confirmed(ch);
        }
        // Break: unsubscribe elsewhere once the new home confirmed, or at
        // once when the channel is no longer wanted. A wanted channel with
        // no known home (partial slot map) stays where it is.
        let release = !wanted || on_target;
        let mut confirmed = false;
        let mut held = false;
        for (addr, node) in &mut self.nodes {
            let NodeState::Live(live) = &mut node.state else {
                continue;
            };
            if release && Some(addr) != target.as_ref() && live.effective.contains(ch) {
                live.send(flavor, Cmd::Unsub(ch.clone()));
            }
            confirmed |= live.confirmed(ch);
            held |= live.holds(ch);
        }

        let Some(chan) = self.channels.get_mut(ch) else {
            return;
        };
        if chan.wanted && confirmed {
            chan.confirmed_once = true;
            chan.redirects = 0;
            chan.refused = false;
            for done in chan.subscribers.drain(..) {
                let _ = done.send(());
            }
        }
        if !chan.wanted && !held {
            for done in chan.unsubscribers.drain(..) {
                let _ = done.send(());
            }
            let slot = chan.slot;
            self.channels.remove(ch);
            self.deferred.remove(ch);
            if let Some(set) = self.by_slot.get_mut(&slot) {
                set.remove(ch);
                if set.is_empty() {
                    self.by_slot.remove(&slot);
                }
            }
        }
    }

    /// The servers that must have a subscriber connection.
    fn required(&self, topology: &Topology) -> Vec<NodeAddr> {
        match &self.routing {
            Routing::Hashed(servers) => servers.clone(),
            Routing::Cluster { .. } => topology.owners().to_vec(),
        }
    }

    /// Connects the required servers (respecting their backoff) and closes
    /// connections nobody needs any more.
    fn manage_nodes(&mut self, now: Instant, topology: &Topology) {
        let required = self.required(topology);
        for addr in &required {
            self.node_entry(addr);
        }
        let mut to_connect = Vec::new();
        self.nodes.retain(|addr, node| {
            let needed = required.contains(addr);
            match &node.state {
                NodeState::Idle if needed => {
                    if node.retry_at <= now {
                        to_connect.push(addr.clone());
                    }
                    true
                }
                NodeState::Idle | NodeState::Connecting(_) => needed,
                NodeState::Live(live) => {
                    if !needed && live.is_idle() {
                        tracing::debug!(redis = %addr, "closing the subscriber connection of a former primary");
                        false
                    } else {
                        true
                    }
                }
            }
        });
        for addr in to_connect {
            self.connect(addr);
        }
    }

    fn connect(&mut self, addr: NodeAddr) {
        let generation = self.next_generation;
        self.next_generation += 1;
        if let Some(node) = self.nodes.get_mut(&addr) {
            node.state = NodeState::Connecting(generation);
        }
        let shared = self.shared.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let auth = shared.pool.auth_for(&addr);
            let timeout = shared.options.connect_timeout;
            let event = match connection::open(
                addr.clone(),
                generation,
                &auth,
                timeout,
                shared.clone(),
                events.clone(),
            )
            .await
            {
                Ok(conn) => Event::Connected {
                    addr,
                    generation,
                    conn,
                },
                Err(error) => Event::ConnectFailed {
                    addr,
                    generation,
                    error,
                },
            };
            let _ = events.send(event);
        });
    }

    fn update_status(&mut self, topology: &Topology) {
        let required = self.required(topology);
        let live = |addr: &NodeAddr| {
            matches!(
                self.nodes.get(addr).map(|n| &n.state),
                Some(NodeState::Live(_))
            )
        };
        let (up, why) = match &self.routing {
            Routing::Hashed(_) => (required.iter().all(live), "redis server unreachable"),
            Routing::Cluster { .. } => {
                if !topology.is_complete() {
                    (false, "cluster slot map incomplete or unknown")
                } else {
                    (required.iter().all(live), "cluster primary unreachable")
                }
            }
        };
        let status = if up {
            BrokerStatus::Up
        } else {
            BrokerStatus::Down
        };
        self.shared.telemetry.set_status(status, why);
        if !up && self.is_cluster() {
            self.refresh.requested = true;
        }
    }

    fn maybe_refresh(&mut self, now: Instant, topology: &Topology) {
        let interval = self.shared.options.topology_refresh_interval;
        let r = &mut self.refresh;
        if r.in_flight {
            return;
        }
        let requested = r.requested && now >= r.earliest(now);
        let periodic = r.next_periodic.is_none_or(|t| now >= t);
        if !requested && !periodic {
            return;
        }
        r.in_flight = true;
        r.requested = false;
        r.last_start = Some(now);
        r.next_periodic = Some(now + interval);

        // Ask first the servers that gave slots up (they know who took
        // them), then live primaries, the other primaries, the seeds and the
        // replicas.
        let mut candidates: Vec<NodeAddr> = Vec::new();
        let mut push = |a: &NodeAddr| {
            if !candidates.contains(a) {
                candidates.push(a.clone());
            }
        };
        self.suspects.values().for_each(|(a, _)| push(a));
        for addr in topology.owners() {
            if matches!(
                self.nodes.get(addr).map(|n| &n.state),
                Some(NodeState::Live(_))
            ) {
                push(addr);
            }
        }
        topology.owners().iter().for_each(&mut push);
        self.seeds().iter().for_each(&mut push);
        topology.replicas().iter().for_each(&mut push);

        let shared = self.shared.clone();
        let events = self.events_tx.clone();
        let timeout = shared.options.request_timeout;
        tokio::spawn(async move {
            let result = topology::fetch(&shared.pool, &candidates, timeout).await;
            let _ = events.send(Event::Topology {
                started: now,
                result,
            });
        });
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

/// `"<slot> <host>:<port>"` of a `MOVED` error.
fn parse_moved(details: Option<&str>) -> Option<(u16, NodeAddr)> {
    let mut parts = details?.split_ascii_whitespace();
    let slot = parts.next()?.parse().ok()?;
    let addr = NodeAddr::parse(parts.next()?)?;
    Some((slot, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_details() {
        let (slot, addr) = parse_moved(Some("3999 127.0.0.1:6381")).unwrap();
        assert_eq!(slot, 3999);
        assert_eq!(addr.to_string(), "127.0.0.1:6381");
        assert!(parse_moved(Some("garbage")).is_none());
        assert!(parse_moved(None).is_none());
    }
}
