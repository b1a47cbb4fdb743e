//! In-memory presence: the presence store of the [`super::MemoryBroker`].
//!
//! Entries expire like those of a networked store (so that the semantics
//! are the same whatever the broker), though on one node they are removed
//! explicitly long before: the node removes a socket's entries when it
//! unsubscribes or closes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::broker::{ClientInfo, PresenceRecord};

/// A channel's entries: socket id → (info, expiry).
type Entries = HashMap<Arc<str>, (Arc<ClientInfo>, Instant)>;

#[derive(Default)]
pub(super) struct Presence {
    channels: Mutex<HashMap<Arc<str>, Entries>>,
}

impl Presence {
    pub(super) fn add(&self, records: &[PresenceRecord], ttl: Duration) {
        let expires = Instant::now() + ttl;
        let mut channels = self.channels.lock();
        for r in records {
            channels
                .entry(r.channel.clone())
                .or_default()
                .insert(r.client.clone(), (r.info.clone(), expires));
        }
    }

    pub(super) fn remove(&self, channel: &str, clients: &[Arc<str>]) {
        let mut channels = self.channels.lock();
        if let Some(entries) = channels.get_mut(channel) {
            for c in clients {
                entries.remove(c);
            }
            if entries.is_empty() {
                channels.remove(channel);
            }
        }
    }

    pub(super) fn list(&self, channel: &str) -> BTreeMap<String, ClientInfo> {
        let now = Instant::now();
        let mut channels = self.channels.lock();
        let Some(entries) = channels.get_mut(channel) else {
            return BTreeMap::new();
        };
        entries.retain(|_, (_, expires)| *expires > now);
        let list = entries
            .iter()
            .map(|(id, (info, _))| (id.to_string(), ClientInfo::clone(info)))
            .collect();
        if entries.is_empty() {
            channels.remove(channel);
        }
        list
    }

    pub(super) fn sweep(&self) {
        let now = Instant::now();
        self.channels.lock().retain(|_, entries| {
            entries.retain(|_, (_, expires)| *expires > now);
            !entries.is_empty()
        });
    }
}
