//! Nodes announcing themselves on `#herald/nodes`, and the cluster as one
//! node sees it: who announced lately, with their counts.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::NODES_CHANNEL;
use crate::publish::Origin;
use crate::server::ServerInner;

/// A node's announcement on `#herald/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Announcement {
    node: String,
    sockets: usize,
    clients: usize,
    channels: usize,
    #[serde(default)]
    leaving: bool,
}

/// What this node knows of another node (or itself).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// The node id.
    pub id: String,
    /// Open sockets on that node.
    pub sockets: usize,
    /// Handshaken sockets on that node.
    pub clients: usize,
    /// Channels with subscribers on that node.
    pub channels: usize,
    /// Milliseconds since its last announcement.
    pub last_seen_ms: u64,
}

/// Records (or forgets, when it leaves) the node that announced `data`.
pub(super) fn on_announcement(server: &ServerInner, data: &RawValue) {
    match serde_json::from_str::<Announcement>(data.get()) {
        Ok(a) => {
            let mut nodes = server.cluster.nodes.lock();
            if a.leaving {
                if nodes.remove(&a.node).is_some() {
                    tracing::info!(node = %a.node, "node left the cluster");
                }
            } else {
                if !nodes.contains_key(&a.node) && a.node != *server.node_id {
                    tracing::info!(node = %a.node, "node joined the cluster");
                }
                nodes.insert(a.node.clone(), (a, Instant::now()));
            }
        }
        Err(e) => tracing::warn!(error = %e, "ignored a malformed node announcement"),
    }
}

fn announcement(server: &ServerInner, leaving: bool) -> Announcement {
    let (sockets, clients) = {
        let all = server.sockets.lock();
        let clients = all
            .values()
            .filter(|s| s.state() == crate::SocketState::Open)
            .count();
        (all.len(), clients)
    };
    Announcement {
        node: server.node_id.to_string(),
        sockets,
        clients,
        channels: server.registry.channel_count(),
        leaving,
    }
}

/// Publishes this node's announcement (or its departure).
pub(super) async fn announce(server: &ServerInner, leaving: bool) {
    let a = announcement(server, leaving);
    let Ok(raw) = serde_json::value::to_raw_value(&a) else {
        return;
    };
    if let Err(e) = server
        .publish(Origin::Control, NODES_CHANNEL, Some(raw))
        .await
    {
        tracing::debug!(error = %e, "node announcement not published");
    }
}

/// Forgets the nodes silent for `stale` or longer.
pub(super) fn forget_silent(server: &ServerInner, stale: Duration) {
    let now = Instant::now();
    server.cluster.nodes.lock().retain(|id, (_, seen)| {
        let keep = now.duration_since(*seen) < stale;
        if !keep {
            tracing::warn!(node = %id, "node stopped announcing; removed from the cluster view");
        }
        keep
    });
}

/// The cluster as this node sees it, itself included.
pub(crate) fn nodes(server: &ServerInner) -> Vec<NodeInfo> {
    let now = Instant::now();
    let mut list: Vec<NodeInfo> = server
        .cluster
        .nodes
        .lock()
        .values()
        .map(|(a, seen)| NodeInfo {
            id: a.node.clone(),
            sockets: a.sockets,
            clients: a.clients,
            channels: a.channels,
            last_seen_ms: now.duration_since(*seen).as_millis() as u64,
        })
        .collect();
    if !list.iter().any(|n| *n.id == *server.node_id) {
        let a = announcement(server, false);
        list.push(NodeInfo {
            id: a.node,
            sockets: a.sockets,
            clients: a.clients,
            channels: a.channels,
            last_seen_ms: 0,
        });
    }
    list.sort_by(|a, b| a.id.cmp(&b.id));
    list
}
