//! Who is subscribed to a channel (Herald's extension): the presence calls,
//! and joins and leaves as a stream.
//!
//! [`Client::presence`] lists a channel's subscribers and
//! [`Client::presence_stats`] counts them (`#herald/presence`,
//! `#herald/presenceStats`). On channels the server configures with
//! `join_leave`, every subscriber is told who joins and leaves
//! (`#herald/join`, `#herald/leave`); [`Client::presence_events`] (every
//! channel) and [`Client::presence_events_of`] (one channel) hand those out
//! as [`PresenceChange`]s.
//!
//! The streams are registered on the client, not on a connection, so they
//! survive reconnects; they are bounded (`receiver_buffer`) and drop their
//! oldest item when the consumer is slow, reporting how many were dropped.
//! A join/leave stream does not subscribe to anything: it sees the events
//! of the channels the client subscribes to. After a reconnect, or a lag,
//! ask [`Client::presence`] for the current list instead of replaying.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use herald_protocol::ext::{self, ChannelRequest, ClientInfo, PresenceEvent, PresenceStats};

use crate::client::Client;
use crate::error::Result;
use crate::handlers::Lagged;
use crate::queue::{Delivery, QueueReceiver, QueueSender, queue};

/// A client joined or left a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceChange {
    /// A client subscribed (`#herald/join`).
    Join(PresenceEvent),
    /// A client unsubscribed or disconnected (`#herald/leave`).
    Leave(PresenceEvent),
}

impl PresenceChange {
    /// Who joined or left, and where.
    pub fn event(&self) -> &PresenceEvent {
        match self {
            PresenceChange::Join(e) | PresenceChange::Leave(e) => e,
        }
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.event().channel
    }

    /// Whether this is a join.
    pub fn is_join(&self) -> bool {
        matches!(self, PresenceChange::Join(_))
    }
}

/// The join/leave streams of one client.
#[derive(Default)]
pub(crate) struct PresenceSinks {
    /// Each stream, with the one channel it wants (`None`: every channel).
    sinks: Vec<(Option<String>, QueueSender<PresenceChange>)>,
}

impl PresenceSinks {
    pub(crate) fn add(&mut self, channel: Option<String>, sink: QueueSender<PresenceChange>) {
        self.sinks.push((channel, sink));
    }

    /// Hands `change` to every stream that wants its channel, forgetting
    /// dropped streams.
    pub(crate) fn deliver(&mut self, change: &PresenceChange) {
        self.sinks.retain(|(channel, sink)| match channel {
            Some(c) if c != change.channel() => !sink.is_gone(),
            _ => sink.push(change.clone()),
        });
    }

    /// Forgets dropped streams.
    pub(crate) fn prune(&mut self) {
        self.sinks.retain(|(_, sink)| !sink.is_gone());
    }

    /// Ends every stream (the client is closing).
    pub(crate) fn close_all(&mut self) {
        for (_, sink) in self.sinks.drain(..) {
            sink.close();
        }
    }
}

/// Joins and leaves, as a [`Stream`] of `Result<PresenceChange, Lagged>`.
/// From [`Client::presence_events`] or [`Client::presence_events_of`]; ends
/// when the client is closed.
pub struct PresenceEvents {
    rx: QueueReceiver<PresenceChange>,
}

impl std::fmt::Debug for PresenceEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceEvents").finish_non_exhaustive()
    }
}

impl Stream for PresenceEvents {
    type Item = std::result::Result<PresenceChange, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|d| {
            d.map(|d| match d {
                Delivery::Item(c) => Ok(c),
                Delivery::Lagged(n) => Err(Lagged(n)),
            })
        })
    }
}

impl Client {
    /// The subscribers of `channel`, by socket id, with the user and info
    /// of their tokens (`#herald/presence`). Fails with [`crate::Error::Remote`]
    /// where the server does not allow it (e.g. a channel without presence).
    pub async fn presence(&self, channel: &str) -> Result<BTreeMap<String, ClientInfo>> {
        let request = ChannelRequest {
            channel: channel.to_owned(),
        };
        let reply: ext::PresenceReply = self.invoke_as(ext::PRESENCE, &request).await?;
        Ok(reply.clients)
    }

    /// How many sockets and distinct users are subscribed to `channel`
    /// (`#herald/presenceStats`).
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats> {
        let request = ChannelRequest {
            channel: channel.to_owned(),
        };
        self.invoke_as(ext::PRESENCE_STATS, &request).await
    }

    /// Joins and leaves on every channel this client subscribes to (that the
    /// server announces them on), from now on. See [`PresenceEvents`].
    pub fn presence_events(&self) -> PresenceEvents {
        self.presence_stream(None)
    }

    /// Joins and leaves on `channel` only, from now on.
    pub fn presence_events_of(&self, channel: impl Into<String>) -> PresenceEvents {
        self.presence_stream(Some(channel.into()))
    }

    fn presence_stream(&self, channel: Option<String>) -> PresenceEvents {
        let (tx, rx) = queue(self.receiver_buffer());
        self.shared().presence_sinks().add(channel, tx);
        PresenceEvents { rx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn change(join: bool, channel: &str, client: &str) -> PresenceChange {
        let e = PresenceEvent {
            channel: channel.into(),
            client: client.into(),
            user: None,
        };
        if join {
            PresenceChange::Join(e)
        } else {
            PresenceChange::Leave(e)
        }
    }

    fn drain(rx: &mut QueueReceiver<PresenceChange>) -> Vec<String> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(Delivery::Item(c))) = rx.poll_recv(&mut cx) {
            let sign = if c.is_join() { '+' } else { '-' };
            out.push(format!("{sign}{}@{}", c.event().client, c.channel()));
        }
        out
    }

    #[test]
    fn streams_get_their_channels_and_dropped_ones_are_forgotten() {
        let mut sinks = PresenceSinks::default();
        let (all_tx, mut all) = queue(8);
        let (a_tx, mut a) = queue(8);
        let (gone_tx, gone) = queue(8);
        sinks.add(None, all_tx);
        sinks.add(Some("a".into()), a_tx);
        sinks.add(Some("b".into()), gone_tx);
        drop(gone);
        sinks.deliver(&change(true, "a", "s1"));
        sinks.deliver(&change(false, "b", "s2"));
        assert_eq!(sinks.sinks.len(), 2, "the dropped stream is forgotten");
        sinks.deliver(&change(false, "a", "s1"));
        assert_eq!(drain(&mut all), ["+s1@a", "-s2@b", "-s1@a"]);
        assert_eq!(drain(&mut a), ["+s1@a", "-s1@a"]);
        drop(a);
        sinks.prune();
        assert_eq!(sinks.sinks.len(), 1);
        sinks.close_all();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(all.poll_recv(&mut cx), Poll::Ready(None)));
    }
}
