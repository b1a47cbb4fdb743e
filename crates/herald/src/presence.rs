//! This node's part of presence: which of its sockets are subscribed to
//! channels with `presence`, kept in the broker's presence store and
//! refreshed there, and the join/leave events of channels with `join_leave`.
//!
//! The broker's store is the truth every node reads; this node only writes
//! its own sockets. It keeps a local copy of what it wrote so that it can
//! refresh every entry each third of `presence_ttl` (a node that dies stops
//! refreshing, and its entries expire within `presence_ttl` without anyone
//! cleaning up), and write them again with new user or info when a socket's
//! token changes. A failed write is logged and corrected by the next
//! refresh; it never fails the subscribe.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::broker::{ClientInfo, MessageKind, PresenceRecord, Publication};
use crate::namespace::Resolved;
use crate::server::ServerInner;
use crate::socket::Socket;

/// Records written in one broker call by a refresh.
const REFRESH_BATCH: usize = 1000;

/// This node's presence entries: channel → socket key → record.
#[derive(Default)]
pub(crate) struct Presence {
    local: Mutex<HashMap<Arc<str>, HashMap<u64, PresenceRecord>>>,
}

/// The user and info a socket shows in presence, from its token.
pub(crate) fn client_info(server: &ServerInner, socket: &Socket) -> ClientInfo {
    let claims = socket.auth_claims();
    let user = claims
        .as_ref()
        .and_then(|c| crate::auth::claims::user_of(c, &server.config.user_claim))
        .map(|u| u.to_string());
    let info = claims
        .as_ref()
        .and_then(|c| crate::auth::claims::info_of(c));
    ClientInfo { user, info }
}

impl Presence {
    /// `socket` subscribed to `channel`.
    pub(crate) async fn joined(
        &self,
        server: &ServerInner,
        socket: &Socket,
        channel: &str,
        ns: &Resolved,
    ) {
        let (presence, join_leave) = (ns.options.presence, ns.options.join_leave);
        if !presence && !join_leave {
            return;
        }
        let info = Arc::new(client_info(server, socket));
        let channel: Arc<str> = Arc::from(channel);
        if presence {
            let record = PresenceRecord {
                channel: channel.clone(),
                client: Arc::from(socket.id()),
                info: info.clone(),
            };
            self.local
                .lock()
                .entry(channel.clone())
                .or_default()
                .insert(socket.0.key, record.clone());
            if let Err(e) = server
                .registry
                .broker()
                .presence_add(&[record], server.config.presence_ttl)
                .await
            {
                tracing::warn!(socket = %socket.id(), channel = %channel, error = %e, "cannot record presence; the next refresh will");
            }
        }
        if join_leave {
            publish_event(
                server,
                MessageKind::Join,
                &channel,
                socket,
                info.user.as_deref(),
            )
            .await;
        }
    }

    /// `socket` left `channel`.
    pub(crate) async fn left(
        &self,
        server: &ServerInner,
        socket: &Socket,
        channel: &str,
        ns: &Resolved,
    ) {
        let removed = {
            let mut local = self.local.lock();
            let removed = local
                .get_mut(channel)
                .and_then(|entries| entries.remove(&socket.0.key));
            if local.get(channel).is_some_and(HashMap::is_empty) {
                local.remove(channel);
            }
            removed
        };
        if let Some(record) = &removed
            && let Err(e) = server
                .registry
                .broker()
                .presence_remove(channel, std::slice::from_ref(&record.client))
                .await
        {
            tracing::warn!(socket = %socket.id(), channel, error = %e, "cannot remove a presence entry; it expires by itself");
        }
        if ns.options.join_leave {
            let user = match &removed {
                Some(r) => r.info.user.clone(),
                None => client_info(server, socket).user,
            };
            publish_event(server, MessageKind::Leave, channel, socket, user.as_deref()).await;
        }
    }

    /// `socket`'s token changed: write its entries again with its new user
    /// and info.
    pub(crate) async fn reauthenticated(&self, server: &ServerInner, socket: &Socket) {
        let info = Arc::new(client_info(server, socket));
        let channels: Vec<Arc<str>> = socket.0.channels.lock().iter().cloned().collect();
        let mut records: Vec<PresenceRecord> = Vec::new();
        {
            let mut local = self.local.lock();
            for channel in &channels {
                if let Some(r) = local
                    .get_mut(channel)
                    .and_then(|entries| entries.get_mut(&socket.0.key))
                    && *r.info != *info
                {
                    r.info = info.clone();
                    records.push(r.clone());
                }
            }
        }
        if records.is_empty() {
            return;
        }
        if let Err(e) = server
            .registry
            .broker()
            .presence_add(&records, server.config.presence_ttl)
            .await
        {
            tracing::warn!(error = %e, "cannot update presence entries; the next refresh will");
        }
    }

    fn snapshot(&self) -> Vec<PresenceRecord> {
        self.local
            .lock()
            .values()
            .flat_map(|entries| entries.values().cloned())
            .collect()
    }
}

async fn publish_event(
    server: &ServerInner,
    kind: MessageKind,
    channel: &str,
    socket: &Socket,
    user: Option<&str>,
) {
    let event = Publication::presence(kind, channel, socket.id(), user);
    if let Err(e) = server.registry.broker().publish(Arc::new(event)).await {
        tracing::warn!(socket = %socket.id(), channel, error = %e, "cannot publish a join/leave event");
    }
}

/// Refreshes this node's entries every third of `presence_ttl` until the
/// server is gone or shut down.
pub(crate) async fn refresh(server: Weak<ServerInner>, ttl: Duration) {
    let Some(s) = server.upgrade() else { return };
    let shutdown = s.shutdown.clone();
    drop(s);
    let period = (ttl / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(s) = server.upgrade() else { return };
        let records = s.presence.snapshot();
        for batch in records.chunks(REFRESH_BATCH) {
            if let Err(e) = s.registry.broker().presence_add(batch, ttl).await {
                tracing::warn!(error = %e, entries = batch.len(), "cannot refresh presence entries");
                break;
            }
        }
    }
}
