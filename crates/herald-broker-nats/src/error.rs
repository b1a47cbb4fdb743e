//! Why a JetStream operation (history, presence) failed.
//!
//! The stores speak in [`StoreError`] so that the retry logic can tell a
//! lost race (`Conflict`) and a missing stream (`NoStream`), which it
//! handles, from failures it reports; the [`Broker`](herald::Broker)
//! methods turn whatever is left into a [`BrokerError`] naming the channel.

use std::time::Duration;

use herald::BrokerError;

/// The broker's name in errors, logs and metrics.
pub(crate) const NAME: &str = "nats";

/// A [`BrokerError`] of this broker.
pub(crate) fn error(message: impl Into<String>) -> BrokerError {
    BrokerError::new(NAME, message)
}

/// A JetStream operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The broker is down: nothing was sent.
    #[error("NATS is unreachable")]
    Unreachable,
    /// No stream captures the subject (never created, or lost with the
    /// server's store). The caller (re)creates it and retries.
    #[error("no JetStream stream for {0}")]
    NoStream(String),
    /// Another writer got there first (`Nats-Expected-Last-Subject-Sequence`
    /// did not match). The caller re-reads and retries.
    #[error("another publisher wrote first")]
    Conflict,
    /// Every attempt lost a race with other publishers.
    #[error("gave up after {0} attempts lost to concurrent publishers")]
    Contended(u32),
    /// No answer in time; a write may or may not have been stored.
    #[error("{what}: no answer within {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The server or the client refused the operation.
    #[error("{what}: {message}")]
    Failed {
        /// What was attempted.
        what: &'static str,
        /// The server's or the client's reason.
        message: String,
    },
}

impl StoreError {
    /// A refusal of `what`, with the reason's text.
    pub(crate) fn failed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        StoreError::Failed {
            what,
            message: reason.to_string(),
        }
    }

    /// The broker error for an operation on `channel` (`what` names it).
    pub(crate) fn on(self, what: &str, channel: &str) -> BrokerError {
        error(format!("{what} on {channel:?}: {self}"))
    }
}

/// A JetStream publish's failure, as a [`StoreError`] (`subject` for
/// [`StoreError::NoStream`], `after` the timeout it ran with).
pub(crate) fn publish_error(
    e: async_nats::jetstream::context::PublishError,
    what: &'static str,
    subject: &str,
    after: Duration,
) -> StoreError {
    use async_nats::jetstream::context::PublishErrorKind;
    match e.kind() {
        PublishErrorKind::WrongLastSequence => StoreError::Conflict,
        PublishErrorKind::StreamNotFound => StoreError::NoStream(subject.to_owned()),
        PublishErrorKind::TimedOut => StoreError::Timeout { what, after },
        _ => StoreError::failed(what, e),
    }
}
