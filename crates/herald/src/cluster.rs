//! What makes several nodes one cluster: messages addressed to a user, and
//! nodes announcing themselves.
//!
//! Both travel as publications on reserved channels (`#herald/...`) through
//! the same [`Broker`](crate::Broker) as client channels, so they need
//! nothing beyond the broker a cluster already has:
//!
//! * `#herald/user/<id>`: a node is subscribed while it holds at least one
//!   socket authenticated as user `<id>` (the token's `sub` claim by
//!   default). [`Users`] publishes an operation there (transmit an event,
//!   disconnect, kick out of a channel) and every node applies it to its own
//!   sockets of that user.
//! * `#herald/nodes`: every node publishes an announcement (id, socket,
//!   client and channel counts) every `announce_interval`, and forgets a
//!   node that missed three announcements.
//!
//! Clients can neither subscribe nor publish to `#herald/` channels.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::broker::{BrokerStatus, Publication};
use crate::publish::{Origin, PublishError};
use crate::server::ServerInner;
use crate::socket::Socket;

/// Prefix of the channels Herald reserves for itself.
pub const RESERVED_PREFIX: &str = "#herald/";
const USER_PREFIX: &str = "#herald/user/";
const NODES_CHANNEL: &str = "#herald/nodes";

/// The reserved channel of a user's messages.
pub(crate) fn user_channel(user: &str) -> String {
    format!("{USER_PREFIX}{user}")
}

/// An operation on every socket of a user, on every node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum UserOp {
    Transmit {
        event: String,
        #[serde(default)]
        data: Option<Value>,
    },
    Disconnect {
        code: u16,
        #[serde(default)]
        reason: String,
    },
    Kick {
        channel: String,
        #[serde(default)]
        message: Option<Value>,
    },
}

/// A node's announcement on `#herald/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Announcement {
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

/// Cluster state of one node.
pub(crate) struct Cluster {
    /// Local sockets by user id.
    users: Mutex<HashMap<Arc<str>, HashSet<u64>>>,
    /// Other nodes (and this one) by id, with the time of their last
    /// announcement.
    nodes: Mutex<HashMap<String, (Announcement, Instant)>>,
}

impl Cluster {
    pub(crate) fn new() -> Self {
        Self {
            users: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// Records that a local socket is authenticated as `user`.
    pub(crate) fn add_user_socket(&self, user: &Arc<str>, key: u64) {
        self.users
            .lock()
            .entry(user.clone())
            .or_default()
            .insert(key);
    }

    /// Forgets a local socket of `user`.
    pub(crate) fn remove_user_socket(&self, user: &str, key: u64) {
        let mut users = self.users.lock();
        if let Some(set) = users.get_mut(user) {
            set.remove(&key);
            if set.is_empty() {
                users.remove(user);
            }
        }
    }

    fn user_sockets(&self, user: &str) -> Vec<u64> {
        self.users
            .lock()
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Applies a publication on a reserved channel to this node.
pub(crate) fn on_control(server: &Arc<ServerInner>, publication: &Publication) {
    let Some(data) = publication.data.as_deref() else {
        return;
    };
    if let Some(user) = publication.channel.strip_prefix(USER_PREFIX) {
        match serde_json::from_str::<UserOp>(data.get()) {
            Ok(op) => apply_user_op(server, user, op),
            Err(e) => tracing::warn!(error = %e, "ignored a malformed user message"),
        }
    } else if &*publication.channel == NODES_CHANNEL {
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
}

fn apply_user_op(server: &Arc<ServerInner>, user: &str, op: UserOp) {
    let keys = server.cluster.user_sockets(user);
    if keys.is_empty() {
        return;
    }
    let sockets: Vec<Socket> = {
        let all = server.sockets.lock();
        keys.iter().filter_map(|k| all.get(k).cloned()).collect()
    };
    match op {
        UserOp::Transmit { event, data } => {
            // Encode once for every socket of the user.
            let data = data.and_then(|d| serde_json::value::to_raw_value(&d).ok());
            for s in &sockets {
                let _ = s.transmit_raw(&event, data.as_deref());
            }
        }
        UserOp::Disconnect { code, reason } => {
            for s in &sockets {
                s.disconnect(code, reason.clone());
            }
        }
        UserOp::Kick { channel, message } => {
            let message = message.unwrap_or(Value::Null);
            for s in sockets {
                let channel = channel.clone();
                let message = message.clone();
                tokio::spawn(async move { s.kick_out(&channel, &message).await });
            }
        }
    }
}

/// Messages to users, on every node of the cluster. From
/// [`Server::users`](crate::Server::users).
#[derive(Clone)]
pub struct Users(pub(crate) Arc<ServerInner>);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Users")
    }
}

impl Users {
    async fn send(&self, user: &str, op: &UserOp) -> Result<(), PublishError> {
        let raw = serde_json::value::to_raw_value(op)?;
        self.0
            .publish(Origin::Control, &user_channel(user), Some(raw))
            .await?;
        Ok(())
    }

    /// Transmits `event` to every socket of `user`, on every node.
    pub async fn transmit<T: Serialize + ?Sized>(
        &self,
        user: &str,
        event: &str,
        data: &T,
    ) -> Result<(), PublishError> {
        let data = Some(serde_json::to_value(data)?);
        self.send(
            user,
            &UserOp::Transmit {
                event: event.to_owned(),
                data,
            },
        )
        .await
    }

    /// Disconnects every socket of `user`, on every node.
    pub async fn disconnect(
        &self,
        user: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), PublishError> {
        self.send(
            user,
            &UserOp::Disconnect {
                code,
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Kicks every socket of `user` out of `channel`, on every node.
    pub async fn kick_out<T: Serialize + ?Sized>(
        &self,
        user: &str,
        channel: &str,
        message: &T,
    ) -> Result<(), PublishError> {
        let message = Some(serde_json::to_value(message)?);
        self.send(
            user,
            &UserOp::Kick {
                channel: channel.to_owned(),
                message,
            },
        )
        .await
    }

    /// This node's sockets authenticated as `user`.
    pub fn local_sockets(&self, user: &str) -> Vec<Socket> {
        let keys = self.0.cluster.user_sockets(user);
        let all = self.0.sockets.lock();
        keys.iter().filter_map(|k| all.get(k).cloned()).collect()
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

async fn announce(server: &ServerInner, leaving: bool) {
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

/// The node's background duties: subscribe to `#herald/nodes`, announce
/// this node every `interval`, forget silent nodes, watch the broker's
/// status. Ends (announcing the departure) when the server shuts down.
pub(crate) async fn run(server: Weak<ServerInner>, interval: Duration) {
    let Some(s) = server.upgrade() else { return };
    let shutdown = s.shutdown.clone();
    // Subscribing needs the broker: retry until it answers.
    let mut delay = Duration::from_millis(100);
    loop {
        match s.registry.subscribe_node(NODES_CHANNEL).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to cluster announcements; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut broker_up = s.registry.broker().status() == BrokerStatus::Up;
    drop(s);
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let Some(s) = server.upgrade() else { return };
        let up = s.registry.broker().status() == BrokerStatus::Up;
        if up != broker_up {
            broker_up = up;
            if up {
                tracing::info!(broker = s.registry.broker().name(), "broker is up");
            } else {
                tracing::warn!(broker = s.registry.broker().name(), "broker is down");
            }
        }
        announce(&s, false).await;
        let stale = interval * 3;
        let now = Instant::now();
        s.cluster.nodes.lock().retain(|id, (_, seen)| {
            let keep = now.duration_since(*seen) < stale;
            if !keep {
                tracing::warn!(node = %id, "node stopped announcing; removed from the cluster view");
            }
            keep
        });
    }
    if let Some(s) = server.upgrade() {
        announce(&s, true).await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ops_round_trip() {
        let op = UserOp::Kick {
            channel: "c".into(),
            message: Some(Value::from("bye")),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(text, r#"{"op":"kick","channel":"c","message":"bye"}"#);
        assert!(matches!(
            serde_json::from_str::<UserOp>(&text).unwrap(),
            UserOp::Kick { .. }
        ));
    }

    #[test]
    fn user_socket_index() {
        let c = Cluster::new();
        let u: Arc<str> = Arc::from("bob");
        c.add_user_socket(&u, 1);
        c.add_user_socket(&u, 2);
        c.remove_user_socket("bob", 1);
        assert_eq!(c.user_sockets("bob"), vec![2]);
        c.remove_user_socket("bob", 2);
        assert!(c.users.lock().is_empty());
    }
}
