//! What the server can ask of the client: transmits and invokes.
//!
//! A server transmit (an event without a call id) is delivered to every
//! [`Receiver`] registered for its event name, through the same bounded
//! drop-oldest queue as subscriptions; a transmit nobody listens to is
//! dropped. A server invoke (an event with a call id) is answered by the
//! procedure handler registered for its name, run on its own task so that a
//! slow handler never holds up the connection; an invoke with no handler is
//! answered with a `NoSuchProcedureError`, so the server does not wait for its
//! ack timeout.
//!
//! Handlers and receivers are registered on the client, not on a connection:
//! they keep working across reconnects.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::future::BoxFuture;
use herald_protocol::ErrorPayload;
use serde_json::Value;

use crate::queue::{Delivery, QueueReceiver, QueueSender};

/// A registered procedure: takes the call data, returns the reply data or
/// the error object to send back.
pub(crate) type Procedure =
    Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, ErrorPayload>> + Send + Sync>;

/// Wraps an async closure as a [`Procedure`].
pub(crate) fn procedure<F, Fut>(f: F) -> Procedure
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ErrorPayload>> + Send + 'static,
{
    Arc::new(move |data| Box::pin(f(data)))
}

/// The handlers and receivers registered on a client.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) procedures: HashMap<String, Procedure>,
    pub(crate) receivers: HashMap<String, Vec<QueueSender<Value>>>,
}

impl Registry {
    /// Delivers a transmit to the receivers of `event`, forgetting dropped
    /// ones. Returns whether anyone was listening.
    pub(crate) fn deliver(&mut self, event: &str, data: Value) -> bool {
        let Some(list) = self.receivers.get_mut(event) else {
            return false;
        };
        list.retain(|r| !r.is_gone());
        let delivered = match list.len() {
            0 => false,
            1 => list[0].push(data),
            _ => {
                let mut any = false;
                for r in list.iter() {
                    any |= r.push(data.clone());
                }
                any
            }
        };
        if list.is_empty() {
            self.receivers.remove(event);
        }
        delivered
    }

    /// Ends every receiver stream (the client is closing).
    pub(crate) fn close_all(&mut self) {
        for (_, list) in self.receivers.drain() {
            for r in list {
                r.close();
            }
        }
        self.procedures.clear();
    }
}

/// The one-way messages the server transmits under one event name, as a
/// [`Stream`] of `Result<Value, Lagged>`. From [`crate::Client::receiver`].
///
/// Bounded (`receiver_buffer`), drop-oldest: a slow consumer gets
/// `Err(Lagged(n))` before the next message. Ends when the client is closed.
pub struct Receiver {
    pub(crate) event: String,
    pub(crate) rx: QueueReceiver<Value>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// The event name this receiver listens to.
    pub fn event(&self) -> &str {
        &self.event
    }
}

/// This many messages were dropped because the consumer was too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("receiver lagged: {0} messages dropped")]
pub struct Lagged(pub u64);

impl Stream for Receiver {
    type Item = Result<Value, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|d| {
            d.map(|d| match d {
                Delivery::Item(v) => Ok(v),
                Delivery::Lagged(n) => Err(Lagged(n)),
            })
        })
    }
}
