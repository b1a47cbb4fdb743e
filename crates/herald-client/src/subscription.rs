//! Channel subscriptions as streams of publications.
//!
//! A [`Subscription`] is the consumer's end of one channel. It outlives
//! connections: after a reconnect the client subscribes again by itself and
//! publications keep arriving on the same stream. It ends when the channel is
//! unsubscribed, the server kicks the client out or refuses the
//! subscription, or the client is closed. Dropping it unsubscribes (once the
//! last subscription of that channel is gone).
//!
//! On a channel with history (Herald's extension) each [`Publication`]
//! carries its [`StreamPosition`]. The client resubscribes from the last
//! position it saw, so what was published while it was disconnected arrives
//! on the same stream, in order, before the live publications; duplicates
//! are dropped. A hole that cannot be filled is reported once, in place, as
//! [`SubscriptionError::Gap`], and the stream goes on. [`Subscription::position`]
//! is the position of the last item the consumer took: an application that
//! persists it can resume there after a restart
//! ([`crate::SubscribeOptions::since`]).
//!
//! Slow consumers: each subscription buffers at most `subscription_buffer`
//! publications. When full, the oldest publication is dropped and the stream
//! yields [`SubscriptionError::Lagged`] with the number dropped before the
//! next publication. The connection itself is never slowed by a consumer.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use herald_protocol::ErrorPayload;
use herald_protocol::ext::StreamPosition;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::gap::StreamGap;
use crate::queue::{Delivery, QueueReceiver};
use crate::task::Command;

/// One message published on a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// The channel it was published on.
    pub channel: String,
    /// The published data (`Null` when the publisher sent none).
    pub data: Value,
    /// Its place in the channel's stream, on a channel with history
    /// (Herald's extension); `None` elsewhere.
    pub position: Option<StreamPosition>,
}

impl Publication {
    /// The publication's offset in the channel's stream, when it has one.
    pub fn offset(&self) -> Option<u64> {
        self.position.as_ref().map(|p| p.offset)
    }

    /// The epoch of the channel's stream, when the publication has a place
    /// in one.
    pub fn epoch(&self) -> Option<&str> {
        self.position.as_ref().map(|p| p.epoch.as_str())
    }

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
    /// Publications on the channel were lost for good (the client could not
    /// recover them, the server announced the loss, or the offsets jumped).
    /// The stream goes on after [`StreamGap::resume`].
    #[error("{0}")]
    Gap(StreamGap),
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
        !matches!(
            self,
            SubscriptionError::Lagged(_) | SubscriptionError::Gap(_)
        )
    }
}

/// What the connection task queues for a subscription.
#[derive(Debug)]
pub(crate) enum SubItem {
    Publication(Publication),
    Gap(StreamGap),
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
    /// Where the consumer stands: the position of the last item taken.
    pub(crate) position: Option<StreamPosition>,
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

    /// The position in the channel's stream of the last publication this
    /// stream yielded (or, after a [`SubscriptionError::Gap`], where the
    /// stream goes on from); before the first item, where the subscription
    /// started (the channel's latest position when the server acknowledged
    /// it). `None` on a channel without history, or before the
    /// acknowledgement when not waiting for it.
    ///
    /// Persist it and pass it as [`crate::SubscribeOptions::since`] to resume
    /// from there after a restart.
    pub fn position(&self) -> Option<&StreamPosition> {
        self.position.as_ref()
    }

    /// Whether the stream has ended (nothing more will be yielded).
    pub fn is_terminated(&self) -> bool {
        self.rx.is_terminated()
    }
}

impl Stream for Subscription {
    type Item = Result<Publication, SubscriptionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.rx.poll_recv(cx).map(|d| {
            d.map(|d| match d {
                Delivery::Item(SubItem::Publication(p)) => {
                    if let Some(at) = &p.position {
                        this.position = Some(at.clone());
                    }
                    Ok(p)
                }
                Delivery::Item(SubItem::Gap(gap)) => {
                    this.position = Some(gap.resume.clone());
                    Err(SubscriptionError::Gap(gap))
                }
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
