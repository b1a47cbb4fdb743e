//! Connection state: the event stream and the current-state snapshot.
//!
//! A program that only calls the client can ignore this module: reconnects,
//! re-authentication and resubscription happen by themselves. A program that
//! wants to show or log what happens (a CLI's status line, a service's
//! metrics) reads [`ClientEvent`]s from [`crate::Client::events`], or asks
//! [`crate::Client::state`] at any time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use herald_protocol::ErrorPayload;
use serde_json::Value;

use crate::gap::StreamGap;
use crate::queue::{Delivery, QueueReceiver};

/// Something that happened to the connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection attempt started.
    Connecting,
    /// The handshake completed: the connection is usable.
    Open {
        /// The socket id the server assigned.
        id: String,
        /// Whether the token sent in the handshake was accepted.
        is_authenticated: bool,
        /// Why the handshake token was refused, when one was sent and refused
        /// (e.g. `AuthTokenExpiredError`, `AuthTokenInvalidError`).
        auth_error: Option<ErrorPayload>,
    },
    /// The connection (or a connection attempt) ended.
    Closed {
        /// The WebSocket close code: the server's, or the client's own
        /// (4000 ping timeout, 4007 connect timeout, 4003 handshake failed,
        /// 1006 hung up / refused, 1000 closed by the user).
        code: u16,
        /// The close reason or the error.
        reason: String,
    },
    /// A reconnect attempt is scheduled after `delay`.
    Reconnecting {
        /// 1 for the first attempt after a connection was lost.
        attempt: u32,
        /// The (jittered) wait before the attempt.
        delay: Duration,
    },
    /// The socket is now authenticated: a handshake token was accepted, the
    /// server issued a token (`#setAuthToken`), or
    /// [`crate::Client::authenticate`] succeeded.
    Authenticated,
    /// The socket lost its authentication: the server removed the token, the
    /// handshake refused it, or [`crate::Client::deauthenticate`] was called.
    Deauthenticated,
    /// The server refused a subscription (also when re-subscribing after a
    /// reconnect). The channel's subscription streams end.
    SubscribeFailed {
        /// The channel.
        channel: String,
        /// The server's error (e.g. `ForbiddenError`).
        error: ErrorPayload,
    },
    /// The server refused to resubscribe a channel after a reconnect with a
    /// `BrokerError` (its broker is down for a while). The client tries
    /// again after `delay`, on the reconnect schedule; the channel's
    /// subscription streams go on, and what was published meanwhile is
    /// recovered when the channel has history.
    SubscribeRetrying {
        /// The channel.
        channel: String,
        /// The server's error.
        error: ErrorPayload,
        /// 1 for the first retry since the channel was last acknowledged.
        attempt: u32,
        /// The (jittered) wait before the retry.
        delay: Duration,
    },
    /// Publications on a channel were lost for good: the same notice as the
    /// [`crate::SubscriptionError::Gap`] on the channel's subscription
    /// streams. The streams go on.
    Gap(StreamGap),
    /// The server removed this client from a channel (`#kickOut`). The
    /// channel's subscription streams end.
    KickedOut {
        /// The channel.
        channel: String,
        /// The reason the server gave.
        message: Option<Value>,
    },
    /// This event stream fell behind and this many events were dropped.
    Lagged {
        /// Number of events dropped.
        missed: u64,
    },
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting or handshaking.
    Connecting,
    /// Connected and handshaken.
    Open,
    /// Waiting for the backoff delay before the next attempt.
    Reconnecting,
    /// Disconnected without automatic reconnect (the server closed with a
    /// permanent code, or reconnect is disabled); the next call that needs
    /// the server connects again.
    Idle,
    /// Closed for good by [`crate::Client::close`] or by dropping every handle.
    Closed,
}

/// A snapshot of the connection, kept by the connection task.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) state: ConnectionState,
    pub(crate) id: Option<String>,
    pub(crate) authenticated: bool,
    pub(crate) signed_token: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: ConnectionState::Connecting,
            id: None,
            authenticated: false,
            signed_token: None,
        }
    }
}

/// A stream of [`ClientEvent`]s, from [`crate::Client::events`].
///
/// It sees the events that happen after it was created. It is bounded
/// (`event_buffer`): if it is not read, the oldest events are dropped and a
/// [`ClientEvent::Lagged`] says how many. It ends when the client is closed.
pub struct Events {
    pub(crate) rx: QueueReceiver<ClientEvent>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Stream for Events {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|d| {
            d.map(|d| match d {
                Delivery::Item(e) => e,
                Delivery::Lagged(missed) => ClientEvent::Lagged { missed },
            })
        })
    }
}
