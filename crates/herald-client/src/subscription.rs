//! Channel subscriptions as streams of publications.
//!
//! A [`Subscription`] is the consumer's end of one channel. It outlives
//! connections: after a reconnect the client subscribes again by itself and
//! publications keep arriving on the same stream. It ends when the channel is
//! unsubscribed, the server kicks the client out or refuses the
//! subscription, or the client is closed. Dropping it unsubscribes (once the
//! last subscription of that channel is gone).
//!
//! Slow consumers: each subscription buffers at most `subscription_buffer`
//! publications. When full, the oldest publication is dropped and the stream
//! yields [`SubscriptionError::Lagged`] with the number dropped before the
//! next publication. The connection itself is never slowed by a consumer.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use herald_protocol::ErrorPayload;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::queue::{Delivery, QueueReceiver};
use crate::task::Command;

/// One message published on a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// The channel it was published on.
    pub channel: String,
    /// The published data (`Null` when the publisher sent none).
    pub data: Value,
}

impl Publication {
    /// The data deserialized as `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(&self.data).map_err(Error::Decode)
    }

    /// Consumes the publication, deserializing its data as `T`.
    pub fn into_data<T: DeserializeOwned>(self) -> Result<T, Error> {
        serde_json::from_value(self.data).map_err(Error::Decode)
    }
}

/// Something other than a publication on a subscription stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The consumer was too slow: this many publications were dropped
    /// (oldest first). The stream goes on.
    #[error("subscription lagged: {0} publications dropped")]
    Lagged(u64),
    /// The server removed the client from the channel. The stream ends.
    #[error("kicked out of the channel: {message:?}")]
    KickedOut {
        /// The reason the server gave.
        message: Option<Value>,
    },
    /// The server refused the subscription (at first or when re-subscribing
    /// after a reconnect). The stream ends.
    #[error("subscription refused: {0}")]
    Rejected(ErrorPayload),
}

impl SubscriptionError {
    /// Whether the stream ends after this item.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, SubscriptionError::Lagged(_))
    }
}

/// What the connection task queues for a subscription.
#[derive(Debug)]
pub(crate) enum SubItem {
    Publication(Publication),
    End(SubscriptionError),
}

/// The publications of one channel, as a [`Stream`] of
/// `Result<Publication, SubscriptionError>`.
///
/// Returned by [`crate::Client::subscribe`]. See the module documentation for
/// its lifetime and the slow-consumer policy.
pub struct Subscription {
    pub(crate) channel: String,
    pub(crate) id: u64,
    pub(crate) rx: QueueReceiver<SubItem>,
    pub(crate) cmd: mpsc::WeakSender<Command>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Stops this subscription. The client unsubscribes from the channel on
    /// the server when no other [`Subscription`] of the same channel remains.
    /// (Dropping the subscription does the same.)
    pub fn unsubscribe(self) {
        drop(self);
    }

    /// Whether the stream has ended (nothing more will be yielded).
    pub fn is_terminated(&self) -> bool {
        self.rx.is_terminated()
    }
}

impl Stream for Subscription {
    type Item = Result<Publication, SubscriptionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|d| {
            d.map(|d| match d {
                Delivery::Item(SubItem::Publication(p)) => Ok(p),
                Delivery::Item(SubItem::End(e)) => Err(e),
                Delivery::Lagged(n) => Err(SubscriptionError::Lagged(n)),
            })
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Best effort: if the command queue is full, the task notices the
        // dropped stream on the next publication or reconnect instead.
        if let Some(cmd) = self.cmd.upgrade() {
            let _ = cmd.try_send(Command::ListenerDropped {
                channel: std::mem::take(&mut self.channel),
                id: self.id,
            });
        }
    }
}
