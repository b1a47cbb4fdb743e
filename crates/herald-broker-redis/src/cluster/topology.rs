//! The Redis Cluster slot map: which primary serves which slot.
//!
//! The subscription manager subscribes each channel on the primary that
//! owns its slot, and the publisher sends `SPUBLISH` there. The map is
//! loaded with `CLUSTER SLOTS` (supported by every Redis Cluster version
//! that has sharded pub/sub) from any reachable node: the known primaries
//! first, then the seed addresses, then the known replicas, so a failover
//! that kills the node last asked is survived. Between full loads a `MOVED`
//! reply patches one slot ([`Topology::with_owner`]), as the server tells
//! the exact new owner.

use std::collections::HashSet;
use std::time::Duration;

use redis::Value;

use super::slots::SLOTS;
use crate::connection::NodeAddr;
use crate::publisher::{Pool, connection_broken};

const NONE: u16 = u16::MAX;

/// A slot map: slot → primary.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// Per slot, an index into `nodes`, or `NONE`. Empty when unknown.
    slots: Vec<u16>,
    nodes: Vec<NodeAddr>,
    /// Nodes owning at least one slot.
    owners: Vec<NodeAddr>,
    replicas: Vec<NodeAddr>,
}

impl Topology {
    /// No map yet: every slot is unserved.
    pub(crate) fn empty() -> Self {
        Self {
            slots: Vec::new(),
            nodes: Vec::new(),
            owners: Vec::new(),
            replicas: Vec::new(),
        }
    }

    fn finish(mut self) -> Self {
        let mut seen = vec![false; self.nodes.len()];
        for &i in &self.slots {
            if i != NONE {
                seen[i as usize] = true;
            }
        }
        self.owners = self
            .nodes
            .iter()
            .zip(seen)
            .filter(|(_, s)| *s)
            .map(|(n, _)| n.clone())
            .collect();
        self
    }

    /// The primary serving `slot`.
    pub(crate) fn owner(&self, slot: u16) -> Option<&NodeAddr> {
        match self.slots.get(slot as usize) {
            Some(&i) if i != NONE => self.nodes.get(i as usize),
            _ => None,
        }
    }

    /// The primaries that serve at least one slot.
    pub(crate) fn owners(&self) -> &[NodeAddr] {
        &self.owners
    }

    /// Replicas (only used as places to ask for the map).
    pub(crate) fn replicas(&self) -> &[NodeAddr] {
        &self.replicas
    }

    /// Whether every slot has an owner.
    pub(crate) fn is_complete(&self) -> bool {
        self.slots.len() == SLOTS && self.slots.iter().all(|&i| i != NONE)
    }

    fn covered(&self) -> usize {
        self.slots.iter().filter(|&&i| i != NONE).count()
    }

    /// This map with `slot` moved to `addr` (after a `MOVED` reply).
    pub(crate) fn with_owner(&self, slot: u16, addr: &NodeAddr) -> Self {
        let mut next = self.clone();
        if next.slots.len() != SLOTS {
            next.slots = vec![NONE; SLOTS];
        }
        let index = match next.nodes.iter().position(|n| n == addr) {
            Some(i) => i,
            None => {
                next.nodes.push(addr.clone());
                next.nodes.len() - 1
            }
        };
        next.slots[slot as usize] = index as u16;
        next.replicas.retain(|r| r != addr);
        next.finish()
    }

    /// This map without `addr` as the owner of `slots` (after `addr` dropped
    /// their subscriptions: it no longer serves them, and the new owner is
    /// not known yet).
    pub(crate) fn without_owner(&self, slots: &[u16], addr: &NodeAddr) -> Self {
        let mut next = self.clone();
        if let Some(index) = next.nodes.iter().position(|n| n == addr) {
            for &slot in slots {
                if let Some(s) = next.slots.get_mut(slot as usize)
                    && *s as usize == index
                {
                    *s = NONE;
                }
            }
        }
        next.finish()
    }

    /// Slots whose owner differs between the two maps.
    pub(crate) fn changed_slots(&self, other: &Topology) -> Vec<u16> {
        (0..SLOTS as u16)
            .filter(|&s| self.owner(s) != other.owner(s))
            .collect()
    }

    /// Reads a `CLUSTER SLOTS` reply. An empty or unknown host means "the
    /// node you asked" (`queried`).
    pub(crate) fn from_cluster_slots(value: &Value, queried: &NodeAddr) -> Result<Self, String> {
        let Value::Array(ranges) = value else {
            return Err(format!("CLUSTER SLOTS: unexpected reply {value:?}"));
        };
        let mut topology = Topology {
            slots: vec![NONE; SLOTS],
            nodes: Vec::new(),
            owners: Vec::new(),
            replicas: Vec::new(),
        };
        let mut replicas = HashSet::new();
        for range in ranges {
            let Value::Array(items) = range else {
                return Err("CLUSTER SLOTS: range is not an array".into());
            };
            let (Some(start), Some(end)) =
                (items.first().and_then(int), items.get(1).and_then(int))
            else {
                return Err("CLUSTER SLOTS: range without bounds".into());
            };
            if start > end || end >= SLOTS as i64 || start < 0 {
                return Err(format!("CLUSTER SLOTS: bad range {start}-{end}"));
            }
            let Some(primary) = items.get(2).and_then(|n| node(n, queried)) else {
                return Err("CLUSTER SLOTS: range without primary".into());
            };
            for r in items.iter().skip(3) {
                if let Some(r) = node(r, queried) {
                    replicas.insert(r);
                }
            }
            let index = match topology.nodes.iter().position(|n| *n == primary) {
                Some(i) => i,
                None => {
                    topology.nodes.push(primary);
                    topology.nodes.len() - 1
                }
            };
            for slot in start..=end {
                topology.slots[slot as usize] = index as u16;
            }
        }
        topology.replicas = replicas
            .into_iter()
            .filter(|r| !topology.nodes.contains(r))
            .collect();
        topology.replicas.sort();
        Ok(topology.finish())
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[host, port, id, ...]`.
fn node(v: &Value, queried: &NodeAddr) -> Option<NodeAddr> {
    let Value::Array(items) = v else { return None };
    let host = items.first().and_then(text)?;
    let port = u16::try_from(items.get(1).and_then(int)?).ok()?;
    if host.is_empty() || host == "?" {
        return Some(NodeAddr {
            host: queried.host.clone(),
            port,
        });
    }
    Some(NodeAddr::new(&host, port))
}

/// Loads the slot map from the first candidate that answers with a complete
/// one (or the most complete answer when none is). Returns the map and who
/// gave it.
pub(crate) async fn fetch(
    pool: &Pool,
    candidates: &[NodeAddr],
    timeout: Duration,
) -> Result<(Topology, NodeAddr), String> {
    let mut best: Option<(Topology, NodeAddr)> = None;
    let mut last_error = String::from("no node to ask");
    for addr in candidates {
        let ask = async {
            let mut conn = pool.get(addr).await?;
            let reply: Value = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn)
                .await
                .map_err(|e| {
                    if connection_broken(&e) {
                        pool.invalidate(addr);
                    }
                    format!("CLUSTER SLOTS on {addr}: {e}")
                })?;
            Topology::from_cluster_slots(&reply, addr)
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(t)) if t.is_complete() => return Ok((t, addr.clone())),
            Ok(Ok(t)) => {
                if best.as_ref().is_none_or(|(b, _)| t.covered() > b.covered()) {
                    best = Some((t, addr.clone()));
                }
            }
            Ok(Err(e)) => last_error = e,
            Err(_) => {
                pool.invalidate(addr);
                last_error = format!("CLUSTER SLOTS on {addr}: timed out");
            }
        }
    }
    best.ok_or(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn n(host: &str, port: i64) -> Value {
        Value::Array(vec![bulk(host), Value::Int(port), bulk("id")])
    }

    fn range(start: i64, end: i64, nodes: Vec<Value>) -> Value {
        let mut v = vec![Value::Int(start), Value::Int(end)];
        v.extend(nodes);
        Value::Array(v)
    }

    #[test]
    fn parses_cluster_slots() {
        let reply = Value::Array(vec![
            range(0, 5460, vec![n("127.0.0.1", 7000), n("127.0.0.1", 7003)]),
            range(5461, 10922, vec![n("", 7001)]),
            range(
                10923,
                16383,
                vec![n("127.0.0.1", 7002), n("127.0.0.1", 7005)],
            ),
        ]);
        let queried = NodeAddr::new("10.0.0.9", 7001);
        let t = Topology::from_cluster_slots(&reply, &queried).unwrap();
        assert!(t.is_complete());
        assert_eq!(t.owner(0).unwrap().to_string(), "127.0.0.1:7000");
        assert_eq!(t.owner(5461).unwrap().to_string(), "10.0.0.9:7001");
        assert_eq!(t.owner(16383).unwrap().to_string(), "127.0.0.1:7002");
        assert_eq!(t.owners().len(), 3);
        assert_eq!(t.replicas().len(), 2);

        let dropped = t.without_owner(&[0, 6000], &NodeAddr::new("127.0.0.1", 7000));
        assert!(dropped.owner(0).is_none());
        assert_eq!(dropped.owner(6000), t.owner(6000), "not 7000's slot");
        assert!(!dropped.is_complete());

        let moved = t.with_owner(0, &NodeAddr::new("127.0.0.1", 7002));
        assert_eq!(moved.owner(0).unwrap().to_string(), "127.0.0.1:7002");
        assert_eq!(moved.changed_slots(&t), vec![0]);
        assert_eq!(moved.owners().len(), 3, "7000 still owns 1..=5460");
    }

    #[test]
    fn incomplete_map() {
        let reply = Value::Array(vec![range(0, 100, vec![n("127.0.0.1", 7000)])]);
        let t = Topology::from_cluster_slots(&reply, &NodeAddr::new("h", 1)).unwrap();
        assert!(!t.is_complete());
        assert!(t.owner(101).is_none());
        assert!(Topology::empty().owner(0).is_none());
    }
}
