//! Reading a snapshot of a subject filter's messages from a stream: a
//! channel's history, or a channel's presence entries in the KV bucket.
//!
//! An ephemeral pull consumer (in memory, no acks) is created with the
//! filter; the server tells at creation how many messages it will deliver
//! (`num_pending`), and the scan reads exactly that many, in no-wait
//! batches, so that it ends on the server's word rather than on a timeout:
//! messages that arrive meanwhile are left out, messages that expire
//! meanwhile end it early. The consumer is deleted afterwards without
//! waiting (and expires on the server by itself if that fails).
//!
//! Version note: NATS 2.9 has no batched direct get (2.11) and no
//! multi-filter consumers (2.10); one consumer per read is what it offers.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use crate::error::StoreError;

/// Messages asked for per pull request.
const BATCH: u64 = 1000;

/// How long the server keeps a scan's consumer if its deletion is lost.
const INACTIVE: Duration = Duration::from_secs(30);

/// What the visitor wants after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Next message, please.
    Continue,
    /// Enough.
    Stop,
}

/// Why the scan found nothing to read.
fn is_stream_missing(e: &jetstream::stream::ConsumerError) -> bool {
    matches!(
        e.kind(),
        jetstream::stream::ConsumerErrorKind::JetStream(ref js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Visits the messages of `stream` matching `filter` under `policy`
/// (delivery order), at most as many as there were when the scan began.
/// Each step waits at most `timeout`. Fails with
/// [`StoreError::NoStream`] when the stream does not exist.
pub(crate) async fn scan<I>(
    stream: &jetstream::stream::Stream<I>,
    filter: String,
    policy: consumer::DeliverPolicy,
    timeout: Duration,
    mut visit: impl FnMut(jetstream::Message) -> Flow,
) -> Result<(), StoreError>
where
    I: Clone + Send + Sync + 'static,
{
    let step = |what: &'static str| StoreError::Timeout {
        what,
        after: timeout,
    };
    let config = consumer::pull::Config {
        deliver_policy: policy,
        ack_policy: consumer::AckPolicy::None,
        filter_subject: filter.clone(),
        memory_storage: true,
        inactive_threshold: INACTIVE,
        num_replicas: 1,
        ..Default::default()
    };
    let consumer = match tokio::time::timeout(timeout, stream.create_consumer(config)).await {
        Err(_) => return Err(step("creating a reader")),
        Ok(Err(e)) if is_stream_missing(&e) => return Err(StoreError::NoStream(filter)),
        Ok(Err(e)) => return Err(StoreError::failed("creating a reader", e)),
        Ok(Ok(consumer)) => consumer,
    };
    let name = consumer.cached_info().name.clone();
    let mut left = consumer.cached_info().num_pending;
    let result = async {
        while left > 0 {
            let mut batch = tokio::time::timeout(
                timeout,
                consumer
                    .fetch()
                    .max_messages(left.min(BATCH) as usize)
                    .messages(),
            )
            .await
            .map_err(|_| step("reading"))?
            .map_err(|e| StoreError::failed("reading", e))?;
            let mut got = 0u64;
            loop {
                let message = match tokio::time::timeout(timeout, batch.next()).await {
                    Err(_) => return Err(step("reading")),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(StoreError::failed("reading", e)),
                    Ok(Some(Ok(message))) => message,
                };
                got += 1;
                left -= 1;
                let pending = message.info().map_or(left, |i| i.pending);
                if visit(message) == Flow::Stop || pending == 0 || left == 0 {
                    return Ok(());
                }
            }
            if got == 0 {
                // Fewer than announced: the rest expired meanwhile.
                break;
            }
        }
        Ok(())
    }
    .await;
    let stream = stream.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, stream.delete_consumer(&name)).await;
    });
    result
}
