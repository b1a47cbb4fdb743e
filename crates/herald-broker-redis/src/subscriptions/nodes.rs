//! The servers the manager connects to: connecting with backoff, the
//! health check, losing a connection, and the broker's status.
//!
//! One subscriber connection per server that must carry channels (the one
//! server, each shard, each cluster primary). Connections are opened
//! through the manager's [`super::Io`], and their outcome comes back as an
//! event, so that this logic runs the same against a fake in the tests.

use tokio::time::Instant;

use herald::BrokerStatus;

use super::live::{Cmd, Live};
use super::{Manager, Routing};
use crate::backoff::Backoff;
use crate::cluster::topology::Topology;
use crate::connection::{NodeAddr, SubConnection};

/// Where the manager is with one server's subscriber connection.
pub(super) enum NodeState {
    /// Not connected; connect at `retry_at` if needed.
    Idle,
    /// Asked [`super::Io::connect`] for this generation.
    Connecting(u64),
    /// Connected.
    Live(Box<Live>),
}

/// One server the manager connects to.
pub(super) struct Node {
    pub(super) state: NodeState,
    pub(super) backoff: Backoff,
    pub(super) retry_at: Instant,
    pub(super) was_connected: bool,
    pub(super) failures: u32,
}

impl Manager {
    /// The entry of `addr`, created idle (connect at once).
    pub(super) fn node_entry(&mut self, addr: &NodeAddr) -> &mut Node {
        let options = &self.shared.options;
        self.nodes.entry(addr.clone()).or_insert_with(|| Node {
            state: NodeState::Idle,
            backoff: Backoff::new(options.min_backoff, options.max_backoff),
            retry_at: Instant::now(),
            was_connected: false,
            failures: 0,
        })
    }

    pub(super) fn live_gen(&self, addr: &NodeAddr) -> Option<u64> {
        match &self.nodes.get(addr)?.state {
            NodeState::Live(live) => Some(live.generation),
            _ => None,
        }
    }

    pub(super) fn on_connected(&mut self, addr: NodeAddr, generation: u64, conn: SubConnection) {
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

    pub(super) fn on_connect_failed(&mut self, addr: NodeAddr, generation: u64, error: String) {
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
    pub(super) fn drop_connection(&mut self, addr: &NodeAddr, immediate: bool) {
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

    pub(super) fn health_check(&mut self, now: Instant) {
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

    /// The servers that must have a subscriber connection.
    pub(super) fn required(&self, topology: &Topology) -> Vec<NodeAddr> {
        match &self.routing {
            Routing::Hashed(servers) => servers.clone(),
            Routing::Cluster { .. } => topology.owners().to_vec(),
        }
    }

    /// Connects the required servers (respecting their backoff) and closes
    /// connections nobody needs any more.
    pub(super) fn manage_nodes(&mut self, now: Instant, topology: &Topology) {
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

    pub(super) fn connect(&mut self, addr: NodeAddr) {
        let generation = self.next_generation;
        self.next_generation += 1;
        if let Some(node) = self.nodes.get_mut(&addr) {
            node.state = NodeState::Connecting(generation);
        }
        self.io.connect(addr, generation);
    }

    pub(super) fn update_status(&mut self, topology: &Topology) {
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
}
