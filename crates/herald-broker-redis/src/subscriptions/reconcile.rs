//! Reconciliation: the level-triggered step that brings one channel's
//! subscriptions in line with what the registry wants.
//!
//! Kept in one place because every fault ends here: whatever happened
//! (a lost connection, a pushed `sunsubscribe`, a moved slot), the manager
//! only marks channels dirty, and this step compares the desired state
//! with each connection's truth and sends what is missing, make before
//! break. It also completes `subscribe`/`unsubscribe` waiters and reports
//! resyncs.

use std::sync::Arc;

use super::live::Cmd;
use super::nodes::NodeState;
use super::{Chan, Manager, Routing};
use crate::cluster::topology::Topology;
use crate::connection::NodeAddr;

impl Manager {
    /// The server that must carry `chan` now, if known.
    pub(super) fn route(&self, chan: &Chan, topology: &Topology) -> Option<NodeAddr> {
        match &self.routing {
            Routing::Hashed(servers) => servers.get(chan.shard).cloned(),
            Routing::Cluster { .. } => topology.owner(chan.slot).cloned(),
        }
    }

    /// Brings one channel's subscriptions in line with its desired state
    /// (see the module docs), completes its waiters and reports a resync
    /// once a resubscription is confirmed.
    pub(super) fn reconcile(&mut self, ch: &Arc<str>, topology: &Topology) {
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
        let mut resync = false;
        if let Some(addr) = &target
            && let Some(node) = self.nodes.get_mut(addr)
            && let NodeState::Live(live) = &mut node.state
        {
            if !live.effective.contains(ch) && !deferred {
                live.send(flavor, Cmd::Sub(ch.clone()));
                if resubscribe {
                    self.shared.telemetry.resubscribed(1);
                    resync = true;
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
        if resync && let Some(sink) = self.shared.sink.get() {
            // Before anything can arrive on the new subscription.
            sink.interrupted(&chan.herald);
        }
        chan.resync |= resync;
        if chan.wanted && confirmed {
            chan.confirmed_once = true;
            chan.redirects = 0;
            chan.refused = false;
            for done in chan.subscribers.drain(..) {
                let _ = done.send(());
            }
            // Confirmed where it belongs, nothing in flight: the channel
            // flows again, and what was published meanwhile is repaired
            // from history by the node.
            if chan.resync && on_target {
                chan.resync = false;
                if let Some(sink) = self.shared.sink.get() {
                    sink.resync(&chan.herald);
                }
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
}
