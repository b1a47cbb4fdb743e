//! What makes several nodes one cluster: operations on a user's sockets
//! wherever they are, nodes announcing themselves, and questions one node
//! asks the others.
//!
//! All of it travels as publications on reserved channels (`#herald/...`)
//! through the same [`Broker`](crate::Broker) as client channels, so it needs
//! nothing beyond the broker a cluster already has:
//!
//! * `#herald/user/<id>` ([`users`]): a node is subscribed while it holds at
//!   least one socket authenticated as user `<id>` (the token's `sub` claim
//!   by default). [`Users`] publishes an operation there (transmit an event,
//!   disconnect, subscribe to or kick out of a channel) and every node
//!   applies it to its own sockets of that user.
//! * `#herald/nodes` ([`nodes`]): every node publishes an announcement (id,
//!   socket, client and channel counts) every `announce_interval`, and
//!   forgets a node that missed three announcements.
//! * `#herald/node/<id>` ([`query`]): every node listens on its own channel
//!   for questions from the others (which channels it serves) and for the
//!   answers to its own questions.
//!
//! Clients can neither subscribe nor publish to `#herald/` channels.

mod nodes;
pub(crate) mod query;
mod users;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::broker::{BrokerStatus, Publication};
use crate::server::ServerInner;

pub use nodes::NodeInfo;
pub(crate) use nodes::nodes;
pub use query::{ChannelCount, ClusterChannels};
pub use users::Users;

/// Prefix of the channels Herald reserves for itself.
pub const RESERVED_PREFIX: &str = "#herald/";
const USER_PREFIX: &str = "#herald/user/";
const NODES_CHANNEL: &str = "#herald/nodes";
const NODE_PREFIX: &str = "#herald/node/";

/// The reserved channel of a user's messages.
pub(crate) fn user_channel(user: &str) -> String {
    format!("{USER_PREFIX}{user}")
}

/// The reserved channel of the questions to (and answers for) a node.
pub(crate) fn node_channel(node: &str) -> String {
    format!("{NODE_PREFIX}{node}")
}

/// Cluster state of one node.
pub(crate) struct Cluster {
    /// Local sockets by user id.
    users: Mutex<HashMap<Arc<str>, HashSet<u64>>>,
    /// Other nodes (and this one) by id, with the time of their last
    /// announcement.
    nodes: Mutex<HashMap<String, (nodes::Announcement, Instant)>>,
    /// Questions this node asked and waits answers for.
    pub(crate) queries: query::Pending,
}

impl Cluster {
    pub(crate) fn new() -> Self {
        Self {
            users: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
            queries: query::Pending::default(),
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

    /// The ids of the other nodes this node heard from.
    pub(crate) fn other_nodes(&self, me: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .nodes
            .lock()
            .keys()
            .filter(|id| id.as_str() != me)
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// Applies a publication on a reserved channel to this node.
pub(crate) fn on_control(server: &Arc<ServerInner>, publication: &Publication) {
    let Some(data) = publication.data.as_deref() else {
        return;
    };
    if let Some(user) = publication.channel.strip_prefix(USER_PREFIX) {
        users::on_message(server, user, data);
    } else if &*publication.channel == NODES_CHANNEL {
        nodes::on_announcement(server, data);
    } else if publication.channel.strip_prefix(NODE_PREFIX) == Some(&*server.node_id) {
        query::on_message(server, data);
    }
}

/// Subscribes the node to a reserved channel, retrying until the broker
/// answers. False when the server shut down first.
async fn subscribe_node(server: &ServerInner, channel: &str) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        match server.registry.subscribe_node(channel).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(channel, error = %e, "cannot subscribe to a cluster channel; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = server.shutdown.cancelled() => return false,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The node's background duties: subscribe to `#herald/nodes` and to its
/// own `#herald/node/<id>`, announce this node every `interval`, forget
/// silent nodes, watch the broker's status. Ends (announcing the departure)
/// when the server shuts down.
pub(crate) async fn run(server: Weak<ServerInner>, interval: Duration) {
    let Some(s) = server.upgrade() else { return };
    let shutdown = s.shutdown.clone();
    if !subscribe_node(&s, &node_channel(&s.node_id)).await
        || !subscribe_node(&s, NODES_CHANNEL).await
    {
        return;
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
        nodes::announce(&s, false).await;
        nodes::forget_silent(&s, interval * 3);
    }
    if let Some(s) = server.upgrade() {
        nodes::announce(&s, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn reserved_channel_names() {
        assert_eq!(user_channel("ann"), "#herald/user/ann");
        assert_eq!(node_channel("n1"), "#herald/node/n1");
        assert!(node_channel("n1").starts_with(RESERVED_PREFIX));
    }
}
