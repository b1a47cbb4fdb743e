//! The types of presence: who is subscribed to a channel, on every node.
//!
//! Each node records its own subscribers of channels with `presence` in the
//! broker's presence store, with an expiry it refreshes while they stay
//! subscribed. A node that dies stops refreshing, so its entries vanish
//! within the expiry (`presence_ttl`) without anyone cleaning up after it.

use std::sync::Arc;

pub use herald_protocol::ext::{ClientInfo, PresenceStats};

/// One subscriber of one channel, as a node records it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRecord {
    /// The channel.
    pub channel: Arc<str>,
    /// The subscribed socket's id.
    pub client: Arc<str>,
    /// Its user and info.
    pub info: Arc<ClientInfo>,
}

/// Counts `entries` as [`PresenceStats`]: sockets, and distinct users among
/// them.
pub fn stats_of<'a>(entries: impl IntoIterator<Item = &'a ClientInfo>) -> PresenceStats {
    let mut clients = 0u64;
    let mut users = std::collections::HashSet::new();
    for e in entries {
        clients += 1;
        if let Some(u) = &e.user {
            users.insert(u.as_str());
        }
    }
    PresenceStats {
        clients,
        users: users.len() as u64,
    }
}
