//! The Redis Cluster slot map as the manager follows it: periodic and
//! event-driven loads, `MOVED` patches, and the servers that gave slots up
//! (suspects), whose stale maps are not believed for a while.
//!
//! See the module docs of [`super`] (Faults) for why a demoted primary must
//! not be trusted with a slot again before the cluster agrees.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;

use super::nodes::NodeState;
use super::{DISOWN_TTL, Manager, REFRESH_MIN_GAP, Routing};
use crate::cluster::topology::Topology;
use crate::connection::NodeAddr;

/// The state of slot map loads.
#[derive(Default)]
pub(super) struct Refresh {
    pub(super) in_flight: bool,
    pub(super) requested: bool,
    pub(super) last_start: Option<Instant>,
    pub(super) next_periodic: Option<Instant>,
    pub(super) failures: u32,
    /// Maps fetched before this instant are stale: a server told us since
    /// (by `MOVED` or by dropping subscriptions) that a slot changed hands.
    pub(super) floor: Option<Instant>,
}

impl Refresh {
    /// When a requested refresh may start: at once when a server reported a
    /// change since the last one started, else after a gap that grows with
    /// consecutive failures.
    pub(super) fn earliest(&self, now: Instant) -> Instant {
        let Some(last) = self.last_start else {
            return now;
        };
        if self.floor.is_some_and(|floor| floor > last) {
            return now;
        }
        last + REFRESH_MIN_GAP * self.failures.clamp(1, 5)
    }
}

impl Manager {
    /// `slot` is served by `addr` (from a `MOVED`): patch the map, move the
    /// slot's channels, and reload the whole map soon.
    pub(super) fn redirect(&mut self, slot: u16, addr: &NodeAddr) {
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

    pub(super) fn on_topology(
        &mut self,
        started: Instant,
        result: Result<(Topology, NodeAddr), String>,
    ) {
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
    pub(super) fn stale_slots(&mut self, topology: &Topology) -> HashMap<NodeAddr, Vec<u16>> {
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

    pub(super) fn seeds(&self) -> &[NodeAddr] {
        match &self.routing {
            Routing::Cluster { seeds } => seeds,
            Routing::Hashed(_) => &[],
        }
    }

    pub(super) fn maybe_refresh(&mut self, now: Instant, topology: &Topology) {
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

        self.io.load_topology(candidates, now);
    }
}
